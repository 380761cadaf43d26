//! The RPC servers of a host: declares each target's exchanges and queues exactly as an
//! oslo.messaging server does, consumes them, and answers every call in oslo's form.

use crate::admission::admit;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::endpoint;
use crate::sandbox::Sandbox;
use anyhow::Context as _;
use fjord_oslo::connection::{connect, reconnect};
use fjord_oslo::envelope::{decode_message, Reply, Request};
use fjord_oslo::failure::Failure;
use fjord_oslo::reconnect::{Backoff, Outage};
use fjord_oslo::topology;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
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
/// `keyvalue` is the store opened by [`crate::keyvalue::Keyvalue::open`] for the granted buckets.
pub fn load(
    config: &Config,
    keyvalue: Option<Arc<crate::keyvalue::Keyvalue>>,
) -> anyhow::Result<Vec<RpcServer>> {
    let sandbox = Arc::new(Sandbox::new()?.with_keyvalue(keyvalue));
    let mut servers = Vec::new();
    for server in &config.servers {
        let mut endpoints = Vec::new();
        for e in &server.endpoints {
            let capabilities = Arc::new(e.capabilities.clone());
            let loaded = endpoint::load(&sandbox, &e.path, e.namespace.as_deref(), e.limits)?;
            endpoints.extend(loaded.into_iter().map(|mut endpoint| {
                endpoint.capabilities = capabilities.clone();
                endpoint
            }));
        }
        endpoint::check_duplicates(&endpoints)
            .with_context(|| format!("server {}.{}", server.topic, server.server))?;
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

/// Backoff between reconnection attempts: capped at 1 s so service returns within seconds of
/// the broker's return; jitter keeps many hosts from reconnecting in lockstep.
const RECONNECT_FIRST: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// How long a graceful stop waits for calls in flight.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// How long a reply is retried when its queue is missing or the connection is down (oslo:
/// 60 s, holding a worker; short here, and each reply has its own task).
const REPLY_RETRY: Duration = Duration::from_secs(3);
const REPLY_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// The channel replies go out on; replaced after each reconnection.
#[derive(Default)]
struct Replies {
    channel: RwLock<Option<Channel>>,
}

impl Replies {
    fn current(&self) -> Option<Channel> {
        self.channel
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, channel: Option<Channel>) {
        *self.channel.write().unwrap_or_else(PoisonError::into_inner) = channel;
    }
}

/// One server's listener and the fanout queue name it keeps across reconnections.
struct Subscription {
    server: RpcServer,
    listener: Arc<Listener>,
    fanout: String,
}

/// One connection with every server's queues declared and consumed.
struct Session {
    connection: Connection,
    /// Per server: its channel, consumer tags and fanout queue.
    channels: Vec<(Channel, Vec<String>, String)>,
    lost: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Session {
    async fn open(
        config: &Config,
        subscriptions: &[Subscription],
        replies: &Replies,
        quiet: bool,
    ) -> anyhow::Result<Session> {
        let connection = if quiet {
            reconnect(&config.transport_url, "fjord-host").await?
        } else {
            connect(&config.transport_url, "fjord-host").await?
        };
        match Session::subscribe(connection, config, subscriptions, replies, quiet).await {
            Ok(session) => Ok(session),
            Err((connection, e)) => {
                close(connection).await;
                Err(e)
            }
        }
    }

    async fn subscribe(
        connection: Connection,
        config: &Config,
        subscriptions: &[Subscription],
        replies: &Replies,
        quiet: bool,
    ) -> Result<Session, (Connection, anyhow::Error)> {
        macro_rules! tri {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Err((connection, anyhow::Error::from(e))),
                }
            };
        }
        let reply_channel = tri!(connection
            .create_channel()
            .await
            .context("cannot open the reply channel"));
        tri!(reply_channel
            .confirm_select(Default::default())
            .await
            .context("cannot enable publisher confirms"));
        // Consumers report here when they stop: the session is then lost and rebuilt.
        let (lost_tx, lost) = tokio::sync::mpsc::unbounded_channel::<String>();
        let options = &config.transport_url.options;
        let mut channels = Vec::new();
        for sub in subscriptions {
            let server = &sub.server;
            let channel = tri!(connection
                .create_channel()
                .await
                .context("cannot open a channel"));
            tri!(channel
                .basic_qos(PREFETCH, BasicQosOptions::default())
                .await
                .context("cannot set the prefetch count"));
            let queues = tri!(topology::declare_server_queues_named(
                &channel,
                &server.exchange,
                &server.topic,
                &server.server,
                &sub.fanout,
                options,
            )
            .await
            .with_context(|| format!(
                "cannot declare exchange {} and the queues of {}.{}",
                server.exchange, server.topic, server.server
            )));
            let mut tags = Vec::new();
            for queue in [&queues.topic, &queues.server, &queues.fanout] {
                let tag = format!("fjord-{}", uuid::Uuid::new_v4().simple());
                let consumer = tri!(channel
                    .basic_consume(
                        queue.as_str().into(),
                        tag.as_str().into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .with_context(|| format!("cannot consume from queue {queue}")));
                tags.push(tag);
                let (listener, queue, lost) =
                    (sub.listener.clone(), queue.clone(), lost_tx.clone());
                tokio::spawn(async move {
                    let why = listener.consume(&queue, consumer).await;
                    let _ = lost.send(format!("consumer of queue {queue} stopped: {why}"));
                });
            }
            if !quiet {
                tracing::info!(
                    topic = %server.topic, server = %server.server, exchange = %server.exchange,
                    "consuming {}, {}, {}", queues.topic, queues.server, queues.fanout
                );
            }
            channels.push((channel, tags, queues.fanout));
        }
        replies.set(Some(reply_channel));
        Ok(Session {
            connection,
            channels,
            lost,
        })
    }
}

/// Connects, subscribes every server and serves until `shutdown` resolves, reconnecting
/// whenever the connection or a consumer is lost.
pub async fn serve(
    config: &Config,
    servers: Vec<RpcServer>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let replies = Arc::new(Replies::default());
    let subscriptions: Vec<Subscription> = servers
        .into_iter()
        .map(|server| Subscription {
            listener: Arc::new(Listener {
                dispatcher: server.dispatcher.clone(),
                replies: replies.clone(),
                in_flight: in_flight.clone(),
                seen: Mutex::new(VecDeque::with_capacity(DUPLICATE_WINDOW)),
            }),
            fanout: topology::new_fanout_queue_name(&server.topic),
            server,
        })
        .collect();

    // At start-up an unreachable broker is a configuration error: fail loudly.
    let mut session = Session::open(config, &subscriptions, &replies, false).await?;
    tracing::info!(url = %config.transport_url, "fjord-host ready");

    tokio::pin!(shutdown);
    let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
    let mut outage = Outage::default();
    loop {
        let why = tokio::select! {
            () = &mut shutdown => break,
            why = session.lost.recv() => why.unwrap_or_else(|| "all consumers stopped".into()),
        };
        outage.begin(&why, "fjord-host");
        replies.set(None);
        close(session.connection).await;
        session = loop {
            let pause = backoff.next_delay();
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!("shutting down while disconnected");
                    return Ok(());
                }
                () = tokio::time::sleep(pause) => {}
            }
            match Session::open(config, &subscriptions, &replies, true).await {
                Ok(s) => break s,
                Err(e) => tracing::debug!("reconnection failed: {e:#}"),
            }
        };
        backoff.reset();
        outage.end("fjord-host");
    }

    let running = MAX_IN_FLIGHT - in_flight.available_permits();
    tracing::info!("shutting down: no new calls, finishing {running} in flight");
    // Stop taking messages first, so nothing new starts while the calls in flight finish.
    for (channel, tags, _) in &session.channels {
        for tag in tags {
            if let Err(e) = channel
                .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await
            {
                tracing::debug!("cannot cancel consumer {tag}: {e}");
            }
        }
    }
    let all = u32::try_from(MAX_IN_FLIGHT).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_LIMIT, in_flight.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "{} calls still running after {} s; stopping anyway",
            MAX_IN_FLIGHT - in_flight.available_permits(),
            DRAIN_LIMIT.as_secs()
        );
    }
    // The fanout queues are ours alone: delete them, as oslo does on an orderly stop.
    for (channel, _, queue) in &session.channels {
        if let Err(e) = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
        {
            tracing::warn!("cannot delete fanout queue {queue}: {e}");
        }
    }
    close(session.connection).await;
    tracing::info!("stopped");
    Ok(())
}

async fn close(connection: Connection) {
    if !connection.status().connected() {
        return;
    }
    let closing = connection.close(200, "fjord-host stopping".into());
    match tokio::time::timeout(Duration::from_secs(5), closing).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("closing the connection: {e}"),
        Err(_) => tracing::debug!("closing the connection: no answer"),
    }
}

/// The consumers of one server (its topic, server and fanout queues) share this.
struct Listener {
    dispatcher: Arc<Dispatcher>,
    replies: Arc<Replies>,
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
        let body_len = delivery.data.len();
        let admitted = admit(
            &delivery.properties,
            &delivery.data,
            self.dispatcher.max_request_bytes(),
        );
        let message = match admitted
            .and_then(|()| decode_message(&delivery.data).map_err(|e| e.to_string()))
        {
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
            // oslo's call monitor: while the method runs, tell a caller that asked for it
            // (`_timeout`) every half of its timeout that the call is still alive.
            // As oslo's dispatcher: whole seconds, and an interval under 1 s is ignored.
            let interval = request
                .timeout
                .filter(|t| t.is_finite())
                .map(|t| t.trunc() / 2.0);
            let heartbeat = match (&request.msg_id, &request.reply_q, interval) {
                (Some(msg_id), Some(reply_q), Some(i)) if i >= 1.0 => {
                    let (me, msg_id, reply_q) = (self.clone(), msg_id.clone(), reply_q.clone());
                    let every = Duration::from_secs_f64(i);
                    Some(tokio::spawn(async move {
                        let mut tick = tokio::time::interval(every);
                        tick.tick().await;
                        loop {
                            tick.tick().await;
                            me.heartbeat(&reply_q, &msg_id).await;
                        }
                    }))
                }
                _ => None,
            };
            let ((), outcome) = tokio::join!(ack, self.dispatcher.dispatch(&request, body_len));
            if let Some(h) = heartbeat {
                h.abort();
            }
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
            // Held until the reply is out, so a graceful stop waits for it.
            drop(permit);
        });
    }

    /// Sends a reply, retrying briefly while its queue is missing or the connection is being
    /// re-established, then drops it with a warning.
    async fn reply(&self, reply_q: &str, reply: &Reply) {
        let deadline = tokio::time::Instant::now() + REPLY_RETRY;
        loop {
            let outcome = match self.replies.current() {
                Some(channel) => topology::publish_reply(&channel, reply_q, reply)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("not connected to RabbitMQ".to_string()),
            };
            let Err(e) = outcome else { return };
            if tokio::time::Instant::now() + REPLY_RETRY_PAUSE > deadline {
                tracing::warn!(
                    "dropping the reply to {} on {reply_q} after {} s: {e}",
                    reply.msg_id,
                    REPLY_RETRY.as_secs()
                );
                return;
            }
            tracing::debug!("cannot reply to {reply_q} yet: {e}");
            tokio::time::sleep(REPLY_RETRY_PAUSE).await;
        }
    }

    /// One call-monitor heartbeat; not retried (the next one follows soon).
    async fn heartbeat(&self, reply_q: &str, msg_id: &str) {
        if let Some(channel) = self.replies.current() {
            if let Err(e) =
                topology::publish_reply(&channel, reply_q, &Reply::heartbeat(msg_id)).await
            {
                tracing::debug!("cannot send a heartbeat to {reply_q}: {e}");
            }
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
