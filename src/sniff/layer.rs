use super::{ContentPolicy, Sniff};
use std::sync::Arc;
use tower_layer::Layer;

/// Applies [`Sniff`] with a [`ContentPolicy`].
#[derive(Clone, Debug, Default)]
pub struct SniffLayer {
    policy: Arc<ContentPolicy>,
}

impl SniffLayer {
    /// Sniffs with `policy`.
    pub fn new(policy: ContentPolicy) -> Self {
        Self { policy: Arc::new(policy) }
    }
}

impl<S> Layer<S> for SniffLayer {
    type Service = Sniff<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Sniff::new(inner, self.policy.clone())
    }
}
