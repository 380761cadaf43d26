//! `my.toml`: the transport, and the RPC servers with the components that serve them.
//!
//! ```toml
//! transport_url = "rabbit://guest:guest@127.0.0.1:5672/"
//! control_exchange = "openstack"          # optional
//!
//! [[server]]
//! topic = "test"
//! server = "server1"
//! endpoints = [
//!   "target/wasm32-wasip2/release/calculator.wasm",
//!   { path = "greeter.wasm", namespace = "greet", deadline_ms = 2000, memory_mib = 32 },
//!   { path = "reader.wasm", dirs = [{ host = "data", guest = "/data" }],
//!     env = { GREETING = "hello" }, inherit_env = ["TZ"] },
//! ]
//! ```
//!
//! Per-endpoint limits and their defaults (see [`Limits::default`]):
//!
//! | key | limit | default |
//! |---|---|---|
//! | `deadline_ms` | wall-clock time of one call, instantiation included | 10000 (10 s) |
//! | `memory_mib` | linear memory of one call's instance | 64 MiB |
//! | `max_request_kib` | size of a request message body as received | 1024 (1 MiB) |
//! | `max_reply_kib` | size of the JSON result (or error message) of one call | 1024 (1 MiB) |
//!
//! Host-wide settings, at the top level (oslo's option names where oslo has one):
//!
//! | key | what | default |
//! |---|---|---|
//! | `executor_thread_pool_size` | calls that may run at once in the host (oslo's executor threads); 1 to 1024 | 64 |
//! | `kombu_missing_consumer_retry_timeout` | seconds a reply to a missing reply queue (or sent while reconnecting) is retried; 0 to 3600 | 3 (oslo: 60) |
//! | `max_call_depth` | how many outgoing calls deep one request may go through fjord endpoints; 1 to 64 | 8 |
//!
//! and in the transport URL, `?rabbit_qos_prefetch_count=N`: unacknowledged messages RabbitMQ may
//! push to each of the host's consumers (64 when unset; 0 means no limit, as in oslo).
//!
//! A topic, server or exchange name that would make an AMQP name longer than 255 bytes
//! (`<topic>_fanout_<32 hex digits>` is the longest) is refused here, naming the key.
//!
//! Capabilities are all denied by default (see [`crate::capabilities`]). `dirs` grants read-only
//! directories (`host` relative to this file; it must exist), `env` sets variables to the given
//! values (as Spin's `environment`), `inherit_env` passes the named variables from the host's own
//! environment (each must be set when the host starts). `keyvalue = ["default"]` grants buckets of
//! the `[keyvalue]` store (see [`crate::keyvalue::config`]). `calls = ["compute", "conductor.*"]`
//! grants outgoing calls and casts (`fjord:endpoint/rpc`) to those targets (see
//! [`crate::outgoing::CallGrant`]).

use crate::capabilities::{Capabilities, DirGrant};
use crate::keyvalue::config::{KeyvalueConfig, KeyvalueTable};
use crate::outgoing::CallGrant;
use crate::sandbox::Limits;
use anyhow::Context as _;
use fjord_oslo::topology::{check_server_names, short_string, DEFAULT_CONTROL_EXCHANGE};
use fjord_oslo::url::TransportUrl;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    transport_url: Option<String>,
    #[serde(default)]
    transport_url_file: Option<PathBuf>,
    #[serde(default)]
    admin: Option<AdminTable>,
    #[serde(default = "default_exchange")]
    control_exchange: String,
    #[serde(default = "default_in_flight")]
    executor_thread_pool_size: u32,
    #[serde(default = "default_reply_retry")]
    kombu_missing_consumer_retry_timeout: u64,
    #[serde(default = "default_max_call_depth")]
    max_call_depth: u32,
    #[serde(default, rename = "server")]
    servers: Vec<ServerConfig>,
    #[serde(default)]
    keyvalue: Option<KeyvalueTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminTable {
    listen: String,
}

/// The environment variable that, when set, gives the transport URL (over the config file's).
pub const TRANSPORT_URL_ENV: &str = "FJORD_TRANSPORT_URL";

fn default_exchange() -> String {
    DEFAULT_CONTROL_EXCHANGE.to_string()
}

/// oslo's threading executor runs up to 64 methods at once; so does the host by default.
pub const DEFAULT_IN_FLIGHT: u32 = 64;
/// The most calls a host may run at once: the sandbox reserves address space for twice as many
/// instances.
pub const MAX_IN_FLIGHT: u32 = 1024;
/// Unacknowledged deliveries per consumer when the URL does not say: what waits in memory while
/// every in-flight slot is busy (back-pressure stays in RabbitMQ).
pub const DEFAULT_PREFETCH: u16 = 64;
const DEFAULT_REPLY_RETRY_SECS: u64 = 3;
const MAX_REPLY_RETRY_SECS: u64 = 3600;
/// The longest `deadline_ms`: one day (a deadline is a point in time; it must stay one).
const MAX_DEADLINE_MS: u64 = 86_400_000;

fn default_in_flight() -> u32 {
    DEFAULT_IN_FLIGHT
}

fn default_max_call_depth() -> u32 {
    crate::outgoing::DEFAULT_MAX_DEPTH
}
/// The deepest chain `max_call_depth` may allow.
const MAX_CALL_DEPTH: u32 = 64;

fn default_reply_retry() -> u64 {
    DEFAULT_REPLY_RETRY_SECS
}

/// The whole configuration, paths resolved against the config file's directory.
#[derive(Debug)]
pub struct Config {
    pub transport_url: TransportUrl,
    /// Where the transport URL came from: `transport_url`, `transport_url_file <path>` or
    /// `FJORD_TRANSPORT_URL`.
    pub transport_from: String,
    /// The admin listener's address (`[admin] listen`), if any.
    pub admin: Option<std::net::SocketAddr>,
    pub control_exchange: String,
    /// Calls that may run at once in the host (`executor_thread_pool_size`).
    pub in_flight: u32,
    /// `basic.qos` prefetch count of each consumer; 0 = no limit (`rabbit_qos_prefetch_count`).
    pub prefetch: u16,
    /// How long a reply that cannot be delivered is retried
    /// (`kombu_missing_consumer_retry_timeout`).
    pub reply_retry: Duration,
    /// How many outgoing calls deep a request may go through fjord endpoints (`max_call_depth`).
    pub max_call_depth: u32,
    pub servers: Vec<ServerConfig>,
    /// `[keyvalue]`: where granted buckets live (see [`crate::keyvalue::config`]).
    pub keyvalue: KeyvalueConfig,
}

/// One RPC server: an oslo `Target(topic, server)` and the endpoints behind it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub topic: String,
    pub server: String,
    /// The exchange, when not the control exchange (oslo's `Target.exchange`).
    #[serde(default)]
    pub exchange: Option<String>,
    pub endpoints: Vec<EndpointConfig>,
    /// Serve the built-in control endpoint (namespace `fjord.control`) on this server too.
    #[serde(default)]
    pub control: bool,
}

/// A component file, written as its path or as a table with per-endpoint settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    pub path: PathBuf,
    pub namespace: Option<String>,
    pub limits: Limits,
    pub capabilities: Capabilities,
    /// Names of host environment variables to pass in, resolved by [`Config::parse`].
    inherit_env: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointTable {
    path: PathBuf,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    deadline_ms: Option<u64>,
    #[serde(default)]
    memory_mib: Option<usize>,
    #[serde(default)]
    max_request_kib: Option<usize>,
    #[serde(default)]
    max_reply_kib: Option<usize>,
    #[serde(default)]
    dirs: Vec<DirTable>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    inherit_env: Vec<String>,
    #[serde(default)]
    keyvalue: Vec<String>,
    #[serde(default)]
    calls: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirTable {
    host: PathBuf,
    guest: String,
}

impl<'de> Deserialize<'de> for EndpointConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EndpointVisitor;
        impl<'de> Visitor<'de> for EndpointVisitor {
            type Value = EndpointConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a .wasm path or a table { path = \"...\", namespace = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, path: &str) -> Result<EndpointConfig, E> {
                Ok(EndpointConfig {
                    path: path.into(),
                    namespace: None,
                    limits: Limits::default(),
                    capabilities: Capabilities::default(),
                    inherit_env: Vec::new(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EndpointConfig, A::Error> {
                let table = EndpointTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let calls = table
                    .calls
                    .iter()
                    .map(|g| {
                        CallGrant::parse(g).map_err(|e| de::Error::custom(format!("calls: {e}")))
                    })
                    .collect::<Result<Vec<_>, A::Error>>()?;
                let defaults = Limits::default();
                let kib = |v: Option<usize>, default| v.map_or(default, |k| k.saturating_mul(1024));
                Ok(EndpointConfig {
                    path: table.path,
                    namespace: table.namespace,
                    limits: Limits {
                        deadline: table
                            .deadline_ms
                            .map_or(defaults.deadline, Duration::from_millis),
                        memory_bytes: table
                            .memory_mib
                            .map_or(defaults.memory_bytes, |mib| mib.saturating_mul(1 << 20)),
                        max_request_bytes: kib(table.max_request_kib, defaults.max_request_bytes),
                        max_reply_bytes: kib(table.max_reply_kib, defaults.max_reply_bytes),
                    },
                    capabilities: Capabilities {
                        dirs: table
                            .dirs
                            .into_iter()
                            .map(|d| DirGrant {
                                host: d.host,
                                guest: d.guest,
                            })
                            .collect(),
                        env: table.env.into_iter().collect(),
                        keyvalue: table.keyvalue.into(),
                        calls: calls.into(),
                    },
                    inherit_env: table.inherit_env,
                })
            }
        }
        deserializer.deserialize_any(EndpointVisitor)
    }
}

impl Config {
    /// Reads and checks a config file; every error names the file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        // Relative paths in the file are relative to the file, wherever the command runs.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or_else(|| Path::new("."));
        let from_env = std::env::var(TRANSPORT_URL_ENV).ok();
        Self::parse_with(&text, base, from_env)
            .with_context(|| format!("invalid config {}", path.display()))
    }

    /// Parses config text; relative endpoint paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> anyhow::Result<Config> {
        Self::parse_with(text, base, None)
    }

    /// Parses config text, with the transport URL from `FJORD_TRANSPORT_URL` when `from_env`
    /// holds it (the environment wins over `transport_url` and `transport_url_file`).
    pub fn parse_with(text: &str, base: &Path, from_env: Option<String>) -> anyhow::Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // toml's message spans several lines with the source; one line is enough here.
            anyhow::anyhow!("{}", e.to_string().replace('\n', " ").trim())
        })?;
        let (url_text, transport_from) =
            transport_url_text(raw.transport_url, raw.transport_url_file, base, from_env)?;
        // The text may hold a password: errors about it never repeat it.
        let transport_url =
            TransportUrl::parse(&url_text).map_err(|e| anyhow::anyhow!("{transport_from}: {e}"))?;
        let admin = match &raw.admin {
            None => None,
            Some(a) => Some(a.listen.parse::<std::net::SocketAddr>().map_err(|e| {
                anyhow::anyhow!(
                    "[admin] listen: {:?} is not an address and port: {e}",
                    a.listen
                )
            })?),
        };
        if !(1..=MAX_IN_FLIGHT).contains(&raw.executor_thread_pool_size) {
            anyhow::bail!(
                "executor_thread_pool_size must be between 1 and {MAX_IN_FLIGHT}, not {}",
                raw.executor_thread_pool_size
            );
        }
        if raw.kombu_missing_consumer_retry_timeout > MAX_REPLY_RETRY_SECS {
            anyhow::bail!(
                "kombu_missing_consumer_retry_timeout must be at most {MAX_REPLY_RETRY_SECS} seconds, not {}",
                raw.kombu_missing_consumer_retry_timeout
            );
        }
        if !(1..=MAX_CALL_DEPTH).contains(&raw.max_call_depth) {
            anyhow::bail!(
                "max_call_depth must be between 1 and {MAX_CALL_DEPTH}, not {}",
                raw.max_call_depth
            );
        }
        check_name("control_exchange", &raw.control_exchange)?;
        let mut servers = raw.servers;
        if servers.is_empty() {
            anyhow::bail!("no [[server]] sections: nothing to serve");
        }
        for server in &mut servers {
            if server.topic.is_empty() || server.server.is_empty() {
                anyhow::bail!("[[server]] needs a non-empty topic and server");
            }
            let exchange = server.exchange.as_deref().unwrap_or(&raw.control_exchange);
            check_server_names(exchange, &server.topic, &server.server).map_err(|e| {
                let key = if e.what == "exchange" {
                    "exchange"
                } else {
                    "topic and server"
                };
                let topic: String = server.topic.chars().take(32).collect();
                anyhow::anyhow!("[[server]] {key}: {e} (topic {topic:?})")
            })?;
            if server.endpoints.is_empty() {
                anyhow::bail!("server {}.{} has no endpoints", server.topic, server.server);
            }
            for endpoint in &mut server.endpoints {
                if endpoint.path.is_relative() {
                    endpoint.path = base.join(&endpoint.path);
                }
                endpoint.resolve(base)?;
            }
        }
        let granted = servers
            .iter()
            .flat_map(|s| &s.endpoints)
            .flat_map(|e| e.capabilities.keyvalue.iter().map(String::as_str));
        let keyvalue = KeyvalueConfig::resolve(raw.keyvalue, base, granted)?;
        let prefetch = transport_url
            .options
            .rabbit_qos_prefetch_count
            .unwrap_or(DEFAULT_PREFETCH);
        Ok(Config {
            transport_url,
            transport_from,
            admin,
            control_exchange: raw.control_exchange,
            in_flight: raw.executor_thread_pool_size,
            prefetch,
            reply_retry: Duration::from_secs(raw.kombu_missing_consumer_retry_timeout),
            max_call_depth: raw.max_call_depth,
            servers,
            keyvalue,
        })
    }
}

/// The transport URL's text and where it came from: the environment, else `transport_url_file`
/// (relative to the config file; surrounding whitespace trimmed), else `transport_url`.
fn transport_url_text(
    inline: Option<String>,
    file: Option<PathBuf>,
    base: &Path,
    from_env: Option<String>,
) -> anyhow::Result<(String, String)> {
    if inline.is_some() && file.is_some() {
        anyhow::bail!("transport_url and transport_url_file are both set: keep one");
    }
    if let Some(url) = from_env {
        return Ok((url.trim().to_string(), TRANSPORT_URL_ENV.to_string()));
    }
    if let Some(file) = file {
        let file = if file.is_relative() {
            base.join(file)
        } else {
            file
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("transport_url_file: cannot read {}", file.display()))?;
        return Ok((
            text.trim().to_string(),
            format!("transport_url_file {}", file.display()),
        ));
    }
    match inline {
        Some(url) => Ok((url, "transport_url".to_string())),
        None => anyhow::bail!(
            "no transport_url: set transport_url or transport_url_file, or {TRANSPORT_URL_ENV} in the environment"
        ),
    }
}

/// A name used as an AMQP name as it is: at most 255 bytes.
fn check_name(key: &str, name: &str) -> anyhow::Result<()> {
    short_string("exchange", name).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    Ok(())
}

impl EndpointConfig {
    /// Checks the limits and resolves the grants: directories against `base` (they must exist),
    /// inherited variables from the host's environment (they must be set).
    fn resolve(&mut self, base: &Path) -> anyhow::Result<()> {
        let name = self.path.display().to_string();
        let limits = &self.limits;
        if limits.deadline > Duration::from_millis(MAX_DEADLINE_MS) {
            anyhow::bail!(
                "endpoint {name}: deadline_ms must be at most {MAX_DEADLINE_MS} (one day)"
            );
        }
        for (key, zero) in [
            ("deadline_ms", limits.deadline.is_zero()),
            ("memory_mib", limits.memory_bytes == 0),
            ("max_request_kib", limits.max_request_bytes == 0),
            ("max_reply_kib", limits.max_reply_bytes == 0),
        ] {
            if zero {
                anyhow::bail!("endpoint {name}: {key} must be greater than 0");
            }
        }
        for dir in &mut self.capabilities.dirs {
            if dir.host.is_relative() {
                dir.host = base.join(&dir.host);
            }
            if !dir.host.is_dir() {
                anyhow::bail!(
                    "endpoint {name}: dirs: {} is not a directory",
                    dir.host.display()
                );
            }
            if !dir.guest.starts_with('/') {
                anyhow::bail!(
                    "endpoint {name}: dirs: guest path {:?} must be absolute",
                    dir.guest
                );
            }
        }
        for var in &self.inherit_env {
            let Ok(value) = std::env::var(var) else {
                anyhow::bail!(
                    "endpoint {name}: inherit_env: {var} is not set in the host's environment"
                );
            };
            self.capabilities.env.push((var.clone(), value));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config() {
        let c = Config::parse(
            r#"
            transport_url = "rabbit://guest:guest@127.0.0.1:5672/"
            [[server]]
            topic = "test"
            server = "server1"
            endpoints = ["target/wasm32-wasip2/release/calculator.wasm"]
            "#,
            Path::new("/etc/fjord"),
        )
        .unwrap();
        assert_eq!(c.control_exchange, "openstack");
        assert_eq!(c.servers.len(), 1);
        assert_eq!(
            c.servers[0].endpoints[0].path,
            Path::new("/etc/fjord/target/wasm32-wasip2/release/calculator.wasm")
        );
        assert_eq!(c.servers[0].endpoints[0].limits, Limits::default());
    }

    #[test]
    fn endpoint_tables() {
        let c = Config::parse(
            r#"
            transport_url = "rabbit://"
            control_exchange = "nova"
            [[server]]
            topic = "t"
            server = "s"
            endpoints = ["/abs/a.wasm", { path = "b.wasm", namespace = "ns", deadline_ms = 250, memory_mib = 8 }]
            "#,
            Path::new("/base"),
        )
        .unwrap();
        let e = &c.servers[0].endpoints;
        assert_eq!(e[0].path, Path::new("/abs/a.wasm"));
        assert_eq!(e[1].namespace.as_deref(), Some("ns"));
        assert_eq!(e[1].limits.deadline, Duration::from_millis(250));
        assert_eq!(e[1].limits.memory_bytes, 8 << 20);
        assert_eq!(c.control_exchange, "nova");
    }

    #[test]
    fn mistakes_are_named() {
        let base = Path::new(".");
        let err = |text: &str| format!("{:#}", Config::parse(text, base).unwrap_err());
        let unknown = err("transport_url = \"rabbit://\"\ncolour = 1\n");
        assert!(unknown.contains("colour"), "{unknown}");
        let no_url = err("[[server]]\ntopic='t'\nserver='s'\nendpoints=['a.wasm']\n");
        assert!(no_url.contains("transport_url"), "{no_url}");
        let bad_type = err("transport_url = 5\n");
        assert!(bad_type.contains("transport_url"), "{bad_type}");
        let bad_key = err(
            "transport_url = \"rabbit://\"\n[[server]]\ntopic='t'\nserver='s'\nendpoints=[{path='a', nmespace='x'}]\n",
        );
        assert!(bad_key.contains("nmespace"), "{bad_key}");
        let no_servers = err("transport_url = \"rabbit://\"\n");
        assert!(no_servers.contains("server"), "{no_servers}");
        let bad_url = err(
            "transport_url = \"http://x\"\n[[server]]\ntopic='t'\nserver='s'\nendpoints=['a']\n",
        );
        assert!(bad_url.contains("transport_url"), "{bad_url}");
    }

    #[test]
    fn host_settings_and_their_defaults() {
        let c = one_endpoint("'a.wasm'").unwrap();
        assert_eq!((c.in_flight, c.prefetch), (64, 64));
        assert_eq!(c.reply_retry, Duration::from_secs(3));
        let c = Config::parse(
            "transport_url = \"rabbit://h/?rabbit_qos_prefetch_count=10\"\n\
             executor_thread_pool_size = 8\nkombu_missing_consumer_retry_timeout = 0\n\
             [[server]]\ntopic='t'\nserver='s'\nendpoints=['a.wasm']\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!((c.in_flight, c.prefetch), (8, 10));
        assert!(c.reply_retry.is_zero());
        let unlimited = Config::parse(
            "transport_url = \"rabbit://h/?rabbit_qos_prefetch_count=0\"\n\
             [[server]]\ntopic='t'\nserver='s'\nendpoints=['a.wasm']\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(unlimited.prefetch, 0);
        let err = |top: &str| {
            let text = format!(
                "transport_url = \"rabbit://\"\n{top}\n[[server]]\ntopic='t'\nserver='s'\nendpoints=['a.wasm']\n"
            );
            format!("{:#}", Config::parse(&text, Path::new(".")).unwrap_err())
        };
        for (top, needle) in [
            ("executor_thread_pool_size = 0", "executor_thread_pool_size"),
            (
                "executor_thread_pool_size = 5000",
                "executor_thread_pool_size",
            ),
            (
                "executor_thread_pool_size = -1",
                "executor_thread_pool_size",
            ),
            (
                "kombu_missing_consumer_retry_timeout = 100000",
                "kombu_missing_consumer_retry_timeout",
            ),
            (
                "kombu_missing_consumer_retry_timeout = 'soon'",
                "kombu_missing_consumer_retry_timeout",
            ),
        ] {
            let e = err(top);
            assert!(e.contains(needle), "{top}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn names_too_long_for_amqp_are_config_errors() {
        let server = |topic: &str, server: &str, exchange: &str| {
            let text = format!(
                "transport_url = \"rabbit://\"\n[[server]]\ntopic='{topic}'\nserver='{server}'\n{exchange}endpoints=['a.wasm']\n"
            );
            Config::parse(&text, Path::new(".")).map_err(|e| format!("{e:#}"))
        };
        // <topic>_fanout_<32 hex> is the longest name: a topic has at most 215 bytes.
        assert!(server(&"t".repeat(215), "s", "").is_ok());
        let e = server(&"t".repeat(216), "s", "").unwrap_err();
        assert!(e.contains("fanout queue") && e.contains("256 bytes"), "{e}");
        let e = server("t", &"s".repeat(254), "").unwrap_err();
        assert!(e.contains("server queue") && e.contains("256 bytes"), "{e}");
        let e = server("t", "s", &format!("exchange = '{}'\n", "x".repeat(300))).unwrap_err();
        assert!(e.contains("exchange") && e.contains("300 bytes"), "{e}");
        let text = format!(
            "transport_url = \"rabbit://\"\ncontrol_exchange = '{}'\n[[server]]\ntopic='t'\nserver='s'\nendpoints=['a.wasm']\n",
            "x".repeat(256)
        );
        let e = format!("{:#}", Config::parse(&text, Path::new(".")).unwrap_err());
        assert!(e.contains("control_exchange"), "{e}");
        for e in [
            server(&"t".repeat(216), "s", "").unwrap_err(),
            server("t", &"s".repeat(254), "").unwrap_err(),
        ] {
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let day = one_endpoint("{ path = 'a.wasm', deadline_ms = 86400001 }").unwrap_err();
        assert!(format!("{day:#}").contains("deadline_ms"), "{day:#}");
    }

    fn one_endpoint(item: &str) -> anyhow::Result<Config> {
        let text = format!(
            "transport_url = \"rabbit://\"\n[[server]]\ntopic='t'\nserver='s'\nendpoints=[{item}]\n"
        );
        Config::parse(&text, Path::new(env!("CARGO_MANIFEST_DIR")))
    }

    #[test]
    fn size_limits_and_their_defaults() {
        let d = Limits::default();
        assert_eq!(d.deadline, Duration::from_secs(10));
        assert_eq!(d.memory_bytes, 64 << 20);
        assert_eq!(d.max_request_bytes, 1 << 20);
        assert_eq!(d.max_reply_bytes, 1 << 20);
        let c =
            one_endpoint("{ path = 'a.wasm', max_request_kib = 4, max_reply_kib = 2 }").unwrap();
        let limits = c.servers[0].endpoints[0].limits;
        assert_eq!(limits.max_request_bytes, 4096);
        assert_eq!(limits.max_reply_bytes, 2048);
        let zero = format!(
            "{:#}",
            one_endpoint("{ path = 'a.wasm', max_reply_kib = 0 }").unwrap_err()
        );
        assert!(zero.contains("max_reply_kib"), "{zero}");
    }

    #[test]
    fn capabilities_are_denied_unless_granted() {
        let c = one_endpoint("'a.wasm'").unwrap();
        assert_eq!(
            c.servers[0].endpoints[0].capabilities,
            Capabilities::default()
        );
        std::env::set_var("FJORD_CONFIG_TEST_VAR", "from-host");
        let c = one_endpoint(
            "{ path = 'a.wasm', dirs = [{ host = 'src', guest = '/data' }], env = { A = 'x' }, inherit_env = ['FJORD_CONFIG_TEST_VAR'] }",
        )
        .unwrap();
        let caps = &c.servers[0].endpoints[0].capabilities;
        assert_eq!(
            caps.dirs,
            [DirGrant {
                host: Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
                guest: "/data".into()
            }]
        );
        assert_eq!(
            caps.env,
            [
                ("A".to_string(), "x".to_string()),
                ("FJORD_CONFIG_TEST_VAR".to_string(), "from-host".to_string())
            ]
        );
    }

    #[test]
    fn bad_grants_are_named() {
        let err = |item: &str| format!("{:#}", one_endpoint(item).unwrap_err());
        let missing_dir =
            err("{ path = 'a.wasm', dirs = [{ host = 'no-such-dir', guest = '/data' }] }");
        assert!(
            missing_dir.contains("dirs") && missing_dir.contains("no-such-dir"),
            "{missing_dir}"
        );
        let relative = err("{ path = 'a.wasm', dirs = [{ host = 'src', guest = 'data' }] }");
        assert!(relative.contains("must be absolute"), "{relative}");
        let unset = err("{ path = 'a.wasm', inherit_env = ['FJORD_SURELY_UNSET_VARIABLE'] }");
        assert!(unset.contains("FJORD_SURELY_UNSET_VARIABLE"), "{unset}");
        let bad_dir_key =
            err("{ path = 'a.wasm', dirs = [{ host = 'src', guest = '/d', mode = 'rw' }] }");
        assert!(bad_dir_key.contains("mode"), "{bad_dir_key}");
        for text in [missing_dir, relative, unset, bad_dir_key] {
            assert_eq!(text.lines().count(), 1, "one line: {text}");
        }
    }

    #[test]
    fn wrong_types_are_named() {
        let err = |item: &str| format!("{:#}", one_endpoint(item).unwrap_err());
        let deadline = err("{ path = 'a.wasm', deadline_ms = 'soon' }");
        assert!(deadline.contains("deadline_ms"), "{deadline}");
        let env = err("{ path = 'a.wasm', env = ['A'] }");
        assert!(env.contains("env"), "{env}");
        let endpoint = err("5");
        assert!(endpoint.contains(".wasm path"), "{endpoint}");
        for text in [deadline, env, endpoint] {
            assert_eq!(text.lines().count(), 1, "one line: {text}");
        }
    }

    #[test]
    fn the_transport_url_from_the_environment_or_a_file() {
        let servers = "[[server]]\ntopic='t'\nserver='s'\nendpoints=['a.wasm']\n";
        let dir = std::env::temp_dir().join(format!("fjord-url-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("url"), "  rabbit://u:secret@h:1/\n").unwrap();
        let c = Config::parse(&format!("transport_url_file = 'url'\n{servers}"), &dir).unwrap();
        assert_eq!(c.transport_url.masked(), "rabbit://u:****@h:1/");
        assert!(c.transport_from.starts_with("transport_url_file"));
        let env = Some("rabbit://e:x@envhost:2/".to_string());
        let c = Config::parse_with(
            &format!("transport_url_file = 'url'\n{servers}"),
            &dir,
            env.clone(),
        )
        .unwrap();
        assert_eq!(c.transport_url.masked(), "rabbit://e:****@envhost:2/");
        assert_eq!(c.transport_from, TRANSPORT_URL_ENV);
        let c = Config::parse_with(servers, &dir, env).unwrap();
        assert_eq!(c.transport_from, TRANSPORT_URL_ENV);
        let err = |text: &str| format!("{:#}", Config::parse(text, &dir).unwrap_err());
        let both = err(&format!(
            "transport_url = 'rabbit://'\ntransport_url_file = 'url'\n{servers}"
        ));
        assert!(both.contains("both"), "{both}");
        let missing = err(&format!("transport_url_file = 'nope'\n{servers}"));
        assert!(
            missing.contains("transport_url_file") && missing.contains("nope"),
            "{missing}"
        );
        let none = err(servers);
        assert!(none.contains(TRANSPORT_URL_ENV), "{none}");
        // A URL that does not parse is named by where it came from, never repeated.
        std::fs::write(dir.join("bad"), "http://u:secret@h/").unwrap();
        let bad = err(&format!("transport_url_file = 'bad'\n{servers}"));
        assert!(
            bad.contains("transport_url_file") && !bad.contains("secret"),
            "{bad}"
        );
        for text in [both, missing, none, bad] {
            assert_eq!(text.lines().count(), 1, "{text}");
        }
    }

    #[test]
    fn admin_and_control() {
        let c = Config::parse(
            "transport_url = 'rabbit://'\n[admin]\nlisten = '127.0.0.1:9464'\n[[server]]\ntopic='t'\nserver='s'\ncontrol = true\nendpoints=['a.wasm']\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.admin, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(c.servers[0].control);
        let c = one_endpoint("'a.wasm'").unwrap();
        assert_eq!(c.admin, None);
        assert!(!c.servers[0].control);
        let e = format!(
            "{:#}",
            Config::parse(
                "transport_url = 'rabbit://'\n[admin]\nlisten = 'localhost'\n[[server]]\ntopic='t'\nserver='s'\nendpoints=['a.wasm']\n",
                Path::new("."),
            )
            .unwrap_err()
        );
        assert!(e.contains("[admin] listen"), "{e}");
    }
}
