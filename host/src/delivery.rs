//! What the host does with one message, decided without touching the network: from the AMQP
//! properties and body (and the server's endpoints and limits) to a [`Verdict`]: reject it, drop
//! it, answer it at once with a failure, or run it. `server.rs` only carries the verdict out.
//!
//! The rules, in order:
//! - a content type other than JSON: unreadable, rejected;
//! - a body over the largest `max_request_kib` of the server's endpoints, or holding more JSON
//!   values than that limit allows (one per [`BYTES_PER_VALUE`] bytes: this bounds the tree a
//!   parse builds), is not parsed: the caller gets `RequestTooLarge` when its reply address can be
//!   read by [`scan_request`], which walks the body without building it; a body large enough to
//!   need counting that the scanner cannot read is not JSON: rejected, unparsed;
//! - a body the JSON parser refuses (nesting deeper than 128 levels, a number out of range...)
//!   gets a `TypeError` the same way;
//! - a readable request must name its reply address with AMQP short strings: `_reply_q` 1 to 255
//!   bytes, `_msg_id` and `_unique_id` at most 255. A call (`_msg_id`) whose `_reply_q` is
//!   missing or unusable cannot be answered and is rejected; other bad fields get a `TypeError`;
//! - a `_timeout` that is not a usable number of seconds (a string, negative) only means no
//!   call-monitor heartbeats, as in oslo (which never checks its type): the call is served;
//! - a `_unique_id` seen among the last 16 is a duplicate, dropped (oslo's rule);
//! - then oslo's dispatch rules ([`Dispatcher::resolve`]): the failure is the answer of a call
//!   and a log line for a cast.
//!
//! Only messages with no readable reply address are silent (rejected without requeue, logged
//! once with the reason).

use crate::dispatch::{Dispatcher, Resolved, FJORD_MODULE, REQUEST_TOO_LARGE_CLASS};
use fjord_oslo::envelope::{decode_message, Request};
use fjord_oslo::failure::Failure;
use fjord_oslo::scan::{scan_request, Field, Scan, MAX_SHORT_STRING};
use lapin::protocol::BasicProperties;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A request may hold one JSON value (object, array, string, number, key...) per this many bytes
/// of the server's largest `max_request_kib`. A parse builds a node of about 100 to 400 bytes per
/// value (serde_json's 72-byte `Value`, an object's index and keys, the context map, then a
/// 40-byte WIT `Val`), so without this a 1 MiB request of `[0,0,0,...]` would cost some 90 MiB;
/// with it the tree built from a request stays within [`crate::fuzzing::TREE_FACTOR`] times the
/// limit (measured by `delivery::tree_bound` in `tests/all`). 1 MiB allows 32,768 values.
pub const BYTES_PER_VALUE: usize = 32;

/// oslo remembers the last 16 `_unique_id`s per listener to drop redelivered duplicates.
const DUPLICATE_WINDOW: usize = 16;

/// Where and under which id a caller waits for its answer: both checked AMQP short strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub msg_id: String,
    pub reply_q: String,
}

/// How loud a verdict's log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loudness {
    /// The message was malformed or hostile.
    Warn,
    /// An ordinary failure (no such method, a duplicate...).
    Info,
}

/// What to do with one delivery. Every verdict settles the delivery exactly once: `Reject`
/// rejects it (without requeue), every other verdict acks it.
#[derive(Debug)]
pub enum Verdict {
    /// Nobody can be answered: reject without requeue; `reason` is logged once.
    Reject { reason: String },
    /// Ack and log; nothing runs and nobody is answered (a cast that cannot run, a duplicate).
    Drop { reason: String, loudness: Loudness },
    /// Ack and answer `to` with `failure` at once; nothing runs.
    Answer {
        to: ReplyTo,
        failure: Box<Failure>,
        reason: String,
        loudness: Loudness,
    },
    /// Ack and run the call.
    Run(Box<Call>),
}

/// A request ready to run.
#[derive(Debug)]
pub struct Call {
    pub request: Request,
    pub resolved: Resolved,
    /// Whom to answer; `None` for a cast.
    pub to: Option<ReplyTo>,
    /// oslo's call monitor: send a heartbeat this often while the method runs.
    pub heartbeat: Option<Duration>,
    /// A remark worth a warning although the call runs (an unusable `_timeout`).
    pub note: Option<String>,
    /// The size of the message body, for the endpoint's limit and the logs.
    pub body_len: usize,
}

/// The `_unique_id`s a listener saw last.
#[derive(Default)]
pub struct Duplicates {
    seen: Mutex<VecDeque<String>>,
}

impl Duplicates {
    /// Whether `unique_id` was seen among the last 16; remembers it otherwise.
    pub fn check(&self, unique_id: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.iter().any(|s| s == unique_id) {
            return true;
        }
        if seen.len() >= DUPLICATE_WINDOW {
            seen.pop_front();
        }
        seen.push_back(unique_id.to_string());
        false
    }
}

/// The largest number of JSON values a request to a server whose largest request limit is
/// `max_request_bytes` may hold.
pub fn value_budget(max_request_bytes: usize) -> usize {
    (max_request_bytes / BYTES_PER_VALUE).max(1)
}

/// Decides what to do with one message delivered to a server whose endpoints `dispatcher` holds.
pub fn deliver(
    properties: &BasicProperties,
    body: &[u8],
    dispatcher: &Dispatcher,
    duplicates: &Duplicates,
) -> Verdict {
    if let Some(content_type) = properties.content_type() {
        let essence = content_type.as_str().split(';').next().unwrap_or("").trim();
        // kombu (and so oslo.messaging) sends application/json; a message without a content type
        // is given the benefit of the doubt and parsed.
        if !essence.eq_ignore_ascii_case("application/json") {
            return Verdict::Reject {
                reason: format!(
                    "content type {:?} is not application/json",
                    content_type.as_str()
                ),
            };
        }
    }
    let max = dispatcher.max_request_bytes();
    if body.len() > max {
        let why = format!(
            "the request is {} bytes, more than the {max} bytes any endpoint of this server accepts",
            body.len()
        );
        return refuse_unparsed(body, REQUEST_TOO_LARGE_CLASS, FJORD_MODULE, why);
    }
    // Any JSON of n bytes holds at most (n + 1) / 2 values: only a large body needs counting.
    let budget = value_budget(max);
    if body.len().div_ceil(2) > budget {
        // A body the scanner cannot read is not valid JSON either, and parsing it would build
        // the tree up to the fault before failing (the delivery fuzzer found 76 KB held for a
        // 1.9 KB body of zeros with a broken tail): it is rejected unparsed, with nobody to tell.
        let scan = match scan_request(body) {
            Ok(scan) => scan,
            Err(e) => {
                return Verdict::Reject {
                    reason: format!("unreadable request: {e} (so no reply address either)"),
                }
            }
        };
        if scan.values > budget {
            let why = format!(
                "the request holds {} JSON values, more than the {budget} a request of at most \
                 {max} bytes may hold (one per {BYTES_PER_VALUE} bytes)",
                scan.values
            );
            return answer_scanned(
                &scan,
                failure_of(REQUEST_TOO_LARGE_CLASS, FJORD_MODULE, &why),
                why,
            );
        }
    }
    let mut message = match decode_message(body) {
        Ok(m) => m,
        Err(e) => {
            return refuse_unparsed(
                body,
                "TypeError",
                "builtins",
                format!("unreadable request: {e}"),
            )
        }
    };
    let timeout_note = match message.get("_timeout") {
        None | Some(Value::Null | Value::Number(_)) => None,
        Some(other) => Some(format!(
            "`_timeout` is {}, not a number of seconds: no call-monitor heartbeats",
            json_kind(other)
        )),
    };
    // `_unique_id` is checked here (not by Request) because a long one would sit in the
    // duplicate window.
    let unique_id_len = match message.get("_unique_id") {
        Some(Value::String(u)) => u.len(),
        _ => 0,
    };
    // oslo: an empty `_msg_id` is no `_msg_id` (a cast).
    if matches!(message.get("_msg_id"), Some(Value::String(m)) if m.is_empty()) {
        message.shift_remove("_msg_id");
    }
    let request = match Request::from_message(message) {
        Ok(r) => r,
        Err(e) => {
            let why = e.to_string();
            return match reply_to(e.msg_id.as_deref(), e.reply_q.as_deref()) {
                Address::Call(to) => Verdict::Answer {
                    to,
                    failure: Box::new(e.failure()),
                    reason: why,
                    loudness: Loudness::Warn,
                },
                Address::Cast => Verdict::Drop {
                    reason: why,
                    loudness: Loudness::Warn,
                },
                Address::Unusable(problem) => Verdict::Reject {
                    reason: format!("{why}; and {problem}"),
                },
            };
        }
    };
    let to = match reply_to(request.msg_id.as_deref(), request.reply_q.as_deref()) {
        Address::Call(to) => Some(to),
        Address::Cast => None,
        Address::Unusable(problem) => {
            return Verdict::Reject {
                reason: format!(
                    "a call of {:?} that cannot be answered: {problem}",
                    request.method
                ),
            }
        }
    };
    if unique_id_len > MAX_SHORT_STRING {
        let why = format!("`_unique_id` is {unique_id_len} bytes, more than {MAX_SHORT_STRING}");
        return fail_request(to, Failure::type_error(why.clone()), why, Loudness::Warn);
    }
    if let Some(id) = &request.unique_id {
        if duplicates.check(id) {
            return Verdict::Drop {
                reason: format!("dropping duplicate message {id}"),
                loudness: Loudness::Info,
            };
        }
    }
    let resolved = match dispatcher.resolve(&request, body.len()) {
        Ok(r) => r,
        Err(failure) => {
            let why = format!("{}: {}: {}", request.method, failure.class, failure.message);
            return fail_request(to, failure, why, Loudness::Info);
        }
    };
    let (heartbeat, negative) = heartbeat_interval(request.timeout, resolved.deadline);
    let note = timeout_note.or(negative);
    Verdict::Run(Box::new(Call {
        to,
        heartbeat,
        note,
        resolved,
        request,
        body_len: body.len(),
    }))
}

/// A failure for a caller, or a log line for a cast.
fn fail_request(
    to: Option<ReplyTo>,
    failure: Failure,
    reason: String,
    loudness: Loudness,
) -> Verdict {
    match to {
        Some(to) => Verdict::Answer {
            to,
            failure: Box::new(failure),
            reason,
            loudness,
        },
        None => Verdict::Drop { reason, loudness },
    }
}

fn failure_of(class: &str, module: &str, why: &str) -> Failure {
    Failure::new(class, module, why)
}

/// A body that is not parsed (too large) or cannot be (the parser refused it): answered with
/// `class` when the scanner finds its reply address, else rejected.
fn refuse_unparsed(body: &[u8], class: &str, module: &str, why: String) -> Verdict {
    match scan_request(body) {
        Ok(scan) => answer_scanned(&scan, failure_of(class, module, &why), why),
        Err(e) => Verdict::Reject {
            reason: format!("{why} (and no reply address: {e})"),
        },
    }
}

fn answer_scanned(scan: &Scan, failure: Failure, why: String) -> Verdict {
    match address(scanned(&scan.msg_id), scanned(&scan.reply_q)) {
        Address::Call(to) => Verdict::Answer {
            to,
            failure: Box::new(failure),
            reason: why,
            loudness: Loudness::Warn,
        },
        Address::Cast => Verdict::Reject {
            reason: format!("{why} (a cast: nobody to answer)"),
        },
        Address::Unusable(problem) => Verdict::Reject {
            reason: format!("{why} (and {problem})"),
        },
    }
}

/// Whom a request asks to be answered.
enum Address {
    Call(ReplyTo),
    /// No `_msg_id`: nobody waits.
    Cast,
    /// A `_msg_id`, but no way to answer it.
    Unusable(String),
}

/// One reply field as read (by the parser or the scanner).
enum FieldText<'a> {
    Absent,
    Text(&'a str),
    TooLong(usize),
    NotText,
}

fn scanned(f: &Field) -> FieldText<'_> {
    match f {
        Field::Absent => FieldText::Absent,
        Field::Text(t) if t.is_empty() => FieldText::Absent,
        Field::Text(t) => FieldText::Text(t),
        Field::TooLong(n) => FieldText::TooLong(*n),
        Field::NotText => FieldText::NotText,
    }
}

fn parsed(f: Option<&str>) -> FieldText<'_> {
    match f {
        None | Some("") => FieldText::Absent,
        Some(t) if t.len() > MAX_SHORT_STRING => FieldText::TooLong(t.len()),
        Some(t) => FieldText::Text(t),
    }
}

fn reply_to(msg_id: Option<&str>, reply_q: Option<&str>) -> Address {
    address(parsed(msg_id), parsed(reply_q))
}

/// The reply address rules: `_msg_id` makes a call; a call needs a `_reply_q` AMQP can route
/// to (1 to 255 bytes) and a `_msg_id` of at most 255 bytes.
fn address(msg_id: FieldText<'_>, reply_q: FieldText<'_>) -> Address {
    let msg_id = match msg_id {
        // As oslo: without a (string) `_msg_id` nobody is answered.
        FieldText::Absent | FieldText::NotText => return Address::Cast,
        FieldText::TooLong(n) => {
            return Address::Unusable(format!(
                "`_msg_id` is {n} bytes, more than {MAX_SHORT_STRING}"
            ))
        }
        FieldText::Text(m) => m,
    };
    match reply_q {
        FieldText::Text(q) => Address::Call(ReplyTo {
            msg_id: msg_id.to_string(),
            reply_q: q.to_string(),
        }),
        FieldText::Absent => Address::Unusable("it has no `_reply_q`".into()),
        FieldText::NotText => Address::Unusable("its `_reply_q` is not a string".into()),
        FieldText::TooLong(n) => Address::Unusable(format!(
            "its `_reply_q` is {n} bytes, more than the {MAX_SHORT_STRING} of an AMQP queue name"
        )),
    }
}

/// oslo's call monitor: a heartbeat every `floor(_timeout) / 2` seconds, only when that is at
/// least 1 s, and (here) only when it can fire before the call's deadline. Returns the interval,
/// and a note when `_timeout` is negative or not finite.
pub fn heartbeat_interval(
    timeout: Option<f64>,
    deadline: Duration,
) -> (Option<Duration>, Option<String>) {
    let Some(t) = timeout else {
        return (None, None);
    };
    if !t.is_finite() || t < 0.0 {
        return (
            None,
            Some(format!(
                "`_timeout` {t} is not a number of seconds: no call-monitor heartbeats"
            )),
        );
    }
    let half = t.trunc() / 2.0;
    if half < 1.0 {
        return (None, None);
    }
    match Duration::try_from_secs_f64(half) {
        Ok(every) if every < deadline => (Some(every), None),
        // The call ends (at its deadline) before the first heartbeat would go out.
        _ => (None, None),
    }
}

/// What kind of JSON value `v` is, for messages ("expected an object, got a string").
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_intervals() {
        let ten = Duration::from_secs(10);
        assert_eq!(heartbeat_interval(None, ten), (None, None));
        assert_eq!(heartbeat_interval(Some(1.9), ten), (None, None));
        assert_eq!(
            heartbeat_interval(Some(3.7), ten),
            (Some(Duration::from_millis(1500)), None)
        );
        assert_eq!(
            heartbeat_interval(Some(4.0), ten),
            (Some(Duration::from_secs(2)), None)
        );
        // The call ends before the first heartbeat: none.
        assert_eq!(heartbeat_interval(Some(20.0), ten), (None, None));
        for huge in [1e20, 1e308, f64::MAX] {
            assert_eq!(heartbeat_interval(Some(huge), ten), (None, None), "{huge}");
        }
        for bad in [-5.0, -0.5, f64::NEG_INFINITY, f64::NAN, f64::INFINITY] {
            let (every, note) = heartbeat_interval(Some(bad), ten);
            assert_eq!(every, None);
            assert!(note.is_some_and(|n| n.contains("_timeout")), "{bad}");
        }
    }

    #[test]
    fn reply_address_rules() {
        let call = |m: Option<&str>, q: Option<&str>| match reply_to(m, q) {
            Address::Call(to) => Ok(Some(to)),
            Address::Cast => Ok(None),
            Address::Unusable(p) => Err(p),
        };
        assert_eq!(
            call(Some("m"), Some("q")),
            Ok(Some(ReplyTo {
                msg_id: "m".into(),
                reply_q: "q".into()
            }))
        );
        assert_eq!(call(None, Some("q")), Ok(None));
        assert_eq!(call(Some(""), Some("q")), Ok(None));
        let long = "q".repeat(256);
        assert!(call(Some("m"), Some(&long))
            .unwrap_err()
            .contains("256 bytes"));
        assert!(call(Some(&long), Some("q"))
            .unwrap_err()
            .contains("_msg_id"));
        assert!(call(Some("m"), None).unwrap_err().contains("no `_reply_q`"));
        assert!(call(Some("m"), Some(""))
            .unwrap_err()
            .contains("no `_reply_q`"));
        assert!(call(Some("m"), Some(&"q".repeat(255))).is_ok());
    }

    #[test]
    fn duplicates_window() {
        let d = Duplicates::default();
        assert!(!d.check("a"));
        assert!(d.check("a"));
        for i in 0..DUPLICATE_WINDOW {
            assert!(!d.check(&i.to_string()));
        }
        assert!(!d.check("a"), "forgotten after 16 others");
    }
}
