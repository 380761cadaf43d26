//! Arbitrary messages (AMQP properties chosen by the first byte, then the body) through the
//! host's delivery decision, against a server of the `types` test component with a 4 KiB request
//! limit (`tests/components/types`, built by `scripts/setup`).
#![no_main]

use fjord_host::dispatch::Dispatcher;
use fjord_host::fuzzing::{check_delivery, delivery_dispatcher, CountingAlloc};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

/// Measures what deciding about one message allocates (the tree bound is an invariant).
#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

const TYPES_WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/wasm32-wasip2/release/types.wasm"
);

fn dispatcher() -> &'static Dispatcher {
    static DISPATCHER: OnceLock<Dispatcher> = OnceLock::new();
    DISPATCHER.get_or_init(|| {
        delivery_dispatcher(Path::new(TYPES_WASM))
            .unwrap_or_else(|e| panic!("{e:#} (run scripts/setup to build the test components)"))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check_delivery(dispatcher(), data) {
        panic!("{violation}");
    }
});
