//! The embedded store: one redb file per host, a table per bucket, and its journal beside it.
//!
//! Writes are durable before they are answered and share syncs: every write goes to one writer
//! thread, which takes all the writes waiting, applies them in one redb transaction committed
//! without durability, and appends what they changed to the write-ahead journal ([`journal`]);
//! the group is answered once an `fdatasync` of the journal covers it. Two syncs run at once, so
//! a write waits for about one sync rather than for the rest of one commit and then its own.
//! Reads run in the calling task on redb's snapshots, see every applied write, and return once
//! what they may have seen is durable.
//!
//! [`journal`]: super::journal

use super::journal::{self, Answer, Effect, Journal, Readers};
use super::limits::{BucketLimits, LIST_PAGE};
use super::{Found, KvError};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
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

/// The store's own table (bucket tables are all `bucket:...`): the journal's generation.
const META: TableDefinition<&str, u64> = TableDefinition::new("fjord:journal");
const GENERATION: &str = "generation";

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

/// Writes and durable redb commits (checkpoints) so far; with the journal's syncs, the fsyncs per
/// write.
#[derive(Debug, Default)]
pub struct Stats {
    pub writes: AtomicU64,
    pub checkpoints: AtomicU64,
}

pub struct Embedded {
    path: PathBuf,
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Readers,
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
        let generation = read_generation(&db)
            .map_err(|e| anyhow::anyhow!("keyvalue: cannot read {}: {e}", path.display()))?;
        let journal_path = journal::path_for(path);
        let (mut journal, replay) = Journal::open(&journal_path, generation)?;
        let replayed = replay.len();
        checkpoint(&db, &mut journal, |txn| replay_effects(txn, &replay)).map_err(|e| {
            anyhow::anyhow!(
                "keyvalue: cannot replay the journal {} into {}: {e}",
                journal_path.display(),
                path.display()
            )
        })?;
        if replayed > 0 {
            tracing::info!(
                "keyvalue: replayed {replayed} writes from the journal {}",
                journal_path.display()
            );
        }
        let db = Arc::new(db);
        let stats = Arc::new(Stats::default());
        let readers = journal.readers();
        let (jobs, queue) = mpsc::channel();
        let writer = {
            let (db, stats) = (db.clone(), stats.clone());
            std::thread::Builder::new()
                .name("fjord-kv-writer".into())
                .spawn(move || write_loop(&db, journal, &queue, &stats))
                .map_err(|e| anyhow::anyhow!("keyvalue: cannot start the writer thread: {e}"))?
        };
        Ok(Embedded {
            path: path.to_path_buf(),
            db,
            jobs,
            writer: Mutex::new(Some(writer)),
            readers,
            stats,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes so far, and the fsyncs they took (the journal's and the checkpoints').
    pub fn writes_and_fsyncs(&self) -> (u64, u64) {
        let writes = self.stats.writes.load(Ordering::Relaxed);
        let checkpoints = self.stats.checkpoints.load(Ordering::Relaxed);
        (writes, checkpoints.saturating_add(self.readers.syncs()))
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
    /// Returns once every write the snapshot may hold is durable.
    async fn read<T>(
        &self,
        bucket: &str,
        empty: T,
        read: impl FnOnce(&redb::ReadOnlyTable<&str, &[u8]>) -> Result<T, redb::StorageError>,
    ) -> Result<T, KvError> {
        let found = self.read_now(bucket, empty, read)?;
        self.readers.settle().await?;
        Ok(found)
    }

    fn read_now<T>(
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

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.read(bucket, None, |t| {
            Ok(t.get(key)?.map(|v| v.value().to_vec()))
        })
        .await
    }

    pub async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        self.read(bucket, false, |t| Ok(t.get(key)?.is_some()))
            .await
    }

    /// Up to `max_bytes` of keys and values; `None` once past it (the caller refuses the call).
    pub async fn get_many(
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
        .await
    }

    /// One page of keys in key order; the cursor is how many keys came before it.
    pub async fn list_keys(
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
        .await
    }
}

fn closed() -> KvError {
    KvError::Backend("the key-value store is closed (the host is stopping)".into())
}

fn storage(e: impl std::fmt::Display) -> KvError {
    KvError::Backend(format!("embedded store: {e}"))
}

/// The journal's generation as redb last committed it durably (0 for a new store).
fn read_generation(db: &Database) -> Result<u64, KvError> {
    let txn = db.begin_read().map_err(storage)?;
    match txn.open_table(META) {
        Ok(t) => Ok(t.get(GENERATION).map_err(storage)?.map_or(0, |g| g.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(storage(e)),
    }
}

/// A durable redb commit of `fill` and the journal's next generation; then every journaled
/// write is in redb itself and the journal starts over.
fn checkpoint(
    db: &Database,
    journal: &mut Journal,
    fill: impl FnOnce(&redb::WriteTransaction) -> Result<(), KvError>,
) -> Result<(), KvError> {
    let txn = db.begin_write().map_err(storage)?;
    fill(&txn)?;
    commit_durably(txn, journal)
}

/// Commits `txn` durably (redb's default) with the journal's next generation.
fn commit_durably(txn: redb::WriteTransaction, journal: &mut Journal) -> Result<(), KvError> {
    let next = journal.generation().saturating_add(1);
    {
        let mut meta = txn.open_table(META).map_err(storage)?;
        meta.insert(GENERATION, next).map_err(storage)?;
    }
    txn.commit().map_err(storage)?;
    journal.checkpointed(next);
    Ok(())
}

/// Applies the journal's effects, in order, to redb (on open, before anything else is written).
fn replay_effects(txn: &redb::WriteTransaction, effects: &[Effect]) -> Result<(), KvError> {
    for e in effects {
        let mut t = txn
            .open_table(TableDefinition::<&str, &[u8]>::new(&e.table))
            .map_err(storage)?;
        match &e.value {
            Some(v) => t.insert(e.key.as_str(), v.as_slice()).map(|_| ()),
            None => t.remove(e.key.as_str()).map(|_| ()),
        }
        .map_err(storage)?;
    }
    Ok(())
}

/// The writer thread: group commit over the journal.
fn write_loop(db: &Database, mut journal: Journal, queue: &mpsc::Receiver<Job>, stats: &Stats) {
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
            commit(db, &mut journal, group, stats);
        }
        if stop.is_some() {
            break;
        }
    }
    // Closing (or every sender gone): leave everything in redb and an empty journal.
    if journal.failed().is_none() {
        match checkpoint(db, &mut journal, |_| Ok(())) {
            Ok(()) => {
                stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!("keyvalue: the closing checkpoint failed: {e}"),
        }
    }
    journal.stop();
}

/// Applies a group of writes in one transaction and has each answered once it is durable. A
/// write refused by a limit changes nothing and is answered with its error; a storage failure
/// fails the whole group (nothing of it is committed).
fn commit(db: &Database, journal: &mut Journal, group: Vec<Job>, stats: &Stats) {
    if let Some(why) = journal.failed() {
        for job in group {
            let _ = job.reply.send(Err(KvError::Backend(why.clone())));
        }
        return;
    }
    let writes = u64::try_from(group.len()).unwrap_or(u64::MAX);
    let mut effects = Vec::new();
    let applied = (|| {
        let txn = db.begin_write().map_err(storage)?;
        let mut outcomes = Vec::with_capacity(group.len());
        for job in &group {
            outcomes.push(apply(&txn, job, &mut effects)?);
        }
        Ok::<_, KvError>((txn, outcomes))
    })();
    let (mut txn, outcomes) = match applied {
        Ok(applied) => applied,
        Err(e) => return fail_group(group, &e),
    };
    let replies: Vec<_> = group.into_iter().map(|j| j.reply).collect();
    let answer: Answer = Box::new(move |failed: Option<KvError>| {
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(match &failed {
                None => outcome,
                Some(e) => Err(e.clone()),
            });
        }
    });
    let record = if effects.is_empty() {
        Some(Vec::new())
    } else {
        journal::encode(journal.generation(), &effects)
    };
    match record {
        // Nothing changed (every write refused): answered in order behind what is pending.
        Some(record) if record.is_empty() => {
            let _ = txn.set_durability(Durability::None);
            match txn.commit() {
                Ok(()) => journal.after_pending(answer),
                Err(e) => answer(Some(storage(e))),
            }
        }
        Some(record) if journal.has_room(&record) => {
            if let Err(e) = txn.set_durability(Durability::None) {
                return answer(Some(storage(e)));
            }
            journal.reveal(record.len());
            match txn.commit() {
                Ok(()) => journal.append(&record, answer),
                Err(e) => {
                    journal.unreveal();
                    answer(Some(storage(e)));
                }
            }
        }
        // The journal is due a checkpoint, or this group would not fit in it: this commit is
        // the durable one.
        _ => match commit_durably(txn, journal) {
            Ok(()) => {
                stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                answer(None);
            }
            Err(e) => answer(Some(e)),
        },
    }
    stats.writes.fetch_add(writes, Ordering::Relaxed);
}

fn fail_group(group: Vec<Job>, e: &KvError) {
    tracing::warn!("keyvalue: a commit of {} writes failed: {e}", group.len());
    for job in group {
        let _ = job.reply.send(Err(e.clone()));
    }
}

/// One write inside the group's transaction. The outer error is a storage failure (the group
/// fails); the inner one is this write's own refusal, checked before anything is changed.
fn apply(
    txn: &redb::WriteTransaction,
    job: &Job,
    effects: &mut Vec<Effect>,
) -> Result<Result<Done, KvError>, KvError> {
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
                effects.push(effect(&name, key, Some(value.clone())));
            }
            Ok(Ok(Done::Nothing))
        }
        Write::Delete(keys) => {
            for key in keys {
                t.remove(key.as_str()).map_err(storage)?;
                effects.push(effect(&name, key, None));
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
            let text = new.to_string().into_bytes();
            t.insert(key.as_str(), text.as_slice()).map_err(storage)?;
            effects.push(effect(&name, key, Some(text)));
            Ok(Ok(Done::Value(new)))
        }
        Write::Stop => Ok(Ok(Done::Nothing)),
    }
}

fn effect(table: &str, key: &str, value: Option<Vec<u8>>) -> Effect {
    Effect {
        table: table.to_string(),
        key: key.to_string(),
        value,
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
        assert_eq!(
            store.get("b", "n").await.unwrap().as_deref(),
            Some(&b"640"[..])
        );
        let (writes, fsyncs) = store.writes_and_fsyncs();
        assert_eq!(writes, 640);
        assert!(fsyncs < writes, "{fsyncs} fsyncs for {writes} writes");
        store.close();
        drop(store);
        let reopened = Embedded::open(&path).unwrap();
        assert_eq!(
            reopened.get("b", "n").await.unwrap().as_deref(),
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
            store.get("b", "a").await.unwrap().as_deref(),
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
        assert!(!store.exists("b", "a").await.unwrap());
        assert_eq!(
            store.list_keys("b", None).await.unwrap(),
            (vec!["b".to_string()], None)
        );
        assert_eq!(
            store.list_keys("never", None).await.unwrap(),
            (vec![], None)
        );
        assert_eq!(store.get("never", "a").await.unwrap(), None);
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
        let (first, cursor) = store.list_keys("b", None).await.unwrap();
        assert_eq!(first.len(), LIST_PAGE);
        let (rest, end) = store.list_keys("b", cursor).await.unwrap();
        assert_eq!((rest.len(), end), (5, None));
        assert_eq!(
            store.list_keys("b", Some(u64::MAX)).await.unwrap(),
            (vec![], None)
        );
        let many = store
            .get_many("b", vec!["k00000".into(), "nope".into()], 1 << 20)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(many, vec![Some(("k00000".to_string(), vec![])), None]);
        assert_eq!(
            store.get_many("b", vec!["k00000".into()], 2).await.unwrap(),
            None
        );
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

    /// What a crash leaves: redb at its last durable commit and the journal's records after it.
    /// Records of the store's generation are replayed in order; one of an older generation (left
    /// over from before the last checkpoint) and anything after it are not.
    #[tokio::test]
    async fn opening_replays_the_journal_of_the_current_generation_only() {
        let path = temp("replay");
        let store = Embedded::open(&path).unwrap();
        let bucket: Arc<str> = Arc::from("b");
        store
            .set_many(
                &bucket,
                BucketLimits::default(),
                vec![("kept".into(), b"1".to_vec())],
            )
            .await
            .unwrap();
        store.close();
        drop(store);
        let generation = {
            let db = Database::create(&path).unwrap();
            read_generation(&db).unwrap()
        };
        let put = |key: &str, value: &str| Effect {
            table: table("b"),
            key: key.into(),
            value: Some(value.as_bytes().to_vec()),
        };
        let journal = [
            journal::encode(generation, &[put("n", "1"), put("kept", "2")]).unwrap(),
            journal::encode(generation, &[put("n", "2")]).unwrap(),
            journal::encode(generation.saturating_sub(1), &[put("stale", "x")]).unwrap(),
            journal::encode(generation, &[put("after-stale", "x")]).unwrap(),
        ]
        .concat();
        std::fs::write(journal::path_for(&path), &journal).unwrap();
        let reopened = Embedded::open(&path).unwrap();
        let get = |key: &'static str| reopened.get("b", key);
        assert_eq!(get("n").await.unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(get("kept").await.unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(get("stale").await.unwrap(), None);
        assert_eq!(get("after-stale").await.unwrap(), None);
        // The replay was checkpointed: the journal's records are not applied a second time
        // over later writes.
        reopened
            .set_many(
                &bucket,
                BucketLimits::default(),
                vec![("n".into(), b"3".to_vec())],
            )
            .await
            .unwrap();
        reopened.close();
        drop(reopened);
        let again = Embedded::open(&path).unwrap();
        assert_eq!(
            again.get("b", "n").await.unwrap().as_deref(),
            Some(&b"3"[..])
        );
        assert!(
            std::fs::metadata(journal::path_for(&path)).unwrap().len() >= journal::CAPACITY,
            "the journal is allocated in full"
        );
    }

    /// More groups than a checkpoint interval, and a value too large for the journal: both go
    /// through durable redb commits and nothing is lost or reordered.
    #[tokio::test]
    async fn checkpoints_and_oversized_groups_keep_every_write() {
        let path = temp("checkpoints");
        let store = Embedded::open(&path).unwrap();
        let bucket: Arc<str> = Arc::from("b");
        let limits = BucketLimits {
            max_value_bytes: usize::MAX,
            ..BucketLimits::default()
        };
        let groups = journal::CHECKPOINT_GROUPS * 2 + 3;
        for i in 1..=groups {
            let n = store
                .increment(&bucket, limits, "n".into(), 1)
                .await
                .unwrap();
            assert_eq!(n, u64::from(i));
        }
        let big = vec![7u8; usize::try_from(journal::CAPACITY).unwrap()];
        store
            .set_many(&bucket, limits, vec![("big".into(), big.clone())])
            .await
            .unwrap();
        assert_eq!(store.get("b", "big").await.unwrap(), Some(big));
        let (_, fsyncs) = store.writes_and_fsyncs();
        assert!(
            fsyncs >= 3,
            "{fsyncs} fsyncs: two checkpoints and the large value"
        );
        store.close();
        drop(store);
        let reopened = Embedded::open(&path).unwrap();
        assert_eq!(
            reopened.get("b", "n").await.unwrap().as_deref(),
            Some(groups.to_string().as_bytes())
        );
    }
}
