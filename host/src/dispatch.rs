//! oslo.messaging's dispatch rules over a server's endpoints, and what each outcome looks like to the
//! caller (the failure table of `docs/design.md`).

use crate::convert::{to_json_text, to_val};
use crate::endpoint::{Endpoint, Method};
use crate::guest_api::CallInfo;
use crate::outgoing::CallSlot;
use crate::sandbox::{GuestFailure, Sandbox};
use fjord_oslo::envelope::{JsonText, Request};
use fjord_oslo::failure::Failure;
use fjord_oslo::names::to_camel;
use fjord_oslo::version::is_compatible;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Type, Val};

/// The module of failures raised by fjord itself rather than by endpoint code.
pub const FJORD_MODULE: &str = "fjord";
/// The call ran past its deadline.
pub const DEADLINE_CLASS: &str = "DeadlineExceeded";
/// The guest tried to grow its memory past its cap.
pub const MEMORY_CLASS: &str = "MemoryLimitExceeded";
/// The guest trapped (a panic, `unreachable`, a stack overflow...).
pub const TRAP_CLASS: &str = "GuestTrap";
/// The result (or error message) was larger than the endpoint's `max_reply_kib`.
pub const REPLY_TOO_LARGE_CLASS: &str = "ReplyTooLarge";
/// The request was larger than the endpoint's `max_request_kib`.
pub const REQUEST_TOO_LARGE_CLASS: &str = "RequestTooLarge";
/// The host could not set up the sandbox (a granted directory has gone...).
pub const SANDBOX_CLASS: &str = "SandboxError";
/// The class of an `err` whose type is not an enum or variant (a string, a record...).
pub const ENDPOINT_ERROR_CLASS: &str = "EndpointError";

/// The endpoints of one RPC server (one topic + server name), in configuration order.
pub struct Dispatcher {
    sandbox: Arc<Sandbox>,
    endpoints: Vec<Endpoint>,
    max_request_bytes: usize,
    /// `topic.server` when the server also serves the control endpoint (`control = true`).
    control: Option<String>,
}

/// The endpoint index a resolved call of the built-in control endpoint carries.
const CONTROL_ENDPOINT: usize = usize::MAX;

impl Dispatcher {
    pub fn new(sandbox: Arc<Sandbox>, endpoints: Vec<Endpoint>) -> Self {
        let max_request_bytes = endpoints
            .iter()
            .map(|e| e.limits.max_request_bytes)
            .max()
            .unwrap_or(0);
        Dispatcher {
            sandbox,
            endpoints,
            max_request_bytes,
            control: None,
        }
    }

    /// Serves the built-in control endpoint ([`crate::control`]) too, for server `name`.
    pub fn with_control(mut self, name: String) -> Self {
        self.control = Some(name);
        self
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The interface name of the endpoint a resolved call runs in (for metrics).
    pub fn interface(&self, call: &Resolved) -> Option<&str> {
        if call.endpoint == CONTROL_ENDPOINT {
            return Some(crate::control::NAMESPACE);
        }
        self.endpoints
            .get(call.endpoint)
            .map(|e| e.interface.as_str())
    }

    /// The largest request any endpoint accepts: a body above it is not even parsed.
    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// Finds the method as oslo's `RPCDispatcher.dispatch` does and calls it. `body_len` is the
    /// size of the message the request came in, checked against the endpoint's limit. The result
    /// comes back as JSON text of at most the endpoint's `max_reply_kib`.
    pub async fn dispatch(&self, request: &Request, body_len: usize) -> Result<JsonText, Failure> {
        let call = self.resolve(request, body_len)?;
        self.run(&call, request, None).await
    }

    /// Everything about a request that can be decided without running it: oslo's namespace,
    /// version and method rules, the endpoint's request limit, and the arguments converted to
    /// the method's WIT types.
    // The failure is what the caller gets; boxing it would only move the allocation.
    #[allow(clippy::result_large_err)]
    pub fn resolve(&self, request: &Request, body_len: usize) -> Result<Resolved, Failure> {
        if self.control.is_some() && crate::control::is_for_control(request) {
            crate::control::resolve(request)?;
            return Ok(Resolved {
                endpoint: CONTROL_ENDPOINT,
                method: request.method.clone(),
                params: Vec::new(),
                deadline: Duration::from_secs(10),
            });
        }
        let version = request.version.as_deref().unwrap_or("1.0");
        let mut found_compatible = false;
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            if endpoint.namespace != request.namespace {
                continue;
            }
            match is_compatible(&endpoint.version, version) {
                Ok(true) => {}
                Ok(false) => continue,
                // A Python server fails the same way, with the ValueError of int().
                Err(e) => {
                    return Err(Failure::new(
                        "ValueError",
                        "builtins",
                        format!("invalid RPC version {version:?}: {e}"),
                    ))
                }
            }
            // The default access policy: names starting with `_` are private.
            if !request.method.starts_with('_') {
                if let Some(method) = endpoint.methods.get(&request.method) {
                    let max = endpoint.limits.max_request_bytes;
                    if body_len > max {
                        let name = &method.name;
                        let message =
                            format!("the request is {body_len} bytes, more than the {max} bytes {name} accepts");
                        return Err(Failure::new(REQUEST_TOO_LARGE_CLASS, FJORD_MODULE, message));
                    }
                    let params =
                        bind_arguments(method, &request.args).map_err(Failure::type_error)?;
                    return Ok(Resolved {
                        endpoint: index,
                        method: request.method.clone(),
                        params,
                        deadline: endpoint.limits.deadline,
                    });
                }
            }
            found_compatible = true;
        }
        if found_compatible {
            Err(Failure::no_such_method(&request.method))
        } else {
            Err(Failure::unsupported_version(version, &request.method))
        }
    }

    /// Runs a resolved call in a fresh sandbox; a result or error message over the endpoint's
    /// `max_reply_kib` becomes `ReplyTooLarge`. `slot` is the call's in-flight slot, which the
    /// guest lends back while it waits on an outgoing call.
    pub async fn run(
        &self,
        call: &Resolved,
        request: &Request,
        slot: Option<Arc<CallSlot>>,
    ) -> Result<JsonText, Failure> {
        if let (CONTROL_ENDPOINT, Some(server)) = (call.endpoint, &self.control) {
            return crate::control::run(&call.method, server, &self.endpoints);
        }
        let found = self
            .endpoints
            .get(call.endpoint)
            .and_then(|e| Some((e, e.methods.get(&call.method)?)));
        let Some((endpoint, method)) = found else {
            // Resolved by this dispatcher: cannot happen.
            return Err(Failure::no_such_method(&call.method));
        };
        let outcome = self
            .call(endpoint, method, &call.params, request, slot)
            .await;
        let max = endpoint.limits.max_reply_bytes;
        match outcome {
            Err(failure) if failure.message.len() > max => Err(too_large("error message", max)),
            outcome => outcome,
        }
    }

    async fn call(
        &self,
        endpoint: &Endpoint,
        method: &Method,
        params: &[Val],
        request: &Request,
        slot: Option<Arc<CallSlot>>,
    ) -> Result<JsonText, Failure> {
        let call = Arc::new(CallInfo {
            endpoint: endpoint.interface.clone(),
            method: method.name.clone(),
            context: request.context.clone(),
            slot,
        });
        let results_len = usize::from(method.result.is_some());
        let max = endpoint.limits.max_reply_bytes;
        let results = self
            .sandbox
            .call(
                &endpoint.pre,
                &method.index,
                params,
                results_len,
                call,
                endpoint.limits,
                method.fuel.fuel,
                &endpoint.capabilities,
            )
            .await
            .map_err(|failure| match failure {
                GuestFailure::ResultTooLarge => result_too_large(method, max),
                GuestFailure::Raised(r) => remote_exception(&r.module, &r.class, &r.message, max),
                other => guest_failure(other),
            })?;
        let result = match (results.into_iter().next(), &method.result) {
            (None, _) | (Some(Val::Result(Ok(None))), Some(Type::Result(_))) => None,
            // A top-level result is oslo's return-or-raise.
            (Some(Val::Result(Ok(Some(v)))), Some(Type::Result(_))) => Some(*v),
            (Some(Val::Result(Err(e))), Some(Type::Result(_))) => {
                return Err(endpoint_error(&endpoint.interface, e.as_deref(), max));
            }
            (Some(v), _) => Some(v),
        };
        let text = match &result {
            None => Some("null".to_string()),
            Some(v) => to_json_text(v, max),
        };
        // Past this point the result exists only as text.
        drop(result);
        let text = text.ok_or_else(|| result_too_large(method, max))?;
        JsonText::new(text).map_err(|e| {
            Failure::new(
                TRAP_CLASS,
                FJORD_MODULE,
                format!("the result cannot be sent as JSON: {e}"),
            )
        })
    }
}

/// A request matched to its endpoint and method, its arguments converted: ready to run.
#[derive(Debug)]
pub struct Resolved {
    /// Index of the endpoint in the dispatcher.
    endpoint: usize,
    /// The method's oslo name.
    method: String,
    /// The arguments, in parameter order.
    params: Vec<Val>,
    /// The endpoint's `deadline_ms`.
    pub deadline: Duration,
}

/// Matches keyword arguments to parameters by name, with Python's messages for what does not fit.
/// An absent argument whose type is an option is none.
pub fn bind_arguments(method: &Method, args: &Map<String, Value>) -> Result<Vec<Val>, String> {
    let name = &method.name;
    if let Some(surplus) = args
        .keys()
        .find(|k| !method.params.iter().any(|p| &p.name == *k))
    {
        return Err(format!(
            "{name}() got an unexpected keyword argument '{surplus}'"
        ));
    }
    let missing: Vec<&str> = method
        .params
        .iter()
        .filter(|p| !args.contains_key(&p.name) && !matches!(p.ty, Type::Option(_)))
        .map(|p| p.name.as_str())
        .collect();
    if !missing.is_empty() {
        let quoted: Vec<String> = missing.iter().map(|m| format!("'{m}'")).collect();
        return Err(format!(
            "{name}() missing {} required argument{}: {}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            quoted.join(", ")
        ));
    }
    method
        .params
        .iter()
        .map(|p| match args.get(&p.name) {
            Some(v) => to_val(&p.ty, v, &p.name)
                .map_err(|e| format!("{name}() argument {}: {}", e.path, e.problem)),
            None => Ok(Val::Option(None)),
        })
        .collect()
}

/// `err(e)` as the caller sees it: `fjord:endpoint/types.remote-error` is exactly the exception it
/// names; an enum or variant case becomes the class (`not-found` is `NotFound`); anything else is
/// an `EndpointError` carrying the value. A message over `max` bytes is `ReplyTooLarge`.
fn endpoint_error(interface: &str, e: Option<&Val>, max: usize) -> Failure {
    // The remote-error itself, or a variant case carrying one (`variant e { not-found,
    // remote(remote-error) }`): either is the exception it names.
    let record = match e {
        Some(Val::Record(fields)) => Some(fields),
        Some(Val::Variant(_, Some(payload))) => match payload.as_ref() {
            Val::Record(fields) => Some(fields),
            _ => None,
        },
        _ => None,
    };
    if let Some((module, class, message)) = record.and_then(|fields| remote_error(fields)) {
        return remote_exception(module, class, message, max);
    }
    let module = interface.split('@').next().unwrap_or(interface);
    let (class, message) = match e {
        Some(Val::Enum(case)) | Some(Val::Variant(case, None)) => {
            (to_camel(case), Some(case.replace('-', " ")))
        }
        Some(Val::Variant(case, Some(payload))) => (to_camel(case), text(payload, max)),
        Some(other) => (ENDPOINT_ERROR_CLASS.to_string(), text(other, max)),
        None => (ENDPOINT_ERROR_CLASS.to_string(), Some("error".to_string())),
    };
    match message {
        Some(message) if message.len() <= max => Failure::new(class, module, message),
        _ => too_large("error message", max),
    }
}

/// The longest `module` or `class` of a `remote-error` (Python names are far shorter; a longer
/// one is a guest bug, not an exception to pass on).
pub const MAX_REMOTE_NAME: usize = 255;

/// Whether a guest's `module` or `class` may be passed on as a caller's exception name: non-empty,
/// at most [`MAX_REMOTE_NAME`] bytes, no whitespace or control characters (an oslo caller builds
/// a class lookup from it).
pub fn usable_remote_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_REMOTE_NAME
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The fields of a `remote-error { module, class, message }` (records are structural in the
/// component model: any record of exactly these string fields is one), if the names are usable:
/// non-empty, at most [`MAX_REMOTE_NAME`] bytes, no whitespace or control characters.
fn remote_error(fields: &[(String, Val)]) -> Option<(&str, &str, &str)> {
    let [(f1, Val::String(module)), (f2, Val::String(class)), (f3, Val::String(message))] = fields
    else {
        return None;
    };
    let named = f1 == "module" && f2 == "class" && f3 == "message";
    (named && usable_remote_name(module) && usable_remote_name(class)).then_some((
        module.as_str(),
        class.as_str(),
        message.as_str(),
    ))
}

/// A value as message text: strings as they are, anything else as JSON; `None` past `max` bytes.
fn text(v: &Val, max: usize) -> Option<String> {
    match v {
        Val::String(s) => (s.len() <= max).then(|| s.clone()),
        other => to_json_text(other, max),
    }
}

/// `ReplyTooLarge`: the caller hears back, but the broker and the caller are spared the payload.
/// The exception a guest named (returned as a `remote-error` or reported before trapping), as
/// the caller gets it: itself, unless its message is over the reply limit of `max` bytes.
fn remote_exception(module: &str, class: &str, message: &str, max: usize) -> Failure {
    if message.len() <= max {
        Failure::new(class, module, message)
    } else {
        too_large("error message", max)
    }
}

fn too_large(what: &str, max: usize) -> Failure {
    Failure::new(
        REPLY_TOO_LARGE_CLASS,
        FJORD_MODULE,
        format!("the {what} is more than the {max} bytes allowed"),
    )
}

/// A result refused before it was lifted, or while it was written: over `max` bytes of JSON, or,
/// for a type whose values cost the host more than `lift_budget::MAX_FUEL_PER_JSON_BYTE` per
/// byte of JSON, over the memory that budget allows.
fn result_too_large(method: &Method, max: usize) -> Failure {
    if method.fuel.capped {
        let message = format!(
            "the result is more than the {max} bytes allowed, or needs more than {} bytes of host memory to read",
            method.fuel.fuel
        );
        Failure::new(REPLY_TOO_LARGE_CLASS, FJORD_MODULE, message)
    } else {
        too_large("result", max)
    }
}

fn guest_failure(failure: GuestFailure) -> Failure {
    let class = match failure {
        GuestFailure::Deadline(_) => DEADLINE_CLASS,
        GuestFailure::Memory(_) => MEMORY_CLASS,
        GuestFailure::Trap(_) | GuestFailure::HostCallTooLarge(_) => TRAP_CLASS,
        GuestFailure::Setup(_) => SANDBOX_CLASS,
        GuestFailure::ResultTooLarge => REPLY_TOO_LARGE_CLASS,
        // Mapped by the caller of `Sandbox::call` (it knows the reply limit); never reached.
        GuestFailure::Raised(raised) => {
            return Failure::new(raised.class, raised.module, raised.message);
        }
    };
    Failure::new(class, FJORD_MODULE, failure.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(module: &str, class: &str, message: &str) -> Val {
        Val::Record(vec![
            ("module".into(), Val::String(module.into())),
            ("class".into(), Val::String(class.into())),
            ("message".into(), Val::String(message.into())),
        ])
    }

    #[test]
    fn a_remote_error_is_exactly_the_exception_it_names() {
        let e = remote("nova.exception", "NoValidHost", "no host has 4 GiB free");
        let failure = endpoint_error("fjord:x/y@1.0.0", Some(&e), 1000);
        assert_eq!(
            (failure.class.as_str(), failure.module.as_str()),
            ("NoValidHost", "nova.exception")
        );
        assert_eq!(failure.message, "no host has 4 GiB free");
        let e = remote("builtins", "ValueError", &"v".repeat(20));
        assert_eq!(
            endpoint_error("fjord:x/y@1.0.0", Some(&e), 19).class,
            "ReplyTooLarge"
        );
        // Unusable names are not passed on as a class: the caller gets the value to look at.
        for (module, class) in [
            ("", "X"),
            ("m", ""),
            ("m", "Bad Name"),
            ("m", &"C".repeat(256)),
        ] {
            let failure =
                endpoint_error("fjord:x/y@1.0.0", Some(&remote(module, class, "m")), 1000);
            assert_eq!(failure.class, "EndpointError", "{module:?} {class:?}");
            assert_eq!(failure.module, "fjord:x/y");
        }
        // A variant case carrying one raises it too; a case carrying anything else is the case.
        let carried = Val::Variant(
            "remote".into(),
            Some(Box::new(remote("builtins", "KeyError", "no such flavor"))),
        );
        let failure = endpoint_error("fjord:x/y@1.0.0", Some(&carried), 1000);
        assert_eq!(
            (
                failure.class.as_str(),
                failure.module.as_str(),
                failure.message.as_str()
            ),
            ("KeyError", "builtins", "no such flavor")
        );
        let text = Val::Variant(
            "invalid-input".into(),
            Some(Box::new(Val::String("x".into()))),
        );
        assert_eq!(
            endpoint_error("fjord:x/y@1.0.0", Some(&text), 1000).class,
            "InvalidInput"
        );
        // Another record is a value, not an exception.
        let other = Val::Record(vec![("code".into(), Val::U32(3))]);
        assert_eq!(
            endpoint_error("fjord:x/y@1.0.0", Some(&other), 1000).message,
            r#"{"code":3}"#
        );
    }

    #[test]
    fn messages_over_the_limit_become_reply_too_large() {
        let long = Val::String("e".repeat(100));
        let failure = endpoint_error("fjord:x/y@1.0.0", Some(&long), 100);
        assert_eq!(failure.class, "EndpointError");
        assert_eq!(failure.module, "fjord:x/y");
        let failure = endpoint_error("fjord:x/y@1.0.0", Some(&long), 99);
        assert_eq!(
            (failure.class.as_str(), failure.module.as_str()),
            ("ReplyTooLarge", "fjord")
        );
        assert!(
            failure.message.contains("error message") && failure.message.contains("99 bytes"),
            "{}",
            failure.message
        );
        let list = Val::List(vec![Val::U8(1); 10]);
        assert_eq!(text(&list, 21).as_deref(), Some("[1,1,1,1,1,1,1,1,1,1]"));
        assert_eq!(text(&list, 20), None);
    }
}
