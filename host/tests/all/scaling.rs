//! What a call costs the brokers of a 3-node cluster, for `docs/scaling.md` (ignored: a
//! measurement; `cargo test -p fjord-host --test all scaling:: -- --ignored --nocapture`). 16
//! callers of fjord's client make 4,000 `add` calls to fjord-host through quorum queues, then
//! through classic ones; the CPU time of each node's VM (/proc/PID/stat) is divided by the calls.

use crate::cluster::Cluster;
use crate::harness::{path_item, unique, wasm, Host};
use fjord_client::{RpcClient, Target, Transport, TransportUrl};
use serde_json::{json, Map};
use std::time::{Duration, Instant};

const CALLS: usize = 4_000;
const CALLERS: usize = 16;

/// utime + stime of a process, in seconds (clock ticks of 10 ms).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Runs CALLS calls from CALLERS callers; returns the wall time.
async fn load(client: &RpcClient) -> Duration {
    let start = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                let ctx = Map::new();
                for i in 0..CALLS / CALLERS {
                    let a = (n * CALLS + i) as i64;
                    let sum: i64 = client
                        .call(&ctx, "add", json!({"a": a, "b": 1}))
                        .await
                        .unwrap();
                    assert_eq!(sum, a + 1);
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test -p fjord-host --test all scaling:: -- --ignored --nocapture"]
async fn broker_cpu_per_call_on_a_cluster() {
    let cluster = Cluster::start(3);
    println!("| queues | calls/s | node 0 us/call | node 1 | node 2 | all nodes | host node | client node | topic queue leader |");
    println!("|---|---|---|---|---|---|---|---|---|");
    // Each kind on its own control exchange: quorum queues come with durable exchanges, and
    // RabbitMQ refuses to re-declare `openstack` as transient.
    for (label, query, exchange) in [
        ("quorum", "?rabbit_quorum_queue=true", "quorum"),
        ("classic", "", "classic"),
    ] {
        let url = cluster.url(query);
        let topic = unique("scaling");
        let host = Host::start(&format!(
            "transport_url = \"{url}\"\ncontrol_exchange = \"{exchange}\"\n\
             [[server]]\ntopic = \"{topic}\"\nserver = \"s1\"\n\
             endpoints = [{}]\n",
            path_item(&wasm("calculator"))
        ));
        let transport =
            Transport::connect_with_exchange(&TransportUrl::parse(&url).unwrap(), exchange)
                .await
                .unwrap();
        let client_name = format!("fjord-client {}", transport.reply_queue_name());
        let client = RpcClient::new(transport, Target::new(topic.clone()))
            .prepare()
            .timeout(Duration::from_secs(30))
            .build();
        let warm: i64 = client
            .call(&Map::new(), "add", json!({"a": 1, "b": 1}))
            .await
            .unwrap();
        assert_eq!(warm, 2);
        let pids: Vec<u32> = cluster.nodes.iter().map(|n| n.pid()).collect();
        let before: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect();
        let wall = load(&client).await;
        let after: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect();
        let per_call: Vec<f64> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| (a - b) * 1e6 / CALLS as f64)
            .collect();
        let total: f64 = per_call.iter().sum();
        let host_node = cluster.node_of(&format!("fjord-host:{}", host.pid()));
        let client_node = cluster.node_of(&client_name);
        let leader = cluster.nodes[0].must(&["list_queues", "-q", "name", "type", "leader"]);
        let line = leader
            .lines()
            .find(|l| l.split_whitespace().next() == Some(topic.as_str()))
            .unwrap_or("");
        // Classic queues have no leader column value: their node is the one declaring them.
        let leader = cluster.nodes.iter().position(|n| line.contains(&n.node));
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {:.0} | {total:.0} | {host_node:?} | {client_node:?} | {leader:?} |",
            CALLS as f64 / wall.as_secs_f64(),
            per_call[0],
            per_call[1],
            per_call[2],
        );
        drop(host);
    }
    println!("(nodes numbered from 0 in the last three columns)");
}
