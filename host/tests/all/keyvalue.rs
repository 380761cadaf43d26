//! State through `wasi:keyvalue`: the counter endpoint and the `stateful` test component against the
//! embedded store and the real Redis, through the real broker.

use crate::harness::{path_item, unique, wasm, workspace, Host, URL};
use crate::interop::oslo_client;
use crate::interop::python::PyServer;
use crate::redis_node::{Prefix, PrivateRedis};
use fjord_client::{RpcClient, RpcError, Target, Transport, TransportUrl};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn client(topic: &str, timeout: Duration) -> RpcClient {
    let url = TransportUrl::parse(URL).unwrap();
    let transport = Transport::connect(&url).await.unwrap();
    RpcClient::new(transport, Target::new(topic))
        .prepare()
        .timeout(timeout)
        .build()
}

/// A directory of the test's own for embedded store files.
fn state_dir(test: &str) -> PathBuf {
    let dir = workspace().join("target/test-state").join(unique(test));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One server on `topic` with the counter (granted `default`) and the calculator.
fn counter_config(topic: &str, server: &str, keyvalue: &str) -> String {
    format!(
        "transport_url = \"{URL}\"\n[[server]]\ntopic = \"{topic}\"\nserver = \"{server}\"\n\
         endpoints = [{{ path = {}, keyvalue = [\"default\"] }}, {}]\n{keyvalue}",
        path_item(&wasm("counter")),
        path_item(&wasm("calculator")),
    )
}

fn embedded(path: &std::path::Path) -> String {
    format!("\n[keyvalue]\npath = {}\n", path_item(path))
}

async fn increment(c: &RpcClient, name: &str) -> Result<u64, RpcError> {
    c.call::<u64>(&Map::new(), "increment", json!({"name": name, "by": 1}))
        .await
}

async fn get(c: &RpcClient, name: &str) -> u64 {
    c.call::<u64>(&Map::new(), "get", json!({"name": name}))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_counter_accumulates_and_survives_a_restart() {
    let topic = unique("kv-restart");
    let file = state_dir("restart").join("state.redb");
    let mut host = Host::start(&counter_config(&topic, "s1", &embedded(&file)));
    let c = client(&topic, Duration::from_secs(20)).await;
    for expected in 1..=3 {
        assert_eq!(increment(&c, "visits").await.unwrap(), expected);
    }
    assert_eq!(get(&c, "visits").await, 3);
    assert_eq!(get(&c, "never").await, 0);
    host.stop();
    assert!(
        host.log().contains("fsyncs per write"),
        "the store reports its commits on a graceful stop:\n{}",
        host.log()
    );

    let _again = Host::start(&counter_config(&topic, "s1", &embedded(&file)));
    assert_eq!(get(&c, "visits").await, 3, "kept across the restart");
    assert_eq!(increment(&c, "visits").await.unwrap(), 4);
}

/// The Python counter (`endpoints/counter-py`, `fjord_guest.keyvalue`) and the Rust one share a
/// bucket: each sees the other's increments (a counter is decimal text for both); a Python
/// endpoint without the grant gets the refusal naming the bucket.
#[tokio::test]
async fn the_python_counter_shares_a_bucket_with_the_rust_one() {
    let topic = unique("kv-python");
    let file = state_dir("python").join("state.redb");
    let _host = Host::start(&format!(
        "transport_url = \"{URL}\"\n\
         [[server]]\ntopic = \"{topic}\"\nserver = \"rs\"\n\
         endpoints = [{{ path = {}, keyvalue = [\"default\"] }}]\n\
         [[server]]\ntopic = \"{topic}\"\nserver = \"py\"\n\
         endpoints = [{{ path = {}, keyvalue = [\"default\"] }}]\n\
         [[server]]\ntopic = \"{topic}\"\nserver = \"denied\"\n\
         endpoints = [{}]\n{}",
        path_item(&wasm("counter")),
        path_item(&wasm("counter-py")),
        path_item(&wasm("counter-py")),
        embedded(&file),
    ));
    let c = client(&topic, Duration::from_secs(30)).await;
    let rs = c.prepare().server("rs").build();
    let py = c.prepare().server("py").build();
    assert_eq!(increment(&py, "visits").await.unwrap(), 1);
    assert_eq!(increment(&rs, "visits").await.unwrap(), 2);
    assert_eq!(increment(&py, "visits").await.unwrap(), 3);
    assert_eq!(get(&py, "visits").await, 3);
    assert_eq!(get(&rs, "visits").await, 3);
    assert_eq!(get(&py, "never").await, 0);
    let denied = c.prepare().server("denied").build();
    let Err(RpcError::Remote(e)) = increment(&denied, "visits").await else {
        panic!("an endpoint without the grant incremented")
    };
    assert!(
        e.message.contains("'default'") && e.message.contains("denied"),
        "{e:?}"
    );
}

#[tokio::test]
async fn kill_9_loses_no_answered_increment() {
    let topic = unique("kv-kill");
    let file = state_dir("kill").join("state.redb");
    let mut host = Host::start(&counter_config(&topic, "s1", &embedded(&file)));
    let c = client(&topic, Duration::from_secs(3)).await;
    let answered = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (c, answered, stop) = (c.clone(), answered.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match increment(&c, "n").await {
                        Ok(v) => answered.lock().unwrap().push(v),
                        // The calls in flight at the kill never get an answer.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    // Kill once enough increments were answered (a loaded machine may take a while).
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.lock().unwrap().len() < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    host.kill();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let n = u64::try_from(answered.len()).unwrap();
    assert!(n >= 300, "only {n} increments answered before the kill");

    let _restarted = Host::start(&counter_config(&topic, "s1", &embedded(&file)));
    let c = client(&topic, Duration::from_secs(20)).await;
    let counter = get(&c, "n").await;
    let highest = answered.iter().copied().max().unwrap();
    println!(
        "kill -9 after {n} answered increments: counter {counter}, highest answered {highest}"
    );
    assert!(counter >= n, "counter {counter} < {n} answered increments");
    assert!(highest <= counter, "answered {highest} > counter {counter}");
    let mut unique_values = answered.clone();
    unique_values.sort_unstable();
    unique_values.dedup();
    assert_eq!(
        unique_values.len(),
        answered.len(),
        "every answer is its own value"
    );
}

#[tokio::test]
async fn two_hosts_share_one_counter_through_redis() {
    let topic = unique("kv-two-hosts");
    let prefix = Prefix::new("two-hosts");
    let _a = Host::start(&counter_config(&topic, "a", &prefix.section()));
    let _b = Host::start(&counter_config(&topic, "b", &prefix.section()));
    let c = client(&topic, Duration::from_secs(60)).await;
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut values = Vec::with_capacity(100);
                for _ in 0..100 {
                    values.push(increment(&c, "shared").await.unwrap());
                }
                values
            })
        })
        .collect();
    let mut all = Vec::new();
    for caller in callers {
        all.extend(caller.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=6400).collect::<Vec<u64>>(),
        "each increment once, none lost"
    );
    assert_eq!(get(&c, "shared").await, 6400);
}

#[test]
fn a_second_host_on_the_same_embedded_file_is_refused() {
    let file = state_dir("shared-file").join("state.redb");
    let _first = Host::start(&counter_config(
        &unique("kv-file-a"),
        "s1",
        &embedded(&file),
    ));
    let mut second = Host::spawn(&counter_config(
        &unique("kv-file-b"),
        "s1",
        &embedded(&file),
    ));
    let status = second
        .wait_exit(Duration::from_secs(60))
        .expect("the second host must stop");
    assert!(!status.success());
    let log = second.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("fjord-host:"))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    assert!(
        line.contains("in use by another fjord-host")
            && line.contains("`path`")
            && line.contains("Redis"),
        "{line}"
    );
}

#[test]
fn an_unreachable_redis_stops_the_host_at_start_with_the_password_masked() {
    let port = crate::broker::free_port();
    let section = format!("\n[keyvalue]\nurl = \"redis://:hunter2@127.0.0.1:{port}/0\"\n");
    let mut host = Host::spawn(&counter_config(&unique("kv-no-redis"), "s1", &section));
    let status = host.wait_exit(Duration::from_secs(60)).expect("must stop");
    assert!(!status.success());
    let log = host.log();
    assert!(
        log.contains(&format!("redis://:****@127.0.0.1:{port}/0")),
        "{log}"
    );
    assert!(!log.contains("hunter2"), "{log}");
}

/// The `stateful` component in namespace `state`, granted `default` only.
fn stateful_config(topic: &str, keyvalue: &str) -> String {
    format!(
        "transport_url = \"{URL}\"\n[[server]]\ntopic = \"{topic}\"\nserver = \"s1\"\n\
         endpoints = [{{ path = {}, namespace = \"state\", keyvalue = [\"default\"] }}]\n{keyvalue}",
        path_item(&wasm("stateful")),
    )
}

#[test]
fn python_drives_a_stateful_endpoint_as_it_drives_a_python_one() {
    let cases = [
        json!({"id": "append1", "method": "append", "args": {"text": "stat"}}),
        json!({"id": "append2", "method": "append", "args": {"text": "eful"}}),
        json!({"id": "add1", "method": "add", "args": {"increment": 5}}),
        json!({"id": "add2", "method": "add", "args": {"increment": 3}}),
        json!({"id": "too_much", "method": "subtract", "args": {"increment": 10}}),
        json!({"id": "subtract", "method": "subtract", "args": {"increment": 8}}),
        json!({"id": "ival", "method": "ival", "args": {}}),
        json!({"id": "sval", "method": "sval", "args": {}}),
    ]
    .map(|mut case| {
        case["namespace"] = json!("state");
        case
    });
    let fjord_topic = unique("kv-python-fjord");
    let file = state_dir("python").join("state.redb");
    let _host = Host::start(&stateful_config(&fjord_topic, &embedded(&file)));
    let python_topic = unique("kv-python-python");
    let _python = PyServer::spawn(URL, &python_topic, "s1");
    let fjord = oslo_client(&fjord_topic, &cases);
    let python = oslo_client(&python_topic, &cases);
    for (id, expected) in [
        ("append1", json!("stat")),
        ("append2", json!("stateful")),
        ("add1", json!(5)),
        ("add2", json!(8)),
        ("subtract", json!(0)),
        ("ival", json!(0)),
        ("sval", json!("stateful")),
    ] {
        assert_eq!(
            python[id]["result"], expected,
            "python {id}: {}",
            python[id]
        );
        assert_eq!(fjord[id]["result"], expected, "fjord {id}: {}", fjord[id]);
    }
    // Python raises ValueError itself; fjord raises the endpoint's `value-error` case, which oslo
    // rebuilds as a RemoteError of class ValueError with the same message.
    assert_eq!(
        python["too_much"]["exception"], "ValueError",
        "{}",
        python["too_much"]
    );
    assert_eq!(
        fjord["too_much"]["exception"], "RemoteError",
        "{}",
        fjord["too_much"]
    );
    assert_eq!(
        fjord["too_much"]["exc_type"], "ValueError",
        "{}",
        fjord["too_much"]
    );
    assert_eq!(python["too_much"]["value"], "ival can't go negative!");
    assert_eq!(fjord["too_much"]["value"], "ival can't go negative!");
}

/// The store error text of a call that must fail with the `Store` case.
async fn store_error(c: &RpcClient, method: &str, args: Value) -> String {
    match c.call::<Value>(&Map::new(), method, args.clone()).await {
        Err(RpcError::Remote(e)) if e.class == "Store" => e.message,
        other => panic!("{method}({args}): expected a Store failure, got {other:?}"),
    }
}

async fn ok(c: &RpcClient, method: &str, args: Value) -> Value {
    c.call::<Value>(&Map::new(), method, args.clone())
        .await
        .unwrap_or_else(|e| panic!("{method}({args}): {e}"))
}

/// Grants, limits and the batch calls, the same against each backend.
async fn grants_limits_and_batches(keyvalue: &str) {
    let topic = unique("kv-limits");
    let limits =
        "[keyvalue.buckets.default]\nmax_value_kib = 1\nmax_key_bytes = 16\nmax_keys = 4\n";
    let _host = Host::start(&stateful_config(&topic, &format!("{keyvalue}{limits}")));
    let c = client(&topic, Duration::from_secs(20)).await;
    let c = c.prepare().namespace("state").build();

    let denied = store_error(&c, "put", json!({"bucket": "cache", "key": "k", "size": 1})).await;
    assert!(
        denied.contains("\"cache\"") && denied.contains("not granted"),
        "{denied}"
    );

    ok(
        &c,
        "put",
        json!({"bucket": "default", "key": "big", "size": 1024}),
    )
    .await;
    assert_eq!(
        ok(&c, "fetch", json!({"bucket": "default", "key": "big"})).await,
        1024
    );
    let oversized = store_error(
        &c,
        "put",
        json!({"bucket": "default", "key": "big", "size": 1025}),
    )
    .await;
    assert!(
        oversized.contains("1025 bytes") && oversized.contains("max_value_kib"),
        "{oversized}"
    );
    assert_eq!(
        ok(&c, "fetch", json!({"bucket": "default", "key": "big"})).await,
        1024,
        "the refused write changed nothing"
    );
    let long_key = store_error(
        &c,
        "put",
        json!({"bucket": "default", "key": "k".repeat(17), "size": 1}),
    )
    .await;
    assert!(long_key.contains("max_key_bytes"), "{long_key}");

    ok(
        &c,
        "put_many",
        json!({"bucket": "default", "keys": ["a", "b", "a"]}),
    )
    .await;
    assert_eq!(
        ok(
            &c,
            "fetch_many",
            json!({"bucket": "default", "keys": ["a", "zz", "b"]})
        )
        .await,
        json!(["a", null, "b"])
    );
    assert_eq!(
        ok(
            &c,
            "bump",
            json!({"bucket": "default", "key": "n", "delta": 5})
        )
        .await,
        5
    );
    assert_eq!(
        ok(
            &c,
            "bump",
            json!({"bucket": "default", "key": "n", "delta": 2})
        )
        .await,
        7
    );
    assert_eq!(
        ok(&c, "keys", json!({"bucket": "default"})).await,
        json!(["a", "b", "big", "n"])
    );
    let full = store_error(
        &c,
        "put",
        json!({"bucket": "default", "key": "e", "size": 1}),
    )
    .await;
    assert!(full.contains("full") && full.contains("max_keys"), "{full}");
    let full = store_error(
        &c,
        "bump",
        json!({"bucket": "default", "key": "m", "delta": 1}),
    )
    .await;
    assert!(full.contains("max_keys"), "{full}");
    let not_a_counter = store_error(
        &c,
        "bump",
        json!({"bucket": "default", "key": "a", "delta": 1}),
    )
    .await;
    assert!(not_a_counter.contains("integer"), "{not_a_counter}");

    ok(
        &c,
        "remove_many",
        json!({"bucket": "default", "keys": ["a", "zz"]}),
    )
    .await;
    ok(&c, "remove", json!({"bucket": "default", "key": "b"})).await;
    assert_eq!(
        ok(&c, "present", json!({"bucket": "default", "key": "b"})).await,
        false
    );
    assert_eq!(
        ok(&c, "present", json!({"bucket": "default", "key": "n"})).await,
        true
    );
    assert_eq!(
        ok(&c, "keys", json!({"bucket": "default"})).await,
        json!(["big", "n"])
    );

    let hoard = store_error(&c, "hoard", json!({"bucket": "default", "times": 65})).await;
    assert!(hoard.contains("64 buckets"), "{hoard}");
    assert_eq!(
        ok(&c, "hoard", json!({"bucket": "default", "times": 64})).await,
        64
    );
}

#[tokio::test]
async fn grants_limits_and_batches_embedded() {
    let file = state_dir("limits").join("state.redb");
    grants_limits_and_batches(&embedded(&file)).await;
}

#[tokio::test]
async fn grants_limits_and_batches_redis() {
    let prefix = Prefix::new("limits");
    grants_limits_and_batches(&prefix.section()).await;
}

#[derive(Default, Debug)]
struct Tally {
    answered: u64,
    failed: u64,
    lost: u64,
    last_failure: String,
}

/// Waits (at most a minute) until the tally satisfies `done`.
async fn wait_for(tally: &Mutex<Tally>, what: &str, done: impl Fn(&Tally) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&tally.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}",
            tally.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_redis_outage_fails_calls_visibly_and_service_comes_back() {
    let mut redis = PrivateRedis::start();
    let topic = unique("kv-outage");
    let section = format!("\n[keyvalue]\nurl = \"{}\"\n", redis.url());
    let host = Host::start(&counter_config(&topic, "s1", &section));
    let c = client(&topic, Duration::from_secs(5)).await;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (c, tally, stop) = (c.clone(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let outcome =
                        tokio::time::timeout(Duration::from_secs(6), increment(&c, "n")).await;
                    {
                        let mut t = tally.lock().unwrap();
                        match outcome {
                            Ok(Ok(_)) => t.answered += 1,
                            Ok(Err(RpcError::Remote(e))) => {
                                t.failed += 1;
                                t.last_failure = e.message;
                            }
                            Ok(Err(e)) => panic!("unexpected failure: {e}"),
                            Err(_) => t.lost += 1,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    wait_for(&tally, "answered before the outage", |t| t.answered >= 50).await;
    redis.kill();
    let failed_before = tally.lock().unwrap().failed;
    wait_for(&tally, "failures during the outage", |t| {
        t.failed >= failed_before + 20
    })
    .await;
    // The host keeps serving: a method that needs no state still answers.
    let sum: i64 = c
        .call(&Map::new(), "add", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(sum, 5);
    let answered_during = tally.lock().unwrap().answered;
    redis.restart();
    let back = Instant::now();
    wait_for(&tally, "answered after the restart", |t| {
        t.answered >= answered_during + 50
    })
    .await;
    let back_after = back.elapsed();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let t = tally.lock().unwrap();
    println!(
        "redis outage: answered {}, failed visibly {}, lost {}; back {:.2} s after the restart; last failure: {}",
        t.answered,
        t.failed,
        t.lost,
        back_after.as_secs_f64(),
        t.last_failure
    );
    assert_eq!(t.lost, 0, "every call answered or failed visibly");
    assert!(t.last_failure.contains("redis"), "{}", t.last_failure);
    assert!(back_after < Duration::from_secs(30));
    drop(t);
    assert!(!host.log().contains("panicked"), "{}", host.log());
}
