//! Fault injection against a PRIVATE RabbitMQ node (see `broker.rs`), with accounting per call:
//! answered correctly, failed visibly (an error the caller saw), or lost (neither within the
//! timeout + 1 s). Goals: lost = 0 for every fault, service back within 5 s of the broker's return.

use crate::broker::Broker;
use crate::harness::{context, path_item, unique, wasm, Host};
use fjord_client::{RpcClient, RpcError, Target, Transport, TransportUrl};
use serde_json::{json, Map};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const WORKERS: usize = 4;

#[derive(Default, Debug)]
struct Tally {
    answered: u64,
    failed: u64,
    lost: u64,
    wrong: u64,
    successes: Vec<Instant>,
    /// The slowest call that failed with `Disconnected` (nothing could be published).
    slowest_disconnected: Duration,
}

/// Calls `add` in a loop until `stop`, recording every outcome.
async fn worker(client: RpcClient, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let mut i: i64 = 0;
    let ctx = Map::new();
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let started = Instant::now();
        let call = client.call::<i64>(&ctx, "add", json!({"a": i, "b": 1}));
        let outcome = tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(1), call).await;
        let failed = {
            let mut t = tally.lock().unwrap();
            match outcome {
                Err(_) => t.lost += 1,
                Ok(Ok(v)) if v == i + 1 => {
                    t.answered += 1;
                    t.successes.push(Instant::now());
                }
                Ok(Ok(_)) => t.wrong += 1,
                Ok(Err(RpcError::Disconnected(_))) => {
                    t.failed += 1;
                    t.slowest_disconnected = t.slowest_disconnected.max(started.elapsed());
                }
                Ok(Err(_)) => t.failed += 1,
            }
            matches!(outcome, Ok(Err(_)))
        };
        if failed {
            // Failures during an outage come at once; do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct Line {
    name: &'static str,
    tally: Tally,
    /// From the broker's return (or the fault, for faults that do not stop it) to the first
    /// successful call after it.
    back: Option<Duration>,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<44} answered {:>5} / failed visibly {:>4} / lost {} (wrong {}); back after {}; \
             slowest unpublishable call failed in {:.2} s",
            self.name,
            self.tally.answered,
            self.tally.failed,
            self.tally.lost,
            self.tally.wrong,
            match self.back {
                Some(b) => format!("{:.2} s", b.as_secs_f64()),
                None => "never".into(),
            },
            self.tally.slowest_disconnected.as_secs_f64()
        )
    }
}

/// Runs load, injects `fault` (blocking; returns when the broker is back), keeps the load
/// until a call succeeds after that, and tallies.
async fn under_load<F>(name: &'static str, client: &RpcClient, fault: F) -> Line
where
    F: FnOnce() + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| tokio::spawn(worker(client.clone(), stop.clone(), tally.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    tokio::task::spawn_blocking(fault).await.unwrap();
    let returned = Instant::now();
    let deadline = returned + Duration::from_secs(20);
    let back = loop {
        let first = tally
            .lock()
            .unwrap()
            .successes
            .iter()
            .find(|s| **s > returned)
            .map(|s| s.duration_since(returned));
        if first.is_some() || Instant::now() > deadline {
            break first;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let line = Line { name, tally, back };
    println!("{line}");
    line
}

fn host_config(url: &str, topic: &str, server: &str) -> String {
    format!(
        "transport_url = \"{url}\"\n\n[[server]]\ntopic = \"{topic}\"\nserver = \"{server}\"\n\
         endpoints = [{}, {{ path = {}, namespace = \"greet\" }}]\n",
        path_item(&wasm("calculator")),
        path_item(&wasm("greeter"))
    )
}

/// The pid of the named connection on the private node (`rabbitmqctl list_connections`).
fn connection_pid(broker: &Broker, name: &str) -> Option<String> {
    broker
        .must(&["list_connections", "-q", "pid", "client_properties"])
        .lines()
        .find(|l| l.contains(name))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_suite() {
    let broker = Arc::new(Broker::start());
    // Two brokers in the URL, one of them dead: every (re)connection tries them in turn.
    // A short AMQP heartbeat, so that a frozen broker is noticed within seconds.
    let url = format!(
        "rabbit://guest:guest@127.0.0.1:{},guest:guest@127.0.0.1:{}/?heartbeat_timeout_threshold=2",
        crate::broker::free_port(),
        broker.port
    );
    let topic = unique("faults");
    let mut host_a = Host::start(&host_config(&url, &topic, "a"));
    let host_b = Host::start(&host_config(&url, &topic, "b"));
    let transport = Transport::connect(&TransportUrl::parse(&url).unwrap())
        .await
        .unwrap();
    let client = RpcClient::new(transport.clone(), Target::new(&topic))
        .prepare()
        .timeout(CALL_TIMEOUT)
        .build();
    let _: i64 = client
        .call(&Map::new(), "add", json!({"a": 1, "b": 1}))
        .await
        .unwrap();

    let mut lines = Vec::new();
    let b = broker.clone();
    lines.push(
        under_load("broker stop_app/start_app", &client, move || {
            b.must(&["stop_app"]);
            std::thread::sleep(Duration::from_secs(2));
            b.must(&["start_app"]);
        })
        .await,
    );
    let b = broker.clone();
    lines.push(
        under_load("broker killed and restarted", &client, move || {
            b.kill();
            std::thread::sleep(Duration::from_secs(1));
            b.launch();
        })
        .await,
    );
    let b = broker.clone();
    lines.push(
        under_load(
            "broker frozen 6 s (SIGSTOP; heartbeat 2 s)",
            &client,
            move || {
                b.signal("-STOP");
                std::thread::sleep(Duration::from_secs(6));
                b.signal("-CONT");
            },
        )
        .await,
    );
    // The AMQP heartbeat noticed the frozen broker (lapin closes after 2 missed intervals).
    let log = host_b.log();
    assert!(
        log.contains("no heartbeat received from server for too long"),
        "{log}"
    );
    let b = broker.clone();
    lines.push(
        under_load("memory alarm for 2 s", &client, move || {
            b.must(&["set_vm_memory_high_watermark", "absolute", "1"]);
            b.wait_alarm(true);
            std::thread::sleep(Duration::from_secs(2));
            b.must(&["set_vm_memory_high_watermark", "0.4"]);
            b.wait_alarm(false);
        })
        .await,
    );
    let (b, q) = (broker.clone(), topic.clone());
    lines.push(
        under_load(
            "consumer cancelled (topic queue deleted)",
            &client,
            move || {
                b.must(&["delete_queue", &q]);
            },
        )
        .await,
    );
    let b = broker.clone();
    lines.push(
        under_load(
            "host connection closed by rabbitmqctl",
            &client,
            move || {
                let pid = connection_pid(&b, "fjord-host").expect("no fjord-host connection");
                b.must(&["close_connection", &pid, "fault injection"]);
            },
        )
        .await,
    );
    let (b, q) = (broker.clone(), transport.reply_queue_name().to_string());
    lines.push(
        under_load(
            "reply queue deleted behind the client",
            &client,
            move || {
                b.must(&["delete_queue", &q]);
            },
        )
        .await,
    );

    // A caller that dies before its reply: its reply queue is gone when the host answers.
    let dying = Transport::connect(&TransportUrl::parse(&url).unwrap())
        .await
        .unwrap();
    let dying_queue = dying.reply_queue_name().to_string();
    let slow = RpcClient::new(dying.clone(), Target::new(&topic).namespace("greet"))
        .prepare()
        .timeout(Duration::from_secs(30))
        .build();
    let pending: Vec<_> = (0..4)
        .map(|_| {
            let slow = slow.clone();
            tokio::spawn(async move {
                // Long enough that the queue is surely gone first, even on a loaded machine
                // (rabbitmqctl alone can take seconds to start).
                slow.call::<()>(&Map::new(), "sleep_ms", json!({"ms": 8000}))
                    .await
            })
        })
        .collect();
    let b = broker.clone();
    lines.push(
        under_load("a client dies before its replies", &client, move || {
            b.must(&["delete_queue", &dying_queue]);
        })
        .await,
    );
    for p in pending {
        // The dead caller's own calls fail visibly (its reply consumer was cancelled).
        let outcome = p.await.unwrap();
        assert!(
            matches!(outcome, Err(RpcError::ReplyConsumerGone)),
            "{outcome:?}"
        );
    }
    // The host gives up on those replies after a short retry, while serving everyone else.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(host_a.log() + &host_b.log()).contains("dropping the reply") {
        assert!(
            Instant::now() < deadline,
            "{}{}",
            host_a.log(),
            host_b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Two hosts share the topic: calls spread; killing one loses only its calls in flight.
    lines.push(
        under_load("one of two hosts killed mid-load", &client, move || {
            host_a.kill();
        })
        .await,
    );

    println!("\nfault                                        accounting");
    for line in &lines {
        println!("{line}");
    }
    // While the broker is stopped, a call that cannot be published fails at once.
    assert!(
        lines[0].tally.slowest_disconnected < Duration::from_secs(1),
        "{}",
        lines[0]
    );
    for line in &lines {
        assert_eq!(line.tally.lost, 0, "{line}");
        assert_eq!(line.tally.wrong, 0, "{line}");
        assert!(line.tally.answered > 0, "{line}");
        let back = line.back.unwrap_or(Duration::MAX);
        assert!(back <= Duration::from_secs(5), "{line}");
    }
    // One line per outage and one per recovery, however many attempts each took.
    let log = host_b.log();
    for line in log
        .lines()
        .filter(|l| l.contains("reconnected to RabbitMQ after"))
    {
        println!(
            "host b: {}",
            line.split("fjord-host: ").last().unwrap_or(line)
        );
    }
    let outages = log.matches("fjord-host: lost RabbitMQ").count();
    let recoveries = log
        .matches("fjord-host: reconnected to RabbitMQ after")
        .count();
    // Broker stopped, killed, frozen (the deleted queue is re-subscribed alone: no outage).
    assert!(outages >= 3, "{log}");
    assert!(
        log.contains(&format!(
            "consumer of queue {topic} stopped (the broker cancelled it); re-subscribed"
        )),
        "{log}"
    );
    assert_eq!(outages, recoveries, "{log}");
    drop(host_b);
}

/// The fanout queues of `topic` on the private node.
fn fanout_queues(broker: &Broker, topic: &str) -> Vec<String> {
    broker
        .must(&["list_queues", "-q", "name"])
        .lines()
        .map(str::trim)
        .filter(|q| q.starts_with(&format!("{topic}_fanout_")))
        .map(str::to_string)
        .collect()
}

/// After a lost connection the host consumes a new fanout queue (the old one may live on a node
/// that is gone or frozen) and deletes the old one, so fanout casts are not left collecting in
/// it; a fanout cast sent after the reconnection reaches the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_host_takes_a_new_fanout_queue_and_deletes_the_old() {
    let broker = Broker::start();
    let url = broker.url();
    let topic = unique("fanout-reconnect");
    let host = Host::start(&host_config(&url, &topic, "s1"));
    let before = fanout_queues(&broker, &topic);
    assert_eq!(before.len(), 1, "{before:?}");

    let pid = connection_pid(&broker, "fjord-host").expect("no fjord-host connection");
    broker.must(&["close_connection", &pid, "fault injection"]);
    assert!(
        host.wait_for("reconnected to RabbitMQ", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let now = fanout_queues(&broker, &topic);
        if now.len() == 1 && now != before || Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(after.len(), 1, "old {before:?}, now {after:?}");
    assert_ne!(
        after, before,
        "the old fanout queue is still the one consumed"
    );

    let transport = Transport::connect(&TransportUrl::parse(&url).unwrap())
        .await
        .unwrap();
    let id = unique("req-fanout");
    RpcClient::new(transport, Target::new(&topic).fanout(true))
        .cast(&context(json!({ "request_id": id })), "whoami", json!({}))
        .await
        .unwrap();
    assert!(
        host.wait_for(&id, Duration::from_secs(10)),
        "{}",
        host.log()
    );
}
