//! Expiry and reconciliation: a background task that removes abandoned uploads (their bytes in
//! the store, the chunks of chunked uploads, and their records), and whatever storage holds that
//! no record or catalog row names (what a crash between two steps left behind).

use super::{Concat, Locker, Protocol, StateError, StateStore, UploadRecord};
use crate::storage::{ObjectKey, Store, StoreError, now_secs};
use futures_util::TryStreamExt;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::task::JoinHandle;

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Unfinished uploads removed with their bytes.
    pub expired: usize,
    /// Records of finished uploads dropped (the files stay).
    pub forgotten: usize,
    /// Uploads skipped because a request held them.
    pub busy: usize,
    /// Unfinished uploads the store held without a record (a crash between creating and
    /// recording them, or between removing a record and its bytes), removed.
    pub orphans: usize,
    /// Objects that no catalog row or record names (a crash between storing a file and
    /// cataloguing it, or between removing its row and its bytes), removed.
    pub orphaned_objects: usize,
    /// What interrupted writes of the store itself left (temporary files), removed.
    pub temporary: usize,
}

/// Removes expired uploads, and reconciles storage with the records and the catalog.
/// [`Sweeper::spawn`] runs it every minute (by default) until the returned handle is dropped.
///
/// Reconciliation lists the whole store, so it runs at most every
/// [`reconcile_every`](Self::reconcile_every) (default one hour), and touches only what is older
/// than [`orphans_after`](Self::orphans_after) (default 24 h), so that nothing a request is still
/// writing is taken for an orphan.
#[derive(Clone, Debug)]
pub struct Sweeper {
    state: Arc<dyn StateStore>,
    store: Arc<dyn Store>,
    locker: Arc<dyn Locker>,
    every: Duration,
    batch: usize,
    orphans_after: Option<Duration>,
    reconcile_every: Duration,
    last_reconcile: Arc<AtomicU64>,
}

impl Sweeper {
    /// A sweeper over these backends.
    pub fn new(state: Arc<dyn StateStore>, store: Arc<dyn Store>, locker: Arc<dyn Locker>) -> Self {
        Self {
            state,
            store,
            locker,
            every: Duration::from_secs(60),
            batch: 100,
            orphans_after: Some(Duration::from_secs(24 * 3600)),
            reconcile_every: Duration::from_secs(3600),
            last_reconcile: Arc::default(),
        }
    }

    /// How old storage that no record or catalog row names must be before it is removed
    /// (default 24 h; `None`: never).
    pub fn orphans_after(mut self, age: Option<Duration>) -> Self {
        self.orphans_after = age;
        self
    }

    /// How often a sweep also reconciles storage with the records and the catalog (default one
    /// hour; zero: every sweep).
    pub fn reconcile_every(mut self, every: Duration) -> Self {
        self.reconcile_every = every;
        self
    }

    /// How often [`spawn`](Self::spawn) sweeps (default one minute).
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// Sweeps every expired record now, and reconciles storage when that is due.
    pub async fn sweep(&self) -> Result<SweepReport, StateError> {
        let mut report = SweepReport::default();
        let now = now_secs();
        let mut skipped = std::collections::HashSet::new();
        loop {
            let expired = self.state.expired(now, self.batch + skipped.len()).await?;
            let fresh: Vec<_> = expired.into_iter().filter(|r| !skipped.contains(&r.id)).collect();
            if fresh.is_empty() {
                break;
            }
            for record in fresh {
                // A request that is writing keeps its lock; a stalled one lets go.
                let Ok(_lock) = self.locker.lock(&record.id).await else {
                    report.busy += 1;
                    skipped.insert(record.id.clone());
                    continue;
                };
                // It may have been refreshed or removed while we waited.
                match self.state.get(&record.id).await? {
                    Some(current) if current.is_expired(now) => {
                        // The record goes first: its bytes are orphans from then on, which the
                        // next reconciliation removes if this one is cut short.
                        self.state.remove(&current.id).await?;
                        if let Err(e) = discard(self.store.as_ref(), &current, false).await {
                            tracing::warn!(id = %current.id, error = %e, "could not remove an expired upload's bytes");
                        }
                        if current.finished { report.forgotten += 1 } else { report.expired += 1 }
                    }
                    _ => {
                        skipped.insert(record.id.clone());
                    }
                }
            }
        }
        let due = self.last_reconcile.load(Ordering::Relaxed) + self.reconcile_every.as_secs() <= now;
        if let (Some(age), true) = (self.orphans_after, due) {
            self.last_reconcile.store(now, Ordering::Relaxed);
            self.reconcile(now.saturating_sub(age.as_secs()), &mut report).await?;
        }
        Ok(report)
    }

    /// Removes what storage holds that no record or catalog row names, last written at or
    /// before `before` (seconds since the Unix epoch).
    async fn reconcile(&self, before: u64, report: &mut SweepReport) -> Result<(), StateError> {
        let age = now_secs().saturating_sub(before);
        match self.store.clean_up(age).await {
            Ok(n) => report.temporary += n,
            Err(e) => tracing::warn!(error = %e, "could not clean up interrupted writes"),
        }
        if let Some(resumable) = self.store.resumable() {
            let pending: Result<Vec<_>, _> = resumable.list_pending().try_collect().await;
            match pending {
                Ok(pending) => {
                    for upload in pending.into_iter().filter(|p| p.last_modified <= before) {
                        if self.named(&upload.key).await? {
                            continue;
                        }
                        match resumable.abort(&upload.key, &upload.state).await {
                            Ok(()) => report.orphans += 1,
                            Err(e) => tracing::warn!(key = %upload.key, error = %e, "could not remove an orphaned upload"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not list unfinished uploads"),
            }
        }
        let objects: Result<Vec<_>, _> = self.store.list(None).try_collect().await;
        match objects {
            Ok(objects) => {
                for object in objects.into_iter().filter(|o| o.last_modified <= before) {
                    if self.named(&object.key).await? {
                        continue;
                    }
                    match self.store.delete(&object.key).await {
                        Ok(()) => report.orphaned_objects += 1,
                        Err(e) => tracing::warn!(key = %object.key, error = %e, "could not remove an orphaned object"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list stored objects"),
        }
        Ok(())
    }

    /// Whether a record or a catalog row names what storage holds at `key`. Keys the server does
    /// not make are taken as named: they are somebody else's.
    async fn named(&self, key: &ObjectKey) -> Result<bool, StateError> {
        let Some((id, chunk)) = key.owner_id() else { return Ok(true) };
        if self.state.get(&id).await?.is_some() {
            return Ok(true);
        }
        Ok(chunk.is_none() && self.state.get_file(&id).await?.is_some_and(|file| &file.key == key))
    }

    /// Sweeps every [`every`](Self::every) until the handle is dropped.
    pub fn spawn(self) -> SweeperHandle {
        SweeperHandle(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match self.sweep().await {
                    Ok(report) if report != SweepReport::default() => tracing::info!(?report, "swept expired uploads"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweeping expired uploads failed"),
                }
            }
        }))
    }
}

/// Removes what storage holds for an upload whose record is gone: its unfinished bytes, its
/// chunks (or the multipart upload they are parts of), and — when `with_file`, or for the partial uploads of a concatenation, which exist
/// only to be concatenated — its finished file.
pub(crate) async fn discard(store: &dyn Store, record: &UploadRecord, with_file: bool) -> Result<(), StoreError> {
    let key = record.key();
    let delete_file = with_file || matches!(record.protocol, Protocol::Tus { concat: Concat::Partial, .. });
    match &record.protocol {
        Protocol::Chunked { parts: Some(_), .. } if !record.finished => {
            if let Some(multipart) = store.multipart() {
                multipart.abort(&key, &record.storage).await?;
            }
        }
        Protocol::Chunked { parts: Some(_), .. } => {}
        Protocol::Chunked { chunks, .. } => {
            for n in chunks {
                store.delete(&ObjectKey::of_chunk(record.key_prefix.as_ref(), &record.id, *n)).await?;
            }
        }
        _ if !record.finished => {
            if let Some(resumable) = store.resumable() {
                resumable.abort(&key, &record.storage).await?;
            }
        }
        _ => {}
    }
    if record.finished && delete_file {
        store.delete(&key).await?;
    }
    Ok(())
}

/// Stops the sweeper when dropped.
#[derive(Debug)]
pub struct SweeperHandle(JoinHandle<()>);

impl Drop for SweeperHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        UploadId,
        state::{FileRecord, MemoryLocker, MemoryState, Protocol, UploadRecord},
        storage::{InMemory, PutOptions, ResumableStore},
    };
    use bytes::Bytes;
    use futures_util::StreamExt;

    fn bytes(data: &'static [u8]) -> crate::storage::ByteStream<'static> {
        futures_util::stream::iter([Ok(Bytes::from_static(data))]).boxed()
    }

    #[tokio::test]
    async fn expired_uploads_and_orphans_are_removed_and_live_ones_kept() {
        let (store, state) = (InMemory::new(), MemoryState::new());
        let sweeper = Sweeper::new(Arc::new(state.clone()), Arc::new(store.clone()), Arc::new(MemoryLocker::new()))
            .orphans_after(Some(Duration::ZERO))
            .reconcile_every(Duration::ZERO);
        let tus = Protocol::Tus { metadata: None, concat: Default::default() };
        let mut records = Vec::new();
        for expires_at in [Some(0), None] {
            let mut record = UploadRecord::new(UploadId::random(), tus.clone(), None, Default::default());
            store.begin(&record.key()).await.unwrap();
            record.expires_at = expires_at;
            state.insert(&record).await.unwrap();
            records.push(record);
        }
        // A crash between creating an upload and recording it leaves one no record names...
        let orphan = ObjectKey::of(None, &UploadId::random());
        store.begin(&orphan).await.unwrap();
        // ... and one between storing a file and cataloguing it, an object no row names.
        let uncatalogued = ObjectKey::of(None, &UploadId::random());
        store.put(&uncatalogued, bytes(b"lost"), PutOptions::default()).await.unwrap();
        let catalogued = UploadId::random();
        let key = ObjectKey::of(None, &catalogued);
        store.put(&key, bytes(b"kept"), PutOptions::default()).await.unwrap();
        let file = FileRecord {
            id: catalogued,
            key,
            owner: None,
            meta: Default::default(),
            size: 4,
            digests: Default::default(),
            status: Default::default(),
            created_at: 0,
        };
        state.insert_file(&file).await.unwrap();
        let foreign = ObjectKey::new("somebody/else.txt").unwrap();
        store.put(&foreign, bytes(b"theirs"), PutOptions::default()).await.unwrap();
        // Tails (a store's objects for an upload's last bytes, S3's): one of a live upload, and
        // one a crash left behind an upload that no record names any more.
        let live_tail = records[1].key().tail(2).unwrap();
        store.put(&live_tail, bytes(b"tail"), PutOptions::default()).await.unwrap();
        let orphaned_tail = ObjectKey::of(None, &UploadId::random()).tail(1).unwrap();
        store.put(&orphaned_tail, bytes(b"tail"), PutOptions::default()).await.unwrap();

        let report = sweeper.sweep().await.unwrap();
        assert_eq!((report.expired, report.orphans, report.orphaned_objects), (1, 1, 2), "{report:?}");
        assert!(store.head(&live_tail).await.is_ok(), "a live upload's tail stays");
        assert!(store.head(&orphaned_tail).await.is_err(), "an orphaned tail is removed");
        assert!(store.offset(&records[0].key(), &Default::default()).await.is_err());
        assert!(state.get(&records[0].id).await.unwrap().is_none());
        assert!(store.offset(&orphan, &Default::default()).await.is_err(), "the orphaned upload is gone");
        assert!(store.head(&uncatalogued).await.is_err(), "the uncatalogued object is gone");
        assert!(store.offset(&records[1].key(), &Default::default()).await.is_ok(), "an upload with a live record stays");
        assert!(store.head(&file.key).await.is_ok(), "a catalogued file stays");
        assert!(store.head(&foreign).await.is_ok(), "keys the server does not make are left alone");
        // Not old enough: kept.
        let young = ObjectKey::of(None, &UploadId::random());
        store.begin(&young).await.unwrap();
        let patient = Sweeper::new(Arc::new(state), Arc::new(store.clone()), Arc::new(MemoryLocker::new()));
        assert_eq!(patient.sweep().await.unwrap().orphans, 0);
        assert!(store.offset(&young, &Default::default()).await.is_ok());
    }
}
