use serde::Serialize;
use std::time::Duration;

/// Where an upload stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressState {
    /// A subscriber is waiting; no byte has arrived yet.
    Waiting,
    /// Bytes are arriving.
    Receiving,
    /// The upload was stored.
    Done,
    /// The upload failed; see [`Progress::code`].
    Failed,
}

/// A snapshot of an upload's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Body bytes received so far.
    pub received: u64,
    /// The declared total, when known.
    pub total: Option<u64>,
    /// The state.
    pub state: ProgressState,
    /// The problem code of a failed upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// Time since the request started.
    #[serde(skip)]
    pub elapsed: Duration,
}

impl Progress {
    pub(crate) fn waiting() -> Self {
        Self { received: 0, total: None, state: ProgressState::Waiting, code: None, elapsed: Duration::ZERO }
    }

    /// Whether the upload has ended, stored or failed.
    pub fn is_final(&self) -> bool {
        matches!(self.state, ProgressState::Done | ProgressState::Failed)
    }

    /// The completed fraction in percent, when the total is known.
    pub fn percent(&self) -> Option<f64> {
        self.total.map(|t| if t == 0 { 100.0 } else { self.received as f64 * 100.0 / t as f64 })
    }
}

/// Called as an upload progresses (throttled by the layer) and once when it ends.
///
/// Implemented for closures `FnMut(Option<&str>, &Progress)`, which get the upload's progress
/// id (if the client named one) and the snapshot.
pub trait OnProgress: Clone + Send + 'static {
    /// Reports progress.
    fn on_progress(&mut self, id: Option<&str>, progress: &Progress);
}

impl<F> OnProgress for F
where
    F: FnMut(Option<&str>, &Progress) + Clone + Send + 'static,
{
    fn on_progress(&mut self, id: Option<&str>, progress: &Progress) {
        self(id, progress)
    }
}

/// The default callback: a `tracing` event at DEBUG (final states at INFO).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultOnProgress;

impl OnProgress for DefaultOnProgress {
    fn on_progress(&mut self, id: Option<&str>, p: &Progress) {
        if p.is_final() {
            tracing::info!(progress_id = id, received = p.received, total = p.total, state = ?p.state, code = p.code, elapsed = ?p.elapsed, "upload ended");
        } else {
            tracing::debug!(progress_id = id, received = p.received, total = p.total, "upload progress");
        }
    }
}
