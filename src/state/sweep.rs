//! Expiry: a background task that removes abandoned uploads — their bytes in the store, the
//! chunks of chunked uploads, and their records.

use super::{Concat, Locker, Protocol, StateError, StateStore, UploadRecord};
use crate::storage::{Store, StoreError, now_secs};
use std::{sync::Arc, time::Duration};
use tokio::task::JoinHandle;

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Unfinished uploads removed with their bytes.
    pub expired: usize,
    /// Records of finished uploads dropped (the files stay).
    pub forgotten: usize,
    /// Uploads skipped because a request held them.
    pub busy: usize,
    /// Unfinished uploads the store held without a record (a crash between creating and
    /// recording them), removed once older than [`Sweeper::orphans_after`].
    pub orphans: usize,
}

/// Removes expired uploads. [`Sweeper::spawn`] runs it every minute (by default) until the
/// returned handle is dropped.
#[derive(Clone, Debug)]
pub struct Sweeper {
    state: Arc<dyn StateStore>,
    store: Arc<dyn Store>,
    locker: Arc<dyn Locker>,
    every: Duration,
    batch: usize,
    orphans_after: Option<Duration>,
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
        }
    }

    /// How old an unfinished upload without a record must be before it is removed (default
    /// 24 h; `None`: never). Only stores that can [list](Store::list_unfinished) their unfinished
    /// uploads are searched.
    pub fn orphans_after(mut self, age: Option<Duration>) -> Self {
        self.orphans_after = age;
        self
    }

    /// How often [`spawn`](Self::spawn) sweeps (default one minute).
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// Sweeps every expired record now.
    pub async fn sweep(&self) -> Result<SweepReport, StateError> {
        let mut report = SweepReport::default();
        let now = now_secs();
        let mut skipped = std::collections::HashSet::new();
        loop {
            let expired = self.state.expired(now, self.batch + skipped.len()).await?;
            let fresh: Vec<_> = expired.into_iter().filter(|r| !skipped.contains(&r.id)).collect();
            if fresh.is_empty() {
                report.orphans = self.sweep_orphans(now).await?;
                return Ok(report);
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
                        self.discard(&current).await;
                        self.state.remove(&current.id).await?;
                        if current.finished { report.forgotten += 1 } else { report.expired += 1 }
                    }
                    _ => {
                        skipped.insert(record.id.clone());
                    }
                }
            }
        }
    }

    /// Removes unfinished uploads that have no record and are old enough.
    async fn sweep_orphans(&self, now: u64) -> Result<usize, StateError> {
        let Some(age) = self.orphans_after.filter(|_| self.store.capabilities().list_unfinished) else { return Ok(0) };
        let listed = match self.store.list_unfinished().await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "could not list unfinished uploads");
                return Ok(0);
            }
        };
        let mut removed = 0;
        for info in listed.into_iter().filter(|i| i.created_at + age.as_secs() <= now) {
            if self.state.get(&info.id).await?.is_none() {
                ignore_missing(self.store.abort(&info.id).await, &info.id);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes what an expired record holds in the store. Finished files stay, except the
    /// partial uploads of tus concatenation, which exist only to be concatenated.
    async fn discard(&self, record: &UploadRecord) {
        let id = &record.id;
        let outcome = match &record.protocol {
            Protocol::Chunked { chunks, .. } => {
                for chunk in chunks.values() {
                    ignore_missing(self.store.delete(chunk).await, chunk);
                }
                if record.finished { Ok(()) } else { self.store.abort(id).await }
            }
            Protocol::Tus { concat: Concat::Partial, .. } if record.finished => self.store.delete(id).await,
            _ if record.finished => Ok(()),
            _ => self.store.abort(id).await,
        };
        ignore_missing(outcome, id);
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

fn ignore_missing(outcome: Result<(), StoreError>, id: &crate::UploadId) {
    match outcome {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(e) => tracing::warn!(%id, error = %e, "could not remove an expired upload's bytes"),
    }
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
        state::{MemoryLocker, MemoryState, Protocol, UploadRecord},
        storage::{InMemory, NewUpload},
    };

    #[tokio::test]
    async fn expired_uploads_and_orphans_are_removed_and_live_ones_kept() {
        let (store, state) = (InMemory::new(), MemoryState::new());
        let sweeper = Sweeper::new(Arc::new(state.clone()), Arc::new(store.clone()), Arc::new(MemoryLocker::new()))
            .orphans_after(Some(Duration::ZERO));
        let tus = Protocol::Tus { metadata: None, concat: Default::default() };
        let mut records = Vec::new();
        for expires_at in [Some(0), None] {
            let info = store.create(NewUpload::default()).await.unwrap();
            let mut record = UploadRecord::new(info.id, tus.clone(), None, Default::default());
            record.expires_at = expires_at;
            state.insert(&record).await.unwrap();
            records.push(record);
        }
        // A crash between creating an upload and recording it leaves one the state knows nothing of.
        let orphan = store.create(NewUpload::default()).await.unwrap();
        let report = sweeper.sweep().await.unwrap();
        assert_eq!((report.expired, report.orphans), (1, 1));
        assert!(store.info(&records[0].id).await.is_err() && state.get(&records[0].id).await.unwrap().is_none());
        assert!(store.info(&orphan.id).await.is_err(), "the orphan is gone");
        assert!(store.info(&records[1].id).await.is_ok(), "an upload with a live record stays");
        assert_eq!(store.pending_uploads(), 1);
        // Not old enough: kept.
        let young = store.create(NewUpload::default()).await.unwrap();
        let patient = Sweeper::new(Arc::new(state), Arc::new(store.clone()), Arc::new(MemoryLocker::new()));
        assert_eq!(patient.sweep().await.unwrap().orphans, 0);
        assert!(store.info(&young.id).await.is_ok());
    }
}
