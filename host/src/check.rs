//! `fjord-host check --config my.toml`: everything the host checks at start that needs no broker
//! (the config, the transport URL, every component's types, grants and duplicate methods), and
//! what each server will serve. A failure is the same one line the host prints when it refuses
//! to start.

use crate::config::Config;
use crate::sandbox::Sandbox;
use crate::server;
use fjord_oslo::topology::fanout_exchange_name;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// Checks the config at `path` and describes what it serves.
pub fn check(path: &Path) -> anyhow::Result<String> {
    let config = Config::load(path)?;
    // One call's worth of instance slots: nothing runs here, components are only compiled.
    let sandbox = Arc::new(Sandbox::for_calls(1)?);
    let servers = server::load_with(&sandbox, &config)?;
    let mut out = String::new();
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let _ = writeln!(out, "config {}: ok", shown.display());
    let _ = writeln!(
        out,
        "transport {} (from {})",
        config.transport_url, config.transport_from
    );
    match config.admin {
        Some(a) => {
            let _ = writeln!(out, "admin http://{a}/metrics, /healthz, /readyz");
        }
        None => {
            let _ = writeln!(out, "admin off");
        }
    }
    for (server, section) in servers.iter().zip(&config.servers) {
        let _ = writeln!(
            out,
            "server {} on exchange {} (queues {}, {}.{}, {} fanout)",
            server.name(),
            server.exchange,
            server.topic,
            server.topic,
            server.server,
            fanout_exchange_name(&server.topic),
        );
        for e in server.dispatcher.endpoints() {
            let mut methods: Vec<String> = e
                .methods
                .values()
                .map(|m| {
                    let params: Vec<&str> = m.params.iter().map(|p| p.name.as_str()).collect();
                    format!("{}({})", m.name, params.join(", "))
                })
                .collect();
            methods.sort_unstable();
            let _ = writeln!(
                out,
                "  {} version {} namespace {} from {}: {}",
                e.interface,
                e.version,
                e.namespace.as_deref().unwrap_or("-"),
                e.file.display(),
                methods.join(", ")
            );
            let grants = &e.capabilities;
            if !grants.calls.is_empty() {
                let calls: Vec<String> = grants.calls.iter().map(ToString::to_string).collect();
                let _ = writeln!(out, "    may call {}", calls.join(", "));
            }
            if !grants.keyvalue.is_empty() {
                let _ = writeln!(out, "    may open buckets {}", grants.keyvalue.join(", "));
            }
        }
        if section.control {
            let _ = writeln!(
                out,
                "  control endpoint version {} namespace {}: {}",
                crate::control::VERSION,
                crate::control::NAMESPACE,
                crate::control::METHODS.join(", ")
            );
        }
    }
    Ok(out)
}
