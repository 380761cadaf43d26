//! fjord-host: serves oslo.messaging RPC targets from RabbitMQ with WebAssembly components.
//!
//! A request travels `server` (AMQP subscription) → `dispatch` (oslo's namespace/version/method
//! rules) → `convert` (keyword arguments to WIT values) → `sandbox` (a fresh instance with a
//! deadline and a memory cap) and back as an oslo reply. The wire format itself lives in
//! `fjord-client`, shared with the client.

pub mod config;
pub mod convert;
pub mod dispatch;
pub mod endpoint;
pub mod guest_api;
pub mod names;
pub mod sandbox;
pub mod server;
