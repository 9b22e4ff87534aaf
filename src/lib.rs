//! Streaming file uploads for tower and axum: layers, storage backends and upload protocols.
//!
//! intake gives an axum app production-grade uploads in three lines, and gives any
//! `http`/tower service (hyper, a framework's own) the same building blocks as layers:
//!
//! ```no_run
//! # async fn run() {
//! let app = axum::Router::new().nest("/upload", intake::uploads_router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
//! # }
//! ```
//!
//! That serves, storing under `./uploads`:
//!
//! | route | protocol |
//! |---|---|
//! | `POST /upload/form` | streaming `multipart/form-data` |
//! | `POST /upload/raw` | the body is the file |
//! | `/upload/tus/` | [tus 1.0](tus) with every extension, and the IETF resumable-upload draft |
//! | `/upload/chunked/{init,chunk,status,complete}` | a JSON chunked API: chunks in any order, in parallel |
//! | `GET /upload/files/{id}` | download with `Range` |
//! | `DELETE /upload/files/{id}` | delete a file |
//! | `GET /upload/progress/{id}` | Server-Sent Events, for a form or raw upload's `?progress_id=` or a resumable upload's id |
//!
//! Configure it with [`Uploads`]. Serve with `into_make_service_with_connect_info` so the rate
//! limiter knows each client's address.
//!
//! # The layers
//!
//! | layer | module | rejects with |
//! |---|---|---|
//! | [`RateLimitLayer`](rate_limit::RateLimitLayer) | [`rate_limit`] | 429 `rate_limited`, `Retry-After` |
//! | [`BodyLimitLayer`](limit::BodyLimitLayer) | [`limit`] | 413 `body_too_large` |
//! | [`SniffLayer`](sniff::SniffLayer) | [`sniff`] | 415 `executable_content`, `content_type_mismatch`, ... |
//! | [`HashLayer`](hash::HashLayer) | [`hash`] | 400 `digest_mismatch`, `invalid_digest` |
//! | [`ProgressLayer`](progress::ProgressLayer) | [`progress`] | 400 `invalid_progress_id` |
//!
//! Each works alone around any `Service<http::Request<B>>` whose body is an
//! [`http_body::Body`], and answers a rejection itself with an `application/problem+json`
//! response ([`Problem`]) rather than an error, so it fits axum's infallible services. The body
//! work of each layer lives in a body wrapper ([`LimitedBody`](limit::LimitedBody),
//! [`ThrottledBody`](rate_limit::ThrottledBody), [`SniffBody`](sniff::SniffBody),
//! [`HashBody`](hash::HashBody), [`ProgressBody`](progress::ProgressBody)) that protocol
//! handlers apply to inner streams too — each file of a multipart form is sniffed, limited and
//! hashed on its own with the same code.
//!
//! # Order
//!
//! [`Uploads`] stacks them, from the outside in:
//!
//! ```text
//! body idle timeout → rate limit → size limit → sniff → hash → progress → handler → storage
//! ```
//!
//! - **Cheap rejections first.** The rate limit and the declared-size check decide from headers
//!   alone; a refused request costs no body bytes and no storage. The rate limit goes first so
//!   that even requests refused for their size count against the client's quota, and its byte
//!   throttle paces the body before anything else reads it.
//! - **Size before content.** The size limit wraps the body before sniffing reads its first 8 KiB,
//!   so a chunked body is cut off at the limit whichever layer is reading.
//! - **Content decisions before storage.** Sniffing holds the first bytes back until the policy has
//!   decided; a refused file never reaches a store.
//! - **Hash and progress next to storage,** so they measure exactly the bytes that are stored
//!   (after throttling, after the sniffed prefix is replayed). A digest mismatch is found when the
//!   body ends, while the store still holds the bytes as an unfinished upload: the store aborts,
//!   nothing is committed.
//! - The idle timeout sits outermost so that it watches the network, not our own buffering.
//!
//! Swapping sniff and hash would hash bytes that may be refused; putting the size limit inside
//! sniffing would let sniffing read past the limit; putting progress outside the limit would
//! report bytes that were never accepted.
//!
//! # Storage
//!
//! [`storage::Store`] is key-addressed bytes with a small required core (an atomic one-shot
//! `put`, `get` with a range, `head`, `delete`, `list`) and capabilities as traits of their own:
//! [`storage::ResumableStore`] for uploads that grow over many requests (tus, the draft), with
//! [`storage::ReadBack`] to read them back. A store keeps bytes only: what a file is (name,
//! type, owner, digests) is a row of the catalog in the state store ([`state::FileRecord`]),
//! whose insertion is the file's commit point. [`storage::LocalDisk`] (the default) keeps one
//! file per object and makes it appear by an atomic rename; [`storage::InMemory`] is for tests.
//! Every backend passes [`storage::conformance::run`]. The server always chooses the key
//! (`{tenant prefix}/{id}`, the id 128 random bits); a client's file name is sanitised metadata
//! ([`filename::sanitize`]), never a path.
//!
//! # Resumable uploads
//!
//! tus, the IETF draft and the chunked API keep each upload's state — length, metadata, expiry,
//! the whole-upload hash so far, chunks received — in a [`state::StateStore`] (an embedded
//! [redb](state::RedbState) file by default, so uploads resume after a crash or restart), and
//! one request at a time writes to an upload through a [`state::Locker`]. A
//! [sweeper](state::sweep::Sweeper) removes uploads left unfinished past their expiry.
//! [`hooks`] let the app refuse or rewrite uploads at creation, authorise every later request,
//! and hear about finished and cancelled ones; [`cors::cors_layer`] lets browsers on other
//! origins use all of it.
//!
//! # Without axum's router
//!
//! [`StoreService`] stores each request body as one object; with the layers in a
//! `tower::ServiceBuilder` it is a complete upload service for hyper (see
//! `examples/hyper_layers.rs`).
//!
//! # Cargo features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `router` | yes | [`Uploads`], [`uploads_router`] and every layer below |
//! | `local-disk` | yes | [`storage::LocalDisk`] |
//! | `limit` | via `router` | [`limit`] |
//! | `rate-limit` | via `router` | [`rate_limit`] (governor) |
//! | `sniff` | via `router` | [`sniff`] (infer, mime_guess) |
//! | `hash` | via `router` | [`hash`]: SHA-256, SHA-512, SHA-1, MD5, CRC32C |
//! | `blake3` | no | BLAKE3 in [`hash`] |
//! | `progress` | via `router` | [`progress`] |
//! | `redb` | yes | [`state::RedbState`], the embedded state store |
#![deny(unsafe_code)]
// Shared plumbing (the common response future, the tripwire) is unused in some feature subsets.
#![cfg_attr(not(all(feature = "limit", feature = "hash", feature = "rate-limit")), allow(dead_code, unused_imports))]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

/// `get_ref`, `get_mut` and `into_inner` for a middleware whose wrapped service is `inner: S`.
#[allow(unused_macros)] // no middleware in some feature subsets
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
#[allow(unused_imports)]
pub(crate) use inner_service_accessors;

/// Entry points for the fuzz targets in `fuzz/`; not part of the API.
#[cfg(all(feature = "router", any(fuzzing, test)))]
#[doc(hidden)]
#[path = "fuzz_api.rs"]
pub mod __fuzz;
pub mod body;
#[cfg(feature = "router")]
mod config;
#[cfg(feature = "router")]
mod context;
#[cfg(feature = "router")]
pub mod cors;
pub mod declared;
pub mod error;
pub mod filename;
#[cfg(feature = "router")]
mod files;
mod future;
#[cfg(feature = "hash")]
pub mod hash;
pub mod hooks;
mod id;
mod ingest;
#[cfg(feature = "limit")]
pub mod limit;
#[cfg(feature = "progress")]
pub mod progress;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "router")]
mod resumable;
#[cfg(feature = "router")]
mod router;
pub mod serve;
#[cfg(feature = "sniff")]
pub mod sniff;
pub mod state;
pub mod storage;
#[cfg(test)]
mod test_util;
#[cfg(feature = "router")]
pub mod tus;
#[cfg(feature = "router")]
pub mod urls;

#[cfg(feature = "router")]
pub use config::{FormLimits, UploadConfig};
pub use error::{BoxError, Problem};
pub use id::UploadId;
pub use ingest::{StoreService, UploadResponse, UploadedFile, store_body};
#[cfg(feature = "router")]
pub use router::Uploads;
#[cfg(all(feature = "router", feature = "local-disk"))]
pub use router::uploads_router;
