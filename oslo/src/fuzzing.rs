//! The invariants the envelope fuzz target checks, here so that the nightly fuzzer (`fuzz/`) and
//! the stable corpus-replay test (`tests/fuzz_corpus.rs`) run the very same code.
//!
//! Not part of the API: a violated invariant is returned as an `Err` describing it, and the
//! callers turn it into a crash (the fuzzer) or a test failure.

use crate::envelope::{decode_message, Reply, Request};

/// Decodes arbitrary bytes as a request and as a reply, as a server and a caller would.
///
/// Holds when decoding never panics (errors included: their messages are rendered) and every body
/// that decodes survives an encode/decode round trip unchanged.
///
/// ```
/// assert!(fjord_oslo::fuzzing::check_envelope(b"{\"method\": \"add\"}").is_ok());
/// ```
pub fn check_envelope(data: &[u8]) -> Result<(), String> {
    match decode_message(data) {
        Ok(msg) => match Request::from_message(msg) {
            Ok(request) => {
                let back = decode_message(&request.encode())
                    .map_err(|e| format!("re-encoded request {request:?} is unreadable: {e}"))
                    .and_then(|m| {
                        Request::from_message(m)
                            .map_err(|e| format!("re-encoded request {request:?} is refused: {e}"))
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
        },
        Err(e) => {
            let _ = e.to_string();
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
