//! The `fjord` command against the real oslo.messaging 18.3.1 server (`interop/oslo_server.py`)
//! over a real RabbitMQ at 127.0.0.1:5672: calls, casts, exit codes and masked passwords.

use std::process::{Command, Output};

use serde_json::{json, Value};

const URL: &str = "rabbit://guest:guest@127.0.0.1:5672/";
const SERVER: &str = "pyserver1";

#[path = "../../tests/support/python.rs"]
mod python;
use python::PyServer;

/// A Python server on a topic of its own.
fn start(name: &str) -> PyServer {
    let topic = format!("fjord_it_{name}_{}", uuid::Uuid::new_v4().simple());
    PyServer::spawn(URL, &topic, SERVER)
}

fn fjord(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(args)
        .env_remove("FJORD_TRANSPORT_URL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

#[test]
fn cli_against_python_server() {
    let server = start("cli");
    let t = server.topic.as_str();

    let out = fjord(&["call", "--url", URL, "--topic", t, "add", "a=2", "b=3"]);
    assert_eq!(stdout(&out), "5", "stderr: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));

    let out = fjord(&[
        "call",
        "--url",
        URL,
        "--topic",
        t,
        "--version",
        "1.0",
        "add",
        "a=2",
        "b=3",
    ]);
    assert_eq!(stdout(&out), "5", "stderr: {}", stderr(&out));

    // Default URL, server-directed; `name=bob` is a string, `a=2` a number.
    let out = fjord(&[
        "call", "--topic", t, "--server", SERVER, "add", "a=\"x\"", "b=y",
    ]);
    assert_eq!(stdout(&out), "\"xy\"", "stderr: {}", stderr(&out));

    let out = fjord(&[
        "call",
        "--topic",
        t,
        "--namespace",
        "calc",
        "--version",
        "1.1",
        "multiply",
        "a=6",
        "b=7",
    ]);
    assert_eq!(stdout(&out), "42", "stderr: {}", stderr(&out));

    let out = fjord(&[
        "call",
        "--topic",
        t,
        "--context",
        r#"{"user": "carol", "request_id": "req-9"}"#,
        "echo_context",
    ]);
    let ctx: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(ctx["user"], "carol");
    assert_eq!(ctx["request_id"], "req-9");

    let cases: [(&[&str], &str); 5] = [
        (
            &["nope"],
            "NoSuchMethod: Endpoint does not support RPC method nope",
        ),
        (
            &["_secret"],
            "NoSuchMethod: Endpoint does not support RPC method _secret",
        ),
        (
            &["--version", "2.0", "add", "a=1", "b=2"],
            "UnsupportedVersion: Endpoint does not support RPC version 2.0. Attempted method: add",
        ),
        (&["add", "a=1"], "TypeError: "),
        (&["fail", "message=oops"], "ValueError: oops"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["call", "--topic", t];
        args.extend_from_slice(extra);
        let out = fjord(&args);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with(expected),
            "{extra:?}: {}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), "");
    }

    // Casts: plain with context, and fanout.
    let out = fjord(&[
        "cast",
        "--topic",
        t,
        "--context",
        r#"{"user": "dave"}"#,
        "record",
        "n=1",
        "who=dave",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = server.next_record();
    assert_eq!(r["args"], json!({"n": 1, "who": "dave"}));
    assert_eq!(r["ctxt"]["user"], "dave");

    let out = fjord(&["cast", "--topic", t, "--fanout", "stop"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(server.next_record()["method"], "stop");

    // --config reads transport_url and control_exchange, ignoring the host's other keys.
    let dir = std::env::temp_dir().join(format!("fjord-it-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("my.toml");
    std::fs::write(
        &config,
        format!(
            "transport_url = \"{URL}\"\ncontrol_exchange = \"openstack\"\n\n[[server]]\ntopic = \"{t}\"\nserver = \"s\"\nendpoints = [\"x.wasm\"]\n"
        ),
    )
    .unwrap();
    let out = fjord(&[
        "call",
        "--config",
        config.to_str().unwrap(),
        "--topic",
        t,
        "add",
        "a=1",
        "b=1",
    ]);
    assert_eq!(stdout(&out), "2", "stderr: {}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_timeout_exits_2() {
    let topic = format!("fjord_it_nobody_{}", uuid::Uuid::new_v4().simple());
    let out = fjord(&[
        "call",
        "--url",
        URL,
        "--topic",
        &topic,
        "--timeout",
        "1",
        "add",
        "a=1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("Timed out waiting for a reply to message ID "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cli_bad_arguments_exit_3() {
    let out = fjord(&["call", "--topic", "t", "add", "novalue"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("novalue"), "{}", stderr(&out));
    let out = fjord(&["call", "--url", "kafka://h/", "--topic", "t", "add"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("kafka"), "{}", stderr(&out));
    let out = fjord(&["call", "--topic", "t", "--context", "[1]", "add"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn unreachable_broker_names_masked_address() {
    let secret = "pw-secret-42";
    let url_text = format!("rabbit://guest:{secret}@127.0.0.1:5999/");
    let out = fjord(&["call", "--url", &url_text, "--topic", "t", "add", "a=1"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains(
            "cannot connect to RabbitMQ at rabbit://guest:****@127.0.0.1:5999/: Connection refused"
        ),
        "{err}"
    );
    assert!(!err.contains(secret), "{err}");
    assert!(!stdout(&out).contains(secret));
}
