//! Publishing a resumable upload's absolute offset to the progress hub.

use crate::{
    progress::{Progress, ProgressHub, ProgressId, ProgressState},
    state::UploadRecord,
};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Publishes an upload's absolute offset to the progress hub, throttled, under the upload's id;
/// each request that appends takes the entry over from the one before.
pub(crate) struct ProgressReporter {
    hub: ProgressHub,
    id: ProgressId,
    tx: watch::Sender<Progress>,
    total: Option<u64>,
    started: Instant,
    last: Instant,
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        self.hub.release(&self.id);
    }
}

impl ProgressReporter {
    /// Takes the upload's entry over (`None` when the hub is full) and reports `offset`.
    pub(super) fn start(hub: &ProgressHub, record: &UploadRecord, offset: u64) -> Option<Self> {
        let id = ProgressId::parse(record.id.as_str()).ok()?;
        let tx = hub.take_over(&id)?;
        hub.set_owner(&id, record.owner.clone());
        let reporter = Self { hub: hub.clone(), id, tx, total: record.length, started: Instant::now(), last: Instant::now() };
        reporter.send(offset, ProgressState::Receiving, None);
        Some(reporter)
    }

    /// Reports `offset` if the last report is 100 ms old.
    pub(super) fn tick(&mut self, offset: u64) {
        if self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            self.send(offset, ProgressState::Receiving, None);
        }
    }

    pub(crate) fn send(&self, offset: u64, state: ProgressState, code: Option<&'static str>) {
        let total = if state == ProgressState::Done { Some(offset) } else { self.total };
        self.tx.send_replace(Progress { received: offset, total, state, code, elapsed: self.started.elapsed() });
    }
}
