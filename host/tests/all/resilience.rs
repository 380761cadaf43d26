//! Graceful shutdown, call-monitor heartbeats (fjord and the real oslo.messaging, both ways),
//! several hosts on one topic, and TLS against a private broker's TLS listener.

use crate::broker::Broker;
use crate::harness::{config, path_item, unique, wasm, workspace, Host, URL};
use crate::interop::python::{python, PyServer};
use fjord_client::{RpcClient, RpcError, Target, Transport, TransportUrl};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn greeter_host(topic: &str, server: &str) -> Host {
    Host::start(&config(&[(
        topic,
        server,
        &format!(
            "{}, {{ path = {}, namespace = \"greet\", deadline_ms = 30000 }}",
            path_item(&wasm("calculator")),
            path_item(&wasm("greeter"))
        ),
    )]))
}

async fn client(url: &str, topic: &str) -> RpcClient {
    let transport = Transport::connect(&TransportUrl::parse(url).unwrap())
        .await
        .unwrap();
    RpcClient::new(transport, Target::new(topic))
        .prepare()
        .timeout(Duration::from_secs(20))
        .build()
}

fn signal(host: &Host, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &host.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGTERM: the call in flight is answered, the fanout queue deleted, the host exits 0.
#[tokio::test]
async fn sigterm_finishes_calls_in_flight() {
    let topic = unique("graceful");
    let mut host = greeter_host(&topic, "s");
    let c = client(URL, &topic).await;
    let slow = c.prepare().namespace("greet").build();
    let call = tokio::spawn(async move {
        slow.call::<Value>(&Map::new(), "sleep_ms", json!({"ms": 1500}))
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&host, "-TERM");
    let answered = call.await.unwrap();
    assert!(answered.is_ok(), "{answered:?}\n{}", host.log());
    let status = host
        .wait_exit(Duration::from_secs(10))
        .expect("still running");
    assert!(status.success(), "{}", host.log());
    let log = host.log();
    assert!(log.contains("finishing 1 in flight"), "{log}");
    let queues = Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "name"])
        .output()
        .unwrap();
    let queues = String::from_utf8_lossy(&queues.stdout);
    assert!(!queues.contains(&format!("{topic}_fanout_")), "{queues}");
}

/// A second signal does not wait for the calls in flight.
#[tokio::test]
async fn second_signal_exits_at_once() {
    let topic = unique("graceful2");
    let mut host = greeter_host(&topic, "s");
    let c = client(URL, &topic).await;
    let slow = c
        .prepare()
        .namespace("greet")
        .timeout(Duration::from_secs(5))
        .build();
    let _call = tokio::spawn(async move {
        slow.call::<Value>(&Map::new(), "sleep_ms", json!({"ms": 20000}))
            .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    signal(&host, "-TERM");
    assert!(host.wait_for("stopping gracefully", Duration::from_secs(5)));
    let sent = Instant::now();
    signal(&host, "-INT");
    let status = host
        .wait_exit(Duration::from_secs(5))
        .expect("still running");
    assert!(sent.elapsed() < Duration::from_secs(3));
    assert_eq!(status.code(), Some(130), "{}", host.log());
}

/// With `call_monitor_timeout`, a call longer than it succeeds because the host heartbeats; a
/// host that stopped answering would fail it after the monitor timeout, not the call timeout.
#[tokio::test]
async fn call_monitor_heartbeats_keep_a_long_call_alive() {
    let topic = unique("monitor");
    let host = greeter_host(&topic, "s");
    let c = client(URL, &topic).await;
    let monitored = c
        .prepare()
        .namespace("greet")
        .timeout(Duration::from_secs(20))
        .call_monitor_timeout(Duration::from_secs(2))
        .build();
    let started = Instant::now();
    let r = monitored
        .call::<Value>(&Map::new(), "sleep_ms", json!({"ms": 5000}))
        .await;
    assert!(r.is_ok(), "{r:?}\n{}", host.log());
    assert!(started.elapsed() >= Duration::from_secs(5));

    // No server at all: the monitor, not the 20 s timeout, ends the call.
    let nobody = client(URL, &unique("monitor-nobody"))
        .await
        .prepare()
        .call_monitor_timeout(Duration::from_secs(1))
        .build();
    let started = Instant::now();
    let r = nobody
        .call::<Value>(&Map::new(), "add", json!({"a": 1, "b": 2}))
        .await;
    assert!(matches!(r, Err(RpcError::Timeout(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The real oslo.messaging client with `call_monitor_timeout=2` calls a 5 s method on fjord-host.
#[test]
fn oslo_client_call_monitor_against_fjord() {
    let topic = unique("monitor-py");
    let host = greeter_host(&topic, "s");
    let mut child = Command::new(python())
        .arg(workspace().join("interop/oslo_client.py"))
        .args(["--url", URL, "--topic", &topic, "--timeout", "20"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        let case = json!({"id": "slow", "kind": "call", "method": "sleep_ms",
            "namespace": "greet", "args": {"ms": 5000}, "call_monitor_timeout": 2});
        writeln!(stdin, "{case}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#""id": "slow", "result": null"#),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        host.log()
    );
}

/// The fjord client with `call_monitor_timeout` calls the real oslo.messaging server, which
/// heartbeats while its method sleeps.
#[tokio::test]
async fn fjord_client_call_monitor_against_oslo_server() {
    let topic = unique("monitor-oslo");
    let server = PyServer::spawn(URL, &topic, "py");
    let c = client(URL, &topic).await;
    let monitored = c
        .prepare()
        .call_monitor_timeout(Duration::from_secs(2))
        .build();
    // Wait for the Python server to subscribe.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let quick = monitored.prepare().timeout(Duration::from_secs(2)).build();
        if quick
            .call::<i64>(&Map::new(), "add", json!({"a": 1, "b": 1}))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Python server never answered"
        );
    }
    let r = monitored
        .call::<f64>(&Map::new(), "slow", json!({"seconds": 5.0}))
        .await;
    drop(server);
    assert_eq!(r.unwrap(), 5.0);
}

/// Calls spread over two hosts of one topic; a fanout cast reaches each.
#[tokio::test]
async fn two_hosts_share_a_topic() {
    let topic = unique("spread");
    let a = greeter_host(&topic, "a");
    let b = greeter_host(&topic, "b");
    let c = client(URL, &topic).await;
    let mut served = HashSet::new();
    for i in 0..40 {
        let mut ctx = Map::new();
        ctx.insert("request_id".into(), format!("req-spread-{i}").into());
        let _: Value = c.call(&ctx, "whoami", json!({})).await.unwrap();
    }
    for (name, host) in [("a", &a), ("b", &b)] {
        if host.log().contains("whoami for request req-spread-") {
            served.insert(name);
        }
    }
    assert_eq!(served.len(), 2, "calls did not spread: {served:?}");
    let fan = c.prepare().fanout(true).namespace("greet").build();
    fan.cast(&Map::new(), "log_lines", json!({})).await.unwrap();
    for host in [&a, &b] {
        assert!(
            host.wait_for("log_lines", Duration::from_secs(10)),
            "{}",
            host.log()
        );
    }
}

/// `amqps://` with a CA and a client certificate, against the private node's TLS listener
/// (which requires a client certificate), for both the host and the client.
#[tokio::test]
async fn tls_with_client_certificate() {
    let broker = Broker::start();
    let t = broker.tls.as_ref().unwrap();
    let url = format!(
        "amqps://guest:guest@localhost:{}/?ssl_ca_file={}&ssl_cert_file={}&ssl_key_file={}",
        t.port,
        t.ca.display(),
        t.client_cert.display(),
        t.client_key.display()
    );
    let topic = unique("tls");
    let host = Host::start(&format!(
        "transport_url = \"{url}\"\n\n[[server]]\ntopic = \"{topic}\"\nserver = \"s\"\n\
         endpoints = [{}]\n",
        path_item(&wasm("calculator"))
    ));
    let c = client(&url, &topic).await;
    let sum: i64 = c
        .call(&Map::new(), "add", json!({"a": 40, "b": 2}))
        .await
        .unwrap();
    assert_eq!(sum, 42);
    let connections = broker.must(&["list_connections", "-q", "ssl", "client_properties"]);
    let tls_lines = connections
        .lines()
        .filter(|l| l.starts_with("true"))
        .count();
    assert_eq!(tls_lines, 2, "{connections}\n{}", host.log());
}

/// Killing one of two hosts mid-load loses only the calls it had in flight (oslo's at-most-once),
/// and each of those ends visibly in a timeout; the other host answers its share and keeps serving.
#[tokio::test]
async fn killing_a_host_loses_only_its_calls_in_flight() {
    const CALLS: usize = 16;
    let topic = unique("kill");
    let mut a = greeter_host(&topic, "a");
    let _b = greeter_host(&topic, "b");
    let c = client(URL, &topic)
        .await
        .prepare()
        .namespace("greet")
        .timeout(Duration::from_secs(4))
        .build();
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                // Every call is delivered well before the kill, a second in. Bounded by the
                // call's timeout + 1 s: anything slower counts as lost.
                tokio::time::timeout(
                    Duration::from_secs(5),
                    c.call::<Value>(&Map::new(), "sleep_ms", json!({ "ms": 2000 })),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.kill();
    let (mut answered, mut timed_out) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(Ok(_)) => answered += 1,
            Ok(Err(RpcError::Timeout(_))) => timed_out += 1,
            Ok(Err(e)) => panic!("a call failed otherwise than by its timeout: {e}"),
            Err(_) => panic!("a call was lost: no answer and no error within timeout + 1 s"),
        }
    }
    println!("{CALLS} calls, host a killed mid-call: answered {answered}, timed out {timed_out}");
    assert_eq!(answered + timed_out, CALLS);
    assert!(answered > 0, "host b answered none of its calls");
    assert!(timed_out > 0, "no call was in flight on the killed host");
    for _ in 0..5 {
        let _: Value = c
            .call(&Map::new(), "sleep_ms", json!({ "ms": 1 }))
            .await
            .unwrap();
    }
}
