//! What a guest may touch besides its own memory: nothing, unless its endpoint's config grants it.
//!
//! Denied always: sockets (TCP, UDP, name lookup), the host's stdin, stdout and stderr (guest output
//! is captured and logged), command-line arguments, writing to any file. Granted per endpoint:
//! read-only directories (`dirs`), named environment variables (`env`, `inherit_env`) and
//! key-value buckets (`keyvalue`, see [`crate::keyvalue`]) and the targets it may call or cast to
//! (`calls`, see [`crate::outgoing`]).
//! Clocks and random numbers are always available: they reveal nothing of the host.

use crate::guest_output::CapturedOutput;
use crate::outgoing::CallGrant;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime_wasi::{FsPerms, WasiCtx};

/// A host directory the guest sees, read-only, at `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
}

/// The capabilities of one endpoint's guests. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub dirs: Vec<DirGrant>,
    /// Environment variables, name and value, resolved when the config is read.
    pub env: Vec<(String, String)>,
    /// Key-value buckets the guest may open (`wasi:keyvalue`).
    pub keyvalue: Arc<[String]>,
    /// Targets it may call and cast to (`fjord:endpoint/rpc`).
    pub calls: Arc<[CallGrant]>,
}

impl Capabilities {
    /// The WASI context of one call: these grants, output into the given pipes, no network.
    pub fn wasi(&self, stdout: CapturedOutput, stderr: CapturedOutput) -> anyhow::Result<WasiCtx> {
        let mut builder = WasiCtx::builder();
        builder
            .stdout(stdout)
            .stderr(stderr)
            .envs(&self.env)
            // wasmtime's defaults deny every address and name lookup already; say so explicitly
            // so that a change of defaults cannot open the network.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        for dir in &self.dirs {
            builder
                .preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
                .map_err(|e| {
                    anyhow::anyhow!("cannot open granted directory {}: {e}", dir.host.display())
                })?;
        }
        Ok(builder.build())
    }
}
