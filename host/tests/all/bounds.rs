//! What one call may cost the host, whatever the guest does: a result is measured in the guest's
//! memory before it is lifted (so a huge one is refused before the host allocates it), and the
//! guest's log is capped per call. Peak RSS is read from /proc/PID/status (VmHWM), reset between
//! measurements through /proc/PID/clear_refs.

use crate::harness::{config, path_item, unique, wasm, Host, URL};
use fjord_client::{RpcClient, RpcError, Target, Transport, TransportUrl};
use fjord_host::dispatch::Dispatcher;
use fjord_host::endpoint::{self, Method};
use fjord_host::guest_api::CallInfo;
use fjord_host::sandbox::{GuestFailure, Limits, Sandbox};
use fjord_oslo::envelope::Request;
use fjord_oslo::Failure;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Val;

const MIB: u64 = 1024;

/// The hostile endpoint with room for a 40 MB result in the guest (256 MiB) and the default
/// `max_reply_kib` (1 MiB).
fn roomy_host(topic: &str) -> Host {
    let item = format!(
        "{{ path = {}, namespace = \"hostile\", memory_mib = 256, deadline_ms = 60000 }}",
        path_item(&wasm("hostile"))
    );
    Host::start(&config(&[(topic, "server1", &item)]))
}

async fn client(topic: &str) -> RpcClient {
    let transport = Transport::connect(&TransportUrl::parse(URL).unwrap())
        .await
        .unwrap();
    RpcClient::new(transport, Target::new(topic))
        .prepare()
        .namespace("hostile")
        .timeout(Duration::from_secs(120))
        .build()
}

/// Resets the peak RSS (VmHWM) of a process we started.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// Runs `method(args)` four times at once and returns the host's peak RSS meanwhile (KiB) and
/// the outcomes.
async fn peak_of_four(
    host: &Host,
    c: &RpcClient,
    method: &'static str,
    args: Value,
) -> (u64, Vec<Result<Value, RpcError>>) {
    reset_peak(host.pid());
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (c, args) = (c.clone(), args.clone());
            tokio::spawn(async move { c.call::<Value>(&Map::new(), method, args).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    (host.status_kib("VmHWM:"), outcomes)
}

fn assert_reply_too_large(what: &str, outcomes: &[Result<Value, RpcError>]) {
    for outcome in outcomes {
        match outcome {
            Err(RpcError::Remote(e)) => {
                assert_eq!(
                    (e.class.as_str(), e.module.as_str()),
                    ("ReplyTooLarge", "fjord"),
                    "{what}: {e:?}"
                );
                assert!(e.message.contains("1048576 bytes"), "{what}: {}", e.message);
            }
            other => panic!("{what}: expected ReplyTooLarge, got {other:?}"),
        }
    }
}

/// Four 40 MB results at once (a `list<u8>`, a string, a `list<string>`, nested records), each
/// legal for the guest's 256 MiB but far over the 1 MiB `max_reply_kib`, then results sized to
/// make the host lift as much as their budget allows before they are refused: every caller gets
/// `ReplyTooLarge`, and the host's peak RSS stays under 1 GiB (the guests' own memories
/// included). At eed7b73 (wasmtime's default budget of 128 MiB of values per lift, then a JSON
/// tree), four 3 MB `list<u8>` results already peaked at 669 MiB and 300,000 records at 992 MiB.
#[tokio::test]
async fn huge_results_are_refused_before_they_are_lifted() {
    let topic = unique("bounds-reply");
    let host = roomy_host(&topic);
    let c = client(&topic).await;
    let ok: String = c.call(&Map::new(), "ok", json!({})).await.unwrap();
    assert_eq!(ok, "ok");
    let idle = host.status_kib("VmRSS:");
    let cases: [(&str, &'static str, Value); 7] = [
        (
            "list<u8> of 40 MB",
            "big_bytes",
            json!({"bytes": 40_000_000}),
        ),
        ("string of 40 MB", "big_reply", json!({"bytes": 40_000_000})),
        (
            "list<string> of 1,000,000 x 40 bytes",
            "big_strings",
            json!({"count": 1_000_000, "each": 40}),
        ),
        (
            "list<row> of 1,000,000 nested records",
            "big_records",
            json!({"count": 1_000_000}),
        ),
        // Within their budgets: lifted whole (or nearly), refused as JSON text.
        (
            "list<u8> of 540,000 (lifted, 1.03 MB of JSON)",
            "big_bytes",
            json!({"bytes": 540_000}),
        ),
        (
            "list<string> of 300,000 x 40 bytes (budget ends midway)",
            "big_strings",
            json!({"count": 300_000, "each": 40}),
        ),
        (
            "list<row> of 100,000 nested records (budget ends midway)",
            "big_records",
            json!({"count": 100_000}),
        ),
    ];
    let mut figures = Vec::new();
    for (what, method, args) in cases {
        let (peak, outcomes) = peak_of_four(&host, &c, method, args).await;
        assert_reply_too_large(what, &outcomes);
        eprintln!("four at once, {what}: host peak RSS {} MiB", peak / MIB);
        figures.push((what, peak));
    }
    // And the largest legal replies: 1 MiB of JSON each, answered.
    let (peak, outcomes) = peak_of_four(&host, &c, "big_bytes", json!({"bytes": 524_287})).await;
    for outcome in outcomes {
        let list = outcome.unwrap();
        assert_eq!(list.as_array().map(Vec::len), Some(524_287));
    }
    eprintln!(
        "four at once, list<u8> of 524,287 (a 1 MiB reply, answered): host peak RSS {} MiB",
        peak / MIB
    );
    figures.push(("four 1 MiB replies", peak));
    let ok: String = c.call(&Map::new(), "ok", json!({})).await.unwrap();
    assert_eq!(ok, "ok", "the host still serves");
    eprintln!("host RSS idle before: {} MiB", idle / MIB);
    for (what, peak) in figures {
        assert!(
            peak < 1024 * MIB,
            "{what}: peak RSS {} MiB is over 1 GiB",
            peak / MIB
        );
    }
}

/// The hostile endpoint loaded in-process with room for big results, and its dispatcher.
fn roomy_dispatcher() -> (Arc<Sandbox>, Dispatcher) {
    let sandbox = Arc::new(Sandbox::new().unwrap());
    let limits = Limits {
        memory_bytes: 256 << 20,
        deadline: Duration::from_secs(60),
        ..Limits::default()
    };
    let endpoints = endpoint::load(&sandbox, &wasm("hostile"), None, limits).unwrap();
    (sandbox.clone(), Dispatcher::new(sandbox, endpoints))
}

async fn dispatch(d: &Dispatcher, method: &str, args: Value) -> Result<String, Failure> {
    let request = Request::new(method, args.as_object().unwrap().clone());
    d.dispatch(&request, 100)
        .await
        .map(|text| text.as_str().to_string())
}

/// The budget is exact where it is tight: a `list<u8>` whose JSON is exactly `max_reply_kib`
/// (1 MiB) passes, one byte more is refused as text, and one past the budget is refused before it
/// is lifted, in the guest's memory.
#[tokio::test]
async fn the_reply_limit_is_exact_and_the_budget_never_refuses_a_legal_result() {
    let (sandbox, d) = roomy_dispatcher();
    // [0,0,...,0]: 2n + 1 bytes, 1 MiB - 1 here and 1 MiB + 1 with one more.
    let text = dispatch(&d, "big_bytes", json!({"bytes": 524_287}))
        .await
        .unwrap();
    assert_eq!(text.len(), (1 << 20) - 1);
    let e = dispatch(&d, "big_bytes", json!({"bytes": 524_288}))
        .await
        .unwrap_err();
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("ReplyTooLarge", "fjord"),
        "{e:?}"
    );
    assert!(
        e.message
            .contains("the result is more than the 1048576 bytes allowed"),
        "{e:?}"
    );
    // Strings: 1 MiB of JSON is the string and its two quotes.
    let text = dispatch(&d, "big_reply", json!({"bytes": (1 << 20) - 2}))
        .await
        .unwrap();
    assert_eq!(text.len(), 1 << 20);
    let e = dispatch(&d, "big_reply", json!({"bytes": (1 << 20) - 1}))
        .await
        .unwrap_err();
    assert_eq!(e.class, "ReplyTooLarge", "{e:?}");
    // Empty strings cost the most per byte of JSON (`"",`); 349,525 of them are 1 MiB.
    let text = dispatch(&d, "big_strings", json!({"count": 349_525, "each": 0}))
        .await
        .unwrap();
    assert_eq!(text.len(), 1 << 20);

    // Straight from the sandbox: which of the two refusals it was.
    let e = d.endpoints().first().unwrap();
    let m = &e.methods["big_bytes"];
    assert_eq!(
        m.fuel.per_json_byte, 20,
        "a u8 is 40 bytes of Val for 2 bytes of JSON"
    );
    let call = |method: &Method, arg: u32| {
        let (sandbox, e) = (sandbox.clone(), e);
        let method = method.clone();
        async move {
            sandbox
                .call(
                    &e.pre,
                    &method.index,
                    &[Val::U32(arg)],
                    1,
                    Arc::new(CallInfo::default()),
                    e.limits,
                    method.fuel.fuel,
                    &e.capabilities,
                )
                .await
        }
    };
    let lifted = call(m, 540_000).await.unwrap();
    assert!(matches!(&lifted[0], Val::List(items) if items.len() == 540_000));
    let refused = call(m, 600_000).await.unwrap_err();
    assert!(
        matches!(refused, GuestFailure::ResultTooLarge),
        "{refused:?}"
    );
    let refused = call(m, 40_000_000).await.unwrap_err();
    assert!(
        matches!(refused, GuestFailure::ResultTooLarge),
        "{refused:?}"
    );
}

/// A guest passing more than its budget to one host call (here a 30 MB log message) traps with
/// a failure that says so; a large one within it is taken (and cut to the log's cap).
#[tokio::test]
async fn a_host_call_over_the_budget_is_a_clear_failure() {
    let (_sandbox, d) = roomy_dispatcher();
    let e = dispatch(&d, "log_flood", json!({"calls": 1, "bytes": 30_000_000}))
        .await
        .unwrap_err();
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("GuestTrap", "fjord"),
        "{e:?}"
    );
    assert!(
        e.message
            .contains("passed more than 1048576 bytes of data to one host call"),
        "{e:?}"
    );
    let text = dispatch(&d, "log_flood", json!({"calls": 1, "bytes": 900_000}))
        .await
        .unwrap();
    assert_eq!(text, "null");
}

/// The log without its terminal colours.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn ctx(request_id: &str) -> Map<String, Value> {
    json!({ "request_id": request_id })
        .as_object()
        .unwrap()
        .clone()
}

/// A guest flooding the log import: the call is answered, the host keeps serving, and the log
/// holds the first 64 KiB of the call's messages, one warning with the count of the rest, and
/// no line longer than 4 KiB.
#[tokio::test]
async fn a_guest_flooding_the_log_is_capped() {
    let topic = unique("bounds-log");
    let host = roomy_host(&topic);
    let c = client(&topic).await;
    let flood_id = unique("req-flood");
    let answered: Value = c
        .call(
            &ctx(&flood_id),
            "log_flood",
            json!({"calls": 10_000, "bytes": 100}),
        )
        .await
        .unwrap();
    assert_eq!(answered, Value::Null);
    let ok: String = c.call(&Map::new(), "ok", json!({})).await.unwrap();
    assert_eq!(ok, "ok");
    let long_id = unique("req-long");
    let _: Value = c
        .call(
            &ctx(&long_id),
            "log_flood",
            json!({"calls": 1, "bytes": 10_000}),
        )
        .await
        .unwrap();
    assert!(
        host.wait_for("5904 more bytes cut", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    let log = strip_ansi(&host.log());
    let flood: Vec<&str> = log.lines().filter(|l| l.contains(&flood_id)).collect();
    let kept: usize = flood
        .iter()
        .flat_map(|l| l.split(' '))
        .filter(|word| !word.is_empty() && word.bytes().all(|b| b == b'l'))
        .map(str::len)
        .sum();
    assert_eq!(kept, 64 * 1024, "the first 64 KiB of the messages are kept");
    let warnings: Vec<&&str> = flood
        .iter()
        .filter(|l| l.contains("guest output truncated"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let dropped = 10_000 * 100 - 64 * 1024;
    assert!(
        warnings[0].contains(&format!("{dropped} bytes past the first 65536 dropped"))
            && warnings[0].contains("stream=\"log\""),
        "{}",
        warnings[0]
    );
    let long = log.lines().find(|l| l.contains(&long_id)).unwrap();
    assert!(
        long.contains(&format!("{}... (5904 more bytes cut)", "l".repeat(4096))),
        "{long}"
    );
}

/// Logging never blocks a call: with the host's stderr not read at all (a full pipe), a flood of
/// guest log lines is answered call after call; the lines that do not fit in the log queue are
/// dropped and counted, and the count is in the log once stderr is read again.
#[tokio::test]
async fn a_stuck_log_sink_never_blocks_a_call() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let topic = unique("bounds-stuck-log");
    let dir = crate::harness::workspace()
        .join("target/test-configs")
        .join(unique("stuck"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("fjord.toml");
    let item = format!(
        "{{ path = {}, namespace = \"hostile\" }}",
        path_item(&wasm("hostile"))
    );
    std::fs::write(&file, config(&[(&topic, "server1", &item)])).unwrap();
    let mut child = Command::new(crate::harness::host_bin())
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "info,lapin=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let c = client(&topic).await;
    let quick = c.prepare().timeout(Duration::from_secs(2)).build();
    let started = std::time::Instant::now();
    loop {
        match quick.call::<String>(&Map::new(), "ok", json!({})).await {
            Ok(_) => break,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(120),
                "the host never answered: {e}"
            ),
        }
    }
    // Some 2,000 lines per call, 40 calls: far more than the pipe and the queue hold.
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.call::<Value>(
                    &ctx(&format!("flood-{i}")),
                    "log_flood",
                    json!({"calls": 2_000, "bytes": 30}),
                )
                .await
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), Value::Null);
    }
    let ok: String = c.call(&Map::new(), "ok", json!({})).await.unwrap();
    assert_eq!(ok, "ok");
    // Now read stderr again: the report of the dropped lines comes within a few seconds.
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while !log.contains("log lines dropped") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(text) => log.push_str(&text),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = strip_ansi(&log);
    let report = log
        .lines()
        .find(|l| l.contains("log lines dropped"))
        .unwrap_or_else(|| {
            panic!(
                "no report of dropped lines in:\n{}",
                &log[log.len().saturating_sub(4000)..]
            )
        });
    assert!(
        report.contains("the log sink is slower than the host"),
        "{report}"
    );
}
