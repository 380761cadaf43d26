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
    assert!(log.contains("use-counter"), "{log}");
    assert!(log.contains("resourceful.wasm"), "{log}");
    assert!(log.contains("resource"), "{log}");
}

#[test]
fn missing_and_invalid_files() {
    let log = refused(&config(&[("t", "s", "\"/nonexistent/missing.wasm\"")]));
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
