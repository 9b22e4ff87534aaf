//! Errors as HTTP responses: every rejection is an RFC 9457 `application/problem+json` document
//! with a stable, machine-readable `code`.
//!
//! | code | status | raised by |
//! |---|---|---|
//! | `body_too_large` | 413 | [`limit`](crate::limit): declared or streamed length over the limit |
//! | `invalid_length` | 400 | [`limit`](crate::limit): a `Content-Length`/`Upload-Length` that is not a byte count |
//! | `length_mismatch` | 400 | a body longer or shorter than its `Content-Length` |
//! | `incomplete_body` | 400 | the client stopped sending before the body ended |
//! | `body_timeout` | 408 | the body stalled longer than the idle timeout |
//! | `rate_limited` | 429 | [`rate_limit`](crate::rate_limit): too many requests (with `Retry-After`) |
//! | `client_unidentified` | 500 | [`rate_limit`](crate::rate_limit): no peer address to key on (server misconfigured) |
//! | `content_type_mismatch`, `content_not_allowed`, `content_denied`, `executable_content`, `script_content` | 415 | [`sniff`](crate::sniff) |
//! | `active_content`, `invalid_markup` | 415 | [`sniff`](crate::sniff): active content in markup stored as a media type (e.g. SVG `onload=`, `<script>`, `javascript:` URLs), or markup that cannot be tokenized |
//! | `markup_too_large` | 413 | [`sniff`](crate::sniff): an SVG (or other markup stored as media) longer than `ContentPolicy::markup_scan_limit` |
//! | `metadata_too_large`, `too_many_metadata_keys` | 413 | tus: `Upload-Metadata` over `MetadataLimits` (16 KiB, 64 keys by default) |
//! | `digest_mismatch` | 400 | [`hash`](crate::hash): the body does not match the client's digest |
//! | `invalid_digest` | 400 | [`hash`](crate::hash): a malformed `Content-Digest`, `Repr-Digest` or `Content-MD5` |
//! | `invalid_progress_id` | 400 | [`progress`](crate::progress): not 8–64 of `[A-Za-z0-9_-]` |
//! | `progress_id_in_use` | 409 | [`progress`](crate::progress): another upload in flight uses the id |
//! | `progress_capacity` | 503 | [`progress`](crate::progress): too many uploads tracked |
//! | `upload_not_found` | 404 | storage: unknown or unfinished id |
//! | `offset_mismatch`, `upload_incomplete`, `length_exceeded`, `upload_locked` | 409 / 409 / 413 / 423 | storage |
//! | `invalid_range` | 416 | download: a range outside the file |
//! | `storage_error` | 500 | storage: the backend failed (details are logged, not shown) |
//! | `not_multipart` | 415 | form: the body is not `multipart/form-data` |
//! | `missing_boundary`, `invalid_multipart`, `no_files` | 400 | form |
//! | `too_many_parts`, `too_many_files`, `field_too_large`, `part_headers_too_large` | 413 | form limits |
//! | `method_not_allowed` | 405 | [`StoreService`](crate::StoreService): not `POST`/`PUT` |
//! | `invalid_json`, `invalid_init`, `invalid_filename`, `too_many_chunks` | 400 | chunked: an `init` body that is not JSON, lacks a member, names no usable file, or needs over 10 000 chunks |
//! | `invalid_chunk_size` | 400 | chunked: a `chunk_size` out of range, or a chunk not exactly its expected size |
//! | `invalid_chunk`, `missing_upload_id` | 400 | chunked: `?chunk=` outside the upload, no `?upload_id=` |
//! | `chunks_missing` | 409 | chunked: `complete` before every chunk arrived (lists `missing_chunks`) |
//! | `upload_finished` | 409 | chunked: a chunk for an upload already completed |
//! | `upload_expired` | 410 | resumable: the upload expired (until swept; then `upload_not_found`) |
//! | `upload_interrupted` | 423 | resumable: a newer request took the upload over while this one stalled |
//! | `state_error` | 500 | resumable: the state store or locker failed (details are logged) |
//! | `not_supported` | 501 | storage: the backend lacks an optional operation |
//! | `unsupported_version` | 412 | tus: no `Tus-Resumable: 1.0.0` (with `Tus-Version`) |
//! | `missing_length`, `invalid_length`, `length_mismatch`, `invalid_header`, `missing_offset` | 400 | tus: length and offset headers missing, malformed or contradicting the upload |
//! | `invalid_metadata` | 400 | tus: `Upload-Metadata` that is not `key base64` pairs with unique keys |
//! | `invalid_checksum`, `unsupported_checksum` | 400 | tus: a malformed `Upload-Checksum`, or an algorithm other than sha1, sha256, md5, crc32 |
//! | `checksum_mismatch` | 460 | tus: the bytes do not match `Upload-Checksum`; nothing was appended |
//! | `invalid_concat`, `not_partial`, `partial_unfinished` | 400 | tus concatenation: a malformed `Upload-Concat`, or parts that are not finished partial uploads |
//! | `final_upload` | 403 | tus: a `PATCH` to a final (concatenated) upload |
//! | `invalid_content_type` | 415 | tus / draft: a `PATCH` without `application/offset+octet-stream` / `application/partial-upload` |
//! | `unsupported_interop_version`, `missing_upload_complete` | 400 | IETF draft: an interop version other than 5–9, no `Upload-Complete` |
//! | `inconsistent_length`, `upload_completed` | 400 | IETF draft (problem types `inconsistent-upload-length`, `completed-upload`) |

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;
use std::{borrow::Cow, error::Error as StdError, fmt};

/// The error type of bodies and services in this crate.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// An RFC 9457 problem: status, stable `code`, human `detail`, and optional extension members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    detail: Cow<'static, str>,
    extensions: Vec<(&'static str, serde_json::Value)>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    type_uri: Option<&'static str>,
}

/// The stable code of a [`Problem`], placed in response extensions by [`Problem::into_http`] so
/// that outer layers (progress, tracing) can tell why a request failed without parsing its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProblemCode(pub &'static str);

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(flatten)]
    extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// A problem with the given status, code and detail message.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self { status, code, detail: detail.into(), extensions: Vec::new(), headers: Vec::new(), type_uri: None }
    }

    /// Adds an extension member to the JSON document (e.g. `"limit": 1048576`).
    pub fn with(mut self, key: &'static str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.push((key, value.into()));
        self
    }

    /// Sets the problem `type` to a registered URI (e.g. one of the IETF resumable-upload
    /// problem types) instead of `urn:intake:problem:{code}`.
    pub fn with_type(mut self, uri: &'static str) -> Self {
        self.type_uri = Some(uri);
        self
    }

    /// Adds a response header (e.g. `Retry-After`).
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The human-readable explanation.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The extension member `key`, if set.
    pub fn extension(&self, key: &str) -> Option<&serde_json::Value> {
        self.extensions.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The JSON document of this problem.
    pub fn to_json(&self) -> Vec<u8> {
        let body = ProblemBody {
            kind: self.type_uri.map_or_else(|| format!("urn:intake:problem:{}", self.code), str::to_owned),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            extensions: self.extensions.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        };
        serde_json::to_vec(&body).expect("a problem always serialises")
    }

    /// Renders the problem as an `application/problem+json` response.
    pub fn into_http(self) -> Response<Full<Bytes>> {
        let mut res = Response::new(Full::new(Bytes::from(self.to_json())));
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        res.extensions_mut().insert(ProblemCode(self.code));
        res
    }

    /// Recognises the errors that the layers of this crate, hyper and tower-http raise while a
    /// body is read (walking the `source()` chain), and describes them as a problem.
    ///
    /// Unknown errors become `400 incomplete_body`: a body that fails to read is the client's
    /// stream breaking, not a fault of the server.
    pub fn from_body_error(err: &(dyn StdError + 'static)) -> Problem {
        let mut current: Option<&(dyn StdError + 'static)> = Some(err);
        while let Some(e) = current {
            if let Some(p) = e.downcast_ref::<Problem>() {
                return p.clone();
            }
            if let Some(p) = e.downcast_ref::<BodyRejection>() {
                return p.0.clone();
            }
            if e.is::<tower_http::timeout::TimeoutError>() {
                return Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the request body stalled for longer than the server's idle timeout",
                );
            }
            if let Some(p) = e.downcast_ref::<crate::storage::StoreError>() {
                return p.to_problem();
            }
            current = e.source();
        }
        Problem::new(StatusCode::BAD_REQUEST, "incomplete_body", format!("the request body could not be read to its end: {err}"))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status.as_u16(), self.detail)
    }
}

impl StdError for Problem {}

impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        self.into_http().map(axum::body::Body::new)
    }
}

/// The error a body wrapper of this crate yields when it refuses the bytes passing through it
/// (too long, wrong digest, refused content). It carries the [`Problem`] the client should see;
/// recognise it with [`Problem::from_body_error`].
#[derive(Clone, Debug)]
pub struct BodyRejection(pub Problem);

impl fmt::Display for BodyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for BodyRejection {}
