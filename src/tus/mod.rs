//! tus 1.0 resumable uploads, and the IETF "Resumable Uploads for HTTP" draft at the same
//! endpoint, served under `{prefix}/tus/` by the [upload router](crate::Uploads).
//!
//! | extension | notes |
//! |---|---|
//! | core | `HEAD`, `PATCH`, `OPTIONS`; `409` on an offset mismatch, `412` on another version |
//! | `creation`, `creation-with-upload`, `creation-defer-length` | `Upload-Length` up to `Tus-Max-Size` (the router's raw body limit) |
//! | `expiration` | `Upload-Expires` on every answer about an unfinished upload; expired uploads answer `410`, then `404` once swept |
//! | `checksum` | `Upload-Checksum` with `sha1`, `sha256`, `md5`, `crc32`; `460` on a mismatch, with nothing appended (advertised when the store keeps [resumable uploads](crate::storage::ResumableStore), which can cut an append back; `checksum-trailer` when it can also [read them back](crate::storage::ReadBack)) |
//! | `termination` | `DELETE` of an unfinished or finished upload |
//! | `concatenation` | `partial` and `final` uploads; a final upload is assembled when created, from finished partial uploads only (`concatenation-unfinished` is not offered) |
//!
//! `GET` on a finished upload downloads it, with `Range`. Clients that cannot send `PATCH` may
//! send `POST` with `X-HTTP-Method-Override: PATCH` (or `DELETE`).
//!
//! The layers apply here too: the rate and size limits around every request (`Upload-Length`
//! over the limit is refused before anything is created); the upload's first bytes are sniffed
//! against the content policy when they arrive (offset 0); one whole-upload hash (SHA-256 by
//! default) is carried across `PATCH` requests — its state is saved with the upload's record, so
//! it continues in another process after a restart — and its digest is stored with the file;
//! progress is published under the upload's id, so `GET {prefix}/progress/{id}` follows it.
//!
//! One request writes to an upload at a time: a second `PATCH` waits for the first, asks it to
//! let go if it has stalled (a client that lost its connection and retried), and answers `423`
//! if it does not. Bytes never interleave.
//!
//! Errors are `application/problem+json` with a stable `code` (see [`crate::error`]), with the
//! statuses the tus specification fixes.

mod common;
pub(crate) mod draft;
mod handler;
pub(crate) mod headers;

use crate::context::AppState;
use axum::{
    extract::{Path, Request, State},
    response::Response,
};
use http::{HeaderMap, Method};

/// Whether a request speaks the IETF draft (it names an interop version) rather than tus.
fn is_draft(headers: &HeaderMap) -> bool {
    headers.contains_key(draft::INTEROP_VERSION)
}

/// `OPTIONS {prefix}/tus/`: what this server offers, in the protocol the request speaks.
pub(crate) async fn options(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if is_draft(&headers) { draft::options(&app, &headers) } else { handler::options(&app) }
}

/// `POST {prefix}/tus/`: creates an upload.
pub(crate) async fn create(State(app): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if is_draft(&parts.headers) { draft::create(&app, parts, body).await } else { handler::create(&app, parts, body).await }
}

/// `{prefix}/tus/{id}`: `HEAD`, `PATCH`, `GET`, `DELETE`, `OPTIONS` (and `POST` with
/// `X-HTTP-Method-Override`).
pub(crate) async fn upload(State(app): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    if parts.method == Method::POST {
        if let Some(method) = parts.headers.get("x-http-method-override").and_then(|v| Method::from_bytes(v.as_bytes()).ok()) {
            parts.method = method;
        }
    }
    if parts.method == Method::OPTIONS {
        return options(State(app), parts.headers).await;
    }
    if is_draft(&parts.headers) {
        draft::upload(&app, &id, parts, body).await
    } else {
        handler::upload(&app, &id, parts, body).await
    }
}
pub use crate::config::MetadataLimits;
