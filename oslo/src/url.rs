//! The oslo.messaging transport URL: `rabbit://user:pass@host:port[,host2...]/vhost?options`.
//!
//! The grammar follows `oslo_messaging.transport.TransportURL.parse` and the rabbit driver's
//! handling of its result. Passwords never leave this module unmasked except through
//! [`HostSpec::password`] and [`TransportUrl::amqp_uri`], which the connection code needs.

use std::fmt;

use crate::failover::{Failover, FailoverStrategy};

use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Default AMQP port, also used with TLS unless the URL says otherwise (as oslo does).
pub const DEFAULT_PORT: u16 = 5672;

/// Characters left as-is when showing a virtual host in a URL.
const VHOST_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a transport URL was refused. Messages never contain the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The URL has no `scheme://` part.
    #[error("invalid transport URL: no scheme (expected rabbit://...)")]
    NoScheme,
    /// The scheme is not `rabbit` or `amqp`.
    #[error(
        "invalid transport URL: unsupported scheme `{0}` (expected rabbit://, amqp:// or amqps://)"
    )]
    UnsupportedScheme(String),
    /// A host part could not be parsed.
    #[error("invalid transport URL: bad host `{0}`")]
    BadHost(String),
    /// A port is not a number in 0..=65535.
    #[error("invalid transport URL: bad port in `{0}`")]
    BadPort(String),
    /// Percent-decoding produced invalid UTF-8.
    #[error("invalid transport URL: {0} is not valid UTF-8 once percent-decoded")]
    BadEncoding(&'static str),
    /// A query key that is not a known `[oslo_messaging_rabbit]` option.
    #[error("invalid transport URL: unknown option `{0}`")]
    UnknownOption(String),
    /// A query value of the wrong type for its option.
    #[error(
        "invalid transport URL: option `{key}` has invalid value `{value}` (expected {expected})"
    )]
    BadOptionValue {
        /// The option name.
        key: String,
        /// The value given.
        value: String,
        /// What the option accepts.
        expected: &'static str,
    },
}

/// One broker address with its credentials.
///
/// ```
/// let url = fjord_oslo::TransportUrl::parse("rabbit://bob:secret@mq1:5673/").unwrap();
/// assert_eq!(url.hosts[0].host, "mq1");
/// assert_eq!(url.hosts[0].port, 5673);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port, 5672 unless given.
    pub port: u16,
    /// User name, percent-decoded; `guest` when absent.
    pub username: String,
    /// Password, percent-decoded; `guest` when absent. Never print it.
    pub password: String,
}

impl HostSpec {
    /// `host:port`, with brackets around IPv6 addresses.
    ///
    /// ```
    /// let url = fjord_oslo::TransportUrl::parse("rabbit://[::1]/").unwrap();
    /// assert_eq!(url.hosts[0].address(), "[::1]:5672");
    /// ```
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `user:****@host:port`: the host as it may appear in logs and errors.
    ///
    /// ```
    /// let url = fjord_oslo::TransportUrl::parse("rabbit://bob:pw@h/").unwrap();
    /// assert_eq!(url.hosts[0].masked(), "bob:****@h:5672");
    /// ```
    pub fn masked(&self) -> String {
        format!(
            "{}:****@{}",
            utf8_percent_encode(&self.username, VHOST_ENCODE),
            self.address()
        )
    }
}

impl fmt::Debug for HostSpec {
    // Hand-written so that `{:?}` cannot leak the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostSpec")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"****")
            .finish()
    }
}

/// The `[oslo_messaging_rabbit]` options a transport URL query may set.
///
/// ```
/// let url = fjord_oslo::TransportUrl::parse("rabbit://h/?rabbit_quorum_queue=true").unwrap();
/// assert!(url.options.rabbit_quorum_queue);
/// assert!(url.options.durable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportOptions {
    /// Connect with TLS.
    pub ssl: bool,
    /// CA bundle (PEM) used to verify the broker.
    pub ssl_ca_file: Option<String>,
    /// Client certificate (PEM).
    pub ssl_cert_file: Option<String>,
    /// Client private key (PEM).
    pub ssl_key_file: Option<String>,
    /// Negotiated AMQP heartbeat in seconds (oslo default 60; 0 disables).
    pub heartbeat_timeout_threshold: u16,
    /// Topic queues are quorum queues (and durable).
    pub rabbit_quorum_queue: bool,
    /// Fanout and reply queues are quorum queues (and durable).
    pub rabbit_transient_quorum_queue: bool,
    /// Topic queues and the control exchange are durable.
    pub amqp_durable_queues: bool,
    /// Topic queues and the control exchange are auto-deleted.
    pub amqp_auto_delete: bool,
    /// kombu compression name; accepted for compatibility, fjord does not compress.
    pub kombu_compression: Option<String>,
    /// `basic.qos` prefetch count for consumers, when the URL sets it; 0 = unlimited (no
    /// `basic.qos`), as in oslo. Unset, each program picks its own default (fjord-host: 64).
    pub rabbit_qos_prefetch_count: Option<u16>,
    /// `x-expires` of fanout and reply queues, in seconds (oslo default 1800).
    pub rabbit_transient_queues_ttl: u32,
    /// How the next broker is chosen after a lost connection (oslo default `round-robin`).
    pub kombu_failover_strategy: FailoverStrategy,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            ssl: false,
            ssl_ca_file: None,
            ssl_cert_file: None,
            ssl_key_file: None,
            heartbeat_timeout_threshold: 60,
            rabbit_quorum_queue: false,
            rabbit_transient_quorum_queue: false,
            amqp_durable_queues: false,
            amqp_auto_delete: false,
            kombu_compression: None,
            rabbit_qos_prefetch_count: None,
            rabbit_transient_queues_ttl: 1800,
            kombu_failover_strategy: FailoverStrategy::RoundRobin,
        }
    }
}

impl TransportOptions {
    /// Whether the control exchange and topic queues are durable, as oslo decides it.
    ///
    /// ```
    /// assert!(!fjord_oslo::TransportOptions::default().durable());
    /// ```
    pub fn durable(&self) -> bool {
        self.amqp_durable_queues || self.rabbit_quorum_queue
    }

    /// Applies one query option, refusing unknown keys and ill-typed values.
    fn set(&mut self, key: &str, value: &str) -> Result<(), UrlError> {
        match key {
            "ssl" => self.ssl = parse_bool(key, value)?,
            "ssl_ca_file" => self.ssl_ca_file = Some(value.to_string()),
            "ssl_cert_file" => self.ssl_cert_file = Some(value.to_string()),
            "ssl_key_file" => self.ssl_key_file = Some(value.to_string()),
            "heartbeat_timeout_threshold" => {
                self.heartbeat_timeout_threshold = parse_int(key, value)?
            }
            "rabbit_quorum_queue" => self.rabbit_quorum_queue = parse_bool(key, value)?,
            "rabbit_transient_quorum_queue" => {
                self.rabbit_transient_quorum_queue = parse_bool(key, value)?
            }
            "amqp_durable_queues" => self.amqp_durable_queues = parse_bool(key, value)?,
            "amqp_auto_delete" => self.amqp_auto_delete = parse_bool(key, value)?,
            "kombu_compression" => self.kombu_compression = Some(value.to_string()),
            "rabbit_qos_prefetch_count" => {
                self.rabbit_qos_prefetch_count = Some(parse_int(key, value)?)
            }
            "rabbit_transient_queues_ttl" => {
                self.rabbit_transient_queues_ttl = parse_int(key, value)?
            }
            "kombu_failover_strategy" => {
                self.kombu_failover_strategy =
                    FailoverStrategy::parse(value).ok_or_else(|| UrlError::BadOptionValue {
                        key: key.to_string(),
                        value: value.to_string(),
                        expected: "round-robin or shuffle",
                    })?
            }
            other => return Err(UrlError::UnknownOption(other.to_string())),
        }
        Ok(())
    }
}

/// oslo.config's boolean spellings.
fn parse_bool(key: &str, value: &str) -> Result<bool, UrlError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(UrlError::BadOptionValue {
            key: key.to_string(),
            value: value.to_string(),
            expected: "a boolean: 1, true, 0 or false",
        }),
    }
}

fn parse_int<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, UrlError> {
    value.parse().map_err(|_| UrlError::BadOptionValue {
        key: key.to_string(),
        value: value.to_string(),
        expected: "a non-negative integer",
    })
}

fn decode(s: &str, what: &'static str) -> Result<String, UrlError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| UrlError::BadEncoding(what))
}

/// A parsed transport URL.
///
/// `Display` shows the masked form, never the password.
///
/// ```
/// use fjord_oslo::TransportUrl;
/// let url = TransportUrl::parse("rabbit://guest:guest@127.0.0.1:5672/").unwrap();
/// assert_eq!(url.to_string(), "rabbit://guest:****@127.0.0.1:5672/");
/// assert_eq!(url.virtual_host, "/");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportUrl {
    /// Brokers, in the order written (connecting shuffles them, as oslo does).
    pub hosts: Vec<HostSpec>,
    /// AMQP virtual host, `/` by default.
    pub virtual_host: String,
    /// Options from the query string.
    pub options: TransportOptions,
}

impl TransportUrl {
    /// A fresh failover state for this URL: its hosts shuffled once, as oslo does, and tried in
    /// the order `kombu_failover_strategy` gives.
    ///
    /// ```
    /// let url = fjord_oslo::TransportUrl::parse("rabbit://a,b,c/?kombu_failover_strategy=shuffle").unwrap();
    /// assert_eq!(url.failover().attempts().len(), 3);
    /// ```
    pub fn failover(&self) -> Failover {
        Failover::new(self.hosts.len(), self.options.kombu_failover_strategy)
    }

    /// Parses an oslo transport URL (`rabbit://` or `amqp://`).
    ///
    /// ```
    /// use fjord_oslo::TransportUrl;
    /// let url = TransportUrl::parse("rabbit://a:1@h1,b:2@[::1]:5673/nova?ssl=1").unwrap();
    /// assert_eq!(url.hosts.len(), 2);
    /// assert_eq!(url.hosts[1].host, "::1");
    /// assert_eq!(url.virtual_host, "nova");
    /// assert!(url.options.ssl);
    /// assert!(TransportUrl::parse("kafka://h/").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<TransportUrl, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::NoScheme)?;
        if scheme.is_empty() {
            return Err(UrlError::NoScheme);
        }
        // `amqps://` is TLS, as `?ssl=1` (an explicit `ssl=0` in the query still wins).
        let tls_scheme = match scheme.to_ascii_lowercase().as_str() {
            "rabbit" | "amqp" => false,
            "amqps" => true,
            _ => return Err(UrlError::UnsupportedScheme(scheme.to_string())),
        };
        // A fragment has no meaning here; urlparse drops it too.
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (netloc, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };

        let mut hosts = Vec::new();
        for part in netloc.split(',').filter(|p| !p.is_empty()) {
            hosts.push(parse_host(part)?);
        }
        if hosts.is_empty() {
            hosts.push(HostSpec {
                host: "localhost".to_string(),
                port: DEFAULT_PORT,
                username: "guest".to_string(),
                password: "guest".to_string(),
            });
        }

        // oslo: vhost = unquote(path[1:]), and an empty vhost means the default `/`.
        let virtual_host = match path {
            Some(p) => decode(&p[1..], "the virtual host")?,
            None => String::new(),
        };
        let virtual_host = if virtual_host.is_empty() {
            "/".to_string()
        } else {
            virtual_host
        };

        let mut options = TransportOptions {
            ssl: tls_scheme,
            ..TransportOptions::default()
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(&k.replace('+', " "), "an option name")?;
            let v = decode(&v.replace('+', " "), "an option value")?;
            // parse_qs drops blank values, so `?ssl=` changes nothing; unknown keys still fail.
            if v.is_empty() {
                TransportOptions::default()
                    .set(&k, "0")
                    .or_else(|e| match e {
                        UrlError::UnknownOption(_) => Err(e),
                        _ => Ok(()),
                    })?;
                continue;
            }
            options.set(&k, &v)?;
        }

        Ok(TransportUrl {
            hosts,
            virtual_host,
            options,
        })
    }

    /// The URL with every password replaced by `****`, safe for logs and errors.
    ///
    /// ```
    /// let url = fjord_oslo::TransportUrl::parse("rabbit://u:p@a,u:p@b:1/%2Fvh").unwrap();
    /// assert_eq!(url.masked(), "rabbit://u:****@a:5672,u:****@b:1/%2Fvh");
    /// ```
    pub fn masked(&self) -> String {
        let hosts: Vec<String> = self.hosts.iter().map(HostSpec::masked).collect();
        format!("rabbit://{}/{}", hosts.join(","), self.vhost_path())
    }

    /// The masked URL of one host alone, as named in connection errors.
    ///
    /// ```
    /// let url = fjord_oslo::TransportUrl::parse("rabbit://u:p@a,u:p@b/").unwrap();
    /// assert_eq!(url.masked_host(1), "rabbit://u:****@b:5672/");
    /// ```
    pub fn masked_host(&self, host_index: usize) -> String {
        match self.hosts.get(host_index) {
            Some(h) => format!("rabbit://{}/{}", h.masked(), self.vhost_path()),
            None => self.masked(),
        }
    }

    /// The vhost as written after the first `/` of a URL (empty for `/`).
    fn vhost_path(&self) -> String {
        if self.virtual_host == "/" {
            String::new()
        } else {
            utf8_percent_encode(&self.virtual_host, VHOST_ENCODE).to_string()
        }
    }

    /// The lapin URI for one host (TLS, vhost, credentials and heartbeat applied).
    ///
    /// Returns `None` when `host_index` is out of range.
    ///
    /// ```
    /// let url = fjord_oslo::TransportUrl::parse("rabbit://u:p@h/nova").unwrap();
    /// let uri = url.amqp_uri(0).unwrap();
    /// assert_eq!(uri.vhost, "nova");
    /// assert_eq!(uri.query.heartbeat, Some(60));
    /// ```
    pub fn amqp_uri(&self, host_index: usize) -> Option<AMQPUri> {
        let h = self.hosts.get(host_index)?;
        Some(AMQPUri {
            scheme: if self.options.ssl {
                AMQPScheme::AMQPS
            } else {
                AMQPScheme::AMQP
            },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: h.username.clone(),
                    password: h.password.clone(),
                },
                host: h.host.clone(),
                port: h.port,
            },
            vhost: self.virtual_host.clone(),
            query: AMQPQueryString {
                heartbeat: Some(self.options.heartbeat_timeout_threshold),
                ..AMQPQueryString::default()
            },
        })
    }
}

impl fmt::Display for TransportUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl std::str::FromStr for TransportUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TransportUrl::parse(s)
    }
}

/// One comma-separated element of the netloc: `[user[:pass]@]host[:port]`.
fn parse_host(part: &str) -> Result<HostSpec, UrlError> {
    let (creds, hostport) = match part.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, part),
    };
    let (username, password) = match creds {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (
                Some(decode(u, "the user name")?),
                Some(decode(p, "the password")?),
            ),
            None => (Some(decode(c, "the user name")?), None),
        },
        None => (None, None),
    };
    let (host, port) = parse_host_port(hostport)?;
    Ok(HostSpec {
        host,
        port,
        username: username
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "guest".to_string()),
        password: password.unwrap_or_else(|| "guest".to_string()),
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` (oslo_utils.netutils.parse_host_port).
fn parse_host_port(s: &str) -> Result<(String, u16), UrlError> {
    let bad_port = || UrlError::BadPort(s.to_string());
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| UrlError::BadHost(s.to_string()))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad_port)?),
        };
        (h.to_string(), port)
    } else if s.matches(':').count() > 1 {
        // A bare IPv6 address without brackets cannot carry a port.
        (s.to_string(), None)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::BadHost(s.to_string()));
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p.parse().map_err(|_| bad_port())?,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TransportUrl {
        TransportUrl::parse(s).unwrap()
    }

    #[test]
    fn amqps_means_tls() {
        let u = TransportUrl::parse("amqps://u:p@h:5671/").unwrap();
        assert!(u.options.ssl);
        assert_eq!(u.amqp_uri(0).unwrap().scheme, AMQPScheme::AMQPS);
        let off = TransportUrl::parse("amqps://u:p@h:5671/?ssl=0").unwrap();
        assert!(!off.options.ssl);
        assert!(!TransportUrl::parse("amqp://h/").unwrap().options.ssl);
    }

    #[test]
    fn simple_url() {
        let u = p("rabbit://guest:guest@127.0.0.1:5672/");
        assert_eq!(
            u.hosts,
            vec![HostSpec {
                host: "127.0.0.1".into(),
                port: 5672,
                username: "guest".into(),
                password: "guest".into()
            }]
        );
        assert_eq!(u.virtual_host, "/");
        assert_eq!(u.options, TransportOptions::default());
    }

    #[test]
    fn bare_scheme_means_local_guest() {
        for s in ["rabbit://", "rabbit:///", "amqp://"] {
            let u = p(s);
            assert_eq!(u.hosts.len(), 1);
            assert_eq!(u.hosts[0].host, "localhost");
            assert_eq!(u.hosts[0].port, 5672);
            assert_eq!(u.hosts[0].username, "guest");
            assert_eq!(u.hosts[0].password, "guest");
            assert_eq!(u.virtual_host, "/");
        }
    }

    #[test]
    fn default_port_and_no_creds() {
        let u = p("rabbit://mq.example.org/");
        assert_eq!(u.hosts[0].port, 5672);
        assert_eq!(u.hosts[0].username, "guest");
        let u = p("rabbit://mq.example.org");
        assert_eq!(u.hosts[0].host, "mq.example.org");
        assert_eq!(u.virtual_host, "/");
    }

    #[test]
    fn several_hosts_each_with_creds() {
        let u = p("rabbit://a:1@h1:5001,b:2@h2,h3:5003/");
        let got: Vec<(&str, u16, &str, &str)> = u
            .hosts
            .iter()
            .map(|h| {
                (
                    h.host.as_str(),
                    h.port,
                    h.username.as_str(),
                    h.password.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("h1", 5001, "a", "1"),
                ("h2", 5672, "b", "2"),
                ("h3", 5003, "guest", "guest")
            ]
        );
    }

    #[test]
    fn ipv6_hosts() {
        let u = p("rabbit://u:p@[::1]:5673,[fe80::1]/");
        assert_eq!(u.hosts[0].host, "::1");
        assert_eq!(u.hosts[0].port, 5673);
        assert_eq!(u.hosts[1].host, "fe80::1");
        assert_eq!(u.hosts[1].port, 5672);
        assert_eq!(
            u.masked(),
            "rabbit://u:****@[::1]:5673,guest:****@[fe80::1]:5672/"
        );
    }

    #[test]
    fn percent_decoding_of_credentials() {
        let u = p("rabbit://us%40er:p%3Aw%2Fd%40@h/");
        assert_eq!(u.hosts[0].username, "us@er");
        assert_eq!(u.hosts[0].password, "p:w/d@");
    }

    #[test]
    fn password_with_raw_at_uses_last_at() {
        // rsplit('@', 1) as in oslo: the last @ separates the host.
        let u = p("rabbit://u:p@ss@h/");
        assert_eq!(u.hosts[0].password, "p@ss");
        assert_eq!(u.hosts[0].host, "h");
    }

    #[test]
    fn password_with_colon() {
        let u = p("rabbit://u:a:b@h/");
        assert_eq!(u.hosts[0].username, "u");
        assert_eq!(u.hosts[0].password, "a:b");
    }

    #[test]
    fn vhost_rules() {
        assert_eq!(p("rabbit://u:p@h/").virtual_host, "/");
        assert_eq!(p("rabbit://u:p@h//").virtual_host, "/");
        assert_eq!(p("rabbit://u:p@h/%2F").virtual_host, "/");
        assert_eq!(p("rabbit://u:p@h/%2Fvh").virtual_host, "/vh");
        assert_eq!(p("rabbit://u:p@h/nova").virtual_host, "nova");
        assert_eq!(p("rabbit://u:p@h/a%20b").virtual_host, "a b");
        assert_eq!(p("rabbit://u:p@h").virtual_host, "/");
    }

    #[test]
    fn options_parse() {
        let u = p("rabbit://h/?ssl=1&ssl_ca_file=/etc/ca.pem&ssl_cert_file=c.pem&ssl_key_file=k.pem\
             &heartbeat_timeout_threshold=30&rabbit_quorum_queue=true&rabbit_transient_quorum_queue=True\
             &amqp_durable_queues=0&kombu_compression=gzip&rabbit_qos_prefetch_count=10");
        let o = &u.options;
        assert!(o.ssl);
        assert_eq!(o.ssl_ca_file.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(o.ssl_cert_file.as_deref(), Some("c.pem"));
        assert_eq!(o.ssl_key_file.as_deref(), Some("k.pem"));
        assert_eq!(o.heartbeat_timeout_threshold, 30);
        assert!(o.rabbit_quorum_queue);
        assert!(o.rabbit_transient_quorum_queue);
        assert!(!o.amqp_durable_queues);
        assert!(o.durable());
        assert_eq!(o.kombu_compression.as_deref(), Some("gzip"));
        assert_eq!(o.rabbit_qos_prefetch_count, Some(10));
    }

    #[test]
    fn bool_spellings() {
        for (s, v) in [
            ("1", true),
            ("true", true),
            ("TRUE", true),
            ("yes", true),
            ("0", false),
            ("false", false),
            ("off", false),
        ] {
            assert_eq!(p(&format!("rabbit://h/?ssl={s}")).options.ssl, v, "{s}");
        }
        assert!(matches!(
            TransportUrl::parse("rabbit://h/?ssl=maybe"),
            Err(UrlError::BadOptionValue { .. })
        ));
    }

    #[test]
    fn bad_int_option() {
        assert!(matches!(
            TransportUrl::parse("rabbit://h/?heartbeat_timeout_threshold=-1"),
            Err(UrlError::BadOptionValue { .. })
        ));
    }

    #[test]
    fn unknown_option_is_error() {
        assert_eq!(
            TransportUrl::parse("rabbit://h/?frobnicate=1"),
            Err(UrlError::UnknownOption("frobnicate".into()))
        );
        assert_eq!(
            TransportUrl::parse("rabbit://h/?frobnicate="),
            Err(UrlError::UnknownOption("frobnicate".into()))
        );
    }

    #[test]
    fn schemes() {
        assert!(TransportUrl::parse("amqp://u:p@h/").is_ok());
        assert_eq!(
            TransportUrl::parse("kafka://h/"),
            Err(UrlError::UnsupportedScheme("kafka".into()))
        );
        assert_eq!(TransportUrl::parse("h:5672"), Err(UrlError::NoScheme));
        assert_eq!(TransportUrl::parse("://h"), Err(UrlError::NoScheme));
    }

    #[test]
    fn bad_ports_and_hosts() {
        assert!(matches!(
            TransportUrl::parse("rabbit://h:abc/"),
            Err(UrlError::BadPort(_))
        ));
        assert!(matches!(
            TransportUrl::parse("rabbit://h:70000/"),
            Err(UrlError::BadPort(_))
        ));
        assert!(matches!(
            TransportUrl::parse("rabbit://[::1/"),
            Err(UrlError::BadHost(_))
        ));
        assert!(matches!(
            TransportUrl::parse("rabbit://u:p@:5672/"),
            Err(UrlError::BadHost(_))
        ));
    }

    #[test]
    fn bad_percent_encoding() {
        assert!(matches!(
            TransportUrl::parse("rabbit://u:%FF@h/"),
            Err(UrlError::BadEncoding(_))
        ));
    }

    #[test]
    fn masking_never_shows_password() {
        let u = p("rabbit://admin:s3cr3t@h1:5672,admin:s3cr3t@h2/nova");
        let shown = [
            u.masked(),
            u.to_string(),
            format!("{u:?}"),
            u.masked_host(0),
            u.masked_host(1),
        ];
        for s in shown {
            assert!(!s.contains("s3cr3t"), "{s}");
        }
        assert_eq!(
            u.to_string(),
            "rabbit://admin:****@h1:5672,admin:****@h2:5672/nova"
        );
        assert_eq!(u.masked_host(1), "rabbit://admin:****@h2:5672/nova");
    }

    #[test]
    fn masked_vhost_round_trips() {
        let u = p("rabbit://u:p@h/%2Fvh");
        assert_eq!(u.masked(), "rabbit://u:****@h:5672/%2Fvh");
        let again = p(&u.masked());
        assert_eq!(again.virtual_host, "/vh");
    }

    #[test]
    fn amqp_uri_for_lapin() {
        let u = p("rabbit://u:p@h1,v:q@h2:1234/%2Fvh?ssl=true&heartbeat_timeout_threshold=10");
        let uri = u.amqp_uri(1).unwrap();
        assert_eq!(uri.scheme, AMQPScheme::AMQPS);
        assert_eq!(uri.authority.host, "h2");
        assert_eq!(uri.authority.port, 1234);
        assert_eq!(uri.authority.userinfo.username, "v");
        assert_eq!(uri.authority.userinfo.password, "q");
        assert_eq!(uri.vhost, "/vh");
        assert_eq!(uri.query.heartbeat, Some(10));
        assert!(u.amqp_uri(2).is_none());
    }
}
