//! Outgoing calls and casts (`fjord:endpoint/rpc`), written the way oslo.messaging users write
//! them: a [`Client`] for a [`Target`], `prepare()` to change server, version, namespace, fanout or
//! timeout, serde for arguments and results.
//!
//! The host sends them through its own connection (a guest has no sockets), only to targets the
//! endpoint's config grants (`calls = ["compute.*"]`), and never waits past the deadline of the
//! call being served. The request context of that call goes on (its `request_id`, and a
//! `global_request_id`) unless [`Prepare::context`] gives another.
//!
//! ```ignore
//! use fjord_guest::rpc::{Client, Target};
//!
//! #[derive(serde::Deserialize)]
//! struct Free { ram_mb: u64 }
//!
//! let compute = Client::new(Target::topic("compute"));
//! let free: Free = compute.prepare().server("node1").version("5.0").call("free_resources", &())?;
//! compute.prepare().server("node1").cast("build_and_run_instance", &serde_json::json!({"name": "vm1"}))?;
//! ```

use crate::bindings::fjord::endpoint::rpc as import;
use crate::RemoteError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

pub use import::{CallError, CallOptions, RemoteFailure, Target as WitTarget};

/// The import itself: JSON text in and out, for callers that already have it (or test the host
/// with text serde would never write).
///
/// ```ignore
/// let t = fjord_guest::rpc::WitTarget { topic: "test".into(), server: None, exchange: None,
///     namespace: None, version: None, fanout: false };
/// let options = fjord_guest::rpc::CallOptions { timeout: None, context: None };
/// let sum = fjord_guest::rpc::raw::call(&t, "add", r#"{"a": 2, "b": 3}"#, &options)?;
/// ```
pub mod raw {
    pub use super::import::{call, cast};
}

/// oslo's `Target`: where a call goes.
///
/// ```
/// let t = fjord_guest::rpc::Target::topic("compute").server("node1");
/// assert_eq!((t.topic.as_str(), t.server.as_deref()), ("compute", Some("node1")));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The topic, e.g. `compute`.
    pub topic: String,
    /// One server of the topic; none: any (round robin).
    pub server: Option<String>,
    /// The exchange; none: the host's control exchange.
    pub exchange: Option<String>,
    /// The endpoint namespace.
    pub namespace: Option<String>,
    /// The RPC version the call needs, e.g. `5.0`.
    pub version: Option<String>,
    /// Every server of the topic (casts only).
    pub fanout: bool,
}

impl Target {
    /// The target `topic`, any server.
    ///
    /// ```
    /// assert_eq!(fjord_guest::rpc::Target::topic("scheduler").topic, "scheduler");
    /// ```
    pub fn topic(topic: impl Into<String>) -> Target {
        Target {
            topic: topic.into(),
            ..Target::default()
        }
    }

    /// The same target at one server.
    ///
    /// ```
    /// let t = fjord_guest::rpc::Target::topic("compute").server("node1");
    /// assert_eq!(t.server.as_deref(), Some("node1"));
    /// ```
    pub fn server(mut self, server: impl Into<String>) -> Target {
        self.server = Some(server.into());
        self
    }
}

/// Why an outgoing call failed: what the host said ([`CallError`]), or arguments and results
/// that serde could not turn into JSON or back.
#[derive(Debug, Clone)]
pub enum Error {
    /// The host's answer: `timeout`, `remote` (the callee raised), `not-allowed`,
    /// `unavailable`, `bad-arguments`.
    Call(CallError),
    /// The arguments (or the context) could not be written as JSON.
    Encode(String),
    /// The result could not be read as the type asked for.
    Decode(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Call(CallError::Timeout(m)) => write!(f, "timed out: {m}"),
            Error::Call(CallError::Remote(r)) => write!(f, "{}.{}: {}", r.module, r.class, r.message),
            Error::Call(CallError::NotAllowed(m)) => write!(f, "not allowed: {m}"),
            Error::Call(CallError::Unavailable(m)) => write!(f, "unavailable: {m}"),
            Error::Call(CallError::BadArguments(m)) => write!(f, "bad arguments: {m}"),
            Error::Encode(m) => write!(f, "cannot encode the arguments: {m}"),
            Error::Decode(m) => write!(f, "cannot decode the result: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<CallError> for Error {
    fn from(e: CallError) -> Self {
        Error::Call(e)
    }
}

/// The exception to raise in the endpoint's own caller: a `remote` failure passes on unchanged
/// (so `NoValidHost` crosses a chain of services as in OpenStack); a timeout is oslo's
/// `MessagingTimeout`; the rest are `fjord` classes named after the case.
///
/// ```
/// use fjord_guest::rpc::{CallError, Error, RemoteFailure};
/// let e: fjord_guest::RemoteError = Error::Call(CallError::Remote(RemoteFailure {
///     class: "NoValidHost".into(), module: "nova.exception".into(), message: "none".into(),
/// })).into();
/// assert_eq!((e.module.as_str(), e.class.as_str()), ("nova.exception", "NoValidHost"));
/// ```
impl From<Error> for RemoteError {
    fn from(e: Error) -> Self {
        let fjord = |class: &str, message: String| RemoteError::new("fjord", class, message);
        match e {
            Error::Call(CallError::Remote(r)) => RemoteError::new(r.module, r.class, r.message),
            Error::Call(CallError::Timeout(m)) => {
                RemoteError::new("oslo_messaging.exceptions", "MessagingTimeout", m)
            }
            Error::Call(CallError::NotAllowed(m)) => fjord("CallNotAllowed", m),
            Error::Call(CallError::Unavailable(m)) => fjord("CallUnavailable", m),
            Error::Call(CallError::BadArguments(m)) => fjord("BadCallArguments", m),
            Error::Encode(m) | Error::Decode(m) => fjord("BadCallArguments", m),
        }
    }
}

/// oslo's `RPCClient`: calls and casts to one target.
///
/// ```ignore
/// let scheduler = fjord_guest::rpc::Client::new(fjord_guest::rpc::Target::topic("scheduler"));
/// let hosts: Vec<String> = scheduler.call("select_destinations", &serde_json::json!({"spec": {}}))?;
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    target: Target,
    timeout: Option<Duration>,
    context: Option<String>,
}

impl Client {
    /// A client of `target`, with the served call's context and the time left as its timeout.
    ///
    /// ```
    /// let c = fjord_guest::rpc::Client::new(fjord_guest::rpc::Target::topic("compute"));
    /// assert_eq!(c.target().topic, "compute");
    /// ```
    pub fn new(target: Target) -> Client {
        Client {
            target,
            timeout: None,
            context: None,
        }
    }

    /// The target calls go to.
    ///
    /// ```
    /// let c = fjord_guest::rpc::Client::new(fjord_guest::rpc::Target::topic("compute"));
    /// assert!(c.target().server.is_none());
    /// ```
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// oslo's `prepare()`: a copy to change server, version, namespace, fanout or timeout.
    ///
    /// ```
    /// let c = fjord_guest::rpc::Client::new(fjord_guest::rpc::Target::topic("compute"));
    /// let p = c.prepare().server("node1").version("5.0").build();
    /// assert_eq!(p.target().version.as_deref(), Some("5.0"));
    /// ```
    pub fn prepare(&self) -> Prepare {
        Prepare {
            client: self.clone(),
        }
    }

    /// Calls `method` with `args` (a struct or map: its fields are the keyword arguments) and
    /// waits for the result.
    ///
    /// ```ignore
    /// let sum: i64 = Client::new(Target::topic("test")).call("add", &serde_json::json!({"a": 2, "b": 3}))?;
    /// ```
    pub fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        args: &impl Serialize,
    ) -> Result<T, Error> {
        let args = encode(args)?;
        let text = import::call(&self.wit_target(), method, &args, &self.options())?;
        serde_json::from_str(&text).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Casts `method` with `args`: returns once the broker has it (a fanout cast when the
    /// target says so).
    ///
    /// ```ignore
    /// Client::new(Target::topic("compute").server("node1")).cast("build_and_run_instance", &args)?;
    /// ```
    pub fn cast(&self, method: &str, args: &impl Serialize) -> Result<(), Error> {
        let args = encode(args)?;
        import::cast(&self.wit_target(), method, &args, &self.options())?;
        Ok(())
    }

    fn wit_target(&self) -> import::Target {
        let t = &self.target;
        import::Target {
            topic: t.topic.clone(),
            server: t.server.clone(),
            exchange: t.exchange.clone(),
            namespace: t.namespace.clone(),
            version: t.version.clone(),
            fanout: t.fanout,
        }
    }

    fn options(&self) -> import::CallOptions {
        import::CallOptions {
            timeout: self.timeout.map(|t| t.as_secs_f64()),
            context: self.context.clone(),
        }
    }
}

/// `args` as a JSON object; `()` is no arguments.
fn encode(args: &impl Serialize) -> Result<String, Error> {
    match serde_json::to_value(args).map_err(|e| Error::Encode(e.to_string()))? {
        serde_json::Value::Null => Ok("{}".into()),
        v @ serde_json::Value::Object(_) => Ok(v.to_string()),
        other => Err(Error::Encode(format!(
            "keyword arguments must be a struct or map, not {other}"
        ))),
    }
}

/// A [`Client`] being changed by `prepare()`; call or cast on it directly, or [`Prepare::build`]
/// a client to keep.
///
/// ```
/// use fjord_guest::rpc::{Client, Target};
/// let c = Client::new(Target::topic("compute")).prepare().fanout(true).build();
/// assert!(c.target().fanout);
/// ```
#[derive(Debug, Clone)]
pub struct Prepare {
    client: Client,
}

impl Prepare {
    /// One server of the topic.
    ///
    /// ```
    /// # use fjord_guest::rpc::{Client, Target};
    /// let c = Client::new(Target::topic("compute")).prepare().server("node1").build();
    /// assert_eq!(c.target().server.as_deref(), Some("node1"));
    /// ```
    pub fn server(mut self, server: impl Into<String>) -> Prepare {
        self.client.target.server = Some(server.into());
        self
    }

    /// The RPC version the call needs.
    ///
    /// ```
    /// # use fjord_guest::rpc::{Client, Target};
    /// let c = Client::new(Target::topic("compute")).prepare().version("5.0").build();
    /// assert_eq!(c.target().version.as_deref(), Some("5.0"));
    /// ```
    pub fn version(mut self, version: impl Into<String>) -> Prepare {
        self.client.target.version = Some(version.into());
        self
    }

    /// The endpoint namespace.
    ///
    /// ```
    /// # use fjord_guest::rpc::{Client, Target};
    /// let c = Client::new(Target::topic("compute")).prepare().namespace("admin").build();
    /// assert_eq!(c.target().namespace.as_deref(), Some("admin"));
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Prepare {
        self.client.target.namespace = Some(namespace.into());
        self
    }

    /// The exchange, instead of the host's control exchange.
    ///
    /// ```
    /// # use fjord_guest::rpc::{Client, Target};
    /// let c = Client::new(Target::topic("compute")).prepare().exchange("nova").build();
    /// assert_eq!(c.target().exchange.as_deref(), Some("nova"));
    /// ```
    pub fn exchange(mut self, exchange: impl Into<String>) -> Prepare {
        self.client.target.exchange = Some(exchange.into());
        self
    }

    /// Cast to every server of the topic.
    ///
    /// ```
    /// # use fjord_guest::rpc::{Client, Target};
    /// assert!(Client::new(Target::topic("t")).prepare().fanout(true).build().target().fanout);
    /// ```
    pub fn fanout(mut self, fanout: bool) -> Prepare {
        self.client.target.fanout = fanout;
        self
    }

    /// How long a call waits; the host caps it by the time left in the call being served.
    ///
    /// ```
    /// # use fjord_guest::rpc::{Client, Target};
    /// let p = Client::new(Target::topic("t")).prepare().timeout(std::time::Duration::from_secs(2));
    /// # let _ = p;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Prepare {
        self.client.timeout = Some(timeout);
        self
    }

    /// Send `context` (a struct or map) instead of the served call's context.
    ///
    /// ```
    /// # use fjord_guest::rpc::{Client, Target};
    /// let p = Client::new(Target::topic("t")).prepare().context(&serde_json::json!({"user_id": "alice"}));
    /// assert!(p.is_ok());
    /// ```
    pub fn context(mut self, context: &impl Serialize) -> Result<Prepare, Error> {
        self.client.context = Some(encode(context)?);
        Ok(self)
    }

    /// The client as prepared.
    ///
    /// ```
    /// # use fjord_guest::rpc::{Client, Target};
    /// let c = Client::new(Target::topic("t")).prepare().build();
    /// assert_eq!(c.target().topic, "t");
    /// ```
    pub fn build(self) -> Client {
        self.client
    }

    /// [`Client::call`] on the prepared client.
    ///
    /// ```ignore
    /// let free: u64 = compute.prepare().server("node1").call("free_ram_mb", &())?;
    /// ```
    pub fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        args: &impl Serialize,
    ) -> Result<T, Error> {
        self.client.call(method, args)
    }

    /// [`Client::cast`] on the prepared client.
    ///
    /// ```ignore
    /// compute.prepare().server("node1").cast("build_and_run_instance", &args)?;
    /// ```
    pub fn cast(&self, method: &str, args: &impl Serialize) -> Result<(), Error> {
        self.client.cast(method, args)
    }
}
