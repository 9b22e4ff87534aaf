//! Content sniffing: refuses uploads whose first bytes contradict what they claim to be.
//!
//! The layer reads up to 8 KiB of the body (fewer if the body is shorter), recognises the type
//! by magic bytes with [`infer`], and applies a [`ContentPolicy`]: allowed and denied types,
//! agreement between the sniffed type and the declared `Content-Type` and file extension
//! (from `Content-Disposition` or the `name` query parameter), and refusal of executables and
//! scripts disguised as other files. A refused upload gets `415` naming what was detected,
//! before the inner service is called, so no storage is touched.
//!
//! Markup that is to be stored as a media type — every SVG, which browsers execute, and any
//! "image" that starts like markup — is then scanned to its end as it streams, with an XML
//! tokenizer, for active content (scripts, event handlers, `<foreignObject>`, script URLs,
//! entity declarations, ...): the body fails where it is found (`415 active_content`), the
//! store aborts, and nothing is kept. Markup longer than
//! [`ContentPolicy::markup_scan_limit`] (4 MiB by default) is refused (`413
//! markup_too_large`) rather than stored unchecked. An accepted body reaches the
//! inner service unchanged — the peeked frames are replayed as they came — with a [`Sniffed`]
//! request extension carrying the type to store.
//!
//! Multipart requests pass through with a [`FormPolicy`] extension instead: the form handler
//! sniffs each file of the form with [`SniffBody::checking`].
//!
//! # Security
//! Sniffing is one line of defence, not a virus scanner: magic bytes say what a file starts
//! with, not everything it contains. Serve uploads with `Content-Disposition: attachment` and
//! `X-Content-Type-Options: nosniff` (the download route does) and never from your app's origin
//! if you can avoid it.
//!
//! # Examples
//! ```
//! use intake::sniff::{ContentPolicy, SniffLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(SniffLayer::new(ContentPolicy::default().allow(["image/*"])))
//!     .service(service_fn(|_req: http::Request<_>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
//!     }));
//! let elf = http_body_util::Full::from(bytes::Bytes::copy_from_slice(&[&b"\x7fELF\x02\x01\x01"[..], &[0u8; 57][..]].concat()));
//! let req = http::Request::post("/upload?name=cat.png").body(elf).unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap().status(), 415);
//! # }
//! ```

mod body;
mod future;
mod layer;
mod markup;
mod policy;
mod service;

pub use self::{
    body::SniffBody,
    future::{FormPolicy, ResponseFuture},
    layer::SniffLayer,
    policy::{ContentPolicy, Sniffed},
    service::Sniff,
};
pub(crate) use markup::{may_hold_active_content, scan_active_content};
