//! Test component `fjord:relay@1.0.0`: outgoing calls and casts, reported as they came back.

wit_bindgen::generate!({
    world: "relay-endpoint",
    path: "wit",
    with: { "fjord:endpoint/types@0.1.0": fjord_guest::types },
});

use exports::fjord::relay::relay::{Guest, Hop};
use fjord_guest::rpc::{self, CallError, Client, Target};
use fjord_guest::RemoteError;
use std::time::{Duration, Instant};

fn target(to: &Hop) -> Target {
    Target {
        topic: to.topic.clone(),
        server: to.server.clone(),
        exchange: None,
        namespace: to.namespace.clone(),
        version: to.version.clone(),
        fanout: to.fanout,
    }
}

fn wit_target(to: &Hop) -> fjord_guest::rpc::WitTarget {
    let t = target(to);
    fjord_guest::rpc::WitTarget {
        topic: t.topic,
        server: t.server,
        exchange: t.exchange,
        namespace: t.namespace,
        version: t.version,
        fanout: t.fanout,
    }
}

/// `"<case>: <text>"`, for the tests to match on.
fn shown(e: CallError) -> String {
    match e {
        CallError::Timeout(m) => format!("timeout: {m}"),
        CallError::Remote(r) => format!("remote: {}.{}: {}", r.module, r.class, r.message),
        CallError::NotAllowed(m) => format!("not-allowed: {m}"),
        CallError::Unavailable(m) => format!("unavailable: {m}"),
        CallError::BadArguments(m) => format!("bad-arguments: {m}"),
    }
}

struct Relay;

impl Guest for Relay {
    fn call(
        to: Hop,
        method: String,
        args: String,
        timeout: Option<f64>,
        context: Option<String>,
    ) -> Result<String, String> {
        // The raw import, so that any text (not only what serde writes) reaches the host.
        let options = rpc::CallOptions { timeout, context };
        rpc::raw::call(&wit_target(&to), &method, &args, &options).map_err(shown)
    }

    fn cast(to: Hop, method: String, args: String) -> Result<(), String> {
        let options = rpc::CallOptions {
            timeout: None,
            context: None,
        };
        rpc::raw::cast(&wit_target(&to), &method, &args, &options).map_err(shown)
    }

    fn forward(to: Hop, method: String, args: String) -> Result<String, RemoteError> {
        let args: serde_json::Value = serde_json::from_str(&args)
            .map_err(|e| RemoteError::builtin("ValueError", e.to_string()))?;
        let result: serde_json::Value = Client::new(target(&to)).call(&method, &args)?;
        Ok(result.to_string())
    }

    fn recurse(topic: String, depth: u32) -> Result<u32, String> {
        Client::new(Target::topic(topic.clone()))
            .call::<u32>(
                "recurse",
                &serde_json::json!({"topic": topic, "depth": depth.saturating_add(1)}),
            )
            .map_err(|e| format!("at depth {depth}: {e}"))
    }

    fn call_then_spin(
        to: Hop,
        method: String,
        args: String,
        spin_ms: u32,
    ) -> Result<String, String> {
        let options = rpc::CallOptions {
            timeout: None,
            context: None,
        };
        let result = rpc::raw::call(&wit_target(&to), &method, &args, &options).map_err(shown)?;
        let until = Instant::now() + Duration::from_millis(u64::from(spin_ms));
        let mut n = 0u64;
        while Instant::now() < until {
            n = n.wrapping_add(1);
        }
        Ok(format!("{result} after {n} spins"))
    }
}

export!(Relay);
