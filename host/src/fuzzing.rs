//! The invariants the JSON-to-WIT fuzz target checks, here so that the nightly fuzzer (`fuzz/`) and
//! the stable corpus-replay test (`tests/all/fuzz_corpus.rs`) run the very same code.
//!
//! Not part of the API: a violated invariant is returned as an `Err` describing it, and the
//! callers turn it into a crash (the fuzzer) or a test failure.

use crate::convert::{to_json, to_json_text, to_val, type_name};
use crate::dispatch::bind_arguments;
use crate::endpoint::{Endpoint, Method};
use crate::lift_budget::check_bound;
use serde_json::Value;
use wasmtime::component::{Type, Val};

/// Reads arbitrary bytes as JSON and converts it, for every method of `endpoint`, to each
/// parameter's type and (when it is an object) as the method's keyword arguments.
///
/// Holds when conversion never panics and every value it accepts survives WIT → JSON → WIT
/// unchanged, both as a JSON value and through JSON text (what the reply carries), and lifting
/// it costs no more than the reply budget's bound.
pub fn check_conversion(endpoint: &Endpoint, data: &[u8]) -> Result<(), String> {
    let Ok(json) = serde_json::from_slice::<Value>(data) else {
        return Ok(());
    };
    // Sorted so that a failure is reproducible run after run.
    let mut methods: Vec<&Method> = endpoint.methods.values().collect();
    methods.sort_by(|a, b| a.name.cmp(&b.name));
    for method in methods {
        for param in &method.params {
            match to_val(&param.ty, &json, &param.name) {
                Ok(val) => round_trip(&param.ty, &val)?,
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
        if let Value::Object(args) = &json {
            if let Ok(vals) = bind_arguments(method, args) {
                for (param, val) in method.params.iter().zip(&vals) {
                    round_trip(&param.ty, val)?;
                }
            }
        }
    }
    Ok(())
}

/// A value of type `ty` converted to JSON converts back equal, also through JSON text; the text
/// written straight from the value is the same; and lifting the value out of a guest costs no
/// more than the bound the host's reply budget assumes.
fn round_trip(ty: &Type, val: &Val) -> Result<(), String> {
    let json = to_json(val);
    let text = json.to_string();
    let direct = to_json_text(val, usize::MAX);
    if direct.as_deref() != Some(text.as_str()) {
        return Err(format!(
            "{val:?} written directly is {direct:?}, not {text}"
        ));
    }
    check_bound(ty, val, text.len())?;
    let reparsed: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{val:?} became unreadable JSON text {text}: {e}"))?;
    for (how, json) in [("JSON", &json), ("JSON text", &reparsed)] {
        let back = to_val(ty, json, "v").map_err(|e| {
            format!(
                "{val:?} as {how} {json} is refused as {}: {e}",
                type_name(ty)
            )
        })?;
        if back != *val {
            return Err(format!(
                "{val:?} as {how} {json} came back as {back:?} ({})",
                type_name(ty)
            ));
        }
    }
    Ok(())
}

/// A global allocator that counts what the current thread holds, as glibc's malloc would hold
/// it (16-byte chunks with an 8-byte header, 32 bytes at least), so that a test or the fuzzer can
/// measure what one synchronous piece of work allocates at its peak ([`peak_during`]). Install
/// it with `#[global_allocator] static A: CountingAlloc = CountingAlloc;`.
pub struct CountingAlloc;

thread_local! {
    static LIVE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static PEAK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn footprint(size: usize) -> usize {
    (size.saturating_add(8 + 15) & !15).max(32)
}

fn grew(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

// SAFETY: every call is passed on to the system allocator unchanged; only counters are updated.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        COUNTING.store(true, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            grew(footprint(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        shrank(footprint(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(footprint(layout.size()));
            grew(footprint(new_size));
        }
        p
    }
}

/// Runs `work` and returns what it returned and the most bytes it held at once on this thread
/// beyond what the thread held before; `None` when [`CountingAlloc`] is not the global allocator.
pub fn peak_during<R>(work: impl FnOnce() -> R) -> (R, Option<usize>) {
    let before = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(before));
    let result = work();
    let peak = PEAK.with(|p| p.get());
    let counting = COUNTING.load(std::sync::atomic::Ordering::Relaxed);
    (result, counting.then(|| peak.saturating_sub(before)))
}

/// What the tree built from a request may cost at most, as a multiple of the server's largest
/// `max_request_kib` (plus [`TREE_SLACK`] for fixed costs); measured in `tests/all/delivery.rs`.
pub const TREE_FACTOR: usize = 8;
/// Fixed costs of deciding about one message (error texts, the request's small fields).
pub const TREE_SLACK: usize = 16 << 10;

/// The properties the delivery fuzz target uses, chosen by the first byte of its input.
pub fn fuzz_properties(selector: u8) -> lapin::BasicProperties {
    use lapin::types::ShortString;
    let oslo = fjord_oslo::topology::message_properties(None);
    match selector % 8 {
        1 => lapin::BasicProperties::default(),
        2 => oslo.with_content_type(ShortString::from("application/json; charset=utf-8")),
        3 => oslo.with_content_type(ShortString::from("text/plain")),
        _ => oslo,
    }
}

/// Runs the delivery decision over arbitrary bytes (the first selects the AMQP properties, the
/// rest is the body) against `dispatcher`.
///
/// Holds when deciding never panics; the tree it builds stays within [`TREE_FACTOR`] times the
/// server's request limit (when [`CountingAlloc`] counts); a reply address it answers is made of
/// AMQP short strings; and it answers (a failure at once, or the call) exactly when the scanner
/// finds a usable reply address in a JSON-typed message: silence only for messages without one.
pub fn check_delivery(dispatcher: &crate::dispatch::Dispatcher, data: &[u8]) -> Result<(), String> {
    use crate::delivery::{deliver, Duplicates, ReplyTo, Verdict};
    use fjord_oslo::scan::{scan_request, Field, MAX_SHORT_STRING};
    let Some((&selector, body)) = data.split_first() else {
        return Ok(());
    };
    let properties = fuzz_properties(selector);
    let duplicates = Duplicates::default();
    let (verdict, peak) = peak_during(|| deliver(&properties, body, dispatcher, &duplicates));
    let limit = dispatcher.max_request_bytes();
    if let Some(peak) = peak {
        let bound = limit.saturating_mul(TREE_FACTOR).saturating_add(TREE_SLACK);
        if peak > bound {
            return Err(format!(
                "deciding about a {}-byte body held {peak} bytes, more than {TREE_FACTOR} x {limit} + {TREE_SLACK}",
                body.len()
            ));
        }
    }
    let answered: Option<&ReplyTo> = match &verdict {
        Verdict::Answer { to, .. } => Some(to),
        Verdict::Run(call) => call.to.as_ref(),
        Verdict::Reject { reason } | Verdict::Drop { reason, .. } => {
            let _ = reason.len();
            None
        }
    };
    if let Some(to) = answered {
        for (what, text) in [("_msg_id", &to.msg_id), ("_reply_q", &to.reply_q)] {
            if text.is_empty() || text.len() > MAX_SHORT_STRING {
                return Err(format!("answers a {what} of {} bytes", text.len()));
            }
        }
    }
    let json = properties.content_type().as_ref().is_none_or(|t| {
        t.as_str()
            .split(';')
            .next()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return match verdict {
            Verdict::Reject { .. } => Ok(()),
            other => Err(format!(
                "a message that is not JSON was not rejected: {other:?}"
            )),
        };
    }
    let usable = |f: &Field| f.text().filter(|t| !t.is_empty()).map(str::to_string);
    let scanned = scan_request(body).ok().and_then(|s| {
        let msg_id = usable(&s.msg_id)?;
        let reply_q = usable(&s.reply_q)?;
        (reply_q.len() <= MAX_SHORT_STRING).then_some(ReplyTo { msg_id, reply_q })
    });
    match (answered, &scanned) {
        (Some(to), Some(found)) if to == found => Ok(()),
        (None, None) => Ok(()),
        _ => Err(format!(
            "the verdict answers {answered:?}, the scanner finds {scanned:?}: {verdict:?}"
        )),
    }
}

/// The request limit of the dispatcher the delivery fuzz target runs against: small, so that
/// bodies over it and requests with more values than it allows are within the fuzzer's reach.
pub const FUZZ_MAX_REQUEST_BYTES: usize = 4096;

/// The server the delivery fuzz target and its corpus replay decide for: the `types` test
/// component (`tests/components/types`) with a [`FUZZ_MAX_REQUEST_BYTES`] request limit.
pub fn delivery_dispatcher(
    types_wasm: &std::path::Path,
) -> anyhow::Result<crate::dispatch::Dispatcher> {
    let sandbox = std::sync::Arc::new(crate::sandbox::Sandbox::for_calls(1)?);
    let limits = crate::sandbox::Limits {
        max_request_bytes: FUZZ_MAX_REQUEST_BYTES,
        ..crate::sandbox::Limits::default()
    };
    let endpoints = crate::endpoint::load(&sandbox, types_wasm, None, limits)?;
    Ok(crate::dispatch::Dispatcher::new(sandbox, endpoints))
}
