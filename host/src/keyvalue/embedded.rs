//! The embedded store: one redb file per host, a table per bucket.
//!
//! Writes are durable before they are answered and share commits: every write goes to one writer
//! thread, which takes all the writes waiting, applies them in one transaction and commits it
//! (redb's default one-phase commit: one `fdatasync`), and only then answers each of them. While
//! it is syncing, the next writes queue up and go into the next commit, so concurrent calls pay
//! one fsync between them instead of one each. Reads run in the calling task on redb's
//! snapshots and see every answered write.

use super::limits::{BucketLimits, LIST_PAGE};
use super::{Found, KvError};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// Writes one commit takes at most, so that one commit's replies are not held back for long.
const MAX_GROUP: usize = 1024;
/// redb's page cache (its default is 1 GiB).
const CACHE_BYTES: usize = 32 << 20;

/// A bucket's table: `bucket:<name>`, UTF-8 keys, byte values.
fn table(bucket: &str) -> String {
    format!("bucket:{bucket}")
}

/// One write and where its answer goes.
struct Job {
    bucket: Arc<str>,
    limits: BucketLimits,
    op: Write,
    reply: oneshot::Sender<Result<Done, KvError>>,
}

enum Write {
    Set(Vec<(String, Vec<u8>)>),
    Delete(Vec<String>),
    Increment(String, u64),
    /// Ends the writer once the writes queued before it are committed.
    Stop,
}

enum Done {
    Nothing,
    Value(u64),
}

/// Writes and commits so far: fsyncs per write is `commits / writes`.
#[derive(Debug, Default)]
pub struct Stats {
    pub writes: AtomicU64,
    pub commits: AtomicU64,
}

pub struct Embedded {
    path: PathBuf,
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<Stats>,
}

impl Embedded {
    /// Opens (or creates) the store. A file another process has open is refused in one line.
    pub fn open(path: &Path) -> anyhow::Result<Embedded> {
        let db = match Database::builder().set_cache_size(CACHE_BYTES).create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => anyhow::bail!(
                "keyvalue: {} is in use by another fjord-host; give this host its own `path` \
                 under [keyvalue], or share state between hosts through Redis (`url`)",
                path.display()
            ),
            Err(e) => anyhow::bail!("keyvalue: cannot open {}: {e}", path.display()),
        };
        let db = Arc::new(db);
        let stats = Arc::new(Stats::default());
        let (jobs, queue) = mpsc::channel();
        let writer = {
            let (db, stats) = (db.clone(), stats.clone());
            std::thread::Builder::new()
                .name("fjord-kv-writer".into())
                .spawn(move || write_loop(&db, &queue, &stats))
                .map_err(|e| anyhow::anyhow!("keyvalue: cannot start the writer thread: {e}"))?
        };
        Ok(Embedded {
            path: path.to_path_buf(),
            db,
            jobs,
            writer: Mutex::new(Some(writer)),
            stats,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Commits what is queued, stops the writer and waits for it. Later writes fail.
    pub fn close(&self) {
        let (reply, _) = oneshot::channel();
        let _ = self.jobs.send(Job {
            bucket: Arc::from(""),
            limits: BucketLimits::default(),
            op: Write::Stop,
            reply,
        });
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    async fn write(
        &self,
        bucket: &Arc<str>,
        limits: BucketLimits,
        op: Write,
    ) -> Result<Done, KvError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            bucket: bucket.clone(),
            limits,
            op,
            reply,
        };
        self.jobs.send(job).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    pub async fn set_many(
        &self,
        bucket: &Arc<str>,
        limits: BucketLimits,
        pairs: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvError> {
        self.write(bucket, limits, Write::Set(pairs))
            .await
            .map(|_| ())
    }

    pub async fn delete_many(
        &self,
        bucket: &Arc<str>,
        limits: BucketLimits,
        keys: Vec<String>,
    ) -> Result<(), KvError> {
        self.write(bucket, limits, Write::Delete(keys))
            .await
            .map(|_| ())
    }

    pub async fn increment(
        &self,
        bucket: &Arc<str>,
        limits: BucketLimits,
        key: String,
        delta: u64,
    ) -> Result<u64, KvError> {
        match self
            .write(bucket, limits, Write::Increment(key, delta))
            .await?
        {
            Done::Value(v) => Ok(v),
            Done::Nothing => Err(KvError::Backend("increment returned no value".into())),
        }
    }

    /// Runs `read` on the bucket's table in a fresh snapshot; a bucket never written is empty.
    fn read<T>(
        &self,
        bucket: &str,
        empty: T,
        read: impl FnOnce(&redb::ReadOnlyTable<&str, &[u8]>) -> Result<T, redb::StorageError>,
    ) -> Result<T, KvError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let name = table(bucket);
        match txn.open_table(TableDefinition::<&str, &[u8]>::new(&name)) {
            Ok(t) => read(&t).map_err(storage),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(e) => Err(storage(e)),
        }
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.read(bucket, None, |t| {
            Ok(t.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    pub fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        self.read(bucket, false, |t| Ok(t.get(key)?.is_some()))
    }

    /// Up to `max_bytes` of keys and values; `None` once past it (the caller refuses the call).
    pub fn get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
        max_bytes: usize,
    ) -> Result<Option<Found>, KvError> {
        let absent = Some(keys.iter().map(|_| None).collect());
        self.read(bucket, absent, |t| {
            let mut out = Vec::with_capacity(keys.len());
            let mut total = 0usize;
            for key in keys {
                let value = t.get(key.as_str())?.map(|v| v.value().to_vec());
                total = total
                    .saturating_add(key.len())
                    .saturating_add(value.as_ref().map_or(0, Vec::len));
                if total > max_bytes {
                    return Ok(None);
                }
                out.push(value.map(|v| (key, v)));
            }
            Ok(Some(out))
        })
    }

    /// One page of keys in key order; the cursor is how many keys came before it.
    pub fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        self.read(bucket, (Vec::new(), None), |t| {
            let mut keys = Vec::new();
            let mut more = false;
            for entry in t.iter()?.skip(skip) {
                if keys.len() == LIST_PAGE {
                    more = true;
                    break;
                }
                keys.push(entry?.0.value().to_string());
            }
            let next =
                more.then(|| u64::try_from(skip.saturating_add(keys.len())).unwrap_or(u64::MAX));
            Ok((keys, next))
        })
    }
}

fn closed() -> KvError {
    KvError::Backend("the key-value store is closed (the host is stopping)".into())
}

fn storage(e: impl std::fmt::Display) -> KvError {
    KvError::Backend(format!("embedded store: {e}"))
}

/// The writer thread: group commit.
fn write_loop(db: &Database, queue: &mpsc::Receiver<Job>, stats: &Stats) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let stop = group.iter().position(|j| matches!(j.op, Write::Stop));
        if let Some(at) = stop {
            // Writes after the stop are not committed; their callers hear the store is closed.
            group.truncate(at);
        }
        if !group.is_empty() {
            commit(db, group, stats);
        }
        if stop.is_some() {
            return;
        }
    }
}

/// Applies a group of writes in one transaction and answers each once it is durable. A write
/// refused by a limit changes nothing and is answered with its error; a storage failure fails the
/// whole group (nothing of it is committed).
fn commit(db: &Database, group: Vec<Job>, stats: &Stats) {
    let applied = (|| {
        let txn = db.begin_write().map_err(storage)?;
        let mut outcomes = Vec::with_capacity(group.len());
        for job in &group {
            outcomes.push(apply(&txn, job)?);
        }
        txn.commit().map_err(storage)?;
        Ok::<_, KvError>(outcomes)
    })();
    match applied {
        Ok(outcomes) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.writes.fetch_add(
                u64::try_from(group.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            for (job, outcome) in group.into_iter().zip(outcomes) {
                let _ = job.reply.send(outcome);
            }
        }
        Err(e) => {
            tracing::warn!("keyvalue: a commit of {} writes failed: {e}", group.len());
            for job in group {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// One write inside the group's transaction. The outer error is a storage failure (the group
/// fails); the inner one is this write's own refusal, checked before anything is changed.
fn apply(txn: &redb::WriteTransaction, job: &Job) -> Result<Result<Done, KvError>, KvError> {
    let name = table(&job.bucket);
    let mut t = txn
        .open_table(TableDefinition::<&str, &[u8]>::new(&name))
        .map_err(storage)?;
    let bucket = &*job.bucket;
    match &job.op {
        Write::Set(pairs) => {
            let mut new_keys: Vec<&str> = Vec::new();
            for (key, _) in pairs {
                if t.get(key.as_str()).map_err(storage)?.is_none()
                    && !new_keys.contains(&key.as_str())
                {
                    new_keys.push(key);
                }
            }
            if !fits(&t, &job.limits, new_keys.len())? {
                return Ok(Err(job.limits.full(bucket)));
            }
            for (key, value) in pairs {
                t.insert(key.as_str(), value.as_slice()).map_err(storage)?;
            }
            Ok(Ok(Done::Nothing))
        }
        Write::Delete(keys) => {
            for key in keys {
                t.remove(key.as_str()).map_err(storage)?;
            }
            Ok(Ok(Done::Nothing))
        }
        Write::Increment(key, delta) => {
            let current = match t.get(key.as_str()).map_err(storage)? {
                Some(v) => match parse_counter(v.value()) {
                    Some(n) => Some(n),
                    None => {
                        return Ok(Err(KvError::Backend(format!(
                            "bucket {bucket:?}: the value of {key:?} is not a decimal integer"
                        ))))
                    }
                },
                None => None,
            };
            if current.is_none() && !fits(&t, &job.limits, 1)? {
                return Ok(Err(job.limits.full(bucket)));
            }
            let Some(new) = current.unwrap_or(0).checked_add(*delta) else {
                return Ok(Err(KvError::Backend(format!(
                    "bucket {bucket:?}: incrementing {key:?} by {delta} overflows"
                ))));
            };
            t.insert(key.as_str(), new.to_string().as_bytes())
                .map_err(storage)?;
            Ok(Ok(Done::Value(new)))
        }
        Write::Stop => Ok(Ok(Done::Nothing)),
    }
}

/// Whether `new` more keys fit in the bucket.
fn fits(t: &redb::Table<&str, &[u8]>, limits: &BucketLimits, new: usize) -> Result<bool, KvError> {
    let len = t.len().map_err(storage)?;
    Ok(len.saturating_add(u64::try_from(new).unwrap_or(u64::MAX)) <= limits.max_keys)
}

/// A counter is stored as decimal text, as Redis's INCRBY and wasmtime's own store keep it.
pub fn parse_counter(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fjord-kv-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("state.redb")
    }

    #[tokio::test]
    async fn writes_are_answered_after_their_commit_and_groups_share_one() {
        let path = temp("group");
        let store = Arc::new(Embedded::open(&path).unwrap());
        let bucket: Arc<str> = Arc::from("b");
        let limits = BucketLimits::default();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (store, bucket) = (store.clone(), bucket.clone());
                tokio::spawn(async move {
                    for _ in 0..10 {
                        store
                            .increment(&bucket, limits, "n".into(), 1)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.get("b", "n").unwrap().as_deref(), Some(&b"640"[..]));
        let (writes, commits) = (
            store.stats().writes.load(Ordering::Relaxed),
            store.stats().commits.load(Ordering::Relaxed),
        );
        assert_eq!(writes, 640);
        assert!(commits < writes, "{commits} commits for {writes} writes");
        store.close();
        drop(store);
        let reopened = Embedded::open(&path).unwrap();
        assert_eq!(
            reopened.get("b", "n").unwrap().as_deref(),
            Some(&b"640"[..])
        );
    }

    #[tokio::test]
    async fn limits_refuse_only_the_write_that_passes_them() {
        let store = Embedded::open(&temp("limits")).unwrap();
        let bucket: Arc<str> = Arc::from("b");
        let limits = BucketLimits {
            max_keys: 2,
            ..BucketLimits::default()
        };
        store
            .set_many(
                &bucket,
                limits,
                vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())],
            )
            .await
            .unwrap();
        let full = store
            .set_many(
                &bucket,
                limits,
                vec![("a".into(), b"3".to_vec()), ("c".into(), b"4".to_vec())],
            )
            .await
            .unwrap_err();
        assert!(full.to_string().contains("max_keys"), "{full}");
        assert_eq!(
            store.get("b", "a").unwrap().as_deref(),
            Some(&b"1"[..]),
            "nothing changed"
        );
        store
            .set_many(&bucket, limits, vec![("a".into(), b"5".to_vec())])
            .await
            .unwrap();
        assert!(store
            .increment(&bucket, limits, "c".into(), 1)
            .await
            .is_err());
        assert_eq!(
            store
                .increment(&bucket, limits, "a".into(), 1)
                .await
                .unwrap(),
            6
        );
        store
            .set_many(&bucket, limits, vec![("b".into(), b"x".to_vec())])
            .await
            .unwrap();
        assert!(store
            .increment(&bucket, limits, "b".into(), 1)
            .await
            .is_err());
        store
            .delete_many(&bucket, limits, vec!["a".into(), "zz".into()])
            .await
            .unwrap();
        assert!(!store.exists("b", "a").unwrap());
        assert_eq!(
            store.list_keys("b", None).unwrap(),
            (vec!["b".to_string()], None)
        );
        assert_eq!(store.list_keys("never", None).unwrap(), (vec![], None));
        assert_eq!(store.get("never", "a").unwrap(), None);
    }

    #[tokio::test]
    async fn keys_come_in_pages() {
        let store = Embedded::open(&temp("pages")).unwrap();
        let bucket: Arc<str> = Arc::from("b");
        let pairs = (0..LIST_PAGE + 5)
            .map(|i| (format!("k{i:05}"), vec![]))
            .collect();
        store
            .set_many(&bucket, BucketLimits::default(), pairs)
            .await
            .unwrap();
        let (first, cursor) = store.list_keys("b", None).unwrap();
        assert_eq!(first.len(), LIST_PAGE);
        let (rest, end) = store.list_keys("b", cursor).unwrap();
        assert_eq!((rest.len(), end), (5, None));
        assert_eq!(
            store.list_keys("b", Some(u64::MAX)).unwrap(),
            (vec![], None)
        );
        let many = store
            .get_many("b", vec!["k00000".into(), "nope".into()], 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(many, vec![Some(("k00000".to_string(), vec![])), None]);
        assert_eq!(store.get_many("b", vec!["k00000".into()], 2).unwrap(), None);
    }

    #[test]
    fn a_second_opener_is_told_what_to_do() {
        let path = temp("twice");
        let _first = Embedded::open(&path).unwrap();
        let second = Embedded::open(&path).err().unwrap().to_string();
        assert!(
            second.contains("`path`") && second.contains("Redis"),
            "{second}"
        );
        assert_eq!(second.lines().count(), 1);
    }
}
