use super::BodyLimit;
use tower_layer::Layer;

/// Applies [`BodyLimit`] to a service: at most `limit` bytes of request body.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimitLayer {
    limit: u64,
}

impl BodyLimitLayer {
    /// At most `limit` bytes per request body.
    pub const fn new(limit: u64) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit::new(inner, self.limit)
    }
}
