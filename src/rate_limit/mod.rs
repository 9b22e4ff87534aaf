//! Per-client rate limiting on [`governor`]: a requests-per-second quota answered with
//! `429 rate_limited`, and a bytes-per-second quota that slows request bodies down instead of
//! failing them.
//!
//! # Who is the client?
//! By default ([`PeerIp`]) the key is the peer address of the connection, read from axum's
//! [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo) request extension (serve with
//! `into_make_service_with_connect_info::<SocketAddr>()`, or insert it yourself in a hyper
//! service). Behind a proxy, one header (`X-Forwarded-For` unless
//! [`RateLimitLayer::forwarded_header`] names another) is believed **only** when the immediate
//! peer is one of the configured trusted proxies, and only from the right: the first address
//! there that is not a trusted proxy is the client, so a client cannot pick its own key by
//! sending a header, whether the one the proxy appends to or another. IPv6 clients are keyed by
//! their /64 network ([`RateLimitLayer::ipv6_prefix`]), since one host commonly holds all of
//! it. Other keys (API key, tenant) plug in through [`KeyExtractor`].
//!
//! # Responses
//! Every response carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
//! (IETF `draft-ietf-httpapi-ratelimit-headers`); a refused request also gets `Retry-After`.
//! The inner service is never called for a refused request.
//!
//! # Memory
//! Keys idle for longer than it takes their quota to refill are indistinguishable from new ones;
//! the layer drops them every [`RateLimitLayer::purge_every`] (60 s by default), so memory does
//! not grow with every client ever seen.
//!
//! # Examples
//! ```
//! use intake::rate_limit::RateLimitLayer;
//! use std::net::{IpAddr, SocketAddr};
//! use axum::extract::ConnectInfo;
//! use tower::{Service, ServiceExt, service_fn};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut svc = RateLimitLayer::per_second(1)
//!     .trusted_proxies(["10.0.0.1".parse::<IpAddr>().unwrap()])
//!     .layer_service(service_fn(|_req: http::Request<intake::rate_limit::ThrottledBody<String, IpAddr>>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
//!     }));
//! let req = || {
//!     let mut req = http::Request::new(String::new());
//!     req.extensions_mut().insert(ConnectInfo("192.0.2.7:5000".parse::<SocketAddr>().unwrap()));
//!     req
//! };
//! assert_eq!(svc.ready().await.unwrap().call(req()).await.unwrap().status(), 200);
//! assert_eq!(svc.ready().await.unwrap().call(req()).await.unwrap().status(), 429);
//! # }
//! ```

mod body;
mod key;
mod layer;
mod service;

pub use self::{
    body::ThrottledBody,
    key::{InvalidIpRange, IpRange, KeyExtractor, PeerIp},
    layer::RateLimitLayer,
    service::{ClientKey, RateLimit},
};
pub use crate::future::ResponseFuture;
