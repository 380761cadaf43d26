//! The compute half of the nova example (`wit/compute/compute.wit`): one compute node, whose
//! host name and RAM come from its env and whose instances are kept in the `compute` bucket.
//!
//! ```toml
//! [[server]]
//! topic = "compute"
//! server = "node1"
//! endpoints = [{ path = "target/wasm32-wasip2/release/compute.wasm", keyvalue = ["compute"],
//!                env = { COMPUTE_HOST = "node1", COMPUTE_RAM_MB = "4096" } }]
//! ```

wit_bindgen::generate!({
    world: "compute-endpoint",
    path: "../../wit/compute",
});

use exports::fjord::compute::compute::{Guest, Instance, Resources};
use fjord_guest::keyvalue;

const BUCKET: &str = "compute";

/// The node's name and total RAM, from the endpoint's env.
fn node() -> Result<(String, u64), String> {
    let host = std::env::var("COMPUTE_HOST").map_err(|_| "COMPUTE_HOST is not set".to_string())?;
    let ram = std::env::var("COMPUTE_RAM_MB")
        .map_err(|_| "COMPUTE_RAM_MB is not set".to_string())?
        .parse::<u64>()
        .map_err(|e| format!("COMPUTE_RAM_MB: {e}"))?;
    Ok((host, ram))
}

struct Compute;

impl Guest for Compute {
    fn free_resources() -> Result<Resources, String> {
        let (host, ram) = node()?;
        let used = keyvalue::open(BUCKET)?
            .get_u64(&format!("{host}/used_ram_mb"))?
            .unwrap_or(0);
        Ok(Resources {
            free_ram_mb: ram.saturating_sub(used),
            host,
        })
    }

    fn build_and_run_instance(instance: Instance) -> Result<(), String> {
        let (host, _) = node()?;
        let bucket = keyvalue::open(BUCKET)?;
        bucket.set(
            &format!("{host}/instance/{}", instance.name),
            instance.ram_mb.to_string(),
        )?;
        bucket.increment(&format!("{host}/used_ram_mb"), instance.ram_mb)?;
        fjord_guest::info!("built {} ({} MB) on {host}", instance.name, instance.ram_mb);
        Ok(())
    }

    fn instances() -> Result<Vec<String>, String> {
        let (host, _) = node()?;
        let prefix = format!("{host}/instance/");
        let keys = keyvalue::open(BUCKET)?.keys()?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect())
    }
}

export!(Compute);
