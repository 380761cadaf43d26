//! Per-bucket limits (`[keyvalue.buckets.NAME]`) and the checks every operation goes through before
//! it reaches a backend. The count of keys is enforced by the backends themselves, atomically with
//! the write that would pass it.

use super::KvError;

/// Bucket names: what a grant (`keyvalue = ["default"]`) may name.
pub const MAX_BUCKET_NAME: usize = 64;
/// Keys one `list-keys` page returns at most.
pub const LIST_PAGE: usize = 1000;
/// The largest result of one `get-many` (keys and values together): a guest asking for many
/// large values is refused instead of making the host hold them all at once.
pub const MAX_GET_MANY_BYTES: usize = 8 << 20;

/// The limits of one bucket. Defaults: values up to 1 MiB, keys up to 512 bytes, 100,000 keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketLimits {
    /// `max_value_kib`: the largest value, in bytes.
    pub max_value_bytes: usize,
    /// `max_key_bytes`: the longest key, in bytes of UTF-8.
    pub max_key_bytes: usize,
    /// `max_keys`: how many keys the bucket may hold.
    pub max_keys: u64,
}

impl Default for BucketLimits {
    fn default() -> Self {
        BucketLimits {
            max_value_bytes: 1 << 20,
            max_key_bytes: 512,
            max_keys: 100_000,
        }
    }
}

impl BucketLimits {
    /// Refuses an empty key or one longer than the bucket allows.
    pub fn check_key(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(KvError::Limit(format!(
                "bucket {bucket:?}: a key must not be empty"
            )));
        }
        if key.len() > self.max_key_bytes {
            return Err(KvError::Limit(format!(
                "bucket {bucket:?}: a key of {} bytes is longer than the {} bytes allowed (max_key_bytes)",
                key.len(),
                self.max_key_bytes
            )));
        }
        Ok(())
    }

    /// Refuses a value larger than the bucket allows.
    pub fn check_value(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        if value.len() > self.max_value_bytes {
            return Err(KvError::Limit(format!(
                "bucket {bucket:?}: the value of {key:?} is {} bytes, more than the {} bytes allowed (max_value_kib)",
                value.len(),
                self.max_value_bytes
            )));
        }
        Ok(())
    }

    /// The error of a write that would take the bucket past `max_keys`.
    pub fn full(&self, bucket: &str) -> KvError {
        KvError::Limit(format!(
            "bucket {bucket:?} is full: it may hold {} keys (max_keys)",
            self.max_keys
        ))
    }
}

/// A bucket name a grant may use: 1 to 64 ASCII letters, digits, `-`, `_` or `.`.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_BUCKET_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bucket name {name:?} must be 1 to {MAX_BUCKET_NAME} letters, digits, '-', '_' or '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_over_the_limits_are_refused_with_the_bucket_named() {
        let limits = BucketLimits {
            max_value_bytes: 4,
            max_key_bytes: 3,
            max_keys: 1,
        };
        assert!(limits.check_key("b", "abc").is_ok());
        let long = limits.check_key("b", "abcd").unwrap_err().to_string();
        assert!(
            long.contains("\"b\"") && long.contains("max_key_bytes"),
            "{long}"
        );
        assert!(limits.check_key("b", "").is_err());
        assert!(limits.check_value("b", "k", b"1234").is_ok());
        let big = limits
            .check_value("b", "k", b"12345")
            .unwrap_err()
            .to_string();
        assert!(
            big.contains("5 bytes") && big.contains("max_value_kib"),
            "{big}"
        );
        assert!(limits.full("b").to_string().contains("max_keys"));
    }

    #[test]
    fn bucket_names() {
        for good in ["default", "cache", "a.b-c_d", &"x".repeat(64)] {
            assert!(check_bucket_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "é", "a/b", &"x".repeat(65)] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }
}
