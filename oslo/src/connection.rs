//! Connecting to RabbitMQ from a [`TransportUrl`]: hosts tried in the order oslo's failover
//! strategy gives (see [`crate::failover`]).

use std::fmt;
use std::time::Duration;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::LongString;
use lapin::{Connection, ConnectionProperties};

use crate::failover::Failover;
use crate::url::TransportUrl;

/// How long one host may take to accept the AMQP handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// One failed connection attempt: the masked address and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectAttempt {
    /// `rabbit://user:****@host:port/vhost`.
    pub address: String,
    /// The reason, with any password masked.
    pub reason: String,
}

impl fmt::Display for ConnectAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.address, self.reason)
    }
}

/// Why no connection could be made. Never contains a password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Every host failed.
    #[error("cannot connect to RabbitMQ at {}", join_attempts(.0))]
    Unreachable(Vec<ConnectAttempt>),
    /// A TLS file named in the URL could not be read.
    #[error("cannot read {option} `{path}`: {source}")]
    TlsFile {
        /// The URL option naming the file.
        option: &'static str,
        /// The path.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// `ssl_cert_file` and `ssl_key_file` must be given together.
    #[error("ssl_cert_file and ssl_key_file must be given together")]
    TlsIdentity,
}

fn join_attempts(attempts: &[ConnectAttempt]) -> String {
    attempts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Opens an AMQP connection to one of the URL's hosts (shuffled, then each tried once in turn).
///
/// The heartbeat comes from `heartbeat_timeout_threshold` (default 60 s); TLS is used when the
/// URL says `ssl=1`, with the CA and client certificate files it names.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let url = fjord_oslo::TransportUrl::parse("rabbit://guest:guest@127.0.0.1:5672/")?;
/// let conn = fjord_oslo::connect(&url, "my-service").await?;
/// # let _ = conn; Ok(()) }
/// ```
pub async fn connect(
    url: &TransportUrl,
    connection_name: &str,
) -> Result<Connection, ConnectError> {
    connect_logging(url, &url.failover(), connection_name, true).await
}

/// Like [`connect`], with the failover state of a connection that is re-established over time
/// (`kombu_failover_strategy`), so that each reconnection starts where the last one left off.
///
/// ```no_run
/// # async fn f(url: fjord_oslo::TransportUrl) {
/// let failover = url.failover();
/// let _ = fjord_oslo::connection::connect_with(&url, &failover, "my-service").await;
/// # }
/// ```
pub async fn connect_with(
    url: &TransportUrl,
    failover: &Failover,
    connection_name: &str,
) -> Result<Connection, ConnectError> {
    connect_logging(url, failover, connection_name, true).await
}

/// Like [`connect`], but each host's failure is logged at debug level only: reconnecting
/// during an outage logs one line for the whole outage (see [`crate::reconnect::Outage`]).
///
/// ```no_run
/// # async fn f(url: fjord_oslo::TransportUrl) {
/// let failover = url.failover();
/// let _ = fjord_oslo::connection::reconnect(&url, &failover, "my-service").await;
/// # }
/// ```
pub async fn reconnect(
    url: &TransportUrl,
    failover: &Failover,
    connection_name: &str,
) -> Result<Connection, ConnectError> {
    connect_logging(url, failover, connection_name, false).await
}

async fn connect_logging(
    url: &TransportUrl,
    failover: &Failover,
    connection_name: &str,
    loud: bool,
) -> Result<Connection, ConnectError> {
    let tls = tls_config(url)?;
    let mut attempts = Vec::new();
    for index in failover.attempts() {
        let address = url.masked_host(index);
        let Some(uri) = url.amqp_uri(index) else {
            continue;
        };
        let password = url.hosts[index].password.clone();
        let properties =
            ConnectionProperties::default().with_connection_name(LongString::from(connection_name));
        tracing::debug!(%address, "connecting to RabbitMQ");
        let runtime = match lapin::runtime::default_runtime() {
            Ok(r) => r,
            Err(e) => {
                attempts.push(ConnectAttempt {
                    address,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect_uri_with_config(uri, properties, tls.clone(), runtime),
        )
        .await;
        let reason = match attempt {
            Ok(Ok(connection)) => {
                failover.connected(index);
                if loud {
                    tracing::info!(%address, "connected to RabbitMQ");
                } else {
                    tracing::debug!(%address, "connected to RabbitMQ");
                }
                return Ok(connection);
            }
            Ok(Err(e)) => describe(&e, &password),
            Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        };
        if loud {
            tracing::warn!(%address, %reason, "cannot connect to RabbitMQ");
        } else {
            tracing::debug!(%address, %reason, "cannot connect to RabbitMQ");
        }
        attempts.push(ConnectAttempt { address, reason });
    }
    Err(ConnectError::Unreachable(attempts))
}

/// A short reason: the OS error text without its `(os error N)` suffix; passwords masked.
fn describe(error: &lapin::Error, password: &str) -> String {
    let text = match error.kind() {
        lapin::ErrorKind::IOError(io) => io.to_string(),
        _ => error.to_string(),
    };
    let text = match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    // Belt and braces: no library message may echo the password back to a log.
    if password.len() >= 3 {
        text.replace(password, "****")
    } else {
        text
    }
}

fn read_file(option: &'static str, path: &str) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::TlsFile {
        option,
        path: path.to_string(),
        source,
    })
}

fn tls_config(url: &TransportUrl) -> Result<OwnedTLSConfig, ConnectError> {
    let o = &url.options;
    if !o.ssl {
        return Ok(OwnedTLSConfig::default());
    }
    let cert_chain = match &o.ssl_ca_file {
        Some(path) => Some(String::from_utf8_lossy(&read_file("ssl_ca_file", path)?).into_owned()),
        None => None,
    };
    let identity = match (&o.ssl_cert_file, &o.ssl_key_file) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: read_file("ssl_cert_file", cert)?,
            key: read_file("ssl_key_file", key)?,
        }),
        (None, None) => None,
        _ => return Err(ConnectError::TlsIdentity),
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tls_file_is_named() {
        let url = TransportUrl::parse("rabbit://h/?ssl=1&ssl_ca_file=/nonexistent/ca.pem").unwrap();
        let err = tls_config(&url).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[tokio::test]
    async fn unreachable_names_masked_addresses() {
        let url = TransportUrl::parse(
            "rabbit://guest:sekrit@127.0.0.1:5999,guest:sekrit@127.0.0.1:5998/",
        )
        .unwrap();
        let err = connect(&url, "test").await.unwrap_err().to_string();
        assert!(
            err.starts_with("cannot connect to RabbitMQ at rabbit://guest:****@127.0.0.1:59"),
            "{err}"
        );
        assert!(err.contains("127.0.0.1:5999/: Connection refused"), "{err}");
        assert!(err.contains("127.0.0.1:5998/: Connection refused"), "{err}");
        assert!(!err.contains("sekrit"));
    }
}
