//! The one definition of oslo's exchanges, queues and message properties (oslo-wire.md
//! sections 2 to 4), shared by the client and the host. Flags must match oslo's exactly:
//! RabbitMQ closes the channel (406) when a Python peer declared the same name differently.

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};

use crate::envelope::{new_id, Reply};
use crate::scan::MAX_SHORT_STRING;
use crate::url::TransportOptions;

/// oslo's default `control_exchange`.
pub const DEFAULT_CONTROL_EXCHANGE: &str = "openstack";

/// A publish that did not reach a queue.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The AMQP operation failed (channel or connection closed, ...).
    #[error("publish failed: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused the message (publisher confirm nack).
    #[error("the broker refused the message (nack)")]
    Nacked,
    /// A mandatory message had no queue to go to (e.g. the reply queue is gone).
    #[error("no queue bound for routing key `{0}` (NO_ROUTE)")]
    Unroutable(String),
    /// The exchange or routing key cannot be an AMQP name.
    #[error(transparent)]
    Name(#[from] NameTooLong),
}

/// A name AMQP cannot carry: exchange and queue names and routing keys are short strings, at
/// most 255 bytes (lapin panics on a longer one, so every name is checked first).
///
/// ```
/// let e = fjord_oslo::topology::short_string("queue", &"q".repeat(300)).unwrap_err();
/// assert_eq!(e.to_string(), "queue qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq... is 300 bytes, more than the 255 an AMQP name may have");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {shown} is {len} bytes, more than the 255 an AMQP name may have")]
pub struct NameTooLong {
    /// What the name is for (`queue`, `exchange`, `routing key`...).
    pub what: &'static str,
    /// The start of the name, for messages.
    pub shown: String,
    /// Its length in bytes.
    pub len: usize,
}

/// `name` as an AMQP short string, or why it cannot be one.
///
/// ```
/// assert_eq!(fjord_oslo::topology::short_string("queue", "reply_1").unwrap().as_str(), "reply_1");
/// ```
pub fn short_string(what: &'static str, name: &str) -> Result<ShortString, NameTooLong> {
    if name.len() > MAX_SHORT_STRING {
        let shown: String = name.chars().take(32).collect();
        return Err(NameTooLong {
            what,
            shown: format!("{shown}..."),
            len: name.len(),
        });
    }
    ShortString::try_new(name).map_err(|_| NameTooLong {
        what,
        shown: name.to_string(),
        len: name.len(),
    })
}

/// A name that is too long, as the `lapin::Error` the declaring functions return.
fn name_error(e: NameTooLong) -> lapin::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e).into()
}

fn name(what: &'static str, name: &str) -> Result<ShortString, lapin::Error> {
    short_string(what, name).map_err(name_error)
}

/// Checks that every AMQP name an RPC server of `topic` and `server` on `exchange` uses fits in
/// 255 bytes: the exchange, `<topic>`, `<topic>.<server>`, `<topic>_fanout` and
/// `<topic>_fanout_<32 hex digits>` (so a topic has at most 215 bytes).
///
/// ```
/// use fjord_oslo::topology::check_server_names;
/// assert!(check_server_names("openstack", "compute", "host1").is_ok());
/// let e = check_server_names("openstack", &"t".repeat(216), "s").unwrap_err();
/// assert!(e.to_string().starts_with("fanout queue tttt"), "{e}");
/// ```
pub fn check_server_names(exchange: &str, topic: &str, server: &str) -> Result<(), NameTooLong> {
    short_string("exchange", exchange)?;
    short_string("topic", topic)?;
    short_string("server queue", &format!("{topic}.{server}"))?;
    short_string("fanout exchange", &fanout_exchange_name(topic))?;
    short_string("fanout queue", &new_fanout_queue_name(topic))?;
    Ok(())
}

/// The queues an RPC server consumes from (see [`declare_server_queues`]).
///
/// ```
/// let q = fjord_oslo::ServerQueues {
///     topic: "t".into(), server: "t.s".into(), fanout: "t_fanout_0123".into(),
/// };
/// assert_eq!(q.server, "t.s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerQueues {
    /// `<topic>`, shared by all servers of the topic.
    pub topic: String,
    /// `<topic>.<server>`, for server-directed messages.
    pub server: String,
    /// `<topic>_fanout_<uuid4 hex>`, this server's copy of fanout casts.
    pub fanout: String,
}

/// The name of a topic's fanout exchange: `<topic>_fanout`.
///
/// ```
/// assert_eq!(fjord_oslo::topology::fanout_exchange_name("t"), "t_fanout");
/// ```
pub fn fanout_exchange_name(topic: &str) -> String {
    format!("{topic}_fanout")
}

/// A new name for one server's fanout queue: `<topic>_fanout_<uuid4 hex>`, as oslo names it.
///
/// ```
/// let name = fjord_oslo::topology::new_fanout_queue_name("t");
/// assert!(name.starts_with("t_fanout_") && name.len() == "t_fanout_".len() + 32);
/// ```
pub fn new_fanout_queue_name(topic: &str) -> String {
    format!("{}_{}", fanout_exchange_name(topic), new_id())
}

/// Declares the control (topic) exchange as oslo does: durable only with
/// `amqp_durable_queues` or quorum queues.
///
/// ```no_run
/// # async fn f(ch: &lapin::Channel) -> Result<(), lapin::Error> {
/// fjord_oslo::declare_topic_exchange(ch, "openstack", &Default::default()).await?;
/// # Ok(()) }
/// ```
pub async fn declare_topic_exchange(
    channel: &Channel,
    name: &str,
    options: &TransportOptions,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            self::name("exchange", name)?,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: options.durable(),
                auto_delete: options.amqp_auto_delete,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Declares `<topic>_fanout` (fanout, not durable, auto-delete) with default options.
///
/// ```no_run
/// # async fn f(ch: &lapin::Channel) -> Result<(), lapin::Error> {
/// fjord_oslo::declare_fanout_exchange(ch, "compute").await?;
/// # Ok(()) }
/// ```
pub async fn declare_fanout_exchange(channel: &Channel, topic: &str) -> Result<(), lapin::Error> {
    declare_fanout_exchange_with(channel, topic, &TransportOptions::default()).await
}

/// Declares `<topic>_fanout`; durable only with `rabbit_transient_quorum_queue`, as oslo.
///
/// ```no_run
/// # async fn f(ch: &lapin::Channel) -> Result<(), lapin::Error> {
/// fjord_oslo::topology::declare_fanout_exchange_with(ch, "compute", &Default::default()).await?;
/// # Ok(()) }
/// ```
pub async fn declare_fanout_exchange_with(
    channel: &Channel,
    topic: &str,
    options: &TransportOptions,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            name("fanout exchange", &fanout_exchange_name(topic))?,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: options.rabbit_transient_quorum_queue,
                auto_delete: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Arguments of a topic queue (`<topic>`, `<topic>.<server>`).
fn topic_queue_arguments(options: &TransportOptions) -> FieldTable {
    let mut args = FieldTable::default();
    if options.rabbit_quorum_queue {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
    }
    args
}

/// Arguments of a transient queue (fanout and reply queues).
pub(crate) fn transient_queue_arguments(options: &TransportOptions) -> FieldTable {
    let mut args = FieldTable::default();
    if options.rabbit_transient_quorum_queue {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
    }
    if options.rabbit_transient_queues_ttl > 0 {
        // oslo sends a signed 32-bit int; another integer type is a 406 against existing queues.
        let ms = i64::from(options.rabbit_transient_queues_ttl) * 1000;
        args.insert(
            "x-expires".into(),
            AMQPValue::LongInt(i32::try_from(ms).unwrap_or(i32::MAX)),
        );
    }
    args
}

/// Declares the exchanges, queues and bindings of an RPC server for `topic` and `server`
/// exactly as oslo's rabbit driver does, and returns the queue names to consume.
///
/// ```no_run
/// # async fn f(ch: &lapin::Channel) -> Result<(), lapin::Error> {
/// let q = fjord_oslo::declare_server_queues(ch, "openstack", "test", "server1", &Default::default()).await?;
/// assert_eq!(q.topic, "test");
/// assert_eq!(q.server, "test.server1");
/// # Ok(()) }
/// ```
pub async fn declare_server_queues(
    channel: &Channel,
    exchange: &str,
    topic: &str,
    server: &str,
    options: &TransportOptions,
) -> Result<ServerQueues, lapin::Error> {
    let fanout = new_fanout_queue_name(topic);
    declare_server_queues_named(channel, exchange, topic, server, &fanout, options).await
}

/// [`declare_server_queues`] with the fanout queue's name given: a server re-declaring its
/// queues after a reconnection keeps its fanout queue, as kombu does.
///
/// ```no_run
/// # async fn f(ch: &lapin::Channel) -> Result<(), lapin::Error> {
/// let q = fjord_oslo::topology::declare_server_queues_named(
///     ch, "openstack", "test", "server1", "test_fanout_0123", &Default::default()).await?;
/// assert_eq!(q.fanout, "test_fanout_0123");
/// # Ok(()) }
/// ```
pub async fn declare_server_queues_named(
    channel: &Channel,
    exchange: &str,
    topic: &str,
    server: &str,
    fanout: &str,
    options: &TransportOptions,
) -> Result<ServerQueues, lapin::Error> {
    declare_topic_exchange(channel, exchange, options).await?;
    let server_key = format!("{topic}.{server}");
    for queue in [topic, server_key.as_str()] {
        declare_and_bind_topic_queue(channel, exchange, queue, options).await?;
    }
    declare_fanout_queue(channel, topic, fanout, options).await?;
    Ok(ServerQueues {
        topic: topic.to_string(),
        server: server_key,
        fanout: fanout.to_string(),
    })
}

/// Declares one topic queue of a server (`<topic>` or `<topic>.<server>`) and its exchange, and
/// binds it with its own name as routing key: what a server re-subscribing one lost consumer
/// needs (the queue may have been deleted).
///
/// ```no_run
/// # async fn f(ch: &lapin::Channel) -> Result<(), lapin::Error> {
/// fjord_oslo::topology::declare_topic_queue(ch, "openstack", "test.server1", &Default::default()).await?;
/// # Ok(()) }
/// ```
pub async fn declare_topic_queue(
    channel: &Channel,
    exchange: &str,
    queue: &str,
    options: &TransportOptions,
) -> Result<(), lapin::Error> {
    declare_topic_exchange(channel, exchange, options).await?;
    declare_and_bind_topic_queue(channel, exchange, queue, options).await
}

async fn declare_and_bind_topic_queue(
    channel: &Channel,
    exchange: &str,
    queue: &str,
    options: &TransportOptions,
) -> Result<(), lapin::Error> {
    let queue = name("queue", queue)?;
    channel
        .queue_declare(
            queue.clone(),
            QueueDeclareOptions {
                durable: options.durable(),
                auto_delete: options.amqp_auto_delete,
                ..QueueDeclareOptions::default()
            },
            topic_queue_arguments(options),
        )
        .await?;
    channel
        .queue_bind(
            queue.clone(),
            name("exchange", exchange)?,
            queue,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Declares a server's fanout queue `queue` and the `<topic>_fanout` exchange, and binds them.
///
/// ```no_run
/// # async fn f(ch: &lapin::Channel) -> Result<(), lapin::Error> {
/// fjord_oslo::topology::declare_fanout_queue(ch, "test", "test_fanout_0123", &Default::default()).await?;
/// # Ok(()) }
/// ```
pub async fn declare_fanout_queue(
    channel: &Channel,
    topic: &str,
    queue: &str,
    options: &TransportOptions,
) -> Result<(), lapin::Error> {
    declare_fanout_exchange_with(channel, topic, options).await?;
    let queue = name("queue", queue)?;
    channel
        .queue_declare(
            queue.clone(),
            QueueDeclareOptions {
                durable: options.rabbit_transient_quorum_queue,
                ..QueueDeclareOptions::default()
            },
            transient_queue_arguments(options),
        )
        .await?;
    channel
        .queue_bind(
            queue,
            name("fanout exchange", &fanout_exchange_name(topic))?,
            name("topic", topic)?,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Declares a caller's reply queue `name` (non-durable unless transient quorum, `x-expires`).
///
/// ```no_run
/// # async fn f(ch: &lapin::Channel) -> Result<(), lapin::Error> {
/// fjord_oslo::topology::declare_reply_queue(ch, "reply_0123", &Default::default()).await?;
/// # Ok(()) }
/// ```
pub async fn declare_reply_queue(
    channel: &Channel,
    name: &str,
    options: &TransportOptions,
) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            self::name("queue", name)?,
            QueueDeclareOptions {
                durable: options.rabbit_transient_quorum_queue,
                ..QueueDeclareOptions::default()
            },
            transient_queue_arguments(options),
        )
        .await?;
    Ok(())
}

/// Deletes the queue `name` on a channel of its own (a failed delete closes its channel, so it
/// must not be one that is used for anything else), closing the channel after.
///
/// ```no_run
/// # async fn f(conn: &lapin::Connection) -> Result<(), lapin::Error> {
/// fjord_oslo::topology::delete_queue(conn, "reply_0123").await?;
/// # Ok(()) }
/// ```
pub async fn delete_queue(connection: &lapin::Connection, name: &str) -> Result<(), lapin::Error> {
    let queue = self::name("queue", name)?;
    let channel = connection.create_channel().await?;
    let deleted = channel
        .queue_delete(queue, QueueDeleteOptions::default())
        .await;
    let _ = channel.close(200, ShortString::from("deleted")).await;
    deleted.map(|_| ())
}

/// The properties oslo puts on every message; `expiration_ms` is set on calls only.
///
/// ```
/// let p = fjord_oslo::message_properties(Some(3000));
/// assert_eq!(p.expiration().as_ref().map(|e| e.as_str()), Some("3000"));
/// ```
pub fn message_properties(expiration_ms: Option<u64>) -> BasicProperties {
    let props = BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_content_encoding(ShortString::from("utf-8"))
        .with_headers(FieldTable::default())
        .with_delivery_mode(2)
        .with_priority(0);
    match expiration_ms {
        Some(ms) => props.with_expiration(ShortString::from(ms.to_string())),
        None => props,
    }
}

/// Publishes `body` and waits for the broker's confirm (the channel must be in confirm mode).
///
/// ```no_run
/// # async fn f(ch: &lapin::Channel) -> Result<(), fjord_oslo::topology::PublishError> {
/// fjord_oslo::topology::publish(ch, "openstack", "test", b"{}", None, false).await?;
/// # Ok(()) }
/// ```
pub async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    expiration_ms: Option<u64>,
    mandatory: bool,
) -> Result<(), PublishError> {
    let exchange = short_string("exchange", exchange)?;
    let routing_key_name = short_string("routing key", routing_key)?;
    let confirm = channel
        .basic_publish(
            exchange,
            routing_key_name,
            BasicPublishOptions {
                mandatory,
                ..BasicPublishOptions::default()
            },
            body,
            message_properties(expiration_ms),
        )
        .await?
        .await?;
    match confirm {
        Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable(routing_key.to_string())),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
    }
}

/// Sends a reply to a caller's reply queue: default exchange, mandatory, confirmed.
///
/// A vanished reply queue gives [`PublishError::Unroutable`] (oslo retries for 60 s).
///
/// ```no_run
/// # async fn f(ch: &lapin::Channel) -> Result<(), fjord_oslo::topology::PublishError> {
/// let reply = fjord_oslo::Reply::ok("msgid", serde_json::json!(5));
/// fjord_oslo::publish_reply(ch, "reply_0123", &reply).await?;
/// # Ok(()) }
/// ```
pub async fn publish_reply(
    channel: &Channel,
    reply_q: &str,
    reply: &Reply,
) -> Result<(), PublishError> {
    publish(channel, "", reply_q, &reply.encode(), None, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_match_oslo() {
        let p = message_properties(None);
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            p.content_encoding().as_ref().map(|s| s.as_str()),
            Some("utf-8")
        );
        assert_eq!(p.headers(), &Some(FieldTable::default()));
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(p.priority(), &Some(0));
        assert_eq!(p.expiration(), &None);
        assert_eq!(
            message_properties(Some(60000))
                .expiration()
                .as_ref()
                .map(|s| s.as_str()),
            Some("60000")
        );
    }

    #[test]
    fn transient_arguments() {
        let args = transient_queue_arguments(&TransportOptions::default());
        assert_eq!(
            args.inner().get(&ShortString::from("x-expires")),
            Some(&AMQPValue::LongInt(1_800_000))
        );
        assert!(topic_queue_arguments(&TransportOptions::default())
            .inner()
            .is_empty());
        let quorum = TransportOptions {
            rabbit_quorum_queue: true,
            ..TransportOptions::default()
        };
        assert_eq!(
            topic_queue_arguments(&quorum)
                .inner()
                .get(&ShortString::from("x-queue-type")),
            Some(&AMQPValue::LongString(LongString::from("quorum")))
        );
    }
}
