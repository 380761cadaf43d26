//! Arbitrary JSON converted to the parameter types of every function of the `types` test
//! component (`tests/components/types`, built by `scripts/setup`).
#![no_main]

use fjord_host::endpoint::{self, Endpoint};
use fjord_host::sandbox::{Limits, Sandbox};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

const TYPES_WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/wasm32-wasip2/release/types.wasm"
);

/// Compiled once per fuzzing process: only the component's types are needed, not instances.
fn types_endpoint() -> &'static Endpoint {
    static ENDPOINT: OnceLock<Endpoint> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let sandbox = Sandbox::new().expect("wasm engine");
        let mut endpoints =
            endpoint::load(&sandbox, Path::new(TYPES_WASM), None, Limits::default())
                .unwrap_or_else(|e| {
                    panic!("{e:#} (run scripts/setup to build the test components)")
                });
        assert_eq!(
            endpoints.len(),
            1,
            "the types component exports one interface"
        );
        endpoints.remove(0)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = fjord_host::fuzzing::check_conversion(types_endpoint(), data) {
        panic!("{violation}");
    }
});
