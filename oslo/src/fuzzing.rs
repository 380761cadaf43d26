//! The invariants the envelope fuzz target checks, here so that the nightly fuzzer (`fuzz/`) and
//! the stable corpus-replay test (`tests/fuzz_corpus.rs`) run the very same code.
//!
//! Not part of the API: a violated invariant is returned as an `Err` describing it, and the
//! callers turn it into a crash (the fuzzer) or a test failure.

use crate::envelope::{decode_message, Reply, Request};
use crate::scan::{scan_request, Field, MAX_SHORT_STRING};
use serde_json::{Map, Value};

/// Decodes arbitrary bytes as a request and as a reply, as a server and a caller would.
///
/// Holds when decoding never panics (errors included: their messages are rendered), every body
/// that decodes survives an encode/decode round trip unchanged, and the scanner
/// ([`scan_request`]) reads every body the decoder reads, with the same reply address and at least
/// as many values as the decoded message has.
///
/// ```
/// assert!(fjord_oslo::fuzzing::check_envelope(b"{\"method\": \"add\"}").is_ok());
/// ```
pub fn check_envelope(data: &[u8]) -> Result<(), String> {
    match decode_message(data) {
        Ok(msg) => {
            agrees_with_scan(&msg, scan_request(data))?;
            match Request::from_message(msg) {
                Ok(request) => {
                    let back = decode_message(&request.encode())
                        .map_err(|e| format!("re-encoded request {request:?} is unreadable: {e}"))
                        .and_then(|m| {
                            Request::from_message(m).map_err(|e| {
                                format!("re-encoded request {request:?} is refused: {e}")
                            })
                        })?;
                    if back != request {
                        return Err(format!(
                            "request changed in a round trip: {request:?} came back as {back:?}"
                        ));
                    }
                }
                Err(e) => {
                    let _ = (e.to_string(), e.failure().to_json_string());
                }
            }
        }
        Err(e) => {
            let _ = (e.to_string(), scan_request(data).map_err(|e| e.to_string()));
        }
    }
    match Reply::decode(data) {
        Ok(reply) => {
            let back = Reply::decode(&reply.encode())
                .map_err(|e| format!("re-encoded reply {reply:?} is unreadable: {e}"))?;
            if back != reply {
                return Err(format!(
                    "reply changed in a round trip: {reply:?} came back as {back:?}"
                ));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    Ok(())
}

/// The scanner's view of a message the decoder read must match the decoder's.
fn agrees_with_scan(
    msg: &Map<String, Value>,
    scanned: Result<crate::scan::Scan, crate::scan::ScanError>,
) -> Result<(), String> {
    let scan =
        scanned.map_err(|e| format!("the decoder reads {msg:?}, the scanner refuses it: {e}"))?;
    let field = |key: &str| match msg.get(key) {
        None => Field::Absent,
        Some(Value::String(s)) if s.len() <= MAX_SHORT_STRING => Field::Text(s.clone()),
        Some(Value::String(s)) => Field::TooLong(s.len()),
        Some(_) => Field::NotText,
    };
    for (key, found) in [("_msg_id", &scan.msg_id), ("_reply_q", &scan.reply_q)] {
        let decoded = field(key);
        if decoded != *found {
            return Err(format!(
                "{key}: the decoder reads {decoded:?}, the scanner {found:?}"
            ));
        }
    }
    let built = 1 + msg.values().map(|v| 1 + values(v)).sum::<usize>();
    if scan.values < built {
        return Err(format!(
            "the scanner counts {} values, the decoder built {built}",
            scan.values
        ));
    }
    Ok(())
}

/// Nodes of a JSON tree, object keys included.
fn values(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(values).sum::<usize>(),
        Value::Object(o) => 1 + o.values().map(|v| 1 + values(v)).sum::<usize>(),
        _ => 1,
    }
}
