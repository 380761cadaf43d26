//! Issue 9, through raw publishes against the real broker: no single message can silence a
//! server, and every caller whose reply address can be read hears back.

use crate::harness::{config, path_item, unique, wasm, Host, URL};
use crate::rpc::standard_host;
use crate::wire::{nested, RawCaller};
use fjord_oslo::envelope::{new_id, Reply, Request};
use fjord_oslo::TransportUrl;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

fn oslo() -> lapin::BasicProperties {
    fjord_oslo::topology::message_properties(None)
}

/// A call of `add(a, b)` answered to `reply_q` under `msg_id`, as an oslo client sends it.
fn add(msg_id: &str, reply_q: &str, a: i64, b: i64) -> Request {
    let mut r = Request::new("add", json!({"a": a, "b": b}).as_object().unwrap().clone());
    r.msg_id = Some(msg_id.to_string());
    r.reply_q = Some(reply_q.to_string());
    r
}

/// The same call with `field` set to raw JSON text in the inner message.
fn with_raw_field(request: &Request, field: &str, raw: &str) -> Vec<u8> {
    let mut inner = Value::Object(request.to_message()).to_string();
    inner.pop();
    inner.push_str(&format!(r#", "{field}": {raw}}}"#));
    serde_json::to_vec(&json!({"oslo.version": "2.0", "oslo.message": inner})).unwrap()
}

fn by_id(replies: Vec<Reply>) -> BTreeMap<String, Reply> {
    replies.into_iter().map(|r| (r.msg_id.clone(), r)).collect()
}

/// One request naming a 300-byte reply queue used to kill the consumer of the queue it came in
/// on (lapin panics on a short string over 255 bytes). Now it is rejected with its reason, and
/// the next call to the same server queue is answered.
#[tokio::test]
async fn a_300_byte_reply_queue_does_not_stop_the_server_queue() {
    let topic = unique("hard-replyq");
    let host = standard_host(&topic, "");
    let mut caller = RawCaller::new(&topic).await;
    let server_queue = format!("{topic}.server1");
    let long = format!("reply_{}", "q".repeat(294));
    caller
        .publish_to(&server_queue, &add("long", &long, 1, 1).encode(), oslo())
        .await;
    // A bad request too (its failure reply would go to the same long queue).
    let mut bad = add("long-bad", &long, 1, 1);
    bad.method = String::new();
    let bad_body = with_raw_field(&bad, "method", "5");
    caller.publish_to(&server_queue, &bad_body, oslo()).await;
    caller
        .publish_to(
            &server_queue,
            &add("good", &caller.reply_q, 2, 3).encode(),
            oslo(),
        )
        .await;
    let reply = caller.next_reply(Duration::from_secs(10)).await;
    let reply = reply.unwrap_or_else(|| panic!("no reply:\n{}", host.log()));
    assert_eq!((reply.msg_id.as_str(), &reply.result), ("good", &json!(5)));
    assert!(
        host.wait_for("300 bytes, more than the 255", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    // Messages are handled concurrently: the good reply may come before the second rejection is
    // logged.
    host.wait_for_count("rejecting an unreadable message", 2, Duration::from_secs(5));
    let log = host.log();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(
        log.matches("rejecting an unreadable message").count(),
        2,
        "{log}"
    );
    // And the queue is still consumed: another call on it is answered.
    caller
        .publish_to(
            &server_queue,
            &add("again", &caller.reply_q, 1, 2).encode(),
            oslo(),
        )
        .await;
    let reply = caller.next_reply(Duration::from_secs(10)).await.unwrap();
    assert_eq!((reply.msg_id.as_str(), &reply.result), ("again", &json!(3)));
}

/// `_timeout` only paces call-monitor heartbeats (oslo never checks it): absurd values are
/// served without heartbeats, never a panic, and never a delivery left unacknowledged (100 of
/// them would have held every prefetch slot).
#[tokio::test]
async fn absurd_timeouts_are_served() {
    let topic = unique("hard-timeout");
    let host = standard_host(&topic, "");
    let mut caller = RawCaller::new(&topic).await;
    let cases = [
        ("1e20", "1e20"),
        ("minus5", "-5"),
        ("string", r#""soon""#),
        ("1e308", "1e308"),
        ("true", "true"),
        ("object", r#"{"s": 1}"#),
        ("huge_int", "123456789012345678901234567890"),
    ];
    for (id, raw) in &cases {
        let body = with_raw_field(&add(id, &caller.reply_q, 2, 3), "_timeout", raw);
        caller.publish(&body).await;
    }
    // A number past f64 is not JSON serde_json reads: the caller gets a TypeError.
    let body = with_raw_field(&add("1e400", &caller.reply_q, 2, 3), "_timeout", "1e400");
    caller.publish(&body).await;
    // More such calls than the prefetch count, then a good one.
    for i in 0..100 {
        let body = with_raw_field(
            &add(&format!("flood{i}"), &caller.reply_q, 1, 1),
            "_timeout",
            "1e20",
        );
        caller.publish(&body).await;
    }
    caller
        .publish(&add("good", &caller.reply_q, 2, 2).encode())
        .await;
    let mut replies = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while replies.len() < cases.len() + 102 && Instant::now() < deadline {
        if let Some(r) = caller.next_reply(Duration::from_secs(5)).await {
            replies.insert(r.msg_id.clone(), r);
        }
    }
    assert_eq!(replies.len(), cases.len() + 102, "{}", host.log());
    for (id, _) in &cases {
        let r = &replies[*id];
        assert!(r.ending, "{id}");
        assert_eq!(r.result, json!(5), "{id}: {r:?}");
    }
    let f = replies["1e400"].failure.as_ref().unwrap();
    assert_eq!(
        (f.class.as_str(), f.module.as_str()),
        ("TypeError", "builtins")
    );
    assert!(f.message.contains("number out of range"), "{}", f.message);
    assert_eq!(replies["good"].result, json!(4));
    let log = host.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("`_timeout` -5 is not a number of seconds"),
        "{log}"
    );
    assert!(log.contains("`_timeout` is a string"), "{log}");
}

/// A body over the size limit and an argument nested 500 deep are not parsed, but their reply
/// address is read by the scanner: each caller gets its failure.
#[tokio::test]
async fn oversized_and_deep_requests_get_a_failure_reply() {
    let topic = unique("hard-big");
    let _host = Host::start(&config(&[(&topic, "s", &path_item(&wasm("types")))]));
    let mut caller = RawCaller::new(&topic).await;
    let big = Request {
        args: json!({"v": "x".repeat(2 << 20)})
            .as_object()
            .unwrap()
            .clone(),
        ..add("big", &caller.reply_q, 0, 0)
    };
    let big = Request {
        method: "echo_string".into(),
        ..big
    };
    caller.publish(&big.encode()).await;
    let mut deep = add("deep", &caller.reply_q, 0, 0);
    deep.method = "echo_nested".into();
    let deep_body = {
        let mut inner = Value::Object(deep.to_message()).to_string();
        inner = inner.replace(
            r#""args":{"a":0,"b":0}"#,
            &format!(r#""args":{{"v":{}}}"#, nested(500, r#""s""#)),
        );
        assert!(inner.contains("[[[["), "{}", &inner[..200]);
        serde_json::to_vec(&json!({"oslo.version": "2.0", "oslo.message": inner})).unwrap()
    };
    caller.publish(&deep_body).await;
    // More values than a 1 MiB request may hold (one per 32 bytes of the limit).
    let mut many = add("many", &caller.reply_q, 0, 0);
    many.method = "echo_list".into();
    many.args = json!({"v": vec![0; 40_000]}).as_object().unwrap().clone();
    caller.publish(&many.encode()).await;
    let replies = by_id(caller.replies(Duration::from_secs(5)).await);
    let failure = |id: &str| {
        replies
            .get(id)
            .and_then(|r| r.failure.clone())
            .unwrap_or_else(|| panic!("{id}: no failure in {:?}", replies.keys()))
    };
    let f = failure("big");
    assert_eq!(
        (f.class.as_str(), f.module.as_str()),
        ("RequestTooLarge", "fjord")
    );
    assert!(
        f.message.contains("more than the 1048576 bytes"),
        "{}",
        f.message
    );
    let f = failure("deep");
    assert_eq!(
        (f.class.as_str(), f.module.as_str()),
        ("TypeError", "builtins")
    );
    assert!(
        f.message.contains("recursion limit exceeded"),
        "{}",
        f.message
    );
    let f = failure("many");
    assert_eq!(
        (f.class.as_str(), f.module.as_str()),
        ("RequestTooLarge", "fjord")
    );
    assert!(f.message.contains("JSON values"), "{}", f.message);
}

/// 300 calls naming reply queues that do not exist, then 50 good calls: the good ones are all
/// answered within 3 s (the replies to missing queues have their own small retry budget and hold
/// no call's slot; before, each held one of the 64 slots for 3 s).
#[tokio::test]
async fn missing_reply_queues_do_not_delay_good_callers() {
    let topic = unique("hard-missing");
    let host = standard_host(&topic, "");
    let mut caller = RawCaller::new(&topic).await;
    for i in 0..300 {
        let missing = format!("reply_missing_{}", new_id());
        caller
            .publish(&add(&format!("lost{i}"), &missing, i, 1).encode())
            .await;
    }
    let started = Instant::now();
    for i in 0..50 {
        caller
            .publish(&add(&format!("good{i}"), &caller.reply_q, i, 1).encode())
            .await;
    }
    let mut answered = 0;
    while answered < 50 {
        let left = Duration::from_secs(3).saturating_sub(started.elapsed());
        let Some(reply) = caller.next_reply(left).await else {
            break;
        };
        assert!(reply.msg_id.starts_with("good"), "{reply:?}");
        answered += 1;
    }
    let took = started.elapsed();
    println!("50 good calls after 300 to missing reply queues answered in {took:?}");
    assert_eq!(
        answered,
        50,
        "only {answered} answered in {took:?}:\n{}",
        host.log()
    );
    // The replies to missing queues are given up with a warning (retry window 3 s).
    assert!(
        host.wait_for("dropping the reply to", Duration::from_secs(10)),
        "{}",
        host.log()
    );
}

/// A consumer that ends (here: its queue deleted from the broker side, which cancels it) is
/// noticed and its queue re-subscribed alone, with one log line; the connection stays.
#[tokio::test]
async fn a_lost_consumer_is_resubscribed() {
    let topic = unique("hard-resub");
    let host = standard_host(&topic, "");
    let mut caller = RawCaller::new(&topic).await;
    let server_queue = format!("{topic}.server1");
    let url = TransportUrl::parse(URL).unwrap();
    let admin = fjord_oslo::connect(&url, "test-admin").await.unwrap();
    let channel = admin.create_channel().await.unwrap();
    channel
        .queue_delete(server_queue.as_str().into(), Default::default())
        .await
        .unwrap();
    let line = format!("consumer of queue {server_queue} stopped");
    assert!(
        host.wait_for(&line, Duration::from_secs(10)),
        "{}",
        host.log()
    );
    assert!(
        host.wait_for("re-subscribed", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    let log = host.log();
    assert_eq!(log.matches(&line).count(), 1, "{log}");
    assert!(
        !log.contains("lost RabbitMQ"),
        "only the queue, not the session: {log}"
    );
    caller
        .publish_to(
            &server_queue,
            &add("after", &caller.reply_q, 2, 5).encode(),
            oslo(),
        )
        .await;
    let reply = caller.next_reply(Duration::from_secs(10)).await;
    let reply = reply.unwrap_or_else(|| panic!("no reply:\n{}", host.log()));
    assert_eq!((reply.msg_id.as_str(), &reply.result), ("after", &json!(7)));
    // The topic queue kept its consumer all along.
    caller
        .publish(&add("topic", &caller.reply_q, 1, 1).encode())
        .await;
    let reply = caller.next_reply(Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply.msg_id, "topic");
    let _ = admin.close(200, "done".into()).await;
}

/// Hostile message number `i` (of about 20 kinds): every attack of issue 9, garbage, bad
/// properties, oversized and deep bodies. Its routing key and properties too.
fn hostile(i: usize, caller: &RawCaller) -> (String, Vec<u8>, lapin::BasicProperties) {
    let topic = caller.topic.clone();
    let server_queue = format!("{topic}.server1");
    let q = caller.reply_q.as_str();
    let id = format!("hostile{i}");
    let base = add(&id, q, 1, 1);
    let plain = |body: Vec<u8>| (topic.clone(), body, oslo());
    match i % 20 {
        0 => plain(format!("garbage {i} \u{0}\u{1b}[31m").into_bytes()),
        1 => plain(b"not json".to_vec()),
        2 => {
            let body = base.encode();
            plain(body[..body.len() / 2].to_vec())
        }
        3 => plain(nested(20_000, "1").into_bytes()),
        4 => {
            let mut inner = Value::Object(base.to_message()).to_string();
            inner = inner.replace(
                r#""args":{"a":1,"b":1}"#,
                &format!(r#""args":{{"a":{}}}"#, nested(500, "1")),
            );
            plain(serde_json::to_vec(&json!({"oslo.version": "2.0", "oslo.message": inner})).unwrap())
        }
        5 if i % 100 == 5 => {
            let mut big = base.clone();
            big.args.insert("a".into(), json!("x".repeat(2 << 20)));
            plain(big.encode())
        }
        5 => plain(with_raw_field(&base, "_reply_q", &format!("\"{}\"", "q".repeat(300)))),
        6 => (
            server_queue,
            with_raw_field(&base, "_reply_q", &format!("\"{}\"", "r".repeat(300))),
            oslo(),
        ),
        7 => plain(with_raw_field(&base, "_msg_id", &format!("\"{}\"", "m".repeat(300)))),
        8 => plain(with_raw_field(&base, "_timeout", ["1e20", "-5", "\"x\"", "1e308", "1e400"][i / 20 % 5])),
        9 => plain(add(&id, &format!("reply_missing_{}", new_id()), 1, 1).encode()),
        10 => (
            topic.clone(),
            base.encode(),
            oslo().with_content_type("application/x-python-serialize".into()),
        ),
        11 => plain(br#"{"oslo.version": "3.0", "oslo.message": "{}"}"#.to_vec()),
        12 => {
            let mut many = base.clone();
            many.args = json!({"a": vec![0; 40_000]}).as_object().unwrap().clone();
            plain(many.encode())
        }
        13 => plain(with_raw_field(&base, "method", "5")),
        14 => {
            let mut cast = base.clone();
            cast.msg_id = None;
            cast.method = "no_such_method".into();
            plain(cast.encode())
        }
        15 => {
            let mut dup = base.clone();
            dup.unique_id = Some("the-same-unique-id".into());
            plain(dup.encode())
        }
        16 => plain(
            br#"{"oslo.version": "2.0", "oslo.message": "{\"_msg_id\": \"\\ud800\", \"_reply_q\": \"\\q\"}"}"#
                .to_vec(),
        ),
        17 => (topic.clone(), base.encode(), lapin::BasicProperties::default()),
        18 => (
            topic.clone(),
            with_raw_field(&base, "args", "[1, 2]"),
            oslo().with_content_type("text/plain".into()),
        ),
        _ => {
            let mut odd = base.clone();
            odd.namespace = Some("nowhere".into());
            odd.version = Some("9.x".into());
            plain(odd.encode())
        }
    }
}

/// Publishes hostile messages `from..to`, with a good call after every ninth; returns how many
/// good calls it made.
async fn publish_mix(caller: &RawCaller, from: usize, to: usize) -> usize {
    let mut good = 0;
    for i in from..to {
        let (key, body, properties) = hostile(i, caller);
        caller.publish_to(&key, &body, properties).await;
        if i % 9 == 0 {
            let g = add(
                &format!("good{i}"),
                &caller.reply_q,
                i64::try_from(i).unwrap(),
                1,
            );
            caller.publish(&g.encode()).await;
            good += 1;
        }
    }
    good
}

/// Reads replies until `want` good calls are answered (or two minutes pass).
async fn collect_good(caller: &mut RawCaller, want: usize, answered: &mut HashSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered.len() < want && Instant::now() < deadline {
        if let Some(r) = caller.next_reply(Duration::from_secs(10)).await {
            if let Some(i) = r.msg_id.strip_prefix("good") {
                let i: i64 = i.parse().unwrap();
                assert_eq!(r.result, json!(i + 1), "{r:?}");
                answered.insert(r.msg_id);
            }
        }
    }
}

/// What a soak measured.
struct Soak {
    rss_before: u64,
    rss_after: u64,
    good: usize,
    took: Duration,
}

/// `total` hostile messages with a good call after every ninth; the host's RSS (KiB) after a
/// warm-up of 200 and at the end, after checking that every good call was answered.
async fn delivery_soak(total: usize) -> Soak {
    let topic = unique("hard-soak");
    let host = standard_host(&topic, "");
    let mut caller = RawCaller::new(&topic).await;
    let mut answered = HashSet::new();
    let warm = publish_mix(&caller, 0, 200).await;
    collect_good(&mut caller, warm, &mut answered).await;
    assert_eq!(answered.len(), warm, "{}", host.log());
    let rss_before = host.rss_kib();
    let started = Instant::now();
    let good = publish_mix(&caller, 200, 200 + total).await;
    collect_good(&mut caller, warm + good, &mut answered).await;
    let took = started.elapsed();
    assert_eq!(
        answered.len(),
        warm + good,
        "good calls answered: {} of {}\n{}",
        answered.len(),
        warm + good,
        host.log()
    );
    let rss_after = host.rss_kib();
    let log = host.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("lost RabbitMQ"), "{log}");
    Soak {
        rss_before,
        rss_after,
        good,
        took,
    }
}

/// A thousand hostile and malformed messages amid good calls (the full 10,000 are
/// `delivery_soak_measurements`, run by `scripts/delivery-soak`).
#[tokio::test]
async fn hostile_messages_amid_good_calls() {
    let s = delivery_soak(1_000).await;
    println!(
        "1,000 hostile messages, {} good calls answered in {:?}: host RSS {} KiB before, {} KiB after",
        s.good, s.took, s.rss_before, s.rss_after
    );
    assert!(
        s.rss_after < s.rss_before + 128 * 1024,
        "RSS grew from {} KiB to {} KiB",
        s.rss_before,
        s.rss_after
    );
}

/// The figures of the closing note: the host's RSS before and after 10,000 hostile messages.
#[tokio::test]
#[ignore = "a measurement, a minute or more: run by scripts/delivery-soak"]
async fn delivery_soak_measurements() {
    let s = delivery_soak(10_000).await;
    println!(
        "10,000 hostile messages amid {} good calls (all answered) in {:?}: host RSS {} KiB \
         before, {} KiB after",
        s.good, s.took, s.rss_before, s.rss_after
    );
}

/// `(queue, prefetch_count)` of every consumer of the queues whose names start with `prefix`.
fn consumers_of(prefix: &str) -> Vec<(String, u32)> {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_consumers",
            "--no-table-headers",
            "--quiet",
            "queue_name",
            "prefetch_count",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (queue, prefetch) = l.split_once('\t')?;
            let prefetch: u32 = prefetch.trim().parse().ok()?;
            queue
                .starts_with(prefix)
                .then(|| (queue.to_string(), prefetch))
        })
        .collect()
}

/// `?rabbit_qos_prefetch_count=N` sets each consumer's prefetch (64 when unset), each of the
/// three queues having its own consumer.
#[tokio::test]
async fn the_prefetch_count_comes_from_the_transport_url() {
    let default_topic = unique("hard-prefetch-default");
    let _default = standard_host(&default_topic, "");
    let topic = unique("hard-prefetch");
    let text = config(&[(&topic, "s", &path_item(&wasm("calculator")))]).replace(
        &format!("\"{URL}\""),
        &format!("\"{URL}?rabbit_qos_prefetch_count=7\""),
    );
    let _host = Host::start(&text);
    let seen = consumers_of(&topic);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|(_, p)| *p == 7), "{seen:?}");
    let seen = consumers_of(&default_topic);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|(_, p)| *p == 64), "{seen:?}");
}

/// `executor_thread_pool_size` bounds the calls that run at once: with 2, four calls that each
/// sleep 1 s take at least 2 s (a loaded machine only makes it slower).
#[tokio::test]
async fn executor_thread_pool_size_bounds_the_calls_in_flight() {
    let topic = unique("hard-pool");
    let greeter = format!(
        "{{ path = {}, namespace = \"greet\" }}",
        path_item(&wasm("greeter"))
    );
    let text = format!(
        "executor_thread_pool_size = 2\nkombu_missing_consumer_retry_timeout = 1\n{}",
        config(&[(&topic, "s", &greeter)])
    );
    let host = Host::start(&text);
    let mut caller = RawCaller::new(&topic).await;
    let started = Instant::now();
    for i in 0..4 {
        let mut r = add(&format!("sleep{i}"), &caller.reply_q, 0, 0);
        r.method = "sleep_ms".into();
        r.namespace = Some("greet".into());
        r.args = json!({"ms": 1000}).as_object().unwrap().clone();
        caller.publish(&r.encode()).await;
    }
    let replies = caller.replies(Duration::from_secs(5)).await;
    assert_eq!(replies.len(), 4, "{replies:?}\n{}", host.log());
    let last = started.elapsed();
    assert!(
        last >= Duration::from_secs(2),
        "4 calls of 1 s with 2 at a time took {last:?}"
    );
    // And the retry window is 1 s: a reply to a missing queue is given up after it.
    let mut lost = add("lost", &format!("reply_missing_{}", new_id()), 0, 0);
    lost.method = "greet".into();
    lost.namespace = Some("greet".into());
    lost.args = json!({"name": "x"}).as_object().unwrap().clone();
    caller.publish(&lost.encode()).await;
    assert!(
        host.wait_for("dropping the reply to lost", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    assert!(host.log().contains("after 1.0 s"), "{}", host.log());
}
