//! The RPC servers of a host: declares each target's exchanges and queues exactly as an
//! oslo.messaging server does, consumes them, and answers every call in oslo's form.

use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::endpoint;
use crate::sandbox::Sandbox;
use anyhow::Context as _;
use fjord_client::connection::connect;
use fjord_client::envelope::{decode_message, Reply, Request};
use fjord_client::failure::Failure;
use fjord_client::topology;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// oslo's threading executor runs up to 64 methods at once; so do we, per host (the sandbox's
/// instance pool is sized for it).
const MAX_IN_FLIGHT: usize = crate::sandbox::MAX_CONCURRENT_CALLS as usize;
/// Unacknowledged deliveries the broker may push to each consumer: bounds what waits in memory
/// while every in-flight slot is busy (back-pressure stays in RabbitMQ, not in an unbounded buffer).
const PREFETCH: u16 = MAX_IN_FLIGHT as u16;
/// oslo remembers the last 16 `_unique_id`s per listener to drop redelivered duplicates.
const DUPLICATE_WINDOW: usize = 16;

/// One configured RPC server, loaded and ready to subscribe.
pub struct RpcServer {
    pub topic: String,
    pub server: String,
    pub exchange: String,
    pub dispatcher: Arc<Dispatcher>,
}

/// Everything loaded from the config, before touching the network: a component that cannot be
/// served stops the host here.
pub fn load(config: &Config) -> anyhow::Result<Vec<RpcServer>> {
    let sandbox = Arc::new(Sandbox::new()?);
    let mut servers = Vec::new();
    for server in &config.servers {
        let mut endpoints = Vec::new();
        for e in &server.endpoints {
            endpoints.extend(endpoint::load(
                &sandbox,
                &e.path,
                e.namespace.as_deref(),
                e.limits,
            )?);
        }
        for e in &endpoints {
            let mut methods: Vec<&str> = e.methods.keys().map(String::as_str).collect();
            methods.sort_unstable();
            tracing::info!(
                topic = %server.topic, server = %server.server, interface = %e.interface,
                version = %e.version, namespace = e.namespace.as_deref().unwrap_or("-"),
                "endpoint {} serves {}", e.file.display(), methods.join(", ")
            );
        }
        servers.push(RpcServer {
            topic: server.topic.clone(),
            server: server.server.clone(),
            exchange: server
                .exchange
                .clone()
                .unwrap_or_else(|| config.control_exchange.clone()),
            dispatcher: Arc::new(Dispatcher::new(sandbox.clone(), endpoints)),
        });
    }
    Ok(servers)
}

/// Connects, subscribes every server and serves until `shutdown` resolves.
pub async fn serve(
    config: &Config,
    servers: Vec<RpcServer>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let connection = connect(&config.transport_url, "fjord-host").await?;
    let replies = connection
        .create_channel()
        .await
        .context("cannot open the reply channel")?;
    replies
        .confirm_select(Default::default())
        .await
        .context("cannot enable publisher confirms")?;
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Consumers report here when they stop; a host that cannot hear its queues must not look alive.
    let (lost_tx, mut lost_rx) = tokio::sync::mpsc::unbounded_channel::<String>();

    let mut fanout_queues = Vec::new();
    for server in servers {
        let channel = connection
            .create_channel()
            .await
            .context("cannot open a channel")?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .context("cannot set the prefetch count")?;
        let options = &config.transport_url.options;
        topology::declare_topic_exchange(&channel, &server.exchange, options)
            .await
            .with_context(|| format!("cannot declare exchange {}", server.exchange))?;
        let queues = topology::declare_server_queues(
            &channel,
            &server.exchange,
            &server.topic,
            &server.server,
            options,
        )
        .await
        .with_context(|| {
            format!(
                "cannot declare the queues of {}.{}",
                server.topic, server.server
            )
        })?;
        let listener = Arc::new(Listener {
            dispatcher: server.dispatcher.clone(),
            replies: replies.clone(),
            in_flight: in_flight.clone(),
            seen: Mutex::new(VecDeque::with_capacity(DUPLICATE_WINDOW)),
        });
        for queue in [&queues.topic, &queues.server, &queues.fanout] {
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    format!("fjord-{}", uuid::Uuid::new_v4().simple())
                        .as_str()
                        .into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("cannot consume from queue {queue}"))?;
            let (listener, queue, lost) = (listener.clone(), queue.clone(), lost_tx.clone());
            tokio::spawn(async move {
                let why = listener.consume(&queue, consumer).await;
                let _ = lost.send(format!("consumer of queue {queue} stopped: {why}"));
            });
        }
        tracing::info!(
            topic = %server.topic, server = %server.server, exchange = %server.exchange,
            "consuming {}, {}, {}", queues.topic, queues.server, queues.fanout
        );
        fanout_queues.push((channel, queues.fanout));
    }
    tracing::info!(url = %config.transport_url, "fjord-host ready");

    let lost = tokio::select! {
        () = shutdown => None,
        why = lost_rx.recv() => why,
    };
    if let Some(why) = lost {
        // Reconnection is not built yet: exit so a supervisor restarts the host.
        close(connection).await;
        anyhow::bail!("{why}");
    }
    tracing::info!("shutting down");
    // The fanout queues are ours alone: delete them, as oslo does on an orderly stop.
    for (channel, queue) in fanout_queues {
        if let Err(e) = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
        {
            tracing::warn!("cannot delete fanout queue {queue}: {e}");
        }
    }
    close(connection).await;
    Ok(())
}

async fn close(connection: Connection) {
    if let Err(e) = connection.close(200, "fjord-host stopping".into()).await {
        tracing::debug!("closing the connection: {e}");
    }
}

/// The consumers of one server (its topic, server and fanout queues) share this.
struct Listener {
    dispatcher: Arc<Dispatcher>,
    replies: Channel,
    in_flight: Arc<Semaphore>,
    seen: Mutex<VecDeque<String>>,
}

impl Listener {
    /// Serves one queue until its consumer ends, and says why it ended.
    async fn consume(self: Arc<Self>, queue: &str, mut consumer: lapin::Consumer) -> String {
        while let Some(delivery) = consumer.next().await {
            match delivery {
                Ok(delivery) => self.clone().receive(queue, delivery).await,
                Err(e) => return e.to_string(),
            }
        }
        "the broker cancelled it".to_string()
    }

    /// Acks on receipt as oslo does (RPC is at-most-once), then dispatches in its own task.
    async fn receive(self: Arc<Self>, queue: &str, delivery: lapin::message::Delivery) {
        // Back-pressure: wait for a slot before acking and taking on more work; meanwhile the
        // prefetch count holds further messages in the broker.
        let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
            return;
        };
        let message = match decode_message(&delivery.data) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!("rejecting an unreadable message from {queue}: {e}");
                if let Err(e) = delivery.reject(BasicRejectOptions { requeue: false }).await {
                    tracing::warn!("cannot reject a message on {queue}: {e}");
                }
                return;
            }
        };
        // The ack runs alongside the call instead of before it (waiting for lapin to write it out
        // costs a thread hand-off per message); the reply still goes out only once it is acked.
        let queue_name = queue.to_string();
        let ack = async move {
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                tracing::warn!("cannot ack a message on {queue_name}: {e}");
            }
        };
        let request = match Request::from_message(message) {
            Ok(request) => request,
            Err(e) => {
                ack.await;
                tracing::warn!("bad request on {queue}: {e}");
                if let (Some(msg_id), Some(reply_q)) = (e.msg_id.clone(), e.reply_q.clone()) {
                    let reply = Reply::failed(msg_id, Failure::type_error(e.to_string()));
                    self.reply(&reply_q, &reply).await;
                }
                return;
            }
        };
        if let Some(id) = &request.unique_id {
            if self.is_duplicate(id) {
                ack.await;
                tracing::info!("dropping duplicate message {id} on {queue}");
                return;
            }
        }
        tokio::spawn(async move {
            let ((), outcome) = tokio::join!(ack, self.dispatcher.dispatch(&request));
            drop(permit);
            if let Err(failure) = &outcome {
                tracing::info!(
                    method = %request.method,
                    request_id = request.context.get("request_id").and_then(|v| v.as_str()).unwrap_or("-"),
                    "{}: {}", failure.class, failure.message
                );
            }
            if let (Some(msg_id), Some(reply_q)) = (&request.msg_id, &request.reply_q) {
                let reply = match outcome {
                    Ok(result) => Reply::ok(msg_id.clone(), result),
                    Err(failure) => Reply::failed(msg_id.clone(), failure),
                };
                self.reply(reply_q, &reply).await;
            }
        });
    }

    async fn reply(&self, reply_q: &str, reply: &Reply) {
        if let Err(e) = topology::publish_reply(&self.replies, reply_q, reply).await {
            tracing::warn!("cannot reply to {reply_q}: {e}");
        }
    }

    fn is_duplicate(&self, unique_id: &str) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen.iter().any(|s| s == unique_id) {
            return true;
        }
        if seen.len() == DUPLICATE_WINDOW {
            seen.pop_front();
        }
        seen.push_back(unique_id.to_string());
        false
    }
}
