use super::{OnProgress, Progress, ProgressHub, ProgressId, ProgressState};
use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::watch;

/// The progress of one request body, shared by its [`ProgressBody`](super::ProgressBody) and
/// the response future that reports how it ended.
#[derive(Debug)]
pub(crate) struct Tracker<C> {
    id: Option<ProgressId>,
    total: Option<u64>,
    started: Instant,
    received: AtomicU64,
    hub: Option<(ProgressHub, watch::Sender<Progress>)>,
    emitter: Mutex<Emitter<C>>,
    pub(crate) span: tracing::Span,
}

#[derive(Debug)]
struct Emitter<C> {
    callback: C,
    interval: Duration,
    last_at: Instant,
    last_bytes: u64,
    ended: bool,
}

impl<C: OnProgress> Tracker<C> {
    pub(crate) fn new(
        id: Option<ProgressId>,
        total: Option<u64>,
        hub: Option<(ProgressHub, watch::Sender<Progress>)>,
        callback: C,
        interval: Duration,
    ) -> Self {
        let now = Instant::now();
        let span = tracing::info_span!("upload", progress_id = id.as_ref().map(ProgressId::as_str), total);
        let tracker = Self {
            id,
            total,
            started: now,
            received: AtomicU64::new(0),
            hub,
            emitter: Mutex::new(Emitter { callback, interval, last_at: now, last_bytes: 0, ended: false }),
            span,
        };
        tracker.emit(&mut tracker.emitter.lock().expect("emitter lock poisoned"), ProgressState::Receiving, None);
        tracker
    }

    /// Counts bytes that passed; reports when 1 % of the total or the interval has passed since
    /// the last report.
    pub(crate) fn add(&self, n: u64) {
        let received = self.received.fetch_add(n, Ordering::Relaxed) + n;
        let mut e = self.emitter.lock().expect("emitter lock poisoned");
        let step = self.total.map_or(u64::MAX, |t| (t / 100).max(1));
        if received - e.last_bytes >= step || e.last_at.elapsed() >= e.interval {
            self.emit(&mut e, ProgressState::Receiving, None);
        }
    }

    /// Reports the end of the upload, once.
    pub(crate) fn finish(&self, state: ProgressState, code: Option<&'static str>) {
        let mut e = self.emitter.lock().expect("emitter lock poisoned");
        if !e.ended {
            e.ended = true;
            self.emit(&mut e, state, code);
            if let (Some((hub, _)), Some(id)) = (&self.hub, &self.id) {
                hub.touch(id);
            }
        }
    }

    fn emit(&self, e: &mut Emitter<C>, state: ProgressState, code: Option<&'static str>) {
        let received = self.received.load(Ordering::Relaxed);
        let total = match state {
            ProgressState::Done => Some(self.total.unwrap_or(received)),
            _ => self.total,
        };
        let progress = Progress { received, total, state, code, elapsed: self.started.elapsed() };
        e.last_at = Instant::now();
        e.last_bytes = received;
        let _entered = self.span.enter();
        e.callback.on_progress(self.id.as_ref().map(ProgressId::as_str), &progress);
        if let Some((_, tx)) = &self.hub {
            tx.send_replace(progress);
        }
    }
}
