//! Hashing while bytes stream: SHA-256 by default (SHA-512, SHA-1, MD5, CRC32C and, with the
//! `blake3` feature, BLAKE3 selectable), with verification of the digests a client sends.
//!
//! The layer wraps the request body in a [`HashBody`] and puts a [`DigestHandle`] in the request
//! extensions; once the inner service has read the body to its end, the handle holds the
//! digests, which the upload handlers store with the file and return in their response.
//!
//! A client may send `Content-Digest` or `Repr-Digest` (RFC 9530) or `Content-MD5`. A malformed
//! value is refused with `400 invalid_digest` before the body is read. The digests are checked
//! when the body ends: on a mismatch the body fails instead of ending, the store aborts the
//! upload, and the client gets `400 digest_mismatch` — nothing is committed. Algorithms this
//! build does not know are ignored, as RFC 9530 allows.
//!
//! For `multipart/form-data` the layer only verifies a digest of the whole body, if one was sent,
//! and leaves a [`FormHashing`] extension so the form handler hashes each file on its own.
//!
//! # Examples
//! ```
//! use intake::hash::{DigestHandle, HashLayer};
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new().layer(HashLayer::default()).service(service_fn(
//!     |req: http::Request<intake::hash::HashBody<http_body_util::Full<bytes::Bytes>>>| async move {
//!         let digests = req.extensions().get::<DigestHandle>().cloned().unwrap();
//!         req.into_body().collect().await?;
//!         let sha256 = digests.get().unwrap().get("sha-256").unwrap().to_owned();
//!         Ok::<_, intake::BoxError>(http::Response::new(http_body_util::Full::from(sha256)))
//!     },
//! ));
//! let req = http::Request::post("/").body(http_body_util::Full::from("abc")).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! assert!(body.starts_with(b"ba7816bf"));
//! # }
//! ```

mod algorithm;
mod body;
mod header;
mod layer;
mod service;

pub use self::{
    algorithm::{HashAlgorithm, Hasher},
    body::{DigestHandle, HashBody},
    header::{ExpectedDigest, base64, expected_digests, header_value},
    layer::HashLayer,
    service::Hashing,
};
pub use crate::future::ResponseFuture;
pub(crate) use body::{OFFLOAD_AFTER, hashing_thread, hashing_thread_from};

/// The algorithms to compute for each file of a multipart form, left in its extensions by the
/// hash layer.
#[derive(Clone, Debug)]
pub struct FormHashing(pub std::sync::Arc<[HashAlgorithm]>);
