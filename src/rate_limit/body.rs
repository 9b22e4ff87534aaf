use super::{KeyExtractor, layer::Limiters};
use crate::error::BoxError;
use bytes::Buf;
use governor::clock::{Clock, DefaultClock};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::{
    fmt,
    num::NonZeroU32,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};
use tokio::time::Sleep;

type Throttle<Key> = Arc<dyn ByteQuota<Key>>;

/// Type-erased access to the byte limiter, so the body does not carry the key extractor type.
pub(crate) trait ByteQuota<Key>: Send + Sync {
    fn burst(&self) -> NonZeroU32;
    /// `Ok(())` when `n` bytes may pass now, else how long to wait.
    fn take(&self, key: &Key, n: NonZeroU32) -> Result<(), std::time::Duration>;
}

impl<K: KeyExtractor> ByteQuota<K::Key> for Limiters<K> {
    fn burst(&self) -> NonZeroU32 {
        self.bytes.as_ref().expect("a byte quota").0
    }

    fn take(&self, key: &K::Key, n: NonZeroU32) -> Result<(), std::time::Duration> {
        let (_, limiter) = self.bytes.as_ref().expect("a byte quota");
        match limiter.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            // `n` never exceeds the burst; treat the impossible as "wait a little".
            Err(_) => Err(std::time::Duration::from_millis(10)),
        }
    }
}

pin_project! {
    /// A request body slowed to its client's byte quota: each frame waits until the quota lets
    /// its bytes through (frames larger than the burst wait for it piece by piece).
    pub struct ThrottledBody<B, Key> {
        #[pin]
        inner: B,
        throttle: Option<(Throttle<Key>, Key)>,
        pending: Option<Frame<bytes::Bytes>>,
        owed: u64,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<B, Key> ThrottledBody<B, Key> {
    pub(crate) fn new<K>(inner: B, throttle: Option<(Arc<Limiters<K>>, Key)>) -> Self
    where
        K: KeyExtractor<Key = Key>,
    {
        let throttle = throttle.map(|(l, k)| (l as Throttle<Key>, k));
        Self { inner, throttle, pending: None, owed: 0, sleep: None }
    }
}

impl<B: fmt::Debug, Key> fmt::Debug for ThrottledBody<B, Key> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottledBody").field("inner", &self.inner).field("owed", &self.owed).finish()
    }
}

impl<B, Key> Body for ThrottledBody<B, Key>
where
    B: Body<Data = bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<bytes::Bytes>, BoxError>>> {
        let mut this = self.project();
        let Some((quota, key)) = this.throttle.as_ref() else {
            return this.inner.poll_frame(cx).map_err(Into::into);
        };
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                *this.sleep = None;
            }
            if this.pending.is_none() {
                match ready!(this.inner.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        *this.owed = frame.data_ref().map_or(0, |d| d.remaining() as u64);
                        *this.pending = Some(frame);
                    }
                    other => return Poll::Ready(other.map(|r| r.map_err(Into::into))),
                }
            }
            while *this.owed > 0 {
                let n = (*this.owed).min(u64::from(quota.burst().get())) as u32;
                match quota.take(key, NonZeroU32::new(n).expect("owed > 0")) {
                    Ok(()) => *this.owed -= u64::from(n),
                    Err(wait) => {
                        *this.sleep = Some(Box::pin(tokio::time::sleep(wait)));
                        break;
                    }
                }
            }
            if *this.owed == 0 {
                return Poll::Ready(this.pending.take().map(Ok));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
