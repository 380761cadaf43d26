//! The stateful example endpoint: `wit/counter/counter.wit`, named counters that outlive calls,
//! host restarts and (with Redis) hosts.
//!
//! Grant it a bucket in the host's config:
//! `endpoints = [{ path = "target/wasm32-wasip2/release/counter.wasm", keyvalue = ["default"] }]`.
//! Build: `cargo build --release --target wasm32-wasip2 -p counter`.

wit_bindgen::generate!({
    world: "counter-endpoint",
    path: "../../wit/counter",
});

use exports::fjord::counter::counter::Guest;
use fjord_guest::keyvalue;

/// The bucket the counters live in.
const BUCKET: &str = "default";

struct Counter;

impl Guest for Counter {
    fn increment(name: String, by: u64) -> Result<u64, String> {
        Ok(keyvalue::open(BUCKET)?.increment(&name, by)?)
    }

    fn get(name: String) -> Result<u64, String> {
        Ok(keyvalue::open(BUCKET)?.get_u64(&name)?.unwrap_or(0))
    }
}

export!(Counter);
