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
