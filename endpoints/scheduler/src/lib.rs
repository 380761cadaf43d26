//! The scheduler half of the nova example (`wit/scheduler/scheduler.wit`): an endpoint that is a
//! client of other services, as nova-scheduler is.
//!
//! ```toml
//! [[server]]
//! topic = "scheduler"
//! server = "sched1"
//! endpoints = [{ path = "target/wasm32-wasip2/release/scheduler.wasm", calls = ["compute.*"],
//!                env = { COMPUTE_HOSTS = "node1,node2" } }]
//! ```
//!
//! `COMPUTE_TOPIC` names the compute topic when it is not `compute`.

wit_bindgen::generate!({
    world: "scheduler-endpoint",
    path: "../../wit/scheduler",
    with: { "fjord:endpoint/types@0.1.0": fjord_guest::types },
});

// The compute endpoint's client, generated from its WIT: names, argument and result types and
// the version (5.0) are checked against `wit/compute` at compile time.
fjord_guest::generate_client!({ path: "../../wit/compute" });

use exports::fjord::scheduler::scheduler::{Destination, Guest, RequestSpec};
use fjord_guest::rpc::{Client, Target};
use fjord_guest::RemoteError;
use std::time::Duration;

/// How long one compute node may take to say what it has free: a node that is down must not
/// take the whole deadline.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

struct Scheduler;

impl Guest for Scheduler {
    fn select_destinations(spec: RequestSpec) -> Result<Destination, RemoteError> {
        if spec.name.is_empty() || spec.ram_mb == 0 {
            return Err(RemoteError::builtin(
                "ValueError",
                "the request spec needs a name and ram_mb > 0",
            ));
        }
        let hosts = std::env::var("COMPUTE_HOSTS").unwrap_or_default();
        let topic = std::env::var("COMPUTE_TOPIC").unwrap_or_else(|_| "compute".into());
        let compute = Compute::new(&Client::new(Target::topic(topic)));
        let mut best: Option<compute::Resources> = None;
        for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let asked = compute
                .prepare()
                .server(host)
                .timeout(ASK_TIMEOUT)
                .build()
                .free_resources();
            match asked {
                Ok(free) if free.free_ram_mb >= spec.ram_mb => {
                    if best
                        .as_ref()
                        .is_none_or(|b| free.free_ram_mb > b.free_ram_mb)
                    {
                        best = Some(free);
                    }
                }
                Ok(_) => {}
                Err(e) => fjord_guest::warn!("compute {host} did not answer: {e}"),
            }
        }
        let Some(chosen) = best else {
            return Err(RemoteError::new(
                "nova.exception",
                "NoValidHost",
                format!(
                    "No valid host was found. No compute node of [{hosts}] has {} MB free",
                    spec.ram_mb
                ),
            ));
        };
        let instance = compute::Instance {
            name: spec.name.clone(),
            ram_mb: spec.ram_mb,
        };
        compute
            .prepare()
            .server(&chosen.host)
            .build()
            .cast_build_and_run_instance(&instance)?;
        fjord_guest::info!("{} goes to {}", spec.name, chosen.host);
        Ok(Destination {
            host: chosen.host,
            free_ram_mb: chosen.free_ram_mb,
        })
    }
}

export!(Scheduler);
