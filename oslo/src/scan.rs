//! What a request body says about its sender and its size, read without building it.
//!
//! A server must answer a caller even when it refuses to parse the request (a body over the size
//! limit, nesting deeper than the JSON parser allows, more values than the server will build): the
//! reply address (`_msg_id`, `_reply_q`) is at the top level of the inner message. [`scan_request`]
//! walks the body once, without recursion (a depth counter skips nested values) and without
//! copying it (the inner message is read through the envelope's string escapes in place), and keeps
//! only those two fields, each cut off past [`MAX_SHORT_STRING`] bytes.
//!
//! It is a scanner, not a validator: it accepts some bodies a parser refuses (`[1 2]` nested
//! somewhere), but whatever [`decode_message`](crate::decode_message) reads, it reads too, with the
//! same reply address (last key wins, as in serde_json and Python).

use crate::envelope::ENVELOPE_VERSION;
use crate::version::is_compatible;

/// The longest AMQP short string (queue names, routing keys): 255 bytes.
pub const MAX_SHORT_STRING: usize = 255;

/// One top-level field of the inner message, as the scanner found it.
///
/// ```
/// use fjord_oslo::scan::{scan_request, Field};
/// let s = scan_request(br#"{"_msg_id": "abc", "_reply_q": 5}"#).unwrap();
/// assert_eq!(s.msg_id, Field::Text("abc".into()));
/// assert_eq!(s.reply_q, Field::NotText);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Not in the message.
    Absent,
    /// A string of at most [`MAX_SHORT_STRING`] bytes.
    Text(String),
    /// A string longer than [`MAX_SHORT_STRING`] bytes; its length in bytes.
    TooLong(usize),
    /// Present, but not a string (or a string with invalid escapes).
    NotText,
}

impl Field {
    /// The text, when the field is a short string.
    ///
    /// ```
    /// assert_eq!(fjord_oslo::scan::Field::Text("q".into()).text(), Some("q"));
    /// assert_eq!(fjord_oslo::scan::Field::Absent.text(), None);
    /// ```
    pub fn text(&self) -> Option<&str> {
        match self {
            Field::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// What the scan of a request body found.
///
/// ```
/// let body = fjord_oslo::Request::new("add", Default::default()).encode();
/// let s = fjord_oslo::scan::scan_request(&body).unwrap();
/// assert_eq!(s.depth, 2); // the inner object and its `args`
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// `_msg_id` of the inner message.
    pub msg_id: Field,
    /// `_reply_q` of the inner message.
    pub reply_q: Field,
    /// JSON values in the inner message, keys included: every object, array, string (key or
    /// value), number, boolean and null counts one. A parse builds at most one node per value.
    pub values: usize,
    /// The deepest nesting in the inner message (its top-level object is 1).
    pub depth: usize,
}

/// Why a body does not even have the shape of an oslo message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The body (or the enveloped message) is not a JSON object.
    #[error("the message is not a JSON object")]
    NotObject,
    /// The body ends inside a value.
    #[error("the message ends early")]
    Truncated,
    /// A byte that cannot be there.
    #[error("unexpected byte {byte:#04x} at offset {offset}")]
    Unexpected {
        /// The byte.
        byte: u8,
        /// Its offset in the body (or in the unescaped inner message).
        offset: usize,
    },
    /// An escape in `oslo.message` that JSON does not allow.
    #[error("invalid escape in oslo.message")]
    BadEscape,
    /// `oslo.version` is not a string compatible with 2.0.
    #[error("unsupported oslo envelope version {0}")]
    BadVersion(String),
    /// `oslo.message` is not a string.
    #[error("oslo.message is not a string")]
    BadInner,
}

/// Scans a message body (2.0 envelope, or an un-enveloped dict as [`crate::decode_message`]
/// accepts) for the reply address and the size of its inner message.
///
/// ```
/// use fjord_oslo::scan::{scan_request, Field};
/// let huge = "x".repeat(1 << 20);
/// let inner = format!(r#"{{"method": "m", "args": {{"s": "{huge}"}}, "_msg_id": "id", "_reply_q": "reply_1"}}"#);
/// let body = serde_json::json!({"oslo.version": "2.0", "oslo.message": inner}).to_string();
/// let s = scan_request(body.as_bytes()).unwrap();
/// assert_eq!((s.msg_id.text(), s.reply_q.text()), (Some("id"), Some("reply_1")));
/// assert!(scan_request(b"[1]").is_err());
/// ```
pub fn scan_request(body: &[u8]) -> Result<Scan, ScanError> {
    let mut outer = Reader::new(Raw { data: body, at: 0 });
    let top = scan_top(&mut outer, true)?;
    // As oslo's deserialize_msg (and decode_message): only a dict with both keys is an envelope.
    let (Some(version), Some(message)) = (&top.version, &top.message) else {
        return Ok(top.into_scan());
    };
    let version = match version {
        Field::Text(v) => v.as_str(),
        _ => return Err(ScanError::BadVersion(format!("{version:?}"))),
    };
    if !is_compatible(ENVELOPE_VERSION, version).unwrap_or(false) {
        return Err(ScanError::BadVersion(version.to_string()));
    }
    let Some((start, end)) = message else {
        return Err(ScanError::BadInner);
    };
    let content = body.get(*start..*end).ok_or(ScanError::Truncated)?;
    let mut inner = Reader::new(Unescaped {
        data: content,
        at: 0,
        pending: [0; 4],
        pending_len: 0,
        pending_at: 0,
        produced: 0,
    });
    Ok(scan_top(&mut inner, false)?.into_scan())
}

/// The top level of one JSON object: the fields wanted and the counts.
struct Top {
    msg_id: Field,
    reply_q: Field,
    /// `oslo.version` (outer level only).
    version: Option<Field>,
    /// `oslo.message` (outer level only): the byte range of its string content, or `None` when
    /// it is not a string.
    message: Option<Option<(usize, usize)>>,
    values: usize,
    depth: usize,
}

impl Top {
    fn into_scan(self) -> Scan {
        Scan {
            msg_id: self.msg_id,
            reply_q: self.reply_q,
            values: self.values,
            depth: self.depth,
        }
    }
}

/// Bytes one at a time: the body as it is, or a JSON string's content unescaped.
trait Source {
    fn next_byte(&mut self) -> Result<Option<u8>, ScanError>;
    /// How far into the source the next byte is (offsets in errors, string spans).
    fn offset(&self) -> usize;
}

struct Raw<'a> {
    data: &'a [u8],
    at: usize,
}

impl Source for Raw<'_> {
    fn next_byte(&mut self) -> Result<Option<u8>, ScanError> {
        let b = self.data.get(self.at).copied();
        if b.is_some() {
            self.at += 1;
        }
        Ok(b)
    }
    fn offset(&self) -> usize {
        self.at
    }
}

/// The content of a JSON string (between its quotes), with its escapes undone.
struct Unescaped<'a> {
    data: &'a [u8],
    at: usize,
    pending: [u8; 4],
    pending_len: usize,
    pending_at: usize,
    produced: usize,
}

impl Unescaped<'_> {
    fn raw(&mut self) -> Result<u8, ScanError> {
        let b = self
            .data
            .get(self.at)
            .copied()
            .ok_or(ScanError::BadEscape)?;
        self.at += 1;
        Ok(b)
    }

    fn hex4(&mut self) -> Result<u32, ScanError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = char::from(self.raw()?)
                .to_digit(16)
                .ok_or(ScanError::BadEscape)?;
            v = (v << 4) | d;
        }
        Ok(v)
    }

    /// After `\u`: one code point, joining a surrogate pair.
    fn unicode(&mut self) -> Result<char, ScanError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if self.raw()? != b'\\' || self.raw()? != b'u' {
                return Err(ScanError::BadEscape);
            }
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(ScanError::BadEscape);
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or(ScanError::BadEscape)
    }
}

impl Source for Unescaped<'_> {
    fn next_byte(&mut self) -> Result<Option<u8>, ScanError> {
        // The rest of a multi-byte character from a `\u` escape.
        if self.pending_at < self.pending_len {
            let b = self.pending.get(self.pending_at).copied();
            self.pending_at += 1;
            self.produced += 1;
            return Ok(b);
        }
        let Some(&b) = self.data.get(self.at) else {
            return Ok(None);
        };
        self.at += 1;
        let b = if b == b'\\' {
            match self.raw()? {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    let c = self.unicode()?;
                    let len = c.encode_utf8(&mut self.pending).len();
                    self.pending_len = len;
                    self.pending_at = 1;
                    self.pending[0]
                }
                _ => return Err(ScanError::BadEscape),
            }
        } else {
            b
        };
        self.produced += 1;
        Ok(Some(b))
    }
    fn offset(&self) -> usize {
        self.produced
    }
}

/// A source with one byte of lookahead.
struct Reader<S> {
    source: S,
    peeked: Option<Option<u8>>,
}

impl<S: Source> Reader<S> {
    fn new(source: S) -> Self {
        Reader {
            source,
            peeked: None,
        }
    }

    fn next(&mut self) -> Result<Option<u8>, ScanError> {
        match self.peeked.take() {
            Some(b) => Ok(b),
            None => self.source.next_byte(),
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, ScanError> {
        if let Some(b) = self.peeked {
            return Ok(b);
        }
        let b = self.source.next_byte()?;
        self.peeked = Some(b);
        Ok(b)
    }

    /// The offset of the byte `next` returns.
    fn offset(&self) -> usize {
        match self.peeked {
            Some(Some(_)) => self.source.offset().saturating_sub(1),
            _ => self.source.offset(),
        }
    }

    /// The next byte that is not JSON whitespace, consumed.
    fn next_token(&mut self) -> Result<Option<u8>, ScanError> {
        loop {
            match self.next()? {
                Some(b' ' | b'\t' | b'\n' | b'\r') => {}
                other => return Ok(other),
            }
        }
    }

    fn unexpected(&self, byte: u8) -> ScanError {
        ScanError::Unexpected {
            byte,
            offset: self.offset().saturating_sub(1),
        }
    }

    /// The next non-whitespace byte, which must be there.
    fn expect_token(&mut self) -> Result<u8, ScanError> {
        self.next_token()?.ok_or(ScanError::Truncated)
    }

    /// After an opening quote: the rest of a string, thrown away.
    fn skip_string(&mut self) -> Result<(), ScanError> {
        loop {
            match self.next()?.ok_or(ScanError::Truncated)? {
                b'"' => return Ok(()),
                b'\\' => {
                    self.next()?.ok_or(ScanError::Truncated)?;
                }
                _ => {}
            }
        }
    }

    /// After an opening quote: the string, kept up to [`MAX_SHORT_STRING`] bytes.
    fn capture_string(&mut self) -> Result<Field, ScanError> {
        let mut text = Vec::new();
        let mut len = 0usize;
        let mut valid = true;
        let mut push = |text: &mut Vec<u8>, bytes: &[u8]| {
            len = len.saturating_add(bytes.len());
            if len <= MAX_SHORT_STRING {
                text.extend_from_slice(bytes);
            }
        };
        loop {
            match self.next()?.ok_or(ScanError::Truncated)? {
                b'"' => break,
                b'\\' => match self.next()?.ok_or(ScanError::Truncated)? {
                    b'"' => push(&mut text, b"\""),
                    b'\\' => push(&mut text, b"\\"),
                    b'/' => push(&mut text, b"/"),
                    b'b' => push(&mut text, b"\x08"),
                    b'f' => push(&mut text, b"\x0c"),
                    b'n' => push(&mut text, b"\n"),
                    b'r' => push(&mut text, b"\r"),
                    b't' => push(&mut text, b"\t"),
                    b'u' => match self.unicode_escape()? {
                        Some(c) => push(&mut text, c.encode_utf8(&mut [0; 4]).as_bytes()),
                        None => valid = false,
                    },
                    _ => valid = false,
                },
                b if b < 0x20 => valid = false,
                b => push(&mut text, &[b]),
            }
        }
        if !valid {
            return Ok(Field::NotText);
        }
        if len > MAX_SHORT_STRING {
            return Ok(Field::TooLong(len));
        }
        Ok(String::from_utf8(text).map_or(Field::NotText, Field::Text))
    }

    /// After `\u` inside a string: the code point, `None` when the escape is invalid (the bytes
    /// it consumed stay consumed; the string goes on).
    fn unicode_escape(&mut self) -> Result<Option<char>, ScanError> {
        let Some(first) = self.hex4()? else {
            return Ok(None);
        };
        if (0xDC00..0xE000).contains(&first) {
            return Ok(None);
        }
        if !(0xD800..0xDC00).contains(&first) {
            return Ok(char::from_u32(first));
        }
        // A high surrogate must be followed by `\u` and a low one.
        if self.peek()? != Some(b'\\') {
            return Ok(None);
        }
        self.next()?;
        if self.peek()? != Some(b'u') {
            return Ok(None);
        }
        self.next()?;
        let Some(second) = self.hex4()? else {
            return Ok(None);
        };
        if !(0xDC00..0xE000).contains(&second) {
            return Ok(None);
        }
        Ok(char::from_u32(
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00),
        ))
    }

    /// Four hex digits, or `None` (having consumed up to the first bad one) when they are not.
    fn hex4(&mut self) -> Result<Option<u32>, ScanError> {
        let mut v = 0u32;
        for _ in 0..4 {
            match self.peek()?.and_then(|b| char::from(b).to_digit(16)) {
                Some(d) => {
                    self.next()?;
                    v = (v << 4) | d;
                }
                None => return Ok(None),
            }
        }
        Ok(Some(v))
    }

    /// After the first byte of a number or literal: the rest of it.
    fn skip_scalar(&mut self) -> Result<(), ScanError> {
        while let Some(b) = self.peek()? {
            if matches!(
                b,
                b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' | b']' | b'}' | b'[' | b'{' | b'"'
            ) {
                break;
            }
            self.next()?;
        }
        Ok(())
    }

    /// Skips one value whose first byte `first` was just read, at nesting `base` (the object
    /// holding it), counting values and the deepest level. No recursion: a depth counter.
    fn skip_value(
        &mut self,
        first: u8,
        base: usize,
        values: &mut usize,
        depth: &mut usize,
    ) -> Result<(), ScanError> {
        let mut level = 0usize;
        let mut b = first;
        loop {
            match b {
                b'{' | b'[' => {
                    *values = values.saturating_add(1);
                    level += 1;
                    *depth = (*depth).max(base.saturating_add(level));
                }
                b'}' | b']' => {
                    level = level.checked_sub(1).ok_or_else(|| self.unexpected(b))?;
                }
                b'"' => {
                    self.skip_string()?;
                    *values = values.saturating_add(1);
                }
                b',' | b':' if level > 0 => {}
                b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                    self.skip_scalar()?;
                    *values = values.saturating_add(1);
                }
                other => return Err(self.unexpected(other)),
            }
            if level == 0 {
                return Ok(());
            }
            b = self.expect_token()?;
        }
    }
}

/// Which top-level key a field of interest is.
#[derive(Clone, Copy)]
enum Key {
    MsgId,
    ReplyQ,
    Version,
    Message,
}

fn key_of(field: &Field, outer: bool) -> Option<Key> {
    match field.text()? {
        "_msg_id" => Some(Key::MsgId),
        "_reply_q" => Some(Key::ReplyQ),
        "oslo.version" if outer => Some(Key::Version),
        "oslo.message" if outer => Some(Key::Message),
        _ => None,
    }
}

/// Scans one object at the top of `reader` and everything after it (only whitespace may follow).
fn scan_top<S: Source>(reader: &mut Reader<S>, outer: bool) -> Result<Top, ScanError> {
    let mut top = Top {
        msg_id: Field::Absent,
        reply_q: Field::Absent,
        version: None,
        message: None,
        values: 1,
        depth: 1,
    };
    if reader.next_token()? != Some(b'{') {
        return Err(ScanError::NotObject);
    }
    let mut first = true;
    loop {
        let b = reader.expect_token()?;
        if b == b'}' && first {
            break;
        }
        first = false;
        if b != b'"' {
            return Err(reader.unexpected(b));
        }
        let key = reader.capture_string()?;
        top.values = top.values.saturating_add(1);
        match reader.expect_token()? {
            b':' => {}
            other => return Err(reader.unexpected(other)),
        }
        let v = reader.expect_token()?;
        match (key_of(&key, outer), v) {
            (Some(Key::Message), b'"') => {
                let start = reader.offset();
                reader.skip_string()?;
                // The offset is past the closing quote.
                let end = reader.offset().saturating_sub(1);
                top.values = top.values.saturating_add(1);
                top.message = Some(Some((start, end)));
            }
            (Some(Key::Message), other) => {
                reader.skip_value(other, 1, &mut top.values, &mut top.depth)?;
                top.message = Some(None);
            }
            (Some(k @ (Key::MsgId | Key::ReplyQ | Key::Version)), v) => {
                let field = if v == b'"' {
                    top.values = top.values.saturating_add(1);
                    reader.capture_string()?
                } else {
                    reader.skip_value(v, 1, &mut top.values, &mut top.depth)?;
                    Field::NotText
                };
                match k {
                    Key::MsgId => top.msg_id = field,
                    Key::ReplyQ => top.reply_q = field,
                    _ => top.version = Some(field),
                }
            }
            (None, v) => reader.skip_value(v, 1, &mut top.values, &mut top.depth)?,
        }
        match reader.expect_token()? {
            b',' => {}
            b'}' => break,
            other => return Err(reader.unexpected(other)),
        }
    }
    match reader.next_token()? {
        None => Ok(top),
        Some(b) => Err(reader.unexpected(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{decode_message, Request};
    use serde_json::{json, Value};

    fn enveloped(inner: &str) -> Vec<u8> {
        json!({"oslo.version": "2.0", "oslo.message": inner})
            .to_string()
            .into_bytes()
    }

    /// Values a full parse builds: every node, keys included.
    fn tree_values(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.iter().map(tree_values).sum::<usize>(),
            Value::Object(o) => 1 + o.values().map(|v| 1 + tree_values(v)).sum::<usize>(),
            _ => 1,
        }
    }

    #[test]
    fn finds_the_reply_address_of_real_requests() {
        let mut r = Request::new("add", json!({"a": 1}).as_object().unwrap().clone());
        r.msg_id = Some("50a5dd5a47f14888a9631401d275d5b7".into());
        r.reply_q = Some("reply_f4cfe3e052b449779eb7993805f3fff5".into());
        r.context
            .insert("roles".into(), json!(["admin", {"x": [1, 2]}]));
        let body = r.encode();
        let s = scan_request(&body).unwrap();
        assert_eq!(s.msg_id.text(), r.msg_id.as_deref());
        assert_eq!(s.reply_q.text(), r.reply_q.as_deref());
        let inner = Value::Object(decode_message(&body).unwrap());
        assert_eq!(s.values, tree_values(&inner));
        assert_eq!(s.depth, 4);
    }

    #[test]
    fn skips_what_it_does_not_need_and_reads_escapes() {
        let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
        let inner = format!(
            r#"{{"args": {{"v": {deep}, "s": "a\"}}]\\"}}, "_msg\u005fid": "i\u00e9\n", "_reply_q": "q\ud83d\ude00"}}"#
        );
        let s = scan_request(&enveloped(&inner)).unwrap();
        assert_eq!(s.msg_id, Field::Text("i\u{e9}\n".into()));
        assert_eq!(s.reply_q, Field::Text("q\u{1f600}".into()));
        assert_eq!(s.depth, 502);
        // Unenveloped (oslo 1.0 form) too.
        let s = scan_request(inner.as_bytes()).unwrap();
        assert_eq!(s.msg_id, Field::Text("i\u{e9}\n".into()));
    }

    #[test]
    fn long_and_odd_fields() {
        let long = "q".repeat(300);
        let inner = format!(r#"{{"_msg_id": 5, "_reply_q": "{long}"}}"#);
        let s = scan_request(&enveloped(&inner)).unwrap();
        assert_eq!(s.msg_id, Field::NotText);
        assert_eq!(s.reply_q, Field::TooLong(300));
        let exact = "q".repeat(255);
        let s = scan_request(format!(r#"{{"_reply_q": "{exact}"}}"#).as_bytes()).unwrap();
        assert_eq!(s.reply_q, Field::Text(exact));
        // Last key wins, as in serde_json and Python.
        let s = scan_request(br#"{"_reply_q": "a", "_reply_q": "b"}"#).unwrap();
        assert_eq!(s.reply_q.text(), Some("b"));
        let s = scan_request(br#"{"_reply_q": "\ud800x"}"#).unwrap();
        assert_eq!(s.reply_q, Field::NotText);
        let s = scan_request(br#"{}"#).unwrap();
        assert_eq!((s.msg_id, s.values, s.depth), (Field::Absent, 1, 1));
    }

    #[test]
    fn refuses_what_is_not_an_oslo_message() {
        assert_eq!(scan_request(b"not json"), Err(ScanError::NotObject));
        assert_eq!(scan_request(b"[1]"), Err(ScanError::NotObject));
        assert_eq!(scan_request(b""), Err(ScanError::NotObject));
        assert_eq!(scan_request(br#"{"a": [1"#), Err(ScanError::Truncated));
        assert!(matches!(
            scan_request(br#"{"a": 1} x"#),
            Err(ScanError::Unexpected { byte: b'x', .. })
        ));
        assert!(matches!(
            scan_request(br#"{"a" 1}"#),
            Err(ScanError::Unexpected { .. })
        ));
        assert!(matches!(
            scan_request(br#"{"oslo.version": "3.0", "oslo.message": "{}"}"#),
            Err(ScanError::BadVersion(_))
        ));
        assert_eq!(
            scan_request(br#"{"oslo.version": "2.0", "oslo.message": {}}"#),
            Err(ScanError::BadInner)
        );
        assert_eq!(
            scan_request(br#"{"oslo.version": "2.0", "oslo.message": "{\"a\": \q}"}"#),
            Err(ScanError::BadEscape)
        );
        assert_eq!(
            scan_request(br#"{"oslo.version": "2.0", "oslo.message": "[]"}"#),
            Err(ScanError::NotObject)
        );
        // One key without the other is not an envelope, as in decode_message.
        let s = scan_request(br#"{"oslo.message": "{}", "_reply_q": "r"}"#).unwrap();
        assert_eq!(s.reply_q.text(), Some("r"));
    }

    #[test]
    fn counts_every_value_a_parse_would_build() {
        for inner in [
            json!({"args": {"v": [0, 0, 0, [], {}, "", null, true, -1.5e3]}}),
            json!({"args": {"v": {"a": {"b": {"c": []}}}}, "x": "y"}),
        ] {
            let body = enveloped(&inner.to_string());
            let s = scan_request(&body).unwrap();
            assert_eq!(s.values, tree_values(&inner), "{inner}");
        }
    }
}
