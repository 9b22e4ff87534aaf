use super::{Change, FileRecord, StateError, StateStore, UploadRecord};
use crate::id::UploadId;
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::{
    panic::AssertUnwindSafe,
    path::Path,
    sync::{Arc, Mutex},
};

/// Records by id, as JSON.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// Expiry index: (expires_at, id) → ().
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("uploads_by_expiry");
/// The catalog of files by id, as JSON.
const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files");

/// Upload records and the file catalog in an embedded [redb](https://www.redb.org) database file: crash-safe, pure
/// Rust, one process at a time (the file is locked while open). The default state store of
/// [`uploads_router`](crate::uploads_router).
///
/// Every change is an atomic transaction. Creating, completing and removing an upload, and any
/// change to what it is (its length, metadata, chunks received), are durable when the call
/// returns. Progress within an upload (its hash checkpoint and refreshed expiry, written when
/// the expiry moves or the checkpoint falls 64 MiB behind) is committed without a flush of its
/// own and made durable by the next durable commit: a crash may lose it, which costs a resumed
/// upload some reading back, never a byte.
///
/// Writes that arrive while a commit is in progress (creations, completions, catalogue rows,
/// removals from concurrent requests) are committed together in the next transaction, with one
/// flush for all of them (group commit): each call still returns only once its own change is
/// durable, but many small uploads at once share the flushes instead of queueing for one each.
#[derive(Clone)]
pub struct RedbState {
    db: Arc<Database>,
    queue: Arc<Mutex<Queue>>,
}

/// A write waiting for the next grouped commit: it runs in that transaction and returns how to
/// answer its caller once the commit is done. An `Err` is a failure of the store (the whole
/// transaction is abandoned); a refusal of the write itself (the record exists) is an `Ok`
/// answer that wrote nothing.
type Job = Box<dyn FnOnce(&redb::WriteTransaction) -> Result<Reply, StateError> + Send>;
/// Answers a job's caller, given the commit's failure if it failed.
type Reply = Box<dyn FnOnce(Option<&str>) + Send>;

/// Writes waiting for a commit, and whether a committer is at work.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    committing: bool,
}

/// The most writes one transaction takes (each answer waits for its whole transaction).
const MAX_GROUP: usize = 256;

impl std::fmt::Debug for RedbState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbState").finish_non_exhaustive()
    }
}

impl RedbState {
    /// Opens (or creates) the database at `path`, creating its directory if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(StateError::backend)?;
        }
        let db = Database::create(path).map_err(StateError::backend)?;
        let txn = db.begin_write().map_err(StateError::backend)?;
        txn.open_table(RECORDS).map_err(StateError::backend)?;
        txn.open_table(EXPIRY).map_err(StateError::backend)?;
        txn.open_table(FILES).map_err(StateError::backend)?;
        txn.commit().map_err(StateError::backend)?;
        Ok(Self { db: Arc::new(db), queue: Arc::default() })
    }

    /// Runs `write` in a write transaction shared with the other writes queued meanwhile, and
    /// returns its answer once that transaction is durably committed. A write whose answer is an
    /// `Err` must have written nothing.
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&redb::WriteTransaction) -> Result<Result<T, StateError>, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |txn| {
            let answer = write(txn)?;
            Ok(Box::new(move |failed: Option<&str>| {
                let _ = tx.send(match failed {
                    Some(e) => Err(StateError::backend(format!("the commit failed: {e}"))),
                    None => answer,
                });
            }))
        });
        let lead = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.jobs.push(job);
            !std::mem::replace(&mut queue.committing, true)
        };
        if lead {
            let (db, queue) = (self.db.clone(), self.queue.clone());
            tokio::task::spawn_blocking(move || commit_queued(db, &queue));
        }
        // A job dropped unanswered was in a transaction that a failed write abandoned.
        rx.await.map_err(|_| StateError::backend("the transaction this write was in failed"))?
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(StateError::backend)?
    }
}

/// Commits the queue, a group at a time, until it is empty. The database is let go before the
/// last answers are sent, so that a caller who drops the store on its answer can open the file
/// again at once.
fn commit_queued(db: Arc<Database>, queue: &Mutex<Queue>) {
    let take = || {
        let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.jobs.is_empty() {
            queue.committing = false;
            return None;
        }
        let n = queue.jobs.len().min(MAX_GROUP);
        Some(queue.jobs.drain(..n).collect::<Vec<_>>())
    };
    let mut db = Some(db);
    let mut next = take();
    while let Some(group) = next {
        let mut replies = Vec::with_capacity(group.len());
        // A panic in a write must not leave the queue without a committer: it fails its group.
        let database = db.as_deref().expect("held until the queue is empty");
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| commit_group(database, group, &mut replies)))
            .unwrap_or_else(|_| Err(StateError::backend("a write panicked")));
        let failed = outcome.err().map(|e| {
            tracing::error!(error = %e, writes = replies.len(), "a grouped state commit failed");
            e.to_string()
        });
        next = take();
        if next.is_none() {
            db = None;
        }
        for reply in replies {
            reply(failed.as_deref());
        }
    }
}

fn commit_group(db: &Database, group: Vec<Job>, replies: &mut Vec<Reply>) -> Result<(), StateError> {
    let txn = db.begin_write().map_err(StateError::backend)?;
    for job in group {
        replies.push(job(&txn)?);
    }
    txn.commit().map_err(StateError::backend)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(StateError::backend)
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(StateError::backend)
}

fn put_file(txn: &redb::WriteTransaction, file: &FileRecord) -> Result<(), StateError> {
    let mut files = txn.open_table(FILES).map_err(StateError::backend)?;
    files.insert(file.id.as_str(), encode(file)?.as_slice()).map_err(StateError::backend)?;
    Ok(())
}

/// Whether a change must survive a crash on its own. Progress within an upload (the hash
/// checkpoint, a refreshed expiry) need not: the bytes in the store are the truth for the offset,
/// and a hash checkpoint that is lost is caught up by reading back the bytes after the one
/// before it. Everything else (a declared length, chunks received, completion) must.
fn must_be_durable(old: &UploadRecord, new: &UploadRecord) -> bool {
    let mut progress_only = old.clone();
    progress_only.hash = new.hash.clone();
    progress_only.expires_at = new.expires_at;
    progress_only != *new
}

/// Commits `old` changed into `new`: durably when the change is one a crash must not lose (see
/// [`must_be_durable`]), else without a flush of its own.
fn commit_change(mut txn: redb::WriteTransaction, old: &UploadRecord, new: &UploadRecord) -> Result<(), StateError> {
    if !must_be_durable(old, new) {
        txn.set_durability(redb::Durability::None).map_err(StateError::backend)?;
    }
    put(&txn, new, Some(old))?;
    txn.commit().map_err(StateError::backend)
}

/// Writes `record` and keeps the expiry index in step with the record it replaces.
fn put(txn: &redb::WriteTransaction, record: &UploadRecord, old: Option<&UploadRecord>) -> Result<(), StateError> {
    let mut records = txn.open_table(RECORDS).map_err(StateError::backend)?;
    let before = old.and_then(|o| o.expires_at);
    // Most writes (a request's progress) leave the expiry, and so the index, as it was.
    if before != record.expires_at || old.is_none() {
        let mut expiry = txn.open_table(EXPIRY).map_err(StateError::backend)?;
        if let Some(at) = before {
            expiry.remove((at, record.id.as_str())).map_err(StateError::backend)?;
        }
        if let Some(at) = record.expires_at {
            expiry.insert((at, record.id.as_str()), ()).map_err(StateError::backend)?;
        }
    }
    records.insert(record.id.as_str(), encode(record)?.as_slice()).map_err(StateError::backend)?;
    Ok(())
}

fn get_in(txn: &redb::WriteTransaction, id: &UploadId) -> Result<Option<UploadRecord>, StateError> {
    let records = txn.open_table(RECORDS).map_err(StateError::backend)?;
    let value = records.get(id.as_str()).map_err(StateError::backend)?;
    value.map(|v| decode(v.value())).transpose()
}

#[async_trait]
impl StateStore for RedbState {
    async fn insert(&self, record: &UploadRecord) -> Result<(), StateError> {
        let record = record.clone();
        self.write(move |txn| {
            if get_in(txn, &record.id)?.is_some() {
                return Ok(Err(StateError::AlreadyExists(record.id)));
            }
            put(txn, &record, None).map(Ok)
        })
        .await
    }

    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, StateError> {
        // A point read of a small record, almost always from redb's page cache: cheaper than a
        // hop to the blocking pool, which every request to an upload would otherwise pay.
        let txn = self.db.begin_read().map_err(StateError::backend)?;
        let records = txn.open_table(RECORDS).map_err(StateError::backend)?;
        let value = records.get(id.as_str()).map_err(StateError::backend)?;
        value.map(|v| decode(v.value())).transpose()
    }

    async fn update(&self, id: &UploadId, change: Change<'_>) -> Result<Option<UploadRecord>, StateError> {
        // On a multi-threaded runtime the whole read-change-write runs in one write transaction
        // on this thread, handed over to blocking duty: beginning it waits for any other writer
        // (whose commit may be flushing), and a durable commit flushes.
        let multi_thread =
            tokio::runtime::Handle::try_current().is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            return tokio::task::block_in_place(|| {
                let txn = self.db.begin_write().map_err(StateError::backend)?;
                let Some(old) = get_in(&txn, id)? else { return Ok(None) };
                let mut new = old.clone();
                if !change(&mut new) {
                    return Ok(Some(old));
                }
                commit_change(txn, &old, &new)?;
                Ok(Some(new))
            });
        }
        // Elsewhere the change, which borrows from the caller, so it cannot run on the blocking
        // pool: read, change, then write only if the record is still the one read (else run the
        // change again on the newer one). redb serialises write transactions, which makes the
        // check-and-write atomic.
        let mut current = self.get(id).await?;
        loop {
            let Some(old) = current else { return Ok(None) };
            let mut new = old.clone();
            if !change(&mut new) {
                return Ok(Some(old));
            }
            let id = id.clone();
            let outcome = self
                .blocking(move |db| {
                    let txn = db.begin_write().map_err(StateError::backend)?;
                    let stored = get_in(&txn, &id)?;
                    if stored.as_ref() != Some(&old) {
                        return Ok(Err(stored));
                    }
                    commit_change(txn, &old, &new)?;
                    Ok(Ok(new))
                })
                .await?;
            match outcome {
                Ok(new) => return Ok(Some(new)),
                Err(newer) => current = newer,
            }
        }
    }

    async fn remove(&self, id: &UploadId) -> Result<Option<UploadRecord>, StateError> {
        let id = id.clone();
        self.write(move |txn| {
            let old = get_in(txn, &id)?;
            if let Some(old) = &old {
                txn.open_table(RECORDS).map_err(StateError::backend)?.remove(id.as_str()).map_err(StateError::backend)?;
                if let Some(at) = old.expires_at {
                    let mut expiry = txn.open_table(EXPIRY).map_err(StateError::backend)?;
                    expiry.remove((at, id.as_str())).map_err(StateError::backend)?;
                }
            }
            Ok(Ok(old))
        })
        .await
    }

    async fn expired(&self, now: u64, limit: usize) -> Result<Vec<UploadRecord>, StateError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(StateError::backend)?;
            let expiry = txn.open_table(EXPIRY).map_err(StateError::backend)?;
            let records = txn.open_table(RECORDS).map_err(StateError::backend)?;
            let mut out = Vec::new();
            for entry in expiry.range((0u64, "")..=(now, "\u{10ffff}")).map_err(StateError::backend)? {
                if out.len() >= limit {
                    break;
                }
                let (key, _) = entry.map_err(StateError::backend)?;
                let (_, id) = key.value();
                if let Some(v) = records.get(id).map_err(StateError::backend)? {
                    out.push(decode(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn insert_file(&self, file: &FileRecord) -> Result<(), StateError> {
        let file = file.clone();
        self.write(move |txn| {
            {
                let files = txn.open_table(FILES).map_err(StateError::backend)?;
                if files.get(file.id.as_str()).map_err(StateError::backend)?.is_some() {
                    return Ok(Err(StateError::AlreadyExists(file.id)));
                }
            }
            put_file(txn, &file).map(Ok)
        })
        .await
    }

    async fn get_file(&self, id: &UploadId) -> Result<Option<FileRecord>, StateError> {
        // A point read, like `get`: inline.
        let txn = self.db.begin_read().map_err(StateError::backend)?;
        let files = txn.open_table(FILES).map_err(StateError::backend)?;
        let value = files.get(id.as_str()).map_err(StateError::backend)?;
        value.map(|v| decode(v.value())).transpose()
    }

    async fn remove_file(&self, id: &UploadId) -> Result<Option<FileRecord>, StateError> {
        let id = id.clone();
        self.write(move |txn| {
            let mut files = txn.open_table(FILES).map_err(StateError::backend)?;
            let old = files.remove(id.as_str()).map_err(StateError::backend)?;
            old.map(|v| decode(v.value())).transpose().map(Ok)
        })
        .await
    }

    async fn files(&self, after: Option<&UploadId>, limit: usize) -> Result<Vec<FileRecord>, StateError> {
        let after = after.map(|id| id.as_str().to_owned());
        self.blocking(move |db| {
            use std::ops::Bound::{Excluded, Unbounded};
            let txn = db.begin_read().map_err(StateError::backend)?;
            let files = txn.open_table(FILES).map_err(StateError::backend)?;
            let start = after.as_deref().map_or(Unbounded, Excluded);
            let mut out = Vec::new();
            for entry in files.range::<&str>((start, Unbounded)).map_err(StateError::backend)?.take(limit) {
                let (_, value) = entry.map_err(StateError::backend)?;
                out.push(decode(value.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn finish(&self, upload: &UploadId, file: &FileRecord) -> Result<Option<UploadRecord>, StateError> {
        let (upload, file) = (upload.clone(), file.clone());
        self.write(move |txn| {
            let Some(old) = get_in(txn, &upload)? else { return Ok(Ok(None)) };
            let mut new = old.clone();
            new.mark_finished();
            put(txn, &new, Some(&old))?;
            put_file(txn, &file)?;
            Ok(Ok(Some(new)))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a single-threaded runtime updates take the optimistic read-then-write path.
    #[tokio::test(flavor = "current_thread")]
    async fn conforms_on_a_single_thread() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::run(&RedbState::open(dir.path().join("uploads.redb")).unwrap()).await;
    }

    fn file(id: &UploadId) -> FileRecord {
        super::super::conformance::file(id.clone())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_each_gets_its_own_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uploads.redb");
        let state = RedbState::open(&path).unwrap();
        let ids: Vec<UploadId> = (0..200).map(|_| UploadId::random()).collect();
        // Each id twice, at once: one insert of each wins, the other is told the row exists,
        // whether or not both fell into one transaction.
        let tries = ids.iter().chain(&ids).map(|id| {
            let state = state.clone();
            let record = file(id);
            tokio::spawn(async move { state.insert_file(&record).await })
        });
        let results = futures_util::future::join_all(tries).await;
        let (won, refused): (Vec<_>, Vec<_>) = results.into_iter().map(Result::unwrap).partition(Result::is_ok);
        assert_eq!(won.len(), ids.len());
        assert!(refused.iter().all(|r| matches!(r, Err(StateError::AlreadyExists(_)))), "{refused:?}");
        drop(state);
        let reopened = RedbState::open(&path).unwrap();
        for id in &ids {
            assert_eq!(reopened.get_file(id).await.unwrap(), Some(file(id)));
        }
    }

    /// The committer lets the database go before it answers the last write: a store dropped on
    /// its answer can be opened again at once (a restart in the same process, a test).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_dropped_after_a_write_opens_again_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uploads.redb");
        for _ in 0..200 {
            let state = RedbState::open(&path).unwrap();
            let id = UploadId::random();
            state.insert_file(&file(&id)).await.unwrap();
            drop(state);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_fails_its_group_and_later_writes_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let state = RedbState::open(dir.path().join("uploads.redb")).unwrap();
        let panicked = state.write::<()>(|_| panic!("a bug in a write")).await;
        assert!(matches!(panicked, Err(StateError::Backend(_))), "{panicked:?}");
        let failed = state.write::<()>(|_| Err(StateError::backend("disk full"))).await;
        assert!(matches!(failed, Err(StateError::Backend(_))), "{failed:?}");
        let id = UploadId::random();
        state.insert_file(&file(&id)).await.unwrap();
        assert_eq!(state.get_file(&id).await.unwrap(), Some(file(&id)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conforms_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("uploads.redb");
        let state = RedbState::open(&path).unwrap();
        super::super::conformance::run(&state).await;
        let record = UploadRecord::new(
            UploadId::random(),
            super::super::Protocol::Tus { metadata: None, concat: Default::default() },
            None,
            Default::default(),
        );
        state.insert(&record).await.unwrap();
        drop(state);
        let reopened = RedbState::open(&path).unwrap();
        assert_eq!(reopened.get(&record.id).await.unwrap(), Some(record));
    }
}
