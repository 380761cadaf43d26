//! oslo-style RPC over a [`Transport`]: `call`, `cast`, fanout casts and `prepare`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::{oneshot, OnceCell};

use crate::connection::{connect, ConnectError};
use crate::envelope::{new_id, Reply, Request};
use crate::failure::RemoteError;
use crate::target::Target;
use crate::topology::{
    declare_fanout_exchange_with, declare_reply_queue, declare_topic_exchange,
    fanout_exchange_name, publish, PublishError, DEFAULT_CONTROL_EXCHANGE,
};
use crate::url::{TransportOptions, TransportUrl};

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
    /// The reply consumer stopped (connection lost).
    #[error("the reply queue consumer stopped; the connection to RabbitMQ is probably lost")]
    ReplyConsumerGone,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>;

struct Inner {
    connection: Connection,
    channel: Channel,
    options: TransportOptions,
    control_exchange: String,
    reply_queue: OnceCell<String>,
    pending: Pending,
    /// Topic exchanges already declared on this connection; like kombu's `maybe_declare`, oslo
    /// declares an exchange once per connection, not once per message.
    declared: Mutex<HashSet<String>>,
}

/// A connection to RabbitMQ shared by [`RpcClient`]s: one publishing channel with publisher
/// confirms and one reply queue (`reply_<uuid4 hex>`) declared on the first call.
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
            .field("reply_queue", &self.inner.reply_queue.get())
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
        Ok(Transport::from_connection(connection, url.options.clone(), control_exchange).await?)
    }

    /// Wraps an open connection (opens the publishing channel in confirm mode).
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
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Transport {
            inner: Arc::new(Inner {
                connection,
                channel,
                options,
                control_exchange: control_exchange.to_string(),
                reply_queue: OnceCell::new(),
                pending: Arc::new(Mutex::new(HashMap::new())),
                declared: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The control exchange used when a target names none.
    ///
    /// ```no_run
    /// # fn f(t: fjord_client::Transport) { assert_eq!(t.control_exchange(), "openstack"); }
    /// ```
    pub fn control_exchange(&self) -> &str {
        &self.inner.control_exchange
    }

    /// The underlying AMQP connection.
    ///
    /// ```no_run
    /// # fn f(t: fjord_client::Transport) { let _ = t.connection().status(); }
    /// ```
    pub fn connection(&self) -> &Connection {
        &self.inner.connection
    }

    /// Closes the connection (the reply queue then expires after `x-expires`).
    ///
    /// ```no_run
    /// # async fn f(t: fjord_client::Transport) { let _ = t.close().await; }
    /// ```
    pub async fn close(&self) -> Result<(), lapin::Error> {
        self.inner
            .connection
            .close(200, ShortString::from("fjord client closing"))
            .await
    }

    /// Declares a topic exchange unless this connection already did. An auto-delete exchange can
    /// vanish between messages, so it is declared every time.
    async fn declare_exchange_once(&self, exchange: &str) -> Result<(), lapin::Error> {
        let inner = &self.inner;
        let known = |d: &HashSet<String>| d.contains(exchange);
        let cached = match inner.declared.lock() {
            Ok(d) => known(&d),
            Err(poisoned) => known(&poisoned.into_inner()),
        };
        if cached {
            return Ok(());
        }
        declare_topic_exchange(&inner.channel, exchange, &inner.options).await?;
        if !inner.options.amqp_auto_delete {
            match inner.declared.lock() {
                Ok(mut d) => d.insert(exchange.to_string()),
                Err(poisoned) => poisoned.into_inner().insert(exchange.to_string()),
            };
        }
        Ok(())
    }

    /// The reply queue name, declaring it and starting its consumer on first use.
    async fn reply_queue(&self) -> Result<String, RpcError> {
        let inner = &self.inner;
        let name = inner
            .reply_queue
            .get_or_try_init(|| async {
                let name = format!("reply_{}", new_id());
                // A channel of its own, so a consumer problem never blocks publishing.
                let channel = inner.connection.create_channel().await?;
                declare_reply_queue(&channel, &name, &inner.options).await?;
                let consumer = channel
                    .basic_consume(
                        ShortString::from(name.as_str()),
                        ShortString::from(name.as_str()),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                tokio::spawn(route_replies(consumer, channel, inner.pending.clone()));
                tracing::debug!(queue = %name, "reply queue ready");
                Ok::<String, lapin::Error>(name)
            })
            .await?;
        Ok(name.clone())
    }
}

/// Hands each final reply to the call waiting for its `_msg_id`.
async fn route_replies(mut consumer: lapin::Consumer, _channel: Channel, pending: Pending) {
    while let Some(delivery) = consumer.next().await {
        let delivery = match delivery {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reply consumer failed");
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
        if !reply.ending {
            // A heartbeat: the server still works on it. The deadline stays as oslo's does.
            continue;
        }
        let waiter = match pending.lock() {
            Ok(mut p) => p.remove(&reply.msg_id),
            Err(poisoned) => poisoned.into_inner().remove(&reply.msg_id),
        };
        match waiter {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => tracing::debug!(msg_id = %reply.msg_id, "dropping a reply nobody waits for"),
        }
    }
    // Wake every waiting call: their sender is dropped, so they fail fast.
    match pending.lock() {
        Ok(mut p) => p.clear(),
        Err(poisoned) => poisoned.into_inner().clear(),
    }
}

/// Removes a call's waiter when the call ends, however it ends.
struct PendingGuard {
    pending: Pending,
    msg_id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        match self.pending.lock() {
            Ok(mut p) => p.remove(&self.msg_id),
            Err(poisoned) => poisoned.into_inner().remove(&self.msg_id),
        };
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
        let transport = &self.transport;
        let reply_q = transport.reply_queue().await?;

        let mut request = self.request(ctx, method, args);
        let msg_id = new_id();
        request.msg_id = Some(msg_id.clone());
        request.reply_q = Some(reply_q);

        // Register before publishing: a fast reply must find its waiter.
        let (tx, rx) = oneshot::channel();
        match transport.inner.pending.lock() {
            Ok(mut p) => p.insert(msg_id.clone(), tx),
            Err(poisoned) => poisoned.into_inner().insert(msg_id.clone(), tx),
        };
        let _guard = PendingGuard {
            pending: transport.inner.pending.clone(),
            msg_id: msg_id.clone(),
        };

        let exchange = self.exchange();
        let routing_key = self.target.routing_key();
        tracing::debug!(%exchange, %routing_key, %method, %msg_id, "call");
        let channel = &transport.inner.channel;
        transport.declare_exchange_once(exchange).await?;
        let expiration = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        publish(
            channel,
            exchange,
            &routing_key,
            &request.encode(),
            Some(expiration),
            false,
        )
        .await?;

        let reply = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(RpcError::ReplyConsumerGone),
            Err(_) => return Err(MessagingTimeout { msg_id }.into()),
        };
        if let Some(failure) = reply.failure {
            return Err(RemoteError::from(failure).into());
        }
        serde_json::from_value(reply.result).map_err(RpcError::BadResult)
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
        if self.target.fanout {
            declare_fanout_exchange_with(&inner.channel, &self.target.topic, &inner.options)
                .await?;
            let exchange = fanout_exchange_name(&self.target.topic);
            tracing::debug!(%exchange, %method, "fanout cast");
            publish(
                &inner.channel,
                &exchange,
                "",
                &request.encode(),
                None,
                false,
            )
            .await?;
        } else {
            let exchange = self.exchange();
            let routing_key = self.target.routing_key();
            tracing::debug!(%exchange, %routing_key, %method, "cast");
            self.transport.declare_exchange_once(exchange).await?;
            publish(
                &inner.channel,
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
