//! The response future shared by layers that either answer at once or call their inner service
//! and watch the request body while it does.

use crate::{
    body::{ResponseBody, Tripwire},
    error::Problem,
};
use http::Response;
use pin_project_lite::pin_project;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

pin_project! {
    /// Response future of [`BodyLimit`](crate::limit::BodyLimit),
    /// [`Hashing`](crate::hash::Hashing) and [`RateLimit`](crate::rate_limit::RateLimit).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Inner<F>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<F> {
        Rejected { problem: Option<Problem> },
        Future { #[pin] future: F, tripwire: Option<Tripwire>, headers: http::HeaderMap },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn rejected(problem: Problem) -> Self {
        Self { inner: Inner::Rejected { problem: Some(problem) } }
    }

    /// Calls through; if the body wrapper trips, its problem replaces the inner response.
    pub(crate) fn future(future: F, tripwire: Option<Tripwire>) -> Self {
        Self { inner: Inner::Future { future, tripwire, headers: http::HeaderMap::new() } }
    }

    /// Calls through and adds `headers` to the response (rate-limit headers).
    pub(crate) fn with_headers(future: F, headers: http::HeaderMap) -> Self {
        Self { inner: Inner::Future { future, tripwire: None, headers } }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.project() {
            InnerProj::Rejected { problem } => {
                let problem = problem.take().expect("polled after completion");
                Poll::Ready(Ok(ResponseBody::rejection(problem)))
            }
            InnerProj::Future { future, tripwire, headers } => {
                let mut res = ready!(future.poll(cx))?;
                if let Some(problem) = tripwire.as_ref().and_then(Tripwire::tripped) {
                    let mut rejection = ResponseBody::rejection(problem);
                    rejection.headers_mut().extend(std::mem::take(headers));
                    return Poll::Ready(Ok(rejection));
                }
                res.headers_mut().extend(std::mem::take(headers));
                Poll::Ready(Ok(ResponseBody::inner(res)))
            }
        }
    }
}
