use super::{KeyExtractor, PeerIp, RateLimitLayer, ResponseFuture, ThrottledBody, layer::Limiters};
use crate::error::Problem;
use governor::clock::{Clock, DefaultClock};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tower_service::Service;

/// Middleware that rate-limits requests and throttles their bodies per client. See the
/// [module docs](super).
#[derive(Debug)]
pub struct RateLimit<S, K: KeyExtractor = PeerIp> {
    inner: S,
    limiters: Arc<Limiters<K>>,
}

impl<S: Clone, K: KeyExtractor> Clone for RateLimit<S, K> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), limiters: self.limiters.clone() }
    }
}

impl<S, K: KeyExtractor> RateLimit<S, K> {
    pub(crate) fn new(inner: S, limiters: Arc<Limiters<K>>) -> Self {
        Self { inner, limiters }
    }

    /// A [`RateLimitLayer`] of `requests` per second per client.
    pub fn layer(requests: u32) -> RateLimitLayer {
        RateLimitLayer::per_second(requests)
    }

    crate::inner_service_accessors!();
}

/// The client a request was counted against, as a request extension for the inner service
/// (which may bound per-client resources with it, such as progress subscriptions).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey(pub Arc<str>);

fn seconds_header(d: Duration) -> HeaderValue {
    // Round up: a client that waits the advertised time must then be let in.
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    HeaderValue::from(secs)
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, K>
where
    S: Service<Request<ThrottledBody<ReqBody, K::Key>>, Response = Response<ResBody>>,
    K: KeyExtractor,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let limiters = &self.limiters;
        if limiters.requests.is_none() && limiters.bytes.is_none() {
            return ResponseFuture::with_headers(
                self.inner.call(req.map(|b| ThrottledBody::new::<K>(b, None))),
                HeaderMap::new(),
            );
        }
        limiters.purge_if_due();
        let Some(key) = limiters.keys.extract(&req) else {
            tracing::error!("rate limit: no client key (is ConnectInfo<SocketAddr> missing?)");
            return ResponseFuture::rejected(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "client_unidentified",
                "the server could not identify the client for rate limiting",
            ));
        };
        let mut headers = HeaderMap::new();
        if let Some((quota, limiter)) = &limiters.requests {
            let limit = HeaderValue::from(quota.burst_size().get());
            match limiter.check_key(&key) {
                Ok(snapshot) => {
                    let remaining = snapshot.remaining_burst_capacity();
                    let reset = quota.replenish_interval() * (quota.burst_size().get() - remaining);
                    headers.insert("ratelimit-limit", limit);
                    headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
                    headers.insert("ratelimit-reset", seconds_header(reset));
                }
                Err(not_until) => {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    tracing::debug!(client = %key, ?wait, "rate limited");
                    let problem = Problem::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        format!("too many requests; retry in {} s", seconds_header(wait).to_str().unwrap_or("1")),
                    )
                    .with("retry_after", wait.as_secs_f64())
                    .with_header(header::RETRY_AFTER, seconds_header(wait))
                    .with_header(header::HeaderName::from_static("ratelimit-limit"), limit)
                    .with_header(header::HeaderName::from_static("ratelimit-remaining"), HeaderValue::from(0))
                    .with_header(header::HeaderName::from_static("ratelimit-reset"), seconds_header(wait));
                    return ResponseFuture::rejected(problem);
                }
            }
        }
        let mut req = req;
        req.extensions_mut().insert(ClientKey(Arc::from(key.to_string())));
        let throttle = limiters.bytes.as_ref().map(|_| (self.limiters.clone(), key));
        let req = req.map(|body| ThrottledBody::new(body, throttle));
        ResponseFuture::with_headers(self.inner.call(req), headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestBody, chunked, json, read};
    use axum::extract::ConnectInfo;
    use bytes::Bytes;
    use http_body_util::Full;
    use std::{convert::Infallible, net::SocketAddr, time::Instant};
    use tower::{ServiceExt, service_fn};

    fn echo()
    -> impl Service<Request<ThrottledBody<TestBody, std::net::IpAddr>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
    {
        service_fn(|req: Request<ThrottledBody<TestBody, std::net::IpAddr>>| async move {
            Ok(Response::new(Full::new(read(req.into_body()).await.unwrap())))
        })
    }

    fn from(peer: &str, forwarded_for: Option<&str>, body: TestBody) -> Request<TestBody> {
        let mut req = Request::post("/");
        if let Some(xff) = forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        let mut req = req.body(body).unwrap();
        req.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        req
    }

    #[tokio::test]
    async fn over_quota_gets_429_with_retry_after() {
        let layer = RateLimitLayer::per_second(2);
        let svc = layer.layer_service(echo());
        for _ in 0..2 {
            let res = svc.clone().oneshot(from("192.0.2.1:1", None, chunked(&[]))).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.headers()["ratelimit-limit"], "2");
        }
        let res = svc.clone().oneshot(from("192.0.2.1:2", None, chunked(&[]))).await.unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.headers()["ratelimit-remaining"], "0");
        assert_eq!(json(res).await["code"], "rate_limited");
        // Another client has its own quota.
        let res = svc.clone().oneshot(from("192.0.2.2:1", None, chunked(&[]))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn spoofed_forwarded_for_from_an_untrusted_peer_does_not_escape() {
        let layer = RateLimitLayer::per_second(1).trusted_proxies(["10.0.0.1".parse().unwrap()]);
        let svc = layer.layer_service(echo());
        let first = svc.clone().oneshot(from("192.0.2.1:1", Some("1.1.1.1"), chunked(&[]))).await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let second = svc.clone().oneshot(from("192.0.2.1:1", Some("2.2.2.2"), chunked(&[]))).await.unwrap();
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS, "a new X-Forwarded-For is not a new client");
        // Through the trusted proxy, forwarded clients are told apart.
        let a = svc.clone().oneshot(from("10.0.0.1:1", Some("3.3.3.3"), chunked(&[]))).await.unwrap();
        let b = svc.clone().oneshot(from("10.0.0.1:1", Some("4.4.4.4"), chunked(&[]))).await.unwrap();
        assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    }

    #[tokio::test]
    async fn unidentified_clients_are_refused() {
        let svc = RateLimitLayer::per_second(1).layer_service(echo());
        let res = svc.oneshot(Request::new(chunked(&[]))).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(json(res).await["code"], "client_unidentified");
    }

    #[tokio::test]
    async fn byte_quota_slows_bodies_without_failing_them() {
        // 10 000 B/s with a 1000 B burst: 3000 bytes cannot all pass in under 0.2 s.
        let svc = RateLimitLayer::unlimited_requests().bytes_per_second(10_000).byte_burst(1000).layer_service(echo());
        let started = Instant::now();
        let chunk = [7u8; 500];
        let chunks: Vec<&[u8]> = vec![&chunk; 6];
        let res = svc.oneshot(from("192.0.2.1:1", None, chunked(&chunks))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(read(res.into_body()).await.unwrap().len(), 3000, "every byte arrives");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(150), "the body was slowed: {waited:?}");
    }

    #[tokio::test]
    async fn chunks_larger_than_the_burst_pass_in_pieces() {
        let svc = RateLimitLayer::unlimited_requests().bytes_per_second(100_000).byte_burst(1000).layer_service(echo());
        let big = vec![1u8; 5000];
        let res = svc.oneshot(from("192.0.2.1:1", None, chunked(&[&big]))).await.unwrap();
        assert_eq!(read(res.into_body()).await.unwrap().len(), 5000);
    }

    #[tokio::test]
    async fn idle_clients_are_purged() {
        let layer = RateLimitLayer::per_second(1000).burst(1).purge_every(Duration::ZERO);
        let svc = layer.layer_service(echo());
        for i in 0..50 {
            let peer = format!("192.0.2.{i}:1");
            svc.clone().oneshot(from(&peer, None, chunked(&[]))).await.unwrap();
        }
        assert!(layer.tracked_clients() <= 50);
        // 1000 req/s refills one request in 1 ms: after a short pause every key is idle.
        tokio::time::sleep(Duration::from_millis(20)).await;
        svc.clone().oneshot(from("198.51.100.1:1", None, chunked(&[]))).await.unwrap();
        assert!(layer.tracked_clients() <= 1, "idle keys were dropped, {} remain", layer.tracked_clients());
    }
}
