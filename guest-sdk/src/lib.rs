//! # fjord-guest: write fjord endpoint components
//!
//! A fjord endpoint is a WebAssembly component (`wasm32-wasip2`) that exports one WIT interface;
//! `fjord-host` serves each exported function as an oslo.messaging RPC method. This crate gives the
//! endpoint what the host offers beside its own interface (the `fjord:endpoint` package):
//!
//! - [`context`]: the oslo request context of the call being served (`request_id`, user, project, any key);
//! - [`log`]: the host's log, tagged with endpoint, method and request id, plus the [`info!`]-style macros;
//! - [`RemoteError`]: raise exactly the exception class an oslo caller expects (`fjord:endpoint/types`);
//! - [`keyvalue`]: buckets of `wasi:keyvalue` (state kept between calls): open, get, set, increment...
//! - [`rpc`]: call and cast to other services (oslo's `RPCClient` and `prepare()`), through the host;
//! - [`failure`]: end a call with exactly the exception it names, from any function (the Python
//!   SDK uses the same import for uncaught exceptions).
//!
//! The endpoint crate runs its own `wit_bindgen::generate!` for the world that exports its interface;
//! the imports used here are merged into the component when it is linked (no need to mention
//! `fjord:endpoint` in the endpoint's world).
//!
//! ```ignore
//! // endpoints/calculator/src/lib.rs
//! wit_bindgen::generate!({ world: "calculator-endpoint", path: "../../wit/calculator" });
//! use exports::fjord::calculator::calculator::Guest;
//!
//! struct Calculator;
//! impl Guest for Calculator {
//!     fn add(a: i64, b: i64) -> i64 {
//!         fjord_guest::debug!("add {a} + {b} for {:?}", fjord_guest::context::user());
//!         a.saturating_add(b)
//!     }
//!     // ...
//! }
//! export!(Calculator);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p calculator`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component to list in the host's config.
//!
//! Outside a component (a native build, e.g. `cargo test` on the host) the imports do not exist:
//! the functions compile, but calling them panics. Use them only inside an exported function.

#![warn(missing_docs)]

#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        world: "imports",
        path: "../wit/endpoint",
        // `remote-error` is used by endpoints' own interfaces, not by any import here.
        generate_unused_types: true,
    });
}

pub mod keyvalue;
pub mod rpc;

/// Generates typed stubs over [`rpc`] from the WIT another fjord endpoint implements, so an
/// endpoint calls it with types checked at compile time: the shapes `fjord_client::generate!`
/// gives callers outside, synchronous, over [`rpc::Client`].
///
/// `generate_client!({ path: "...", world: "..." })`: `path` is the callee's WIT directory
/// (with its `deps/`) or file, relative to the `Cargo.toml` of the endpoint crate; `world`
/// picks the world when the package has several.
///
/// For every interface the world exports it generates a module named after the interface
/// (`compute`) holding the client, named after the interface in UpperCamelCase (`Compute`,
/// also `pub use`d beside the module): `Compute::new(&rpc::Client)`, `.prepare()` (a
/// `ComputePrepare` with `.server()`, `.version()`, `.namespace()`, `.exchange()`,
/// `.fanout()`, `.timeout()`, `.context(&ctx)?` and `.build()`), `Compute::VERSION` (the oslo
/// version the interface serves, asked for unless the client's target or `prepare()` names
/// another), and per WIT function a method with Rust-typed parameters and result plus a
/// `cast_` method; and a Rust type per WIT record, enum, variant, flags and alias, encoded
/// exactly as fjord-host reads and writes them.
///
/// A function returning `result<T, E>` returns `Result<T, rpc::Error>`: its `err` arrives as
/// `rpc::Error::Call(CallError::Remote(..))`, the exception the callee's host raised, which
/// the endpoint can return unchanged as a [`RemoteError`]. Functions that take or return
/// resources, streams or futures are refused at compile time, naming the function.
///
/// ```
/// fjord_guest::generate_client!({ path: "../wit/compute" });
///
/// fn pick(host: &str) -> Result<u64, fjord_guest::rpc::Error> {
///     use fjord_guest::rpc::{Client, Target};
///     let compute = Compute::new(&Client::new(Target::topic("compute")));
///     let node = compute.prepare().server(host).build();
///     let free: compute::Resources = node.free_resources()?;
///     node.cast_build_and_run_instance(&compute::Instance { name: "vm1".into(), ram_mb: 512 })?;
///     Ok(free.free_ram_mb)
/// }
/// assert_eq!(Compute::VERSION, "5.0");
/// # let _ = pick;
/// ```
pub use fjord_codegen::generate_guest as generate_client;

/// What code from [`generate_client!`] refers to; not an API.
#[doc(hidden)]
pub mod __codegen {
    pub use serde;
    pub use serde_json;
}

use bindings::fjord::endpoint::context as ctx_import;

/// `fjord:endpoint/types`: the types the host reads in a guest's results.
///
/// An endpoint whose WIT says `use fjord:endpoint/types.{remote-error};` maps the interface onto
/// this module in its `generate!`, so that its functions return [`RemoteError`]:
///
/// ```ignore
/// wit_bindgen::generate!({
///     world: "scheduler-endpoint",
///     path: "wit",
///     with: { "fjord:endpoint/types@0.1.0": fjord_guest::types },
/// });
/// ```
pub mod types {
    pub use super::bindings::fjord::endpoint::types::*;
}

pub use types::RemoteError;

impl RemoteError {
    /// The exception `class` of `module` with `message`, raised in the caller exactly so.
    ///
    /// ```
    /// let e = fjord_guest::RemoteError::new("nova.exception", "NoValidHost", "no host has 4 GiB free");
    /// assert_eq!((e.module.as_str(), e.class.as_str()), ("nova.exception", "NoValidHost"));
    /// ```
    pub fn new(
        module: impl Into<String>,
        class: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        RemoteError {
            module: module.into(),
            class: class.into(),
            message: message.into(),
        }
    }

    /// A Python built-in exception (`ValueError`, `KeyError`, `TypeError`...), which oslo's
    /// client re-raises as itself.
    ///
    /// ```
    /// let e = fjord_guest::RemoteError::builtin("ValueError", "size must be positive");
    /// assert_eq!(e.module, "builtins");
    /// ```
    pub fn builtin(class: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new("builtins", class, message)
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}: {}", self.module, self.class, self.message)
    }
}

impl std::error::Error for RemoteError {}

use bindings::fjord::endpoint::log as log_import;

/// `fjord:endpoint/failure`: end the call with an exception, whatever the function's WIT result.
///
/// A function returning `result<T, remote-error>` should return `Err(RemoteError)`; these are for
/// the others (a function `-> s64` that finds it cannot answer), and for adapters of languages
/// with exceptions.
pub mod failure {
    use super::{bindings::fjord::endpoint::failure as import, RemoteError};

    /// Tell the host what the call is failing with: if the call then traps (panics), the caller
    /// gets `error` instead of `GuestTrap`, and `traceback` goes to the host log. If the call
    /// returns normally instead, the report is dropped. The first report of a call counts.
    ///
    /// ```ignore
    /// fjord_guest::failure::report(&fjord_guest::RemoteError::builtin("ValueError", "bad"), "");
    /// ```
    pub fn report(error: &RemoteError, traceback: &str) {
        import::raise(error, traceback)
    }

    /// End the call with `error`: report it, then panic (the trap that ends the call).
    ///
    /// ```ignore
    /// fn add(a: i64, b: i64) -> i64 {
    ///     a.checked_add(b).unwrap_or_else(|| {
    ///         fjord_guest::failure::raise(fjord_guest::RemoteError::builtin("OverflowError", "a + b"))
    ///     })
    /// }
    /// ```
    pub fn raise(error: RemoteError) -> ! {
        report(&error, "");
        panic!("{error}")
    }
}

/// The oslo.messaging request context of the call being served: the caller's `ctxt` dict.
///
/// Every function reads the context of the current call; each call runs in a fresh instance, so
/// nothing from an earlier call is visible.
///
/// ```ignore
/// let who = fjord_guest::context::user().unwrap_or_else(|| "anonymous".into());
/// ```
pub mod context {
    use super::ctx_import;

    /// The context's `request_id`, if the caller sent one (oslo services usually do: `req-<uuid>`).
    ///
    /// ```ignore
    /// if let Some(id) = fjord_guest::context::request_id() {
    ///     fjord_guest::info!("serving {id}");
    /// }
    /// ```
    pub fn request_id() -> Option<String> {
        ctx_import::request_id()
    }

    /// The caller's user: the context's `user_id`, else `user`.
    ///
    /// ```ignore
    /// let user = fjord_guest::context::user().unwrap_or_else(|| "anonymous".to_string());
    /// ```
    pub fn user() -> Option<String> {
        ctx_import::user()
    }

    /// The caller's project: the context's `project_id`, else `project`, else `tenant`.
    ///
    /// ```ignore
    /// let project = fjord_guest::context::project().unwrap_or_else(|| "anonymous".to_string());
    /// ```
    pub fn project() -> Option<String> {
        ctx_import::project()
    }

    /// Any context key, as JSON text: `"alice"` (with quotes), `["admin"]`, `3`, `null`;
    /// `None` when the caller did not send that key.
    ///
    /// ```ignore
    /// // ctxt = {"roles": ["admin"], "is_admin": true}
    /// assert_eq!(fjord_guest::context::get("roles").as_deref(), Some(r#"["admin"]"#));
    /// assert_eq!(fjord_guest::context::get("is_admin").as_deref(), Some("true"));
    /// assert_eq!(fjord_guest::context::get("missing"), None);
    /// ```
    pub fn get(key: &str) -> Option<String> {
        ctx_import::get(key)
    }

    /// A context key whose value is a JSON string, unquoted and unescaped; `None` when the key is
    /// absent or its value is not a string (a number, `null`, a list...). No serde needed.
    ///
    /// ```ignore
    /// // ctxt = {"region_name": "RegionOne", "is_admin": true}
    /// assert_eq!(fjord_guest::context::get_str("region_name").as_deref(), Some("RegionOne"));
    /// assert_eq!(fjord_guest::context::get_str("is_admin"), None);
    /// ```
    pub fn get_str(key: &str) -> Option<String> {
        get(key).and_then(|json| crate::json::parse_string(&json))
    }

    /// Every key the caller sent, in no particular order.
    ///
    /// ```ignore
    /// for key in fjord_guest::context::keys() {
    ///     fjord_guest::debug!("{key} = {}", fjord_guest::context::get(&key).unwrap_or_default());
    /// }
    /// ```
    pub fn keys() -> Vec<String> {
        ctx_import::keys()
    }
}

/// The host's log: each line is tagged by the host with endpoint, method and request id.
///
/// The functions take a ready message; the crate-root macros ([`trace!`](crate::trace),
/// [`debug!`](crate::debug), [`info!`](crate::info), [`warn!`](crate::warn), [`error!`](crate::error))
/// take `format!` arguments.
///
/// ```ignore
/// fjord_guest::log::info("started");
/// fjord_guest::info!("sum of {} values", values.len());
/// ```
pub mod log {
    use super::log_import::{self, Level as L};

    /// Log levels, from the most verbose to the most severe.
    ///
    /// ```ignore
    /// fjord_guest::log::log(fjord_guest::log::Level::Warn, "low on memory");
    /// ```
    pub use super::log_import::Level;

    /// Log `message` at `level`.
    ///
    /// ```ignore
    /// use fjord_guest::log::{log, Level};
    /// log(Level::Debug, "details");
    /// ```
    pub fn log(level: Level, message: &str) {
        log_import::log(level, message)
    }

    /// Log at trace level.
    ///
    /// ```ignore
    /// fjord_guest::log::trace("entering divide");
    /// ```
    pub fn trace(message: &str) {
        log(L::Trace, message)
    }

    /// Log at debug level.
    ///
    /// ```ignore
    /// fjord_guest::log::debug("rounding down");
    /// ```
    pub fn debug(message: &str) {
        log(L::Debug, message)
    }

    /// Log at info level.
    ///
    /// ```ignore
    /// fjord_guest::log::info("request served");
    /// ```
    pub fn info(message: &str) {
        log(L::Info, message)
    }

    /// Log at warn level.
    ///
    /// ```ignore
    /// fjord_guest::log::warn("divisor is negative");
    /// ```
    pub fn warn(message: &str) {
        log(L::Warn, message)
    }

    /// Log at error level.
    ///
    /// ```ignore
    /// fjord_guest::log::error("cannot serve this request");
    /// ```
    pub fn error(message: &str) {
        log(L::Error, message)
    }
}

/// Log a `format!`-style message at trace level.
///
/// ```ignore
/// fjord_guest::trace!("a = {}, b = {}", a, b);
/// ```
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::trace(&::std::format!($($arg)*)) };
}

/// Log a `format!`-style message at debug level.
///
/// ```ignore
/// fjord_guest::debug!("{} points", points.len());
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::debug(&::std::format!($($arg)*)) };
}

/// Log a `format!`-style message at info level.
///
/// ```ignore
/// fjord_guest::info!("request {}", fjord_guest::context::request_id().unwrap_or_default());
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::info(&::std::format!($($arg)*)) };
}

/// Log a `format!`-style message at warn level.
///
/// ```ignore
/// fjord_guest::warn!("divisor {} is negative", divisor);
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::warn(&::std::format!($($arg)*)) };
}

/// Log a `format!`-style message at error level.
///
/// ```ignore
/// fjord_guest::error!("overflow adding {}", value);
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::error(&::std::format!($($arg)*)) };
}

/// A minimal JSON string decoder, so that `get_str` needs no serde.
mod json {
    /// Decode `text` if it is exactly one JSON string (surrounding whitespace allowed).
    pub(crate) fn parse_string(text: &str) -> Option<String> {
        let s = text.trim().strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return None, // an unescaped quote: not a single string
                '\\' => match chars.next()? {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hi = hex4(&mut chars)?;
                        let code = if (0xD800..0xDC00).contains(&hi) {
                            if chars.next()? != '\\' || chars.next()? != 'u' {
                                return None;
                            }
                            let lo = hex4(&mut chars)?;
                            if !(0xDC00..0xE000).contains(&lo) {
                                return None;
                            }
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        } else {
                            hi
                        };
                        out.push(char::from_u32(code)?);
                    }
                    _ => return None,
                },
                c => out.push(c),
            }
        }
        Some(out)
    }

    fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
        let mut v = 0;
        for _ in 0..4 {
            v = v * 16 + chars.next()?.to_digit(16)?;
        }
        Some(v)
    }

    #[cfg(test)]
    mod tests {
        use super::parse_string;

        #[test]
        fn strings() {
            assert_eq!(parse_string(r#""alice""#).as_deref(), Some("alice"));
            assert_eq!(
                parse_string(r#" "a\"b\\c\n" "#).as_deref(),
                Some("a\"b\\c\n")
            );
            assert_eq!(
                parse_string(r#""\u00e9\ud83d\ude00""#).as_deref(),
                Some("é😀")
            );
            assert_eq!(parse_string("3"), None);
            assert_eq!(parse_string("null"), None);
            assert_eq!(parse_string(r#""a","b""#), None);
        }
    }
}
