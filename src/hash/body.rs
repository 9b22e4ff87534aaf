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
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, ready},
};
use tokio::sync::{
    mpsc::{self, OwnedPermit, error::SendError},
    oneshot,
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

/// Past this many bytes, hashing moves to a thread of its own so that it runs beside receiving
/// and writing instead of between them (one large upload then uses two cores). Smaller bodies are
/// hashed inline: a thread hop costs more than hashing them, and many concurrent uploads already
/// keep every core busy.
pub(crate) const OFFLOAD_AFTER: u64 = if cfg!(test) { 64 * 1024 } else { 32 << 20 };

/// Chunks queued for the hashing thread (bounded: a slow hasher slows the body).
const OFFLOAD_QUEUE: usize = 2;

type Permit = Pin<Box<dyn std::future::Future<Output = Result<OwnedPermit<Bytes>, SendError<()>>> + Send>>;

/// Where the hashing happens.
enum Hashing {
    Inline(Vec<Hasher>),
    Offloaded { tx: Option<mpsc::Sender<Bytes>>, reserving: Option<Permit>, done: oneshot::Receiver<Vec<Hasher>> },
    Finished,
}

/// Starts a thread that feeds `hashers` the chunks sent to it (a bounded queue: a slow hasher
/// slows the sender) and hands them back once the sender is dropped.
pub(crate) fn hashing_thread(hashers: Vec<Hasher>) -> (mpsc::Sender<Bytes>, oneshot::Receiver<Vec<Hasher>>) {
    hashing_thread_from(move || Some(hashers))
}

/// [`hashing_thread`] with hashers that `start` gives on that thread (it may wait for them). When
/// it gives none, the chunks are still taken (the sender never fails) and no hashers come back.
pub(crate) fn hashing_thread_from(
    start: impl FnOnce() -> Option<Vec<Hasher>> + Send + 'static,
) -> (mpsc::Sender<Bytes>, oneshot::Receiver<Vec<Hasher>>) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(OFFLOAD_QUEUE);
    let (done_tx, done) = oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let mut hashers = start();
        while let Some(chunk) = rx.blocking_recv() {
            if let Some(hashers) = &mut hashers {
                hashers.iter_mut().for_each(|h| h.update(&chunk));
            }
        }
        if let Some(hashers) = hashers {
            let _ = done_tx.send(hashers);
        }
    });
    (tx, done)
}

impl Hashing {
    fn offload(hashers: Vec<Hasher>) -> Self {
        let (tx, done) = hashing_thread(hashers);
        Hashing::Offloaded { tx: Some(tx), reserving: None, done }
    }
}

pin_project! {
    /// A body that hashes its data as it streams and, at its end, checks the digests the client
    /// sent. On a mismatch the body fails (`400 digest_mismatch`) instead of ending, so a store
    /// writing it aborts and commits nothing.
    pub struct HashBody<B> {
        #[pin]
        inner: B,
        hashing: Hashing,
        hashed: u64,
        pending: Option<Frame<Bytes>>,
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
        let body = Self {
            inner,
            hashing: Hashing::Inline(hashers),
            hashed: 0,
            pending: None,
            expected,
            handle: handle.clone(),
            tripwire,
        };
        (body, handle)
    }

    fn finish(hashers: Vec<Hasher>, expected: &[ExpectedDigest]) -> Result<Digests, Problem> {
        let mut digests = Digests::default();
        let mut raw = Vec::new();
        for hasher in hashers {
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

impl<B> HashBody<B> {
    /// Checks the digests at the end of the body: `None` (the end) or the mismatch.
    fn conclude(
        hashers: Vec<Hasher>,
        expected: &[ExpectedDigest],
        handle: &DigestHandle,
        tripwire: &Tripwire,
    ) -> Option<Result<Frame<Bytes>, BoxError>> {
        if hashers.is_empty() && expected.is_empty() {
            return None;
        }
        match Self::finish(hashers, expected) {
            Ok(digests) => {
                let _ = handle.0.set(digests);
                None
            }
            Err(problem) => {
                tracing::info!(detail = problem.detail(), "upload refused: digest mismatch");
                Some(Err(tripwire.trip(problem)))
            }
        }
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
        let mut this = self.project();
        loop {
            // A frame waiting for room in the hashing thread's queue.
            if let Some(frame) = this.pending.take() {
                if let Hashing::Offloaded { tx, reserving, .. } = this.hashing {
                    let data = frame.data_ref().cloned().unwrap_or_default();
                    let permit =
                        reserving.get_or_insert_with(|| Box::pin(tx.clone().expect("open while data flows").reserve_owned()));
                    match permit.as_mut().poll(cx) {
                        Poll::Pending => {
                            *this.pending = Some(frame);
                            return Poll::Pending;
                        }
                        Poll::Ready(Ok(permit)) => {
                            permit.send(data);
                        }
                        // The hashing thread is gone: only a panic there does that.
                        Poll::Ready(Err(_)) => return Poll::Ready(Some(Err("the hashing thread stopped".into()))),
                    }
                    *reserving = None;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            match &mut this.hashing {
                Hashing::Finished => return Poll::Ready(None),
                Hashing::Offloaded { tx, done, .. } if tx.is_none() => {
                    let hashers = ready!(Pin::new(done).poll(cx)).map_err(|_| BoxError::from("the hashing thread stopped"))?;
                    *this.hashing = Hashing::Finished;
                    return Poll::Ready(Self::conclude(hashers, this.expected, this.handle, this.tripwire));
                }
                _ => {}
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Some(data) = frame.data_ref() else { return Poll::Ready(Some(Ok(frame))) };
                    *this.hashed += data.len() as u64;
                    if let Hashing::Inline(hashers) = this.hashing {
                        hashers.iter_mut().for_each(|h| h.update(data));
                        if *this.hashed >= OFFLOAD_AFTER && !hashers.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
                            *this.hashing = Hashing::offload(std::mem::take(hashers));
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    *this.pending = Some(frame);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => match std::mem::replace(this.hashing, Hashing::Finished) {
                    Hashing::Inline(hashers) => {
                        return Poll::Ready(Self::conclude(hashers, this.expected, this.handle, this.tripwire));
                    }
                    Hashing::Offloaded { done, .. } => {
                        // Closing the queue lets the thread finish; its result is polled above.
                        *this.hashing = Hashing::Offloaded { tx: None, reserving: None, done };
                    }
                    Hashing::Finished => return Poll::Ready(None),
                },
            }
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
