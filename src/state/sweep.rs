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
}

impl Sweeper {
    /// A sweeper over these backends.
    pub fn new(state: Arc<dyn StateStore>, store: Arc<dyn Store>, locker: Arc<dyn Locker>) -> Self {
        Self { state, store, locker, every: Duration::from_secs(60), batch: 100 }
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
