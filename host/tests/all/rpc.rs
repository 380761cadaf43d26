//! fjord's client calling fjord-host: call, cast, fanout, prepare(...), every failure class, and
//! several endpoints and servers in one host.

use crate::harness::{config, context, path_item, unique, wasm, Host, URL};
use fjord_client::{RemoteError, RpcClient, RpcError, Target, Transport, TransportUrl};
use serde_json::{json, Map, Value};
use std::time::Duration;

// The tests that exercise the calculator run against the Rust one and the Python one.
crate::for_each_calculator! {
    async: [
        call_and_prepare_version,
        every_failure_class,
        context_reaches_the_guest,
        casts_fanout_and_servers,
        several_servers_in_one_host,
    ]
}

/// A client of `topic` with a 20 s timeout.
pub async fn client(topic: &str) -> RpcClient {
    let url = TransportUrl::parse(URL).unwrap();
    let transport = Transport::connect(&url).await.unwrap();
    RpcClient::new(transport, Target::new(topic))
        .prepare()
        .timeout(Duration::from_secs(20))
        .build()
}

fn no_context() -> Map<String, Value> {
    Map::new()
}

/// The remote failure of a call that must fail.
async fn remote(client: &RpcClient, method: &str, args: Value) -> RemoteError {
    match client
        .call::<Value>(&no_context(), method, args.clone())
        .await
    {
        Err(RpcError::Remote(e)) => e,
        other => panic!("{method}({args}): expected a remote failure, got {other:?}"),
    }
}

/// A host with the calculator and (in namespace `greet`) the greeter on topic/server1.
pub fn standard_host(topic: &str, greeter_settings: &str) -> Host {
    calculator_host("calculator", topic, greeter_settings)
}

/// [`standard_host`] with this calculator (one of `harness::CALCULATORS`).
fn calculator_host(calculator: &str, topic: &str, greeter_settings: &str) -> Host {
    Host::start(&config(&[(
        topic,
        "server1",
        &format!(
            "{}, {{ path = {}, namespace = \"greet\" {greeter_settings} }}",
            path_item(&wasm(calculator)),
            path_item(&wasm("greeter"))
        ),
    )]))
}

async fn call_and_prepare_version(calculator: &str) {
    let topic = unique("rpc-call");
    let _host = calculator_host(calculator, &topic, "");
    let c = client(&topic).await;
    let five: i64 = c
        .call(&no_context(), "add", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(five, 5);
    let v10 = c.prepare().version("1.0").build();
    assert_eq!(
        v10.call::<i64>(&no_context(), "add", json!({"a": 2, "b": 3}))
            .await
            .unwrap(),
        5
    );
    let server = c.prepare().server("server1").build();
    assert_eq!(
        server
            .call::<i64>(&no_context(), "add", json!({"a": -2, "b": 3}))
            .await
            .unwrap(),
        1
    );
}

async fn every_failure_class(calculator: &str) {
    let topic = unique("rpc-failures");
    let _host = calculator_host(calculator, &topic, ", deadline_ms = 1000");
    let c = client(&topic).await;

    let e = remote(&c, "nope", json!({})).await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("NoSuchMethod", "oslo_messaging.rpc.dispatcher")
    );
    assert_eq!(e.message, "Endpoint does not support RPC method nope");
    assert_eq!(
        remote(&c, "_add", json!({"a": 1, "b": 1})).await.class,
        "NoSuchMethod"
    );

    let v2 = c.prepare().version("2.0").build();
    let e = remote(&v2, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(e.class, "UnsupportedVersion");
    assert_eq!(
        e.message,
        "Endpoint does not support RPC version 2.0. Attempted method: add"
    );
    let garbage = c.prepare().version("one.two").build();
    assert_eq!(
        remote(&garbage, "add", json!({"a": 1, "b": 1})).await.class,
        "ValueError"
    );

    let e = remote(&c, "add", json!({"a": 1})).await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("TypeError", "builtins")
    );
    assert!(e.message.contains("'b'"), "{}", e.message);
    let e = remote(&c, "add", json!({"a": 1, "b": 2, "c": 3})).await;
    assert!(
        e.message.contains("unexpected keyword argument 'c'"),
        "{}",
        e.message
    );
    let e = remote(&c, "add", json!({"a": 1, "b": "x"})).await;
    assert_eq!(e.class, "TypeError");
    assert!(e.message.contains("argument b"), "{}", e.message);
    let e = remote(&c, "add", json!({"a": 1, "b": 1.5})).await;
    assert_eq!(e.class, "TypeError");
    let e = remote(&c, "centroid", json!({"points": [{"x": 1.0}]})).await;
    assert!(
        e.message.contains("points[0].y: missing field"),
        "{}",
        e.message
    );

    // The guest's err: an enum/variant case is the class, anything else EndpointError.
    let e = remote(&c, "divide", json!({"dividend": 1, "divisor": 0})).await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("DivisionByZero", "fjord:calculator/calculator")
    );
    let e = remote(&c, "sum", json!({"values": [i64::MAX, 1]})).await;
    assert_eq!(e.class, "Overflow");
    let greet = c.prepare().namespace("greet").build();
    let e = remote(&greet, "fail", json!({"kind": "not-found"})).await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("NotFound", "fjord:greeter/greeter")
    );
    let e = remote(&greet, "fail", json!({"kind": "other"})).await;
    assert_eq!(e.class, "PermissionDenied");
    let ok: String = greet
        .call(&no_context(), "fail", json!({"kind": "ok"}))
        .await
        .unwrap();
    assert_eq!(ok, "fine");
    // A remote-error is exactly the exception it names.
    let e = remote(
        &greet,
        "raise_remote",
        json!({"module": "nova.exception", "class": "NoValidHost", "message": "no host has 4 GiB free"}),
    )
    .await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str(), e.message.as_str()),
        ("NoValidHost", "nova.exception", "no host has 4 GiB free")
    );
    let e = remote(&greet, "fail_text", json!({})).await;
    assert_eq!(
        (e.class.as_str(), e.message.as_str()),
        ("EndpointError", "plain text failure")
    );

    // A Rust guest ends a call with an exception through fjord:endpoint/failure, whatever its
    // function's result type (fjord_guest::failure::raise: report, then panic).
    let e = remote(
        &greet,
        "raise_builtin",
        json!({"class": "ValueError", "message": "not today"}),
    )
    .await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str(), e.message.as_str()),
        ("ValueError", "builtins", "not today")
    );

    // Traps and deadlines are fjord's own classes, and the next call is served normally.
    let e = remote(&greet, "crash", json!({})).await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("GuestTrap", "fjord")
    );
    assert!(e.message.contains("boom"), "{}", e.message);
    let e = remote(&greet, "sleep_ms", json!({"ms": 5000})).await;
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("DeadlineExceeded", "fjord")
    );
    let hello: String = greet
        .call(&no_context(), "greet", json!({"name": "again"}))
        .await
        .unwrap();
    assert_eq!(hello, "Hello, again!");
}

#[tokio::test]
async fn namespaces_and_versions() {
    let topic = unique("rpc-namespaces");
    let _host = standard_host(&topic, "");
    let c = client(&topic).await;
    // The greeter is in namespace `greet` at version 1.3.
    let e = remote(&c, "greet", json!({"name": "x"})).await;
    assert_eq!(
        e.class, "NoSuchMethod",
        "no namespace, version 1.0: the calculator, without greet"
    );
    let greet = c.prepare().namespace("greet").build();
    for version in ["1.0", "1.2", "1.3"] {
        let hello: String = greet
            .prepare()
            .version(version)
            .build()
            .call(&no_context(), "greet", json!({"name": version}))
            .await
            .unwrap();
        assert_eq!(hello, format!("Hello, {version}!"));
    }
    for version in ["1.4", "2.0", "1.3.1"] {
        let e = remote(
            &greet.prepare().version(version).build(),
            "greet",
            json!({"name": "x"}),
        )
        .await;
        assert_eq!(e.class, "UnsupportedVersion", "version {version}");
    }
    let e = remote(&greet, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(e.class, "NoSuchMethod", "namespace greet has no add");
    let unknown = c.prepare().namespace("zzz").build();
    assert_eq!(
        remote(&unknown, "add", json!({"a": 1, "b": 2})).await.class,
        "UnsupportedVersion"
    );
}

async fn context_reaches_the_guest(calculator: &str) {
    let topic = unique("rpc-context");
    let host = calculator_host(calculator, &topic, "");
    let c = client(&topic).await;
    let ctx = context(
        json!({"request_id": "req-42", "user_id": "alice", "project_id": "p1", "roles": ["admin"], "n": 3}),
    );
    let me: String = c.call(&ctx, "whoami", json!({})).await.unwrap();
    assert_eq!(me, "alice@p1");
    // The calculator's log line reaches the host's log, tagged with the request id.
    assert!(
        host.wait_for("whoami for request req-42", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    let anonymous: String = c.call(&no_context(), "whoami", json!({})).await.unwrap();
    assert_eq!(anonymous, "anonymous@anonymous");
    let greet = c.prepare().namespace("greet").build();
    let text: String = greet.call(&ctx, "context_json", json!({})).await.unwrap();
    let seen: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(seen["roles"], json!(["admin"]));
    assert_eq!(seen["n"], 3);
    assert_eq!(seen["request_id"], "req-42");
}

#[tokio::test]
async fn every_type_through_a_guest() {
    let topic = unique("rpc-types");
    let _host = Host::start(&config(&[(&topic, "s", &path_item(&wasm("types")))]));
    let c = client(&topic).await;
    let cases = [
        ("echo_bool", json!(true)),
        ("echo_s8", json!(-5)),
        ("echo_u8", json!(250)),
        ("echo_s16", json!(-300)),
        ("echo_u16", json!(60000)),
        ("echo_s32", json!(-70000)),
        ("echo_u32", json!(4000000000u32)),
        ("echo_s64", json!(i64::MIN)),
        ("echo_u64", json!(u64::MAX)),
        ("echo_f32", json!(0.5)),
        ("echo_f64", json!(2.25)),
        ("echo_char", json!("ß")),
        ("echo_string", json!("snow ❄")),
        ("echo_list", json!([1, 2, 3])),
        ("echo_nested", json!([["a", "b"], []])),
        ("echo_tuple", json!(["t", 9])),
        (
            "echo_record",
            json!({"host_name": "h", "port": 5672, "tags": ["x"], "weight": null}),
        ),
        ("echo_option", json!(null)),
        ("echo_option", json!("some")),
        ("echo_enum", json!("dark_green")),
        ("echo_variant", json!({"square": 2.0})),
        ("echo_variant", json!("unit_point")),
        ("echo_flags", json!(["write", "exec_all"])),
    ];
    for (method, value) in cases {
        let back: Value = c
            .call(&no_context(), method, json!({ "v": value }))
            .await
            .unwrap_or_else(|e| panic!("{method}({value}): {e}"));
        assert_eq!(back, value, "{method}");
    }
    // A returned result: ok is the value, err a failure.
    let ok: String = c
        .call(&no_context(), "echo_result", json!({"v": {"ok": "yes"}}))
        .await
        .unwrap();
    assert_eq!(ok, "yes");
    let e = remote(&c, "echo_result", json!({"v": {"err": 7}})).await;
    assert_eq!(
        (e.class.as_str(), e.message.as_str()),
        ("EndpointError", "7")
    );
    let full: String = c
        .call(
            &no_context(),
            "many_args",
            json!({"first_name": "Ada", "last_name": "Lovelace", "age": 36}),
        )
        .await
        .unwrap();
    assert_eq!(full, "Ada Lovelace (36)");
    let nothing: Value = c.call(&no_context(), "nothing", json!({})).await.unwrap();
    assert_eq!(nothing, Value::Null);
}

#[tokio::test]
async fn client_timeout() {
    let topic = unique("rpc-timeout");
    let _host = standard_host(&topic, "");
    let c = client(&topic).await;
    let quick = c
        .prepare()
        .namespace("greet")
        .timeout(Duration::from_millis(500))
        .build();
    let started = std::time::Instant::now();
    match quick
        .call::<Value>(&no_context(), "sleep_ms", json!({"ms": 3000}))
        .await
    {
        Err(RpcError::Timeout(t)) => assert!(t
            .to_string()
            .starts_with("Timed out waiting for a reply to message ID")),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // Nobody serves this topic: the call expires too.
    let nobody = client(&unique("rpc-nobody"))
        .await
        .prepare()
        .timeout(Duration::from_millis(300))
        .build();
    assert!(matches!(
        nobody
            .call::<Value>(&no_context(), "add", json!({"a": 1, "b": 2}))
            .await,
        Err(RpcError::Timeout(_))
    ));
    assert!(matches!(
        c.prepare()
            .fanout(true)
            .build()
            .call::<Value>(&no_context(), "add", json!({}))
            .await,
        Err(RpcError::InvalidTarget(_))
    ));
}

async fn casts_fanout_and_servers(calculator: &str) {
    let topic = unique("rpc-cast");
    let calculator = path_item(&wasm(calculator));
    let greeter = path_item(&wasm("greeter"));
    // Two hosts on one topic: server1 has the calculator, server2 the greeter too.
    let one = Host::start(&config(&[(&topic, "server1", &calculator)]));
    let two = Host::start(&config(&[(
        &topic,
        "server2",
        &format!("{calculator}, {greeter}"),
    )]));
    let c = client(&topic).await;

    let to_two = c.prepare().server("server2").build();
    let hello: String = to_two
        .call(&no_context(), "greet", json!({"name": "two"}))
        .await
        .unwrap();
    assert_eq!(hello, "Hello, two!");
    let to_one = c.prepare().server("server1").build();
    assert_eq!(
        remote(&to_one, "greet", json!({"name": "one"})).await.class,
        "NoSuchMethod"
    );

    let fanout_id = unique("req-fanout");
    c.prepare()
        .fanout(true)
        .build()
        .cast(
            &context(json!({"request_id": fanout_id})),
            "whoami",
            json!({}),
        )
        .await
        .unwrap();
    for host in [&one, &two] {
        assert!(
            host.wait_for(&fanout_id, Duration::from_secs(10)),
            "{}",
            host.log()
        );
    }
    let cast_id = unique("req-cast");
    to_one
        .cast(
            &context(json!({"request_id": cast_id})),
            "whoami",
            json!({}),
        )
        .await
        .unwrap();
    assert!(
        one.wait_for(&cast_id, Duration::from_secs(10)),
        "{}",
        one.log()
    );
    assert!(
        !two.log().contains(&cast_id),
        "a cast to server1 reached server2"
    );
}

#[test]
fn sigterm_stops_the_host_and_deletes_its_fanout_queue() {
    let topic = unique("rpc-sigterm");
    let mut host = Host::start(&config(&[(&topic, "s", &path_item(&wasm("calculator")))]));
    let fanout_queue = host
        .log()
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{topic}_fanout_")))
        .map(|w| w.trim_end_matches(',').to_string())
        .expect("the host logs its fanout queue");
    let status = host.stop().expect("the host did not stop on SIGTERM");
    assert!(status.success(), "{}", host.log());
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "name"])
        .output()
        .unwrap();
    let queues = String::from_utf8_lossy(&out.stdout);
    assert!(
        queues.contains(&format!("{topic}.s")),
        "the server queue stays"
    );
    assert!(
        !queues.contains(&fanout_queue),
        "{fanout_queue} was not deleted"
    );
}

async fn several_servers_in_one_host(calculator: &str) {
    let (a, b) = (unique("rpc-multi-a"), unique("rpc-multi-b"));
    let _host = Host::start(&config(&[
        (&a, "s", &path_item(&wasm(calculator))),
        (
            &b,
            "s",
            &format!(
                "{}, {}",
                path_item(&wasm("greeter")),
                path_item(&wasm("types"))
            ),
        ),
    ]));
    let sum: i64 = client(&a)
        .await
        .call(&no_context(), "add", json!({"a": 20, "b": 22}))
        .await
        .unwrap();
    assert_eq!(sum, 42);
    let cb = client(&b).await;
    // Topic b has two endpoints: the greeter (1.3) and the types component (1.0).
    let hello: String = cb
        .call(&no_context(), "greet", json!({"name": "b"}))
        .await
        .unwrap();
    assert_eq!(hello, "Hello, b!");
    let echoed: String = cb
        .call(&no_context(), "echo_string", json!({"v": "e"}))
        .await
        .unwrap();
    assert_eq!(echoed, "e");
    assert_eq!(
        remote(&cb, "add", json!({"a": 1, "b": 1})).await.class,
        "NoSuchMethod"
    );
}

/// A host whose queue disappears says so once, re-declares that queue and serves again.
#[tokio::test]
async fn a_deleted_queue_is_redeclared() {
    let topic = unique("rpc-deleted");
    let host = Host::start(&config(&[(&topic, "s", &path_item(&wasm("calculator")))]));
    let deleted = std::process::Command::new("rabbitmqctl")
        .args(["delete_queue", &format!("{topic}.s")])
        .output()
        .unwrap();
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(
        host.wait_for("re-subscribed", Duration::from_secs(20)),
        "{}",
        host.log()
    );
    let log = host.log();
    assert!(
        log.contains(&format!("consumer of queue {topic}.s stopped")),
        "{log}"
    );
    let c = client(&topic).await;
    let sum: i64 = c
        .prepare()
        .server("s")
        .build()
        .call(&no_context(), "add", json!({"a": 2, "b": 2}))
        .await
        .unwrap();
    assert_eq!(sum, 4);
}
