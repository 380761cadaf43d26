//! The real oslo.messaging 18.3.1 client (Python, `interop/oslo_client.py`) calling fjord-host.

use crate::harness::{config, path_item, unique, wasm, workspace, Host, URL};
#[path = "../../../tests/support/python.rs"]
pub mod python;
use python::{python, PyServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

// The tests that call the calculator run against the Rust one and the Python one.
crate::for_each_calculator! {
    async: [python_and_fjord_servers_share_a_topic]
    sync: [
        founding_scenario_from_python,
        python_sees_the_exceptions_a_python_server_raises,
        python_passes_every_kind_of_value,
        casts_and_fanout_casts_from_python_reach_fjord,
    ]
}

/// Runs cases through the real oslo.messaging client; returns each case's outcome by id.
pub fn oslo_client(topic: &str, cases: &[Value]) -> HashMap<String, Value> {
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

fn calculator_host(calculator: &str, topic: &str) -> Host {
    Host::start(&config(&[(
        topic,
        "server1",
        &format!(
            "{}, {{ path = {}, namespace = \"greet\" }}",
            path_item(&wasm(calculator)),
            path_item(&wasm("greeter"))
        ),
    )]))
}

fn founding_scenario_from_python(calculator: &str) {
    let topic = unique("interop-founding");
    let _host = calculator_host(calculator, &topic);
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

fn python_sees_the_exceptions_a_python_server_raises(calculator: &str) {
    let topic = unique("interop-failures");
    let _host = calculator_host(calculator, &topic);
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
            json!({"id": "remote_builtin", "method": "raise_remote", "namespace": "greet",
                   "args": {"module": "builtins", "class": "ValueError", "message": "size must be positive"}}),
            json!({"id": "remote_other", "method": "raise_remote", "namespace": "greet",
                   "args": {"module": "nova.exception", "class": "NoValidHost", "message": "no host has 4 GiB free"}}),
        ],
    );
    // fjord:endpoint/types.remote-error: a builtins class is raised as itself, any other names
    // its class in a RemoteError, as from a Python server.
    assert_eq!(
        out["remote_builtin"]["exception"], "ValueError",
        "{}",
        out["remote_builtin"]
    );
    assert_eq!(out["remote_builtin"]["module"], "builtins");
    assert_eq!(out["remote_builtin"]["value"], "size must be positive");
    assert_eq!(
        out["remote_other"]["exception"], "RemoteError",
        "{}",
        out["remote_other"]
    );
    assert_eq!(out["remote_other"]["exc_type"], "NoValidHost");
    assert_eq!(out["remote_other"]["value"], "no host has 4 GiB free");
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

fn python_passes_every_kind_of_value(calculator: &str) {
    let topic = unique("interop-values");
    let _host = calculator_host(calculator, &topic);
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

fn casts_and_fanout_casts_from_python_reach_fjord(calculator: &str) {
    let topic = unique("interop-fanout");
    let calculator = path_item(&wasm(calculator));
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

/// Queue properties as RabbitMQ reports them: (name, durable, auto_delete, exclusive, arguments).
fn queues_of(topic: &str) -> Vec<(String, Value, Value, Value, Value)> {
    let out = Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--formatter", "json"])
        .args(["name", "durable", "auto_delete", "exclusive", "arguments"])
        .output()
        .expect("rabbitmqctl is needed to compare queue declarations");
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    all.into_iter()
        .filter(|q| q["name"].as_str().is_some_and(|n| n.starts_with(topic)))
        .map(|q| {
            (
                q["name"].as_str().unwrap_or_default().to_string(),
                q["durable"].clone(),
                q["auto_delete"].clone(),
                q["exclusive"].clone(),
                q["arguments"].clone(),
            )
        })
        .collect()
}

/// Python and fjord servers on one topic declare the same exchanges and queues with the same flags
/// (a mismatch is a 406 that stops whoever declares second), share the calls, and fjord's
/// fanout queue looks exactly like oslo's.
async fn python_and_fjord_servers_share_a_topic(calculator: &str) {
    use fjord_client::{RpcClient, Target, Transport, TransportUrl};
    let topic = unique("interop-shared");
    let _py1 = PyServer::spawn(URL, &topic, "py1");
    let fjord = Host::start(&config(&[(&topic, "fj1", &path_item(&wasm(calculator)))]));
    let _py2 = PyServer::spawn(URL, &topic, "py2");

    let transport = Transport::connect(&TransportUrl::parse(URL).unwrap())
        .await
        .unwrap();
    let client = RpcClient::new(transport, Target::new(&topic));
    for i in 0..20i64 {
        let sum: i64 = client
            .call(&Default::default(), "add", json!({"a": i, "b": 1}))
            .await
            .unwrap();
        assert_eq!(sum, i + 1);
    }
    for server in ["py1", "fj1", "py2"] {
        let sum: i64 = client
            .prepare()
            .server(server)
            .build()
            .call(&Default::default(), "add", json!({"a": 1, "b": 1}))
            .await
            .unwrap();
        assert_eq!(sum, 2, "server {server}");
    }
    assert!(
        !fjord.log().contains("PRECONDITION_FAILED"),
        "{}",
        fjord.log()
    );

    let queues = queues_of(&topic);
    let flags = |name: &str| {
        queues
            .iter()
            .find(|q| q.0 == name)
            .map(|q| (q.1.clone(), q.2.clone(), q.3.clone(), q.4.clone()))
            .unwrap_or_else(|| panic!("no queue {name} in {queues:?}"))
    };
    assert_eq!(
        flags(&format!("{topic}.fj1")),
        flags(&format!("{topic}.py1"))
    );
    let fanout: Vec<_> = queues
        .iter()
        .filter(|q| q.0.starts_with(&format!("{topic}_fanout_")))
        .collect();
    assert_eq!(fanout.len(), 3, "one fanout queue per server: {queues:?}");
    for q in &fanout {
        assert_eq!(
            (&q.1, &q.2, &q.3, &q.4),
            (&fanout[0].1, &fanout[0].2, &fanout[0].3, &fanout[0].4),
            "fanout queues differ: {fanout:?}"
        );
    }
    // A signed 32-bit int, as kombu sends it.
    assert_eq!(fanout[0].4, json!([["x-expires", "signedint", 1800000]]));
}
