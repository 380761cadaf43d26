//! `floor-server --url amqp://... --topic T [--exchange openstack]`: the oslo-shaped floor's
//! server. Consumes `<topic>` (bound to the topic exchange with routing key = topic) with manual
//! acks and a prefetch of 64, reads each call's oslo envelope, acks it (oslo acks on receipt),
//! and publishes `a + b` as oslo's reply on the default exchange to the call's `_reply_q`,
//! mandatory, waiting for the broker's confirm. No dispatch, no sandbox, no task per call: one
//! task drives every call in flight. Prints `ready` once consuming; stops on SIGTERM or SIGINT.

use anyhow::Context as _;
use clap::Parser;
use fjord_bench::wire;
use fjord_oslo::topology::{declare_topic_exchange, message_properties};
use fjord_oslo::TransportOptions;
use futures_lite::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    url: String,
    /// The RPC topic: the queue consumed and its routing key.
    #[arg(long)]
    topic: String,
    /// The topic exchange (oslo's control_exchange).
    #[arg(long, default_value = fjord_oslo::DEFAULT_CONTROL_EXCHANGE)]
    exchange: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connection = fjord_bench::connect(&args.url, "floor-server").await?;
    // As fjord-host: requests on one channel, replies on another in confirm mode.
    let requests = connection.create_channel().await?;
    requests.basic_qos(64, BasicQosOptions::default()).await?;
    let replies = connection.create_channel().await?;
    replies.confirm_select(Default::default()).await?;
    declare_topic_exchange(&requests, &args.exchange, &TransportOptions::default())
        .await
        .with_context(|| format!("cannot declare exchange {}", args.exchange))?;
    let queue = ShortString::from(args.topic.as_str());
    // oslo's topic queue flags, except auto-delete: the run's queue goes with its server.
    requests
        .queue_declare(
            queue.clone(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot declare queue {queue}"))?;
    requests
        .queue_bind(
            queue.clone(),
            args.exchange.as_str().into(),
            queue.clone(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = requests
        .basic_consume(
            queue,
            "floor-server".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    println!("ready");

    let properties = message_properties(None);
    let mut in_flight = FuturesUnordered::new();
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            delivery = consumer.next() => match delivery {
                Some(delivery) => {
                    let delivery = delivery.context("the consumer failed")?;
                    in_flight.push(answer(&replies, &properties, delivery));
                }
                None => break,
            },
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(e) = outcome {
                    eprintln!("floor-server: {e:#}");
                }
            }
            () = &mut stop => break,
        }
    }
    let _ = connection.close(200, "floor-server stopping".into()).await;
    Ok(())
}

/// One call: read it, ack it, reply, wait for the reply's confirm.
async fn answer(
    replies: &Channel,
    properties: &BasicProperties,
    delivery: Delivery,
) -> anyhow::Result<()> {
    let json = delivery
        .properties
        .content_type()
        .as_ref()
        .is_none_or(|t| t.as_str() == "application/json");
    let decoded = json
        .then(|| {
            wire::decode_call(&delivery.data, |call| {
                let sum = call.args.a.saturating_add(call.args.b);
                let reply = wire::encode_reply(sum, &call.msg_id, wire::id_str(&wire::new_id()));
                (call.method == "add", reply, call.reply_q.into_owned())
            })
        })
        .transpose();
    let (reply, reply_q) = match decoded {
        Ok(Some((true, reply, reply_q))) => (reply, reply_q),
        other => {
            delivery
                .reject(BasicRejectOptions { requeue: false })
                .await?;
            anyhow::bail!("rejected an unreadable call: {:?}", other.err())
        }
    };
    delivery.ack(BasicAckOptions::default()).await?;
    let confirm = replies
        .basic_publish(
            "".into(),
            reply_q.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &reply,
            properties.clone(),
        )
        .await?
        .await?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => anyhow::bail!("reply returned: no queue {reply_q}"),
        Confirmation::Nack(_) => anyhow::bail!("the broker refused a reply"),
        Confirmation::NotRequested => anyhow::bail!("the reply channel is not in confirm mode"),
    }
}

async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
