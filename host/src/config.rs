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
//! ]
//! ```

use crate::sandbox::Limits;
use anyhow::Context as _;
use fjord_client::topology::DEFAULT_CONTROL_EXCHANGE;
use fjord_client::url::TransportUrl;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    transport_url: String,
    #[serde(default = "default_exchange")]
    control_exchange: String,
    #[serde(default, rename = "server")]
    servers: Vec<ServerConfig>,
}

fn default_exchange() -> String {
    DEFAULT_CONTROL_EXCHANGE.to_string()
}

/// The whole configuration, paths resolved against the config file's directory.
#[derive(Debug)]
pub struct Config {
    pub transport_url: TransportUrl,
    pub control_exchange: String,
    pub servers: Vec<ServerConfig>,
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
}

/// A component file, written as its path or as a table with per-endpoint settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    pub path: PathBuf,
    pub namespace: Option<String>,
    pub limits: Limits,
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
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EndpointConfig, A::Error> {
                let table = EndpointTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let defaults = Limits::default();
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
                    },
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
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, base).with_context(|| format!("invalid config {}", path.display()))
    }

    /// Parses config text; relative endpoint paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> anyhow::Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // toml's message spans several lines with the source; one line is enough here.
            anyhow::anyhow!("{}", e.to_string().replace('\n', " ").trim())
        })?;
        let transport_url = TransportUrl::parse(&raw.transport_url)
            .map_err(|e| anyhow::anyhow!("transport_url: {e}"))?;
        let mut servers = raw.servers;
        if servers.is_empty() {
            anyhow::bail!("no [[server]] sections: nothing to serve");
        }
        for server in &mut servers {
            if server.topic.is_empty() || server.server.is_empty() {
                anyhow::bail!("[[server]] needs a non-empty topic and server");
            }
            if server.endpoints.is_empty() {
                anyhow::bail!("server {}.{} has no endpoints", server.topic, server.server);
            }
            for endpoint in &mut server.endpoints {
                if endpoint.path.is_relative() {
                    endpoint.path = base.join(&endpoint.path);
                }
                if endpoint.limits.deadline.is_zero() || endpoint.limits.memory_bytes == 0 {
                    anyhow::bail!(
                        "endpoint {}: deadline_ms and memory_mib must be greater than 0",
                        endpoint.path.display()
                    );
                }
            }
        }
        Ok(Config {
            transport_url,
            control_exchange: raw.control_exchange,
            servers,
        })
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
}
