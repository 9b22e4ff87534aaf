//! Ends the progress of uploads that a layer refused before the progress layer saw them.

use super::{ProgressHub, ProgressId, service::requested_id};
use crate::error::ProblemCode;
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};
use tower_layer::Layer;
use tower_service::Service;

/// Applies [`ReportRefusals`]: place it outside every layer that may refuse an upload (rate limit,
/// size limit, sniffing, digest headers), so that subscribers of a refused upload's progress
/// get `failed` with the refusal's code instead of waiting for an upload that will never come.
#[derive(Clone, Debug)]
pub struct ReportRefusalsLayer {
    hub: ProgressHub,
}

impl ReportRefusalsLayer {
    /// Reports refusals to `hub`.
    pub fn new(hub: ProgressHub) -> Self {
        Self { hub }
    }
}

impl<S> Layer<S> for ReportRefusalsLayer {
    type Service = ReportRefusals<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReportRefusals { inner, hub: self.hub.clone() }
    }
}

/// Middleware that reports a refused request's problem code to the [`ProgressHub`] under the
/// progress id the request named. See [`ReportRefusalsLayer`].
#[derive(Clone, Debug)]
pub struct ReportRefusals<S> {
    inner: S,
    hub: ProgressHub,
}

impl<S> ReportRefusals<S> {
    crate::inner_service_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for ReportRefusals<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ReportRefusalsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let id = requested_id(&req).and_then(|s| ProgressId::parse(&s).ok());
        ReportRefusalsFuture { future: self.inner.call(req), report: id.map(|id| (id, self.hub.clone())) }
    }
}

pin_project! {
    /// Response future of [`ReportRefusals`].
    pub struct ReportRefusalsFuture<F> {
        #[pin]
        future: F,
        report: Option<(ProgressId, ProgressHub)>,
    }
}

impl<F, ResBody, E> Future for ReportRefusalsFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx));
        if let (Some((id, hub)), Ok(res)) = (this.report.take(), &result) {
            if !res.status().is_success() {
                hub.report_refusal(&id, res.extensions().get::<ProblemCode>().map_or("http_error", |c| c.0));
            }
        }
        Poll::Ready(result)
    }
}
