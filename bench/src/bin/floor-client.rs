//! `floor-client --url amqp://... --topic T --concurrency C --calls N [--size BYTES]`: the
//! oslo-shaped floor's client. `C` callers share one connection and one reply queue
//! (`reply_<uuid4 hex>`, declared as oslo does) and make `N` calls of `add(a=2, b=3)` in all
//! against `floor-server`: oslo's envelope published to the topic exchange with routing key =
//! topic, mandatory, `expiration` = the timeout, awaiting the publisher confirm; replies consumed
//! with manual acks and matched to their call by `_msg_id`. The last stdout line is the same
//! JSON report as `fjord bench`'s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use fjord_bench::wire::{self, AddArgs};
use fjord_cli::bench::{CpuTime, Report};
use fjord_oslo::topology::{declare_reply_queue, declare_topic_exchange, message_properties};
use fjord_oslo::TransportOptions;
use futures_lite::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::sync::oneshot;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    url: String,
    /// The RPC topic (the routing key).
    #[arg(long)]
    topic: String,
    /// The topic exchange (oslo's control_exchange).
    #[arg(long, default_value = fjord_oslo::DEFAULT_CONTROL_EXCHANGE)]
    exchange: String,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long, default_value_t = 1000)]
    calls: usize,
    /// Pad each request body to about this many bytes (a `_context_fjord_bench_pad` entry, as
    /// `fjord bench --size` does).
    #[arg(long)]
    size: Option<usize>,
    /// Seconds to wait for one reply; also each call's `expiration`, as oslo's timeout.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

/// Each waiting call, by `_msg_id`; told whether its reply was `5` with no failure.
type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<bool>>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.concurrency > 0 && args.calls > 0,
        "--concurrency and --calls must be at least 1"
    );
    let connection = fjord_bench::connect(&args.url, "floor-client").await?;
    // As fjord's client: one publishing channel in confirm mode, replies on their own channel.
    let publisher = connection.create_channel().await?;
    publisher.confirm_select(Default::default()).await?;
    let replies = connection.create_channel().await?;
    let options = TransportOptions::default();
    // Declared once per connection, as kombu's maybe_declare (and fjord's client) do.
    declare_topic_exchange(&publisher, &args.exchange, &options)
        .await
        .with_context(|| format!("cannot declare exchange {}", args.exchange))?;
    let reply_q = format!("reply_{}", wire::id_str(&wire::new_id()));
    declare_reply_queue(&replies, &reply_q, &options)
        .await
        .context("cannot declare the reply queue")?;
    let consumer = replies
        .basic_consume(
            reply_q.as_str().into(),
            reply_q.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let pending: Pending = Arc::default();
    tokio::spawn(route_replies(consumer, pending.clone()));

    let timeout = Duration::from_secs(args.timeout);
    let expiration = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let call = Caller {
        publisher,
        exchange: args.exchange.as_str().into(),
        routing_key: args.topic.as_str().into(),
        properties: message_properties(Some(expiration)),
        reply_q,
        pad: args.size.and_then(wire::pad_for),
        pending,
        timeout,
    };
    call.call()
        .await
        .context("the warm-up call failed (is floor-server running?)")?;

    let call = Arc::new(call);
    let next = Arc::new(AtomicUsize::new(0));
    let concurrency = args.concurrency.min(args.calls);
    let cpu_before = CpuTime::now();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (call, next, calls) = (call.clone(), next.clone(), args.calls);
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let t = Instant::now();
                match call.call().await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("floor-client: {e:#}");
                        }
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::with_capacity(args.calls), 0);
    for task in tasks {
        let (l, e) = task.await?;
        latencies.extend(l);
        errors += e;
    }
    let seconds = start.elapsed().as_secs_f64();
    let report = Report::from_latencies(concurrency, seconds, latencies, errors)
        .with_cpu(cpu_before, CpuTime::now());
    println!("{}", serde_json::to_string(&report)?);
    let _ = connection.close(200, "floor-client done".into()).await;
    Ok(())
}

/// Acks every reply and hands it to the call waiting for its `_msg_id`. One task: the acks in
/// flight are driven beside the consumer rather than awaited one by one.
async fn route_replies(mut consumer: lapin::Consumer, pending: Pending) {
    let mut acks = FuturesUnordered::new();
    loop {
        tokio::select! {
            delivery = consumer.next() => {
                let Some(Ok(delivery)) = delivery else { break };
                let routed = wire::decode_reply(&delivery.data, |reply| {
                    let ok = reply.ending && reply.failure.is_none() && reply.result == Some(5);
                    let waiter = pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(reply.msg_id.as_ref());
                    if let Some(tx) = waiter {
                        let _ = tx.send(ok);
                    }
                });
                if let Err(e) = routed {
                    eprintln!("floor-client: dropping an unreadable reply: {e}");
                }
                acks.push(async move { delivery.ack(BasicAckOptions::default()).await });
            }
            Some(acked) = acks.next(), if !acks.is_empty() => {
                if let Err(e) = acked {
                    eprintln!("floor-client: cannot ack a reply: {e}");
                }
            }
        }
    }
}

struct Caller {
    publisher: Channel,
    exchange: ShortString,
    routing_key: ShortString,
    properties: BasicProperties,
    reply_q: String,
    pad: Option<String>,
    pending: Pending,
    timeout: Duration,
}

impl Caller {
    async fn call(&self) -> anyhow::Result<()> {
        let (msg_id, unique_id) = (wire::new_id(), wire::new_id());
        let msg_id = wire::id_str(&msg_id);
        let (tx, rx) = oneshot::channel();
        // Registered before publishing: a fast reply must find its waiter.
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(msg_id.to_string(), tx);
        let body = wire::encode_call(
            AddArgs { a: 2, b: 3 },
            msg_id,
            &self.reply_q,
            wire::id_str(&unique_id),
            self.pad.as_deref(),
        );
        let outcome = self.publish_and_wait(&body, rx).await;
        if outcome.is_err() {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(msg_id);
        }
        outcome.with_context(|| format!("call {msg_id}"))
    }

    async fn publish_and_wait(
        &self,
        body: &[u8],
        rx: oneshot::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let confirm = self
            .publisher
            .basic_publish(
                self.exchange.clone(),
                self.routing_key.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                self.properties.clone(),
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(None) => {}
            Confirmation::Ack(Some(_)) => anyhow::bail!("no queue bound to the topic (returned)"),
            Confirmation::Nack(_) => anyhow::bail!("the broker refused the call"),
            Confirmation::NotRequested => anyhow::bail!("the channel is not in confirm mode"),
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => anyhow::bail!("the reply was not a successful 5"),
            Ok(Err(_)) => anyhow::bail!("the reply consumer stopped"),
            Err(_) => anyhow::bail!("no reply within {:?}", self.timeout),
        }
    }
}
