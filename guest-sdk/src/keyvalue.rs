//! State that outlives a call: buckets of `wasi:keyvalue@0.2.0-draft`, the standard WASI
//! key-value interface (the same one Spin and wasmCloud components use).
//!
//! Each call runs in a fresh instance, so anything an endpoint must remember between calls goes
//! into a bucket. The host's config grants buckets per endpoint
//! (`endpoints = [{ path = "counter.wasm", keyvalue = ["default"] }]`) and says where they live
//! (an embedded store by default, or Redis shared by several hosts). Opening any other bucket
//! fails with [`Error::AccessDenied`].
//!
//! Writes are durable when they return: the host has them on disk (or in Redis) before the
//! call's reply leaves. [`Bucket::increment`] is atomic, also across hosts sharing Redis; a
//! read followed by a write is not (two concurrent calls may both read the old value).
//!
//! ```ignore
//! // A counter: each call adds one and returns the new count.
//! fn hit(page: String) -> Result<u64, String> {
//!     let bucket = fjord_guest::keyvalue::open("default")?;
//!     Ok(bucket.increment(&page, 1)?)
//! }
//! ```

use std::fmt;

#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        world: "wasi:keyvalue/imports",
        path: "../wit/keyvalue",
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// Why a key-value operation failed.
///
/// ```ignore
/// match fjord_guest::keyvalue::open("cache") {
///     Ok(bucket) => { /* ... */ }
///     Err(fjord_guest::keyvalue::Error::AccessDenied { bucket }) => {
///         fjord_guest::warn!("no grant for {bucket}");
///     }
///     Err(other) => return Err(other.to_string()),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The endpoint is not granted this bucket (`keyvalue = [...]` in the host's config).
    AccessDenied {
        /// The bucket asked for.
        bucket: String,
    },
    /// The host has no such store.
    NoSuchStore {
        /// The bucket asked for.
        bucket: String,
    },
    /// Anything else, as the host describes it: a per-bucket limit (value size, key size, keys
    /// per bucket), a value that is not a counter, the store being unreachable...
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AccessDenied { bucket } => write!(
                f,
                "access denied: bucket {bucket:?} is not granted to this endpoint"
            ),
            Error::NoSuchStore { bucket } => write!(f, "no such store: {bucket:?}"),
            Error::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

/// So that an endpoint returning `result<T, string>` can use `?` on key-value calls.
///
/// ```ignore
/// fn get(name: String) -> Result<u64, String> {
///     Ok(fjord_guest::keyvalue::open("default")?.get_u64(&name)?.unwrap_or(0))
/// }
/// ```
impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

impl Error {
    fn from_wit(e: store::Error, bucket: &str) -> Error {
        match e {
            store::Error::AccessDenied => Error::AccessDenied {
                bucket: bucket.to_string(),
            },
            store::Error::NoSuchStore => Error::NoSuchStore {
                bucket: bucket.to_string(),
            },
            store::Error::Other(message) => Error::Other(message),
        }
    }
}

/// Opens a bucket the endpoint is granted.
///
/// ```ignore
/// let bucket = fjord_guest::keyvalue::open("default")?;
/// ```
pub fn open(name: &str) -> Result<Bucket, Error> {
    let inner = store::open(name).map_err(|e| Error::from_wit(e, name))?;
    Ok(Bucket {
        name: name.to_string(),
        inner,
    })
}

/// An open bucket: keys are strings, values bytes.
///
/// ```ignore
/// let bucket = fjord_guest::keyvalue::open("default")?;
/// bucket.set("greeting", "hello")?;
/// assert_eq!(bucket.get_string("greeting")?.as_deref(), Some("hello"));
/// ```
pub struct Bucket {
    name: String,
    inner: store::Bucket,
}

impl Bucket {
    fn err(&self, e: store::Error) -> Error {
        Error::from_wit(e, &self.name)
    }

    /// The bucket's name.
    ///
    /// ```ignore
    /// assert_eq!(fjord_guest::keyvalue::open("default")?.name(), "default");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`, or `None` if it is not set.
    ///
    /// ```ignore
    /// let photo: Option<Vec<u8>> = bucket.get("photo")?;
    /// ```
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.inner.get(key).map_err(|e| self.err(e))
    }

    /// The value of `key` as UTF-8 text; a value that is not UTF-8 is an [`Error::Other`].
    ///
    /// ```ignore
    /// let name = bucket.get_string("name")?.unwrap_or_default();
    /// ```
    pub fn get_string(&self, key: &str) -> Result<Option<String>, Error> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                Error::Other(format!(
                    "the value of {key:?} in bucket {:?} is not UTF-8",
                    self.name
                ))
            }),
        }
    }

    /// The counter at `key` (as [`Bucket::increment`] keeps it: decimal text), or `None` if unset.
    ///
    /// ```ignore
    /// let visits = bucket.get_u64("visits")?.unwrap_or(0);
    /// ```
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, Error> {
        match self.get_string(key)? {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                Error::Other(format!(
                    "the value of {key:?} in bucket {:?} is not a counter",
                    self.name
                ))
            }),
        }
    }

    /// Sets `key` to `value` (bytes or text), replacing what was there.
    ///
    /// ```ignore
    /// bucket.set("name", "alice")?;
    /// bucket.set("photo", &jpeg_bytes)?;
    /// ```
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.inner.set(key, value.as_ref()).map_err(|e| self.err(e))
    }

    /// Removes `key`; removing a key that is not set is not an error.
    ///
    /// ```ignore
    /// bucket.delete("session")?;
    /// ```
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.inner.delete(key).map_err(|e| self.err(e))
    }

    /// Whether `key` is set.
    ///
    /// ```ignore
    /// if !bucket.exists("created")? { bucket.set("created", "now")?; }
    /// ```
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.inner.exists(key).map_err(|e| self.err(e))
    }

    /// Adds `delta` to the counter at `key` atomically (an unset key counts from 0) and returns
    /// the new value. Atomic across concurrent calls and, with Redis, across hosts.
    ///
    /// ```ignore
    /// let n = bucket.increment("visits", 1)?;
    /// ```
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, Error> {
        atomics::increment(&self.inner, key, delta).map_err(|e| self.err(e))
    }

    /// Every key of the bucket, in no particular order (reads all pages of `list-keys`).
    ///
    /// ```ignore
    /// for key in bucket.keys()? {
    ///     fjord_guest::debug!("{key}");
    /// }
    /// ```
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.inner.list_keys(cursor).map_err(|e| self.err(e))?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// The values of several keys at once, in the order asked (`None` where a key is not set).
    ///
    /// ```ignore
    /// let values = bucket.get_many(&["a", "b"])?;
    /// ```
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let found = batch::get_many(&self.inner, &keys).map_err(|e| self.err(e))?;
        Ok(found.into_iter().map(|pair| pair.map(|(_, v)| v)).collect())
    }

    /// Sets several keys at once (not atomically: on an error some may be set).
    ///
    /// ```ignore
    /// bucket.set_many(&[("a", b"1".as_slice()), ("b", b"2".as_slice())])?;
    /// ```
    pub fn set_many(&self, pairs: &[(&str, &[u8])]) -> Result<(), Error> {
        let pairs: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        batch::set_many(&self.inner, &pairs).map_err(|e| self.err(e))
    }

    /// Removes several keys at once; keys that are not set are skipped.
    ///
    /// ```ignore
    /// bucket.delete_many(&["a", "b"])?;
    /// ```
    pub fn delete_many(&self, keys: &[&str]) -> Result<(), Error> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        batch::delete_many(&self.inner, &keys).map_err(|e| self.err(e))
    }
}
