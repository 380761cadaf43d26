//! fjord-client against the real broker and a real host: a lost reply consumer fails only its own
//! calls, timeouts bound everything a call or cast does, and timeouts too long for RabbitMQ are
//! refused before anything is sent.

use crate::broker::Broker;
use crate::harness::{config, path_item, unique, wasm, Host, URL};
use fjord_client::{RpcClient, RpcError, Target, Transport, TransportUrl, MAX_TIMEOUT};
use serde_json::{json, Map, Value};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn calculator_and_greeter(topic: &str) -> Host {
    let endpoints = format!(
        "{}, {{ path = {}, namespace = \"greet\", deadline_ms = 30000 }}",
        path_item(&wasm("calculator")),
        path_item(&wasm("greeter"))
    );
    Host::start(&config(&[(topic, "s", &endpoints)]))
}

async fn transport(url: &str) -> Transport {
    Transport::connect(&TransportUrl::parse(url).unwrap())
        .await
        .unwrap()
}

/// The broker's id of the one connection whose client-provided name holds `name`.
fn connection_named(name: &str) -> String {
    let out = Command::new("rabbitmqctl")
        .args(["list_connections", "-q", "pid", "client_properties"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    listing
        .lines()
        .find(|l| l.contains(name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no connection named {name} in:\n{listing}"))
        .to_string()
}

/// Closes a connection from the broker's side (the shared broker is not faulted: only this
/// test's own connection goes).
fn close_connection(pid: &str) {
    let closed = Command::new("rabbitmqctl")
        .args(["close_connection", pid, "test: reply consumer killed"])
        .output()
        .unwrap();
    assert!(closed.status.success(), "{closed:?}");
}

/// What a call ended in, for the tallies below.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Answered,
    ConsumerGone,
    OtherFailure(String),
    Lost,
}

fn outcome<T: PartialEq + std::fmt::Debug>(
    result: Result<Result<T, RpcError>, tokio::time::error::Elapsed>,
    expected: T,
) -> Outcome {
    match result {
        Ok(Ok(v)) if v == expected => Outcome::Answered,
        Ok(Ok(v)) => Outcome::OtherFailure(format!("wrong answer {v:?}")),
        Ok(Err(RpcError::ReplyConsumerGone)) => Outcome::ConsumerGone,
        Ok(Err(e)) => Outcome::OtherFailure(e.to_string()),
        Err(_) => Outcome::Lost,
    }
}

/// The reconnect race: the client's connection (and with it the reply consumer) is closed by the
/// broker while calls wait for replies and more keep coming. The calls waiting on the old
/// connection fail at once with `ReplyConsumerGone`; calls made after it, registered on the new
/// connection while the old one's calls are being failed, are all answered; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_consumer_fails_only_its_own_calls() {
    let topic = unique("client-race");
    let _host = calculator_and_greeter(&topic);
    let transport = transport(URL).await;
    let client = RpcClient::new(transport.clone(), Target::new(&topic))
        .prepare()
        .timeout(Duration::from_secs(20))
        .build();
    let sum: i64 = client
        .call(&Map::new(), "add", json!({"a": 1, "b": 1}))
        .await
        .unwrap();
    assert_eq!(sum, 2);
    let name = transport.reply_queue_name().to_string();
    let pid = tokio::task::spawn_blocking(move || connection_named(&name))
        .await
        .unwrap();
    let slow = client.prepare().namespace("greet").build();
    let slow_call = |ms: u32| {
        let slow = slow.clone();
        tokio::spawn(async move {
            let ctx = Map::new();
            let call = slow.call::<Value>(&ctx, "sleep_ms", json!({ "ms": ms }));
            outcome(
                tokio::time::timeout(Duration::from_secs(25), call).await,
                Value::Null,
            )
        })
    };
    // Registered on the first connection; the host is still running them when it goes
    // (rabbitmqctl takes a second or two to start).
    let old: Vec<_> = (0..8).map(|_| slow_call(8_000)).collect();
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Calls that keep coming across the loss.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Vec::<(Instant, Outcome)>::new()));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (client, stop, tally) = (client.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let mut i: i64 = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let started = Instant::now();
                    let ctx = Map::new();
                    let call = client.call::<i64>(&ctx, "add", json!({"a": i, "b": w}));
                    let o = outcome(
                        tokio::time::timeout(Duration::from_secs(25), call).await,
                        i + w,
                    );
                    let failed = o != Outcome::Answered;
                    tally.lock().unwrap().push((started, o));
                    if failed {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    tokio::task::spawn_blocking(move || close_connection(&pid))
        .await
        .unwrap();
    let closed = Instant::now();
    // Started at once: they reconnect and wait on the new consumer while the old one's calls
    // are being failed.
    let new: Vec<_> = (0..8).map(|_| slow_call(1_000)).collect();

    for (i, call) in old.into_iter().enumerate() {
        assert_eq!(
            call.await.unwrap(),
            Outcome::ConsumerGone,
            "old call {i}: calls waiting on the lost connection fail visibly"
        );
    }
    for (i, call) in new.into_iter().enumerate() {
        assert_eq!(
            call.await.unwrap(),
            Outcome::Answered,
            "new call {i}: a call on the new connection was failed by the old one"
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let tally = tally.lock().unwrap();
    let lost = tally.iter().filter(|(_, o)| *o == Outcome::Lost).count();
    assert_eq!(lost, 0, "{tally:?}");
    // Only calls already under way when the connection went may fail; each one visibly.
    let late_failures: Vec<_> = tally
        .iter()
        .filter(|(started, o)| {
            *started > closed + Duration::from_millis(100) && *o != Outcome::Answered
        })
        .collect();
    assert!(late_failures.is_empty(), "{late_failures:?}");
    let answered = tally
        .iter()
        .filter(|(_, o)| *o == Outcome::Answered)
        .count();
    let failed = tally.len() - answered;
    eprintln!(
        "across the loss: {answered} calls answered, {failed} failed visibly (all started before \
         the connection was closed + 100 ms), 0 lost"
    );
    assert!(answered > 0);
}

/// A timeout longer than RabbitMQ accepts as a message TTL (ten years), or one that would
/// overflow a clock, is bad input: refused at once, nothing sent, the transport still fine. Ten
/// years exactly is accepted by the broker.
#[tokio::test]
async fn huge_timeouts_are_refused_as_bad_input() {
    let topic = unique("client-timeouts");
    let _host = calculator_and_greeter(&topic);
    let client = RpcClient::new(transport(URL).await, Target::new(&topic));
    let args = json!({"a": 2, "b": 3});
    for timeout in [Duration::MAX, MAX_TIMEOUT + Duration::from_millis(1)] {
        let huge = client.prepare().timeout(timeout).build();
        let started = Instant::now();
        match huge.call::<i64>(&Map::new(), "add", args.clone()).await {
            Err(RpcError::InvalidTimeout(message)) => {
                assert!(message.contains("ten years"), "{message}")
            }
            other => panic!("{timeout:?}: {other:?}"),
        }
        assert!(matches!(
            huge.cast(&Map::new(), "add", args.clone()).await,
            Err(RpcError::InvalidTimeout(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
        let monitored = client.prepare().call_monitor_timeout(timeout).build();
        assert!(matches!(
            monitored
                .call::<i64>(&Map::new(), "add", args.clone())
                .await,
            Err(RpcError::InvalidTimeout(_))
        ));
    }
    let longest = client.prepare().timeout(MAX_TIMEOUT).build();
    let sum: i64 = longest
        .call(&Map::new(), "add", args.clone())
        .await
        .unwrap();
    assert_eq!(sum, 5, "RabbitMQ takes a ten-year TTL");
    let sum: i64 = client.call(&Map::new(), "add", args).await.unwrap();
    assert_eq!(sum, 5, "the transport still works");
}

/// A cast is bounded by the client's timeout: with the broker frozen (a private node, SIGSTOP),
/// its publisher confirm never comes, and it fails with `CastTimeout` at its timeout instead of
/// hanging; a call fails with `MessagingTimeout` the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cast_is_bounded_by_its_timeout() {
    let broker = Broker::start();
    let topic = unique("client-cast");
    let client = RpcClient::new(transport(&broker.url()).await, Target::new(&topic))
        .prepare()
        .timeout(Duration::from_secs(1))
        .build();
    client
        .cast(&Map::new(), "add", json!({"a": 1, "b": 1}))
        .await
        .unwrap();
    broker.signal("-STOP");
    let started = Instant::now();
    let ctx = Map::new();
    let cast = client.cast(&ctx, "add", json!({"a": 1, "b": 1}));
    let outcome = tokio::time::timeout(Duration::from_secs(10), cast).await;
    let cast_took = started.elapsed();
    let started = Instant::now();
    let call = client.call::<i64>(&ctx, "add", json!({"a": 1, "b": 1}));
    let call_outcome = tokio::time::timeout(Duration::from_secs(10), call).await;
    let call_took = started.elapsed();
    broker.signal("-CONT");
    match outcome {
        Ok(Err(RpcError::CastTimeout(t))) => assert_eq!(t, Duration::from_secs(1)),
        other => panic!("cast with the broker frozen: {other:?}"),
    }
    assert!(
        call_outcome
            .as_ref()
            .is_ok_and(|r| matches!(r, Err(RpcError::Timeout(_)))),
        "{call_outcome:?}"
    );
    assert!(cast_took < Duration::from_secs(3), "{cast_took:?}");
    assert!(call_took < Duration::from_secs(3), "{call_took:?}");
}
