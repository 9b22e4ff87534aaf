//! Progress instrumentation: counts body bytes as they pass, calls a throttled callback,
//! publishes per-upload progress for Server-Sent Events, and emits `tracing` spans and events.
//!
//! - **Callback**: anything implementing [`OnProgress`], including closures
//!   `FnMut(Option<&str>, &Progress)`; called when the body starts, every 100 ms or 1 % of the
//!   declared length (whichever comes first), and once at the end with `done` or `failed` and the
//!   failing problem's code. The default, [`DefaultOnProgress`], logs through `tracing`.
//! - **Hub**: a client names its upload with `?progress_id=ID` or `X-Progress-Id: ID` (see
//!   [`ProgressId`]); with a [`ProgressHub`] configured, subscribers of that id — who may have
//!   subscribed before the upload started — see each report. The router serves them as SSE at
//!   `GET {prefix}/progress/{id}`, with the byte offset as event id.
//! - **Refusals**: a request refused by a layer outside this one never reaches it; put a
//!   [`ReportRefusalsLayer`] outside those layers so its subscribers still get `failed`.
//! - **Tracing**: each request runs in an `upload` span with the progress id and total.
//!
//! Place this layer innermost, next to the handler, so it counts the bytes that actually reach
//! storage (after throttling and after sniffing held the first bytes back).
//!
//! # Examples
//! ```
//! use intake::progress::{Progress, ProgressLayer};
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(ProgressLayer::new().on_progress(|id: Option<&str>, p: &Progress| {
//!         println!("{id:?}: {} of {:?} bytes ({:?})", p.received, p.total, p.state);
//!     }))
//!     .service(service_fn(|req: http::Request<intake::progress::ProgressBody<http_body_util::Full<bytes::Bytes>, _>>| async move {
//!         req.into_body().collect().await?;
//!         Ok::<_, intake::BoxError>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
//!     }));
//! let req = http::Request::post("/?progress_id=my-upload-1").body(http_body_util::Full::from("abc")).unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
//! # }
//! ```

mod body;
mod callback;
mod future;
mod hub;
mod layer;
mod refusals;
mod service;
mod tracker;

pub use self::{
    body::ProgressBody,
    callback::{DefaultOnProgress, OnProgress, Progress, ProgressState},
    future::ResponseFuture,
    hub::{ProgressHub, ProgressId},
    layer::ProgressLayer,
    refusals::{ReportRefusals, ReportRefusalsFuture, ReportRefusalsLayer},
    service::ProgressTracking,
};
