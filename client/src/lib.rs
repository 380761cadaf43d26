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

/// Generates a typed client from the WIT an endpoint implements, so callers write
/// `Calculator::new(&client).add(2, 3).await?` instead of JSON.
///
/// `generate!({ path: "...", world: "..." })`: `path` is the WIT directory (with its `deps/`)
/// or file, relative to the `Cargo.toml` of the crate using the macro (as with
/// `wit_bindgen::generate!`); `world` picks the world when the package has several.
///
/// For every interface the world exports it generates a module named after the interface
/// (`calculator`) holding:
/// - the client, named after the interface in UpperCamelCase (`Calculator`, also `pub use`d
///   beside the module): `Calculator::new(&RpcClient)`, `.prepare()` (a `CalculatorPrepare`
///   with `.server()`, `.version()`, `.namespace()`, `.exchange()`, `.fanout()`, `.timeout()`,
///   `.call_monitor_timeout()`, `.context(map)` and `.build()`), `Calculator::VERSION` (the
///   oslo version the interface serves, which calls ask for unless the `RpcClient`'s target or
///   `prepare()` names another) and, per WIT function, an async method with Rust-typed
///   parameters and result plus a `cast_` method;
/// - a Rust type per WIT record, enum, variant, flags and alias (and per type it `use`s from
///   another interface), encoded exactly as fjord-host reads and writes them.
///
/// A function returning `result<T, E>` returns `Result<T, RpcError>`: its `err` reaches the
/// caller as [`RpcError::Remote`], the exception fjord-host raises for it. Functions that take
/// or return resources, streams or futures are refused at compile time, naming the function.
///
/// ```no_run
/// fjord_client::generate!({ path: "../wit/calculator" });
///
/// # async fn run(client: fjord_client::RpcClient) -> Result<(), fjord_client::RpcError> {
/// let calculator = Calculator::new(&client);
/// assert_eq!(calculator.add(2, 3).await?, 5);
/// let on_host1 = calculator
///     .prepare()
///     .server("host1")
///     .timeout(std::time::Duration::from_secs(5))
///     .build();
/// let q: i64 = on_host1.divide(7, 2, Some(calculator::Rounding::Up)).await?;
/// let centre = calculator
///     .centroid(&[calculator::Point { x: 0.0, y: 0.0 }, calculator::Point { x: 2.0, y: 2.0 }])
///     .await?;
/// # let _ = (q, centre); Ok(()) }
/// # fn main() {}
/// ```
pub use fjord_codegen::generate;

/// What code from [`generate!`] refers to; not an API.
#[doc(hidden)]
pub mod __codegen {
    pub use serde;
    pub use serde_json;
}
