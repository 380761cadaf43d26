//! The RPC servers of a host: declares each target's exchanges and queues exactly as an
//! oslo.messaging server does, consumes them, and carries out what [`crate::delivery`] decides for
//! each message. Thin on purpose: every rule about a message lives in `delivery.rs`.
//!
//! Each queue has its own channel and consumer, watched by a supervisor task: a consumer that
//! ends for any reason (the broker cancelled it, its queue was deleted, its channel closed, its
//! task panicked) is noticed and re-subscribed on its own, with one log line; only when the
//! connection itself is gone is the whole session rebuilt.

use crate::config::Config;
use crate::delivery::{deliver, Duplicates, Loudness, Verdict};
use crate::dispatch::{Dispatcher, FJORD_MODULE};
use crate::endpoint;
use crate::replies::{open_reply_channel, Replier};
use crate::sandbox::Sandbox;
use crate::settlement::Settlement;
use anyhow::Context as _;
use fjord_oslo::connection::{connect, reconnect};
use fjord_oslo::envelope::Reply;
use fjord_oslo::failure::Failure;
use fjord_oslo::reconnect::{Backoff, Outage};
use fjord_oslo::topology::{self, short_string};
use fjord_oslo::url::TransportOptions;
use futures_lite::{FutureExt as _, StreamExt};
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// The failure a caller gets when the host itself failed (a panic) while running its call.
pub const INTERNAL_CLASS: &str = "InternalError";

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
    let sandbox = Arc::new(Sandbox::for_calls(config.in_flight)?);
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
/// How long a graceful stop waits for calls in flight and their replies.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Tries to re-subscribe one lost consumer before rebuilding the whole session.
const RESUBSCRIBE_TRIES: u32 = 3;
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(200);

/// Which kind of server queue, for declaring it again.
#[derive(Clone)]
enum QueueKind {
    /// `<topic>` or `<topic>.<server>`, bound to the exchange by its own name.
    Topic { exchange: String },
    /// `<topic>_fanout_<uuid>`, bound to `<topic>_fanout`.
    Fanout { topic: String },
}

/// One queue the host consumes, and what serves it.
#[derive(Clone)]
struct QueueSpec {
    name: Arc<str>,
    kind: QueueKind,
    listener: Arc<Listener>,
}

/// One server's listener and the fanout queue name it keeps across reconnections.
struct Subscription {
    server: RpcServer,
    listener: Arc<Listener>,
    fanout: String,
}

/// What the supervisors of one session share.
struct SessionShared {
    connection: Arc<Connection>,
    options: TransportOptions,
    prefetch: u16,
    /// Set when the host stops consuming: a consumer ending then is not re-subscribed.
    stopping: AtomicBool,
    /// Per queue, its current channel and consumer tag (for a graceful stop).
    consumers: Mutex<Vec<Option<(Channel, String)>>>,
    lost: tokio::sync::mpsc::UnboundedSender<String>,
}

/// One connection with every server's queues declared and consumed.
struct Session {
    shared: Arc<SessionShared>,
    supervisors: Vec<JoinHandle<()>>,
    /// The fanout queues, deleted on a graceful stop.
    fanouts: Vec<String>,
    lost: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Session {
    async fn open(
        config: &Config,
        subscriptions: &[Subscription],
        replier: &Replier,
        quiet: bool,
    ) -> anyhow::Result<Session> {
        let connection = if quiet {
            reconnect(&config.transport_url, "fjord-host").await?
        } else {
            connect(&config.transport_url, "fjord-host").await?
        };
        let connection = Arc::new(connection);
        match Session::subscribe(&connection, config, subscriptions, replier, quiet).await {
            Ok(session) => Ok(session),
            Err(e) => {
                close(&connection).await;
                Err(e)
            }
        }
    }

    async fn subscribe(
        connection: &Arc<Connection>,
        config: &Config,
        subscriptions: &[Subscription],
        replier: &Replier,
        quiet: bool,
    ) -> anyhow::Result<Session> {
        let reply_channel = open_reply_channel(connection)
            .await
            .context("cannot open the reply channel")?;
        let (lost_tx, lost) = tokio::sync::mpsc::unbounded_channel::<String>();
        let options = &config.transport_url.options;
        let mut specs = Vec::new();
        let mut fanouts = Vec::new();
        let declaring = connection
            .create_channel()
            .await
            .context("cannot open a channel")?;
        for sub in subscriptions {
            let server = &sub.server;
            let queues = topology::declare_server_queues_named(
                &declaring,
                &server.exchange,
                &server.topic,
                &server.server,
                &sub.fanout,
                options,
            )
            .await
            .with_context(|| {
                format!(
                    "cannot declare exchange {} and the queues of {}.{}",
                    server.exchange, server.topic, server.server
                )
            })?;
            let topic = QueueKind::Topic {
                exchange: server.exchange.clone(),
            };
            for (name, kind) in [
                (&queues.topic, topic.clone()),
                (&queues.server, topic),
                (
                    &queues.fanout,
                    QueueKind::Fanout {
                        topic: server.topic.clone(),
                    },
                ),
            ] {
                specs.push(QueueSpec {
                    name: Arc::from(name.as_str()),
                    kind,
                    listener: sub.listener.clone(),
                });
            }
            if !quiet {
                tracing::info!(
                    topic = %server.topic, server = %server.server, exchange = %server.exchange,
                    "consuming {}, {}, {}", queues.topic, queues.server, queues.fanout
                );
            }
            fanouts.push(queues.fanout);
        }
        let _ = declaring.close(200, "declared".into()).await;
        let shared = Arc::new(SessionShared {
            connection: connection.clone(),
            options: options.clone(),
            prefetch: config.prefetch,
            stopping: AtomicBool::new(false),
            consumers: Mutex::new(vec![None; specs.len()]),
            lost: lost_tx,
        });
        let mut supervisors = Vec::new();
        for (index, spec) in specs.into_iter().enumerate() {
            let consumer = shared
                .consume(index, &spec.name)
                .await
                .with_context(|| format!("cannot consume from queue {}", spec.name))?;
            supervisors.push(tokio::spawn(supervise(
                shared.clone(),
                index,
                spec,
                consumer,
            )));
        }
        replier.connect(Some(connection.clone()), Some(reply_channel));
        Ok(Session {
            shared,
            supervisors,
            fanouts,
            lost,
        })
    }

    /// Stops re-subscribing this session's consumers (it is lost, or the host is stopping).
    fn abandon(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for supervisor in &self.supervisors {
            supervisor.abort();
        }
    }

    /// Cancels every consumer of this session: nothing new arrives (a graceful stop).
    async fn stop_consuming(&self) {
        self.abandon();
        let consumers: Vec<(Channel, String)> = self
            .shared
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .flatten()
            .cloned()
            .collect();
        for (channel, tag) in consumers {
            let cancel = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default());
            match tokio::time::timeout(Duration::from_secs(2), cancel).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("cannot cancel consumer {tag}: {e}"),
                Err(_) => tracing::debug!("cannot cancel consumer {tag}: no answer"),
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl SessionShared {
    /// Opens a channel for queue `index`, sets its prefetch and consumes `queue` on it.
    async fn consume(&self, index: usize, queue: &str) -> anyhow::Result<lapin::Consumer> {
        let channel = self
            .connection
            .create_channel()
            .await
            .context("cannot open a channel")?;
        if self.prefetch > 0 {
            channel
                .basic_qos(self.prefetch, BasicQosOptions::default())
                .await
                .context("cannot set the prefetch count")?;
        }
        let tag = format!("fjord-{}", uuid::Uuid::new_v4().simple());
        let consumer = channel
            .basic_consume(
                short_string("queue", queue)?,
                short_string("consumer tag", &tag)?,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let previous = self
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(index)
            .and_then(|slot| slot.replace((channel, tag)));
        // The lost consumer's channel may live on (a consumer whose task died is still
        // registered there): closing it hands its unacknowledged messages back to the queue.
        if let Some((old, _)) = previous {
            if old.status().connected() {
                let _ = old.close(200, "consumer replaced".into()).await;
            }
        }
        Ok(consumer)
    }

    /// Declares a lost queue again (it may have been deleted) and consumes it.
    async fn resubscribe(&self, index: usize, spec: &QueueSpec) -> anyhow::Result<lapin::Consumer> {
        let channel = self.connection.create_channel().await?;
        match &spec.kind {
            QueueKind::Topic { exchange } => {
                topology::declare_topic_queue(&channel, exchange, &spec.name, &self.options).await?
            }
            QueueKind::Fanout { topic } => {
                topology::declare_fanout_queue(&channel, topic, &spec.name, &self.options).await?
            }
        }
        let _ = channel.close(200, "declared".into()).await;
        self.consume(index, &spec.name).await
    }
}

/// Serves one queue, and whenever its consumer ends, subscribes it again; reports the session
/// lost when the connection is gone or re-subscribing fails.
async fn supervise(
    shared: Arc<SessionShared>,
    index: usize,
    spec: QueueSpec,
    mut consumer: lapin::Consumer,
) {
    loop {
        let task = tokio::spawn(spec.listener.clone().consume(spec.name.clone(), consumer));
        let why = match task.await {
            Ok(why) => why,
            Err(e) if e.is_panic() => format!("its task panicked: {}", panic_text(&e.into_panic())),
            Err(e) => format!("its task ended: {e}"),
        };
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let queue = &spec.name;
        if !shared.connection.status().connected() {
            let _ = shared
                .lost
                .send(format!("consumer of queue {queue} stopped: {why}"));
            return;
        }
        let mut tries = 0;
        consumer = loop {
            match shared.resubscribe(index, &spec).await {
                Ok(c) => break c,
                Err(e) => {
                    tries += 1;
                    if tries >= RESUBSCRIBE_TRIES || !shared.connection.status().connected() {
                        let _ = shared.lost.send(format!(
                            "consumer of queue {queue} stopped ({why}) and cannot be re-subscribed: {e:#}"
                        ));
                        return;
                    }
                    tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
                }
            }
        };
        tracing::warn!("consumer of queue {queue} stopped ({why}); re-subscribed");
    }
}

/// Connects, subscribes every server and serves until `shutdown` resolves, re-subscribing a lost
/// consumer, and reconnecting whenever the connection is lost.
pub async fn serve(
    config: &Config,
    servers: Vec<RpcServer>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let calls = usize::try_from(config.in_flight).unwrap_or(usize::MAX);
    let in_flight = Arc::new(Semaphore::new(calls));
    let replier = Replier::start(calls, config.reply_retry);
    if config.prefetch == 0 {
        tracing::warn!(
            "rabbit_qos_prefetch_count=0: no prefetch limit; messages waiting for one of the \
             {calls} in-flight slots are buffered in the host without bound"
        );
    }
    let subscriptions: Vec<Subscription> = servers
        .into_iter()
        .map(|server| Subscription {
            listener: Arc::new(Listener {
                dispatcher: server.dispatcher.clone(),
                replier: replier.clone(),
                in_flight: in_flight.clone(),
                duplicates: Duplicates::default(),
            }),
            fanout: topology::new_fanout_queue_name(&server.topic),
            server,
        })
        .collect();

    // At start-up an unreachable broker is a configuration error: fail loudly.
    let mut session = Session::open(config, &subscriptions, &replier, false).await?;
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
        replier.connect(None, None);
        session.abandon();
        close(&session.shared.connection).await;
        session = loop {
            let pause = backoff.next_delay();
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!("shutting down while disconnected");
                    return Ok(());
                }
                () = tokio::time::sleep(pause) => {}
            }
            match Session::open(config, &subscriptions, &replier, true).await {
                Ok(s) => break s,
                Err(e) => tracing::debug!("reconnection failed: {e:#}"),
            }
        };
        backoff.reset();
        outage.end("fjord-host");
    }

    let running = calls.saturating_sub(in_flight.available_permits());
    tracing::info!("shutting down: no new calls, finishing {running} in flight");
    // Stop taking messages first, so nothing new starts while the calls in flight finish.
    session.stop_consuming().await;
    let started = tokio::time::Instant::now();
    let all = u32::try_from(calls).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_LIMIT, in_flight.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "{} calls still running after {} s; stopping anyway",
            calls.saturating_sub(in_flight.available_permits()),
            DRAIN_LIMIT.as_secs()
        );
    }
    replier
        .drain(DRAIN_LIMIT.saturating_sub(started.elapsed()))
        .await;
    // The fanout queues are ours alone: delete them, as oslo does on an orderly stop.
    if let Ok(channel) = session.shared.connection.create_channel().await {
        for queue in &session.fanouts {
            if let Err(e) = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
            {
                tracing::warn!("cannot delete fanout queue {queue}: {e}");
            }
        }
    }
    close(&session.shared.connection).await;
    tracing::info!("stopped");
    Ok(())
}

async fn close(connection: &Connection) {
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

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Aborts a task when dropped, also while unwinding.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The consumers of one server (its topic, server and fanout queues) share this.
struct Listener {
    dispatcher: Arc<Dispatcher>,
    replier: Arc<Replier>,
    in_flight: Arc<Semaphore>,
    duplicates: Duplicates,
}

impl Listener {
    /// Serves one queue until its consumer ends, and says why it ended. Each message is handled
    /// in a task of its own: nothing that happens to one message can stop this loop.
    async fn consume(self: Arc<Self>, queue: Arc<str>, mut consumer: lapin::Consumer) -> String {
        while let Some(delivery) = consumer.next().await {
            let delivery = match delivery {
                Ok(delivery) => delivery,
                Err(e) => return e.to_string(),
            };
            // Back-pressure: wait for a slot before acking and taking on more work; meanwhile
            // the prefetch count holds further messages in the broker.
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                return "the host is stopping".to_string();
            };
            tokio::spawn(self.clone().handle(queue.clone(), delivery, permit));
        }
        "the broker cancelled it".to_string()
    }

    /// Decides what to do with one message and does it.
    async fn handle(
        self: Arc<Self>,
        queue: Arc<str>,
        delivery: lapin::message::Delivery,
        permit: OwnedSemaphorePermit,
    ) {
        let lapin::message::Delivery {
            properties,
            data,
            acker,
            ..
        } = delivery;
        let settlement = Settlement::new(acker, queue.clone());
        let decided = std::panic::catch_unwind(AssertUnwindSafe(|| {
            deliver(&properties, &data, &self.dispatcher, &self.duplicates)
        }));
        // The request tree holds what is needed from here on.
        drop(data);
        let verdict = decided.unwrap_or_else(|panic| Verdict::Reject {
            reason: format!("the host panicked reading it: {}", panic_text(&*panic)),
        });
        match verdict {
            Verdict::Reject { reason } => {
                tracing::warn!("rejecting an unreadable message from {queue}: {reason}");
                settlement.reject().await;
            }
            Verdict::Drop { reason, loudness } => {
                settlement.ack().await;
                log(loudness, &queue, &reason);
            }
            Verdict::Answer {
                to,
                failure,
                reason,
                loudness,
            } => {
                settlement.ack().await;
                log(loudness, &queue, &reason);
                let reply = Reply::failed(to.msg_id.clone(), *failure);
                if let Some(slot) = self.replier.slot().await {
                    drop(permit);
                    self.replier.send(slot, &to, &reply).await;
                }
            }
            Verdict::Run(call) => {
                let mut call = *call;
                let method = &call.request.method;
                if let Some(note) = &call.note {
                    tracing::warn!(method = %method, "a call on {queue}: {note}");
                }
                // oslo's call monitor: tell a caller that asked for it (`_timeout`) that the
                // call is still alive.
                let _heartbeat = match (&call.to, call.heartbeat) {
                    (Some(to), Some(every)) => {
                        let (replier, to) = (self.replier.clone(), to.clone());
                        Some(AbortOnDrop(tokio::spawn(async move {
                            let mut tick = tokio::time::interval(every);
                            tick.tick().await;
                            loop {
                                tick.tick().await;
                                replier.heartbeat(&to).await;
                            }
                        })))
                    }
                    _ => None,
                };
                // The ack runs alongside the call instead of before it (waiting for lapin to
                // write it out costs a thread hand-off per message); the reply still goes out
                // only once it is acked.
                let run = AssertUnwindSafe(self.dispatcher.run(&call.resolved, &call.request))
                    .catch_unwind();
                let ((), outcome) = tokio::join!(settlement.ack(), run);
                drop(_heartbeat);
                let outcome = match outcome {
                    Ok(outcome) => outcome,
                    Err(panic) => {
                        let text = panic_text(&*panic);
                        tracing::error!(method = %method, "the host panicked running a call: {text}");
                        Err(Failure::new(
                            INTERNAL_CLASS,
                            FJORD_MODULE,
                            format!("the host failed while running {method}: {text}"),
                        ))
                    }
                };
                if let Err(failure) = &outcome {
                    let request_id = call.request.context.get("request_id");
                    tracing::info!(
                        method = %method,
                        request_id = request_id.and_then(|v| v.as_str()).unwrap_or("-"),
                        "{}: {}", failure.class, failure.message
                    );
                }
                if let Some(to) = call.to.take() {
                    let reply = match outcome {
                        Ok(result) => Reply::ok_text(to.msg_id.clone(), result),
                        Err(failure) => Reply::failed(to.msg_id.clone(), failure),
                    };
                    // The request tree is not kept while the reply waits for its confirm.
                    drop(call);
                    // The call's permit is traded for a publishing slot: the call is done.
                    if let Some(slot) = self.replier.slot().await {
                        drop(permit);
                        self.replier.send(slot, &to, &reply).await;
                    }
                }
            }
        }
    }
}

fn log(loudness: Loudness, queue: &str, reason: &str) {
    match loudness {
        Loudness::Warn => tracing::warn!("bad request on {queue}: {reason}"),
        Loudness::Info => tracing::info!("{reason} (on {queue})"),
    }
}
