//! `bare-server --url amqp://... --queue Q`: the bare floor, for context beside the oslo-shaped
//! one. Answers `{"a": x, "b": y, ...}` with `{"result": x + y}` on the `reply_to` queue, echoing
//! `correlation_id`: the default exchange, no envelope, no publisher confirms, auto-ack. Prints
//! `ready` once consuming; runs until killed. The queue is auto-delete, so it goes when the
//! server does.

use anyhow::Context as _;
use clap::Parser;
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::BasicProperties;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    url: String,
    /// The request queue.
    #[arg(long)]
    queue: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connection = fjord_bench::connect(&args.url, "bare-server").await?;
    let channel = connection.create_channel().await?;
    channel.basic_qos(64, BasicQosOptions::default()).await?;
    channel
        .queue_declare(
            args.queue.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot declare queue {}", args.queue))?;
    let mut consumer = channel
        .basic_consume(
            args.queue.as_str().into(),
            "bare-server".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    println!("ready");
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.context("the consumer failed")?;
        let Some(reply_to) = delivery.properties.reply_to().clone() else {
            continue;
        };
        let sum = match serde_json::from_slice::<serde_json::Value>(&delivery.data) {
            Ok(v) => v["a"]
                .as_i64()
                .unwrap_or(0)
                .saturating_add(v["b"].as_i64().unwrap_or(0)),
            Err(_) => continue,
        };
        let body = serde_json::to_vec(&serde_json::json!({ "result": sum }))?;
        let mut properties = BasicProperties::default();
        if let Some(id) = delivery.properties.correlation_id().clone() {
            properties = properties.with_correlation_id(id);
        }
        let channel = channel.clone();
        // Publishing is not awaited in line, so replies to many callers overlap.
        tokio::spawn(async move {
            let published = channel
                .basic_publish(
                    "".into(),
                    reply_to,
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await;
            // Not in confirm mode: the confirmation is `NotRequested` at once.
            match published {
                Err(e) => eprintln!("bare-server: cannot reply: {e}"),
                Ok(confirm) => {
                    if let Err(e) = confirm.await {
                        eprintln!("bare-server: reply failed: {e}");
                    }
                }
            }
        });
    }
    Ok(())
}
