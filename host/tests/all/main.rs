//! Integration tests of fjord-host, all against the real RabbitMQ on 127.0.0.1:5672, with guest
//! components built by `scripts/setup`. One test binary, as in wasmtime's `tests/all`.

mod bench;
mod bounds;
mod broker;
mod client;
mod cluster;
mod convert;
mod delivery;
mod failover;
mod faults;
mod fuzz_corpus;
mod hardening;
mod harness;
mod hostile;
mod hot_deploy;
mod interop;
mod keyvalue;
mod new_endpoint;
mod nova;
mod ops;
mod outgoing;
mod python_guest;
mod queue_options;
mod redis_node;
mod resilience;
mod rpc;
mod scaling;
mod startup;
mod typed;
mod wire;

/// Counts what each thread allocates, so `delivery::tree_bound` can measure a request's cost.
#[global_allocator]
static ALLOCATOR: fjord_host::fuzzing::CountingAlloc = fjord_host::fuzzing::CountingAlloc;
