use super::{DefaultOnProgress, OnProgress, ProgressHub, ProgressTracking};
use std::time::Duration;
use tower_layer::Layer;

/// Applies [`ProgressTracking`]. Swap the callback with [`on_progress`](Self::on_progress);
/// publish to SSE subscribers with [`hub`](Self::hub).
#[derive(Clone, Debug)]
pub struct ProgressLayer<C = DefaultOnProgress> {
    hub: Option<ProgressHub>,
    callback: C,
    interval: Duration,
}

impl Default for ProgressLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressLayer {
    /// Reports through `tracing` every 100 ms or 1 %, without a hub.
    pub fn new() -> Self {
        Self { hub: None, callback: DefaultOnProgress, interval: Duration::from_millis(100) }
    }
}

impl<C> ProgressLayer<C> {
    /// Publishes progress of requests that name a progress id to `hub`.
    pub fn hub(mut self, hub: ProgressHub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// Reports at least this often while bytes arrive (default 100 ms; also every 1 % of a
    /// declared total).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Calls `callback` instead of the current one.
    pub fn on_progress<C2: OnProgress>(self, callback: C2) -> ProgressLayer<C2> {
        ProgressLayer { hub: self.hub, callback, interval: self.interval }
    }
}

impl<S, C: OnProgress> Layer<S> for ProgressLayer<C> {
    type Service = ProgressTracking<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ProgressTracking::new(inner, self.hub.clone(), self.callback.clone(), self.interval)
    }
}
