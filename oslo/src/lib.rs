//! `fjord-oslo`: oslo.messaging 18.3.1's RPC wire protocol over RabbitMQ, defined once and used by
//! `fjord-host` and `fjord-client` alike.
//!
//! - [`url`]: the oslo transport URL (`rabbit://user:pass@host:5672/vhost?options`), passwords masked.
//! - [`target`]: oslo's `Target`.
//! - [`envelope`]: the 2.0 envelope, [`Request`] and [`Reply`].
//! - [`failure`]: oslo's failure JSON and [`RemoteError`].
//! - [`topology`]: exchanges, queues and message properties exactly as oslo declares them.
//! - [`version`]: oslo's version compatibility rule; [`names`]: WIT ↔ oslo names.
//! - [`scan`]: a request's reply address and size, read without parsing it (for requests too
//!   large or too deep to parse, so that their callers still hear back).
//! - [`connection`], [`failover`], [`reconnect`]: connecting to one of the URL's hosts in oslo's
//!   failover order, backoff and outage logging.
//!
//! ```
//! let url = fjord_oslo::TransportUrl::parse("rabbit://guest:secret@127.0.0.1:5672/").unwrap();
//! assert_eq!(url.masked(), "rabbit://guest:****@127.0.0.1:5672/");
//! let body = fjord_oslo::Request::new("add", Default::default()).encode();
//! let request = fjord_oslo::Request::from_message(fjord_oslo::decode_message(&body).unwrap()).unwrap();
//! assert_eq!(request.method, "add");
//! ```

// Nothing from the network, a file or a guest may panic the process (as in wasmCloud's host).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod connection;
pub mod envelope;
pub mod failover;
pub mod failure;
#[doc(hidden)]
pub mod fuzzing;
pub mod names;
pub mod reconnect;
pub mod scan;
pub mod target;
pub mod topology;
pub mod url;
pub mod version;

pub use connection::{connect, ConnectAttempt, ConnectError};
pub use envelope::{decode_message, EnvelopeError, Reply, Request, RequestError, RequestProblem};
pub use failure::{Failure, FailureError, RemoteError};
pub use target::Target;
pub use topology::{
    declare_fanout_exchange, declare_server_queues, declare_topic_exchange, message_properties,
    publish_reply, PublishError, ServerQueues, DEFAULT_CONTROL_EXCHANGE,
};
pub use url::{HostSpec, TransportOptions, TransportUrl, UrlError};
pub use version::{is_compatible, Version, VersionError};
