//! The oslo-shaped floor's messages, hand-rolled: the same bytes fjord-oslo writes for an `add`
//! call and its reply (oslo's 2.0 envelope, the inner message JSON inside a JSON string, keys in
//! Python's order), written and read with borrowed serde structs instead of `serde_json::Value`
//! trees. This is the least an implementation of oslo's wire can do per message: two JSON
//! levels each way, fresh ids, no dispatch.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The envelope version oslo 18 writes and accepts.
const ENVELOPE_VERSION: &str = "2.0";
/// The context key fjord's `bench --size` pads with (`_context_fjord_bench_pad` on the wire).
pub const PAD_FIELD: &str = "_context_fjord_bench_pad";

#[derive(Serialize)]
struct OuterOut<'a> {
    #[serde(rename = "oslo.version")]
    version: &'a str,
    #[serde(rename = "oslo.message")]
    message: &'a str,
}

#[derive(Deserialize)]
struct OuterIn<'a> {
    #[serde(rename = "oslo.version", borrow)]
    version: Cow<'a, str>,
    #[serde(rename = "oslo.message", borrow)]
    message: Cow<'a, str>,
}

/// The arguments of `add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddArgs {
    pub a: i64,
    pub b: i64,
}

#[derive(Serialize)]
struct CallOut<'a> {
    method: &'a str,
    args: AddArgs,
    _msg_id: &'a str,
    _reply_q: &'a str,
    _timeout: Option<f64>,
    _unique_id: &'a str,
    #[serde(
        rename = "_context_fjord_bench_pad",
        skip_serializing_if = "Option::is_none"
    )]
    pad: Option<&'a str>,
}

/// What the floor server reads of a call; other keys (the context) are skipped unread.
#[derive(Debug, Deserialize)]
pub struct Call<'a> {
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    pub args: AddArgs,
    #[serde(rename = "_msg_id", borrow)]
    pub msg_id: Cow<'a, str>,
    #[serde(rename = "_reply_q", borrow)]
    pub reply_q: Cow<'a, str>,
}

#[derive(Serialize)]
struct ReplyOut<'a> {
    result: i64,
    failure: Option<&'a str>,
    ending: bool,
    _msg_id: &'a str,
    _unique_id: &'a str,
}

/// What the floor client reads of a reply.
#[derive(Debug, Deserialize)]
pub struct Reply<'a> {
    pub result: Option<i64>,
    #[serde(borrow)]
    pub failure: Option<Cow<'a, str>>,
    pub ending: bool,
    #[serde(rename = "_msg_id", borrow)]
    pub msg_id: Cow<'a, str>,
}

/// A message the floor cannot read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("not oslo JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported oslo envelope version {0}")]
    Version(String),
}

/// A fresh 32-hex-digit id (uuid4 hex, as oslo's `_msg_id` and `_unique_id`), on the stack.
pub fn new_id() -> [u8; 32] {
    let mut id = [0u8; 32];
    uuid::Uuid::new_v4().simple().encode_lower(&mut id);
    id
}

/// An id from [`new_id`] as text.
pub fn id_str(id: &[u8; 32]) -> &str {
    // Lowercase hex digits are ASCII.
    std::str::from_utf8(id).unwrap_or_default()
}

fn envelope(inner: &str) -> Vec<u8> {
    // The inner JSON, escaped once more, plus the outer keys.
    let mut out = Vec::with_capacity(inner.len() + inner.len() / 8 + 48);
    let outer = OuterOut {
        version: ENVELOPE_VERSION,
        message: inner,
    };
    // Serializing borrowed strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &outer);
    out
}

fn unwrap_envelope(body: &[u8]) -> Result<Cow<'_, str>, WireError> {
    let outer: OuterIn<'_> = serde_json::from_slice(body)?;
    if outer.version != ENVELOPE_VERSION {
        return Err(WireError::Version(outer.version.into_owned()));
    }
    Ok(outer.message)
}

/// The body of an `add(a, b)` call, as `fjord-oslo`'s `Request::encode` writes it.
pub fn encode_call(
    args: AddArgs,
    msg_id: &str,
    reply_q: &str,
    unique_id: &str,
    pad: Option<&str>,
) -> Vec<u8> {
    let call = CallOut {
        method: "add",
        args,
        _msg_id: msg_id,
        _reply_q: reply_q,
        _timeout: None,
        _unique_id: unique_id,
        pad,
    };
    let inner = serde_json::to_string(&call).unwrap_or_default();
    envelope(&inner)
}

/// Reads a call body: the envelope, then the inner message (owned only where JSON escapes
/// forced a copy), handed to `f`.
pub fn decode_call<T>(body: &[u8], f: impl FnOnce(Call<'_>) -> T) -> Result<T, WireError> {
    let inner = unwrap_envelope(body)?;
    let call: Call<'_> = serde_json::from_str(&inner)?;
    Ok(f(call))
}

/// The body of a successful reply, as `fjord-oslo`'s `Reply::encode` writes it.
pub fn encode_reply(result: i64, msg_id: &str, unique_id: &str) -> Vec<u8> {
    let reply = ReplyOut {
        result,
        failure: None,
        ending: true,
        _msg_id: msg_id,
        _unique_id: unique_id,
    };
    let inner = serde_json::to_string(&reply).unwrap_or_default();
    envelope(&inner)
}

/// Reads a reply body and hands it to `f`.
pub fn decode_reply<T>(body: &[u8], f: impl FnOnce(Reply<'_>) -> T) -> Result<T, WireError> {
    let inner = unwrap_envelope(body)?;
    let reply: Reply<'_> = serde_json::from_str(&inner)?;
    Ok(f(reply))
}

/// The padding that makes a call body about `size` bytes, as `fjord bench --size` pads (none
/// when the unpadded call is already that large).
pub fn pad_for(size: usize) -> Option<String> {
    let id = [b'0'; 32];
    let reply_q = format!("reply_{}", id_str(&id));
    let args = AddArgs { a: 2, b: 3 };
    let with_key = encode_call(args, id_str(&id), &reply_q, id_str(&id), Some("")).len();
    (size > with_key).then(|| "x".repeat(size - with_key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_oslo::{Reply as OsloReply, Request};

    /// The floor must put on the wire exactly what fjord does: same bytes, same sizes.
    #[test]
    fn call_bytes_are_fjord_oslos() {
        let (msg_id, unique_id) = (new_id(), new_id());
        let reply_q = format!("reply_{}", id_str(&new_id()));
        for pad in [None, Some("x".repeat(2400))] {
            let mut args = serde_json::Map::new();
            args.insert("a".into(), 2.into());
            args.insert("b".into(), 3.into());
            let mut request = Request::new("add", args);
            request.msg_id = Some(id_str(&msg_id).into());
            request.reply_q = Some(reply_q.clone());
            request.unique_id = Some(id_str(&unique_id).into());
            if let Some(p) = &pad {
                request
                    .context
                    .insert("fjord_bench_pad".into(), p.as_str().into());
            }
            let ours = encode_call(
                AddArgs { a: 2, b: 3 },
                id_str(&msg_id),
                &reply_q,
                id_str(&unique_id),
                pad.as_deref(),
            );
            assert_eq!(
                String::from_utf8(ours.clone()).unwrap(),
                String::from_utf8(request.encode()).unwrap()
            );
            let (id, q, a) = decode_call(&ours, |c| {
                (c.msg_id.into_owned(), c.reply_q.into_owned(), c.args)
            })
            .unwrap();
            assert_eq!(
                (id.as_str(), q.as_str()),
                (id_str(&msg_id), reply_q.as_str())
            );
            assert_eq!(a, AddArgs { a: 2, b: 3 });
        }
    }

    #[test]
    fn reply_bytes_are_fjord_oslos() {
        let (msg_id, unique_id) = (new_id(), new_id());
        let ours = encode_reply(5, id_str(&msg_id), id_str(&unique_id));
        let mut theirs = OsloReply::ok(id_str(&msg_id), 5.into());
        theirs.unique_id = id_str(&unique_id).into();
        assert_eq!(ours, theirs.encode());
        let (result, ending, id) = decode_reply(&ours, |r| {
            assert!(r.failure.is_none());
            (r.result, r.ending, r.msg_id.into_owned())
        })
        .unwrap();
        assert_eq!(
            (result, ending, id.as_str()),
            (Some(5), true, id_str(&msg_id))
        );
    }

    #[test]
    fn padding_reaches_the_size_fjord_bench_does() {
        let pad = pad_for(2500).unwrap();
        let body = encode_call(
            AddArgs { a: 2, b: 3 },
            id_str(&new_id()),
            &format!("reply_{}", id_str(&new_id())),
            id_str(&new_id()),
            Some(&pad),
        );
        assert_eq!(body.len(), 2500);
        assert!(pad_for(10).is_none());
    }

    #[test]
    fn foreign_envelopes_are_refused() {
        assert!(matches!(
            decode_call(br#"{"oslo.version": "3.0", "oslo.message": "{}"}"#, |_| ()),
            Err(WireError::Version(_))
        ));
        assert!(decode_call(b"nope", |_| ()).is_err());
    }
}
