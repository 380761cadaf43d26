//! A host that cannot serve says so at start, in one line naming the file, key or function.

use crate::harness::{config, path_item, unique, wasm, workspace, Host};
use std::time::Duration;

/// Starts a host that must refuse, and returns its log.
fn refused(config_text: &str) -> String {
    let mut host = Host::spawn(config_text);
    let status = host
        .wait_exit(Duration::from_secs(60))
        .expect("the host kept running");
    assert!(!status.success());
    host.log()
}

#[test]
fn resource_parameters_are_refused_naming_the_function() {
    let log = refused(&config(&[("t", "s", &path_item(&wasm("resourceful")))]));
    assert_eq!(log.trim().lines().count(), 1, "one line: {log}");
    assert!(log.contains("use-counter"), "{log}");
    assert!(log.contains("resourceful.wasm"), "{log}");
    assert!(log.contains("resource"), "{log}");
}

#[test]
fn missing_and_invalid_files() {
    let log = refused(&config(&[("t", "s", "\"/nonexistent/missing.wasm\"")]));
    assert_eq!(log.trim().lines().count(), 1, "one line: {log}");
    assert!(log.contains("/nonexistent/missing.wasm"), "{log}");
    let not_wasm = workspace().join("README.md");
    let log = refused(&config(&[("t", "s", &path_item(&not_wasm))]));
    assert!(
        log.contains("README.md") && log.contains("not a WebAssembly component"),
        "{log}"
    );
}

#[test]
fn bad_config_names_the_key() {
    let log = refused("transport_url = \"rabbit://guest:guest@127.0.0.1:5672/\"\nbogus = 1\n");
    assert!(log.contains("bogus"), "{log}");
    assert_eq!(log.trim().lines().count(), 1, "one line: {log}");
}

#[test]
fn unreachable_broker_names_the_address_and_hides_the_password() {
    let text = format!(
        "transport_url = \"rabbit://guest:s3cret@127.0.0.1:5999/\"\n[[server]]\ntopic = \"{}\"\nserver = \"s\"\nendpoints = [{}]\n",
        unique("t"),
        path_item(&wasm("calculator"))
    );
    let log = refused(&text);
    assert!(log.contains("127.0.0.1:5999"), "{log}");
    assert!(!log.contains("s3cret"), "password leaked: {log}");
}

/// The one line a refused host prints, checked to name every `needle`.
fn refused_naming(config_text: &str, needles: &[&str]) {
    let log = refused(config_text);
    assert_eq!(log.trim().lines().count(), 1, "one line: {log}");
    for needle in needles {
        assert!(log.contains(needle), "{needle:?} missing: {log}");
    }
}

#[test]
fn the_same_method_twice_in_one_namespace_and_version_is_refused() {
    let calculator = path_item(&wasm("calculator"));
    refused_naming(
        &config(&[("t", "s", &format!("{calculator}, {calculator}"))]),
        &[
            "method `add`",
            "fjord:calculator/calculator@1.0.0",
            "calculator.wasm",
            "version 1.0",
        ],
    );
}

#[test]
fn a_core_module_is_not_a_component() {
    let dir = workspace().join("target/test-configs").join(unique("core"));
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("core.wasm");
    // The preamble of an empty core module: magic and version 1.
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    refused_naming(
        &config(&[("t", "s", &path_item(&module))]),
        &["core.wasm", "not a WebAssembly component"],
    );
}

#[test]
fn endpoint_settings_of_the_wrong_type_or_name_are_refused() {
    let calculator = path_item(&wasm("calculator"));
    refused_naming(
        &config(&[(
            "t",
            "s",
            &format!("{{ path = {calculator}, deadline_ms = \"soon\" }}"),
        )]),
        &["fjord.toml", "deadline_ms", "invalid type"],
    );
    refused_naming(
        &config(&[(
            "t",
            "s",
            &format!("{{ path = {calculator}, memory_mb = 5 }}"),
        )]),
        &["fjord.toml", "memory_mb"],
    );
    refused_naming(
        &config(&[(
            "t",
            "s",
            &format!("{{ path = {calculator}, dirs = [{{ host = \"/nonexistent/data\", guest = \"/data\" }}] }}"),
        )]),
        &["fjord.toml", "dirs", "/nonexistent/data"],
    );
}
