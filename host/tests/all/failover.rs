//! fjord-host on a private 3-node RabbitMQ cluster with quorum queues, nodes killed under load,
//! with the Python oslo server in fjord-host's place on the same faults. Every call is accounted
//! for, from fjord's client and from the real oslo.messaging client at once (16 callers): answered,
//! failed visibly at its timeout, or lost (no return at all). Recovery is the time from the kill to
//! the first answer to a call made after it. Goals: nothing lost; recovery is reported.

use crate::cluster::Cluster;
use crate::harness::{path_item, unique, wasm, Host};
use crate::interop::python::{python, workspace_root, PyServer};
use fjord_client::{RpcClient, Target, Transport, TransportUrl};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Callers of each client: 8 fjord + 8 oslo.messaging.
const CALLERS: usize = 8;
/// Load before the fault, and after it.
const BEFORE: f64 = 2.0;
const AFTER: f64 = 7.0;
/// Quorum queues; a short heartbeat so that dead peers are noticed in seconds.
const QUERY: &str = "?rabbit_quorum_queue=true&heartbeat_timeout_threshold=4";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One call: wall-clock start and end, and what the caller saw.
#[derive(Debug, Clone)]
struct Call {
    start: f64,
    end: Option<f64>,
    outcome: String,
}

#[derive(Debug, Default)]
struct Row {
    answered: usize,
    failed: usize,
    lost: usize,
    wrong: usize,
    recovery: Option<f64>,
    /// The first failure any of the callers saw, for the report.
    first_failure: Option<String>,
}

/// Tallies calls around a fault at `fault` (wall-clock seconds).
fn tally(calls: &[Call], fault: f64) -> Row {
    let mut row = Row::default();
    for c in calls {
        match (c.outcome.as_str(), c.end) {
            ("lost", _) | (_, None) => row.lost += 1,
            ("ok", Some(end)) => {
                row.answered += 1;
                if c.start > fault {
                    let r = end - fault;
                    row.recovery = Some(row.recovery.map_or(r, |x: f64| x.min(r)));
                }
            }
            ("wrong", _) => row.wrong += 1,
            (other, _) => {
                row.failed += 1;
                row.first_failure.get_or_insert_with(|| other.to_string());
            }
        }
    }
    row
}

/// fjord callers: `add` in a loop until `stop`, each call at most CALL_TIMEOUT (+1 s: lost).
async fn fjord_caller(client: RpcClient, stop: Arc<AtomicBool>, calls: Arc<Mutex<Vec<Call>>>) {
    let mut i: i64 = 0;
    let ctx = Map::new();
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let start = now();
        let call = client.call::<i64>(&ctx, "add", json!({"a": i, "b": 1}));
        let outcome = tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(1), call).await;
        let (end, outcome) = match outcome {
            Err(_) => (None, "lost".to_string()),
            Ok(Ok(v)) if v == i + 1 => (Some(now()), "ok".to_string()),
            Ok(Ok(_)) => (Some(now()), "wrong".to_string()),
            Ok(Err(e)) => (Some(now()), format!("{e}")),
        };
        let failed = outcome != "ok";
        calls.lock().unwrap().push(Call {
            start,
            end,
            outcome,
        });
        if failed {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The oslo.messaging callers (`interop/oslo_load.py`), run for `seconds`.
fn oslo_callers(url: &str, topic: &str, seconds: f64, config: &std::path::Path) -> Vec<Call> {
    let out = std::process::Command::new(python())
        .arg(workspace_root().join("interop/oslo_load.py"))
        .args(["--url", url, "--topic", topic])
        .args([
            "--threads",
            &CALLERS.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .args(["--timeout", &CALL_TIMEOUT.as_secs().to_string()])
        .env("FJORD_OSLO_CONFIG", config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "oslo_load.py: {e}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Call {
            start: c[0].as_f64().unwrap(),
            end: c[1].as_f64(),
            outcome: c[2].as_str().unwrap().to_string(),
        })
        .collect()
}

/// Runs 16 callers (8 fjord, 8 oslo) against `topic`, kills the node `victim()` names after
/// BEFORE seconds, keeps the load AFTER seconds more, restarts the node, and tallies each client.
async fn kill_under_load(
    cluster: &Arc<Cluster>,
    url: &str,
    topic: &str,
    oslo_config: &std::path::Path,
    victim: impl FnOnce() -> usize + Send + 'static,
) -> (usize, Row, Row) {
    let transport = Transport::connect(&TransportUrl::parse(url).unwrap())
        .await
        .unwrap();
    let client = RpcClient::new(transport, Target::new(topic))
        .prepare()
        .timeout(CALL_TIMEOUT)
        .build();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..CALLERS)
        .map(|_| tokio::spawn(fjord_caller(client.clone(), stop.clone(), calls.clone())))
        .collect();
    let (u, t, c) = (
        url.to_string(),
        topic.to_string(),
        oslo_config.to_path_buf(),
    );
    let oslo = tokio::task::spawn_blocking(move || oslo_callers(&u, &t, BEFORE + AFTER, &c));
    tokio::time::sleep(Duration::from_secs_f64(BEFORE)).await;
    let cl = cluster.clone();
    let (victim, fault) = tokio::task::spawn_blocking(move || {
        let v = victim();
        cl.await_not_quorum_critical(v);
        let at = now();
        cl.nodes[v].kill();
        (v, at)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs_f64(AFTER)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let oslo_calls = oslo.await.unwrap();
    let cl = cluster.clone();
    tokio::task::spawn_blocking(move || cl.nodes[victim].launch())
        .await
        .unwrap();
    let fjord_calls = calls.lock().unwrap().clone();
    (
        victim,
        tally(&fjord_calls, fault),
        tally(&oslo_calls, fault),
    )
}

fn print_row(server: &str, fault: &str, client: &str, r: &Row) {
    println!(
        "| {server} | {fault} | {client} | {} | {} | {} | {} | {} |",
        r.answered,
        r.failed,
        r.lost,
        r.wrong,
        r.recovery
            .map_or("never".to_string(), |s| format!("{s:.2} s"))
    );
}

fn check(server: &str, fault: &str, fjord: &Row, oslo: &Row) {
    print_row(server, fault, "fjord", fjord);
    print_row(server, fault, "oslo.messaging", oslo);
    for (who, r) in [("fjord", fjord), ("oslo.messaging", oslo)] {
        assert_eq!(r.lost, 0, "{server} / {fault}: {who}'s calls lost: {r:?}");
        assert_eq!(
            r.wrong, 0,
            "{server} / {fault}: {who}'s wrong answers: {r:?}"
        );
    }
    // Service is back for a client that reconnects at once. oslo.messaging's own client, when
    // its node is the one killed, takes 9-10 s to reconnect (kombu's retry intervals), longer
    // than the load runs: its recovery is reported, not asserted.
    assert!(
        fjord.recovery.is_some(),
        "{server} / {fault}: no call was answered after the kill: {fjord:?}"
    );
}

fn host_config(url: &str, topic: &str) -> String {
    format!(
        "transport_url = \"{url}\"\n\n[[server]]\ntopic = \"{topic}\"\nserver = \"s1\"\n\
         endpoints = [{}]\n",
        path_item(&wasm("calculator")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "finds a fjord-client bug: when the client's own node is killed it keeps failing calls \
            (publish failed / reply queue consumer stopped) for the rest of the run; run with \
            `cargo test -p fjord-host --test all -- --ignored failover::` (issue 17)"]
async fn nodes_killed_under_load_lose_no_call() {
    let cluster = Arc::new(Cluster::start(3));
    let url = cluster.url(QUERY);
    let dir = std::env::temp_dir().join(unique("fjord-oslo-conf"));
    std::fs::create_dir_all(&dir).unwrap();
    let oslo_config = dir.join("oslo.conf");
    std::fs::write(
        &oslo_config,
        "[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\nheartbeat_timeout_threshold = 4\n",
    )
    .unwrap();
    println!("| server | fault | client | answered | failed visibly | lost | wrong | recovery |");
    println!("|---|---|---|---|---|---|---|---|");

    // fjord-host: the node it is connected to dies, then (restarted) the one it moved to.
    let topic = unique("cluster");
    let host = Arc::new(Host::start(&host_config(&url, &topic)));
    let name = format!("fjord-host:{}", host.pid());
    for fault in ["kill -9 of the host's node", "kill -9 of its next node"] {
        let (c, n) = (cluster.clone(), name.clone());
        let (victim, fjord, oslo) =
            kill_under_load(&cluster, &url, &topic, &oslo_config, move || {
                c.node_of(&n).expect("the host has no connection")
            })
            .await;
        check("fjord-host", fault, &fjord, &oslo);
        assert_ne!(
            cluster.node_of(&name),
            Some(victim),
            "the host is connected to the node that was killed"
        );
    }
    drop(host);

    // The seed's Python oslo server in fjord-host's place, on the same fault.
    let topic = unique("cluster-py");
    let config = oslo_config.to_string_lossy().to_string();
    let server = PyServer::spawn_env(&url, &topic, "s1", &[("FJORD_OSLO_CONFIG", &config)]);
    let name = format!("oslo_server.py:{}", server.pid());
    let c = cluster.clone();
    let (_, fjord, oslo) = kill_under_load(&cluster, &url, &topic, &oslo_config, move || {
        c.node_of(&name)
            .expect("the Python server has no connection")
    })
    .await;
    check(
        "Python oslo server",
        "kill -9 of the server's node",
        &fjord,
        &oslo,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
