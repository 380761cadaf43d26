//! The built-in control endpoint, served by a `[[server]]` with `control = true`, in namespace
//! `fjord.control` version 1.0 (the seed's `ServerControlEndpoint`, grown a little):
//!
//! - `ping()` answers `"pong"`;
//! - `status()` answers what the server serves and its counters;
//! - `reload()` asks for a reload (as SIGHUP does) and answers at once; the outcome is logged;
//! - `stop()` answers, then stops the host gracefully (as SIGTERM does).
//!
//! From Python: `client.prepare(namespace='fjord.control', server='server1').call({}, 'ping')`.
//! Off by default: a caller that may reach the topic may stop the host.

use crate::endpoint::Endpoint;
use fjord_oslo::envelope::{JsonText, Request};
use fjord_oslo::failure::Failure;
use serde_json::{json, Map, Value};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::Notify;

pub const NAMESPACE: &str = "fjord.control";
pub const VERSION: &str = "1.0";
pub const METHODS: [&str; 4] = ["ping", "reload", "status", "stop"];

/// What the control endpoint acts on, installed once by `fjord-host` (absent in `check` and in
/// tests of the dispatcher: `stop` and `reload` then answer a failure).
pub struct Handles {
    pub stop: Arc<Notify>,
    pub reload: crate::reload::Trigger,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();
static STARTED: OnceLock<Instant> = OnceLock::new();

/// Installs the process' stop and reload handles.
pub fn install(handles: Handles) {
    let _ = STARTED.set(Instant::now());
    let _ = HANDLES.set(handles);
}

/// Whether `request` is addressed to the control endpoint.
pub fn is_for_control(request: &Request) -> bool {
    request.namespace.as_deref() == Some(NAMESPACE)
}

/// Checks a control call as oslo's dispatcher would: version, method, no arguments.
// The failure is what the caller gets.
#[allow(clippy::result_large_err)]
pub fn resolve(request: &Request) -> Result<(), Failure> {
    let version = request.version.as_deref().unwrap_or("1.0");
    match fjord_oslo::version::is_compatible(VERSION, version) {
        Ok(true) => {}
        Ok(false) => return Err(Failure::unsupported_version(version, &request.method)),
        Err(e) => {
            return Err(Failure::new(
                "ValueError",
                "builtins",
                format!("invalid RPC version {version:?}: {e}"),
            ))
        }
    }
    if !METHODS.contains(&request.method.as_str()) {
        return Err(Failure::no_such_method(&request.method));
    }
    if let Some(surplus) = request.args.keys().next() {
        return Err(Failure::type_error(format!(
            "{}() got an unexpected keyword argument '{surplus}'",
            request.method
        )));
    }
    Ok(())
}

/// Runs a resolved control call for the server `server` whose endpoints are `endpoints`.
// The failure is what the caller gets, as in the dispatcher.
#[allow(clippy::result_large_err)]
pub fn run(method: &str, server: &str, endpoints: &[Endpoint]) -> Result<JsonText, Failure> {
    let unavailable = || {
        Failure::new(
            "ControlUnavailable",
            crate::dispatch::FJORD_MODULE,
            format!("{method}() is not available in this process"),
        )
    };
    let value = match method {
        "ping" => json!("pong"),
        "status" => status(server, endpoints),
        "reload" => {
            let handles = HANDLES.get().ok_or_else(unavailable)?;
            handles
                .reload
                .send("control reload()".to_string())
                .map_err(|_| unavailable())?;
            json!("reload requested")
        }
        "stop" => {
            let handles = HANDLES.get().ok_or_else(unavailable)?;
            tracing::warn!("stop() called on the control endpoint of {server}: stopping");
            // A stored permit: the stop goes ahead once this reply is on its way.
            handles.stop.notify_one();
            json!("stopping")
        }
        other => return Err(Failure::no_such_method(other)),
    };
    JsonText::new(value.to_string()).map_err(|e| {
        Failure::new(
            crate::server::INTERNAL_CLASS,
            crate::dispatch::FJORD_MODULE,
            e.to_string(),
        )
    })
}

/// The server's endpoints and its counters (from the metrics registry).
fn status(server: &str, endpoints: &[Endpoint]) -> Value {
    let served: Vec<Value> = endpoints
        .iter()
        .map(|e| {
            let mut methods: Vec<&str> = e.methods.keys().map(String::as_str).collect();
            methods.sort_unstable();
            json!({
                "interface": e.interface,
                "version": e.version,
                "namespace": e.namespace,
                "file": e.file.display().to_string(),
                "methods": methods,
            })
        })
        .collect();
    let text = crate::metrics::get().encode();
    let mut calls = Map::new();
    let mut rejected = Map::new();
    let mine = format!("{{server=\"{}\"", escape(server));
    for line in text.lines() {
        let (map, rest) = if let Some(rest) = line.strip_prefix("fjord_calls_total") {
            (&mut calls, rest)
        } else if let Some(rest) = line.strip_prefix("fjord_rejected_total") {
            (&mut rejected, rest)
        } else {
            continue;
        };
        if !rest.starts_with(&mine) {
            continue;
        }
        let key = if map_is_calls(line) {
            "outcome"
        } else {
            "reason"
        };
        let (Some(label), Some(count)) = (label(rest, key), count(rest)) else {
            continue;
        };
        let total = map.get(&label).and_then(Value::as_u64).unwrap_or(0);
        map.insert(label, json!(total.saturating_add(count)));
    }
    json!({
        "server": server,
        "endpoints": served,
        "calls": calls,
        "rejected": rejected,
        "calls_in_flight_in_host": crate::metrics::get().in_flight.get(),
        "uptime_seconds": STARTED.get().map_or(0, |s| s.elapsed().as_secs()),
    })
}

fn map_is_calls(line: &str) -> bool {
    line.starts_with("fjord_calls_total")
}

/// The value of label `key` in `{a="x",key="y"} 3`.
fn label(rest: &str, key: &str) -> Option<String> {
    let start = rest.find(&format!("{key}=\""))? + key.len() + 2;
    let end = rest.get(start..)?.find('"')? + start;
    rest.get(start..end).map(str::to_string)
}

/// The sample value of `{...} 3`.
fn count(rest: &str) -> Option<u64> {
    rest.rsplit(' ').next()?.parse().ok()
}

/// A label value as the text format writes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_counts_are_read_back() {
        let rest = "{server=\"t.s\",endpoint=\"e\",method=\"add\",outcome=\"ok\"} 7";
        assert_eq!(label(rest, "outcome").as_deref(), Some("ok"));
        assert_eq!(count(rest), Some(7));
    }
}
