//! `fjord-surface`: what a fjord endpoint component offers to oslo callers, read from its WIT.
//!
//! This is the one description of a component's callable surface: `fjord-host` builds its
//! endpoints (method names, parameter names, versions, what it refuses to serve) from it, and
//! `fjord inspect` prints it, so the two cannot disagree. Names are oslo's (snake_case) and
//! versions are the oslo versions the interfaces serve (`fjord:calculator@1.3.0` serves `1.3`).
//!
//! ```
//! let wit = r#"
//!     package example:calc@1.3.0;
//!     interface calculator { select-destinations: func(max-count: u32) -> bool; }
//!     world w { export calculator; }
//! "#;
//! let surface = fjord_surface::describe_wit_text(wit).unwrap();
//! let calculator = &surface.interfaces[0];
//! assert_eq!(calculator.oslo_version, "1.3");
//! assert_eq!(calculator.methods[0].signature(), "select_destinations(max_count: u32) -> bool");
//! ```

// Nothing from a file may panic the process (as in wasmCloud's host).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod describe;
mod wit_types;

pub use describe::{
    describe_component, describe_wit_path, describe_wit_text, ComponentDescription, InspectError,
    InterfaceDescription, MethodDescription,
};
pub use wit_types::{type_name, unsupported, TypeDescription, TypeKind, WitType};
