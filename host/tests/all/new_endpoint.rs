//! The README's "Write your own endpoint" commands, run as a newcomer would: `fjord new endpoint`,
//! one `cargo build` (or, for `--lang python`, the printed `scripts/build-python` command), the
//! printed config line in a host's config, then `fjord call`.

use crate::harness::{unique, workspace, Host, URL};
use crate::ops::scratch;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The `fjord` binary next to `fjord-host` (built here when `cargo test` did not build it yet).
fn fjord() -> PathBuf {
    let bin = crate::harness::host_bin().with_file_name("fjord");
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

    let _host = serve_template(&line, "new-endpoint");
}

/// Serves the endpoint of config item `line` on a fresh topic and checks the template's methods
/// through `fjord call`; returns the host and a caller of that topic for more.
fn serve_template(line: &str, prefix: &str) -> (Host, impl Fn(&[&str]) -> Output) {
    let topic = unique(prefix);
    let host = Host::start(&format!(
        "transport_url = \"{URL}\"\n[[server]]\ntopic = \"{topic}\"\nserver = \"server1\"\nendpoints = [{line}]\n"
    ));
    let call = move |args: &[&str]| {
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
    (host, call)
}

/// What `fjord new endpoint` printed after `prefix`.
fn printed(said: &str, prefix: &str) -> String {
    said.lines()
        .find_map(|l| l.split_once(prefix))
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{said}"))
}

#[test]
fn from_fjord_new_lang_python_to_fjord_call() {
    let dir = scratch("new-endpoint-py");
    let out = Command::new(fjord())
        .args(["new", "endpoint", "hello-py", "--lang", "python", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    let made = dir.join("hello-py");
    for file in [
        "app.py",
        "wit/hello-py.wit",
        "wit/deps/endpoint/endpoint.wit",
        "README.md",
    ] {
        assert!(made.join(file).is_file(), "{file} missing");
    }
    // The printed build command, exactly: scripts/build-python --out DIR/hello-py.wasm DIR.
    let build = printed(&said, "build:  ");
    let words: Vec<&str> = build.split_whitespace().collect();
    assert!(words[0].ends_with("scripts/build-python"), "{build}");
    let built = Command::new(words[0]).args(&words[1..]).output().unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let line = printed(&said, "endpoints in your fjord-host config: ");
    assert!(line.ends_with("hello-py.wasm\""), "{line}");

    let (_host, call) = serve_template(&line, "new-endpoint-py");
    let overflow = call(&["add", &format!("a={}", i64::MAX), "b=1"]);
    assert_eq!(overflow.status.code(), Some(1), "{overflow:?}");
    assert!(String::from_utf8_lossy(&overflow.stderr).starts_with("Overflow"));
    let empty = call(&["hello", "name=\"\""]);
    assert!(
        String::from_utf8_lossy(&empty.stderr).starts_with("ValueError: name must not be empty"),
        "{empty:?}"
    );
}
