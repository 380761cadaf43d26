//! Calls and casts a guest makes (`fjord:endpoint/rpc`): an endpoint that is a client of other
//! services, as every OpenStack service is.
//!
//! What to send is decided by [`plan`], a plain function (grants, names, arguments, context,
//! call depth, the timeout left), tested without a broker; [`Outgoing`] sends the plan through
//! the host's own client connection ([`fjord_client::Transport`], with its reply queue and its
//! reconnection) and maps the outcome onto `call-error`.
//!
//! - **Grants**: denied unless the endpoint's `calls` lists the target ([`CallGrant`]).
//! - **Deadline**: the timeout of an outgoing call is capped by the time left in the call being
//!   served; waiting costs no CPU (the guest is suspended in an async host call).
//! - **Context**: the served call's context goes on unless the guest gives one; `global_request_id`
//!   is set to the served call's (or its `request_id`), as oslo services do, so one request can be
//!   followed through every service's log.
//! - **No deadlock**: while a guest waits for a reply, its call lends its in-flight slot back to
//!   the host ([`CallSlot`]), and only requests from outside a chain queue for entry
//!   ([`InFlight`]), so a chain that comes back into the same host always finds a slot; a chain
//!   deeper than `max_call_depth` (a guest calling itself) fails with `not-allowed`.

use crate::config::Config;
use crate::delivery::json_kind;
use crate::guest_api::fjord::endpoint::rpc::{self, CallError, CallOptions, RemoteFailure};
use crate::guest_api::CallInfo;
use anyhow::Context as _;
use fjord_client::{RpcClient, RpcError, Transport, TransportError, TransportUrl};
use fjord_oslo::topology::{fanout_exchange_name, short_string};
use fjord_oslo::Target;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The context key carrying how many outgoing calls deep a request is. oslo ignores keys it does
/// not know, so Python services pass it through untouched (or drop it, ending the count).
pub const DEPTH_KEY: &str = "fjord_call_depth";
/// The default `max_call_depth`: a chain of calls through fjord endpoints at most this deep.
pub const DEFAULT_MAX_DEPTH: u32 = 8;

/// One entry of an endpoint's `calls`: `"topic"` (the topic's round-robin queue and fanout),
/// `"topic.server"` (that server), `"topic.*"` (the topic and any of its servers), or `"*"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallGrant {
    /// None: any topic.
    topic: Option<String>,
    servers: Servers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Servers {
    /// Only the topic itself (no server).
    None,
    Any,
    Named(String),
}

impl CallGrant {
    /// Parses one `calls` entry; the error says what is wrong with it.
    ///
    /// ```
    /// use fjord_host::outgoing::CallGrant;
    /// assert!(CallGrant::parse("compute.*").is_ok());
    /// assert!(CallGrant::parse("").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<CallGrant, String> {
        if text == "*" {
            return Ok(CallGrant {
                topic: None,
                servers: Servers::Any,
            });
        }
        // Server names are often host names with dots; topics rarely have them.
        let (topic, servers) = match text.split_once('.') {
            None => (text, Servers::None),
            Some((topic, "*")) => (topic, Servers::Any),
            Some((topic, server)) => (topic, Servers::Named(server.to_string())),
        };
        if topic.is_empty() || topic.contains('*') || text.chars().any(char::is_whitespace) {
            return Err(format!(
                "{text:?} is not a target: use \"topic\", \"topic.server\", \"topic.*\" or \"*\""
            ));
        }
        if matches!(&servers, Servers::Named(s) if s.is_empty() || s.contains('*')) {
            return Err(format!(
                "{text:?}: a server is a name or `*` (\"topic.*\"), not a pattern"
            ));
        }
        Ok(CallGrant {
            topic: Some(topic.to_string()),
            servers,
        })
    }

    /// Whether this grant lets a guest send to `target` (any exchange).
    pub fn allows(&self, target: &Target) -> bool {
        if self.topic.as_deref().is_some_and(|t| t != target.topic) {
            return false;
        }
        match (&self.servers, &target.server) {
            (Servers::Any, _) | (Servers::None, None) => true,
            (Servers::Named(granted), Some(server)) => granted == server,
            _ => false,
        }
    }
}

impl fmt::Display for CallGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.topic, &self.servers) {
            (None, _) => f.write_str("*"),
            (Some(t), Servers::None) => f.write_str(t),
            (Some(t), Servers::Any) => write!(f, "{t}.*"),
            (Some(t), Servers::Named(s)) => write!(f, "{t}.{s}"),
        }
    }
}

/// What an outgoing call or cast sends, decided by [`plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub target: Target,
    pub method: String,
    pub args: Map<String, Value>,
    pub context: Map<String, Value>,
    /// How long to wait (a call) or to try sending (a cast): never past the served call's deadline.
    pub timeout: Duration,
}

/// What [`plan`] needs to know about the call being served.
pub struct Served<'a> {
    pub call: &'a CallInfo,
    pub grants: &'a [CallGrant],
    /// When the served call's deadline passes.
    pub deadline: Instant,
    pub max_depth: u32,
}

/// Decides what a guest's outgoing call sends, or why it cannot be sent. Everything here comes
/// from the guest (or, for the context and depth, from the wire) and is checked.
pub fn plan(
    served: &Served<'_>,
    target: rpc::Target,
    method: String,
    args: &str,
    options: &CallOptions,
    now: Instant,
) -> Result<Plan, CallError> {
    let target = Target {
        exchange: target.exchange,
        topic: target.topic,
        server: target.server,
        namespace: target.namespace,
        version: target.version,
        fanout: target.fanout,
    };
    check_names(&target, &method)?;
    let shown = shown(&target);
    if !served.grants.iter().any(|g| g.allows(&target)) {
        let granted: Vec<String> = served.grants.iter().map(ToString::to_string).collect();
        return Err(CallError::NotAllowed(format!(
            "{} may not call {shown} (calls = {granted:?})",
            served.call.endpoint
        )));
    }
    let args = match serde_json::from_str::<Value>(args) {
        Ok(Value::Object(args)) => args,
        Ok(other) => {
            return Err(CallError::BadArguments(format!(
                "args must be a JSON object of keyword arguments, not {}",
                json_kind(&other)
            )))
        }
        Err(e) => return Err(CallError::BadArguments(format!("args are not JSON: {e}"))),
    };
    let depth = depth(&served.call.context);
    if depth >= served.max_depth {
        return Err(CallError::NotAllowed(format!(
            "{shown}: the request is already {depth} calls deep, the most max_call_depth \
             allows (a guest calling itself?)"
        )));
    }
    let mut context = match &options.context {
        None => served.call.context.clone(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(context)) => context,
            Ok(other) => {
                return Err(CallError::BadArguments(format!(
                    "the context must be a JSON object, not {}",
                    json_kind(&other)
                )))
            }
            Err(e) => {
                return Err(CallError::BadArguments(format!(
                    "the context is not JSON: {e}"
                )))
            }
        },
    };
    let global = ["global_request_id", "request_id"]
        .iter()
        .find_map(|k| served.call.context.get(*k).filter(|v| v.is_string()));
    if let (Some(global), None | Some(Value::Null)) = (global, context.get("global_request_id")) {
        context.insert("global_request_id".into(), global.clone());
    }
    context.insert(DEPTH_KEY.into(), Value::from(depth.saturating_add(1)));

    let left = served.deadline.saturating_duration_since(now);
    let timeout = match options.timeout {
        None => left,
        Some(t) if t.is_finite() && t > 0.0 => {
            Duration::try_from_secs_f64(t).map_or(left, |t| t.min(left))
        }
        Some(t) => {
            return Err(CallError::BadArguments(format!(
                "timeout must be a positive number of seconds, not {t}"
            )))
        }
    };
    if timeout.is_zero() {
        return Err(CallError::Timeout(format!(
            "{shown}: no time is left before the deadline of the call being served"
        )));
    }
    Ok(Plan {
        target,
        method,
        args,
        context,
        timeout,
    })
}

/// The target and method must make AMQP names RabbitMQ accepts.
fn check_names(target: &Target, method: &str) -> Result<(), CallError> {
    let bad = |e: String| Err(CallError::BadArguments(e));
    if target.topic.is_empty() {
        return bad("the target has no topic".into());
    }
    if method.is_empty() {
        return bad("the method name is empty".into());
    }
    if target.server.as_deref() == Some("") {
        return bad("the target's server is empty (none means any server)".into());
    }
    let checks = [
        ("routing key", target.routing_key()),
        ("fanout exchange", fanout_exchange_name(&target.topic)),
        ("exchange", target.exchange.clone().unwrap_or_default()),
    ];
    for (what, name) in checks {
        if let Err(e) = short_string(what, &name) {
            return bad(e.to_string());
        }
    }
    Ok(())
}

/// `topic`, `topic.server` or `fanout topic`, for messages.
fn shown(target: &Target) -> String {
    if target.fanout {
        format!("fanout {}", target.topic)
    } else {
        target.routing_key()
    }
}

/// How many outgoing calls deep a request is: what the wire says, 0 when absent or not
/// a non-negative integer.
pub fn depth(context: &Map<String, Value>) -> u32 {
    context
        .get(DEPTH_KEY)
        .and_then(Value::as_u64)
        .map_or(0, |d| u32::try_from(d).unwrap_or(u32::MAX))
}

/// The host's client side: one connection (with its reply queue) shared by every guest's
/// outgoing calls, opened at start when some endpoint is granted `calls`, else by the first
/// outgoing call (an endpoint granted `calls` by a reload).
pub struct Outgoing {
    url: TransportUrl,
    exchange: String,
    max_depth: u32,
    transport: tokio::sync::OnceCell<Transport>,
}

impl Outgoing {
    /// The client side for `config`'s broker; connects now when some endpoint is granted `calls`,
    /// so that a host that cannot make them does not start.
    pub async fn open(config: &Config) -> anyhow::Result<Arc<Outgoing>> {
        let outgoing = Arc::new(Outgoing {
            url: config.transport_url.clone(),
            exchange: config.control_exchange.clone(),
            max_depth: config.max_call_depth,
            transport: tokio::sync::OnceCell::new(),
        });
        let granted = config
            .servers
            .iter()
            .flat_map(|s| &s.endpoints)
            .any(|e| !e.capabilities.calls.is_empty());
        if granted {
            outgoing.transport().await.with_context(|| {
                format!(
                    "cannot open the connection for endpoints' outgoing calls to {}",
                    config.transport_url
                )
            })?;
        }
        Ok(outgoing)
    }

    /// The connection, opened on first use; a failed attempt is tried again by the next call.
    async fn transport(&self) -> Result<&Transport, TransportError> {
        self.transport
            .get_or_try_init(|| async {
                let transport = Transport::connect_with_exchange(&self.url, &self.exchange).await?;
                tracing::info!(
                    "outgoing calls: client connection open, replies on {}",
                    transport.reply_queue_name()
                );
                Ok(transport)
            })
            .await
    }

    /// The client for `plan`, once connected within its timeout.
    async fn client(&self, plan: &Plan, shown: &str) -> Result<RpcClient, CallError> {
        let transport = match tokio::time::timeout(plan.timeout, self.transport()).await {
            Ok(Ok(transport)) => transport.clone(),
            Ok(Err(e)) => {
                return Err(CallError::Unavailable(format!(
                    "{shown}: cannot open the host's client connection to {}: {e}",
                    self.url
                )))
            }
            Err(_) => {
                return Err(CallError::Timeout(format!(
                    "{shown}: the host's client connection to {} did not open in time",
                    self.url
                )))
            }
        };
        Ok(RpcClient::new(transport, plan.target.clone())
            .prepare()
            .timeout(plan.timeout)
            .build())
    }

    pub fn max_depth(&self) -> u32 {
        self.max_depth
    }

    /// Sends a planned call and waits for its reply, as JSON text.
    pub async fn call(&self, plan: Plan, max_result_bytes: usize) -> Result<String, CallError> {
        let shown = shown(&plan.target);
        let client = self.client(&plan, &shown).await?;
        let result: Value = client
            .call(&plan.context, &plan.method, plan.args)
            .await
            .map_err(|e| call_error(&shown, e))?;
        let text = result.to_string();
        if text.len() > max_result_bytes {
            return Err(CallError::Unavailable(format!(
                "{shown}: the reply is {} bytes, more than the {max_result_bytes} bytes the \
                 endpoint accepts (max_request_kib)",
                text.len(),
            )));
        }
        Ok(text)
    }

    /// Sends a planned cast (a fanout cast when the target says so).
    pub async fn cast(&self, plan: Plan) -> Result<(), CallError> {
        let shown = shown(&plan.target);
        self.client(&plan, &shown)
            .await?
            .cast(&plan.context, &plan.method, plan.args)
            .await
            .map_err(|e| call_error(&shown, e))
    }
}

/// The `call-error` a guest sees for what the client reported.
fn call_error(shown: &str, error: RpcError) -> CallError {
    match error {
        RpcError::Timeout(e) => CallError::Timeout(format!("{shown}: {e}")),
        RpcError::CastTimeout(_) => CallError::Timeout(format!("{shown}: {error}")),
        RpcError::Remote(e) => CallError::Remote(RemoteFailure {
            class: e.class,
            module: e.module,
            message: e.message,
        }),
        RpcError::InvalidTarget(_)
        | RpcError::InvalidArguments(_)
        | RpcError::InvalidTimeout(_) => CallError::BadArguments(format!("{shown}: {error}")),
        other => CallError::Unavailable(format!("{shown}: {other}")),
    }
}

/// A call's in-flight slot, which it lends back to the host while its guest waits for a reply.
///
/// Calls running guest code at once are bounded (`executor_thread_pool_size`): each holds a
/// permit of [`InFlight::running`]. A call waiting on an outgoing call gives its permit back, so
/// the calls it waits for (perhaps served by this very host) can run, and takes one again when
/// the reply is in. A permit is therefore only ever held by a call that is making progress.
#[derive(Debug)]
pub struct CallSlot {
    running: Mutex<Option<OwnedSemaphorePermit>>,
    pool: Arc<Semaphore>,
}

impl CallSlot {
    /// Runs `wait` (a guest waiting for a reply) with the call's permit lent back. If `wait` is
    /// abandoned (the call's deadline), nothing leaks: the permit is simply not taken again.
    pub async fn lend_while<F: std::future::Future>(&self, wait: F) -> F::Output {
        // The permit goes back to the pool here, before the wait, not when `wait` is done.
        let lent = self.take().is_some();
        let out = wait.await;
        if lent {
            // Closed only when the host stops; then the call finishes without a permit.
            if let Ok(permit) = self.pool.clone().acquire_owned().await {
                *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(permit);
            }
        }
        out
    }

    /// The permit, if the call holds it: the server trades it for a reply slot at the end.
    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// The host's in-flight bounds, both `executor_thread_pool_size`:
/// - `running`: calls running guest code (a call waiting on an outgoing call lends its permit
///   back, see [`CallSlot`]);
/// - `entries`: requests that entered the host from outside a fjord chain (context depth 0),
///   running or waiting. A request an endpoint sent (depth > 0) needs no entry: it is what some
///   waiting call waits for, so it must never queue behind new requests. Without this bound new
///   requests could fill the host with waiting calls; with it, calls a chain makes always find
///   room, and a request waiting for an entry holds no permit (and stays unacknowledged, so
///   the prefetch count keeps the rest in the broker).
#[derive(Debug)]
pub struct InFlight {
    pub running: Arc<Semaphore>,
    pub entries: Arc<Semaphore>,
}

impl InFlight {
    pub fn new(calls: usize) -> Self {
        InFlight {
            running: Arc::new(Semaphore::new(calls)),
            entries: Arc::new(Semaphore::new(calls)),
        }
    }

    /// The slot of a call admitted with `permit`.
    pub fn slot(&self, permit: OwnedSemaphorePermit) -> CallSlot {
        CallSlot {
            running: Mutex::new(Some(permit)),
            pool: self.running.clone(),
        }
    }

    /// The entry a request of `context` needs before it runs, if it needs one (see above);
    /// while waiting for it, the call's running permit is lent back.
    pub async fn enter(
        &self,
        slot: &CallSlot,
        context: &Map<String, Value>,
    ) -> Option<OwnedSemaphorePermit> {
        if depth(context) > 0 {
            return None;
        }
        match self.entries.clone().try_acquire_owned() {
            Ok(entry) => Some(entry),
            Err(_) => slot
                .lend_while(self.entries.clone().acquire_owned())
                .await
                .ok(),
        }
    }
}

/// What one call may do with `fjord:endpoint/rpc`: the host's client and its endpoint's grants.
pub struct CallOutgoing {
    pub outgoing: Option<Arc<Outgoing>>,
    pub grants: Arc<[CallGrant]>,
    pub deadline: Instant,
    /// The longest reply handed to the guest, as JSON text: the endpoint's `max_request_kib`.
    pub max_result_bytes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served_call(context: Value) -> CallInfo {
        CallInfo {
            endpoint: "fjord:scheduler/scheduler@1.0.0".into(),
            method: "select_destinations".into(),
            context: context.as_object().cloned().unwrap_or_default(),
            slot: None,
        }
    }

    fn target(topic: &str, server: Option<&str>) -> rpc::Target {
        rpc::Target {
            topic: topic.into(),
            server: server.map(Into::into),
            exchange: None,
            namespace: None,
            version: None,
            fanout: false,
        }
    }

    fn options() -> CallOptions {
        CallOptions {
            timeout: None,
            context: None,
        }
    }

    fn grants(list: &[&str]) -> Vec<CallGrant> {
        list.iter().map(|g| CallGrant::parse(g).unwrap()).collect()
    }

    fn try_plan(
        call: &CallInfo,
        granted: &[&str],
        target: rpc::Target,
        args: &str,
        options: &CallOptions,
    ) -> Result<Plan, CallError> {
        let grants = grants(granted);
        let now = Instant::now();
        let served = Served {
            call,
            grants: &grants,
            deadline: now + Duration::from_secs(10),
            max_depth: DEFAULT_MAX_DEPTH,
        };
        plan(&served, target, "build".into(), args, options, now)
    }

    #[test]
    fn grants_name_topics_servers_and_wildcards() {
        let allowed = |grant: &str, topic: &str, server: Option<&str>| {
            let t = Target {
                topic: topic.into(),
                server: server.map(Into::into),
                ..Target::default()
            };
            CallGrant::parse(grant).unwrap().allows(&t)
        };
        assert!(allowed("compute", "compute", None));
        assert!(!allowed("compute", "compute", Some("host1")));
        assert!(allowed("compute.*", "compute", Some("host1")));
        assert!(allowed("compute.*", "compute", None));
        assert!(allowed(
            "compute.host1.example.org",
            "compute",
            Some("host1.example.org")
        ));
        assert!(!allowed("compute.host1", "compute", Some("host2")));
        assert!(!allowed("compute.*", "conductor", None));
        assert!(allowed("*", "anything", Some("at-all")));
        for bad in ["", ".x", "a.", "co*", "a.b*", "a b", "*.x"] {
            assert!(CallGrant::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            CallGrant::parse("compute.*").unwrap().to_string(),
            "compute.*"
        );
    }

    #[test]
    fn a_target_not_granted_is_not_allowed_and_named() {
        let call = served_call(serde_json::json!({}));
        let err = try_plan(
            &call,
            &["compute"],
            target("compute", Some("h1")),
            "{}",
            &options(),
        )
        .unwrap_err();
        let CallError::NotAllowed(why) = err else {
            panic!("{err:?}")
        };
        assert!(
            why.contains("compute.h1") && why.contains("[\"compute\"]"),
            "{why}"
        );
        let none = try_plan(&call, &[], target("compute", None), "{}", &options()).unwrap_err();
        assert!(matches!(none, CallError::NotAllowed(_)), "{none:?}");
    }

    #[test]
    fn the_context_goes_on_with_a_global_request_id_and_the_depth() {
        let call = served_call(serde_json::json!({"request_id": "req-1", "user_id": "alice"}));
        let plan = try_plan(
            &call,
            &["compute"],
            target("compute", None),
            "{\"a\": 1}",
            &options(),
        )
        .unwrap();
        assert_eq!(plan.context["request_id"], "req-1");
        assert_eq!(plan.context["global_request_id"], "req-1");
        assert_eq!(plan.context["user_id"], "alice");
        assert_eq!(plan.context[DEPTH_KEY], 1);
        assert_eq!(plan.args["a"], 1);

        // A given context is sent as given, plus the global id and the depth.
        let call = served_call(serde_json::json!({
            "request_id": "req-2", "global_request_id": "req-0", DEPTH_KEY: 3
        }));
        let given = CallOptions {
            timeout: None,
            context: Some("{\"user_id\": \"bob\"}".into()),
        };
        let plan = try_plan(&call, &["compute"], target("compute", None), "{}", &given).unwrap();
        assert_eq!(plan.context.get("request_id"), None);
        assert_eq!(plan.context["global_request_id"], "req-0");
        assert_eq!(plan.context["user_id"], "bob");
        assert_eq!(plan.context[DEPTH_KEY], 4);
    }

    #[test]
    fn a_chain_too_deep_is_not_allowed() {
        let call = served_call(serde_json::json!({ DEPTH_KEY: DEFAULT_MAX_DEPTH }));
        let err = try_plan(&call, &["*"], target("compute", None), "{}", &options()).unwrap_err();
        assert!(
            matches!(&err, CallError::NotAllowed(w) if w.contains("calls deep")),
            "{err:?}"
        );
        // What the wire says is checked: a depth that is not a count is none.
        let call = served_call(serde_json::json!({ DEPTH_KEY: "lots" }));
        let plan = try_plan(&call, &["*"], target("compute", None), "{}", &options()).unwrap();
        assert_eq!(plan.context[DEPTH_KEY], 1);
    }

    #[test]
    fn bad_arguments_are_named() {
        let call = served_call(serde_json::json!({}));
        let cases: [(rpc::Target, &str, CallOptions, &str); 7] = [
            (target("compute", None), "[1]", options(), "an array"),
            (target("compute", None), "{", options(), "not JSON"),
            (target("", None), "{}", options(), "no topic"),
            (
                target("compute", Some("")),
                "{}",
                options(),
                "server is empty",
            ),
            (target(&"c".repeat(300), None), "{}", options(), "255"),
            (
                target("compute", None),
                "{}",
                CallOptions {
                    timeout: Some(-1.0),
                    context: None,
                },
                "positive",
            ),
            (
                target("compute", None),
                "{}",
                CallOptions {
                    timeout: None,
                    context: Some("3".into()),
                },
                "context must be a JSON object",
            ),
        ];
        for (target, args, options, expect) in cases {
            let err = try_plan(&call, &["*"], target, args, &options).unwrap_err();
            assert!(
                matches!(&err, CallError::BadArguments(w) if w.contains(expect)),
                "{expect}: {err:?}"
            );
        }
    }

    #[test]
    fn the_timeout_is_capped_by_the_time_left() {
        let call = served_call(serde_json::json!({}));
        let grants = grants(&["compute"]);
        let now = Instant::now();
        let served = Served {
            call: &call,
            grants: &grants,
            deadline: now + Duration::from_secs(2),
            max_depth: DEFAULT_MAX_DEPTH,
        };
        let with = |timeout| CallOptions {
            timeout,
            context: None,
        };
        let plan_with = |options: &CallOptions, now| {
            plan(
                &served,
                target("compute", None),
                "m".into(),
                "{}",
                options,
                now,
            )
        };
        assert_eq!(
            plan_with(&with(None), now).unwrap().timeout,
            Duration::from_secs(2)
        );
        assert_eq!(
            plan_with(&with(Some(60.0)), now).unwrap().timeout,
            Duration::from_secs(2)
        );
        assert_eq!(
            plan_with(&with(Some(0.5)), now).unwrap().timeout,
            Duration::from_millis(500)
        );
        let late = plan_with(&with(None), now + Duration::from_secs(3)).unwrap_err();
        assert!(matches!(late, CallError::Timeout(_)), "{late:?}");
    }

    #[tokio::test]
    async fn a_waiting_call_lends_its_permit_back_and_takes_one_again() {
        let flight = InFlight::new(1);
        let permit = flight.running.clone().acquire_owned().await.unwrap();
        let slot = flight.slot(permit);
        assert_eq!(flight.running.available_permits(), 0);
        // While it waits, the one permit is free for the call it waits for.
        let during = slot
            .lend_while(async { flight.running.available_permits() })
            .await;
        assert_eq!(during, 1);
        assert_eq!(flight.running.available_permits(), 0);
        assert!(slot.take().is_some());
    }

    #[tokio::test]
    async fn only_requests_from_outside_a_chain_need_an_entry() {
        let flight = InFlight::new(1);
        let first = flight.slot(flight.running.clone().acquire_owned().await.unwrap());
        let outside = Map::new();
        let entry = flight.enter(&first, &outside).await;
        assert!(entry.is_some());
        // A request a chain sent (depth 1) runs although every entry is taken.
        let mut nested = Map::new();
        nested.insert(DEPTH_KEY.into(), Value::from(1));
        drop(first.take());
        let second = flight.slot(flight.running.clone().acquire_owned().await.unwrap());
        assert!(flight.enter(&second, &nested).await.is_none());
    }
}
