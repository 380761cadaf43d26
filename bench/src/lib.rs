//! The floors `scripts/bench` measures fjord against, over lapin and the same RabbitMQ, each a
//! server and a client process (so that CPU can be told apart):
//!
//! - the oslo-shaped floor (`floor-server`, `floor-client`), THE reference: exactly the AMQP work
//!   oslo.messaging does per call and nothing more (topic exchange `openstack`, routing key =
//!   topic, oslo's JSON-in-JSON envelope, per-message expiration, mandatory publish, publisher
//!   confirms awaited on both sides, manual acks with prefetch 64, the reply on the default
//!   exchange to a reply queue per client process, `_msg_id` correlation); no dispatch, no sandbox.
//! - the bare floor (`bare-server`, `bare-client`), for context: JSON bodies with no envelope,
//!   the default exchange, `reply_to`/`correlation_id`, no confirms, auto-ack.

use anyhow::Context as _;
use lapin::{Connection, ConnectionProperties};

pub mod wire;

/// Connects to `url` (an `amqp://` URI).
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, properties)
        .await
        .with_context(|| format!("cannot connect to RabbitMQ at {}", masked(url)))
}

/// The URI with any password replaced by `****`, for messages.
pub fn masked(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_the_password() {
        assert_eq!(
            super::masked("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:****@127.0.0.1:5672/%2f"
        );
        assert_eq!(super::masked("amqp://h/"), "amqp://h/");
    }
}
