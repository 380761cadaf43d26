//! `fjord-client`: call oslo.messaging RPC servers (fjord-host or Python) from Rust.
//!
//! - [`Transport`]: one connection with a publishing channel and a reply queue, reconnecting by itself.
//! - [`RpcClient`] and [`Prepare`]: oslo's `RPCClient` with `call`, `cast`, fanout and `prepare()`.
//!
//! The wire protocol itself is [`fjord_oslo`], re-exported here for callers' convenience
//! ([`Target`], [`TransportUrl`], [`RemoteError`]...).
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

mod flight;
pub mod rpc;
mod waiters;

pub use fjord_oslo::{
    self as oslo, connect, ConnectAttempt, ConnectError, Failure, RemoteError, Target,
    TransportOptions, TransportUrl, UrlError, DEFAULT_CONTROL_EXCHANGE,
};
pub use rpc::{
    MessagingTimeout, Prepare, RpcClient, RpcError, Transport, TransportError, MAX_TIMEOUT,
};
