//! The oslo 2.0 message envelope and the request and reply bodies inside it.
//!
//! Decoding is two steps so that a server can still answer a request it can read but not
//! accept: [`decode_message`] gives the inner dict, [`Request::from_message`] checks its fields
//! and, when it refuses them, still reports `_msg_id` and `_reply_q`.

use serde_json::{Map, Value};

use crate::failure::{Failure, FailureError};
use crate::version::is_compatible;

/// The envelope version fjord writes.
pub const ENVELOPE_VERSION: &str = "2.0";
const VERSION_KEY: &str = "oslo.version";
const MESSAGE_KEY: &str = "oslo.message";
const CONTEXT_PREFIX: &str = "_context_";

/// A message body that is not a readable oslo message.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not JSON.
    #[error("message body is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// The body (or the enveloped message) is not a JSON object.
    #[error("message is not a JSON object")]
    NotObject,
    /// `oslo.version` is not compatible with 2.0.
    #[error("unsupported oslo envelope version {0}")]
    BadVersion(String),
    /// `oslo.message` is not a string holding JSON.
    #[error("oslo.message is not a JSON string: {0}")]
    BadInner(String),
    /// A reply field has the wrong type.
    #[error("invalid reply: {0}")]
    BadReply(&'static str),
    /// A reply's `failure` string is not oslo's failure JSON.
    #[error("invalid failure in reply: {0}")]
    BadFailure(#[from] FailureError),
}

/// Parses a message body into the inner message dict, unwrapping the 2.0 envelope.
///
/// An un-enveloped dict (oslo 1.0 format) is returned as it is.
///
/// ```
/// let body = br#"{"oslo.version": "2.0", "oslo.message": "{\"method\": \"add\"}"}"#;
/// let msg = fjord_oslo::decode_message(body).unwrap();
/// assert_eq!(msg["method"], "add");
/// assert!(fjord_oslo::decode_message(b"not json").is_err());
/// ```
pub fn decode_message(body: &[u8]) -> Result<Map<String, Value>, EnvelopeError> {
    let outer: Value = serde_json::from_slice(body).map_err(EnvelopeError::NotJson)?;
    let Value::Object(mut outer) = outer else {
        return Err(EnvelopeError::NotObject);
    };
    // As oslo's deserialize_msg: only a dict with both keys is an envelope.
    if !(outer.contains_key(VERSION_KEY) && outer.contains_key(MESSAGE_KEY)) {
        return Ok(outer);
    }
    let version = match outer.shift_remove(VERSION_KEY) {
        Some(Value::String(v)) => v,
        other => return Err(EnvelopeError::BadVersion(format!("{other:?}"))),
    };
    if !is_compatible(ENVELOPE_VERSION, &version).unwrap_or(false) {
        return Err(EnvelopeError::BadVersion(version));
    }
    let Some(Value::String(inner)) = outer.shift_remove(MESSAGE_KEY) else {
        return Err(EnvelopeError::BadInner("not a string".into()));
    };
    match serde_json::from_str(&inner) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(EnvelopeError::NotObject),
        Err(e) => Err(EnvelopeError::BadInner(e.to_string())),
    }
}

/// Wraps an inner message in the 2.0 envelope.
///
/// ```
/// let mut m = serde_json::Map::new();
/// m.insert("method".into(), "add".into());
/// let body = fjord_oslo::envelope::encode_message(&m);
/// assert_eq!(fjord_oslo::decode_message(&body).unwrap(), m);
/// ```
pub fn encode_message(inner: &Map<String, Value>) -> Vec<u8> {
    // A map with string keys always serializes.
    wrap(&serde_json::to_string(inner).unwrap_or_default())
}

/// The 2.0 envelope around inner message text: `{"oslo.version":"2.0","oslo.message":"<inner>"}`.
fn wrap(inner: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(
        inner
            .len()
            .saturating_add(inner.len() / 8)
            .saturating_add(48),
    );
    body.extend_from_slice(b"{\"");
    body.extend_from_slice(VERSION_KEY.as_bytes());
    body.extend_from_slice(b"\":\"");
    body.extend_from_slice(ENVELOPE_VERSION.as_bytes());
    body.extend_from_slice(b"\",\"");
    body.extend_from_slice(MESSAGE_KEY.as_bytes());
    body.extend_from_slice(b"\":");
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut body, inner);
    body.push(b'}');
    body
}

/// JSON text known to hold exactly one JSON value, for a reply's result written straight to
/// text: fjord-host writes a WIT result this way, without building a JSON tree of it.
///
/// ```
/// use fjord_oslo::envelope::JsonText;
/// assert_eq!(JsonText::new("[1,2]".into()).unwrap().as_str(), "[1,2]");
/// assert!(JsonText::new("[1,".into()).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonText(String);

impl JsonText {
    /// Checks that `text` is one JSON value (reading it without building it).
    ///
    /// ```
    /// assert!(fjord_oslo::envelope::JsonText::new("1 2".into()).is_err());
    /// ```
    pub fn new(text: String) -> Result<JsonText, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(&text)?;
        Ok(JsonText(text))
    }

    /// The text.
    ///
    /// ```
    /// let t = fjord_oslo::envelope::JsonText::new("null".into()).unwrap();
    /// assert_eq!(t.as_str(), "null");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What is wrong with a readable request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestProblem {
    /// No `method` key.
    #[error("request has no method")]
    MissingMethod,
    /// A field has the wrong JSON type.
    #[error("request field `{0}` has the wrong type")]
    WrongType(&'static str),
}

/// A request that could be read but not accepted; carries the reply address when it was readable.
///
/// ```
/// let mut m = serde_json::Map::new();
/// m.insert("method".into(), 5.into());
/// m.insert("_msg_id".into(), "abc".into());
/// m.insert("_reply_q".into(), "reply_x".into());
/// let err = fjord_oslo::Request::from_message(m).unwrap_err();
/// assert_eq!(err.msg_id.as_deref(), Some("abc"));
/// assert_eq!(err.reply_q.as_deref(), Some("reply_x"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct RequestError {
    /// What is wrong.
    pub problem: RequestProblem,
    /// `_msg_id`, if it was a string.
    pub msg_id: Option<String>,
    /// `_reply_q`, if it was a string.
    pub reply_q: Option<String>,
}

impl RequestError {
    /// The failure to send back to the caller (a `TypeError`, as a Python server's would be).
    ///
    /// ```
    /// let mut m = serde_json::Map::new();
    /// m.insert("args".into(), serde_json::json!({}));
    /// let err = fjord_oslo::Request::from_message(m).unwrap_err();
    /// assert_eq!(err.failure().class, "TypeError");
    /// ```
    pub fn failure(&self) -> Failure {
        Failure::type_error(self.problem.to_string())
    }
}

/// An RPC request (call or cast): the inner message of oslo's envelope.
///
/// ```
/// use fjord_oslo::Request;
/// let mut args = serde_json::Map::new();
/// args.insert("a".into(), 2.into());
/// let req = Request::new("add", args);
/// let back = Request::from_message(fjord_oslo::decode_message(&req.encode()).unwrap()).unwrap();
/// assert_eq!(back, req);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The method name.
    pub method: String,
    /// Keyword arguments.
    pub args: Map<String, Value>,
    /// Endpoint namespace (null = default).
    pub namespace: Option<String>,
    /// Requested version; servers read absent as `1.0`.
    pub version: Option<String>,
    /// Correlation id; present on calls only.
    pub msg_id: Option<String>,
    /// Reply queue; present on calls only.
    pub reply_q: Option<String>,
    /// Call-monitor timeout in seconds (usually null).
    pub timeout: Option<f64>,
    /// Duplicate-detection id.
    pub unique_id: Option<String>,
    /// The request context (`_context_<key>` on the wire).
    pub context: Map<String, Value>,
}

impl Request {
    /// A cast-shaped request with a fresh `_unique_id` and no context.
    ///
    /// ```
    /// let r = fjord_oslo::Request::new("stop", serde_json::Map::new());
    /// assert_eq!(r.unique_id.as_ref().map(|u| u.len()), Some(32));
    /// ```
    pub fn new(method: impl Into<String>, args: Map<String, Value>) -> Request {
        Request {
            method: method.into(),
            args,
            namespace: None,
            version: None,
            msg_id: None,
            reply_q: None,
            timeout: None,
            unique_id: Some(new_id()),
            context: Map::new(),
        }
    }

    /// The effective version for dispatch: the requested one, or `1.0`.
    ///
    /// ```
    /// assert_eq!(fjord_oslo::Request::new("m", Default::default()).version_or_default(), "1.0");
    /// ```
    pub fn version_or_default(&self) -> &str {
        self.version.as_deref().unwrap_or("1.0")
    }

    /// Reads a decoded message dict (see [`decode_message`]).
    ///
    /// ```
    /// let msg = fjord_oslo::decode_message(
    ///     br#"{"method": "add", "args": {"a": 1}, "_context_user": "alice"}"#).unwrap();
    /// let req = fjord_oslo::Request::from_message(msg).unwrap();
    /// assert_eq!(req.context["user"], "alice");
    /// ```
    pub fn from_message(mut msg: Map<String, Value>) -> Result<Request, RequestError> {
        // Read the reply address first so every later error can still be answered.
        let msg_id = match msg.shift_remove("_msg_id") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let reply_q = match msg.shift_remove("_reply_q") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let fail = |problem| RequestError {
            problem,
            msg_id: msg_id.clone(),
            reply_q: reply_q.clone(),
        };
        let method = match msg.shift_remove("method") {
            Some(Value::String(s)) => s,
            None | Some(Value::Null) => return Err(fail(RequestProblem::MissingMethod)),
            Some(_) => return Err(fail(RequestProblem::WrongType("method"))),
        };
        let args = match msg.shift_remove("args") {
            Some(Value::Object(a)) => a,
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(fail(RequestProblem::WrongType("args"))),
        };
        let mut opt_str = |key: &'static str| match msg.shift_remove(key) {
            Some(Value::String(s)) => Ok(Some(s)),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(fail(RequestProblem::WrongType(key))),
        };
        let namespace = opt_str("namespace")?;
        let version = opt_str("version")?;
        let unique_id = opt_str("_unique_id")?;
        // oslo only reads `_timeout` to pace call-monitor heartbeats and never checks its type:
        // a request whose `_timeout` is not a number is served, without heartbeats.
        let timeout = match msg.shift_remove("_timeout") {
            Some(Value::Number(n)) => n.as_f64(),
            _ => None,
        };
        // The keys lose their prefix in place: a request with many context keys is not copied.
        let context = msg
            .into_iter()
            .filter_map(|(mut k, v)| {
                k.starts_with(CONTEXT_PREFIX).then(|| {
                    k.drain(..CONTEXT_PREFIX.len());
                    (k, v)
                })
            })
            .collect();
        Ok(Request {
            method,
            args,
            namespace,
            version,
            msg_id,
            reply_q,
            timeout,
            unique_id,
            context,
        })
    }

    /// The inner message dict, keys in the order Python emits them.
    ///
    /// ```
    /// let m = fjord_oslo::Request::new("add", Default::default()).to_message();
    /// assert_eq!(m.keys().next().map(String::as_str), Some("method"));
    /// ```
    pub fn to_message(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("method".into(), Value::String(self.method.clone()));
        m.insert("args".into(), Value::Object(self.args.clone()));
        if let Some(ns) = &self.namespace {
            m.insert("namespace".into(), Value::String(ns.clone()));
        }
        if let Some(v) = &self.version {
            m.insert("version".into(), Value::String(v.clone()));
        }
        if let Some(id) = &self.msg_id {
            m.insert("_msg_id".into(), Value::String(id.clone()));
        }
        if let Some(q) = &self.reply_q {
            m.insert("_reply_q".into(), Value::String(q.clone()));
        }
        // Python calls always carry `_timeout`, null when unset; casts never do.
        if self.msg_id.is_some() || self.timeout.is_some() {
            let t = self
                .timeout
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number);
            m.insert("_timeout".into(), t);
        }
        if let Some(u) = &self.unique_id {
            m.insert("_unique_id".into(), Value::String(u.clone()));
        }
        for (k, v) in &self.context {
            m.insert(format!("{CONTEXT_PREFIX}{k}"), v.clone());
        }
        m
    }

    /// The full message body (2.0 envelope).
    ///
    /// ```
    /// let body = fjord_oslo::Request::new("add", Default::default()).encode();
    /// assert!(body.starts_with(br#"{"oslo.version":"2.0""#));
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        encode_message(&self.to_message())
    }
}

/// The reply to a call.
///
/// ```
/// use fjord_oslo::Reply;
/// let r = Reply::ok("abc", serde_json::json!(5));
/// let back = Reply::decode(&r.encode()).unwrap();
/// assert_eq!(back.result, 5);
/// assert!(back.ending && back.failure.is_none());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The method's return value (null on failure).
    pub result: Value,
    /// The exception, when the method raised.
    pub failure: Option<Failure>,
    /// `true` for the final reply; `false` marks a heartbeat.
    pub ending: bool,
    /// The request's `_msg_id`.
    pub msg_id: String,
    /// A fresh id for duplicate detection.
    pub unique_id: String,
    /// The result as JSON text, for a reply made by [`Reply::ok_text`] (`result` is then null).
    result_text: Option<JsonText>,
}

impl Reply {
    /// A successful final reply.
    ///
    /// ```
    /// assert_eq!(fjord_oslo::Reply::ok("m", 1.into()).msg_id, "m");
    /// ```
    pub fn ok(msg_id: impl Into<String>, result: Value) -> Reply {
        Reply {
            result,
            failure: None,
            ending: true,
            msg_id: msg_id.into(),
            unique_id: new_id(),
            result_text: None,
        }
    }

    /// A successful final reply whose result is already JSON text: it goes into the body as it
    /// is, so a large result costs its text and the body, never a JSON tree.
    ///
    /// ```
    /// use fjord_oslo::{envelope::JsonText, Reply};
    /// let r = Reply::ok_text("m", JsonText::new("[1,2]".into()).unwrap());
    /// assert_eq!(Reply::decode(&r.encode()).unwrap().result, serde_json::json!([1, 2]));
    /// ```
    pub fn ok_text(msg_id: impl Into<String>, result: JsonText) -> Reply {
        Reply {
            result_text: Some(result),
            ..Reply::ok(msg_id, Value::Null)
        }
    }

    /// A failed final reply.
    ///
    /// ```
    /// let r = fjord_oslo::Reply::failed("m", fjord_oslo::Failure::type_error("x"));
    /// assert!(r.result.is_null() && r.failure.is_some());
    /// ```
    pub fn failed(msg_id: impl Into<String>, failure: Failure) -> Reply {
        Reply {
            result: Value::Null,
            failure: Some(failure),
            ending: true,
            msg_id: msg_id.into(),
            unique_id: new_id(),
            result_text: None,
        }
    }

    /// A heartbeat (`ending: false`) telling the caller the method still runs.
    ///
    /// ```
    /// assert!(!fjord_oslo::Reply::heartbeat("m").ending);
    /// ```
    pub fn heartbeat(msg_id: impl Into<String>) -> Reply {
        Reply {
            result: Value::Null,
            failure: None,
            ending: false,
            msg_id: msg_id.into(),
            unique_id: new_id(),
            result_text: None,
        }
    }

    /// The inner reply dict in Python's key order; `failure` is a JSON string or null.
    ///
    /// ```
    /// let m = fjord_oslo::Reply::ok("m", 5.into()).to_message();
    /// assert!(m["failure"].is_null());
    /// ```
    pub fn to_message(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let result = match &self.result_text {
            // Checked to be JSON when it was made.
            Some(text) => serde_json::from_str(text.as_str()).unwrap_or(Value::Null),
            None => self.result.clone(),
        };
        m.insert("result".into(), result);
        m.insert(
            "failure".into(),
            self.failure
                .as_ref()
                .map_or(Value::Null, |f| Value::String(f.to_json_string())),
        );
        m.insert("ending".into(), Value::Bool(self.ending));
        m.insert("_msg_id".into(), Value::String(self.msg_id.clone()));
        m.insert("_unique_id".into(), Value::String(self.unique_id.clone()));
        m
    }

    /// The full message body (2.0 envelope).
    ///
    /// ```
    /// let body = fjord_oslo::Reply::ok("m", 5.into()).encode();
    /// assert!(!body.is_empty());
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        // The inner dict of `to_message`, written as text directly: the result is not copied
        // into a map first, and a result given as text is never parsed.
        let written;
        let result = match &self.result_text {
            Some(text) => text.as_str(),
            None => {
                written = self.result.to_string();
                &written
            }
        };
        let failure = self.failure.as_ref().map(Failure::to_json_string);
        let mut inner = String::with_capacity(result.len().saturating_add(160));
        inner.push_str("{\"result\":");
        inner.push_str(result);
        inner.push_str(",\"failure\":");
        inner.push_str(&Value::from(failure).to_string());
        inner.push_str(",\"ending\":");
        inner.push_str(if self.ending { "true" } else { "false" });
        inner.push_str(",\"_msg_id\":");
        inner.push_str(&Value::from(self.msg_id.as_str()).to_string());
        inner.push_str(",\"_unique_id\":");
        inner.push_str(&Value::from(self.unique_id.as_str()).to_string());
        inner.push('}');
        wrap(&inner)
    }

    /// Reads a reply body.
    ///
    /// ```
    /// assert!(fjord_oslo::Reply::decode(br#"{"result": 1}"#).is_err());
    /// ```
    pub fn decode(body: &[u8]) -> Result<Reply, EnvelopeError> {
        let mut m = decode_message(body)?;
        let msg_id = match m.shift_remove("_msg_id") {
            Some(Value::String(s)) => s,
            _ => {
                return Err(EnvelopeError::BadReply(
                    "_msg_id is missing or not a string",
                ))
            }
        };
        let unique_id = match m.shift_remove("_unique_id") {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let failure = match m.shift_remove("failure") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Failure::from_json_str(&s)?),
            // Some peers may send the failure as an object rather than a string.
            Some(v @ Value::Object(_)) => Some(Failure::from_json_str(&v.to_string())?),
            Some(_) => return Err(EnvelopeError::BadReply("failure is not a string")),
        };
        let ending = match m.shift_remove("ending") {
            Some(Value::Bool(b)) => b,
            None | Some(Value::Null) => false,
            Some(_) => return Err(EnvelopeError::BadReply("ending is not a boolean")),
        };
        Ok(Reply {
            result: m.shift_remove("result").unwrap_or(Value::Null),
            failure,
            ending,
            msg_id,
            unique_id,
            result_text: None,
        })
    }
}

/// A fresh 32-hex-digit id (uuid4 hex, as oslo's `_msg_id` and `_unique_id`).
///
/// ```
/// assert_eq!(fjord_oslo::envelope::new_id().len(), 32);
/// ```
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vectors(name: &str) -> Value {
        let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn inner_of(body: &str) -> Map<String, Value> {
        let outer: Value = serde_json::from_str(body).unwrap();
        assert_eq!(outer["oslo.version"], "2.0");
        serde_json::from_str(outer["oslo.message"].as_str().unwrap()).unwrap()
    }

    fn keys(m: &Map<String, Value>) -> Vec<String> {
        m.keys().cloned().collect()
    }

    #[test]
    fn captured_requests_round_trip() {
        let v = vectors("oslo-18.3.1-requests.json");
        let messages = v["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 4);
        for m in messages {
            let body = m["body"].as_str().unwrap();
            let req = Request::from_message(decode_message(body.as_bytes()).unwrap()).unwrap();
            assert!(!req.method.is_empty());
            let original = inner_of(body);
            let again = req.to_message();
            assert_eq!(again, original, "{}", m["what"]);
            assert_eq!(keys(&again), keys(&original), "{}", m["what"]);
            // And through the bytes.
            let reencoded = String::from_utf8(req.encode()).unwrap();
            assert_eq!(inner_of(&reencoded), original);
            assert_eq!(keys(&inner_of(&reencoded)), keys(&original));
        }
    }

    #[test]
    fn captured_request_fields() {
        let v = vectors("oslo-18.3.1-requests.json");
        let call = v["messages"][1]["body"].as_str().unwrap();
        let req = Request::from_message(decode_message(call.as_bytes()).unwrap()).unwrap();
        assert_eq!(req.method, "add");
        assert_eq!(req.args["a"], 2);
        assert_eq!(req.version.as_deref(), Some("1.0"));
        assert_eq!(
            req.msg_id.as_deref(),
            Some("50a5dd5a47f14888a9631401d275d5b7")
        );
        assert_eq!(
            req.reply_q.as_deref(),
            Some("reply_f4cfe3e052b449779eb7993805f3fff5")
        );
        assert_eq!(req.timeout, None);
        assert_eq!(req.context["roles"], json!(["admin"]));
        assert_eq!(
            keys(&req.context),
            ["request_id", "user", "project_id", "roles"]
        );
        let cast = v["messages"][2]["body"].as_str().unwrap();
        let req = Request::from_message(decode_message(cast.as_bytes()).unwrap()).unwrap();
        assert_eq!(req.namespace.as_deref(), Some("calc"));
        assert_eq!(req.msg_id, None);
    }

    #[test]
    fn captured_replies_round_trip() {
        let v = vectors("oslo-18.3.1-replies.json");
        let replies = v["replies"].as_array().unwrap();
        assert_eq!(replies.len(), 7);
        for r in replies {
            let body = r["body"].as_str().unwrap();
            let reply = Reply::decode(body.as_bytes()).unwrap();
            assert!(reply.ending);
            assert_eq!(reply.msg_id, r["case"].as_str().unwrap());
            let mut original = inner_of(body);
            let mut again = inner_of(std::str::from_utf8(&reply.encode()).unwrap());
            assert_eq!(keys(&again), keys(&original));
            // The failure string is JSON inside JSON: compare it parsed, with its key order.
            for m in [&mut original, &mut again] {
                if let Some(Value::String(f)) = m.get("failure").cloned() {
                    let parsed: Map<String, Value> = serde_json::from_str(&f).unwrap();
                    m.insert("failure".into(), Value::Object(parsed));
                }
            }
            if let (Value::Object(a), Value::Object(b)) = (&original["failure"], &again["failure"])
            {
                assert_eq!(keys(a), keys(b));
            }
            assert_eq!(again, original, "{}", r["case"]);
        }
    }

    #[test]
    fn captured_reply_failures() {
        let v = vectors("oslo-18.3.1-replies.json");
        let classes: Vec<(String, Option<String>)> = v["replies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let reply = Reply::decode(r["body"].as_str().unwrap().as_bytes()).unwrap();
                (reply.msg_id, reply.failure.map(|f| f.class))
            })
            .collect();
        assert!(classes.contains(&("ok".into(), None)));
        assert!(classes.contains(&("no_method".into(), Some("NoSuchMethod".into()))));
        assert!(classes.contains(&("bad_version".into(), Some("UnsupportedVersion".into()))));
        assert!(classes.contains(&("bad_args".into(), Some("TypeError".into()))));
        let private = v["replies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["case"] == "private")
            .unwrap();
        let f = Reply::decode(private["body"].as_str().unwrap().as_bytes())
            .unwrap()
            .failure
            .unwrap();
        let ours = Failure::no_such_method("_secret");
        assert_eq!(
            (f.class, f.module, f.message, f.args),
            (ours.class, ours.module, ours.message, ours.args)
        );
        let bad = v["replies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["case"] == "bad_version")
            .unwrap();
        let f = Reply::decode(bad["body"].as_str().unwrap().as_bytes())
            .unwrap()
            .failure
            .unwrap();
        assert_eq!(
            f.message,
            Failure::unsupported_version("2.0", "add").message
        );
        assert!(!f.tb.is_empty());
    }

    #[test]
    fn unenveloped_dict_accepted() {
        let m = decode_message(br#"{"method": "add", "args": {}}"#).unwrap();
        assert_eq!(Request::from_message(m).unwrap().method, "add");
    }

    #[test]
    fn bad_envelopes() {
        assert!(matches!(
            decode_message(b"\xff"),
            Err(EnvelopeError::NotJson(_))
        ));
        assert!(matches!(
            decode_message(b"[1,2]"),
            Err(EnvelopeError::NotObject)
        ));
        assert!(matches!(
            decode_message(br#"{"oslo.version": "3.0", "oslo.message": "{}"}"#),
            Err(EnvelopeError::BadVersion(_))
        ));
        assert!(matches!(
            decode_message(br#"{"oslo.version": "2.1", "oslo.message": "{}"}"#),
            Err(EnvelopeError::BadVersion(_))
        ));
        assert!(matches!(
            decode_message(br#"{"oslo.version": 2, "oslo.message": "{}"}"#),
            Err(EnvelopeError::BadVersion(_))
        ));
        assert!(matches!(
            decode_message(br#"{"oslo.version": "2.0", "oslo.message": "{bad"}"#),
            Err(EnvelopeError::BadInner(_))
        ));
        assert!(matches!(
            decode_message(br#"{"oslo.version": "2.0", "oslo.message": 5}"#),
            Err(EnvelopeError::BadInner(_))
        ));
        assert!(matches!(
            decode_message(br#"{"oslo.version": "2.0", "oslo.message": "[1]"}"#),
            Err(EnvelopeError::NotObject)
        ));
    }

    #[test]
    fn bad_requests_keep_reply_address() {
        let base = json!({"_msg_id": "id1", "_reply_q": "reply_q1"});
        let cases = [
            (json!({}), RequestProblem::MissingMethod),
            (json!({"method": 1}), RequestProblem::WrongType("method")),
            (
                json!({"method": "m", "args": [1]}),
                RequestProblem::WrongType("args"),
            ),
            (
                json!({"method": "m", "namespace": 1}),
                RequestProblem::WrongType("namespace"),
            ),
            (
                json!({"method": "m", "version": 1.0}),
                RequestProblem::WrongType("version"),
            ),
        ];
        for (extra, problem) in cases {
            let mut m = base.as_object().unwrap().clone();
            m.extend(extra.as_object().unwrap().clone());
            let err = Request::from_message(m).unwrap_err();
            assert_eq!(err.problem, problem);
            assert_eq!(err.msg_id.as_deref(), Some("id1"));
            assert_eq!(err.reply_q.as_deref(), Some("reply_q1"));
        }
    }

    #[test]
    fn a_timeout_that_is_not_a_number_is_no_timeout() {
        for t in [
            json!("x"),
            json!(true),
            json!([1]),
            json!({"s": 1}),
            json!(null),
        ] {
            let m = json!({"method": "m", "_timeout": t});
            let r = Request::from_message(m.as_object().unwrap().clone()).unwrap();
            assert_eq!(r.timeout, None, "{t}");
        }
        let m = json!({"method": "m", "_timeout": 1e20});
        let r = Request::from_message(m.as_object().unwrap().clone()).unwrap();
        assert_eq!(r.timeout, Some(1e20));
    }

    #[test]
    fn request_defaults() {
        let r = Request::from_message(
            json!({"method": "m", "args": null})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        assert!(r.args.is_empty());
        assert_eq!(r.version_or_default(), "1.0");
        assert!(r.namespace.is_none());
    }

    #[test]
    fn call_shape_has_null_timeout() {
        let mut r = Request::new("m", Map::new());
        r.msg_id = Some("a".into());
        r.reply_q = Some("q".into());
        r.context.insert("user".into(), json!("bob"));
        let m = r.to_message();
        assert_eq!(
            keys(&m),
            [
                "method",
                "args",
                "_msg_id",
                "_reply_q",
                "_timeout",
                "_unique_id",
                "_context_user"
            ]
        );
        assert!(m["_timeout"].is_null());
    }

    #[test]
    fn bad_replies() {
        assert!(Reply::decode(b"{}").is_err());
        assert!(matches!(
            Reply::decode(br#"{"_msg_id": "x", "failure": "nope"}"#),
            Err(EnvelopeError::BadFailure(_))
        ));
        assert!(matches!(
            Reply::decode(br#"{"_msg_id": "x", "ending": "yes"}"#),
            Err(EnvelopeError::BadReply(_))
        ));
        let hb = Reply::decode(&Reply::heartbeat("x").encode()).unwrap();
        assert!(!hb.ending);
    }

    /// Found by `fuzz/` (envelope): a float read back 1 ULP off what was written, so a reply's
    /// result changed between fjord's encoder and decoder (serde_json needs `float_roundtrip`).
    #[test]
    fn floats_survive_the_wire_exactly() {
        let body = br#"{"oslo.version": "2.0", "oslo.message": "{\"result\": 1.57002e+34, \"_msg_id\": \"ok\"}"}"#;
        let reply = Reply::decode(body).unwrap();
        assert_eq!(reply.result.as_f64(), Some(1.57002e34));
        let back = Reply::decode(&reply.encode()).unwrap();
        assert_eq!(back.result.as_f64(), Some(1.57002e34));
        // An integer too large for u64 is read as the nearest double, and stays that double.
        let big = br#"{"result": 15700200000000000000000001990700125, "_msg_id": "ok"}"#;
        let reply = Reply::decode(big).unwrap();
        assert_eq!(Reply::decode(&reply.encode()).unwrap(), reply);
    }

    /// `encode` writes the text itself; it must be exactly the envelope of `to_message`.
    #[test]
    fn reply_text_is_the_envelope_of_its_message() {
        let text = JsonText::new(r#"{"a":[1,"\"q\""]}"#.into()).unwrap();
        let replies = [
            Reply::ok("m1", json!({"x": [1, 2.5, "é\n\"", null]})),
            Reply::failed("m2", Failure::type_error("bad \"arg\"")),
            Reply::heartbeat("m3"),
            Reply::ok_text("m4", text),
        ];
        for reply in replies {
            let body = reply.encode();
            assert_eq!(body, encode_message(&reply.to_message()), "{reply:?}");
            let back = Reply::decode(&body).unwrap();
            assert_eq!(back.to_message(), reply.to_message());
        }
        let back =
            Reply::decode(&Reply::ok_text("m", JsonText::new("[1,2]".into()).unwrap()).encode())
                .unwrap();
        assert_eq!(back.result, json!([1, 2]));
    }
}
