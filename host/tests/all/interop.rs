//! The real oslo.messaging 18.3.1 client (Python, `interop/oslo_client.py`) calling fjord-host.

use crate::harness::{config, path_item, unique, wasm, workspace, Host, URL};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn python() -> std::path::PathBuf {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup (it creates .venv with oslo.messaging 18.3.1)",
        python.display()
    );
    python
}

/// Runs cases through the real oslo.messaging client; returns each case's outcome by id.
fn oslo_client(topic: &str, cases: &[Value]) -> HashMap<String, Value> {
    let mut child = Command::new(python())
        .arg(workspace().join("interop/oslo_client.py"))
        .args(["--url", URL, "--topic", topic, "--timeout", "20"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run interop/oslo_client.py");
    {
        let mut stdin = child.stdin.take().unwrap();
        for case in cases {
            writeln!(stdin, "{case}").unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let outcomes: HashMap<String, Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["id"].as_str()?.to_string(), v)))
        .collect();
    assert_eq!(
        outcomes.len(),
        cases.len(),
        "oslo_client.py answered {} of {} cases\nstdout:\n{stdout}\nstderr:\n{}",
        outcomes.len(),
        cases.len(),
        String::from_utf8_lossy(&output.stderr)
    );
    outcomes
}

fn calculator_host(topic: &str) -> Host {
    Host::start(&config(&[(
        topic,
        "server1",
        &format!(
            "{}, {{ path = {}, namespace = \"greet\" }}",
            path_item(&wasm("calculator")),
            path_item(&wasm("greeter"))
        ),
    )]))
}

#[test]
fn founding_scenario_from_python() {
    let topic = unique("interop-founding");
    let _host = calculator_host(&topic);
    let output = Command::new(python())
        .arg(workspace().join("interop/oslo_client.py"))
        .args(["--url", URL, "--topic", &topic, "--scenario"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["5", "5"]);
}

#[test]
fn python_sees_the_exceptions_a_python_server_raises() {
    let topic = unique("interop-failures");
    let _host = calculator_host(&topic);
    let out = oslo_client(
        &topic,
        &[
            json!({"id": "ok", "method": "add", "args": {"a": 40, "b": 2}}),
            json!({"id": "missing", "method": "add", "args": {"a": 2}}),
            json!({"id": "surplus", "method": "add", "args": {"a": 2, "b": 3, "c": 4}}),
            json!({"id": "ill_typed", "method": "add", "args": {"a": 2, "b": "x"}}),
            json!({"id": "no_method", "method": "nope", "args": {}}),
            json!({"id": "private", "method": "_add", "args": {"a": 1, "b": 1}}),
            json!({"id": "bad_version", "method": "add", "args": {"a": 1, "b": 1}, "version": "2.0"}),
            json!({"id": "newer_minor", "method": "add", "args": {"a": 1, "b": 1}, "version": "1.1"}),
            json!({"id": "bad_namespace", "method": "add", "args": {"a": 1, "b": 1}, "namespace": "zzz"}),
            json!({"id": "guest_err", "method": "divide", "args": {"dividend": 1, "divisor": 0}}),
        ],
    );
    assert_eq!(out["ok"]["result"], 42);
    for id in ["missing", "surplus", "ill_typed"] {
        assert_eq!(out[id]["exception"], "TypeError", "{id}: {}", out[id]);
        assert_eq!(out[id]["module"], "builtins", "{id}: a real TypeError");
    }
    assert!(out["missing"]["value"].as_str().unwrap().contains("'b'"));
    assert!(out["surplus"]["value"].as_str().unwrap().contains("'c'"));
    assert!(out["ill_typed"]["value"].as_str().unwrap().contains("b"));
    for (id, exc_type) in [
        ("no_method", "NoSuchMethod"),
        ("private", "NoSuchMethod"),
        ("bad_version", "UnsupportedVersion"),
        ("newer_minor", "UnsupportedVersion"),
        ("bad_namespace", "UnsupportedVersion"),
        ("guest_err", "DivisionByZero"),
    ] {
        assert_eq!(out[id]["exception"], "RemoteError", "{id}: {}", out[id]);
        assert_eq!(out[id]["exc_type"], exc_type, "{id}: {}", out[id]);
    }
    assert_eq!(
        out["no_method"]["value"],
        "Endpoint does not support RPC method nope"
    );
    assert_eq!(
        out["bad_version"]["value"],
        "Endpoint does not support RPC version 2.0. Attempted method: add"
    );
}

#[test]
fn python_passes_every_kind_of_value() {
    let topic = unique("interop-values");
    let _host = calculator_host(&topic);
    let out = oslo_client(
        &topic,
        &[
            json!({"id": "enum_option", "method": "divide", "args": {"dividend": 7, "divisor": 2, "rounding": "up"}}),
            json!({"id": "absent_option", "method": "divide", "args": {"dividend": 7, "divisor": 2}}),
            json!({"id": "list", "method": "sum", "args": {"values": [1, 2, 3, 4]}}),
            json!({"id": "records", "method": "centroid", "args": {"points": [{"x": 0.0, "y": 0.0}, {"x": 2.0, "y": 4.0}]}}),
            json!({"id": "none", "method": "centroid", "args": {"points": []}}),
            json!({"id": "namespaced", "method": "greet", "args": {"name": "oslo"}, "namespace": "greet", "version": "1.3"}),
            json!({"id": "context", "method": "context_json", "args": {}, "namespace": "greet",
                   "context": {"request_id": "req-interop", "user": "alice", "roles": ["admin"]}}),
        ],
    );
    assert_eq!(out["enum_option"]["result"], 4);
    assert_eq!(out["absent_option"]["result"], 3);
    assert_eq!(out["list"]["result"], 10);
    assert_eq!(out["records"]["result"], json!({"x": 1.0, "y": 2.0}));
    assert_eq!(out["none"]["result"], Value::Null);
    assert_eq!(out["namespaced"]["result"], "Hello, oslo!");
    let context: Value = serde_json::from_str(out["context"]["result"].as_str().unwrap()).unwrap();
    assert_eq!(context["request_id"], "req-interop");
    assert_eq!(context["user"], "alice");
    assert_eq!(context["roles"], json!(["admin"]));
}

#[test]
fn casts_and_fanout_casts_from_python_reach_fjord() {
    let topic = unique("interop-fanout");
    let calculator = path_item(&wasm("calculator"));
    let one = Host::start(&config(&[(&topic, "one", &calculator)]));
    let two = Host::start(&config(&[(&topic, "two", &calculator)]));
    let cast_id = unique("req-cast");
    let fanout_id = unique("req-fanout");
    let out = oslo_client(
        &topic,
        &[
            json!({"id": "cast", "kind": "cast", "method": "whoami", "args": {}, "context": {"request_id": cast_id}}),
            json!({"id": "fanout", "kind": "cast", "method": "whoami", "args": {}, "fanout": true, "context": {"request_id": fanout_id}}),
        ],
    );
    assert_eq!(out["cast"]["result"], Value::Null);
    assert_eq!(out["fanout"]["result"], Value::Null);
    // The fanout reaches both hosts; the plain cast exactly one of them.
    for host in [&one, &two] {
        assert!(
            host.wait_for(&fanout_id, Duration::from_secs(10)),
            "fanout cast did not reach a host:\n{}",
            host.log()
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(one.log().contains(&cast_id) || two.log().contains(&cast_id)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the cast reached no host"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !(one.log().contains(&cast_id) && two.log().contains(&cast_id)),
        "a plain cast was delivered twice"
    );
}
