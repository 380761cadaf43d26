//! The README's "Write your own endpoint" commands, run as a newcomer would: `fjord new endpoint`,
//! one `cargo build`, the printed config line in a host's config, then `fjord call`.

use crate::harness::{unique, workspace, Host, URL};
use crate::ops::scratch;
use std::path::PathBuf;
use std::process::Command;

/// The `fjord` binary next to `fjord-host` (built here when `cargo test` did not build it yet).
fn fjord() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_fjord-host")).with_file_name("fjord");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "fjord-cli", "--bin", "fjord"])
            .current_dir(workspace())
            .status()
            .unwrap();
        assert!(status.success());
    }
    bin
}

#[test]
fn from_fjord_new_to_fjord_call() {
    let dir = scratch("new-endpoint");
    let out = Command::new(fjord())
        .args(["new", "endpoint", "hello-world", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    let crate_dir = dir.join("hello-world");
    for file in ["Cargo.toml", "wit/hello-world.wit", "src/lib.rs"] {
        assert!(crate_dir.join(file).is_file(), "{file} missing");
    }
    let wit = std::fs::read_to_string(crate_dir.join("wit/hello-world.wit")).unwrap();
    assert!(wit.contains("package local:hello-world@1.0.0;"), "{wit}");
    // The line to add to the config, as printed.
    let line = said
        .lines()
        .find_map(|l| l.split_once("endpoints in your fjord-host config: "))
        .map(|(_, item)| item.to_string())
        .unwrap_or_else(|| panic!("no config line in:\n{said}"));
    assert!(line.ends_with("hello_world.wasm\""), "{line}");

    // Making it again is refused rather than overwriting.
    let again = Command::new(fjord())
        .args(["new", "endpoint", "hello-world", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let python = Command::new(fjord())
        .args(["new", "endpoint", "hello-py", "--lang", "python", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!python.status.success());
    assert!(String::from_utf8_lossy(&python.stderr).contains("--lang python"));

    // The one build command.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&crate_dir)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );

    let topic = unique("new-endpoint");
    let _host = Host::start(&format!(
        "transport_url = \"{URL}\"\n[[server]]\ntopic = \"{topic}\"\nserver = \"server1\"\nendpoints = [{line}]\n"
    ));
    let call = |args: &[&str]| {
        Command::new(fjord())
            .args(["call", "--topic", &topic, "--timeout", "20"])
            .args(args)
            .output()
            .unwrap()
    };
    let hello = call(&["hello", "name=world"]);
    assert!(hello.status.success(), "{hello:?}");
    assert_eq!(
        String::from_utf8_lossy(&hello.stdout).trim(),
        "\"Hello, world!\""
    );
    let sum = call(&["add", "a=2", "b=3"]);
    assert_eq!(String::from_utf8_lossy(&sum.stdout).trim(), "5");
}
