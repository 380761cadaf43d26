//! The `fjord` command's library: what `fjord bench` does, usable from other load generators
//! (the lapin floor in `bench/` reports in the same JSON form).
//!
//! ```
//! let load = fjord_cli::bench::Load { concurrency: 16, calls: 10_000 };
//! assert_eq!(load.calls / load.concurrency, 625);
//! ```

// Nothing from the network, a file or a guest may panic the process (as in wasmCloud's host).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bench;
pub mod new;
