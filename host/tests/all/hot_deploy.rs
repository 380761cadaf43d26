//! Hot deploy: a component replaced while 16 callers keep calling (SIGHUP), `--watch`, a broken
//! component refused while the old one serves on, servers added and removed by a reload.

use crate::harness::{path_item, unique, wasm, Host, URL};
use crate::ops::{client, scratch};
use fjord_client::RpcError;
use serde_json::{json, Map};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `add(2, 3)` answers: 5 from the calculator, 1005 from calculator-next.
const OLD: i64 = 5;
const NEW: i64 = 1005;

/// Replaces `target` with `source` atomically (a copy, then a rename), as a deploy does.
fn deploy(source: &Path, target: &Path) {
    let staging = target.with_extension("wasm.new");
    std::fs::copy(source, &staging).unwrap();
    std::fs::rename(&staging, target).unwrap();
}

fn one_server(topic: &str, endpoint: &Path) -> String {
    format!(
        "transport_url = \"{URL}\"\n[[server]]\ntopic = \"{topic}\"\nserver = \"server1\"\nendpoints = [{}]\n",
        path_item(endpoint)
    )
}

#[derive(Default)]
struct Counts {
    old: AtomicU64,
    new: AtomicU64,
    failed: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_callers_while_the_calculator_is_replaced_twenty_times() {
    let topic = unique("hot-deploy");
    let dir = scratch("hot-deploy");
    let calc = dir.join("calc.wasm");
    let (old, new) = (wasm("calculator"), wasm("calculator_next"));
    std::fs::copy(&old, &calc).unwrap();
    let host = Host::start(&one_server(&topic, &calc));
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..16 {
        let c = client(&topic).await;
        let (counts, stop) = (counts.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let ctx = Map::new();
            while !stop.load(Ordering::SeqCst) {
                match c.call::<i64>(&ctx, "add", json!({"a": 2, "b": 3})).await {
                    Ok(OLD) => counts.old.fetch_add(1, Ordering::SeqCst),
                    Ok(NEW) => counts.new.fetch_add(1, Ordering::SeqCst),
                    Ok(other) => panic!("add(2, 3) answered {other}"),
                    Err(e) => {
                        eprintln!("a call failed: {e}");
                        counts.failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        }));
    }
    let probe = client(&topic).await;
    let started = Instant::now();
    for round in 1..=20 {
        let (source, expect) = if round % 2 == 1 {
            (&new, NEW)
        } else {
            (&old, OLD)
        };
        deploy(source, &calc);
        host.hangup();
        assert!(
            host.wait_for_count("reloaded:", round, Duration::from_secs(60)),
            "reload {round} did not happen:\n{}",
            host.log()
        );
        // A call made after the reload is answered by the new version.
        let answer: i64 = probe
            .call(&Map::new(), "add", json!({"a": 2, "b": 3}))
            .await
            .unwrap();
        assert_eq!(answer, expect, "after reload {round}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }
    let (o, n, f) = (
        counts.old.load(Ordering::SeqCst),
        counts.new.load(Ordering::SeqCst),
        counts.failed.load(Ordering::SeqCst),
    );
    println!(
        "hot deploy: 20 replacements in {:.1} s under 16 callers: {} calls answered, {o} by the \
         calculator, {n} by calculator-next, {f} failed",
        took.as_secs_f64(),
        o + n
    );
    assert_eq!(f, 0, "{}", host.log());
    assert!(o > 0 && n > 0, "both versions answered: {o} {n}");
    assert!(!host.log().contains("reload refused"), "{}", host.log());
}

#[tokio::test]
async fn watch_reloads_a_changed_component_and_a_broken_one_changes_nothing() {
    let topic = unique("hot-watch");
    let dir = scratch("hot-watch");
    let calc = dir.join("calc.wasm");
    std::fs::copy(wasm("calculator"), &calc).unwrap();
    let host = Host::start_with(&one_server(&topic, &calc), &["--watch"], &[]);
    assert!(
        host.wait_for("watching 2 files", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    let c = client(&topic).await;
    let ctx = Map::new();
    let add = || c.call::<i64>(&ctx, "add", json!({"a": 2, "b": 3}));
    assert_eq!(add().await.unwrap(), OLD);
    deploy(&wasm("calculator_next"), &calc);
    assert!(
        host.wait_for("reloaded:", Duration::from_secs(30)),
        "{}",
        host.log()
    );
    assert_eq!(add().await.unwrap(), NEW);
    // Not a component: refused in one line naming the file, the previous one serves on.
    std::fs::write(dir.join("calc.wasm.new"), b"not a component").unwrap();
    std::fs::rename(dir.join("calc.wasm.new"), &calc).unwrap();
    assert!(
        host.wait_for("reload refused", Duration::from_secs(30)),
        "{}",
        host.log()
    );
    let log = host.log();
    let line = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(line.contains("calc.wasm"), "{line}");
    assert_eq!(add().await.unwrap(), NEW);
    // A broken config too.
    std::fs::write(host.config_file(), "transport_url = 5\n").unwrap();
    assert!(
        host.wait_for_count("reload refused", 2, Duration::from_secs(30)),
        "{}",
        host.log()
    );
    let log = host.log();
    let line = log
        .lines()
        .filter(|l| l.contains("reload refused"))
        .nth(1)
        .unwrap();
    assert!(
        line.contains("fjord.toml") && line.contains("transport_url"),
        "{line}"
    );
    assert_eq!(add().await.unwrap(), NEW);
}

/// How many consumers the shared broker's queue has (`rabbitmqctl`, read only).
fn consumers(queue: &str) -> Option<u64> {
    let out = Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "consumers",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next()? == queue).then(|| parts.next()?.parse().ok())?
    })
}

#[tokio::test]
async fn a_reload_subscribes_added_servers_and_unsubscribes_removed_ones() {
    let (first, second) = (unique("hot-a"), unique("hot-b"));
    let calculator = wasm("calculator");
    let host = Host::start(&one_server(&first, &calculator));
    let two = format!(
        "{}\n[[server]]\ntopic = \"{second}\"\nserver = \"server1\"\nendpoints = [{}]\n",
        one_server(&first, &calculator),
        path_item(&wasm("calculator_next"))
    );
    std::fs::write(host.config_file(), &two).unwrap();
    host.hangup();
    assert!(
        host.wait_for(
            "1 servers updated, 1 added, 0 removed",
            Duration::from_secs(30)
        ),
        "{}",
        host.log()
    );
    let b = client(&second).await;
    let answer: i64 = b
        .call(&Map::new(), "add", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(answer, NEW);
    std::fs::write(host.config_file(), one_server(&first, &calculator)).unwrap();
    host.hangup();
    assert!(
        host.wait_for(
            "1 servers updated, 0 added, 1 removed",
            Duration::from_secs(30)
        ),
        "{}",
        host.log()
    );
    assert!(host
        .log()
        .contains(&format!("no longer serving {second}.server1")));
    assert_eq!(consumers(&format!("{second}.server1")), Some(0));
    assert_eq!(consumers(&second), Some(0));
    let quick = b.prepare().timeout(Duration::from_secs(2)).build();
    let e = quick
        .call::<i64>(&Map::new(), "add", json!({"a": 2, "b": 3}))
        .await;
    assert!(matches!(e, Err(RpcError::Timeout(_))), "{e:?}");
    let a = client(&first).await;
    let answer: i64 = a
        .call(&Map::new(), "add", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(answer, OLD);
}
