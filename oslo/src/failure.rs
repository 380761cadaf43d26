//! Remote failures: oslo's failure JSON (`serialize_remote_exception`) and the error a caller sees.

use serde_json::{Map, Value};

/// Module of the dispatcher's own failures.
pub const DISPATCHER_MODULE: &str = "oslo_messaging.rpc.dispatcher";

/// A failure JSON document that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FailureError {
    /// Not JSON at all.
    #[error("failure is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not an object with string `class` and `module`.
    #[error("failure JSON is not an object with `class` and `module` strings")]
    Shape,
}

/// An exception raised by a remote method, as carried in a reply's `failure` field.
///
/// ```
/// use fjord_oslo::Failure;
/// let f = Failure::no_such_method("nope");
/// let back = Failure::from_json_str(&f.to_json_string()).unwrap();
/// assert_eq!(back.class, "NoSuchMethod");
/// assert_eq!(back.message, "Endpoint does not support RPC method nope");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Exception class name, e.g. `TypeError`.
    pub class: String,
    /// Python module of the class, e.g. `builtins`.
    pub module: String,
    /// `str(exception)`.
    pub message: String,
    /// Traceback lines (may be empty).
    pub tb: Vec<String>,
    /// Constructor arguments (`exception.args`).
    pub args: Vec<Value>,
    /// Constructor keyword arguments.
    pub kwargs: Map<String, Value>,
}

impl Failure {
    /// A failure with `args = [message]`, no traceback and no kwargs.
    ///
    /// ```
    /// let f = fjord_oslo::Failure::new("NotFound", "fjord", "no such thing");
    /// assert_eq!(f.args, vec![serde_json::json!("no such thing")]);
    /// ```
    pub fn new(
        class: impl Into<String>,
        module: impl Into<String>,
        message: impl Into<String>,
    ) -> Failure {
        let message = message.into();
        Failure {
            class: class.into(),
            module: module.into(),
            args: vec![Value::String(message.clone())],
            message,
            tb: Vec::new(),
            kwargs: Map::new(),
        }
    }

    /// The dispatcher's `NoSuchMethod`.
    ///
    /// ```
    /// let f = fjord_oslo::Failure::no_such_method("nope");
    /// assert_eq!(f.module, "oslo_messaging.rpc.dispatcher");
    /// ```
    pub fn no_such_method(method: &str) -> Failure {
        Failure::new(
            "NoSuchMethod",
            DISPATCHER_MODULE,
            format!("Endpoint does not support RPC method {method}"),
        )
    }

    /// The dispatcher's `UnsupportedVersion`.
    ///
    /// ```
    /// let f = fjord_oslo::Failure::unsupported_version("2.0", "add");
    /// assert_eq!(f.message, "Endpoint does not support RPC version 2.0. Attempted method: add");
    /// ```
    pub fn unsupported_version(version: &str, method: &str) -> Failure {
        Failure::new(
            "UnsupportedVersion",
            DISPATCHER_MODULE,
            format!("Endpoint does not support RPC version {version}. Attempted method: {method}"),
        )
    }

    /// A Python `TypeError` (module `builtins`), re-raised as such by Python callers.
    ///
    /// ```
    /// let f = fjord_oslo::Failure::type_error("add() missing 1 required argument: 'b'");
    /// assert_eq!((f.class.as_str(), f.module.as_str()), ("TypeError", "builtins"));
    /// ```
    pub fn type_error(message: impl Into<String>) -> Failure {
        Failure::new("TypeError", "builtins", message)
    }

    /// The failure JSON object, keys in oslo's order.
    ///
    /// ```
    /// let v = fjord_oslo::Failure::type_error("x").to_json_value();
    /// assert_eq!(v["class"], "TypeError");
    /// ```
    pub fn to_json_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("class".into(), Value::String(self.class.clone()));
        m.insert("module".into(), Value::String(self.module.clone()));
        m.insert("message".into(), Value::String(self.message.clone()));
        m.insert(
            "tb".into(),
            Value::Array(self.tb.iter().cloned().map(Value::String).collect()),
        );
        m.insert("args".into(), Value::Array(self.args.clone()));
        m.insert("kwargs".into(), Value::Object(self.kwargs.clone()));
        Value::Object(m)
    }

    /// The failure as the JSON string a reply carries.
    ///
    /// ```
    /// let s = fjord_oslo::Failure::type_error("x").to_json_string();
    /// assert!(s.starts_with(r#"{"class":"TypeError","module":"builtins""#));
    /// ```
    pub fn to_json_string(&self) -> String {
        self.to_json_value().to_string()
    }

    /// Reads oslo's failure JSON; `tb`, `args`, `kwargs` and `message` may be missing.
    ///
    /// ```
    /// let f = fjord_oslo::Failure::from_json_str(r#"{"class": "E", "module": "m"}"#).unwrap();
    /// assert_eq!(f.message, "");
    /// ```
    pub fn from_json_str(s: &str) -> Result<Failure, FailureError> {
        let v: Value = serde_json::from_str(s)?;
        let Value::Object(mut m) = v else {
            return Err(FailureError::Shape);
        };
        let mut take_str = |k: &str| match m.remove(k) {
            Some(Value::String(s)) => Ok(Some(s)),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(FailureError::Shape),
        };
        let class = take_str("class")?.ok_or(FailureError::Shape)?;
        let module = take_str("module")?.ok_or(FailureError::Shape)?;
        let message = take_str("message")?.unwrap_or_default();
        let tb = match m.remove("tb") {
            Some(Value::Array(lines)) => lines
                .into_iter()
                .map(|l| match l {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let args = match m.remove("args") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let kwargs = match m.remove("kwargs") {
            Some(Value::Object(k)) => k,
            _ => Map::new(),
        };
        Ok(Failure {
            class,
            module,
            message,
            tb,
            args,
            kwargs,
        })
    }

    /// The caller-side error for this failure.
    ///
    /// ```
    /// let e = fjord_oslo::Failure::no_such_method("x").to_remote_error();
    /// assert_eq!(e.to_string(), "NoSuchMethod: Endpoint does not support RPC method x");
    /// ```
    pub fn to_remote_error(&self) -> RemoteError {
        RemoteError {
            class: self.class.clone(),
            module: self.module.clone(),
            message: self.message.clone(),
        }
    }
}

/// The error a caller gets when the remote method raised; displays as `Class: message`.
///
/// ```
/// let e = fjord_oslo::RemoteError {
///     class: "ValueError".into(),
///     module: "builtins".into(),
///     message: "bad".into(),
/// };
/// assert_eq!(e.to_string(), "ValueError: bad");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct RemoteError {
    /// Exception class name.
    pub class: String,
    /// Python module of the class.
    pub module: String,
    /// The exception message.
    pub message: String,
}

impl From<Failure> for RemoteError {
    fn from(f: Failure) -> Self {
        RemoteError {
            class: f.class,
            module: f.module,
            message: f.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let mut f = Failure::unsupported_version("2.0", "add");
        f.tb = vec!["Traceback (most recent call last):\n".into()];
        f.kwargs.insert("method".into(), json!("add"));
        let s = f.to_json_string();
        assert_eq!(Failure::from_json_str(&s).unwrap(), f);
        let keys: Vec<String> = serde_json::from_str::<Map<String, Value>>(&s)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["class", "module", "message", "tb", "args", "kwargs"]);
    }

    #[test]
    fn constructors() {
        let f = Failure::no_such_method("_secret");
        assert_eq!(f.message, "Endpoint does not support RPC method _secret");
        assert_eq!(f.args, vec![json!(f.message)]);
        assert_eq!(f.module, DISPATCHER_MODULE);
        let f = Failure::type_error("boom");
        assert_eq!(f.to_remote_error().to_string(), "TypeError: boom");
    }

    #[test]
    fn tolerant_of_missing_fields() {
        let f = Failure::from_json_str(r#"{"class":"E","module":"m","message":"x"}"#).unwrap();
        assert!(f.tb.is_empty() && f.args.is_empty() && f.kwargs.is_empty());
    }

    #[test]
    fn bad_inputs() {
        assert!(matches!(
            Failure::from_json_str("nope"),
            Err(FailureError::Json(_))
        ));
        assert!(matches!(
            Failure::from_json_str("[1]"),
            Err(FailureError::Shape)
        ));
        assert!(matches!(
            Failure::from_json_str(r#"{"module":"m"}"#),
            Err(FailureError::Shape)
        ));
        assert!(matches!(
            Failure::from_json_str(r#"{"class":1,"module":"m"}"#),
            Err(FailureError::Shape)
        ));
    }
}
