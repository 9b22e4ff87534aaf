use super::{
    DefaultOnProgress, OnProgress, ProgressBody, ProgressHub, ProgressId, ProgressLayer, ResponseFuture, tracker::Tracker,
};
use crate::declared::query_param;
use http::{Request, Response};
use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tower_service::Service;

/// Middleware that reports request body progress. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct ProgressTracking<S, C = DefaultOnProgress> {
    inner: S,
    hub: Option<ProgressHub>,
    callback: C,
    interval: Duration,
}

impl<S, C> ProgressTracking<S, C> {
    pub(crate) fn new(inner: S, hub: Option<ProgressHub>, callback: C, interval: Duration) -> Self {
        Self { inner, hub, callback, interval }
    }

    /// A [`ProgressLayer`] with the default callback.
    pub fn layer() -> ProgressLayer {
        ProgressLayer::new()
    }

    crate::inner_service_accessors!();
}

/// The progress id a request names: `?progress_id=` or `X-Progress-Id`.
pub(crate) fn requested_id<B>(req: &Request<B>) -> Option<String> {
    req.uri()
        .query()
        .and_then(|q| query_param(q, "progress_id"))
        .or_else(|| req.headers().get("x-progress-id").and_then(|v| v.to_str().ok()).map(str::to_owned))
}

fn declared_total(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok())
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for ProgressTracking<S, C>
where
    S: Service<Request<ProgressBody<ReqBody, C>>, Response = Response<ResBody>>,
    C: OnProgress,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let id = match requested_id(&req).map(|s| ProgressId::parse(&s)).transpose() {
            Ok(id) => id,
            Err(problem) => return ResponseFuture::rejected(problem),
        };
        let publisher = match (&self.hub, &id) {
            (Some(hub), Some(id)) => match hub.publish(id) {
                Ok(tx) => tx.map(|tx| (hub.clone(), tx)),
                Err(problem) => return ResponseFuture::rejected(problem),
            },
            _ => None,
        };
        if let Some(id) = &id {
            req.extensions_mut().insert(id.clone());
        }
        let total = declared_total(req.headers());
        let tracker = Arc::new(Tracker::new(id, total, publisher, self.callback.clone(), self.interval));
        let req = req.map(|body| ProgressBody::new(body, tracker.clone()));
        ResponseFuture::new(self.inner.call(req), Some(tracker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        progress::{Progress, ProgressState},
        test_util::{TestBody, chunked, json, read},
    };
    use bytes::Bytes;
    use http::StatusCode;
    use http_body_util::Full;
    use std::{convert::Infallible, sync::Mutex};
    use tower::{ServiceExt, service_fn};

    fn echo<C: OnProgress>()
    -> impl Service<Request<ProgressBody<TestBody, C>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone {
        service_fn(|req: Request<ProgressBody<TestBody, C>>| async move {
            let body = read(req.into_body()).await.unwrap();
            Ok(Response::new(Full::new(body)))
        })
    }

    #[tokio::test]
    async fn reports_bytes_and_the_end_to_the_callback() {
        let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
        let log = seen.clone();
        let layer = ProgressLayer::new()
            .interval(Duration::ZERO)
            .on_progress(move |_: Option<&str>, p: &Progress| log.lock().unwrap().push(p.clone()));
        let svc = tower_layer::Layer::layer(&layer, echo());
        let req = Request::post("/").header("content-length", "6").body(chunked(&[b"abc", b"def"])).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let seen = seen.lock().unwrap();
        let received: Vec<u64> = seen.iter().map(|p| p.received).collect();
        assert_eq!(received, [0, 3, 6, 6]);
        assert_eq!(seen.last().unwrap().state, ProgressState::Done);
        assert_eq!(seen.last().unwrap().percent(), Some(100.0));
    }

    #[tokio::test]
    async fn publishes_to_subscribers_who_came_first() {
        let hub = ProgressHub::new();
        let id = ProgressId::parse("abcdefgh12").unwrap();
        let mut rx = hub.subscribe(&id).unwrap();
        assert_eq!(rx.borrow().state, ProgressState::Waiting);
        let svc = tower_layer::Layer::layer(&ProgressLayer::new().hub(hub.clone()), echo());
        let req = Request::post("/?progress_id=abcdefgh12").body(chunked(&[b"abc"])).unwrap();
        svc.oneshot(req).await.unwrap();
        assert!(rx.has_changed().unwrap());
        let last = rx.borrow_and_update().clone();
        assert_eq!((last.state, last.received), (ProgressState::Done, 3));
    }

    #[tokio::test]
    async fn failed_responses_report_their_problem_code() {
        let hub = ProgressHub::new();
        let id = ProgressId::parse("failing-upload").unwrap();
        let rx = hub.subscribe(&id).unwrap();
        let inner = crate::limit::BodyLimitLayer::new(2);
        let svc = tower::ServiceBuilder::new().layer(ProgressLayer::new().hub(hub.clone())).layer(inner).service(service_fn(
            |req: Request<crate::limit::LimitedBody<ProgressBody<TestBody, DefaultOnProgress>>>| async move {
                let _ = read(req.into_body()).await;
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            },
        ));
        let req = Request::post("/").header("x-progress-id", "failing-upload").body(chunked(&[b"abc"])).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let last = rx.borrow().clone();
        assert_eq!((last.state, last.code), (ProgressState::Failed, Some("body_too_large")));
    }

    #[tokio::test]
    async fn invalid_progress_ids_are_refused() {
        let svc = tower_layer::Layer::layer(&ProgressLayer::new(), echo());
        let res = svc.oneshot(Request::post("/?progress_id=../x").body(chunked(&[])).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(json(res).await["code"], "invalid_progress_id");
    }

    #[tokio::test]
    async fn a_dropped_request_is_reported_failed() {
        let hub = ProgressHub::new();
        let id = ProgressId::parse("dropped-upload").unwrap();
        let rx = hub.subscribe(&id).unwrap();
        let svc = tower_layer::Layer::layer(
            &ProgressLayer::new().hub(hub.clone()),
            service_fn(|_req: Request<ProgressBody<TestBody, DefaultOnProgress>>| {
                std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
            }),
        );
        let fut = svc.oneshot(Request::post("/?progress_id=dropped-upload").body(chunked(&[])).unwrap());
        let _ = tokio::time::timeout(Duration::from_millis(10), fut).await;
        assert_eq!(rx.borrow().code, Some("aborted"));
    }
}
