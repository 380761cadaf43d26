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
use crate::outgoing::InFlight;
use crate::replies::{open_reply_channel, Replier};
use crate::sandbox::Sandbox;
use crate::settlement::Settlement;
use crate::{health, metrics};
use anyhow::Context as _;
use arc_swap::ArcSwap;
use fjord_oslo::connection::{connect_with, reconnect};
use fjord_oslo::envelope::Reply;
use fjord_oslo::failover::Failover;
use fjord_oslo::failure::Failure;
use fjord_oslo::reconnect::{Backoff, Outage};
use fjord_oslo::topology::{self, short_string};
use fjord_oslo::url::TransportOptions;
use futures_lite::{FutureExt as _, StreamExt};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// The failure a caller gets when the host itself failed (a panic) while running its call.
pub const INTERNAL_CLASS: &str = "InternalError";

/// One configured RPC server, loaded and ready to subscribe.
pub struct RpcServer {
    pub topic: String,
    pub server: String,
    pub exchange: String,
    pub dispatcher: Arc<Dispatcher>,
}

impl RpcServer {
    /// What identifies a server across reloads: its exchange, topic and server name.
    pub fn key(&self) -> (&str, &str, &str) {
        (&self.exchange, &self.topic, &self.server)
    }

    /// `topic.server`, as in logs and metrics.
    pub fn name(&self) -> String {
        format!("{}.{}", self.topic, self.server)
    }
}

/// Everything loaded from the config, before touching the network: a component that cannot be
/// served stops the host here.
/// `keyvalue` is the store opened by [`crate::keyvalue::Keyvalue::open`] for the granted buckets.
pub fn load(
    config: &Config,
    keyvalue: Option<Arc<crate::keyvalue::Keyvalue>>,
) -> anyhow::Result<Vec<RpcServer>> {
    let sandbox = Arc::new(Sandbox::for_calls(config.in_flight)?.with_keyvalue(keyvalue));
    load_with(&sandbox, config)
}

/// [`load`] with a sandbox that already exists (a reload compiles into the running engine).
pub fn load_with(sandbox: &Arc<Sandbox>, config: &Config) -> anyhow::Result<Vec<RpcServer>> {
    let mut servers = Vec::new();
    for server in &config.servers {
        let mut endpoints = Vec::new();
        for e in &server.endpoints {
            let capabilities = Arc::new(e.capabilities.clone());
            let loaded = endpoint::load(sandbox, &e.path, e.namespace.as_deref(), e.limits)?;
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
            dispatcher: Arc::new({
                let dispatcher = Dispatcher::new(sandbox.clone(), endpoints);
                if server.control {
                    dispatcher.with_control(format!("{}.{}", server.topic, server.server))
                } else {
                    dispatcher
                }
            }),
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
/// How long deleting a lost connection's fanout queues may take before it is given up.
const DELETE_LIMIT: Duration = Duration::from_secs(5);
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

/// One server's listener, kept across reconnections.
struct Subscription {
    server: RpcServer,
    listener: Arc<Listener>,
}

impl Subscription {
    fn new(server: RpcServer, replier: &Arc<Replier>, in_flight: &Arc<InFlight>) -> Self {
        Subscription {
            listener: Arc::new(Listener {
                name: server.name(),
                dispatcher: ArcSwap::new(server.dispatcher.clone()),
                replier: replier.clone(),
                in_flight: in_flight.clone(),
                duplicates: Duplicates::default(),
            }),
            server,
        }
    }
}

/// The queues of one server in a session, and their supervisors.
struct Served {
    key: (String, String, String),
    /// Index into [`SessionShared::consumers`] and name of each queue.
    queues: Vec<(usize, Arc<str>)>,
    supervisors: Vec<JoinHandle<()>>,
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
    /// Per server, its queues (the fanout queues are deleted on a graceful stop).
    served: Vec<Served>,
    lost: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Session {
    async fn open(
        config: &Config,
        failover: &Failover,
        subscriptions: &[Subscription],
        replier: &Replier,
        quiet: bool,
    ) -> anyhow::Result<Session> {
        let connection = if quiet {
            reconnect(&config.transport_url, failover, &connection_name()).await?
        } else {
            connect_with(&config.transport_url, failover, &connection_name()).await?
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
        let shared = Arc::new(SessionShared {
            connection: connection.clone(),
            options: config.transport_url.options.clone(),
            prefetch: config.prefetch,
            stopping: AtomicBool::new(false),
            consumers: Mutex::new(Vec::new()),
            lost: lost_tx,
        });
        let mut session = Session {
            shared,
            served: Vec::new(),
            lost,
        };
        for sub in subscriptions {
            session.add(sub, quiet).await?;
        }
        replier.connect(Some(connection.clone()), Some(reply_channel));
        health::get().connected();
        Ok(session)
    }

    /// Declares and consumes one server's queues in this session.
    async fn add(&mut self, sub: &Subscription, quiet: bool) -> anyhow::Result<()> {
        let shared = &self.shared;
        let server = &sub.server;
        // A new fanout queue for each connection, as the client takes a new reply queue: the
        // last one may still be homed on a node that is frozen or gone (the old one is deleted).
        let fanout = topology::new_fanout_queue_name(&server.topic);
        let declaring = shared
            .connection
            .create_channel()
            .await
            .context("cannot open a channel")?;
        let queues = topology::declare_server_queues_named(
            &declaring,
            &server.exchange,
            &server.topic,
            &server.server,
            &fanout,
            &shared.options,
        )
        .await
        .with_context(|| {
            format!(
                "cannot declare exchange {} and the queues of {}.{}",
                server.exchange, server.topic, server.server
            )
        })?;
        let _ = declaring.close(200, "declared".into()).await;
        let topic = QueueKind::Topic {
            exchange: server.exchange.clone(),
        };
        let mut served = Served {
            key: (
                server.exchange.clone(),
                server.topic.clone(),
                server.server.clone(),
            ),
            queues: Vec::new(),
            supervisors: Vec::new(),
            fanout: queues.fanout.clone(),
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
            let spec = QueueSpec {
                name: Arc::from(name.as_str()),
                kind,
                listener: sub.listener.clone(),
            };
            let index = {
                let mut consumers = shared
                    .consumers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                consumers.push(None);
                consumers.len().saturating_sub(1)
            };
            let consumer = shared
                .consume(index, &spec.name)
                .await
                .with_context(|| format!("cannot consume from queue {}", spec.name))?;
            health::get().consumer_up(&spec.name);
            served.queues.push((index, spec.name.clone()));
            served.supervisors.push(tokio::spawn(supervise(
                shared.clone(),
                index,
                spec,
                consumer,
            )));
        }
        if !quiet {
            tracing::info!(
                topic = %server.topic, server = %server.server, exchange = %server.exchange,
                "consuming {}, {}, {}", queues.topic, queues.server, queues.fanout
            );
        }
        self.served.push(served);
        Ok(())
    }

    /// Stops consuming one server's queues (it was removed from the config); its calls in
    /// flight finish and are answered. Its fanout queue is deleted, as on a graceful stop.
    async fn remove(&mut self, key: &(String, String, String)) {
        let Some(at) = self.served.iter().position(|s| &s.key == key) else {
            return;
        };
        let served = self.served.remove(at);
        for supervisor in &served.supervisors {
            supervisor.abort();
        }
        let mut channels = Vec::new();
        for (index, queue) in &served.queues {
            health::get().forget(queue);
            let slot = self
                .shared
                .consumers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(*index)
                .and_then(Option::take);
            if let Some((channel, tag)) = slot {
                cancel(&channel, &tag).await;
                channels.push(channel);
            }
        }
        delete_queues_or_warn(&self.shared.connection, &[served.fanout]).await;
        // Messages taken before the cancel are still acked on these channels: close them only
        // once such calls are surely settled.
        tokio::spawn(async move {
            tokio::time::sleep(DRAIN_LIMIT).await;
            for channel in channels {
                if channel.status().connected() {
                    let _ = channel.close(200, "server removed".into()).await;
                }
            }
        });
    }

    /// The fanout queue of each server.
    fn fanout_queues(&self) -> Vec<String> {
        self.served.iter().map(|s| s.fanout.clone()).collect()
    }

    /// Stops re-subscribing this session's consumers (it is lost, or the host is stopping).
    fn abandon(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for supervisor in self.served.iter().flat_map(|s| &s.supervisors) {
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
            cancel(&channel, &tag).await;
        }
    }
}

/// Deletes `queues` (the host's own fanout queues); returns why each that could not be deleted
/// was not.
async fn delete_queues(connection: &Connection, queues: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    for queue in queues {
        if let Err(e) = topology::delete_queue(connection, queue).await {
            failures.push(format!("cannot delete fanout queue {queue}: {e}"));
        }
    }
    failures
}

/// [`delete_queues`], warning about each failure (the queues of a session still served).
async fn delete_queues_or_warn(connection: &Connection, queues: &[String]) {
    for failure in delete_queues(connection, queues).await {
        tracing::warn!("{failure}");
    }
}

/// Cancels one consumer: the broker sends it nothing more.
async fn cancel(channel: &Channel, tag: &str) {
    let cancel = channel.basic_cancel(tag.into(), BasicCancelOptions::default());
    match tokio::time::timeout(Duration::from_secs(2), cancel).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("cannot cancel consumer {tag}: {e}"),
        Err(_) => tracing::debug!("cannot cancel consumer {tag}: no answer"),
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
        health::get().consumer_down(queue, &why);
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
        health::get().consumer_up(queue);
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
    let (_keep, reloads) = tokio::sync::mpsc::unbounded_channel();
    serve_with(config, servers, shutdown, reloads).await
}

/// A new set of servers to serve, loaded off the serving path (see [`crate::reload`]).
pub struct Reloaded {
    pub servers: Vec<RpcServer>,
}

/// [`serve`], and whenever `reloads` brings a new set of servers: a server already served gets
/// the new endpoints (calls running finish on the old ones), a new server is subscribed, a server
/// no longer configured is unsubscribed.
pub async fn serve_with(
    config: &Config,
    servers: Vec<RpcServer>,
    shutdown: impl Future<Output = ()>,
    mut reloads: tokio::sync::mpsc::UnboundedReceiver<Reloaded>,
) -> anyhow::Result<()> {
    let calls = usize::try_from(config.in_flight).unwrap_or(usize::MAX);
    let in_flight = Arc::new(InFlight::new(calls));
    let replier = Replier::start(calls, config.reply_retry);
    if config.prefetch == 0 {
        tracing::warn!(
            "rabbit_qos_prefetch_count=0: no prefetch limit; messages waiting for one of the \
             {calls} in-flight slots are buffered in the host without bound"
        );
    }
    let mut subscriptions: Vec<Subscription> = servers
        .into_iter()
        .map(|server| Subscription::new(server, &replier, &in_flight))
        .collect();

    // At start-up an unreachable broker is a configuration error: fail loudly.
    // One failover state for the host's life, so that each reconnection moves on to the next
    // broker of the URL (kombu_failover_strategy).
    let failover = config.transport_url.failover();
    let mut session = Session::open(config, &failover, &subscriptions, &replier, false).await?;
    tracing::info!(url = %config.transport_url, "fjord-host ready");

    tokio::pin!(shutdown);
    let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
    let mut outage = Outage::default();
    loop {
        let why = tokio::select! {
            () = &mut shutdown => break,
            Some(reloaded) = reloads.recv() => {
                apply(reloaded, &mut subscriptions, &mut session, &replier, &in_flight).await;
                continue;
            }
            why = session.lost.recv() => why.unwrap_or_else(|| "all consumers stopped".into()),
        };
        health::get().disconnected(&why);
        outage.begin(&why, "fjord-host");
        replier.connect(None, None);
        session.abandon();
        close(&session.shared.connection).await;
        let lost_fanouts = session.fanout_queues();
        // With several brokers in the URL the first attempt goes at once to the next one (as
        // kombu's failover does): it is another node, so no broker is hammered.
        let mut first = config.transport_url.hosts.len() > 1;
        session = loop {
            let pause = if std::mem::take(&mut first) {
                Duration::ZERO
            } else {
                backoff.next_delay()
            };
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!("shutting down while disconnected");
                    return Ok(());
                }
                () = tokio::time::sleep(pause) => {}
            }
            match Session::open(config, &failover, &subscriptions, &replier, true).await {
                Ok(s) => break s,
                Err(e) => tracing::debug!("reconnection failed: {e:#}"),
            }
        };
        backoff.reset();
        // The lost connection's fanout queues are not consumed any more; left, each would
        // collect fanout casts until it expires. Not awaited: its node may be unreachable.
        // Failures are debug lines: usually the queues went with their node.
        let connection = session.shared.connection.clone();
        tokio::spawn(async move {
            let deleting = delete_queues(&connection, &lost_fanouts);
            match tokio::time::timeout(DELETE_LIMIT, deleting).await {
                Ok(failures) => failures.iter().for_each(|f| tracing::debug!("{f}")),
                Err(_) => {
                    tracing::debug!("deleting the lost connection's fanout queues takes too long")
                }
            }
        });
        metrics::get().reconnects.inc();
        outage.end("fjord-host");
    }

    let running = calls.saturating_sub(in_flight.running.available_permits());
    tracing::info!("shutting down: no new calls, finishing {running} in flight");
    // Stop taking messages first, so nothing new starts while the calls in flight finish.
    session.stop_consuming().await;
    let started = tokio::time::Instant::now();
    let all = u32::try_from(calls).unwrap_or(u32::MAX);
    // Calls waiting on outgoing calls hold an entry but no running permit: wait for both.
    let drained = async {
        let entries = in_flight.entries.acquire_many(all).await;
        let running = in_flight.running.acquire_many(all).await;
        (entries, running)
    };
    if tokio::time::timeout(DRAIN_LIMIT, drained).await.is_err() {
        tracing::warn!(
            "{} calls still running after {} s; stopping anyway",
            calls.saturating_sub(in_flight.running.available_permits()),
            DRAIN_LIMIT.as_secs()
        );
    }
    replier
        .drain(DRAIN_LIMIT.saturating_sub(started.elapsed()))
        .await;
    // The fanout queues are ours alone: delete them, as oslo does on an orderly stop.
    delete_queues_or_warn(&session.shared.connection, &session.fanout_queues()).await;
    close(&session.shared.connection).await;
    tracing::info!("stopped");
    Ok(())
}

/// Serves a reloaded set of servers in the running session.
async fn apply(
    reloaded: Reloaded,
    subscriptions: &mut Vec<Subscription>,
    session: &mut Session,
    replier: &Arc<Replier>,
    in_flight: &Arc<InFlight>,
) {
    let owned = |k: (&str, &str, &str)| (k.0.to_string(), k.1.to_string(), k.2.to_string());
    let wanted: Vec<_> = reloaded.servers.iter().map(|s| owned(s.key())).collect();
    let (mut kept, mut added, mut removed) = (0, 0, 0);
    for server in reloaded.servers {
        if let Some(sub) = subscriptions
            .iter_mut()
            .find(|s| s.server.key() == server.key())
        {
            // From here new messages resolve against the new endpoints; a call already
            // running holds the old dispatcher until it ends.
            sub.listener.dispatcher.store(server.dispatcher.clone());
            sub.server.dispatcher = server.dispatcher;
            kept += 1;
            continue;
        }
        let sub = Subscription::new(server, replier, in_flight);
        if let Err(e) = session.add(&sub, false).await {
            // Served from the next session on: rebuild it now.
            let _ = session.shared.lost.send(format!(
                "cannot subscribe the new server {}: {e:#}",
                sub.server.name()
            ));
        }
        subscriptions.push(sub);
        added += 1;
    }
    let mut gone = Vec::new();
    subscriptions.retain(|s| {
        let keep = wanted.contains(&owned(s.server.key()));
        if !keep {
            gone.push(owned(s.server.key()));
        }
        keep
    });
    for key in &gone {
        session.remove(key).await;
        tracing::info!("no longer serving {}.{}", key.1, key.2);
        removed += 1;
    }
    tracing::info!("reloaded: {kept} servers updated, {added} added, {removed} removed");
}

/// The name RabbitMQ shows for the host's connection: `fjord-host:<pid>`, so that an operator
/// (or a test) can tell two hosts apart, as oslo's `<program>:<pid>:<uuid>` does.
fn connection_name() -> String {
    format!("fjord-host:{}", std::process::id())
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
    /// `topic.server`, for metrics.
    name: String,
    /// Swapped by a reload; each message takes the one current when it arrives.
    dispatcher: ArcSwap<Dispatcher>,
    replier: Arc<Replier>,
    in_flight: Arc<InFlight>,
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
            let Ok(permit) = self.in_flight.running.clone().acquire_owned().await else {
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
        // The endpoints current when the message arrives serve it to the end, whatever a
        // reload swaps in meanwhile.
        let dispatcher = self.dispatcher.load_full();
        let decided = std::panic::catch_unwind(AssertUnwindSafe(|| {
            deliver(&properties, &data, &dispatcher, &self.duplicates)
        }));
        // The request tree holds what is needed from here on.
        drop(data);
        let verdict = decided.unwrap_or_else(|panic| Verdict::Reject {
            reason: format!("the host panicked reading it: {}", panic_text(&*panic)),
        });
        match verdict {
            Verdict::Reject { reason } => {
                metrics::get().rejected(&self.name, "unanswerable");
                tracing::warn!("rejecting an unreadable message from {queue}: {reason}");
                settlement.reject().await;
            }
            Verdict::Drop { reason, loudness } => {
                metrics::get().rejected(&self.name, "dropped");
                settlement.ack().await;
                log(loudness, &queue, &reason);
            }
            Verdict::Answer {
                to,
                failure,
                reason,
                loudness,
            } => {
                metrics::get().rejected(&self.name, &failure.class);
                settlement.ack().await;
                log(loudness, &queue, &reason);
                let reply = Reply::failed(to.msg_id.clone(), *failure);
                if let Some(slot) = self.replier.slot().await {
                    drop(permit);
                    self.replier.send(slot, &to, &reply).await;
                }
            }
            Verdict::Run(call) => {
                let context = &call.request.context;
                let id = |key: &str| {
                    context
                        .get(key)
                        .and_then(|v| v.as_str())
                        .unwrap_or("-")
                        .to_string()
                };
                // Every log line of the call, the guest's included, carries these.
                let span = tracing::info_span!(
                    "call",
                    request_id = %id("request_id"),
                    global_request_id = %id("global_request_id"),
                    server = %self.name,
                );
                self.run(&dispatcher, queue, *call, settlement, permit)
                    .instrument(span)
                    .await;
            }
        }
    }

    /// Runs one call and answers it.
    async fn run(
        &self,
        dispatcher: &Dispatcher,
        queue: Arc<str>,
        call: crate::delivery::Call,
        settlement: Settlement,
        permit: OwnedSemaphorePermit,
    ) {
        let method = &call.request.method;
        if let Some(note) = &call.note {
            tracing::warn!(method = %method, "a call on {queue}: {note}");
        }
        let counted = metrics::InFlight::start();
        let started = std::time::Instant::now();
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
        let slot = Arc::new(self.in_flight.slot(permit));
        // Before the ack: a request waiting for its entry stays in the broker's prefetch count.
        let entry = self.in_flight.enter(&slot, &call.request.context).await;
        let run =
            AssertUnwindSafe(dispatcher.run(&call.resolved, &call.request, Some(slot.clone())))
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
        metrics::get().call_done(
            &self.name,
            dispatcher.interface(&call.resolved).unwrap_or("-"),
            method,
            &metrics::outcome_class(outcome.as_ref().map(|_| ())),
            started.elapsed(),
        );
        drop(counted);
        if let Err(failure) = &outcome {
            tracing::info!(method = %method, "{}: {}", failure.class, failure.message);
        }
        let mut call = call;
        if let Some(to) = call.to.take() {
            let reply = match outcome {
                Ok(result) => Reply::ok_text(to.msg_id.clone(), result),
                Err(failure) => Reply::failed(to.msg_id.clone(), failure),
            };
            // The request tree is not kept while the reply waits for its confirm.
            drop(call);
            // The call's permit is traded for a publishing slot: the call is done.
            if let Some(reply_slot) = self.replier.slot().await {
                drop(slot.take());
                drop(entry);
                self.replier.send(reply_slot, &to, &reply).await;
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
