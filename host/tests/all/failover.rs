//! fjord-host on a private 3-node RabbitMQ cluster with quorum queues, under faults: the node it
//! is connected to killed (`kill -9`), then its next node, then a node frozen (SIGSTOP, noticed by
//! heartbeats); two hosts on different nodes with one's node killed; a rolling restart of all three
//! nodes. The seed's Python oslo server takes fjord-host's place on the same faults. Every call is
//! accounted for, from fjord's client (connected to the node that fails: the worst case) and from
//! the real oslo.messaging client at once (16 callers): answered, failed visibly at its timeout,
//! or lost (no return at all); casts are counted by the counter endpoint. Recovery is the time from
//! the fault to the first answer to a call made after it. Goals: nothing lost, no confirmed cast
//! missing; recovery and duplicates are reported.

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
/// After a freeze, which is noticed only when heartbeats stop (2 x 4 s for lapin and kombu: 8 to
/// 11 s measured here, more on a loaded machine), with as much again for serving to resume.
const AFTER_FREEZE: f64 = 20.0;
/// A server that serves at the end of the load answered a call started this close to its end.
const END_WINDOW: f64 = 3.0;
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
    /// Whether a call started in the last END_WINDOW seconds of the load was answered: the
    /// server came back and is still serving, not merely answered once after the fault.
    serving_at_end: bool,
    /// What the callers saw when they failed, and how often.
    failures: std::collections::BTreeMap<String, usize>,
}

/// Tallies calls around a fault at `fault` (wall-clock seconds).
fn tally(calls: &[Call], fault: f64) -> Row {
    let mut row = Row::default();
    let last_start = calls
        .iter()
        .map(|c| c.start)
        .fold(f64::NEG_INFINITY, f64::max);
    for c in calls {
        match (c.outcome.as_str(), c.end) {
            ("lost", _) | (_, None) => row.lost += 1,
            ("ok", Some(end)) => {
                row.answered += 1;
                if c.start >= last_start - END_WINDOW {
                    row.serving_at_end = true;
                }
                if c.start > fault {
                    let r = end - fault;
                    row.recovery = Some(row.recovery.map_or(r, |x: f64| x.min(r)));
                }
            }
            ("wrong", _) => row.wrong += 1,
            (other, _) => {
                row.failed += 1;
                // One line per kind of failure, not per message id.
                let kind = other.split(" message ID ").next().unwrap_or(other);
                *row.failures.entry(kind.to_string()).or_default() += 1;
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

/// Casts sent across a fault and how many the endpoint counted.
#[derive(Debug, Default)]
struct Casts {
    /// Confirmed by the broker.
    sent: u64,
    /// Failed visibly at the caster.
    failed: u64,
    counted: u64,
}

/// Casts `increment(name, 1)` every 10 ms until `stop`; returns (confirmed, failed).
async fn caster(client: RpcClient, name: String, stop: Arc<AtomicBool>) -> (u64, u64) {
    let (mut sent, mut failed) = (0, 0);
    let ctx = Map::new();
    while !stop.load(Ordering::SeqCst) {
        match client
            .cast(&ctx, "increment", json!({"name": name, "by": 1}))
            .await
        {
            Ok(()) => sent += 1,
            Err(_) => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (sent, failed)
}

/// The counter's value once it has stopped moving (casts still queued are taken first).
async fn settled_count(client: &RpcClient, name: &str) -> Result<u64, String> {
    let ctx = Map::new();
    let (mut last, mut error) = (None, None);
    for _ in 0..100 {
        let now: Option<u64> = match client.call(&ctx, "get", json!({ "name": name })).await {
            Ok(n) => Some(n),
            Err(e) => {
                error = Some(e.to_string());
                None
            }
        };
        if now.is_some() && now == last {
            return Ok(now.unwrap_or_default());
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!(
        "the counter {name} never settled (last {last:?}, last error {error:?})"
    ))
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

/// A fjord transport connected to node `node` of the cluster: the URL lists every node (so it can
/// fail over), and transports are opened until the shuffle lands on `node`.
async fn transport_on(cluster: &Arc<Cluster>, url: &str, node: usize) -> Transport {
    let url = TransportUrl::parse(url).unwrap();
    for _ in 0..30 {
        let transport = Transport::connect(&url).await.unwrap();
        let name = format!("fjord-client {}", transport.reply_queue_name());
        if node_of(cluster, &name).await == Some(node) {
            return transport;
        }
        let _ = transport.close().await;
    }
    panic!("30 transports and none on node {node}");
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// `kill -9` of the victim's VM: its sockets close at once.
    Kill,
    /// SIGSTOP of the victim: its sockets stay open and silent until heartbeats give it up.
    Freeze,
    /// Every node in turn stopped (`rabbitmqctl stop`) and started again, each once the quorum
    /// queues can spare it.
    RollingRestart,
}

impl Fault {
    /// How long the fault itself takes, for the oslo callers' run time (they run for a fixed
    /// time), and how long the load goes on after it.
    fn durations(self) -> (f64, f64) {
        match self {
            Fault::Kill => (0.0, AFTER),
            Fault::Freeze => (0.0, AFTER_FREEZE),
            Fault::RollingRestart => (45.0, AFTER),
        }
    }
}

/// Where a load runs and what happens to it.
struct Scenario<'a> {
    cluster: &'a Arc<Cluster>,
    url: &'a str,
    topic: String,
    oslo_config: &'a std::path::Path,
    fault: Fault,
    /// The node faulted (for Kill and Freeze).
    victim: usize,
    /// The node the fjord client is connected to.
    client_node: usize,
    /// Whether a caster counts casts through the counter endpoint (fjord-host only).
    count_casts: bool,
    /// The fjord-host serving, whose log is printed when the counter cannot be read.
    host: Option<&'a Host>,
}

/// Runs the fault on the cluster (blocking); returns when it started (wall clock).
fn run_fault(cluster: &Cluster, fault: Fault, victim: usize) -> f64 {
    match fault {
        Fault::Kill | Fault::Freeze => {
            cluster.await_not_quorum_critical(victim);
            let at = now();
            if fault == Fault::Kill {
                cluster.nodes[victim].kill();
            } else {
                cluster.nodes[victim].signal("-STOP");
            }
            at
        }
        Fault::RollingRestart => {
            let at = now();
            for (i, node) in cluster.nodes.iter().enumerate() {
                cluster.await_not_quorum_critical(i);
                node.stop();
                node.launch();
            }
            at
        }
    }
}

/// Brings the cluster back whole after the fault: a killed node is started again, a frozen one
/// killed first (thawed, it would find itself partitioned from the others).
fn repair(cluster: &Cluster, fault: Fault, victim: usize) {
    match fault {
        Fault::Kill => cluster.nodes[victim].launch(),
        Fault::Freeze => {
            cluster.nodes[victim].kill();
            cluster.nodes[victim].launch();
        }
        Fault::RollingRestart => {}
    }
}

/// Runs 16 callers (8 fjord, 8 oslo) against the topic, starts the fault after BEFORE seconds,
/// keeps the load on a while after it, repairs the cluster, and tallies each client.
async fn under_load(s: Scenario<'_>) -> (Row, Row, Option<Casts>) {
    let (fault_time, after) = s.fault.durations();
    let transport = transport_on(s.cluster, s.url, s.client_node).await;
    let client = RpcClient::new(transport, Target::new(s.topic.clone()))
        .prepare()
        .timeout(CALL_TIMEOUT)
        .build();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..CALLERS)
        .map(|_| tokio::spawn(fjord_caller(client.clone(), stop.clone(), calls.clone())))
        .collect();
    let counter = unique("casts");
    let casting = s
        .count_casts
        .then(|| tokio::spawn(caster(client.clone(), counter.clone(), stop.clone())));
    let (u, t, c) = (
        s.url.to_string(),
        s.topic.to_string(),
        s.oslo_config.to_path_buf(),
    );
    let seconds = BEFORE + fault_time + after;
    let oslo = tokio::task::spawn_blocking(move || oslo_callers(&u, &t, seconds, &c));
    tokio::time::sleep(Duration::from_secs_f64(BEFORE)).await;
    let (cl, fault, victim) = (s.cluster.clone(), s.fault, s.victim);
    let at = tokio::task::spawn_blocking(move || run_fault(&cl, fault, victim))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs_f64(after)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let oslo_calls = oslo.await.unwrap();
    let cl = s.cluster.clone();
    tokio::task::spawn_blocking(move || repair(&cl, fault, victim))
        .await
        .unwrap();
    let casts = match casting {
        Some(casting) => {
            let (sent, failed) = casting.await.unwrap();
            let counted = settled_count(&client, &counter).await.unwrap_or_else(|e| {
                if let Some(host) = s.host {
                    print_host_log(host);
                }
                panic!("{e}")
            });
            Some(Casts {
                sent,
                failed,
                counted,
            })
        }
        None => None,
    };
    let fjord_calls = calls.lock().unwrap().clone();
    (tally(&fjord_calls, at), tally(&oslo_calls, at), casts)
}

/// [`Cluster::node_of`] off the async runtime (it runs rabbitmqctl).
async fn node_of(cluster: &Arc<Cluster>, name: &str) -> Option<usize> {
    let (c, n) = (cluster.clone(), name.to_string());
    tokio::task::spawn_blocking(move || c.node_of(&n))
        .await
        .unwrap()
}

/// [`Cluster::consumer_node`] of the topic queue, off the async runtime: the node a server
/// (fjord-host or the Python one) is served through.
async fn server_node(cluster: &Arc<Cluster>, topic: &str) -> usize {
    let (c, t) = (cluster.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || c.consumer_node(&t))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("nobody consumes {topic}"))
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
    for (failure, n) in &r.failures {
        println!("|   | {n} x | {failure} | | | | | |");
    }
}

/// Asserts what fjord answers for; the rest is reported. fjord's client never loses a call and
/// nobody gets a wrong answer. With `fjord_serves`, service comes back for fjord's client within
/// the load and is still there at its end. An oslo.messaging call outliving its timeout is the oslo client's own doing
/// (kombu blocks reconnecting when its node freezes; no server can hold a caller past its
/// timeout), so it is reported, as is the Python server's recovery (it can outlast the load).
fn check(server: &str, fault: &str, fjord: &Row, oslo: &Row, fjord_serves: bool) {
    print_row(server, fault, "fjord", fjord);
    print_row(server, fault, "oslo.messaging", oslo);
    assert_eq!(
        fjord.lost, 0,
        "{server} / {fault}: fjord's calls lost: {fjord:?}"
    );
    for (who, r) in [("fjord", fjord), ("oslo.messaging", oslo)] {
        assert_eq!(
            r.wrong, 0,
            "{server} / {fault}: {who}'s wrong answers: {r:?}"
        );
    }
    if fjord_serves {
        assert!(
            fjord.recovery.is_some(),
            "{server} / {fault}: no call was answered after the fault: {fjord:?}"
        );
        assert!(
            fjord.serving_at_end,
            "{server} / {fault}: no call started in the last {END_WINDOW} s of the load was \
             answered: {fjord:?}"
        );
    }
}

/// [`check`] for fjord-host, printing the host's warnings and errors when it fails.
fn check_host(host: &Host, fault: &str, fjord: &Row, oslo: &Row, recovers: bool) {
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check("fjord-host", fault, fjord, oslo, recovers)
    }));
    if let Err(panic) = checked {
        print_host_log(host);
        std::panic::resume_unwind(panic);
    }
}

/// Whether a client connecting now gets an answer from `topic` within 15 s.
async fn serves_a_new_client(url: &str, topic: &str) -> bool {
    let Ok(transport) = Transport::connect(&TransportUrl::parse(url).unwrap()).await else {
        return false;
    };
    let client = RpcClient::new(transport.clone(), Target::new(topic))
        .prepare()
        .timeout(CALL_TIMEOUT)
        .build();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let served = loop {
        let sum = client
            .call::<i64>(&Map::new(), "add", json!({"a": 1, "b": 1}))
            .await;
        if sum.ok() == Some(2) {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = transport.close().await;
    served
}

/// The host's log without its info lines and without lapin's line per returned message.
fn print_host_log(host: &Host) {
    for line in host.log().lines() {
        if !line.contains(" INFO ") && !line.contains("returned_messages") {
            println!("host: {line}");
        }
    }
}

/// Every confirmed cast reaches the endpoint; one counted twice is reported (an ack lost with the
/// node means a redelivery), one missing fails the test.
fn check_casts(fault: &str, casts: Option<Casts>) {
    let Some(c) = casts else { return };
    println!(
        "casts across {fault}: {} confirmed, {} failed visibly at the caster, {} counted by the endpoint",
        c.sent, c.failed, c.counted
    );
    assert!(c.counted >= c.sent, "{fault}: confirmed casts lost: {c:?}");
    // A cast that failed at the caster may still have been delivered (its confirm was lost).
    if c.counted > c.sent + c.failed {
        println!("  {} casts arrived twice", c.counted - c.sent - c.failed);
    }
}

/// The calculator (for calls) and the counter (counting casts in the embedded store).
fn host_config(url: &str, topic: &str) -> String {
    format!(
        "transport_url = \"{url}\"\n\n[[server]]\ntopic = \"{topic}\"\nserver = \"s1\"\n\
         endpoints = [{}, {{ path = {}, keyvalue = [\"default\"] }}]\n",
        path_item(&wasm("calculator")),
        path_item(&wasm("counter")),
    )
}

/// A started cluster and what every load on it needs.
struct Bench {
    cluster: Arc<Cluster>,
    url: String,
    dir: std::path::PathBuf,
    oslo_config: std::path::PathBuf,
}

impl Bench {
    fn start() -> Bench {
        // FJORD_TEST_LOG=fjord_client=debug shows what the in-process client does around a fault.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("FJORD_TEST_LOG"))
            .with_test_writer()
            .try_init();
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
        println!(
            "| server | fault | client | answered | failed visibly | lost | wrong | recovery |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        Bench {
            cluster,
            url,
            dir,
            oslo_config,
        }
    }

    fn scenario(
        &self,
        topic: &str,
        fault: Fault,
        victim: usize,
        client_node: usize,
        count_casts: bool,
    ) -> Scenario<'_> {
        Scenario {
            cluster: &self.cluster,
            url: &self.url,
            topic: topic.to_string(),
            oslo_config: &self.oslo_config,
            fault,
            victim,
            client_node,
            count_casts,
            host: None,
        }
    }

    /// The seed's Python oslo server on `topic`, reading the oslo config.
    fn python_server(&self, topic: &str) -> (PyServer, String) {
        let config = self.oslo_config.to_string_lossy().to_string();
        let server = PyServer::spawn_env(&self.url, topic, "s1", &[("FJORD_OSLO_CONFIG", &config)]);
        let name = format!("oslo_server.py:{}", server.pid());
        (server, name)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_killed_under_load_lose_no_call() {
    let bench = Bench::start();
    let (cluster, url) = (&bench.cluster, bench.url.as_str());
    let scenario = |topic: &str, fault, victim, client_node, count_casts| {
        bench.scenario(topic, fault, victim, client_node, count_casts)
    };

    // fjord-host: the node it is connected to dies (with the fjord client's), then the one it
    // moved to, then that one freezes. Casts are counted by the endpoint across each.
    let topic = unique("cluster");
    let host = Host::start(&host_config(url, &topic));
    let name = format!("fjord-host:{}", host.pid());
    for (fault, kind) in [
        ("kill -9 of the host's node", Fault::Kill),
        ("kill -9 of its next node", Fault::Kill),
        ("SIGSTOP of its node", Fault::Freeze),
    ] {
        let victim = server_node(cluster, &topic).await;
        let (fjord, oslo, casts) = under_load(Scenario {
            host: Some(&host),
            ..scenario(&topic, kind, victim, victim, true)
        })
        .await;
        // After a freeze, fjord's client (on the frozen node) is not answered again within the
        // load in about 1 freeze in 10 (issue 17, not understood yet): its recovery is reported,
        // and the host must serve a new client.
        check_host(&host, fault, &fjord, &oslo, kind != Fault::Freeze);
        if kind == Fault::Freeze {
            assert!(
                serves_a_new_client(url, &topic).await,
                "fjord-host does not serve a new client after {fault}"
            );
        }
        check_casts(fault, casts);
        assert_ne!(
            node_of(cluster, &name).await,
            Some(victim),
            "the host is connected to the node that was faulted"
        );
    }

    // Two hosts on different nodes serve the topic; one host's node dies (the fjord client is on
    // the other's): the other host carries the load.
    let victim = node_of(cluster, &name)
        .await
        .expect("the host has no connection");
    let mut second = None;
    for _ in 0..10 {
        let other = Host::start(&host_config(url, &topic));
        let on = node_of(cluster, &format!("fjord-host:{}", other.pid())).await;
        if let Some(n) = on.filter(|&n| n != victim) {
            second = Some((other, n));
            break;
        }
    }
    let (second, second_node) = second.expect("10 hosts started and none on another node");
    let fault = "two hosts: kill -9 of one host's node";
    let (fjord, oslo, _) =
        under_load(scenario(&topic, Fault::Kill, victim, second_node, false)).await;
    check_host(&host, fault, &fjord, &oslo, true);
    drop(second);

    // A rolling restart of all three nodes, with the casts counted.
    let fault = "rolling restart of all nodes";
    let (fjord, oslo, casts) = under_load(Scenario {
        host: Some(&host),
        ..scenario(&topic, Fault::RollingRestart, 0, 0, true)
    })
    .await;
    check_host(&host, fault, &fjord, &oslo, true);
    check_casts(fault, casts);
    drop(host);

    // The seed's Python oslo server in fjord-host's place, on the same faults.
    let topic = unique("cluster-py");
    let _server = bench.python_server(&topic);
    for (fault, kind) in [
        ("kill -9 of the server's node", Fault::Kill),
        ("SIGSTOP of its node", Fault::Freeze),
        ("rolling restart of all nodes", Fault::RollingRestart),
    ] {
        let victim = server_node(cluster, &topic).await;
        let (fjord, oslo, _) = under_load(scenario(&topic, kind, victim, victim, false)).await;
        check("Python oslo server", fault, &fjord, &oslo, false);
    }
}

/// The median of some recovery times (a loss never recovered from counts as infinitely long).
fn median(times: &[Option<f64>]) -> f64 {
    let mut t: Vec<f64> = times.iter().map(|r| r.unwrap_or(f64::INFINITY)).collect();
    t.sort_by(f64::total_cmp);
    t.get(t.len() / 2).copied().unwrap_or(f64::NAN)
}

fn seconds(times: &[Option<f64>]) -> String {
    times
        .iter()
        .map(|r| r.map_or("never".to_string(), |s| format!("{s:.2}")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Issue 17's goals, measured (ignored: about 8 minutes; `scripts/cluster-bench`): 20 kills of
/// the node fjord-host is connected to, under the 16 callers with casts counted, the host's RSS
/// after each; then 5 kills of the Python oslo server's node. Prints recovery per kill and the
/// medians, per client, side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of about 8 minutes: scripts/cluster-bench"]
async fn repeated_node_losses_measurements() {
    // FJORD_KILLS=host,python changes the counts (e.g. `5,5` for a quicker look).
    let kills = std::env::var("FJORD_KILLS").unwrap_or_else(|_| "20,5".into());
    let (host_kills, python_kills) = kills
        .split_once(',')
        .and_then(|(h, p)| Some((h.parse::<usize>().ok()?, p.parse::<usize>().ok()?)))
        .expect("FJORD_KILLS=host,python");
    let bench = Bench::start();
    let cluster = &bench.cluster;
    let topic = unique("cluster");
    let host = Host::start(&host_config(&bench.url, &topic));
    let (mut fjord_rec, mut oslo_rec, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sent, mut counted) = (0, 0);
    let start_rss = host.rss_kib();
    for i in 1..=host_kills {
        let victim = server_node(cluster, &topic).await;
        let scenario = Scenario {
            host: Some(&host),
            ..bench.scenario(&topic, Fault::Kill, victim, victim, true)
        };
        let (fjord, oslo, casts) = under_load(scenario).await;
        let fault = format!("kill {i} of the host's node");
        check_host(&host, &fault, &fjord, &oslo, true);
        if let Some(c) = &casts {
            sent += c.sent;
            counted += c.counted;
        }
        check_casts(&fault, casts);
        fjord_rec.push(fjord.recovery);
        oslo_rec.push(oslo.recovery);
        rss.push(host.rss_kib());
    }
    drop(host);

    let topic = unique("cluster-py");
    let _server = bench.python_server(&topic);
    let (mut py_fjord_rec, mut py_oslo_rec) = (Vec::new(), Vec::new());
    for i in 1..=python_kills {
        let victim = server_node(cluster, &topic).await;
        let scenario = bench.scenario(&topic, Fault::Kill, victim, victim, false);
        let (fjord, oslo, _) = under_load(scenario).await;
        check(
            "Python oslo server",
            &format!("kill {i}"),
            &fjord,
            &oslo,
            false,
        );
        py_fjord_rec.push(fjord.recovery);
        py_oslo_rec.push(oslo.recovery);
    }

    println!("\n| server | client | recovery per kill (s) | median |");
    println!("|---|---|---|---|");
    for (server, client, times) in [
        ("fjord-host", "fjord", &fjord_rec),
        ("fjord-host", "oslo.messaging", &oslo_rec),
        ("Python oslo server", "fjord", &py_fjord_rec),
        ("Python oslo server", "oslo.messaging", &py_oslo_rec),
    ] {
        println!(
            "| {server} | {client} | {} | {:.2} s |",
            seconds(times),
            median(times)
        );
    }
    println!(
        "\ncasts across {host_kills} kills: {sent} confirmed, {counted} counted\n\
         fjord-host RSS (KiB): {start_rss} before, after each kill: {}",
        rss.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
