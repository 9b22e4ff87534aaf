use super::{OnProgress, ProgressState, tracker::Tracker};
use crate::error::ProblemCode;
use http::Response;
use pin_project_lite::pin_project;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

/// Reports an upload as failed if its request is dropped before the inner service answered
/// (the client went away, the server shut down).
struct FinishGuard<C: OnProgress>(Option<Arc<Tracker<C>>>);

impl<C: OnProgress> Drop for FinishGuard<C> {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.finish(ProgressState::Failed, Some("aborted"));
        }
    }
}

pin_project! {
    /// Response future of [`ProgressTracking`](super::ProgressTracking): reports `done` for a
    /// successful response and `failed` (with the problem code) otherwise.
    pub struct ResponseFuture<F, C: OnProgress> {
        #[pin]
        inner: Inner<F>,
        guard: FinishGuard<C>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<F> {
        Rejected { response: Option<http::Response<http_body_util::Full<bytes::Bytes>>> },
        Future { #[pin] future: F },
    }
}

impl<F, C: OnProgress> ResponseFuture<F, C> {
    pub(crate) fn new(future: F, tracker: Option<Arc<Tracker<C>>>) -> Self {
        Self { inner: Inner::Future { future }, guard: FinishGuard(tracker) }
    }

    pub(crate) fn rejected(problem: crate::Problem) -> Self {
        Self { inner: Inner::Rejected { response: Some(problem.into_http()) }, guard: FinishGuard(None) }
    }
}

impl<F, B, E, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    C: OnProgress,
{
    type Output = Result<Response<crate::body::ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let future = match this.inner.project() {
            InnerProj::Rejected { response } => {
                let res = response.take().expect("polled after completion");
                return Poll::Ready(Ok(res.map(|body| crate::body::ResponseBody::Rejection { body })));
            }
            InnerProj::Future { future } => future,
        };
        let result = {
            let _entered = this.guard.0.as_ref().map(|t| t.span.clone().entered());
            ready!(future.poll(cx))
        };
        if let Some(tracker) = this.guard.0.take() {
            match &result {
                Ok(res) if res.status().is_success() => tracker.finish(ProgressState::Done, None),
                Ok(res) => {
                    let code = res.extensions().get::<ProblemCode>().map_or("http_error", |c| c.0);
                    tracker.finish(ProgressState::Failed, Some(code));
                }
                Err(_) => tracker.finish(ProgressState::Failed, Some("service_error")),
            }
        }
        Poll::Ready(result.map(crate::body::ResponseBody::inner))
    }
}
