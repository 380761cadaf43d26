//! The delivery decision (`fjord_host::delivery`) without a broker: what the tree built from a
//! request costs at most, measured with a counting allocator.

use crate::harness::wasm;
use fjord_host::delivery::{deliver, value_budget, Duplicates, Verdict};
use fjord_host::dispatch::Dispatcher;
use fjord_host::endpoint;
use fjord_host::fuzzing::{peak_during, TREE_FACTOR, TREE_SLACK};
use fjord_host::sandbox::{Limits, Sandbox};
use serde_json::json;
use std::sync::{Arc, OnceLock};

/// A server of the `types` component with the default limits (1 MiB requests).
pub fn types_dispatcher(max_request_bytes: usize) -> Dispatcher {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    let sandbox = SANDBOX.get_or_init(|| Arc::new(Sandbox::for_calls(2).unwrap()));
    let limits = Limits {
        max_request_bytes,
        ..Limits::default()
    };
    let endpoints = endpoint::load(sandbox, &wasm("types"), None, limits).unwrap();
    Dispatcher::new(sandbox.clone(), endpoints)
}

fn call_body(method: &str, args_json: &str, extra: &str) -> Vec<u8> {
    let inner = format!(
        r#"{{"method": "{method}", "args": {args_json}, "_msg_id": "m", "_reply_q": "reply_q"{extra}}}"#
    );
    serde_json::to_vec(&json!({"oslo.version": "2.0", "oslo.message": inner})).unwrap()
}

/// The most a request can cost: requests as large as allowed, of the shapes that cost the most
/// per byte (long arrays of small numbers, many object keys, many empty strings), each just
/// within the limits. Prints the peak of each as a multiple of the limit.
#[test]
fn tree_bound() {
    let limit = 1 << 20;
    let dispatcher = types_dispatcher(limit);
    let budget = value_budget(limit);
    // Leave room for the envelope's own values.
    let n = budget - 16;
    let zeros = |n: usize| vec!["0"; n].join(",");
    let shapes: Vec<(&str, Vec<u8>)> = vec![
        (
            "list<u32> of zeros",
            call_body("echo_list", &format!(r#"{{"v": [{}]}}"#, zeros(n)), ""),
        ),
        (
            "list<list<string>> of empty strings",
            call_body(
                "echo_nested",
                &format!(r#"{{"v": [[{}]]}}"#, vec![r#""""#; n].join(",")),
                "",
            ),
        ),
        (
            "list<list<string>> of empty lists",
            call_body(
                "echo_nested",
                &format!(r#"{{"v": [{}]}}"#, vec!["[]"; n].join(",")),
                "",
            ),
        ),
        (
            "context keys",
            call_body(
                "echo_u8",
                r#"{"v": 1}"#,
                &(0..n / 2)
                    .map(|i| format!(r#", "_context_{i:x}": 0"#))
                    .collect::<String>(),
            ),
        ),
        (
            "argument keys",
            call_body(
                "echo_u8",
                &format!(
                    "{{{}}}",
                    (0..n / 2)
                        .map(|i| format!(r#""{i:x}": 0"#))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                "",
            ),
        ),
        (
            "one long string",
            call_body(
                "echo_string",
                &format!(r#"{{"v": "{}"}}"#, "x".repeat(limit - 200)),
                "",
            ),
        ),
        (
            "escaped string",
            call_body(
                "echo_string",
                &format!(r#"{{"v": "{}"}}"#, "\\u00e9".repeat((limit - 400) / 12)),
                "",
            ),
        ),
    ];
    let mut worst = 0.0f64;
    for (what, body) in &shapes {
        assert!(body.len() <= limit, "{what}: {} bytes", body.len());
        let (verdict, peak) =
            peak_during(|| deliver(&oslo(), body, &dispatcher, &Duplicates::default()));
        let peak = peak.expect("the counting allocator is installed (tests/all/main.rs)");
        let factor = peak as f64 / limit as f64;
        worst = worst.max(factor);
        println!(
            "{what}: {} bytes, verdict {}, peak {peak} bytes = {factor:.2} x max_request_kib",
            body.len(),
            match &verdict {
                Verdict::Run(_) => "run".to_string(),
                Verdict::Answer { failure, .. } => format!("answer {}", failure.class),
                other => format!("{other:?}"),
            }
        );
        assert!(
            peak <= limit * TREE_FACTOR + TREE_SLACK,
            "{what}: {peak} bytes is more than {TREE_FACTOR} x {limit}"
        );
    }
    println!("worst: {worst:.2} x the request limit");
    // One value more than the budget is refused before parsing, with the reply address.
    let over = call_body("echo_list", &format!(r#"{{"v": [{}]}}"#, zeros(budget)), "");
    match deliver(&oslo(), &over, &dispatcher, &Duplicates::default()) {
        Verdict::Answer { failure, to, .. } => {
            assert_eq!(failure.class, "RequestTooLarge");
            assert!(
                failure.message.contains("JSON values"),
                "{}",
                failure.message
            );
            assert_eq!(to.reply_q, "reply_q");
        }
        other => panic!("{other:?}"),
    }
}

fn oslo() -> lapin::BasicProperties {
    fjord_oslo::topology::message_properties(None)
}

/// What the verdict is, in short: `reject`, `drop`, `answer <class>`, `run` (+ `to` when a
/// call), for the table below.
fn summary(v: &Verdict) -> String {
    match v {
        Verdict::Reject { .. } => "reject".into(),
        Verdict::Drop { .. } => "drop".into(),
        Verdict::Answer { failure, .. } => format!("answer {}", failure.class),
        Verdict::Run(call) if call.to.is_some() => "run call".into(),
        Verdict::Run(_) => "run cast".into(),
    }
}

/// Every rule of `delivery.rs`, one message each, without a broker.
#[test]
fn every_rule_about_a_message() {
    let dispatcher = types_dispatcher(1 << 20);
    let base = || {
        json!({"method": "echo_u8", "args": {"v": 1}, "_msg_id": "m", "_reply_q": "q",
               "_unique_id": fjord_oslo::envelope::new_id()})
    };
    let with = |key: &str, value: serde_json::Value| {
        let mut m = base();
        m[key] = value;
        m
    };
    let without = |key: &str| {
        let mut m = base();
        m.as_object_mut().unwrap().remove(key);
        m
    };
    let env = |m: &serde_json::Value| {
        serde_json::to_vec(&json!({"oslo.version": "2.0", "oslo.message": m.to_string()})).unwrap()
    };
    let deep = format!(
        r#"{{"method": "echo_nested", "args": {{"v": {}}}, "_msg_id": "m", "_reply_q": "q"}}"#,
        crate::wire::nested(500, r#""s""#)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a good call", env(&base()), "run call"),
        ("a cast", env(&without("_msg_id")), "run cast"),
        (
            "an empty _msg_id is a cast",
            env(&with("_msg_id", json!(""))),
            "run cast",
        ),
        (
            "a 300-byte _reply_q",
            env(&with("_reply_q", json!("q".repeat(300)))),
            "reject",
        ),
        (
            "an empty _reply_q",
            env(&with("_reply_q", json!(""))),
            "reject",
        ),
        ("no _reply_q", env(&without("_reply_q")), "reject"),
        (
            "a _reply_q that is a number",
            env(&with("_reply_q", json!(5))),
            "reject",
        ),
        (
            "a 300-byte _msg_id",
            env(&with("_msg_id", json!("m".repeat(300)))),
            "reject",
        ),
        (
            "a 300-byte _unique_id",
            env(&with("_unique_id", json!("u".repeat(300)))),
            "answer TypeError",
        ),
        (
            "_timeout 1e20",
            env(&with("_timeout", json!(1e20))),
            "run call",
        ),
        ("_timeout -5", env(&with("_timeout", json!(-5))), "run call"),
        (
            "_timeout a string",
            env(&with("_timeout", json!("soon"))),
            "run call",
        ),
        (
            "_timeout 1e308",
            env(&with("_timeout", json!(1e308))),
            "run call",
        ),
        (
            "a 2 MiB body",
            env(&with("args", json!({"v": "x".repeat(2 << 20)}))),
            "answer RequestTooLarge",
        ),
        (
            "40,000 values",
            env(&with("args", json!({"v": vec![0; 40_000]}))),
            "answer RequestTooLarge",
        ),
        (
            "500 deep",
            serde_json::to_vec(&json!({"oslo.version": "2.0", "oslo.message": deep})).unwrap(),
            "answer TypeError",
        ),
        (
            "method not a string",
            env(&with("method", json!(5))),
            "answer TypeError",
        ),
        (
            "no such method",
            env(&with("method", json!("nope"))),
            "answer NoSuchMethod",
        ),
        (
            "a bad argument",
            env(&with("args", json!({"v": 256}))),
            "answer TypeError",
        ),
        (
            "a bad argument in a cast",
            env(&{
                let mut m = with("args", json!({"v": 256}));
                m.as_object_mut().unwrap().remove("_msg_id");
                m
            }),
            "drop",
        ),
        ("not JSON", b"not json".to_vec(), "reject"),
        (
            "oslo.version 3.0",
            br#"{"oslo.version": "3.0", "oslo.message": "{}"}"#.to_vec(),
            "reject",
        ),
        ("unenveloped", base().to_string().into_bytes(), "run call"),
    ];
    for (what, body, expected) in &cases {
        let verdict = deliver(&oslo(), body, &dispatcher, &Duplicates::default());
        assert_eq!(summary(&verdict), *expected, "{what}: {verdict:?}");
        if let Verdict::Run(call) = &verdict {
            assert_eq!(call.heartbeat, None, "{what}");
            let noted = call.note.is_some();
            assert_eq!(
                noted,
                what.contains("-5") || what.contains("string"),
                "{what}: {:?}",
                call.note
            );
        }
    }
    // A heartbeat only when it can fire before the deadline (10 s): `_timeout` 4 gives 2 s.
    match deliver(
        &oslo(),
        &env(&with("_timeout", json!(4))),
        &dispatcher,
        &Duplicates::default(),
    ) {
        Verdict::Run(call) => assert_eq!(call.heartbeat, Some(std::time::Duration::from_secs(2))),
        other => panic!("{other:?}"),
    }
    // Another content type: rejected unread; none at all: read.
    let text = oslo().with_content_type("text/plain".into());
    assert_eq!(
        summary(&deliver(
            &text,
            &env(&base()),
            &dispatcher,
            &Duplicates::default()
        )),
        "reject"
    );
    let none = lapin::BasicProperties::default();
    assert_eq!(
        summary(&deliver(
            &none,
            &env(&base()),
            &dispatcher,
            &Duplicates::default()
        )),
        "run call"
    );
    // The same `_unique_id` twice: the second is dropped.
    let duplicates = Duplicates::default();
    let once = env(&base());
    assert_eq!(
        summary(&deliver(&oslo(), &once, &dispatcher, &duplicates)),
        "run call"
    );
    assert_eq!(
        summary(&deliver(&oslo(), &once, &dispatcher, &duplicates)),
        "drop"
    );
}
