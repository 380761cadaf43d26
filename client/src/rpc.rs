//! oslo-style RPC over a [`Transport`]: `call`, `cast`, fanout casts and `prepare`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use fjord_oslo::connection::{connect, reconnect, ConnectError};
use fjord_oslo::envelope::{new_id, Reply, Request};
use fjord_oslo::failure::RemoteError;
use fjord_oslo::reconnect::{Backoff, Outage};
use fjord_oslo::target::Target;
use fjord_oslo::topology::{
    declare_fanout_exchange_with, declare_reply_queue, declare_topic_exchange,
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
}

/// Where each waiting call receives its replies: heartbeats (`ending: false`) and the final one.
type Pending = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Reply>>>>;

/// Backoff between reconnection attempts: a call during an outage fails at once instead of
/// every caller hammering a broker that is down.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// Pause before publishing again a call no server queue took.
const UNROUTABLE_RETRY: Duration = Duration::from_millis(100);

/// One AMQP connection and what lives on it; replaced as a whole when the connection is lost.
struct Session {
    connection: Connection,
    /// Publishing channel, in confirm mode.
    channel: Channel,
    /// Whether the reply consumer runs on this session.
    replies_alive: Arc<AtomicBool>,
    /// Topic exchanges already declared on this connection; like kombu's `maybe_declare`, oslo
    /// declares an exchange once per connection, not once per message.
    declared: Mutex<HashSet<String>>,
}

impl Session {
    async fn open(connection: Connection) -> Result<Session, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Session {
            connection,
            channel,
            replies_alive: Arc::new(AtomicBool::new(false)),
            declared: Mutex::new(HashSet::new()),
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
        declare_topic_exchange(&self.channel, exchange, options).await?;
        if !options.amqp_auto_delete {
            locked(&self.declared).insert(exchange.to_string());
        }
        Ok(())
    }

    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

/// The connection state guarded by one lock: the live session, and the reconnect bookkeeping.
struct Link {
    session: Option<Arc<Session>>,
    backoff: Backoff,
    /// No reconnection attempt before this instant.
    next_attempt: Option<Instant>,
    last_error: String,
    outage: Outage,
}

struct Inner {
    /// `None` for a transport made from a connection: it cannot reconnect.
    url: Option<TransportUrl>,
    link: tokio::sync::Mutex<Link>,
    options: TransportOptions,
    control_exchange: String,
    /// `reply_<uuid4 hex>`, the same across reconnections, declared on the first call.
    reply_queue: String,
    pending: Pending,
}

/// A connection to RabbitMQ shared by [`RpcClient`]s: one publishing channel with publisher
/// confirms and one reply queue (`reply_<uuid4 hex>`) declared on the first call.
///
/// When the connection drops, the next call reconnects (hosts of the URL tried in turn, backoff
/// with jitter) and re-declares the reply queue; calls made while RabbitMQ is unreachable fail
/// at once with [`RpcError::Disconnected`].
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
            .field("reply_queue", &self.inner.reply_queue)
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
        let connection = connect(url, "fjord-client").await?;
        let session = Session::open(connection).await?;
        Ok(Transport::new(
            Some(url.clone()),
            session,
            url.options.clone(),
            control_exchange,
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
        let session = Session::open(connection).await?;
        Ok(Transport::new(None, session, options, control_exchange))
    }

    fn new(
        url: Option<TransportUrl>,
        session: Session,
        options: TransportOptions,
        control_exchange: &str,
    ) -> Transport {
        Transport {
            inner: Arc::new(Inner {
                url,
                link: tokio::sync::Mutex::new(Link {
                    session: Some(Arc::new(session)),
                    backoff: Backoff::new(RECONNECT_FIRST, RECONNECT_MAX),
                    next_attempt: None,
                    last_error: String::new(),
                    outage: Outage::default(),
                }),
                options,
                control_exchange: control_exchange.to_string(),
                reply_queue: format!("reply_{}", new_id()),
                pending: Arc::new(Mutex::new(HashMap::new())),
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

    /// The name of this transport's reply queue (declared on the first call).
    ///
    /// ```no_run
    /// # fn f(t: fjord_client::Transport) { assert!(t.reply_queue_name().starts_with("reply_")); }
    /// ```
    pub fn reply_queue_name(&self) -> &str {
        &self.inner.reply_queue
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
        let session = self.session(false).await?;
        Ok(session.connection.create_channel().await?)
    }

    /// Closes the connection (the reply queue then expires after `x-expires`).
    ///
    /// ```no_run
    /// # async fn f(t: fjord_client::Transport) { let _ = t.close().await; }
    /// ```
    pub async fn close(&self) -> Result<(), lapin::Error> {
        let session = self.inner.link.lock().await.session.take();
        match session {
            Some(s) => {
                s.connection
                    .close(200, ShortString::from("fjord client closing"))
                    .await
            }
            None => Ok(()),
        }
    }

    /// The live session, reconnecting first when the connection is gone; with `replies`, its
    /// reply consumer runs too (re-declaring the reply queue after a loss).
    async fn session(&self, replies: bool) -> Result<Arc<Session>, RpcError> {
        let inner = &self.inner;
        let mut link = inner.link.lock().await;
        let usable = link.session.as_ref().filter(|s| s.usable()).cloned();
        let session = match usable {
            Some(s) => s,
            None => {
                if let Some(old) = link.session.take() {
                    link.outage
                        .begin("the connection was closed", "fjord-client");
                    if old.connection.status().connected() {
                        let _ = old
                            .connection
                            .close(200, ShortString::from("reconnecting"))
                            .await;
                    }
                }
                let Some(url) = &inner.url else {
                    return Err(RpcError::Disconnected(
                        "the connection is closed and this transport cannot reconnect".into(),
                    ));
                };
                if let Some(at) = link.next_attempt {
                    if Instant::now() < at {
                        return Err(RpcError::Disconnected(link.last_error.clone()));
                    }
                }
                let opened = match reconnect(url, "fjord-client").await {
                    Ok(connection) => Session::open(connection).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match opened {
                    Ok(session) => {
                        link.backoff.reset();
                        link.next_attempt = None;
                        link.outage.end("fjord-client");
                        let session = Arc::new(session);
                        link.session = Some(session.clone());
                        session
                    }
                    Err(reason) => {
                        link.outage.begin(&reason, "fjord-client");
                        link.next_attempt = Some(Instant::now() + link.backoff.next_delay());
                        link.last_error = reason.clone();
                        return Err(RpcError::Disconnected(reason));
                    }
                }
            }
        };
        if session.connection.status().blocked() {
            // A resource alarm: publishing would hang until it clears.
            return Err(RpcError::Disconnected(
                "RabbitMQ blocks publishing (resource alarm)".into(),
            ));
        }
        if replies && !session.replies_alive.load(Ordering::SeqCst) {
            self.start_replies(&session).await?;
        }
        Ok(session)
    }

    /// Declares the reply queue and starts its consumer on `session`.
    async fn start_replies(&self, session: &Session) -> Result<(), RpcError> {
        let inner = &self.inner;
        let name = inner.reply_queue.as_str();
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
        session.replies_alive.store(true, Ordering::SeqCst);
        tokio::spawn(route_replies(
            consumer,
            channel,
            inner.pending.clone(),
            session.replies_alive.clone(),
        ));
        tracing::debug!(queue = %name, "reply queue ready");
        Ok(())
    }
}

/// Hands each reply to the call waiting for its `_msg_id`.
async fn route_replies(
    mut consumer: lapin::Consumer,
    _channel: Channel,
    pending: Pending,
    alive: Arc<AtomicBool>,
) {
    while let Some(delivery) = consumer.next().await {
        let delivery = match delivery {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "reply consumer failed");
                break;
            }
        };
        if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
            tracing::warn!(error = %e, "cannot ack a reply");
        }
        let reply = match Reply::decode(&delivery.data) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "dropping an unreadable reply");
                continue;
            }
        };
        let waiter = locked(&pending).get(&reply.msg_id).cloned();
        match waiter {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => tracing::debug!(msg_id = %reply.msg_id, "dropping a reply nobody waits for"),
        }
    }
    // The next call re-declares the queue and consumes again (no permanently deaf caller).
    alive.store(false, Ordering::SeqCst);
    // Wake every waiting call: their sender is dropped, so they fail fast and visibly.
    locked(&pending).clear();
}

/// Locks `mutex`, even if a panicking thread poisoned it: every map guarded here stays
/// consistent whatever step was interrupted.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes a call's waiter when the call ends, however it ends.
struct PendingGuard {
    pending: Pending,
    msg_id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        locked(&self.pending).remove(&self.msg_id);
    }
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
        let deadline = Instant::now() + self.timeout;
        let transport = &self.transport;
        let msg_id = new_id();
        // Register before publishing: a fast reply must find its waiter.
        let (tx, mut rx) = mpsc::unbounded_channel();
        locked(&transport.inner.pending).insert(msg_id.clone(), tx);
        let _guard = PendingGuard {
            pending: transport.inner.pending.clone(),
            msg_id: msg_id.clone(),
        };
        let send = self.send_call(ctx, method, args, &msg_id);
        // A call no server takes fails when the monitor runs out, as when nobody heartbeats.
        let send_deadline = match self.call_monitor_timeout {
            Some(m) => deadline.min(Instant::now() + m),
            None => deadline,
        };
        match tokio::time::timeout_at(send_deadline, send).await {
            Ok(sent) => sent?,
            Err(_) => return Err(MessagingTimeout { msg_id }.into()),
        }
        // With a call-monitor timeout, the server's heartbeats must keep coming (oslo's wait()).
        let monitor = self.call_monitor_timeout;
        let mut heard = Instant::now();
        let reply = loop {
            let until = match monitor {
                Some(m) => deadline.min(heard + m),
                None => deadline,
            };
            match tokio::time::timeout_at(until, rx.recv()).await {
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

    /// Publishes a call whose waiter is registered.
    async fn send_call(
        &self,
        ctx: &Map<String, Value>,
        method: &str,
        args: Map<String, Value>,
        msg_id: &str,
    ) -> Result<(), RpcError> {
        let transport = &self.transport;
        let session = transport.session(true).await?;
        let mut request = self.request(ctx, method, args);
        request.msg_id = Some(msg_id.to_string());
        request.reply_q = Some(transport.inner.reply_queue.clone());
        request.timeout = self.call_monitor_timeout.map(|d| d.as_secs_f64());

        let exchange = self.exchange();
        let routing_key = self.target.routing_key();
        tracing::debug!(%exchange, %routing_key, %method, %msg_id, "call");
        let channel = &session.channel;
        session
            .declare_exchange_once(exchange, &transport.inner.options)
            .await?;
        let expiration = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let body = request.encode();
        // Mandatory: while no server queue is bound (servers re-declaring after a broker
        // restart) the broker returns the call, and it is sent again shortly; with no server
        // at all it ends in a MessagingTimeout at the call's deadline, as in oslo.
        loop {
            let sent = publish(
                channel,
                exchange,
                &routing_key,
                &body,
                Some(expiration),
                true,
            )
            .await;
            match sent {
                Err(PublishError::Unroutable(_)) => {
                    tokio::time::sleep(UNROUTABLE_RETRY).await;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Sends `method` without waiting for a result; to every server when the target is fanout.
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
        let request = self.request(ctx, method, args);
        let inner = &self.transport.inner;
        let session = self.transport.session(false).await?;
        let channel = &session.channel;
        if self.target.fanout {
            declare_fanout_exchange_with(channel, &self.target.topic, &inner.options).await?;
            let exchange = fanout_exchange_name(&self.target.topic);
            tracing::debug!(%exchange, %method, "fanout cast");
            publish(channel, &exchange, "", &request.encode(), None, false).await?;
        } else {
            let exchange = self.exchange();
            let routing_key = self.target.routing_key();
            tracing::debug!(%exchange, %routing_key, %method, "cast");
            session
                .declare_exchange_once(exchange, &inner.options)
                .await?;
            publish(
                channel,
                exchange,
                &routing_key,
                &request.encode(),
                None,
                false,
            )
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

    /// Sets the call timeout (request TTL and wait deadline).
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
    /// and ignore values under 2 s, as oslo's do.
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
