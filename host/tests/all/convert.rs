//! JSON <-> WIT conversion for every WIT type, with the types taken from a real component
//! (`tests/components/types`). No broker needed.

use crate::harness::wasm;
use fjord_host::convert::{to_json, to_val};
use fjord_host::endpoint::{self, Endpoint};
use fjord_host::sandbox::{Limits, Sandbox};
use serde_json::{json, Value};
use std::sync::OnceLock;
use wasmtime::component::Type;

pub fn types_endpoint() -> &'static Endpoint {
    static ENDPOINT: OnceLock<Endpoint> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let sandbox = Sandbox::new().unwrap();
        let mut endpoints =
            endpoint::load(&sandbox, &wasm("types"), None, Limits::default()).unwrap();
        assert_eq!(endpoints.len(), 1);
        endpoints.remove(0)
    })
}

fn param(method: &str) -> Type {
    types_endpoint().methods[method].params[0].ty.clone()
}

/// JSON → WIT → JSON gives back what went in.
fn round_trip(method: &str, value: Value) {
    let val = to_val(&param(method), &value, "v")
        .unwrap_or_else(|e| panic!("{method}({value}) refused: {e}"));
    assert_eq!(to_json(&val), value, "{method}");
}

/// JSON that must be refused, with a message containing `needle`.
fn refused(method: &str, value: Value, needle: &str) {
    match to_val(&param(method), &value, "v") {
        Ok(val) => panic!("{method}({value}) accepted as {val:?}"),
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(needle), "{method}({value}): {message}");
        }
    }
}

#[test]
fn scalars() {
    round_trip("echo_bool", json!(true));
    round_trip("echo_s8", json!(-128));
    round_trip("echo_u8", json!(255));
    round_trip("echo_s16", json!(-32768));
    round_trip("echo_u16", json!(65535));
    round_trip("echo_s32", json!(-2147483648i64));
    round_trip("echo_u32", json!(4294967295u64));
    round_trip("echo_s64", json!(i64::MIN));
    round_trip("echo_u64", json!(u64::MAX));
    round_trip("echo_f32", json!(1.5));
    round_trip("echo_f64", json!(-0.25));
    round_trip("echo_char", json!("é"));
    round_trip("echo_string", json!("hello, world"));
}

#[test]
fn integers_are_range_checked() {
    refused("echo_u8", json!(256), "out of range for u8");
    refused("echo_u8", json!(-1), "out of range for u8");
    refused("echo_s8", json!(128), "out of range for s8");
    refused("echo_u64", json!(-1), "out of range for u64");
    refused("echo_s32", json!(1.5), "expected an integer");
    refused(
        "echo_s32",
        json!("3"),
        "expected an integer (s32), got string \"3\"",
    );
    refused("echo_s64", json!(null), "got null");
    // A whole float is an integer (Python may send 2.0).
    let v = to_val(&param("echo_s64"), &json!(2.0), "v").unwrap();
    assert_eq!(to_json(&v), json!(2));
}

#[test]
fn other_scalars_are_checked() {
    refused("echo_bool", json!(1), "expected a boolean");
    refused("echo_char", json!("ab"), "one-character string");
    refused("echo_char", json!(""), "one-character string");
    refused("echo_string", json!(5), "expected a string");
    refused("echo_f64", json!("1.0"), "expected a number");
}

#[test]
fn lists_and_tuples() {
    round_trip("echo_list", json!([1, 2, 3]));
    round_trip("echo_list", json!([]));
    round_trip("echo_nested", json!([["a"], [], ["b", "c"]]));
    round_trip("echo_tuple", json!(["x", 7]));
    refused("echo_list", json!({"a": 1}), "expected an array");
    refused("echo_list", json!([1, "two"]), "v[1]: expected an integer");
    refused(
        "echo_nested",
        json!([["a"], [1]]),
        "v[1][0]: expected a string",
    );
    refused("echo_tuple", json!(["x"]), "array of 2 items");
}

#[test]
fn records() {
    round_trip(
        "echo_record",
        json!({"host_name": "h", "port": 80, "tags": ["a"], "weight": 0.5}),
    );
    // An absent option field is none.
    let v = to_val(
        &param("echo_record"),
        &json!({"host_name": "h", "port": 80, "tags": []}),
        "v",
    )
    .unwrap();
    assert_eq!(
        to_json(&v),
        json!({"host_name": "h", "port": 80, "tags": [], "weight": null})
    );
    refused(
        "echo_record",
        json!({"host_name": "h", "tags": []}),
        "v.port: missing field",
    );
    refused(
        "echo_record",
        json!({"host_name": "h", "port": 1, "tags": [], "colour": 1}),
        "unknown field \"colour\"",
    );
    refused(
        "echo_record",
        json!({"host_name": "h", "port": 70000, "tags": []}),
        "v.port: 70000 is out of range for u16",
    );
}

#[test]
fn options_enums_variants_flags() {
    round_trip("echo_option", json!(null));
    round_trip("echo_option", json!("x"));
    round_trip("echo_enum", json!("dark_green"));
    refused("echo_enum", json!("purple"), "one of red, dark_green, blue");
    round_trip("echo_variant", json!({"circle": 1.5}));
    round_trip("echo_variant", json!("unit_point"));
    refused(
        "echo_variant",
        json!({"hexagon": 1}),
        "unknown case \"hexagon\"",
    );
    refused("echo_variant", json!("circle"), "needs a payload");
    round_trip("echo_flags", json!(["read", "exec_all"]));
    round_trip("echo_flags", json!([]));
    refused(
        "echo_flags",
        json!(["fly"]),
        "v[0]: expected one of read, write, exec_all",
    );
}

#[test]
fn results_as_parameters() {
    round_trip("echo_result", json!({"ok": "fine"}));
    round_trip("echo_result", json!({"err": 3}));
    refused(
        "echo_result",
        json!({"maybe": 1}),
        "{\"ok\": value} or {\"err\": value}",
    );
    refused(
        "echo_result",
        json!("ok"),
        "{\"ok\": value} or {\"err\": value}",
    );
}

#[test]
fn methods_and_parameters_are_snake_case() {
    let methods = &types_endpoint().methods;
    let many = &methods["many_args"];
    let names: Vec<&str> = many.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["first_name", "last_name", "age"]);
    assert!(methods.contains_key("echo_bool"));
    assert!(methods["nothing"].result.is_none());
    assert_eq!(types_endpoint().version, "1.0");
    assert_eq!(types_endpoint().interface, "fjord:types/echo@1.0.0");
}
