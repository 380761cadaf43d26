//! Python endpoints (componentize-py with the guest SDK `guest-sdk/python/fjord_guest`), through
//! the broker: an uncaught exception reaches fjord's client and the real oslo.messaging client as
//! a Python server's would (its traceback in the host's log, tagged with the request id),
//! `RemoteError` raises exactly its class, and the context and `logging` reach the guest and the
//! host. The endpoint is `tests/components/pyfail` (built by scripts/build-python).

use crate::harness::{config, context, path_item, unique, wasm, Host};
use crate::interop::oslo_client;
use crate::rpc::client;
use fjord_client::{RemoteError, RpcClient, RpcError};
use serde_json::{json, Map, Value};
use std::time::Duration;

fn pyfail_host(topic: &str) -> Host {
    Host::start(&config(&[(topic, "server1", &path_item(&wasm("pyfail")))]))
}

async fn remote(c: &RpcClient, ctx: &Map<String, Value>, method: &str, args: Value) -> RemoteError {
    match c.call::<Value>(ctx, method, args.clone()).await {
        Err(RpcError::Remote(e)) => e,
        other => panic!("{method}({args}): expected a remote failure, got {other:?}"),
    }
}

/// The lines of the host's log that contain every one of `needles`.
fn lines_with(host: &Host, needles: &[&str]) -> Vec<String> {
    host.log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn exceptions_reach_fjords_client_as_a_python_server_raises_them() {
    let topic = unique("py-exceptions");
    let host = pyfail_host(&topic);
    let c = client(&topic).await;
    let none = Map::new();

    let three: i64 = c
        .call(&none, "floordiv", json!({"a": 7, "b": 2}))
        .await
        .unwrap();
    assert_eq!(three, 3);

    // `a // 0`, uncaught: the class and message of a Python server, not GuestTrap.
    let request_id = unique("req-zero");
    let ctx = context(json!({ "request_id": request_id }));
    let e = remote(&c, &ctx, "floordiv", json!({"a": 1, "b": 0})).await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("ZeroDivisionError", "builtins"),
        "{e:?}"
    );
    assert!(e.message.contains("by zero"), "{}", e.message);
    // The traceback is in the host's log, each line tagged with the call's request id.
    assert!(
        host.wait_for("Traceback (most recent call last)", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    let traceback = lines_with(&host, &[&request_id, "traceback"]);
    assert!(
        traceback
            .iter()
            .any(|l| l.contains("Traceback (most recent call last)")),
        "{}",
        host.log()
    );
    assert!(
        traceback.iter().any(|l| l.contains("in floordiv")),
        "the traceback names the failing function:\n{}",
        host.log()
    );

    // RemoteError: exactly the class named, from a function without an error type ...
    let e = remote(
        &c,
        &none,
        "reject",
        json!({"module": "nova.exception", "class": "NoValidHost", "message": "no host has 4 GiB free"}),
    )
    .await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str(), e.message.as_str()),
        ("NoValidHost", "nova.exception", "no host has 4 GiB free")
    );
    // ... and as the `err` of a `result<T, remote-error>`.
    let e = remote(
        &c,
        &none,
        "refuse",
        json!({"module": "builtins", "class": "ValueError", "message": "size must be positive"}),
    )
    .await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str(), e.message.as_str()),
        ("ValueError", "builtins", "size must be positive")
    );
    // An exception class of the endpoint's own module.
    let e = remote(&c, &none, "custom", json!({"message": "over quota"})).await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str(), e.message.as_str()),
        ("QuotaExceeded", "app", "over quota")
    );
    // A context key the caller did not send: KeyError, as `ctxt[key]` in a Python server.
    let e = remote(&c, &none, "context_value", json!({"key": "missing"})).await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("KeyError", "builtins")
    );
    assert!(e.message.contains("missing"), "{}", e.message);

    // The host checks what the guest reports: a class with a space is not passed on, the call
    // stays a GuestTrap and the host says why.
    let e = remote(
        &c,
        &none,
        "reject",
        json!({"module": "m", "class": "Bad Name", "message": "x"}),
    )
    .await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("GuestTrap", "fjord")
    );
    assert!(
        host.wait_for("unusable module or class", Duration::from_secs(10)),
        "{}",
        host.log()
    );

    // componentize-py's build-time hook `init` is no RPC method.
    let e = remote(&c, &none, "init", json!({})).await;
    assert_eq!(e.class, "NoSuchMethod", "{e:?}");

    // An exception the function catches itself is no failure.
    let fine: String = c.call(&none, "recover", json!({})).await.unwrap();
    assert_eq!(fine, "recovered from KeyError 'missing'");
    // And after all of that the endpoint serves normally.
    let three: i64 = c
        .call(&none, "floordiv", json!({"a": 9, "b": 3}))
        .await
        .unwrap();
    assert_eq!(three, 3);
}

#[tokio::test]
async fn context_and_logging_reach_the_python_guest_and_the_host() {
    let topic = unique("py-context");
    // Two Python endpoints on one server: componentize-py's `init` export of each is no method,
    // so they do not clash.
    let host = Host::start(&config(&[(
        &topic,
        "server1",
        &format!(
            "{}, {}",
            path_item(&wasm("pyfail")),
            path_item(&wasm("calculator-py"))
        ),
    )]));
    let c = client(&topic).await;
    let five: i64 = c
        .call(&Map::new(), "add", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(five, 5);
    let request_id = unique("req-py");
    let ctx = context(json!({
        "request_id": request_id, "user_id": "alice", "project_id": "p1",
        "roles": ["admin"], "quota": {"cores": 4}
    }));
    let ids: String = c.call(&ctx, "context_ids", json!({})).await.unwrap();
    assert_eq!(ids, format!("{request_id} alice p1"));
    let anonymous: String = c.call(&Map::new(), "context_ids", json!({})).await.unwrap();
    assert_eq!(anonymous, "- - -");
    let roles: String = c
        .call(&ctx, "context_value", json!({"key": "roles"}))
        .await
        .unwrap();
    assert_eq!(roles, r#"["admin"]"#);
    let quota: String = c
        .call(&ctx, "context_value", json!({"key": "quota"}))
        .await
        .unwrap();
    assert_eq!(quota, r#"{"cores": 4}"#);

    // Python's logging goes to the host's log at its level, tagged with the request id.
    let marker = unique("shouted");
    let () = c
        .call(
            &ctx,
            "shout",
            json!({"level": "warning", "message": marker}),
        )
        .await
        .unwrap();
    assert!(
        host.wait_for(&marker, Duration::from_secs(10)),
        "{}",
        host.log()
    );
    let lines = lines_with(&host, &[&marker, &request_id]);
    assert!(
        lines.iter().any(|l| l.contains("WARN")),
        "one WARN line with the request id: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("pyfail: ")),
        "the logger's name: {lines:?}"
    );
}

/// The real oslo.messaging client raises a Python endpoint's uncaught builtins exception as
/// itself, and names any other class in a RemoteError, as against a Python server.
#[test]
fn the_oslo_client_gets_the_exceptions_of_a_python_endpoint() {
    let topic = unique("py-oslo");
    let _host = pyfail_host(&topic);
    let out = oslo_client(
        &topic,
        &[
            json!({"id": "ok", "method": "floordiv", "args": {"a": 8, "b": 3}}),
            json!({"id": "zero", "method": "floordiv", "args": {"a": 1, "b": 0}}),
            json!({"id": "key", "method": "context_value", "args": {"key": "nope"}}),
            json!({"id": "value", "method": "refuse",
                   "args": {"module": "builtins", "class": "ValueError", "message": "bad size"}}),
            json!({"id": "nova", "method": "reject",
                   "args": {"module": "nova.exception", "class": "NoValidHost", "message": "no host"}}),
            json!({"id": "custom", "method": "custom", "args": {"message": "over quota"}}),
        ],
    );
    assert_eq!(out["ok"]["result"], 2, "{}", out["ok"]);
    assert_eq!(
        out["zero"]["exception"], "ZeroDivisionError",
        "{}",
        out["zero"]
    );
    assert_eq!(
        out["zero"]["module"], "builtins",
        "a real ZeroDivisionError"
    );
    assert!(
        out["zero"]["value"]
            .as_str()
            .unwrap_or("")
            .contains("by zero"),
        "{}",
        out["zero"]
    );
    assert_eq!(out["key"]["exception"], "KeyError", "{}", out["key"]);
    assert_eq!(out["value"]["exception"], "ValueError", "{}", out["value"]);
    assert_eq!(out["value"]["value"], "bad size");
    for (id, class) in [("nova", "NoValidHost"), ("custom", "QuotaExceeded")] {
        assert_eq!(out[id]["exception"], "RemoteError", "{id}: {}", out[id]);
        assert_eq!(out[id]["exc_type"], class, "{id}: {}", out[id]);
    }
}

/// What a guest reports is bounded by the host: the message is cut at 64 KiB, then the reply limit
/// applies; names over 255 bytes are not passed on; the memory cap and the deadline win over
/// whatever Python raises on the way.
#[tokio::test]
async fn the_host_bounds_what_a_python_guest_reports() {
    let (topic, small) = (unique("py-bounds"), unique("py-bounds-small"));
    let pyfail = path_item(&wasm("pyfail"));
    let _host = Host::start(&config(&[
        (
            &topic,
            "server1",
            &format!("{{ path = {pyfail}, memory_mib = 64, deadline_ms = 2000 }}"),
        ),
        (
            &small,
            "server1",
            &format!("{{ path = {pyfail}, max_reply_kib = 32 }}"),
        ),
    ]));
    let c = client(&topic).await;
    let none = Map::new();
    let long = "m".repeat(100 * 1024);
    let e = remote(
        &c,
        &none,
        "reject",
        json!({"module": "builtins", "class": "ValueError", "message": long}),
    )
    .await;
    assert_eq!(e.class, "ValueError");
    assert_eq!(e.message.len(), 64 * 1024, "cut at 64 KiB");
    let e = remote(
        &client(&small).await,
        &none,
        "reject",
        json!({"module": "builtins", "class": "ValueError", "message": "m".repeat(40 * 1024)}),
    )
    .await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("ReplyTooLarge", "fjord")
    );
    let e = remote(
        &c,
        &none,
        "reject",
        json!({"module": "m".repeat(256), "class": "C", "message": "x"}),
    )
    .await;
    assert_eq!(e.class, "GuestTrap", "a 256-byte module is not passed on");

    let ten: u32 = c.call(&none, "hog", json!({"mib": 10})).await.unwrap();
    assert_eq!(ten, 10);
    let e = remote(&c, &none, "hog", json!({"mib": 200})).await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("MemoryLimitExceeded", "fjord"),
        "{e:?}"
    );
    let e = remote(&c, &none, "spin", json!({})).await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("DeadlineExceeded", "fjord"),
        "{e:?}"
    );
    let still: i64 = c
        .call(&none, "floordiv", json!({"a": 4, "b": 2}))
        .await
        .unwrap();
    assert_eq!(still, 2);
}
