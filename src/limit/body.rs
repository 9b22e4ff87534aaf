use crate::{
    body::Tripwire,
    error::{BoxError, Problem},
};
use bytes::Buf;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

pin_project! {
    /// A request body that fails once it passes its limit or its declared `Content-Length`.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        limit: u64,
        declared: Option<u64>,
        received: u64,
        tripwire: Tripwire,
    }
}

impl<B> LimitedBody<B> {
    pub(crate) fn new(inner: B, limit: u64, declared: Option<u64>, tripwire: Tripwire) -> Self {
        Self { inner, limit, declared, received: 0, tripwire }
    }

    /// Limits `inner` to `limit` bytes, for protocol handlers that apply the limit to an inner
    /// stream (one file of a form).
    pub fn with_limit(inner: B, limit: u64) -> Self {
        Self::new(inner, limit, None, Tripwire::default())
    }
}

fn mismatch(declared: u64, received: u64) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "length_mismatch",
        format!("the body declared {declared} bytes in Content-Length but sent {received}"),
    )
}

impl<B> Body for LimitedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.remaining() as u64;
                    if *this.received > *this.limit {
                        return Poll::Ready(Some(Err(this.tripwire.trip(super::service::too_large(*this.limit, None)))));
                    }
                    if let Some(declared) = this.declared.filter(|&d| *this.received > d) {
                        return Poll::Ready(Some(Err(this.tripwire.trip(mismatch(declared, *this.received)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => match this.declared.filter(|&d| *this.received != d) {
                Some(declared) => Poll::Ready(Some(Err(this.tripwire.trip(mismatch(declared, *this.received))))),
                None => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        // A short body must still be polled to its end to be refused.
        self.inner.is_end_stream() && self.declared.is_none_or(|d| d == self.received)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
