use super::{HashAlgorithm, Hashing};
use std::sync::Arc;
use tower_layer::Layer;

/// Applies [`Hashing`]: SHA-256 by default.
#[derive(Clone, Debug)]
pub struct HashLayer {
    algorithms: Arc<[HashAlgorithm]>,
}

impl Default for HashLayer {
    fn default() -> Self {
        Self::new([HashAlgorithm::Sha256])
    }
}

impl HashLayer {
    /// Computes these algorithms for every body (client digests add their own algorithm).
    pub fn new(algorithms: impl IntoIterator<Item = HashAlgorithm>) -> Self {
        Self { algorithms: algorithms.into_iter().collect() }
    }
}

impl<S> Layer<S> for HashLayer {
    type Service = Hashing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Hashing::new(inner, self.algorithms.clone())
    }
}
