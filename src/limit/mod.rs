//! Limits the size of request bodies, by what they declare and by what they send.
//!
//! - A declared length over the limit — `Content-Length`, or an `Upload-Length` that a resumable
//!   protocol declares for the whole upload — is answered `413 body_too_large` before a byte of
//!   the body is read, and the inner service is never called.
//! - A body without a declared length (chunked) is cut off the moment it passes the limit; the
//!   inner service sees an error from the body, and whatever it answers is replaced by the 413.
//! - A body that sends more or fewer bytes than its `Content-Length` fails with
//!   `400 length_mismatch` (hyper already frames HTTP/1 bodies by `Content-Length`; this guards
//!   other transports and in-process callers).
//!
//! Limits differ per route by layering each route with its own `BodyLimitLayer`
//! (`Router::route_layer`). Put this layer outside content sniffing and hashing: a request that
//! is too large should cost no more than reading its headers.
//!
//! # Examples
//! ```
//! use intake::limit::BodyLimitLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use http::{Request, StatusCode};
//! use http_body_util::Full;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(BodyLimitLayer::new(4))
//!     .service(service_fn(|_req: Request<_>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::<bytes::Bytes>::default()))
//!     }));
//! let req = Request::post("/").header("content-length", "5").body(Full::<bytes::Bytes>::from("hello")).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! # }
//! ```

mod body;
mod layer;
mod service;

pub use self::{body::LimitedBody, layer::BodyLimitLayer, service::BodyLimit};
pub use crate::future::ResponseFuture;
pub(crate) use service::too_large as too_large_problem;
