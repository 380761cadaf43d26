//! `fjord bench`'s load generator against a real fjord-host: every call is counted, padded
//! requests (2.5 KB, 64 KB) complete, and a call that cannot succeed stops the run at once.

use crate::harness::{config, path_item, unique, wasm, Host, URL};
use fjord_cli::bench::{pad_context, run, Load, PAD_KEY};
use fjord_client::{RpcClient, RpcError, Target, Transport, TransportUrl};
use serde_json::{json, Map, Value};
use std::time::Duration;

async fn calculator(topic: &str) -> (Host, RpcClient) {
    let host = Host::start(&config(&[(
        topic,
        "server1",
        &path_item(&wasm("calculator")),
    )]));
    let transport = Transport::connect(&TransportUrl::parse(URL).unwrap())
        .await
        .unwrap();
    let client = RpcClient::new(transport, Target::new(topic))
        .prepare()
        .timeout(Duration::from_secs(20))
        .build();
    (host, client)
}

fn add_args() -> Map<String, Value> {
    json!({"a": 2, "b": 3}).as_object().unwrap().clone()
}

#[tokio::test]
async fn padded_calls_are_all_counted() {
    let topic = unique("bench-padded");
    let (_host, client) = calculator(&topic).await;
    for (size, calls) in [(2500, 200), (65_536, 20)] {
        let mut ctx = Map::new();
        let reached = pad_context(&mut ctx, "add", &add_args(), size);
        assert!(reached + 16 >= size, "{reached} < {size}");
        assert!(ctx.contains_key(PAD_KEY));
        let load = Load {
            concurrency: 8,
            calls,
        };
        let report = run(&client, &ctx, "add", &add_args(), load).await.unwrap();
        assert_eq!(
            (report.calls, report.errors, report.concurrency),
            (calls, 0, 8),
            "{report:?}"
        );
        assert!(
            report.p50_ms > 0.0 && report.p99_ms >= report.p50_ms,
            "{report:?}"
        );
        assert!(report.calls_per_s > 0.0, "{report:?}");
    }
}

#[tokio::test]
async fn a_failing_call_stops_the_run() {
    let topic = unique("bench-fails");
    let (_host, client) = calculator(&topic).await;
    let args = json!({"a": 2}).as_object().unwrap().clone();
    let load = Load {
        concurrency: 4,
        calls: 100,
    };
    match run(&client, &Map::new(), "add", &args, load).await {
        Err(RpcError::Remote(e)) => assert_eq!(e.class, "TypeError", "{e}"),
        other => panic!("expected the warm-up call's TypeError, got {other:?}"),
    }
}
