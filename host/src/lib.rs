//! fjord-host: serves oslo.messaging RPC targets from RabbitMQ with WebAssembly components.
//!
//! A request travels `server` (AMQP subscription, a thin shell) → `delivery` (every rule about a
//! message, decided without the network) → `dispatch` (oslo's namespace/version/method rules) →
//! `convert` (keyword arguments to WIT values) → `sandbox` (a fresh instance with a deadline and a
//! memory cap) and back as an oslo reply through `replies`. The wire format itself lives in
//! `fjord-oslo`, shared with the client.

// Nothing from the network, a file or a guest may panic the process (as in wasmCloud's host).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod capabilities;
pub mod check;
pub mod config;
pub mod control;
pub mod convert;
pub mod delivery;
pub mod dispatch;
pub mod endpoint;
#[doc(hidden)]
pub mod fuzzing;
pub mod guest_api;
pub mod guest_log;
pub mod guest_output;
pub mod health;
pub mod keyvalue;
pub mod lift_budget;
pub mod metrics;
pub mod outgoing;
pub mod reload;
pub mod replies;
pub mod sandbox;
pub mod server;
pub mod settlement;
