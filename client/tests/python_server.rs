//! fjord → Python: the real oslo.messaging 18.3.1 server (`interop/oslo_server.py`) answers
//! fjord's `RpcClient` over a real RabbitMQ at 127.0.0.1:5672 (the `fjord` command's own
//! tests against it are in `cli/tests/python_server.rs`).

use std::time::{Duration, Instant};

use fjord_client::{RpcClient, RpcError, Target, Transport, TransportUrl};
use serde_json::{json, Map, Value};

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

async fn client(topic: &str) -> RpcClient {
    let url = TransportUrl::parse(URL).unwrap();
    let transport = Transport::connect(&url).await.unwrap();
    RpcClient::new(transport, Target::new(topic))
        .prepare()
        .timeout(Duration::from_secs(20))
        .build()
}

fn no_ctx() -> Map<String, Value> {
    Map::new()
}

fn remote(err: RpcError) -> fjord_client::RemoteError {
    match err {
        RpcError::Remote(r) => r,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_client_calls_python_server() {
    let server = start("calls");
    let client = client(&server.topic).await;

    let sum: i64 = client
        .call(&no_ctx(), "add", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(sum, 5);

    let v10 = client.prepare().version("1.0").build();
    let sum: i64 = v10
        .call(&no_ctx(), "add", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(sum, 5);

    let mut args = Map::new();
    args.insert("a".into(), json!(20));
    args.insert("b".into(), json!(22));
    let directed = client.prepare().server(SERVER).build();
    let sum: i64 = directed.call(&no_ctx(), "add", args).await.unwrap();
    assert_eq!(sum, 42);

    let calc = client.prepare().namespace("calc").version("1.1").build();
    let product: i64 = calc
        .call(&no_ctx(), "multiply", json!({"a": 3, "b": 4}))
        .await
        .unwrap();
    assert_eq!(product, 12);
    let calc10 = client.prepare().namespace("calc").version("1.0").build();
    let product: i64 = calc10
        .call(&no_ctx(), "multiply", json!({"a": 3, "b": 5}))
        .await
        .unwrap();
    assert_eq!(product, 15);

    let mut ctx = Map::new();
    ctx.insert("user".into(), json!("alice"));
    ctx.insert("request_id".into(), json!("req-123"));
    ctx.insert("roles".into(), json!(["admin"]));
    let seen: Map<String, Value> = client.call(&ctx, "echo_context", json!({})).await.unwrap();
    assert_eq!(seen["user"], "alice");
    assert_eq!(seen["request_id"], "req-123");
    assert_eq!(seen["roles"], json!(["admin"]));

    // Concurrent calls share the one reply queue and each gets its own answer.
    let mut results = Vec::new();
    for i in 0..10i64 {
        let c = client.clone();
        results.push(tokio::spawn(async move {
            c.call::<i64>(&Map::new(), "add", json!({"a": i, "b": 100}))
                .await
        }));
    }
    for (i, handle) in results.into_iter().enumerate() {
        assert_eq!(handle.await.unwrap().unwrap(), i as i64 + 100);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_failures_arrive_as_remote_errors() {
    let server = start("failures");
    let client = client(&server.topic).await;

    let e = remote(
        client
            .call::<Value>(&no_ctx(), "nope", json!({}))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.class, "NoSuchMethod");
    assert_eq!(e.module, "oslo_messaging.rpc.dispatcher");
    assert_eq!(e.message, "Endpoint does not support RPC method nope");

    let e = remote(
        client
            .call::<Value>(&no_ctx(), "_secret", json!({}))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.class, "NoSuchMethod");

    let e = remote(
        client
            .prepare()
            .version("2.0")
            .build()
            .call::<Value>(&no_ctx(), "add", json!({"a": 1, "b": 1}))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.class, "UnsupportedVersion");
    assert_eq!(
        e.message,
        "Endpoint does not support RPC version 2.0. Attempted method: add"
    );

    let e = remote(
        client
            .prepare()
            .namespace("zzz")
            .build()
            .call::<Value>(&no_ctx(), "add", json!({"a": 1, "b": 1}))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.class, "UnsupportedVersion");

    let e = remote(
        client
            .call::<Value>(&no_ctx(), "add", json!({"a": 2}))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("TypeError", "builtins")
    );
    assert!(e.message.contains("'b'"), "{}", e.message);

    let e = remote(
        client
            .call::<Value>(&no_ctx(), "fail", json!({"message": "no good"}))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("ValueError", "builtins")
    );
    assert_eq!(e.to_string(), "ValueError: no good");

    // A result of the wrong type is a decode error, not a panic.
    let err = client
        .call::<String>(&no_ctx(), "add", json!({"a": 1, "b": 1}))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::BadResult(_)), "{err:?}");

    // call with fanout is refused before anything is sent.
    let err = client
        .prepare()
        .fanout(true)
        .build()
        .call::<Value>(&no_ctx(), "add", json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::InvalidTarget(_)), "{err:?}");

    let err = client
        .call::<Value>(&no_ctx(), "add", json!([1, 2]))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::InvalidArguments(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn call_without_server_times_out() {
    let topic = format!("fjord_it_nobody_{}", uuid::Uuid::new_v4().simple());
    let client = client(&topic)
        .await
        .prepare()
        .timeout(Duration::from_millis(1500))
        .build();
    let started = Instant::now();
    let err = client
        .call::<Value>(&no_ctx(), "add", json!({"a": 1, "b": 2}))
        .await
        .unwrap_err();
    let RpcError::Timeout(t) = err else {
        panic!("expected a timeout, got {err:?}")
    };
    assert_eq!(
        t.to_string(),
        format!("Timed out waiting for a reply to message ID {}", t.msg_id)
    );
    assert_eq!(t.msg_id.len(), 32);
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn casts_and_fanout_casts_reach_python_server() {
    let server = start("casts");
    let client = client(&server.topic).await;
    let mut ctx = Map::new();
    ctx.insert("user".into(), json!("bob"));

    client
        .cast(&ctx, "record", json!({"kind": "cast", "n": 1}))
        .await
        .unwrap();
    let r = server.next_record();
    assert_eq!(r["method"], "record");
    assert_eq!(r["args"], json!({"kind": "cast", "n": 1}));
    assert_eq!(r["ctxt"]["user"], "bob");

    client
        .prepare()
        .server(SERVER)
        .build()
        .cast(&no_ctx(), "record", json!({"kind": "directed"}))
        .await
        .unwrap();
    assert_eq!(server.next_record()["args"]["kind"], "directed");

    client
        .prepare()
        .fanout(true)
        .build()
        .cast(&no_ctx(), "stop", json!({"kind": "fanout"}))
        .await
        .unwrap();
    let r = server.next_record();
    assert_eq!(r["method"], "stop");
    assert_eq!(r["args"]["kind"], "fanout");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_broker_names_masked_address() {
    let secret = "pw-secret-42";
    let url_text = format!("rabbit://guest:{secret}@127.0.0.1:5999/");
    let url = TransportUrl::parse(&url_text).unwrap();
    let err = Transport::connect(&url).await.unwrap_err().to_string();
    assert!(err.contains("rabbit://guest:****@127.0.0.1:5999/"), "{err}");
    assert!(!err.contains(secret), "{err}");
}
