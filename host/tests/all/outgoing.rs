//! Endpoints that are clients too (`fjord:endpoint/rpc`), through the real broker: every
//! `call-error` case, grants, deadline accounting, the context passed on, a chain that comes back
//! into the same host under load, a guest calling itself, and a fanout cast from a guest.

use crate::harness::{path_item, unique, wasm, Host, URL};
use crate::rpc::client;
use fjord_client::{RpcClient, RpcError};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// A `hop` record of the relay's WIT.
fn hop(topic: &str, server: Option<&str>, namespace: Option<&str>) -> Value {
    json!({"topic": topic, "server": server, "version": null, "namespace": namespace, "fanout": false})
}

/// A host serving, on `topic`/`s1`: the relay (with `relay_settings`, e.g. its `calls`), the
/// calculator, and the greeter in namespace `greet`; `host_settings` go at the top.
fn relay_host(topic: &str, relay_settings: &str, host_settings: &str) -> Host {
    Host::start(&relay_config(topic, relay_settings, host_settings))
}

fn relay_config(topic: &str, relay_settings: &str, host_settings: &str) -> String {
    format!(
        "transport_url = \"{URL}\"\n{host_settings}\n[[server]]\ntopic = \"{topic}\"\n\
         server = \"s1\"\nendpoints = [{{ path = {} {relay_settings} }}, {}, \
         {{ path = {}, namespace = \"greet\" }}]\n",
        path_item(&wasm("relay")),
        path_item(&wasm("calculator")),
        path_item(&wasm("greeter")),
    )
}

/// What `relay.call` answered: the callee's result (JSON text), or the call-error as text.
async fn relay_call(
    c: &RpcClient,
    ctx: Map<String, Value>,
    to: Value,
    method: &str,
    args: Value,
    timeout: Option<f64>,
) -> Result<String, String> {
    let sent = json!({"to": to, "method": method, "args": args.to_string(),
                      "timeout": timeout, "context": null});
    match c.call::<Value>(&ctx, "call", sent).await {
        Ok(v) => Ok(v.as_str().map_or_else(|| v.to_string(), str::to_string)),
        Err(RpcError::Remote(e)) => Err(e.message),
        Err(e) => panic!("relay.call {method}: {e}"),
    }
}

#[tokio::test]
async fn every_call_error_case_reaches_the_guest() {
    let topic = unique("out-errors");
    let absent = unique("out-absent");
    let grants = format!("calls = [\"{topic}\", \"{topic}.s1\", \"{absent}\"]");
    let _host = relay_host(&topic, &format!(", {grants}"), "");
    let c = client(&topic).await;
    let ctx = Map::new();

    let sum = relay_call(
        &c,
        ctx.clone(),
        hop(&topic, None, None),
        "add",
        json!({"a": 2, "b": 3}),
        None,
    );
    assert_eq!(sum.await, Ok("5".into()));
    // A server the grant names.
    let at = hop(&topic, Some("s1"), None);
    assert_eq!(
        relay_call(&c, ctx.clone(), at, "add", json!({"a": 1, "b": 1}), None).await,
        Ok("2".into())
    );

    let raised = relay_call(
        &c,
        ctx.clone(),
        hop(&topic, None, Some("greet")),
        "raise_remote",
        json!({"module": "nova.exception", "class": "NoValidHost", "message": "none fits"}),
        None,
    );
    assert_eq!(
        raised.await,
        Err("remote: nova.exception.NoValidHost: none fits".into())
    );

    // Granted, but nobody consumes the topic: oslo's MessagingTimeout, at the guest's timeout.
    let started = Instant::now();
    let lost = relay_call(
        &c,
        ctx.clone(),
        hop(&absent, None, None),
        "add",
        json!({}),
        Some(0.5),
    )
    .await;
    let waited = started.elapsed();
    assert!(
        matches!(&lost, Err(e) if e.starts_with("timeout: ") && e.contains("Timed out")),
        "{lost:?}"
    );
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    for (to, why) in [
        (hop("elsewhere", None, None), "may not call elsewhere"),
        (
            hop(&topic, Some("s2"), None),
            &format!("may not call {topic}.s2"),
        ),
    ] {
        let denied = relay_call(&c, ctx.clone(), to, "add", json!({}), None).await;
        assert!(
            matches!(&denied, Err(e) if e.starts_with("not-allowed: ") && e.contains(why)),
            "{denied:?}"
        );
    }

    let send = |args: &str, timeout: Option<f64>| {
        json!({"to": hop(&topic, None, None), "method": "add", "args": args,
               "timeout": timeout, "context": null})
    };
    for (sent, why) in [
        (send("[1, 2]", None), "not an array"),
        (send("{\"a\":", None), "not JSON"),
        (send("{}", Some(-2.0)), "positive"),
    ] {
        let got = match c.call::<Value>(&ctx, "call", sent).await {
            Err(RpcError::Remote(e)) => e.message,
            other => panic!("{other:?}"),
        };
        assert!(
            got.starts_with("bad-arguments: ") && got.contains(why),
            "{got}"
        );
    }

    // The callee's own failures come back as remote failures (a TypeError for a wrong type).
    let wrong = relay_call(
        &c,
        ctx.clone(),
        hop(&topic, None, None),
        "add",
        json!({"a": "x", "b": 1}),
        None,
    );
    assert!(matches!(wrong.await, Err(e) if e.starts_with("remote: builtins.TypeError")));
}

/// A reload that grants `calls` to a host that had none works at once: the host's client
/// connection opens on the first outgoing call.
#[tokio::test]
async fn calls_granted_by_a_reload_work_at_once() {
    let topic = unique("out-reload");
    let host = relay_host(&topic, "", "");
    let c = client(&topic).await;
    let before = relay_call(
        &c,
        Map::new(),
        hop(&topic, None, None),
        "add",
        json!({"a": 1, "b": 2}),
        None,
    );
    assert!(matches!(before.await, Err(e) if e.starts_with("not-allowed: ")));
    assert!(!host
        .log()
        .contains("outgoing calls: client connection open"));

    std::fs::write(
        host.config_file(),
        relay_config(&topic, &format!(", calls = [\"{topic}\"]"), ""),
    )
    .unwrap();
    host.hangup();
    assert!(
        host.wait_for("reloaded:", Duration::from_secs(20)),
        "{}",
        host.log()
    );
    let after = relay_call(
        &c,
        Map::new(),
        hop(&topic, None, None),
        "add",
        json!({"a": 1, "b": 2}),
        None,
    );
    assert_eq!(after.await, Ok("3".into()), "{}", host.log());
    assert!(host
        .log()
        .contains("outgoing calls: client connection open"));
}

/// `unavailable`: the callee's reply is larger than the calling endpoint accepts
/// (its `max_request_kib`); the guest is told so, and the host keeps serving.
#[tokio::test]
async fn a_reply_larger_than_the_caller_accepts_is_unavailable() {
    let topic = unique("out-big");
    let host = Host::start(&format!(
        "transport_url = \"{URL}\"\n[[server]]\ntopic = \"{topic}\"\nserver = \"s1\"\n\
         endpoints = [{{ path = {}, calls = [\"{topic}\"], max_request_kib = 4 }}, \
         {{ path = {}, namespace = \"hostile\" }}]\n",
        path_item(&wasm("relay")),
        path_item(&wasm("hostile")),
    ));
    let c = client(&topic).await;
    let big = relay_call(
        &c,
        Map::new(),
        hop(&topic, None, Some("hostile")),
        "big_reply",
        json!({"bytes": 100_000}),
        None,
    );
    let err = big.await.unwrap_err();
    assert!(
        err.starts_with("unavailable: ") && err.contains("4096 bytes"),
        "{err}\n{}",
        host.log()
    );
    let small = relay_call(
        &c,
        Map::new(),
        hop(&topic, None, Some("hostile")),
        "big_reply",
        json!({"bytes": 100}),
        None,
    );
    assert_eq!(small.await.map(|r| r.len()), Ok(102));
}

#[tokio::test]
async fn outgoing_calls_count_against_the_callers_deadline() {
    let topic = unique("out-deadline");
    let _host = relay_host(
        &topic,
        &format!(", calls = [\"{topic}\"], deadline_ms = 1500"),
        "",
    );
    let c = client(&topic).await;
    let greet = hop(&topic, None, Some("greet"));

    // A callee that sleeps past the caller's deadline: the caller fails with its own deadline,
    // at that deadline, not when the callee is done.
    let started = Instant::now();
    let sent = json!({"to": greet.clone(), "method": "sleep_ms", "args": "{\"ms\": 4000}",
                      "timeout": null, "context": null});
    let late = c.call::<Value>(&Map::new(), "call", sent).await;
    let waited = started.elapsed();
    assert!(
        matches!(&late, Err(RpcError::Remote(e)) if e.class == "DeadlineExceeded"),
        "{late:?}"
    );
    assert!(waited < Duration::from_millis(2500), "{waited:?}");

    // A timeout within the time left is the guest's to handle.
    let started = Instant::now();
    let short = relay_call(
        &c,
        Map::new(),
        greet.clone(),
        "sleep_ms",
        json!({"ms": 3000}),
        Some(0.3),
    )
    .await;
    assert!(
        matches!(&short, Err(e) if e.starts_with("timeout: ")),
        "{short:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );

    // The wait and the guest's own work share the deadline: 600 ms waiting plus 400 ms of
    // spinning fits in 1.5 s; 600 + 1200 does not.
    let spin = |ms: u32| json!({"to": greet.clone(), "method": "sleep_ms", "args": "{\"ms\": 600}", "spin_ms": ms});
    let fits = c
        .call::<String>(&Map::new(), "call_then_spin", spin(400))
        .await;
    assert!(fits.as_ref().is_ok_and(|s| s.contains("spins")), "{fits:?}");
    let over = c
        .call::<String>(&Map::new(), "call_then_spin", spin(1200))
        .await;
    assert!(
        matches!(&over, Err(RpcError::Remote(e)) if e.class == "DeadlineExceeded"),
        "{over:?}"
    );
}

/// While a guest waits for a reply it burns no CPU: ten calls each waiting 2 s cost the host
/// far less than the 20 s a spinning wait would.
#[tokio::test]
async fn a_waiting_guest_burns_no_cpu() {
    let topic = unique("out-idle");
    let host = relay_host(&topic, &format!(", calls = [\"{topic}\"]"), "");
    let c = client(&topic).await;
    let greet = hop(&topic, None, Some("greet"));
    let before = cpu_ticks(host.pid());
    let calls = (0..10).map(|_| {
        relay_call(
            &c,
            Map::new(),
            greet.clone(),
            "sleep_ms",
            json!({"ms": 2000}),
            None,
        )
    });
    for done in futures_util::future::join_all(calls).await {
        assert_eq!(done, Ok("null".into()));
    }
    let used = cpu_ticks(host.pid()).saturating_sub(before);
    // Clock ticks of 10 ms: under 1 s of CPU for 20 s of waiting.
    assert!(used < 100, "the host used {used} ticks of CPU");
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn the_context_goes_on_to_the_callee() {
    let topic = unique("out-context");
    let host = relay_host(&topic, &format!(", calls = [\"{topic}\"]"), "");
    let c = client(&topic).await;
    let ctx = json!({"request_id": "req-3f1c", "user_id": "alice", "roles": ["admin"]});
    let seen = relay_call(
        &c,
        ctx.as_object().unwrap().clone(),
        hop(&topic, None, Some("greet")),
        "context_json",
        json!({}),
        None,
    )
    .await
    .unwrap();
    // context_json returns JSON text, which the relay returns as JSON: a string holding it.
    let seen: String = serde_json::from_str(&seen).unwrap();
    let seen: Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(seen["request_id"], "req-3f1c");
    assert_eq!(seen["global_request_id"], "req-3f1c");
    assert_eq!(seen["user_id"], "alice");
    assert_eq!(seen["roles"], json!(["admin"]));
    assert_eq!(seen["fjord_call_depth"], 1);
    // What the callee logs carries the first request's id as its global_request_id, so one
    // request can be followed through the log.
    let logged = relay_call(
        &c,
        ctx.as_object().unwrap().clone(),
        hop(&topic, None, Some("greet")),
        "log_lines",
        json!({}),
        None,
    );
    assert_eq!(logged.await, Ok("null".into()));
    assert!(
        host.wait_for("greeter: info", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    let log = host.log();
    let line = log.lines().find(|l| l.contains("greeter: info")).unwrap();
    assert!(
        line.contains("global_request_id") && line.contains("req-3f1c"),
        "{line}"
    );

    // A context the guest gives is sent instead (with the global id and the depth).
    let sent = json!({"to": hop(&topic, None, Some("greet")), "method": "context_json",
                      "args": "{}", "timeout": null, "context": "{\"user_id\": \"bob\"}"});
    let given: String = c
        .call(ctx.as_object().unwrap(), "call", sent)
        .await
        .unwrap();
    let given: String = serde_json::from_str(&given).unwrap();
    let given: Value = serde_json::from_str(&given).unwrap();
    assert_eq!(given["user_id"], "bob");
    assert_eq!(given["global_request_id"], "req-3f1c");
    assert_eq!(given.get("request_id"), None);
}

/// A chain that comes back into the same host (client -> relay -> calculator, one host) with
/// 64 callers at once and only 4 calls allowed to run: every call completes, because a call
/// waiting for its reply lends its slot back, and calls a chain makes never queue behind new
/// requests.
#[tokio::test]
async fn a_chain_back_into_the_same_host_completes_under_load() {
    let topic = unique("out-chain");
    let host = relay_host(
        &topic,
        &format!(", calls = [\"{topic}\"]"),
        "executor_thread_pool_size = 4",
    );
    let c = client(&topic).await;
    let started = Instant::now();
    let calls = (0..64i64).map(|i| {
        let c = c.clone();
        let to = hop(&topic, None, None);
        async move {
            let args = json!({"a": i, "b": 1}).to_string();
            c.call::<String>(
                &Map::new(),
                "forward",
                json!({"to": to, "method": "add", "args": args}),
            )
            .await
        }
    });
    let done = futures_util::future::join_all(calls).await;
    for (i, d) in (0..64i64).zip(&done) {
        assert_eq!(
            d.as_deref().ok(),
            Some((i + 1).to_string().as_str()),
            "call {i}: {d:?}\n{}",
            host.log()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// A guest calling itself ends in a clear failure at `max_call_depth`, not in a hang.
#[tokio::test]
async fn a_guest_calling_itself_ends_at_the_depth_limit() {
    let topic = unique("out-recurse");
    let _host = relay_host(
        &topic,
        &format!(", calls = [\"{topic}\"]"),
        "max_call_depth = 5",
    );
    let c = client(&topic).await;
    let started = Instant::now();
    let err = c
        .call::<u32>(&Map::new(), "recurse", json!({"topic": topic, "depth": 0}))
        .await;
    let Err(RpcError::Remote(e)) = err else {
        panic!("{err:?}")
    };
    assert!(
        e.message.contains("not allowed") && e.message.contains("already 5 calls deep"),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A guest's fanout cast reaches every server of the topic (the counter on two hosts).
#[tokio::test]
async fn a_fanout_cast_from_a_guest_reaches_every_server() {
    let relay_topic = unique("out-fanout");
    let counters = unique("out-counters");
    let _relay = relay_host(&relay_topic, &format!(", calls = [\"{counters}\"]"), "");
    let dir = std::env::temp_dir().join(unique("fjord-fanout"));
    std::fs::create_dir_all(&dir).unwrap();
    let hosts: Vec<Host> = ["a", "b"]
        .iter()
        .map(|server| {
            Host::start(&format!(
                "transport_url = \"{URL}\"\n[[server]]\ntopic = \"{counters}\"\nserver = \"{server}\"\n\
                 endpoints = [{{ path = {}, keyvalue = [\"default\"] }}]\n[keyvalue]\npath = {}\n",
                path_item(&wasm("counter")),
                path_item(&dir.join(format!("{server}.redb"))),
            ))
        })
        .collect();
    let c = client(&relay_topic).await;
    let to = json!({"topic": counters, "server": null, "version": null, "namespace": null,
                    "fanout": true});
    let cast = c
        .call::<Value>(
            &Map::new(),
            "cast",
            json!({"to": to, "method": "increment",
                                                   "args": "{\"name\": \"x\", \"by\": 1}"}),
        )
        .await;
    assert_eq!(cast.unwrap(), Value::Null);
    let counter = client(&counters).await;
    for server in ["a", "b"] {
        let at = counter.prepare().server(server).build();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n: u64 = at
                .call(&Map::new(), "get", json!({"name": "x"}))
                .await
                .unwrap();
            if n == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server {server} never got the cast"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(hosts);
    let _ = std::fs::remove_dir_all(&dir);
}
