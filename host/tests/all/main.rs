//! Integration tests of fjord-host, all against the real RabbitMQ on 127.0.0.1:5672, with guest
//! components built by `scripts/setup`. One test binary, as in wasmtime's `tests/all`.

mod bench;
mod broker;
mod convert;
mod faults;
mod fuzz_corpus;
mod harness;
mod hostile;
mod interop;
mod keyvalue;
mod queue_options;
mod redis_node;
mod resilience;
mod rpc;
mod startup;
mod wire;
