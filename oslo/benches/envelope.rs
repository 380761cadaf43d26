//! `cargo bench -p fjord-oslo`: oslo envelope encode and decode, small and 2.5 KB requests.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fjord_oslo::envelope::{decode_message, new_id, Reply, Request};
use serde_json::{json, Map, Value};
use std::hint::black_box;

fn request(size: usize) -> Request {
    let args: Map<String, Value> = json!({"a": 2, "b": 3})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut ctx = Map::new();
    ctx.insert("request_id".into(), "req-0123".into());
    // About `size` bytes of context, as `fjord bench --size` pads requests.
    if size > 0 {
        ctx.insert("fjord_bench_pad".into(), "x".repeat(size).into());
    }
    let mut request = Request::new("add", args);
    request.context = ctx;
    request.msg_id = Some(new_id());
    request.reply_q = Some(format!("reply_{}", new_id()));
    request
}

fn envelope(c: &mut Criterion) {
    for size in [0, 2500] {
        let req = request(size);
        let body = req.encode();
        c.bench_with_input(
            BenchmarkId::new("request_encode", body.len()),
            &req,
            |b, r| b.iter(|| black_box(r.encode())),
        );
        c.bench_with_input(
            BenchmarkId::new("request_decode", body.len()),
            &body,
            |b, body| {
                b.iter(|| {
                    let message = decode_message(black_box(body)).map_err(|e| e.to_string());
                    black_box(
                        message.and_then(|m| Request::from_message(m).map_err(|e| e.to_string())),
                    )
                })
            },
        );
    }
    let reply = Reply::ok(new_id(), json!(5));
    let body = reply.encode();
    c.bench_function("reply_encode", |b| b.iter(|| black_box(reply.encode())));
    c.bench_function("reply_decode", |b| {
        b.iter(|| black_box(Reply::decode(black_box(&body)).is_ok()))
    });
}

criterion_group!(benches, envelope);
criterion_main!(benches);
