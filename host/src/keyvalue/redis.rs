//! The shared store: Redis, for hosts that serve one topic and must see the same state.
//!
//! Bucket `B` is the Redis hash `<prefix>B`: `get` is HGET, `exists` HEXISTS, `delete` HDEL,
//! `get-many` HMGET, and the writes that may add keys (`set`, `set-many`, `increment`) are Lua
//! scripts that check `max_keys` (HLEN) and write in one atomic step; `increment` is HINCRBY inside
//! it. `list-keys` is HSCAN (in a script, so that only the keys come back, not the values).
//!
//! Connections: a small pool of multiplexed connections, each re-established by itself after a
//! failure (redis's `ConnectionManager`). While Redis is unreachable every operation fails within
//! [`OPERATION_TIMEOUT`] with a keyvalue `error` the guest sees; the host keeps serving.

use super::config::RedisUrl;
use super::limits::{BucketLimits, LIST_PAGE};
use super::{Found, KvError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Multiplexed connections in the pool (each pipelines every call given to it).
const CONNECTIONS: usize = 4;
/// An operation (reconnection included) that takes longer fails.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Pairs (or keys) per script call or HMGET/HDEL: bounds what one command carries.
const CHUNK: usize = 500;
/// What the scripts answer for a write that would pass `max_keys`.
const FULL: &str = "FJORD_FULL";

/// KEYS[1] the bucket's hash, ARGV[1] max_keys, then field, value, field, value...
const SET: &str = r"
local new = 0
for i = 2, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then new = new + 1 end
end
if new > 0 and redis.call('HLEN', KEYS[1]) + new > tonumber(ARGV[1]) then
  return redis.error_reply('FJORD_FULL')
end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return new
";

/// KEYS[1] the bucket's hash, ARGV[1] field, ARGV[2] delta, ARGV[3] max_keys. Returns the new
/// value as Redis stores it (text: a Lua number would lose precision past 2^53).
const INCREMENT: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return redis.error_reply('FJORD_FULL')
end
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
";

/// KEYS[1] the bucket's hash, ARGV[1] cursor, ARGV[2] count: the next cursor and the keys only.
const LIST: &str = r"
local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local keys = {}
for i = 1, #r[2], 2 do keys[#keys + 1] = r[2][i] end
return {r[1], keys}
";

pub struct Redis {
    url: RedisUrl,
    prefix: String,
    pool: Vec<ConnectionManager>,
    next: AtomicUsize,
    scripts: Arc<Scripts>,
}

struct Scripts {
    set: Script,
    increment: Script,
    list: Script,
}

impl Redis {
    /// Connects the pool; an unreachable Redis stops the host at start (as the broker does).
    pub async fn connect(url: &RedisUrl, prefix: &str) -> anyhow::Result<Redis> {
        let client = redis::Client::open(url.secret())
            .map_err(|e| anyhow::anyhow!("keyvalue: {url}: {}", clean(&e, url)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(OPERATION_TIMEOUT))
            // Fail an operation quickly while Redis is away; the next one tries again.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let mut pool = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let manager = tokio::time::timeout(
                OPERATION_TIMEOUT,
                ConnectionManager::new_with_config(client.clone(), config.clone()),
            )
            .await
            .map_err(|_| anyhow::anyhow!("keyvalue: cannot connect to Redis at {url}: no answer"))?
            .map_err(|e| {
                anyhow::anyhow!(
                    "keyvalue: cannot connect to Redis at {url}: {}",
                    clean(&e, url)
                )
            })?;
            pool.push(manager);
        }
        Ok(Redis {
            url: url.clone(),
            prefix: prefix.to_string(),
            pool,
            next: AtomicUsize::new(0),
            scripts: Arc::new(Scripts {
                set: Script::new(SET),
                increment: Script::new(INCREMENT),
                list: Script::new(LIST),
            }),
        })
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    fn hash(&self, bucket: &str) -> String {
        format!("{}{bucket}", self.prefix)
    }

    fn connection(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len().max(1);
        // The pool is never empty (connect fills it); cloning a manager shares its connection.
        self.pool[i].clone()
    }

    /// Runs one operation on a pooled connection, bounded by [`OPERATION_TIMEOUT`].
    async fn run<T>(
        &self,
        bucket: &str,
        limits: Option<&BucketLimits>,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, KvError> {
        match tokio::time::timeout(OPERATION_TIMEOUT, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if is_full(&e) => Err(match limits {
                Some(l) => l.full(bucket),
                None => KvError::Backend(format!("bucket {bucket:?} is full")),
            }),
            Ok(Err(e)) => Err(KvError::Backend(format!(
                "redis at {}: {}",
                self.url,
                clean(&e, &self.url)
            ))),
            Err(_) => Err(KvError::Backend(format!(
                "redis at {}: no answer within {} s",
                self.url,
                OPERATION_TIMEOUT.as_secs()
            ))),
        }
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let mut c = self.connection();
        let hash = self.hash(bucket);
        self.run(bucket, None, async move {
            redis::cmd("HGET")
                .arg(hash)
                .arg(key)
                .query_async(&mut c)
                .await
        })
        .await
    }

    pub async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        let mut c = self.connection();
        let hash = self.hash(bucket);
        self.run(bucket, None, async move {
            redis::cmd("HEXISTS")
                .arg(hash)
                .arg(key)
                .query_async(&mut c)
                .await
        })
        .await
    }

    pub async fn get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
        max_bytes: usize,
    ) -> Result<Option<Found>, KvError> {
        let hash = self.hash(bucket);
        let mut out = Vec::with_capacity(keys.len());
        let mut total = 0usize;
        for chunk in keys.chunks(CHUNK) {
            let mut c = self.connection();
            let values: Vec<Option<Vec<u8>>> = self
                .run(bucket, None, async {
                    redis::cmd("HMGET")
                        .arg(&hash)
                        .arg(chunk)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            if values.len() != chunk.len() {
                return Err(KvError::Backend(format!(
                    "redis at {}: HMGET answered {} values for {} keys",
                    self.url,
                    values.len(),
                    chunk.len()
                )));
            }
            for (key, value) in chunk.iter().zip(values) {
                total = total
                    .saturating_add(key.len())
                    .saturating_add(value.as_ref().map_or(0, Vec::len));
                if total > max_bytes {
                    return Ok(None);
                }
                out.push(value.map(|v| (key.clone(), v)));
            }
        }
        Ok(Some(out))
    }

    pub async fn set_many(
        &self,
        bucket: &str,
        limits: BucketLimits,
        pairs: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvError> {
        let hash = self.hash(bucket);
        for chunk in pairs.chunks(CHUNK) {
            let mut c = self.connection();
            let scripts = self.scripts.clone();
            let mut call = scripts.set.key(&hash);
            call.arg(limits.max_keys);
            for (key, value) in chunk {
                call.arg(key).arg(value.as_slice());
            }
            let _: u64 = self
                .run(bucket, Some(&limits), async move {
                    call.invoke_async(&mut c).await
                })
                .await?;
        }
        Ok(())
    }

    pub async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), KvError> {
        let hash = self.hash(bucket);
        for chunk in keys.chunks(CHUNK) {
            let mut c = self.connection();
            let _: u64 = self
                .run(bucket, None, async {
                    redis::cmd("HDEL")
                        .arg(&hash)
                        .arg(chunk)
                        .query_async(&mut c)
                        .await
                })
                .await?;
        }
        Ok(())
    }

    pub async fn increment(
        &self,
        bucket: &str,
        limits: BucketLimits,
        key: &str,
        delta: u64,
    ) -> Result<u64, KvError> {
        // HINCRBY takes a signed 64-bit delta.
        if i64::try_from(delta).is_err() {
            return Err(KvError::Backend(format!(
                "bucket {bucket:?}: Redis increments by at most {}, not {delta}",
                i64::MAX
            )));
        }
        let mut c = self.connection();
        let hash = self.hash(bucket);
        let mut call = self.scripts.increment.key(hash);
        call.arg(key).arg(delta).arg(limits.max_keys);
        let text: String = self
            .run(bucket, Some(&limits), async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        text.parse().map_err(|_| {
            KvError::Backend(format!(
                "bucket {bucket:?}: the value of {key:?} is negative ({text}): not a counter"
            ))
        })
    }

    pub async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let mut c = self.connection();
        let hash = self.hash(bucket);
        let mut call = self.scripts.list.key(hash);
        call.arg(cursor.unwrap_or(0)).arg(LIST_PAGE);
        let (next, keys): (u64, Vec<String>) = self
            .run(bucket, None, async move { call.invoke_async(&mut c).await })
            .await?;
        Ok((keys, (next != 0).then_some(next)))
    }
}

/// The scripts' refusal of a write past `max_keys` (Redis may report it as the code or, prefixed
/// with ERR, as the detail).
fn is_full(e: &redis::RedisError) -> bool {
    e.code() == Some(FULL) || e.detail().is_some_and(|d| d.trim() == FULL)
}

/// A redis error as one line, without the URL's password should the crate have quoted it.
fn clean(e: &redis::RedisError, url: &RedisUrl) -> String {
    e.to_string().replace(url.secret(), &url.to_string())
}
