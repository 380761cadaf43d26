//! The `[keyvalue]` section: where buckets live and their limits.
//!
//! ```toml
//! [keyvalue]                          # optional
//! path = "fjord-state.redb"           # embedded store, relative to the config file (the default)
//! # url = "redis://127.0.0.1:6379/0"  # a Redis shared by every host that names it
//! # prefix = "fjord:kv:"              # Redis only: bucket B is the Redis hash <prefix>B
//!
//! [keyvalue.buckets.cache]            # optional, per bucket; defaults in BucketLimits::default
//! max_value_kib = 64
//! max_key_bytes = 128
//! max_keys = 10000
//! ```
//!
//! Buckets are granted per endpoint (`keyvalue = ["default", "cache"]`); the store is opened only
//! when some endpoint is granted one.

use super::limits::{check_bucket_name, BucketLimits};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The embedded store's file when `[keyvalue]` names none.
pub const DEFAULT_PATH: &str = "fjord-state.redb";
/// The Redis key prefix when `prefix` is not given: bucket `default` is the hash `fjord:kv:default`.
pub const DEFAULT_PREFIX: &str = "fjord:kv:";

/// `[keyvalue]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyvalueTable {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    buckets: BTreeMap<String, LimitsTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsTable {
    #[serde(default)]
    max_value_kib: Option<usize>,
    #[serde(default)]
    max_key_bytes: Option<usize>,
    #[serde(default)]
    max_keys: Option<u64>,
}

/// Where the buckets live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The embedded store in this file (one host only).
    Embedded(PathBuf),
    /// A Redis shared by every host that names it; bucket `B` is the hash `<prefix>B`.
    Redis { url: RedisUrl, prefix: String },
}

/// The `[keyvalue]` section, resolved: the location and every granted bucket with its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyvalueConfig {
    pub location: Location,
    /// Every bucket some endpoint is granted, with its limits. Empty: no store is opened.
    pub buckets: BTreeMap<String, BucketLimits>,
}

impl Default for KeyvalueConfig {
    fn default() -> Self {
        KeyvalueConfig {
            location: Location::Embedded(PathBuf::from(DEFAULT_PATH)),
            buckets: BTreeMap::new(),
        }
    }
}

impl KeyvalueConfig {
    /// Whether any endpoint is granted a bucket (and so whether the store is opened at all).
    pub fn in_use(&self) -> bool {
        !self.buckets.is_empty()
    }

    /// Checks `[keyvalue]` against the buckets the endpoints are granted; `path` is taken from
    /// `base`, the config file's directory.
    pub fn resolve<'a>(
        table: Option<KeyvalueTable>,
        base: &Path,
        granted: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<KeyvalueConfig> {
        let table = table.unwrap_or_default();
        let location = match (table.path, table.url) {
            (Some(_), Some(_)) => anyhow::bail!(
                "[keyvalue]: give either `path` (the embedded store) or `url` (Redis), not both"
            ),
            (path, None) => {
                if table.prefix.is_some() {
                    anyhow::bail!("[keyvalue]: `prefix` applies to Redis (`url`) only");
                }
                let path = path.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
                Location::Embedded(if path.is_relative() {
                    base.join(path)
                } else {
                    path
                })
            }
            (None, Some(url)) => Location::Redis {
                url: RedisUrl::parse(&url).map_err(|e| anyhow::anyhow!("[keyvalue] url: {e}"))?,
                prefix: table.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string()),
            },
        };
        let mut buckets = BTreeMap::new();
        for name in granted {
            check_bucket_name(name).map_err(|e| anyhow::anyhow!("keyvalue: {e}"))?;
            buckets.insert(name.to_string(), BucketLimits::default());
        }
        let defaults = BucketLimits::default();
        for (name, limits) in table.buckets {
            let Some(slot) = buckets.get_mut(&name) else {
                anyhow::bail!(
                    "[keyvalue.buckets.{name}]: no endpoint is granted bucket {name:?} (keyvalue = [...])"
                );
            };
            *slot = BucketLimits {
                max_value_bytes: limits
                    .max_value_kib
                    .map_or(defaults.max_value_bytes, |k| k.saturating_mul(1024)),
                max_key_bytes: limits.max_key_bytes.unwrap_or(defaults.max_key_bytes),
                max_keys: limits.max_keys.unwrap_or(defaults.max_keys),
            };
            for (key, zero) in [
                ("max_value_kib", slot.max_value_bytes == 0),
                ("max_key_bytes", slot.max_key_bytes == 0),
                ("max_keys", slot.max_keys == 0),
            ] {
                if zero {
                    anyhow::bail!("[keyvalue.buckets.{name}]: {key} must be greater than 0");
                }
            }
        }
        Ok(KeyvalueConfig { location, buckets })
    }
}

/// A `redis://` URL; shown (Display and Debug) with its password masked.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    url: String,
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let masked = mask(url);
        if !url.starts_with("redis://") {
            return Err(format!(
                "{masked}: only redis://host:port/db URLs are supported"
            ));
        }
        redis::Client::open(url)
            .map_err(|e| format!("{masked}: {}", e.to_string().replace(url, &masked)))?;
        Ok(RedisUrl {
            url: url.to_string(),
        })
    }

    /// The URL itself, password included: for connecting only, never for messages.
    pub fn secret(&self) -> &str {
        &self.url
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(&self.url))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// `redis://user:secret@host/0` as `redis://user:****@host/0`.
fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:****"),
        // redis://secret@host: the crate takes a lone userinfo as the username; mask it anyway.
        None => "****".to_string(),
    };
    format!("{scheme}://{user}@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str, granted: &[&str]) -> anyhow::Result<KeyvalueConfig> {
        let table: KeyvalueTable = toml::from_str(text)?;
        KeyvalueConfig::resolve(
            Some(table),
            Path::new("/etc/fjord"),
            granted.iter().copied(),
        )
    }

    #[test]
    fn embedded_by_default_next_to_the_config() {
        let c = KeyvalueConfig::resolve(None, Path::new("/etc/fjord"), ["default"]).unwrap();
        assert_eq!(
            c.location,
            Location::Embedded(PathBuf::from("/etc/fjord/fjord-state.redb"))
        );
        assert_eq!(c.buckets["default"], BucketLimits::default());
        assert!(c.in_use());
        assert!(!KeyvalueConfig::resolve(None, Path::new("."), [])
            .unwrap()
            .in_use());
    }

    #[test]
    fn redis_and_per_bucket_limits() {
        let c = resolve(
            "url = 'redis://:hunter2@127.0.0.1:6379/0'\n[buckets.cache]\nmax_value_kib = 2\nmax_keys = 5\n",
            &["default", "cache"],
        )
        .unwrap();
        let Location::Redis { url, prefix } = &c.location else {
            panic!("{c:?}")
        };
        assert_eq!(prefix, DEFAULT_PREFIX);
        assert_eq!(url.to_string(), "redis://:****@127.0.0.1:6379/0");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.buckets["cache"].max_value_bytes, 2048);
        assert_eq!(c.buckets["cache"].max_keys, 5);
        assert_eq!(c.buckets["cache"].max_key_bytes, 512);
        assert_eq!(c.buckets["default"], BucketLimits::default());
    }

    #[test]
    fn mistakes_are_named() {
        let err =
            |text: &str, granted: &[&str]| format!("{:#}", resolve(text, granted).unwrap_err());
        assert!(err("path = 'a'\nurl = 'redis://x'\n", &["d"]).contains("not both"));
        assert!(err("[buckets.nope]\nmax_keys = 1\n", &["d"]).contains("\"nope\""));
        assert!(err("[buckets.d]\nmax_keys = 0\n", &["d"]).contains("max_keys"));
        assert!(err("[buckets.d]\ncolour = 0\n", &["d"]).contains("colour"));
        assert!(err("prefix = 'p'\n", &["d"]).contains("prefix"));
        let bad_url = err("url = 'http://u:hunter2@x'\n", &["d"]);
        assert!(
            bad_url.contains("redis://") && !bad_url.contains("hunter2"),
            "{bad_url}"
        );
        assert!(err("", &["a b"]).contains("a b"));
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(mask("redis://u:p@h:1/0"), "redis://u:****@h:1/0");
        assert_eq!(mask("redis://:p@h"), "redis://:****@h");
        assert_eq!(mask("redis://p@h/2"), "redis://****@h/2");
        assert_eq!(mask("redis://h:6379/0"), "redis://h:6379/0");
    }
}
