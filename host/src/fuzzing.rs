//! The invariants the JSON-to-WIT fuzz target checks, here so that the nightly fuzzer (`fuzz/`) and
//! the stable corpus-replay test (`tests/all/fuzz_corpus.rs`) run the very same code.
//!
//! Not part of the API: a violated invariant is returned as an `Err` describing it, and the
//! callers turn it into a crash (the fuzzer) or a test failure.

use crate::convert::{to_json, to_json_text, to_val, type_name};
use crate::dispatch::bind_arguments;
use crate::endpoint::{Endpoint, Method};
use crate::lift_budget::check_bound;
use serde_json::Value;
use wasmtime::component::{Type, Val};

/// Reads arbitrary bytes as JSON and converts it, for every method of `endpoint`, to each
/// parameter's type and (when it is an object) as the method's keyword arguments.
///
/// Holds when conversion never panics and every value it accepts survives WIT → JSON → WIT
/// unchanged, both as a JSON value and through JSON text (what the reply carries), and lifting
/// it costs no more than the reply budget's bound.
pub fn check_conversion(endpoint: &Endpoint, data: &[u8]) -> Result<(), String> {
    let Ok(json) = serde_json::from_slice::<Value>(data) else {
        return Ok(());
    };
    // Sorted so that a failure is reproducible run after run.
    let mut methods: Vec<&Method> = endpoint.methods.values().collect();
    methods.sort_by(|a, b| a.name.cmp(&b.name));
    for method in methods {
        for param in &method.params {
            match to_val(&param.ty, &json, &param.name) {
                Ok(val) => round_trip(&param.ty, &val)?,
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
        if let Value::Object(args) = &json {
            if let Ok(vals) = bind_arguments(method, args) {
                for (param, val) in method.params.iter().zip(&vals) {
                    round_trip(&param.ty, val)?;
                }
            }
        }
    }
    Ok(())
}

/// A value of type `ty` converted to JSON converts back equal, also through JSON text; the text
/// written straight from the value is the same; and lifting the value out of a guest costs no
/// more than the bound the host's reply budget assumes.
fn round_trip(ty: &Type, val: &Val) -> Result<(), String> {
    let json = to_json(val);
    let text = json.to_string();
    let direct = to_json_text(val, usize::MAX);
    if direct.as_deref() != Some(text.as_str()) {
        return Err(format!(
            "{val:?} written directly is {direct:?}, not {text}"
        ));
    }
    check_bound(ty, val, text.len())?;
    let reparsed: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{val:?} became unreadable JSON text {text}: {e}"))?;
    for (how, json) in [("JSON", &json), ("JSON text", &reparsed)] {
        let back = to_val(ty, json, "v").map_err(|e| {
            format!(
                "{val:?} as {how} {json} is refused as {}: {e}",
                type_name(ty)
            )
        })?;
        if back != *val {
            return Err(format!(
                "{val:?} as {how} {json} came back as {back:?} ({})",
                type_name(ty)
            ));
        }
    }
    Ok(())
}
