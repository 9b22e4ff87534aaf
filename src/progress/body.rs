use super::{OnProgress, tracker::Tracker};
use crate::error::BoxError;
use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

pin_project! {
    /// A request body that counts its bytes for progress reports.
    pub struct ProgressBody<B, C> {
        #[pin]
        inner: B,
        tracker: Arc<Tracker<C>>,
    }
}

impl<B, C> ProgressBody<B, C> {
    pub(crate) fn new(inner: B, tracker: Arc<Tracker<C>>) -> Self {
        Self { inner, tracker }
    }
}

impl<B, C> Body for ProgressBody<B, C>
where
    B: Body,
    B::Error: Into<BoxError>,
    C: OnProgress,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(Some(data))) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            this.tracker.add(data.remaining() as u64);
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
