//! `cargo bench -p fjord-host`: JSON-to-WIT conversion and a whole call in a fresh sandbox
//! (instantiate, call, tear down) of the calculator, built by `scripts/setup`.

use criterion::{criterion_group, criterion_main, Criterion};
use fjord_host::dispatch::{bind_arguments, Dispatcher};
use fjord_host::endpoint;
use fjord_host::sandbox::{Limits, Sandbox};
use fjord_oslo::envelope::Request;
use serde_json::{json, Map, Value};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn sandbox(c: &mut Criterion) {
    let wasm = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release/calculator.wasm");
    if !wasm.exists() {
        eprintln!("{} is missing: run scripts/setup first", wasm.display());
        return;
    }
    let sandbox = match Sandbox::new() {
        Ok(s) => Arc::new(s),
        Err(e) => return eprintln!("cannot create the sandbox: {e:#}"),
    };
    let endpoints = match endpoint::load(&sandbox, &wasm, None, Limits::default()) {
        Ok(e) => e,
        Err(e) => return eprintln!("cannot load the calculator: {e:#}"),
    };
    let Some(methods) = endpoints.first().map(|e| e.methods.clone()) else {
        return eprintln!("the calculator has no endpoint");
    };
    let dispatcher = Dispatcher::new(sandbox, endpoints);

    let add_args = object(json!({"a": 2, "b": 3}));
    let points: Vec<Value> = (0..100).map(|i| json!({"x": i as f64, "y": 1.5})).collect();
    let centroid_args = object(json!({ "points": points }));
    if let Some(add) = methods.get("add") {
        c.bench_function("json_to_wit/add", |b| {
            b.iter(|| black_box(bind_arguments(add, black_box(&add_args)).is_ok()))
        });
    }
    if let Some(centroid) = methods.get("centroid") {
        c.bench_function("json_to_wit/centroid_100_points", |b| {
            b.iter(|| black_box(bind_arguments(centroid, black_box(&centroid_args)).is_ok()))
        });
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return eprintln!("cannot start tokio: {e}"),
    };
    let request = Request::new("add", add_args);
    // The size of the AMQP body the request would arrive in, as the server passes it.
    let body_len = request.encode().len();
    c.bench_function("instantiate_call_teardown/add", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(dispatcher.dispatch(&request, body_len).await.is_ok()) })
    });
}

criterion_group!(benches, sandbox);
criterion_main!(benches);
