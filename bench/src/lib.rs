//! The raw AMQP floor that `scripts/bench` measures fjord against: the least a Rust request/reply
//! over the same RabbitMQ can do. JSON bodies, no oslo envelope, no sandbox, no publisher
//! confirms, auto-ack on both sides, the default exchange, one connection per side.

use anyhow::Context as _;
use lapin::{Connection, ConnectionProperties};

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
