use super::{ExpectedDigest, HashAlgorithm, Hasher, header};
use crate::{
    body::Tripwire,
    error::{BoxError, Problem},
    storage::Digests,
};
use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::{
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, ready},
};

/// Where the digests of a body appear once it has been read to its end and verified. The hash
/// layer puts one in the request extensions; handlers read it after consuming the body.
#[derive(Clone, Debug, Default)]
pub struct DigestHandle(Arc<OnceLock<Digests>>);

impl DigestHandle {
    /// The digests, once the whole body has passed and matched every client digest.
    pub fn get(&self) -> Option<&Digests> {
        self.0.get()
    }
}

pin_project! {
    /// A body that hashes its data as it streams and, at its end, checks the digests the client
    /// sent. On a mismatch the body fails (`400 digest_mismatch`) instead of ending, so a store
    /// writing it aborts and commits nothing.
    pub struct HashBody<B> {
        #[pin]
        inner: B,
        hashers: Vec<Hasher>,
        expected: Vec<ExpectedDigest>,
        handle: DigestHandle,
        tripwire: Tripwire,
    }
}

impl<B> HashBody<B> {
    /// Hashes `inner` with `algorithms` (plus any algorithm a digest in `expected` needs) and
    /// verifies `expected` at its end.
    pub fn new(inner: B, algorithms: &[HashAlgorithm], expected: Vec<ExpectedDigest>) -> (Self, DigestHandle) {
        Self::with_tripwire(inner, algorithms, expected, Tripwire::default())
    }

    pub(crate) fn with_tripwire(
        inner: B,
        algorithms: &[HashAlgorithm],
        expected: Vec<ExpectedDigest>,
        tripwire: Tripwire,
    ) -> (Self, DigestHandle) {
        let mut all: Vec<HashAlgorithm> = algorithms.to_vec();
        all.extend(expected.iter().map(|e| e.algorithm));
        all.sort();
        all.dedup();
        let handle = DigestHandle::default();
        let hashers = all.into_iter().map(HashAlgorithm::hasher).collect();
        (Self { inner, hashers, expected, handle: handle.clone(), tripwire }, handle)
    }

    fn finish(hashers: &mut Vec<Hasher>, expected: &[ExpectedDigest]) -> Result<Digests, Problem> {
        let mut digests = Digests::default();
        let mut raw = Vec::new();
        for hasher in hashers.drain(..) {
            let alg = hasher.algorithm();
            let value = hasher.finalize();
            digests.insert(alg.name(), &value);
            raw.push((alg, value));
        }
        for want in expected {
            let (_, got) = raw.iter().find(|(alg, _)| *alg == want.algorithm).expect("every expected algorithm is hashed");
            if *got != want.value {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "digest_mismatch",
                    format!("the body does not match the {} digest in {}; nothing was stored", want.algorithm, want.header),
                )
                .with("algorithm", want.algorithm.name())
                .with("expected", header::base64(&want.value))
                .with("actual", header::base64(got)));
            }
        }
        Ok(digests)
    }
}

impl<B> Body for HashBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    for h in this.hashers.iter_mut() {
                        h.update(data);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None if this.handle.get().is_some() || this.hashers.is_empty() && this.expected.is_empty() => Poll::Ready(None),
            None => match Self::finish(this.hashers, this.expected) {
                Ok(digests) => {
                    let _ = this.handle.0.set(digests);
                    Poll::Ready(None)
                }
                Err(problem) => {
                    tracing::info!(detail = problem.detail(), "upload refused: digest mismatch");
                    Poll::Ready(Some(Err(this.tripwire.trip(problem))))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        // The end is where digests are checked: let the reader poll for it.
        false
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
