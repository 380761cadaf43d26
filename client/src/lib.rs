//! `fjord-client`: oslo.messaging 18.3.1's RPC wire protocol over RabbitMQ, in Rust.
//!
//! - [`TransportUrl`]: the oslo transport URL (`rabbit://user:pass@host:5672/vhost?options`).
//! - [`Target`], [`RpcClient`], [`Transport`]: oslo's client API (`call`, `cast`, `prepare`).
//! - [`Request`], [`Reply`], [`Failure`]: the envelope and bodies, shared with `fjord-host`.
//! - [`topology`]: exchanges, queues and message properties exactly as oslo declares them.
//! - [`inspect`]: what an endpoint component offers to oslo callers.
//!
//! ```no_run
//! use fjord_client::{RpcClient, Target, Transport, TransportUrl};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let url = TransportUrl::parse("rabbit://guest:guest@127.0.0.1:5672/")?;
//! let transport = Transport::connect(&url).await?;
//! let client = RpcClient::new(transport, Target::new("test"));
//! let sum: i64 = client
//!     .prepare()
//!     .version("1.0")
//!     .build()
//!     .call(&Default::default(), "add", serde_json::json!({"a": 2, "b": 3}))
//!     .await?;
//! assert_eq!(sum, 5);
//! # Ok(()) }
//! ```

// Nothing from the network, a file or a guest may panic the process (as in wasmCloud's host).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bench;
pub mod connection;
pub mod envelope;
pub mod failure;
#[doc(hidden)]
pub mod fuzzing;
pub mod inspect;
pub mod names;
pub mod reconnect;
pub mod rpc;
pub mod target;
pub mod topology;
pub mod url;
pub mod version;

pub use connection::{connect, ConnectAttempt, ConnectError};
pub use envelope::{decode_message, EnvelopeError, Reply, Request, RequestError, RequestProblem};
pub use failure::{Failure, FailureError, RemoteError};
pub use rpc::{MessagingTimeout, Prepare, RpcClient, RpcError, Transport, TransportError};
pub use target::Target;
pub use topology::{
    declare_fanout_exchange, declare_server_queues, declare_topic_exchange, message_properties,
    publish_reply, PublishError, ServerQueues, DEFAULT_CONTROL_EXCHANGE,
};
pub use url::{HostSpec, TransportOptions, TransportUrl, UrlError};
pub use version::{is_compatible, Version, VersionError};
