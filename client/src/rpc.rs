//! oslo-style RPC over a [`Transport`]: `call`, `cast`, fanout casts and `prepare`.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_lite::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::flight::Flight;
use crate::waiters::{ConsumerId, Registration, Waiters};

use fjord_oslo::connection::{connect_with, reconnect, ConnectError};
use fjord_oslo::envelope::{new_id, Reply, Request};
use fjord_oslo::failover::Failover;
use fjord_oslo::failure::RemoteError;
use fjord_oslo::reconnect::{Backoff, Outage};
use fjord_oslo::target::Target;
use fjord_oslo::topology::{
    declare_fanout_exchange_with, declare_reply_queue, declare_topic_exchange, delete_queue,
    fanout_exchange_name, publish, PublishError, DEFAULT_CONTROL_EXCHANGE,
};
use fjord_oslo::url::{TransportOptions, TransportUrl};

/// oslo's default `rpc_response_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// No reply arrived in time (oslo's `MessagingTimeout`).
///
/// ```
/// let t = fjord_client::MessagingTimeout { msg_id: "abc".into() };
/// assert_eq!(t.to_string(), "Timed out waiting for a reply to message ID abc");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Timed out waiting for a reply to message ID {msg_id}")]
pub struct MessagingTimeout {
    /// The `_msg_id` of the call.
    pub msg_id: String,
}

/// Why an RPC failed; match on it to tell remote failures from timeouts and transport trouble.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The target cannot be used this way (e.g. `call` with `fanout`).
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    /// Arguments are not a JSON object.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// No reply within the timeout.
    #[error(transparent)]
    Timeout(#[from] MessagingTimeout),
    /// The remote method raised.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The result could not be turned into the requested type.
    #[error("cannot decode the result: {0}")]
    BadResult(serde_json::Error),
    /// Publishing the request failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// An AMQP operation failed.
    #[error("AMQP error: {0}")]
    Amqp(#[from] lapin::Error),
    /// The reply consumer stopped (connection lost or reply queue deleted) while the call waited.
    #[error("the reply queue consumer stopped; the connection to RabbitMQ is probably lost")]
    ReplyConsumerGone,
    /// RabbitMQ is unreachable (or blocks publishing): nothing was sent.
    #[error("not connected to RabbitMQ: {0}")]
    Disconnected(String),
    /// The timeout (or call-monitor timeout) is longer than [`MAX_TIMEOUT`]: nothing was sent.
    #[error("invalid timeout: {0}")]
    InvalidTimeout(String),
    /// A cast could not be sent within the client's timeout (it may or may not have been
    /// delivered).
    #[error("the cast was not sent within its timeout of {0:?}")]
    CastTimeout(Duration),
}

/// Backoff between reconnection attempts: a call during an outage fails at once instead of
/// every caller hammering a broker that is down.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// Pause before publishing again a call no server queue took.
const UNROUTABLE_RETRY: Duration = Duration::from_millis(100);
/// How long closing a lost connection may take before it is abandoned.
const CLOSE_LIMIT: Duration = Duration::from_secs(1);
/// The longest timeout a call, cast or call monitor may have: RabbitMQ refuses a message TTL
/// over ten years (`PRECONDITION_FAILED - invalid expiration`, closing the channel every call of
/// the transport publishes on), so a longer one is bad input, refused before anything is sent.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Whether a session's reply consumer runs.
#[derive(Clone)]
enum Replies {
    Stopped,
    /// Being started by a task of its own; callers wait for it.
    Starting(Flight<ConsumerId>),
    Running(ConsumerId),
}

/// One AMQP connection and what lives on it; replaced as a whole when the connection is lost.
struct Session {
    connection: Connection,
    /// Publishing channel, in confirm mode; replaced when the broker nacks on it (see
    /// [`Session::publish`]).
    publisher: Mutex<Channel>,
    /// The reply consumer on this connection (started by the first call).
    replies: Arc<Mutex<Replies>>,
    /// Topic exchanges already declared on this connection; like kombu's `maybe_declare`, oslo
    /// declares an exchange once per connection, not once per message.
    declared: Mutex<HashSet<String>>,
    /// The reply queue of this connection (`reply_<uuid4 hex>`), declared by its first call.
    reply_queue: String,
}

/// A channel in confirm mode.
async fn open_publisher(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

impl Session {
    async fn open(connection: Connection, reply_queue: String) -> Result<Session, lapin::Error> {
        let channel = open_publisher(&connection).await?;
        Ok(Session {
            connection,
            publisher: Mutex::new(channel),
            replies: Arc::new(Mutex::new(Replies::Stopped)),
            declared: Mutex::new(HashSet::new()),
            reply_queue,
        })
    }

    /// Declares a topic exchange unless this connection already did. An auto-delete exchange can
    /// vanish between messages, so it is declared every time.
    async fn declare_exchange_once(
        &self,
        exchange: &str,
        options: &TransportOptions,
    ) -> Result<(), lapin::Error> {
        if locked(&self.declared).contains(exchange) {
            return Ok(());
        }
        declare_topic_exchange(&self.publisher(), exchange, options).await?;
        if !options.amqp_auto_delete {
            locked(&self.declared).insert(exchange.to_string());
        }
        Ok(())
    }

    fn publisher(&self) -> Channel {
        locked(&self.publisher).clone()
    }

    fn usable(&self) -> bool {
        self.connection.status().connected() && self.publisher().status().connected()
    }

    /// Publishes on the publishing channel and waits for the confirm. A nack fails this message
    /// and replaces the channel: after a quorum queue's leader is lost, RabbitMQ (3.10) can nack
    /// every later publish on a channel that published to it while the leader was away, while a
    /// new channel reaches the new leader (found by the cluster failover test: without this, a
    /// client whose node died failed every call for the rest of the run).
    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        expiration: Option<u64>,
        mandatory: bool,
    ) -> Result<(), PublishError> {
        let channel = self.publisher();
        let sent = publish(&channel, exchange, routing_key, body, expiration, mandatory).await;
        if matches!(sent, Err(PublishError::Nacked)) {
            if let Err(e) = self.renew_publisher(&channel).await {
                tracing::debug!(error = %e, "cannot open a new publishing channel");
            }
        }
        sent
    }

    /// Replaces `nacked` with a new publishing channel, unless another caller already did.
    async fn renew_publisher(&self, nacked: &Channel) -> Result<(), lapin::Error> {
        if locked(&self.publisher).id() != nacked.id() {
            return Ok(());
        }
        let fresh = open_publisher(&self.connection).await?;
        let retired = {
            let mut current = locked(&self.publisher);
            if current.id() == nacked.id() {
                tracing::debug!("publishing channel nacked; using a new one");
                std::mem::replace(&mut *current, fresh)
            } else {
                fresh
            }
        };
        // Calls still waiting for confirms on it get them or fail; not awaited here.
        tokio::spawn(async move {
            let closing = retired.close(200, ShortString::from("replaced after a nack"));
            let _ = tokio::time::timeout(CLOSE_LIMIT, closing).await;
        });
        Ok(())
    }

    /// Whether `consumer` is still this session's running reply consumer.
    fn consuming(&self, consumer: ConsumerId) -> bool {
        matches!(*locked(&self.replies), Replies::Running(c) if c == consumer)
    }
}

/// The connection state. Guarded by a plain mutex that is never held across network I/O:
/// reconnecting runs in a task of its own ([`Flight`]) while callers wait for its outcome, each
/// within its own deadline, and a call finding a usable session takes it at once.
struct Link {
    session: Option<Arc<Session>>,
    /// The reconnection in progress, if any.
    connecting: Option<Flight<Arc<Session>>>,
    backoff: Backoff,
    /// No reconnection attempt before this instant.
    next_attempt: Option<Instant>,
    last_error: String,
    outage: Outage,
}

struct Inner {
    /// `None` for a transport made from a connection: it cannot reconnect. The failover state
    /// lives as long as the transport, so each reconnection moves on to the URL's next broker.
    url: Option<(TransportUrl, Failover)>,
    link: Mutex<Link>,
    options: TransportOptions,
    control_exchange: String,
    /// The reply queue of the current session. A new connection gets a new one: the old
    /// queue may live on a node that is frozen or gone, where declaring it again can succeed
    /// and still never deliver (seen in the cluster failover test after a SIGSTOP).
    reply_queue: Mutex<String>,
    /// The connection name RabbitMQ shows (`fjord-client reply_<uuid4 hex>`), so an operator can
    /// tell which client a connection is.
    connection_name: String,
    waiters: Waiters,
    /// The id of the next reply consumer.
    next_consumer: AtomicU64,
}

/// A connection to RabbitMQ shared by [`RpcClient`]s: one publishing channel with publisher
/// confirms and one reply queue (`reply_<uuid4 hex>`) declared on the first call.
///
/// When the connection drops, the next call reconnects (hosts of the URL tried in turn, backoff
/// with jitter) in a task of its own, and re-declares the reply queue; calls made meanwhile wait
/// for it (within their timeouts, holding no lock), and calls made while RabbitMQ is unreachable
/// fail at once with [`RpcError::Disconnected`]. Calls waiting for replies on a connection that
/// is lost fail with [`RpcError::ReplyConsumerGone`]; calls already waiting on the new one are
/// not affected. RabbitMQ shows the connection as `fjord-client reply_<uuid4 hex>`.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let url = fjord_client::TransportUrl::parse("rabbit://guest:guest@127.0.0.1:5672/")?;
/// let transport = fjord_client::Transport::connect(&url).await?;
/// # let _ = transport; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("control_exchange", &self.inner.control_exchange)
            .field("reply_queue", &*locked(&self.inner.reply_queue))
            .finish()
    }
}

/// Error opening a transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No broker could be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The publishing channel could not be opened.
    #[error("cannot open an AMQP channel: {0}")]
    Amqp(#[from] lapin::Error),
}

impl Transport {
    /// Connects with the default control exchange (`openstack`).
    ///
    /// ```no_run
    /// # async fn f(url: fjord_client::TransportUrl) -> Result<(), fjord_client::rpc::TransportError> {
    /// let t = fjord_client::Transport::connect(&url).await?;
    /// # let _ = t; Ok(()) }
    /// ```
    pub async fn connect(url: &TransportUrl) -> Result<Transport, TransportError> {
        Transport::connect_with_exchange(url, DEFAULT_CONTROL_EXCHANGE).await
    }

    /// Connects with a given control exchange (oslo's `control_exchange` option).
    ///
    /// ```no_run
    /// # async fn f(url: fjord_client::TransportUrl) -> Result<(), fjord_client::rpc::TransportError> {
    /// let t = fjord_client::Transport::connect_with_exchange(&url, "nova").await?;
    /// # let _ = t; Ok(()) }
    /// ```
    pub async fn connect_with_exchange(
        url: &TransportUrl,
        control_exchange: &str,
    ) -> Result<Transport, TransportError> {
        let reply_queue = format!("reply_{}", new_id());
        let failover = url.failover();
        let connection = connect_with(url, &failover, &connection_name(&reply_queue)).await?;
        let session = Session::open(connection, reply_queue.clone()).await?;
        Ok(Transport::new(
            Some((url.clone(), failover)),
            session,
            url.options.clone(),
            control_exchange,
            reply_queue,
        ))
    }

    /// Wraps an open connection (opens the publishing channel in confirm mode). Such a
    /// transport cannot reconnect: once the connection is lost, calls fail.
    ///
    /// ```no_run
    /// # async fn f(conn: lapin::Connection) -> Result<(), lapin::Error> {
    /// let t = fjord_client::Transport::from_connection(conn, Default::default(), "openstack").await?;
    /// # let _ = t; Ok(()) }
    /// ```
    pub async fn from_connection(
        connection: Connection,
        options: TransportOptions,
        control_exchange: &str,
    ) -> Result<Transport, lapin::Error> {
        let reply_queue = format!("reply_{}", new_id());
        let session = Session::open(connection, reply_queue.clone()).await?;
        Ok(Transport::new(
            None,
            session,
            options,
            control_exchange,
            reply_queue,
        ))
    }

    fn new(
        url: Option<(TransportUrl, Failover)>,
        session: Session,
        options: TransportOptions,
        control_exchange: &str,
        reply_queue: String,
    ) -> Transport {
        Transport {
            inner: Arc::new(Inner {
                url,
                link: Mutex::new(Link {
                    session: Some(Arc::new(session)),
                    connecting: None,
                    backoff: Backoff::new(RECONNECT_FIRST, RECONNECT_MAX),
                    next_attempt: None,
                    last_error: String::new(),
                    outage: Outage::default(),
                }),
                options,
                control_exchange: control_exchange.to_string(),
                connection_name: connection_name(&reply_queue),
                reply_queue: Mutex::new(reply_queue),
                waiters: Waiters::default(),
                next_consumer: AtomicU64::new(1),
            }),
        }
    }

    /// The control exchange used when a target names none.
    ///
    /// ```no_run
    /// # fn f(t: fjord_client::Transport) { assert_eq!(t.control_exchange(), "openstack"); }
    /// ```
    pub fn control_exchange(&self) -> &str {
        &self.inner.control_exchange
    }

    /// The name of this transport's reply queue (declared on the first call). Each
    /// reconnection gets a new one; RabbitMQ still shows the connection under the first
    /// (`fjord-client reply_<uuid4 hex>`).
    ///
    /// ```no_run
    /// # fn f(t: fjord_client::Transport) { assert!(t.reply_queue_name().starts_with("reply_")); }
    /// ```
    pub fn reply_queue_name(&self) -> String {
        locked(&self.inner.reply_queue).clone()
    }

    /// Opens a new channel on the current connection (reconnecting if needed), for callers
    /// that speak AMQP directly.
    ///
    /// ```no_run
    /// # async fn f(t: fjord_client::Transport) -> Result<(), fjord_client::RpcError> {
    /// let channel = t.open_channel().await?;
    /// # let _ = channel; Ok(()) }
    /// ```
    pub async fn open_channel(&self) -> Result<Channel, RpcError> {
        let session = self.session().await?;
        Ok(session.connection.create_channel().await?)
    }

    /// Closes the connection (the reply queue then expires after `x-expires`).
    ///
    /// ```no_run
    /// # async fn f(t: fjord_client::Transport) { let _ = t.close().await; }
    /// ```
    pub async fn close(&self) -> Result<(), lapin::Error> {
        let session = locked(&self.inner.link).session.take();
        match session {
            Some(s) => {
                s.connection
                    .close(200, ShortString::from("fjord client closing"))
                    .await
            }
            None => Ok(()),
        }
    }

    /// The live session; when the connection is gone, the outcome of the reconnection (started
    /// here, or already running for another caller). No lock is held while waiting.
    async fn session(&self) -> Result<Arc<Session>, RpcError> {
        let inner = &self.inner;
        let flight = {
            let mut link = locked(&inner.link);
            match link.session.as_ref().filter(|s| s.usable()) {
                Some(session) => Ok(session.clone()),
                None => match link.connecting.as_ref().filter(|f| !f.ended()) {
                    Some(flight) => Err(flight.clone()),
                    None => {
                        let old = link.session.take();
                        if old.is_some() {
                            link.outage
                                .begin("the connection was closed", "fjord-client");
                        }
                        if inner.url.is_none() {
                            return Err(RpcError::Disconnected(
                                "the connection is closed and this transport cannot reconnect"
                                    .into(),
                            ));
                        }
                        if let Some(at) = link.next_attempt {
                            if Instant::now() < at {
                                return Err(RpcError::Disconnected(link.last_error.clone()));
                            }
                        }
                        let flight = Flight::spawn(reconnect_session(inner.clone(), old));
                        link.connecting = Some(flight.clone());
                        Err(flight)
                    }
                },
            }
        };
        let session = match flight {
            Ok(session) => session,
            Err(flight) => flight.outcome().await.map_err(RpcError::Disconnected)?,
        };
        if session.connection.status().blocked() {
            // A resource alarm: publishing would hang until it clears.
            return Err(RpcError::Disconnected(
                "RabbitMQ blocks publishing (resource alarm)".into(),
            ));
        }
        Ok(session)
    }

    /// The reply consumer of `session`, started (declaring the reply queue) if it does not run.
    async fn replies(&self, session: &Arc<Session>) -> Result<ConsumerId, RpcError> {
        let flight = {
            let mut replies = locked(&session.replies);
            match &*replies {
                Replies::Running(consumer) => return Ok(*consumer),
                Replies::Starting(flight) if !flight.ended() => flight.clone(),
                Replies::Starting(_) | Replies::Stopped => {
                    let flight = Flight::spawn(start_replies(self.inner.clone(), session.clone()));
                    *replies = Replies::Starting(flight.clone());
                    flight
                }
            }
        };
        flight.outcome().await.map_err(RpcError::Disconnected)
    }
}

/// The connection name RabbitMQ shows for a transport.
fn connection_name(reply_queue: &str) -> String {
    format!("fjord-client {reply_queue}")
}

/// Closes `old` (when it is still half open), opens a new connection and session, and records
/// the outcome in the link.
async fn reconnect_session(
    inner: Arc<Inner>,
    old: Option<Arc<Session>>,
) -> Result<Arc<Session>, String> {
    if let Some(old) = old {
        if old.connection.status().connected() {
            let closing = old.connection.close(200, ShortString::from("reconnecting"));
            let _ = tokio::time::timeout(CLOSE_LIMIT, closing).await;
        }
    }
    let Some((url, failover)) = &inner.url else {
        return Err("this transport cannot reconnect".to_string());
    };
    let reply_queue = format!("reply_{}", new_id());
    let opened = match reconnect(url, failover, &inner.connection_name).await {
        Ok(connection) => Session::open(connection, reply_queue.clone())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut link = locked(&inner.link);
    link.connecting = None;
    match opened {
        Ok(session) => {
            link.backoff.reset();
            link.next_attempt = None;
            link.outage.end("fjord-client");
            let session = Arc::new(session);
            link.session = Some(session.clone());
            let old = std::mem::replace(&mut *locked(&inner.reply_queue), reply_queue);
            tokio::spawn(delete_old_reply_queue(session.clone(), old));
            Ok(session)
        }
        Err(reason) => {
            link.outage.begin(&reason, "fjord-client");
            let pause = link.backoff.next_delay();
            link.next_attempt = Instant::now().checked_add(pause);
            link.last_error = reason.clone();
            Err(reason)
        }
    }
}

/// Deletes the reply queue of a lost connection, if it still exists and can be reached at
/// once (else it expires by `x-expires`); replies still on their way to it are answers to
/// calls that have already failed.
async fn delete_old_reply_queue(session: Arc<Session>, queue: String) {
    let delete = delete_queue(&session.connection, &queue);
    match tokio::time::timeout(CLOSE_LIMIT, delete).await {
        Ok(Ok(())) => tracing::debug!(%queue, "old reply queue deleted"),
        Ok(Err(e)) => tracing::debug!(%queue, error = %e, "cannot delete the old reply queue"),
        Err(_) => tracing::debug!(%queue, "deleting the old reply queue takes too long"),
    }
}

/// Declares the reply queue and starts its consumer on `session`.
async fn start_replies(inner: Arc<Inner>, session: Arc<Session>) -> Result<ConsumerId, String> {
    let started = async {
        let name = session.reply_queue.as_str();
        // A channel of its own, so a consumer problem never blocks publishing.
        let channel = session.connection.create_channel().await?;
        declare_reply_queue(&channel, name, &inner.options).await?;
        let consumer = channel
            .basic_consume(
                ShortString::from(name),
                ShortString::from(name),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok::<_, lapin::Error>((channel, consumer))
    };
    match started.await {
        Ok((channel, consumer)) => {
            let id = inner.next_consumer.fetch_add(1, Ordering::SeqCst);
            *locked(&session.replies) = Replies::Running(id);
            tokio::spawn(route_replies(
                consumer,
                channel,
                inner.waiters.clone(),
                session.replies.clone(),
                id,
            ));
            tracing::debug!(queue = %session.reply_queue, consumer = id, "reply queue ready");
            Ok(id)
        }
        Err(e) => {
            *locked(&session.replies) = Replies::Stopped;
            Err(format!("cannot start consuming the reply queue: {e}"))
        }
    }
}

/// Hands each reply to the call waiting for its `_msg_id`; when the consumer ends, fails the
/// calls waiting on it (and only those).
async fn route_replies(
    mut consumer: lapin::Consumer,
    _channel: Channel,
    waiters: Waiters,
    replies: Arc<Mutex<Replies>>,
    id: ConsumerId,
) {
    // Acks in flight are driven beside the consumer, not awaited one by one: each costs a
    // round trip through lapin's threads, and awaiting it before the next reply would put that
    // on every caller's latency. Every reply is still acked.
    let mut acks = FuturesUnordered::new();
    loop {
        let delivery = tokio::select! {
            delivery = consumer.next() => delivery,
            Some(acked) = acks.next(), if !acks.is_empty() => {
                if let Err(e) = acked {
                    tracing::warn!(error = %e, "cannot ack a reply");
                }
                continue;
            }
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "reply consumer failed");
                break;
            }
            None => break,
        };
        // The caller is told first; the ack goes out meanwhile.
        match Reply::decode(&delivery.data) {
            Ok(reply) => {
                let msg_id = reply.msg_id.clone();
                if !waiters.deliver(reply) {
                    tracing::debug!(%msg_id, "dropping a reply nobody waits for");
                }
            }
            Err(e) => tracing::warn!(error = %e, "dropping an unreadable reply"),
        }
        acks.push(async move { delivery.acker.ack(BasicAckOptions::default()).await });
    }
    // Marked stopped before its calls are failed: a call registering on it meanwhile sees that
    // (see `RpcClient::call`). The next call starts a new consumer (no permanently deaf caller).
    {
        let mut state = locked(&replies);
        if matches!(*state, Replies::Running(c) if c == id) {
            *state = Replies::Stopped;
        }
    }
    let failed = waiters.fail_consumer(id);
    tracing::debug!(
        consumer = id,
        "reply consumer ended; {failed} waiting calls failed"
    );
    // Only after the calls are failed (a dead connection must not delay that): the acks still in
    // flight, for at most a moment.
    let drained = async {
        while let Some(acked) = acks.next().await {
            if let Err(e) = acked {
                tracing::debug!(error = %e, "cannot ack a reply");
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LIMIT, drained).await;
}

/// Locks `mutex`, even if a panicking thread poisoned it: every state guarded here stays
/// consistent whatever step was interrupted.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Calls and casts to one [`Target`] (oslo's `RPCClient`).
///
/// ```no_run
/// # async fn f(transport: fjord_client::Transport) -> Result<(), fjord_client::RpcError> {
/// use fjord_client::{RpcClient, Target};
/// let client = RpcClient::new(transport, Target::new("test"));
/// let sum: i64 = client
///     .call(&Default::default(), "add", serde_json::json!({"a": 2, "b": 3}))
///     .await?;
/// assert_eq!(sum, 5);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RpcClient {
    transport: Transport,
    target: Target,
    timeout: Duration,
    call_monitor_timeout: Option<Duration>,
}

impl RpcClient {
    /// A client for `target` with the default 60 s timeout.
    ///
    /// ```no_run
    /// # fn f(t: fjord_client::Transport) {
    /// let c = fjord_client::RpcClient::new(t, fjord_client::Target::new("test"));
    /// # let _ = c; }
    /// ```
    pub fn new(transport: Transport, target: Target) -> RpcClient {
        RpcClient {
            transport,
            target,
            timeout: DEFAULT_TIMEOUT,
            call_monitor_timeout: None,
        }
    }

    /// The target messages go to.
    ///
    /// ```no_run
    /// # fn f(c: fjord_client::RpcClient) { println!("{}", c.target().topic); }
    /// ```
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The call timeout.
    ///
    /// ```no_run
    /// # fn f(c: fjord_client::RpcClient) { assert_eq!(c.timeout().as_secs(), 60); }
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A builder for a client with some target fields or the timeout changed (oslo's `prepare`).
    ///
    /// ```no_run
    /// # fn f(c: fjord_client::RpcClient) {
    /// let v1 = c.prepare().version("1.0").timeout(std::time::Duration::from_secs(5)).build();
    /// # let _ = v1; }
    /// ```
    pub fn prepare(&self) -> Prepare {
        Prepare {
            client: self.clone(),
        }
    }

    /// Calls `method` and waits for its result.
    ///
    /// `ctx` goes out as `_context_<key>`; `args` must be a JSON object (or null for none).
    ///
    /// ```no_run
    /// # async fn f(c: fjord_client::RpcClient) -> Result<(), fjord_client::RpcError> {
    /// let mut ctx = serde_json::Map::new();
    /// ctx.insert("request_id".into(), "req-1".into());
    /// let v: serde_json::Value = c.call(&ctx, "add", serde_json::json!({"a": 1, "b": 2})).await?;
    /// # let _ = v; Ok(()) }
    /// ```
    pub async fn call<T: DeserializeOwned>(
        &self,
        ctx: &Map<String, Value>,
        method: &str,
        args: impl Into<Value>,
    ) -> Result<T, RpcError> {
        if self.target.fanout {
            return Err(RpcError::InvalidTarget(
                "a call cannot be a fanout (use cast)".into(),
            ));
        }
        let args = args_object(args.into())?;
        // Nothing a call does may take longer than its timeout: reconnecting, publishing
        // (a blocked connection), waiting.
        let deadline = deadline_after(self.timeout, "timeout")?;
        let monitor = self.call_monitor_timeout;
        // A call no server takes fails when the monitor runs out, as when nobody heartbeats.
        let send_deadline = match monitor {
            Some(m) => deadline.min(deadline_after(m, "call_monitor_timeout")?),
            None => deadline,
        };
        let msg_id = new_id();
        let send = self.send_call(ctx, method, args, &msg_id);
        let mut call = match tokio::time::timeout_at(send_deadline, send).await {
            Ok(sent) => sent?,
            Err(_) => return Err(MessagingTimeout { msg_id }.into()),
        };
        // With a call-monitor timeout, the server's heartbeats must keep coming (oslo's wait()).
        let mut heard = Instant::now();
        let reply = loop {
            let until = match monitor {
                Some(m) => heard.checked_add(m).map_or(deadline, |t| t.min(deadline)),
                None => deadline,
            };
            match tokio::time::timeout_at(until, call.replies.recv()).await {
                Ok(Some(reply)) if !reply.ending => {
                    tracing::debug!(%msg_id, "call-monitor heartbeat");
                    heard = Instant::now();
                }
                Ok(Some(reply)) => break reply,
                Ok(None) => return Err(RpcError::ReplyConsumerGone),
                Err(_) => return Err(MessagingTimeout { msg_id }.into()),
            }
        };
        if let Some(failure) = reply.failure {
            return Err(RemoteError::from(failure).into());
        }
        serde_json::from_value(reply.result).map_err(RpcError::BadResult)
    }

    /// Publishes a call, registered first as waiting on the session's reply consumer.
    async fn send_call(
        &self,
        ctx: &Map<String, Value>,
        method: &str,
        args: Map<String, Value>,
        msg_id: &str,
    ) -> Result<Registration, RpcError> {
        let transport = &self.transport;
        let session = transport.session().await?;
        let consumer = transport.replies(&session).await?;
        // Registered before publishing: a fast reply must find its waiter.
        let registration = transport.inner.waiters.register(msg_id, consumer);
        // The consumer may have ended since it was found running. Its end marks it stopped
        // before failing its calls: a call registered before that is failed by it, and one
        // registered after sees it here. Either way it fails at once, visibly.
        if !session.consuming(consumer) {
            return Err(RpcError::ReplyConsumerGone);
        }
        let mut request = self.request(ctx, method, args);
        request.msg_id = Some(msg_id.to_string());
        request.reply_q = Some(session.reply_queue.clone());
        request.timeout = self.call_monitor_timeout.map(|d| d.as_secs_f64());

        let exchange = self.exchange();
        let routing_key = self.target.routing_key();
        tracing::debug!(%exchange, %routing_key, %method, %msg_id, "call");
        session
            .declare_exchange_once(exchange, &transport.inner.options)
            .await?;
        // At most MAX_TIMEOUT, checked by the caller: RabbitMQ accepts it.
        let expiration = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let body = request.encode();
        // Mandatory: while no server queue is bound (servers re-declaring after a broker
        // restart) the broker returns the call, and it is sent again shortly; with no server
        // at all it ends in a MessagingTimeout at the call's deadline, as in oslo.
        loop {
            let sent = session
                .publish(exchange, &routing_key, &body, Some(expiration), true)
                .await;
            match sent {
                Err(PublishError::Unroutable(_)) => {
                    tokio::time::sleep(UNROUTABLE_RETRY).await;
                }
                other => {
                    other?;
                    return Ok(registration);
                }
            }
        }
    }

    /// Sends `method` without waiting for a result; to every server when the target is fanout.
    /// Sending (reconnecting, a publisher confirm, a blocked connection) takes at most the
    /// client's timeout: past it the cast fails with [`RpcError::CastTimeout`] (and may or may
    /// not have been delivered).
    ///
    /// ```no_run
    /// # async fn f(c: fjord_client::RpcClient) -> Result<(), fjord_client::RpcError> {
    /// c.prepare().fanout(true).build().cast(&Default::default(), "stop", serde_json::json!({})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cast(
        &self,
        ctx: &Map<String, Value>,
        method: &str,
        args: impl Into<Value>,
    ) -> Result<(), RpcError> {
        let args = args_object(args.into())?;
        let deadline = deadline_after(self.timeout, "timeout")?;
        match tokio::time::timeout_at(deadline, self.send_cast(ctx, method, args)).await {
            Ok(sent) => sent,
            Err(_) => Err(RpcError::CastTimeout(self.timeout)),
        }
    }

    async fn send_cast(
        &self,
        ctx: &Map<String, Value>,
        method: &str,
        args: Map<String, Value>,
    ) -> Result<(), RpcError> {
        let request = self.request(ctx, method, args);
        let inner = &self.transport.inner;
        let session = self.transport.session().await?;
        if self.target.fanout {
            declare_fanout_exchange_with(&session.publisher(), &self.target.topic, &inner.options)
                .await?;
            let exchange = fanout_exchange_name(&self.target.topic);
            tracing::debug!(%exchange, %method, "fanout cast");
            session
                .publish(&exchange, "", &request.encode(), None, false)
                .await?;
        } else {
            let exchange = self.exchange();
            let routing_key = self.target.routing_key();
            tracing::debug!(%exchange, %routing_key, %method, "cast");
            session
                .declare_exchange_once(exchange, &inner.options)
                .await?;
            session
                .publish(exchange, &routing_key, &request.encode(), None, false)
                .await?;
        }
        Ok(())
    }

    fn exchange(&self) -> &str {
        self.target
            .exchange
            .as_deref()
            .unwrap_or(&self.transport.inner.control_exchange)
    }

    fn request(&self, ctx: &Map<String, Value>, method: &str, args: Map<String, Value>) -> Request {
        let mut request = Request::new(method, args);
        request.namespace = self.target.namespace.clone();
        request.version = self.target.version.clone();
        request.context = ctx.clone();
        request
    }
}

/// The instant `timeout` from now; a timeout over [`MAX_TIMEOUT`] is bad input.
fn deadline_after(timeout: Duration, what: &str) -> Result<Instant, RpcError> {
    let too_long = || {
        RpcError::InvalidTimeout(format!(
            "a {what} of {timeout:?} is longer than the {} s (ten years) RabbitMQ accepts as a message TTL",
            MAX_TIMEOUT.as_secs()
        ))
    };
    if timeout > MAX_TIMEOUT {
        return Err(too_long());
    }
    Instant::now().checked_add(timeout).ok_or_else(too_long)
}

fn args_object(args: Value) -> Result<Map<String, Value>, RpcError> {
    match args {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => Err(RpcError::InvalidArguments(format!(
            "keyword arguments must be a JSON object, not {other}"
        ))),
    }
}

/// Builder returned by [`RpcClient::prepare`]; [`Prepare::build`] gives the new client.
///
/// ```no_run
/// # fn f(c: fjord_client::RpcClient) {
/// let c2 = c.prepare().server("server1").namespace("calc").version("1.1").build();
/// assert_eq!(c2.target().server.as_deref(), Some("server1"));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Prepare {
    client: RpcClient,
}

impl Prepare {
    /// Sets the exchange.
    ///
    /// ```no_run
    /// # fn f(c: fjord_client::RpcClient) { let _ = c.prepare().exchange("nova").build(); }
    /// ```
    pub fn exchange(mut self, exchange: impl Into<String>) -> Prepare {
        self.client.target.exchange = Some(exchange.into());
        self
    }

    /// Directs to one server.
    ///
    /// ```no_run
    /// # fn f(c: fjord_client::RpcClient) { let _ = c.prepare().server("s1").build(); }
    /// ```
    pub fn server(mut self, server: impl Into<String>) -> Prepare {
        self.client.target.server = Some(server.into());
        self
    }

    /// Sets the namespace.
    ///
    /// ```no_run
    /// # fn f(c: fjord_client::RpcClient) { let _ = c.prepare().namespace("calc").build(); }
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Prepare {
        self.client.target.namespace = Some(namespace.into());
        self
    }

    /// Sets the requested version.
    ///
    /// ```no_run
    /// # fn f(c: fjord_client::RpcClient) { let _ = c.prepare().version("1.0").build(); }
    /// ```
    pub fn version(mut self, version: impl Into<String>) -> Prepare {
        self.client.target.version = Some(version.into());
        self
    }

    /// Makes casts fanout casts.
    ///
    /// ```no_run
    /// # fn f(c: fjord_client::RpcClient) { let _ = c.prepare().fanout(true).build(); }
    /// ```
    pub fn fanout(mut self, fanout: bool) -> Prepare {
        self.client.target.fanout = fanout;
        self
    }

    /// Sets the call timeout (request TTL and wait deadline; for a cast, how long sending may
    /// take). A timeout over [`MAX_TIMEOUT`] (ten years) makes calls and casts fail with
    /// [`RpcError::InvalidTimeout`] before anything is sent.
    ///
    /// ```no_run
    /// # fn f(c: fjord_client::RpcClient) { let _ = c.prepare().timeout(std::time::Duration::from_secs(3)).build(); }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Prepare {
        self.client.timeout = timeout;
        self
    }

    /// Requires the server to send heartbeats while a call runs (oslo's `call_monitor_timeout`):
    /// the call fails with [`MessagingTimeout`] when none came for this long, and may run up to
    /// its timeout as long as they come. Servers heartbeat every `floor(timeout) / 2` seconds
    /// and ignore values under 2 s, as oslo's do. Over [`MAX_TIMEOUT`], calls fail with
    /// [`RpcError::InvalidTimeout`].
    ///
    /// ```no_run
    /// # fn f(c: fjord_client::RpcClient) {
    /// use std::time::Duration;
    /// let _ = c.prepare().timeout(Duration::from_secs(600)).call_monitor_timeout(Duration::from_secs(10)).build();
    /// # }
    /// ```
    pub fn call_monitor_timeout(mut self, timeout: Duration) -> Prepare {
        self.client.call_monitor_timeout = Some(timeout);
        self
    }

    /// The prepared client, sharing the original's transport.
    ///
    /// ```no_run
    /// # fn f(c: fjord_client::RpcClient) { let _ = c.prepare().build(); }
    /// ```
    pub fn build(self) -> RpcClient {
        self.client
    }
}

impl From<Prepare> for RpcClient {
    fn from(p: Prepare) -> RpcClient {
        p.client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_past_rabbitmqs_longest_ttl_are_bad_input() {
        for huge in [Duration::MAX, MAX_TIMEOUT + Duration::from_nanos(1)] {
            match deadline_after(huge, "timeout") {
                Err(RpcError::InvalidTimeout(message)) => {
                    assert!(message.contains("315360000 s"), "{message}")
                }
                other => panic!("{huge:?}: {other:?}"),
            }
        }
        assert!(deadline_after(MAX_TIMEOUT, "timeout").is_ok());
        assert!(deadline_after(Duration::ZERO, "timeout").is_ok());
        assert_eq!(
            MAX_TIMEOUT.as_millis(),
            315_360_000_000,
            "RabbitMQ's largest TTL"
        );
    }
}
