//! What the host gives every guest (`wit/endpoint`): the request context of the call, the log,
//! the `remote-error` type, and `failure.raise` (the exception a guest is about to trap with).

use crate::dispatch::usable_remote_name;
use crate::guest_log;
use crate::sandbox::{GuestState, Raised};
use serde_json::{Map, Value};
use wasmtime::component::{HasSelf, Linker};

wasmtime::component::bindgen!({
    path: "../wit/endpoint",
    world: "imports",
    // An outgoing call waits for its reply without blocking a thread.
    imports: { "fjord:endpoint/rpc": async },
});

use crate::outgoing::{CallSlot, Served, DEFAULT_MAX_DEPTH};
use fjord::endpoint::{context, failure, log, rpc, types};
use std::sync::Arc;

/// The longest exception message a guest may report through `failure.raise`; the rest is cut (at
/// a character boundary). The reply limit (`max_reply_kib`) still applies to what is kept.
pub const MAX_RAISED_MESSAGE: usize = 64 * 1024;

/// The call a store serves: which endpoint and method, and the caller's context.
#[derive(Debug, Default)]
pub struct CallInfo {
    pub endpoint: String,
    pub method: String,
    pub context: Map<String, Value>,
    /// The call's in-flight slot, lent back while the guest waits on an outgoing call.
    pub slot: Option<Arc<CallSlot>>,
}

impl CallInfo {
    pub fn request_id(&self) -> Option<&str> {
        self.context.get("request_id").and_then(Value::as_str)
    }

    /// The first of `keys` that holds a string.
    fn first_str(&self, keys: &[&str]) -> Option<String> {
        keys.iter()
            .find_map(|k| self.context.get(*k).and_then(Value::as_str))
            .map(str::to_string)
    }
}

pub fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    Imports::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}

/// Types only (`remote-error`); the host reads it in [`crate::dispatch`].
impl types::Host for GuestState {}

impl context::Host for GuestState {
    fn request_id(&mut self) -> Option<String> {
        self.call.first_str(&["request_id"])
    }

    fn user(&mut self) -> Option<String> {
        self.call.first_str(&["user_id", "user"])
    }

    fn project(&mut self) -> Option<String> {
        self.call.first_str(&["project_id", "project", "tenant"])
    }

    fn get(&mut self, key: String) -> Option<String> {
        self.call.context.get(&key).map(Value::to_string)
    }

    fn keys(&mut self) -> Vec<String> {
        self.call.context.keys().cloned().collect()
    }
}

impl log::Host for GuestState {
    /// Logs `message` tagged with the call, within the call's share of the log
    /// (`guest_log::CAPTURE_BYTES`): the rest is dropped and counted, for one warning at the end.
    fn log(&mut self, level: log::Level, message: String) {
        let kept = self.log.take(&message);
        guest_log::write(&self.call, None, level, kept);
    }
}

impl failure::Host for GuestState {
    /// Records the exception the guest is failing with, for the trap that follows (see
    /// `Sandbox::call`), and logs its traceback tagged with the call. Everything here comes from
    /// the guest: unusable names are logged and ignored (the trap stays a `GuestTrap`), the
    /// message is cut to [`MAX_RAISED_MESSAGE`], the traceback counts against the call's log
    /// share, and only the first report of a call is kept.
    fn raise(&mut self, error: types::RemoteError, traceback: String) {
        let request_id = self.call.request_id().unwrap_or("-");
        if self.raised.is_some() {
            tracing::debug!(
                endpoint = %self.call.endpoint, method = %self.call.method, request_id,
                "the guest reported a second exception; the first is kept"
            );
            return;
        }
        if !usable_remote_name(&error.module) || !usable_remote_name(&error.class) {
            tracing::warn!(
                endpoint = %self.call.endpoint, method = %self.call.method, request_id,
                "the guest reported an exception with an unusable module or class \
                 (empty, over 255 bytes, or with whitespace); ignored"
            );
            return;
        }
        let kept = self.log.take(&traceback);
        if !kept.is_empty() {
            guest_log::write(&self.call, Some("traceback"), log::Level::Error, kept);
        }
        let message = guest_log::prefix(&error.message, MAX_RAISED_MESSAGE).to_string();
        self.raised = Some(Raised {
            module: error.module,
            class: error.class,
            message,
        });
    }
}

impl GuestState {
    /// What an outgoing call sends ([`crate::outgoing::plan`]), and the client to send it with.
    fn plan(
        &self,
        target: rpc::Target,
        method: String,
        args: &str,
        options: &rpc::CallOptions,
    ) -> Result<(Arc<crate::outgoing::Outgoing>, crate::outgoing::Plan), rpc::CallError> {
        let rpc = &self.rpc;
        let served = Served {
            call: &self.call,
            grants: &rpc.grants,
            deadline: rpc.deadline,
            max_depth: rpc
                .outgoing
                .as_ref()
                .map_or(DEFAULT_MAX_DEPTH, |o| o.max_depth()),
        };
        let planned = crate::outgoing::plan(
            &served,
            target,
            method,
            args,
            options,
            std::time::Instant::now(),
        );
        let request_id = self.call.request_id().unwrap_or("-");
        let plan = planned.inspect_err(|e| {
            tracing::warn!(
                endpoint = %self.call.endpoint, method = %self.call.method, request_id,
                "outgoing call refused: {e:?}"
            );
        })?;
        let outgoing = rpc.outgoing.clone().ok_or_else(|| {
            rpc::CallError::Unavailable("this sandbox has no client connection".into())
        })?;
        tracing::debug!(
            endpoint = %self.call.endpoint, method = %self.call.method, request_id,
            "outgoing {} {} to {}", if plan.target.fanout { "fanout cast" } else { "call/cast" },
            plan.method, plan.target.routing_key()
        );
        Ok((outgoing, plan))
    }
}

impl rpc::Host for GuestState {
    /// Sends a call and waits for its reply, the call's in-flight slot lent back meanwhile.
    async fn call(
        &mut self,
        target: rpc::Target,
        method: String,
        args: String,
        options: rpc::CallOptions,
    ) -> Result<String, rpc::CallError> {
        let (outgoing, plan) = self.plan(target, method, &args, &options)?;
        drop(args);
        let wait = outgoing.call(plan, self.rpc.max_result_bytes);
        match self.call.slot.clone() {
            Some(slot) => slot.lend_while(wait).await,
            None => wait.await,
        }
    }

    /// Sends a cast (or fanout cast); returns once the broker has it.
    async fn cast(
        &mut self,
        target: rpc::Target,
        method: String,
        args: String,
        options: rpc::CallOptions,
    ) -> Result<(), rpc::CallError> {
        let (outgoing, plan) = self.plan(target, method, &args, &options)?;
        drop(args);
        outgoing.cast(plan).await
    }
}
