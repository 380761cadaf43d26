//! State for endpoints: `wasi:keyvalue@0.2.0-draft` (`store`, `atomics`, `batch`, the WIT that
//! wasmtime 48's `wasmtime-wasi-keyvalue` ships, in `wit/keyvalue`), implemented over fjord's own
//! backends: an embedded durable store by default ([`embedded`], redb), Redis when several hosts
//! share state ([`redis`]).
//!
//! Buckets are granted per endpoint (`keyvalue = ["default"]`): opening any other is refused with
//! `access-denied` (the host logs the bucket's name; `fjord-guest` puts it in its error). Every
//! operation checks the bucket's limits ([`limits`]) before it reaches a backend. A bucket is
//! shared by every endpoint granted its name (and, with Redis, by every host naming that Redis).

pub mod config;
pub mod embedded;
pub mod journal;
pub mod limits;
pub mod redis;

use crate::guest_api::CallInfo;
use config::{KeyvalueConfig, Location};
use limits::{BucketLimits, MAX_GET_MANY_BYTES};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::BucketHandle,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// What `get-many` answers: each key's pair, or none where the key is absent.
pub type Found = Vec<Option<(String, Vec<u8>)>>;

/// Buckets one call may hold open at once: each open handle is host memory.
pub const MAX_OPEN_BUCKETS: usize = 64;

/// Why an operation failed; the guest gets `error::other` with this text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    /// A per-bucket limit refused it.
    #[error("{0}")]
    Limit(String),
    /// The backend failed (I/O, Redis unreachable...).
    #[error("{0}")]
    Backend(String),
}

enum Backend {
    Embedded(embedded::Embedded),
    Redis(redis::Redis),
}

/// The host's store: the backend and every granted bucket's limits.
pub struct Keyvalue {
    backend: Backend,
    config: KeyvalueConfig,
}

impl Keyvalue {
    /// Opens the configured backend, or nothing when no endpoint is granted a bucket.
    pub async fn open(config: &KeyvalueConfig) -> anyhow::Result<Option<Arc<Keyvalue>>> {
        if !config.in_use() {
            return Ok(None);
        }
        let backend = match &config.location {
            Location::Embedded(path) => {
                let store = embedded::Embedded::open(path)?;
                tracing::info!("keyvalue: embedded store {}", path.display());
                Backend::Embedded(store)
            }
            Location::Redis { url, prefix } => {
                let store = redis::Redis::connect(url, prefix).await?;
                tracing::info!("keyvalue: Redis at {url}, keys {prefix}<bucket>");
                Backend::Redis(store)
            }
        };
        Ok(Some(Arc::new(Keyvalue {
            backend,
            config: config.clone(),
        })))
    }

    /// Commits what is pending and stops the embedded store's writer (logging how many fsyncs
    /// its writes shared); nothing to do for Redis.
    pub fn close(&self) {
        if let Backend::Embedded(store) = &self.backend {
            store.close();
            let (writes, fsyncs) = store.writes_and_fsyncs();
            // Display only: the ratio of two counters.
            #[allow(clippy::cast_precision_loss)]
            let per_write = if writes == 0 {
                0.0
            } else {
                fsyncs as f64 / writes as f64
            };
            tracing::info!(
                "keyvalue: {writes} writes in {fsyncs} fsyncs ({per_write:.3} fsyncs per write), {} closed",
                store.path().display()
            );
        }
    }

    fn limits(&self, bucket: &str) -> Option<BucketLimits> {
        self.config.buckets.get(bucket).copied()
    }
}

/// An open bucket, as the guest holds it.
pub struct BucketHandle {
    name: Arc<str>,
    limits: BucketLimits,
}

/// What one call may reach: the host's store (if any) and its endpoint's grants.
pub struct CallKeyvalue {
    store: Option<Arc<Keyvalue>>,
    grants: Arc<[String]>,
    open: usize,
}

impl CallKeyvalue {
    pub fn new(store: Option<Arc<Keyvalue>>, grants: Arc<[String]>) -> Self {
        CallKeyvalue {
            store,
            grants,
            open: 0,
        }
    }
}

/// The parts of a call's store data the keyvalue functions use.
pub struct KeyvalueView<'a> {
    pub kv: &'a mut CallKeyvalue,
    pub table: &'a mut ResourceTable,
    pub call: &'a CallInfo,
}

struct HasKeyvalue;
impl HasData for HasKeyvalue {
    type Data<'a> = KeyvalueView<'a>;
}

/// Adds `wasi:keyvalue/{store,atomics,batch}` to the linker.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KeyvalueView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKeyvalue>(linker, view)?;
    atomics::add_to_linker::<T, HasKeyvalue>(linker, view)?;
    batch::add_to_linker::<T, HasKeyvalue>(linker, view)?;
    Ok(())
}

type Answer<T> = wasmtime::Result<Result<T, store::Error>>;

fn refused<T>(e: KvError) -> Answer<T> {
    Ok(Err(store::Error::Other(e.to_string())))
}

impl KeyvalueView<'_> {
    /// The store and the open bucket behind a handle (a stale handle traps: the guest's bug).
    fn bucket(
        &self,
        handle: &Resource<BucketHandle>,
    ) -> wasmtime::Result<(Arc<Keyvalue>, Arc<str>, BucketLimits)> {
        let bucket = self.table.get(handle)?;
        let store = self
            .kv
            .store
            .clone()
            .ok_or_else(|| wasmtime::format_err!("a bucket is open but no store is"))?;
        Ok((store, bucket.name.clone(), bucket.limits))
    }
}

/// Runs `$body` (a `Result<T, KvError>`) as a keyvalue answer.
macro_rules! answer {
    ($body:expr) => {
        match $body {
            Ok(v) => Ok(Ok(v)),
            Err(e) => refused(e),
        }
    };
}

impl store::Host for KeyvalueView<'_> {
    async fn open(&mut self, identifier: String) -> Answer<Resource<BucketHandle>> {
        let granted = self.kv.grants.contains(&identifier);
        let limits = self.kv.store.as_ref().and_then(|s| s.limits(&identifier));
        let (true, Some(limits)) = (granted, limits) else {
            let request_id = self.call.request_id().unwrap_or("-");
            tracing::warn!(
                endpoint = %self.call.endpoint, method = %self.call.method, request_id,
                "keyvalue: bucket {identifier:?} is not granted to this endpoint (keyvalue = {:?})",
                &*self.kv.grants
            );
            return Ok(Err(store::Error::AccessDenied));
        };
        if self.kv.open >= MAX_OPEN_BUCKETS {
            return refused(KvError::Limit(format!(
                "a call may hold at most {MAX_OPEN_BUCKETS} buckets open at once"
            )));
        }
        let handle = self.table.push(BucketHandle {
            name: Arc::from(identifier),
            limits,
        })?;
        self.kv.open = self.kv.open.saturating_add(1);
        Ok(Ok(handle))
    }
}

impl store::HostBucket for KeyvalueView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> Answer<Option<Vec<u8>>> {
        let (store, name, limits) = self.bucket(&bucket)?;
        if let Err(e) = limits.check_key(&name, &key) {
            return refused(e);
        }
        answer!(match &store.backend {
            Backend::Embedded(s) => s.get(&name, &key).await,
            Backend::Redis(r) => r.get(&name, &key).await,
        })
    }

    async fn set(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        value: Vec<u8>,
    ) -> Answer<()> {
        let (store, name, limits) = self.bucket(&bucket)?;
        if let Err(e) = limits
            .check_key(&name, &key)
            .and_then(|()| limits.check_value(&name, &key, &value))
        {
            return refused(e);
        }
        let pairs = vec![(key, value)];
        answer!(match &store.backend {
            Backend::Embedded(s) => s.set_many(&name, limits, pairs).await,
            Backend::Redis(r) => r.set_many(&name, limits, pairs).await,
        })
    }

    async fn delete(&mut self, bucket: Resource<BucketHandle>, key: String) -> Answer<()> {
        let (store, name, limits) = self.bucket(&bucket)?;
        if let Err(e) = limits.check_key(&name, &key) {
            return refused(e);
        }
        answer!(match &store.backend {
            Backend::Embedded(s) => s.delete_many(&name, limits, vec![key]).await,
            Backend::Redis(r) => r.delete_many(&name, vec![key]).await,
        })
    }

    async fn exists(&mut self, bucket: Resource<BucketHandle>, key: String) -> Answer<bool> {
        let (store, name, limits) = self.bucket(&bucket)?;
        if let Err(e) = limits.check_key(&name, &key) {
            return refused(e);
        }
        answer!(match &store.backend {
            Backend::Embedded(s) => s.exists(&name, &key).await,
            Backend::Redis(r) => r.exists(&name, &key).await,
        })
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<BucketHandle>,
        cursor: Option<u64>,
    ) -> Answer<store::KeyResponse> {
        let (store, name, _) = self.bucket(&bucket)?;
        let page = match &store.backend {
            Backend::Embedded(s) => s.list_keys(&name, cursor).await,
            Backend::Redis(r) => r.list_keys(&name, cursor).await,
        };
        answer!(page.map(|(keys, cursor)| store::KeyResponse { keys, cursor }))
    }

    async fn drop(&mut self, bucket: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        self.kv.open = self.kv.open.saturating_sub(1);
        Ok(())
    }
}

impl atomics::Host for KeyvalueView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        delta: u64,
    ) -> Answer<u64> {
        let (store, name, limits) = self.bucket(&bucket)?;
        if let Err(e) = limits.check_key(&name, &key) {
            return refused(e);
        }
        answer!(match &store.backend {
            Backend::Embedded(s) => s.increment(&name, limits, key, delta).await,
            Backend::Redis(r) => r.increment(&name, limits, &key, delta).await,
        })
    }
}

impl batch::Host for KeyvalueView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> Answer<Found> {
        let (store, name, limits) = self.bucket(&bucket)?;
        if let Err(e) = keys.iter().try_for_each(|k| limits.check_key(&name, k)) {
            return refused(e);
        }
        let found = match &store.backend {
            Backend::Embedded(s) => s.get_many(&name, keys, MAX_GET_MANY_BYTES).await,
            Backend::Redis(r) => r.get_many(&name, keys, MAX_GET_MANY_BYTES).await,
        };
        match found {
            Ok(Some(values)) => Ok(Ok(values)),
            Ok(None) => refused(KvError::Limit(format!(
                "bucket {name:?}: get-many would return more than {} MiB; ask for fewer keys",
                MAX_GET_MANY_BYTES >> 20
            ))),
            Err(e) => refused(e),
        }
    }

    async fn set_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Answer<()> {
        let (store, name, limits) = self.bucket(&bucket)?;
        if let Err(e) = key_values.iter().try_for_each(|(k, v)| {
            limits
                .check_key(&name, k)
                .and_then(|()| limits.check_value(&name, k, v))
        }) {
            return refused(e);
        }
        let pairs = last_value_wins(key_values);
        answer!(match &store.backend {
            Backend::Embedded(s) => s.set_many(&name, limits, pairs).await,
            Backend::Redis(r) => r.set_many(&name, limits, pairs).await,
        })
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> Answer<()> {
        let (store, name, limits) = self.bucket(&bucket)?;
        if let Err(e) = keys.iter().try_for_each(|k| limits.check_key(&name, k)) {
            return refused(e);
        }
        answer!(match &store.backend {
            Backend::Embedded(s) => s.delete_many(&name, limits, keys).await,
            Backend::Redis(r) => r.delete_many(&name, keys).await,
        })
    }
}

/// A key given twice in one `set-many` keeps its last value (and counts once against `max_keys`).
fn last_value_wins(pairs: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let mut seen: std::collections::HashMap<String, usize> =
        std::collections::HashMap::with_capacity(pairs.len());
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        match seen.get(&key) {
            Some(&i) => {
                if let Some(slot) = out.get_mut(i) {
                    slot.1 = value;
                }
            }
            None => {
                seen.insert(key.clone(), out.len());
                out.push((key, value));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_set_twice_keeps_its_last_value() {
        let pairs = vec![
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
            ("a".to_string(), b"3".to_vec()),
        ];
        assert_eq!(
            last_value_wins(pairs),
            vec![
                ("a".to_string(), b"3".to_vec()),
                ("b".to_string(), b"2".to_vec())
            ]
        );
    }
}
