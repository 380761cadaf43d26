//! `bare-client --url amqp://... --queue Q --concurrency C --calls N [--size BYTES]`: `C`
//! callers make `N` request/replies in all against `bare-server` (the bare floor: default
//! exchange, `reply_to` and `correlation_id`, no envelope, no confirms, auto-ack); the last
//! stdout line is the same JSON report as `fjord bench`'s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use fjord_cli::bench::{CpuTime, Report};
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use tokio::sync::oneshot;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    url: String,
    /// The server's request queue.
    #[arg(long)]
    queue: String,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long, default_value_t = 1000)]
    calls: usize,
    /// Pad each request body to about this many bytes.
    #[arg(long)]
    size: Option<usize>,
    /// Seconds to wait for one reply.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.concurrency > 0 && args.calls > 0,
        "--concurrency and --calls must be at least 1"
    );
    let connection = fjord_bench::connect(&args.url, "bare-client").await?;
    let publisher = connection.create_channel().await?;
    let replies = connection.create_channel().await?;
    let reply_queue = replies
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .context("cannot declare the reply queue")?;
    let reply_to = reply_queue.name().clone();
    let mut consumer = replies
        .basic_consume(
            reply_to.clone(),
            "bare-client".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let pending: Pending = Arc::default();
    let routed = pending.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let Some(id) = delivery.properties.correlation_id() else {
                continue;
            };
            let waiter = routed.lock().ok().and_then(|mut p| p.remove(id.as_str()));
            if let Some(tx) = waiter {
                let _ = tx.send(());
            }
        }
    });

    let mut body = serde_json::json!({ "a": 2, "b": 3 });
    if let Some(size) = args.size {
        let bare = serde_json::to_vec(&body)?.len() + r#","pad":"""#.len();
        body["pad"] = "x".repeat(size.saturating_sub(bare)).into();
    }
    let body = Arc::new(serde_json::to_vec(&body)?);
    let call = Caller {
        publisher,
        queue: args.queue.clone().into(),
        reply_to,
        pending,
        body,
        timeout: Duration::from_secs(args.timeout),
    };
    call.call()
        .await
        .context("the warm-up call failed (is bare-server running?)")?;

    let call = Arc::new(call);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = CpuTime::now();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.min(args.calls) {
        let (call, next, calls) = (call.clone(), next.clone(), args.calls);
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let t = Instant::now();
                match call.call().await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(_) => errors += 1,
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
    let report =
        Report::from_latencies(args.concurrency.min(args.calls), seconds, latencies, errors)
            .with_cpu(cpu_before, CpuTime::now());
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

struct Caller {
    publisher: Channel,
    queue: ShortString,
    reply_to: ShortString,
    pending: Pending,
    body: Arc<Vec<u8>>,
    timeout: Duration,
}

impl Caller {
    async fn call(&self) -> anyhow::Result<()> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(id.clone(), tx);
        let properties = BasicProperties::default()
            .with_reply_to(self.reply_to.clone())
            .with_correlation_id(id.as_str().into());
        self.publisher
            .basic_publish(
                "".into(),
                self.queue.clone(),
                BasicPublishOptions::default(),
                &self.body,
                properties,
            )
            .await?
            .await?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            _ => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&id);
                }
                anyhow::bail!("no reply to {id}")
            }
        }
    }
}
