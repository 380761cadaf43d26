//! Raw AMQP publishes at fjord-host, bypassing the client's encoder: unreadable messages, bad
//! requests in a readable envelope, and redelivered duplicates.

use crate::harness::{config, path_item, unique, wasm, Host, URL};
use crate::rpc::standard_host;
use fjord_client::TransportUrl;
use fjord_oslo::envelope::{encode_message, new_id, Reply, Request};
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// A hand-made oslo caller: publishes raw bodies and reads raw replies from its own reply queue.
pub struct RawCaller {
    pub channel: lapin::Channel,
    pub reply_q: String,
    replies: lapin::Consumer,
    pub topic: String,
    _connection: lapin::Connection,
}

impl RawCaller {
    pub async fn new(topic: &str) -> RawCaller {
        let url = TransportUrl::parse(URL).unwrap();
        let connection = fjord_oslo::connect(&url, "raw-caller").await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let reply_q = format!("reply_{}", new_id());
        fjord_oslo::topology::declare_reply_queue(&channel, &reply_q, &url.options)
            .await
            .unwrap();
        let replies = channel
            .basic_consume(
                reply_q.as_str().into(),
                "raw-caller".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        RawCaller {
            channel,
            reply_q,
            replies,
            topic: topic.to_string(),
            _connection: connection,
        }
    }

    /// Publishes a body to the topic on the control exchange, with oslo's properties.
    pub async fn publish(&self, body: &[u8]) {
        self.publish_with(body, fjord_oslo::topology::message_properties(None))
            .await
    }

    /// Publishes a body with the given AMQP properties.
    pub async fn publish_with(&self, body: &[u8], properties: lapin::BasicProperties) {
        self.publish_to(&self.topic, body, properties).await
    }

    /// Publishes a body with the given routing key (`<topic>.<server>`...) and properties.
    pub async fn publish_to(
        &self,
        routing_key: &str,
        body: &[u8],
        properties: lapin::BasicProperties,
    ) {
        self.channel
            .basic_publish(
                "openstack".into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// The next reply, if one arrives within `timeout`.
    pub async fn next_reply(&mut self, timeout: Duration) -> Option<Reply> {
        match tokio::time::timeout(timeout, self.replies.next()).await {
            Ok(Some(Ok(delivery))) => Some(Reply::decode(&delivery.data).unwrap()),
            _ => None,
        }
    }

    /// Every reply that arrives until none has for a while.
    pub async fn replies(&mut self, quiet: Duration) -> Vec<Reply> {
        let mut replies = Vec::new();
        while let Ok(Some(Ok(delivery))) = tokio::time::timeout(quiet, self.replies.next()).await {
            replies.push(Reply::decode(&delivery.data).unwrap());
        }
        replies
    }
}

#[tokio::test]
async fn unreadable_messages_are_rejected_and_serving_goes_on() {
    let topic = unique("wire-garbage");
    let host = standard_host(&topic, "");
    let caller = RawCaller::new(&topic).await;
    for body in [
        &b"not json"[..],
        b"{\"oslo.version\": \"3.0\", \"oslo.message\": \"{}\"}",
        b"{\"oslo.version\": \"2.0\", \"oslo.message\": \"{truncated\"}",
        b"[1,2]",
        b"",
    ] {
        caller.publish(body).await;
    }
    assert!(
        host.wait_for("rejecting an unreadable message", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    let mut request = Request::new("add", json!({"a": 2, "b": 3}).as_object().unwrap().clone());
    request.msg_id = Some(new_id());
    request.reply_q = Some(caller.reply_q.clone());
    caller.publish(&request.encode()).await;
    let mut caller = caller;
    let replies = caller.replies(Duration::from_secs(3)).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].result, json!(5));
}

/// A readable envelope with a bad request inside gets a TypeError reply naming what is wrong,
/// as a Python server's would.
#[tokio::test]
async fn bad_requests_get_a_failure_reply() {
    let topic = unique("wire-bad-request");
    let _host = standard_host(&topic, "");
    let mut caller = RawCaller::new(&topic).await;
    let cases = [
        ("no_method", json!({"args": {}})),
        ("method_not_string", json!({"method": 5, "args": {}})),
        ("args_not_object", json!({"method": "add", "args": [1, 2]})),
        (
            "version_not_string",
            json!({"method": "add", "args": {"a": 1, "b": 2}, "version": 1.0}),
        ),
    ];
    for (id, inner) in &cases {
        let mut inner: Map<String, Value> = inner.as_object().unwrap().clone();
        inner.insert("_msg_id".into(), json!(id));
        inner.insert("_reply_q".into(), json!(caller.reply_q));
        inner.insert("_unique_id".into(), json!(new_id()));
        caller.publish(&encode_message(&inner)).await;
    }
    let replies = caller.replies(Duration::from_secs(3)).await;
    assert_eq!(replies.len(), cases.len(), "{replies:?}");
    for reply in replies {
        assert!(reply.ending);
        let failure = reply
            .failure
            .unwrap_or_else(|| panic!("{}: no failure", reply.msg_id));
        assert_eq!(failure.class, "TypeError", "{}: {failure:?}", reply.msg_id);
        assert_eq!(failure.module, "builtins");
    }
}

/// Raw publishes of one request, as a redelivering broker or a retrying client would send it:
/// oslo drops a `_unique_id` it has just seen.
#[tokio::test]
async fn duplicate_unique_ids_are_answered_once() {
    let topic = unique("wire-duplicate");
    let _host = standard_host(&topic, "");
    let mut caller = RawCaller::new(&topic).await;
    let mut request = Request::new("add", json!({"a": 1, "b": 2}).as_object().unwrap().clone());
    request.msg_id = Some(new_id());
    request.reply_q = Some(caller.reply_q.clone());
    request.unique_id = Some(new_id());
    let body = request.encode();
    // The same message twice, then a new one: two replies in all.
    let mut second = request.clone();
    second.msg_id = Some(new_id());
    second.unique_id = Some(new_id());
    for body in [&body, &body, &second.encode()] {
        caller.publish(body).await;
    }
    let replies = caller.replies(Duration::from_secs(2)).await;
    let seen: Vec<&String> = replies.iter().map(|r| &r.msg_id).collect();
    assert_eq!(seen.len(), 2, "replies: {seen:?}");
    assert!(replies.iter().all(|r| r.ending && r.result == json!(3)));
    assert!(seen.contains(&request.msg_id.as_ref().unwrap()));
    assert!(seen.contains(&second.msg_id.as_ref().unwrap()));
}

/// `depth` nested JSON arrays around `inner`.
pub fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

/// A call of `method` with `args` (raw JSON text) from `caller`, answered under `msg_id`.
pub fn raw_call(caller: &RawCaller, msg_id: &str, method: &str, args: &str) -> Vec<u8> {
    let inner = format!(
        r#"{{"method": "{method}", "args": {args}, "_msg_id": "{msg_id}", "_reply_q": "{}", "_unique_id": "{}"}}"#,
        caller.reply_q,
        new_id()
    );
    serde_json::to_vec(&json!({"oslo.version": "2.0", "oslo.message": inner})).unwrap()
}

/// Every kind of unreadable message is rejected once (no requeue: it is never seen again), logged
/// with its reason, and the host answers the next call.
#[tokio::test]
async fn unreadable_messages_are_rejected_once_with_their_reason() {
    let topic = unique("wire-unreadable");
    let host = standard_host(&topic, "");
    let caller = RawCaller::new(&topic).await;
    let good = raw_call(&caller, "good", "add", r#"{"a": 2, "b": 3}"#);
    let deep_outer = nested(100_000, "1");
    let deep_inner = serde_json::to_vec(&json!({
        "oslo.version": "2.0",
        "oslo.message": format!(r#"{{"method": "add", "args": {{"a": {}}}}}"#, nested(100_000, "1")),
    }))
    .unwrap();
    let huge = raw_call(
        &caller,
        "huge",
        "add",
        &format!(r#"{{"a": "{}"}}"#, "x".repeat(2 << 20)),
    );
    let cases: Vec<(&str, Vec<u8>, lapin::BasicProperties)> = vec![
        ("not JSON", b"not json".to_vec(), oslo_properties()),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            oslo_properties(),
        ),
        (
            "oslo.version 1.0",
            br#"{"oslo.version": "1.0", "oslo.message": "{}"}"#.to_vec(),
            oslo_properties(),
        ),
        (
            "oslo.version garbage",
            br#"{"oslo.version": "two", "oslo.message": "{}"}"#.to_vec(),
            oslo_properties(),
        ),
        (
            "wrong content type",
            good.clone(),
            oslo_properties().with_content_type("application/x-python-serialize".into()),
        ),
        (
            "deep outer nesting",
            deep_outer.into_bytes(),
            oslo_properties(),
        ),
        ("deep inner nesting", deep_inner, oslo_properties()),
        ("huge body", huge, oslo_properties()),
    ];
    for (_, body, properties) in &cases {
        caller.publish_with(body, properties.clone()).await;
    }
    caller.publish(&good).await;
    let mut caller = caller;
    let mut replies = caller.replies(Duration::from_secs(3)).await;
    replies.sort_by(|a, b| a.msg_id.cmp(&b.msg_id));
    // The good call is answered, and so is the huge one (its reply address is readable); the
    // others have no reply address.
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(
        (replies[0].msg_id.as_str(), &replies[0].result),
        ("good", &json!(5))
    );
    assert_eq!(replies[1].msg_id, "huge");
    let too_large = replies[1].failure.as_ref().unwrap();
    assert_eq!(
        (too_large.class.as_str(), too_large.module.as_str()),
        ("RequestTooLarge", "fjord")
    );

    // Once each: a requeued message would come back and be logged again.
    std::thread::sleep(Duration::from_secs(1));
    let log = host.log();
    let rejections: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rejecting an unreadable message"))
        .collect();
    assert_eq!(rejections.len(), cases.len() - 1, "{log}");
    assert!(log.contains("bad request on"), "{log}");
    for reason in [
        "not JSON",
        "EOF while parsing",
        "unsupported oslo envelope version 1.0",
        "unsupported oslo envelope version two",
        "content type \"application/x-python-serialize\"",
        // The deep outer nesting (100,000 arrays) is large enough to be scanned before it is
        // parsed, and the scanner sees at once that it is not an object.
        "the message is not a JSON object (so no reply address either)",
    ] {
        assert!(
            rejections.iter().any(|l| l.contains(reason)),
            "no rejection says {reason:?}:\n{}",
            rejections.join("\n")
        );
    }
    // The deep inner message is 100,000 arrays: more values than a request may hold, which is
    // found before parsing.
    assert!(
        rejections
            .iter()
            .any(|l| l.contains("JSON values") && l.contains("a cast: nobody to answer")),
        "{}",
        rejections.join("\n")
    );
}

fn oslo_properties() -> lapin::BasicProperties {
    fjord_oslo::topology::message_properties(None)
}

/// Readable envelopes whose request does not fit: each gets a failure reply naming what is wrong.
#[tokio::test]
async fn bad_arguments_and_targets_get_a_failure_naming_them() {
    let topic = unique("wire-bad-args");
    let _host = Host::start(&config(&[(&topic, "s", &path_item(&wasm("types")))]));
    let mut caller = RawCaller::new(&topic).await;
    let record = r#"{"host_name": "h", "port": 1, "tags": [], "bogus": 1}"#;
    let deep = nested(120, r#""s""#);
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "out_of_range",
            r#"{"v": 256}"#.into(),
            "echo_u8",
            "v: 256 is out of range for u8",
        ),
        (
            "negative_unsigned",
            r#"{"v": -1}"#.into(),
            "echo_u64",
            "v: -1 is out of range for u64",
        ),
        (
            "fractional",
            r#"{"v": 1.5}"#.into(),
            "echo_s32",
            "v: expected an integer (s32), got 1.5",
        ),
        (
            "null",
            r#"{"v": null}"#.into(),
            "echo_s64",
            "v: expected an integer (s64), got null",
        ),
        (
            "unknown_field",
            format!(r#"{{"v": {record}}}"#),
            "echo_record",
            "unknown field \"bogus\"",
        ),
        (
            "bad_enum",
            r#"{"v": "purple"}"#.into(),
            "echo_enum",
            "v: expected one of red, dark_green, blue",
        ),
        (
            "deep_arrays",
            format!(r#"{{"v": {deep}}}"#),
            "echo_nested",
            "v[0][0]: expected a string",
        ),
        (
            "deep_for_string",
            format!(r#"{{"v": {deep}}}"#),
            "echo_string",
            "v: expected a string, got an array",
        ),
    ];
    for (id, args, method, _) in &cases {
        caller.publish(&raw_call(&caller, id, method, args)).await;
    }
    // Garbage version and unknown namespace, in otherwise good requests.
    let mut garbage = Request::new("echo_u8", json!({"v": 1}).as_object().unwrap().clone());
    garbage.msg_id = Some("garbage_version".into());
    garbage.reply_q = Some(caller.reply_q.clone());
    garbage.version = Some("1.x".into());
    let mut namespace = garbage.clone();
    namespace.msg_id = Some("unknown_namespace".into());
    namespace.unique_id = Some(new_id());
    namespace.version = None;
    namespace.namespace = Some("nowhere".into());
    caller.publish(&garbage.encode()).await;
    caller.publish(&namespace.encode()).await;

    let replies = caller.replies(Duration::from_secs(3)).await;
    assert_eq!(replies.len(), cases.len() + 2, "{replies:?}");
    let failure = |id: &str| {
        replies
            .iter()
            .find(|r| r.msg_id == id)
            .and_then(|r| r.failure.clone())
            .unwrap_or_else(|| panic!("{id}: no failure reply in {replies:?}"))
    };
    for (id, _, method, needle) in &cases {
        let f = failure(id);
        assert_eq!(
            (f.class.as_str(), f.module.as_str()),
            ("TypeError", "builtins"),
            "{id}: {f:?}"
        );
        assert!(
            f.message.contains(needle),
            "{id}: {:?} lacks {needle:?}",
            f.message
        );
        assert!(
            f.message.starts_with(&format!("{method}() argument")),
            "{id}: {}",
            f.message
        );
    }
    let f = failure("garbage_version");
    assert_eq!(f.class, "ValueError", "{f:?}");
    assert!(f.message.contains("1.x"), "{}", f.message);
    let f = failure("unknown_namespace");
    assert_eq!(f.class, "UnsupportedVersion", "{f:?}");
}
