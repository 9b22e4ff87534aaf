//! Bodies shared by the layers: the response body of a layer that may answer by itself, and
//! helpers to turn streams into bodies and back.

use crate::error::{BoxError, Problem};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt, stream::BoxStream};
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, StreamBody};
use pin_project_lite::pin_project;
use std::{
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

pin_project! {
    /// The response body of every layer in this crate: the inner service's body, or the
    /// problem document of a rejection the layer answered itself.
    #[project = ResponseBodyProj]
    #[allow(missing_docs)] // pin-project-lite cannot document variant fields: each is the body
    pub enum ResponseBody<B> {
        /// The inner service answered.
        Inner { #[pin] body: B },
        /// The layer rejected the request.
        Rejection { #[pin] body: Full<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn rejection(problem: Problem) -> Response<Self> {
        problem.into_http().map(|body| ResponseBody::Rejection { body })
    }

    pub(crate) fn inner(res: Response<B>) -> Response<Self> {
        res.map(|body| ResponseBody::Inner { body })
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project() {
            ResponseBodyProj::Inner { body } => body.poll_frame(cx),
            ResponseBodyProj::Rejection { body } => body.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Inner { body } => body.is_end_stream(),
            ResponseBody::Rejection { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Inner { body } => body.size_hint(),
            ResponseBody::Rejection { body } => body.size_hint(),
        }
    }
}

/// A rejection that a body wrapper raised while the inner service was reading the body.
///
/// The layer's response future checks it when the inner service answers and, if set, replaces
/// that answer with the problem: the client gets the precise status (413, 415, ...) even when
/// the inner service maps body errors to a generic 500.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tripwire(Arc<OnceLock<Problem>>);

impl Tripwire {
    pub(crate) fn trip(&self, problem: Problem) -> BoxError {
        let _ = self.0.set(problem.clone());
        Box::new(crate::error::BodyRejection(problem))
    }

    pub(crate) fn tripped(&self) -> Option<Problem> {
        self.0.get().cloned()
    }
}

/// A stream of data chunks as a body, for wrapping the inner streams of a protocol (each file
/// of a multipart form) with the same body wrappers the layers put around a request body.
pub fn stream_body<S, E>(stream: S) -> impl Body<Data = Bytes, Error = BoxError> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    StreamBody::new(stream.map_ok(Frame::data).map_err(Into::into))
}

/// The data frames of a body as a boxed stream (trailers are dropped).
pub fn data_stream<'a, B>(body: B) -> BoxStream<'a, Result<Bytes, BoxError>>
where
    B: Body<Data = Bytes> + Send + 'a,
    B::Error: Into<BoxError>,
{
    body.into_data_stream().map_err(Into::into).boxed()
}
