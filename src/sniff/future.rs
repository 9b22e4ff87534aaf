use super::{ContentPolicy, SniffBody};
use crate::{body::ResponseBody, error::Problem};
use bytes::Bytes;
use http::{Request, Response, request::Parts};
use http_body::Body;
use pin_project_lite::pin_project;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};
use tower_service::Service;

/// The content policy of a multipart request, left in its extensions by the sniff layer for the
/// form handler, which sniffs each file on its own.
#[derive(Clone, Debug)]
pub struct FormPolicy(pub Arc<ContentPolicy>);

pin_project! {
    /// Response future of [`Sniff`](super::Sniff): reads the first bytes, then calls the inner
    /// service or answers 415.
    pub struct ResponseFuture<S: Service<Request<SniffBody<B>>>, B> {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<Request<SniffBody<B>>>, B> {
        Peeking { service: Option<S>, parts: Option<Parts>, body: Option<SniffBody<B>> },
        Calling { #[pin] future: S::Future },
    }
}

impl<S: Service<Request<SniffBody<B>>>, B> ResponseFuture<S, B> {
    pub(crate) fn call(mut service: S, req: Request<SniffBody<B>>) -> Self {
        Self { state: State::Calling { future: service.call(req) } }
    }

    pub(crate) fn peek(service: S, parts: Parts, body: SniffBody<B>) -> Self {
        Self { state: State::Peeking { service: Some(service), parts: Some(parts), body: Some(body) } }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<SniffBody<B>>, Response = Response<ResBody>>,
    B: Body<Data = Bytes>,
    B::Error: Into<crate::BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                StateProj::Peeking { service, parts, body } => {
                    let decided = ready!(body.as_mut().expect("polled after completion").poll_decide(cx));
                    match decided {
                        Ok(sniffed) => {
                            let mut parts = parts.take().expect("polled after completion");
                            if let Some(sniffed) = sniffed {
                                parts.extensions.insert(sniffed);
                            }
                            let req = Request::from_parts(parts, body.take().expect("polled after completion"));
                            let future = service.take().expect("polled after completion").call(req);
                            self.as_mut().project().state.set(State::Calling { future });
                        }
                        Err(err) => return Poll::Ready(Ok(ResponseBody::rejection(Problem::from_body_error(err.as_ref())))),
                    }
                }
                StateProj::Calling { future } => return future.poll(cx).map_ok(ResponseBody::inner),
            }
        }
    }
}
