//! Raw AMQP publishes at fjord-host, bypassing the client's encoder: unreadable messages, bad
//! requests in a readable envelope, and redelivered duplicates.

use crate::harness::{unique, URL};
use crate::rpc::standard_host;
use fjord_client::envelope::{encode_message, new_id, Reply, Request};
use fjord_client::{Transport, TransportUrl};
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// A hand-made oslo caller: publishes raw bodies and reads raw replies from its own reply queue.
struct RawCaller {
    channel: lapin::Channel,
    reply_q: String,
    replies: lapin::Consumer,
    topic: String,
}

impl RawCaller {
    async fn new(topic: &str) -> RawCaller {
        let url = TransportUrl::parse(URL).unwrap();
        let transport = Transport::connect(&url).await.unwrap();
        let channel = transport.open_channel().await.unwrap();
        let reply_q = format!("reply_{}", new_id());
        fjord_client::topology::declare_reply_queue(&channel, &reply_q, &url.options)
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
        }
    }

    /// Publishes a body to the topic on the control exchange, with oslo's properties.
    async fn publish(&self, body: &[u8]) {
        self.channel
            .basic_publish(
                "openstack".into(),
                self.topic.as_str().into(),
                BasicPublishOptions::default(),
                body,
                fjord_client::topology::message_properties(None),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Every reply that arrives until none has for a while.
    async fn replies(&mut self, quiet: Duration) -> Vec<Reply> {
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
