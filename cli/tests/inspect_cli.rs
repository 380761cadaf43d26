//! `fjord inspect` on a component built in memory, and its errors.

#[path = "../../surface/tests/test_component.rs"]
mod test_component;

use std::process::{Command, Output};

use serde_json::Value;

fn fjord(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(args)
        .output()
        .unwrap()
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fjord-inspect-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

const WIT: &str = r#"
    package example:calc@1.3.0;
    interface calculator {
        add: func(a: s64, b: s64) -> s64;
        select-destinations: func(max-count: u32) -> bool;
    }
    world w { export calculator; }
"#;

#[test]
fn inspect_prints_methods_and_versions() {
    let path = temp_file("calc.wasm", &test_component::test_component(WIT));
    let out = fjord(&["inspect", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "calculator (package example:calc@1.3.0, oslo version 1.3)\n  \
         add(a: s64, b: s64) -> s64\n  \
         select_destinations(max_count: u32) -> bool\n"
    );

    let out = fjord(&["inspect", "--json", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["interfaces"][0]["name"], "calculator");
    assert_eq!(v["interfaces"][0]["oslo_version"], "1.3");
    assert_eq!(v["interfaces"][0]["package_version"], "1.3.0");
    assert_eq!(
        v["interfaces"][0]["methods"][1]["name"],
        "select_destinations"
    );
    assert_eq!(
        v["interfaces"][0]["methods"][1]["params"][0][0],
        "max_count"
    );
}

#[test]
fn inspect_errors_name_the_file() {
    let out = fjord(&["inspect", "/nonexistent/thing.wasm"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/nonexistent/thing.wasm"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let path = temp_file("notes.wasm", b"this is not wasm");
    let out = fjord(&["inspect", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("notes.wasm") && err.contains("not a WebAssembly"),
        "{err}"
    );

    let path = temp_file("core.wasm", b"\0asm\x01\0\0\0");
    let out = fjord(&["inspect", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("core.wasm") && err.contains("core WebAssembly module"),
        "{err}"
    );
}
