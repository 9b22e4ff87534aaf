//! Errors as HTTP responses: every rejection is an RFC 9457 `application/problem+json` document
//! with a stable, machine-readable `code`.
//!
//! Every code this crate answers with is one row of [`CODES`], a table of data (like tusd's
//! `error.go`): its status and title never vary, so a code never means two things. A problem
//! with one of these codes takes its title from the table; codes of your own (raised by hooks)
//! are yours to choose. The table below is [`CODES`], with where each code is raised.
//!
//! | code | status | title | raised by |
//! |---|---|---|---|
//! | `body_too_large` | 413 | Body too large | [`limit`](crate::limit): declared or streamed length over the limit |
//! | `invalid_length` | 400 | Invalid length | [`limit`](crate::limit): a `Content-Length`/`Upload-Length` that is not a byte count |
//! | `length_mismatch` | 400 | Length mismatch | a body longer or shorter than its `Content-Length` |
//! | `incomplete_body` | 400 | Incomplete body | the client stopped sending before the body ended |
//! | `body_timeout` | 408 | Body timed out | the body stalled longer than the idle timeout |
//! | `rate_limited` | 429 | Too many requests | [`rate_limit`](crate::rate_limit): too many requests (with `Retry-After`) |
//! | `client_unidentified` | 500 | Client not identified | [`rate_limit`](crate::rate_limit): no peer address to key on (server misconfigured) |
//! | `content_type_mismatch` | 415 | Content does not match its declared type | [`sniff`](crate::sniff) |
//! | `content_not_allowed` | 415 | Content type not allowed | [`sniff`](crate::sniff) |
//! | `content_denied` | 415 | Content type denied | [`sniff`](crate::sniff) |
//! | `executable_content` | 415 | Executable content | [`sniff`](crate::sniff) |
//! | `script_content` | 415 | Script in media | [`sniff`](crate::sniff) |
//! | `active_content` | 415 | Active content in markup | [`sniff`](crate::sniff): active content in markup stored as a media type (e.g. SVG `onload=`, `<script>`, `javascript:` URLs), or markup that cannot be tokenized |
//! | `invalid_markup` | 415 | Markup that cannot be checked | [`sniff`](crate::sniff): active content in markup stored as a media type (e.g. SVG `onload=`, `<script>`, `javascript:` URLs), or markup that cannot be tokenized |
//! | `markup_too_large` | 413 | Markup too large to check | [`sniff`](crate::sniff): an SVG (or other markup stored as media) longer than `ContentPolicy::markup_scan_limit` |
//! | `digest_mismatch` | 400 | Digest mismatch | [`hash`](crate::hash): the body does not match the client's digest |
//! | `invalid_digest` | 400 | Invalid digest header | [`hash`](crate::hash): a malformed `Content-Digest`, `Repr-Digest` or `Content-MD5` |
//! | `invalid_progress_id` | 400 | Invalid progress id | [`progress`](crate::progress): not 8–64 of `[A-Za-z0-9_-]` |
//! | `progress_id_in_use` | 409 | Progress id in use | [`progress`](crate::progress): another upload in flight uses the id |
//! | `progress_capacity` | 503 | Too many uploads tracked | [`progress`](crate::progress): too many uploads tracked |
//! | `too_many_subscriptions` | 429 | Too many progress subscriptions | [`progress`](crate::progress): one client waits for too many uploads (`ProgressHub::waiting_per_client`) |
//! | `upload_not_found` | 404 | Upload or file not found | storage: unknown or unfinished id |
//! | `offset_mismatch` | 409 | Offset mismatch | storage |
//! | `upload_incomplete` | 409 | Upload incomplete | storage |
//! | `length_exceeded` | 413 | Declared length exceeded | storage |
//! | `upload_locked` | 423 | Upload locked | storage |
//! | `invalid_range` | 416 | Range not satisfiable | download: a range outside the file |
//! | `storage_error` | 500 | Storage failed | storage: the backend failed (details are logged, not shown) |
//! | `storage_unavailable` | 503 | Storage unavailable | storage: the backend is unreachable or refusing for now (with `Retry-After`) |
//! | `storage_refused` | 502 | Storage refused | storage: a remote backend (S3) refused the request for good: wrong credentials, a missing bucket (its answer is logged) |
//! | `not_supported` | 501 | Not supported by the storage | storage: the backend lacks an optional operation |
//! | `not_multipart` | 415 | Not multipart/form-data | form: the body is not `multipart/form-data` |
//! | `multipart_body` | 415 | Multipart body where a file is expected | raw / [`store_body`](crate::store_body): a `multipart/*` body where the file itself is expected |
//! | `missing_boundary` | 400 | Missing multipart boundary | form |
//! | `invalid_multipart` | 400 | Malformed multipart body | form |
//! | `no_files` | 400 | No file in the form | form |
//! | `too_many_parts` | 413 | Too many form parts | form limits |
//! | `too_many_files` | 413 | Too many files in the form | form limits |
//! | `field_too_large` | 413 | Form field too large | form limits |
//! | `part_headers_too_large` | 413 | Part headers too large | form limits |
//! | `method_not_allowed` | 405 | Method not allowed | [`StoreService`](crate::StoreService): not `POST`/`PUT` |
//! | `invalid_json` | 400 | Invalid JSON | chunked: an `init` body that is not JSON, lacks a member, names no usable file, or needs over 10 000 chunks |
//! | `invalid_init` | 400 | Invalid init request | chunked: an `init` body that is not JSON, lacks a member, names no usable file, or needs over 10 000 chunks |
//! | `invalid_filename` | 400 | Unusable file name | chunked: an `init` body that is not JSON, lacks a member, names no usable file, or needs over 10 000 chunks |
//! | `too_many_chunks` | 400 | Too many chunks | chunked: an `init` body that is not JSON, lacks a member, names no usable file, or needs over 10 000 chunks |
//! | `invalid_chunk_size` | 400 | Wrong chunk size | chunked: a `chunk_size` out of range, or a chunk not exactly its expected size |
//! | `invalid_chunk` | 400 | No such chunk | chunked: `?chunk=` outside the upload, no `?upload_id=` |
//! | `missing_upload_id` | 400 | Missing upload id | chunked: `?chunk=` outside the upload, no `?upload_id=` |
//! | `chunks_missing` | 409 | Chunks missing | chunked: `complete` before every chunk arrived (lists `missing_chunks`) |
//! | `upload_finished` | 409 | Upload already complete | chunked: a chunk for an upload already completed |
//! | `upload_expired` | 410 | Upload expired | resumable: the upload expired (until swept; then `upload_not_found`) |
//! | `upload_interrupted` | 423 | Upload taken over | resumable: a newer request took the upload over while this one stalled |
//! | `state_error` | 500 | Upload state failed | resumable: the state store or locker failed (details are logged) |
//! | `unsupported_version` | 412 | Unsupported tus version | tus: no `Tus-Resumable: 1.0.0` (with `Tus-Version`) |
//! | `missing_length` | 400 | Missing upload length | tus: length and offset headers missing, malformed or contradicting the upload |
//! | `invalid_header` | 400 | Invalid header | tus: length and offset headers missing, malformed or contradicting the upload |
//! | `missing_offset` | 400 | Missing upload offset | tus: length and offset headers missing, malformed or contradicting the upload |
//! | `invalid_metadata` | 400 | Invalid Upload-Metadata | tus: `Upload-Metadata` that is not `key base64` pairs with unique keys |
//! | `metadata_too_large` | 413 | Upload-Metadata too large | tus: `Upload-Metadata` over `MetadataLimits` (16 KiB, 64 keys by default) |
//! | `too_many_metadata_keys` | 413 | Too many Upload-Metadata keys | tus: `Upload-Metadata` over `MetadataLimits` (16 KiB, 64 keys by default) |
//! | `invalid_checksum` | 400 | Invalid Upload-Checksum | tus: a malformed `Upload-Checksum`, or an algorithm other than sha1, sha256, md5, crc32 |
//! | `unsupported_checksum` | 400 | Unsupported checksum algorithm | tus: a malformed `Upload-Checksum`, or an algorithm other than sha1, sha256, md5, crc32 |
//! | `checksum_mismatch` | 460 | Checksum mismatch | tus: the bytes do not match `Upload-Checksum`; nothing was appended |
//! | `invalid_concat` | 400 | Invalid Upload-Concat | tus concatenation: a malformed `Upload-Concat`, or parts that are not finished partial uploads |
//! | `not_partial` | 400 | Not a partial upload | tus concatenation: a malformed `Upload-Concat`, or parts that are not finished partial uploads |
//! | `partial_unfinished` | 400 | Partial upload unfinished | tus concatenation: a malformed `Upload-Concat`, or parts that are not finished partial uploads |
//! | `duplicate_partial` | 400 | Partial upload named twice | tus concatenation: a final upload naming a partial upload twice |
//! | `too_many_partials` | 400 | Too many partial uploads | tus concatenation: more partial uploads than `Uploads::max_concat_parts` |
//! | `final_upload` | 403 | Final upload is not appendable | tus: a `PATCH` to a final (concatenated) upload |
//! | `invalid_content_type` | 415 | Wrong Content-Type for an append | tus / draft: a `PATCH` without `application/offset+octet-stream` / `application/partial-upload` |
//! | `unsupported_interop_version` | 400 | Unsupported draft interop version | IETF draft: an interop version other than 5–9, no `Upload-Complete` |
//! | `missing_upload_complete` | 400 | Missing Upload-Complete | IETF draft: an interop version other than 5–9, no `Upload-Complete` |
//! | `inconsistent_length` | 400 | Inconsistent upload length | IETF draft (problem types `inconsistent-upload-length`, `completed-upload`) |
//! | `upload_completed` | 400 | Upload already completed | IETF draft (problem types `inconsistent-upload-length`, `completed-upload`) |
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;
use std::{borrow::Cow, error::Error as StdError, fmt};

/// The error type of bodies and services in this crate.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// One problem code of this crate: its status and title never vary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode {
    /// The machine-readable `code` member.
    pub code: &'static str,
    /// The HTTP status it is always answered with.
    pub status: u16,
    /// The problem's `title`: a short summary that does not vary between occurrences.
    pub title: &'static str,
}

/// Every problem code this crate answers with (see the [module docs](self)).
pub const CODES: &[ErrorCode] = &[
    ErrorCode { code: "body_too_large", status: 413, title: "Body too large" },
    ErrorCode { code: "invalid_length", status: 400, title: "Invalid length" },
    ErrorCode { code: "length_mismatch", status: 400, title: "Length mismatch" },
    ErrorCode { code: "incomplete_body", status: 400, title: "Incomplete body" },
    ErrorCode { code: "body_timeout", status: 408, title: "Body timed out" },
    ErrorCode { code: "rate_limited", status: 429, title: "Too many requests" },
    ErrorCode { code: "client_unidentified", status: 500, title: "Client not identified" },
    ErrorCode { code: "content_type_mismatch", status: 415, title: "Content does not match its declared type" },
    ErrorCode { code: "content_not_allowed", status: 415, title: "Content type not allowed" },
    ErrorCode { code: "content_denied", status: 415, title: "Content type denied" },
    ErrorCode { code: "executable_content", status: 415, title: "Executable content" },
    ErrorCode { code: "script_content", status: 415, title: "Script in media" },
    ErrorCode { code: "active_content", status: 415, title: "Active content in markup" },
    ErrorCode { code: "invalid_markup", status: 415, title: "Markup that cannot be checked" },
    ErrorCode { code: "markup_too_large", status: 413, title: "Markup too large to check" },
    ErrorCode { code: "digest_mismatch", status: 400, title: "Digest mismatch" },
    ErrorCode { code: "invalid_digest", status: 400, title: "Invalid digest header" },
    ErrorCode { code: "invalid_progress_id", status: 400, title: "Invalid progress id" },
    ErrorCode { code: "progress_id_in_use", status: 409, title: "Progress id in use" },
    ErrorCode { code: "progress_capacity", status: 503, title: "Too many uploads tracked" },
    ErrorCode { code: "too_many_subscriptions", status: 429, title: "Too many progress subscriptions" },
    ErrorCode { code: "upload_not_found", status: 404, title: "Upload or file not found" },
    ErrorCode { code: "offset_mismatch", status: 409, title: "Offset mismatch" },
    ErrorCode { code: "upload_incomplete", status: 409, title: "Upload incomplete" },
    ErrorCode { code: "length_exceeded", status: 413, title: "Declared length exceeded" },
    ErrorCode { code: "upload_locked", status: 423, title: "Upload locked" },
    ErrorCode { code: "invalid_range", status: 416, title: "Range not satisfiable" },
    ErrorCode { code: "storage_error", status: 500, title: "Storage failed" },
    ErrorCode { code: "storage_unavailable", status: 503, title: "Storage unavailable" },
    ErrorCode { code: "storage_refused", status: 502, title: "Storage refused" },
    ErrorCode { code: "not_supported", status: 501, title: "Not supported by the storage" },
    ErrorCode { code: "not_multipart", status: 415, title: "Not multipart/form-data" },
    ErrorCode { code: "multipart_body", status: 415, title: "Multipart body where a file is expected" },
    ErrorCode { code: "missing_boundary", status: 400, title: "Missing multipart boundary" },
    ErrorCode { code: "invalid_multipart", status: 400, title: "Malformed multipart body" },
    ErrorCode { code: "no_files", status: 400, title: "No file in the form" },
    ErrorCode { code: "too_many_parts", status: 413, title: "Too many form parts" },
    ErrorCode { code: "too_many_files", status: 413, title: "Too many files in the form" },
    ErrorCode { code: "field_too_large", status: 413, title: "Form field too large" },
    ErrorCode { code: "part_headers_too_large", status: 413, title: "Part headers too large" },
    ErrorCode { code: "method_not_allowed", status: 405, title: "Method not allowed" },
    ErrorCode { code: "invalid_json", status: 400, title: "Invalid JSON" },
    ErrorCode { code: "invalid_init", status: 400, title: "Invalid init request" },
    ErrorCode { code: "invalid_filename", status: 400, title: "Unusable file name" },
    ErrorCode { code: "too_many_chunks", status: 400, title: "Too many chunks" },
    ErrorCode { code: "invalid_chunk_size", status: 400, title: "Wrong chunk size" },
    ErrorCode { code: "invalid_chunk", status: 400, title: "No such chunk" },
    ErrorCode { code: "missing_upload_id", status: 400, title: "Missing upload id" },
    ErrorCode { code: "chunks_missing", status: 409, title: "Chunks missing" },
    ErrorCode { code: "upload_finished", status: 409, title: "Upload already complete" },
    ErrorCode { code: "upload_expired", status: 410, title: "Upload expired" },
    ErrorCode { code: "upload_interrupted", status: 423, title: "Upload taken over" },
    ErrorCode { code: "state_error", status: 500, title: "Upload state failed" },
    ErrorCode { code: "unsupported_version", status: 412, title: "Unsupported tus version" },
    ErrorCode { code: "missing_length", status: 400, title: "Missing upload length" },
    ErrorCode { code: "invalid_header", status: 400, title: "Invalid header" },
    ErrorCode { code: "missing_offset", status: 400, title: "Missing upload offset" },
    ErrorCode { code: "invalid_metadata", status: 400, title: "Invalid Upload-Metadata" },
    ErrorCode { code: "metadata_too_large", status: 413, title: "Upload-Metadata too large" },
    ErrorCode { code: "too_many_metadata_keys", status: 413, title: "Too many Upload-Metadata keys" },
    ErrorCode { code: "invalid_checksum", status: 400, title: "Invalid Upload-Checksum" },
    ErrorCode { code: "unsupported_checksum", status: 400, title: "Unsupported checksum algorithm" },
    ErrorCode { code: "checksum_mismatch", status: 460, title: "Checksum mismatch" },
    ErrorCode { code: "invalid_concat", status: 400, title: "Invalid Upload-Concat" },
    ErrorCode { code: "not_partial", status: 400, title: "Not a partial upload" },
    ErrorCode { code: "partial_unfinished", status: 400, title: "Partial upload unfinished" },
    ErrorCode { code: "duplicate_partial", status: 400, title: "Partial upload named twice" },
    ErrorCode { code: "too_many_partials", status: 400, title: "Too many partial uploads" },
    ErrorCode { code: "final_upload", status: 403, title: "Final upload is not appendable" },
    ErrorCode { code: "invalid_content_type", status: 415, title: "Wrong Content-Type for an append" },
    ErrorCode { code: "unsupported_interop_version", status: 400, title: "Unsupported draft interop version" },
    ErrorCode { code: "missing_upload_complete", status: 400, title: "Missing Upload-Complete" },
    ErrorCode { code: "inconsistent_length", status: 400, title: "Inconsistent upload length" },
    ErrorCode { code: "upload_completed", status: 400, title: "Upload already completed" },
];

/// The row of [`CODES`] for `code`, if it is one of this crate's.
pub fn lookup(code: &str) -> Option<&'static ErrorCode> {
    CODES.iter().find(|c| c.code == code)
}

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
    ///
    /// A code of this crate's ([`CODES`]) always comes with its own status: that is checked in
    /// debug builds.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        debug_assert!(
            lookup(code).is_none_or(|c| c.status == status.as_u16()),
            "problem code {code} is answered with {}, never {status}",
            lookup(code).map_or(0, |c| c.status)
        );
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
            title: lookup(self.code).map_or_else(|| self.status.canonical_reason().unwrap_or("Error"), |c| c.title),
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

#[cfg(test)]
mod tests {
    use super::{CODES, lookup};
    use std::{collections::BTreeMap, path::Path};

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in CODES {
            assert!(seen.insert(c.code), "{} appears twice in CODES", c.code);
            assert!(http::StatusCode::from_u16(c.status).is_ok(), "{}: {}", c.code, c.status);
        }
    }

    /// The module docs show exactly the table, row by row.
    #[test]
    fn the_documented_table_is_the_table() {
        let source = include_str!("error.rs");
        let documented: Vec<(String, u16, String)> = source
            .lines()
            .filter_map(|l| l.strip_prefix("//! | `"))
            .map(|row| {
                let cells: Vec<&str> = row.split(" | ").collect();
                (cells[0].trim_end_matches('`').to_owned(), cells[1].parse().unwrap(), cells[2].to_owned())
            })
            .collect();
        let table: Vec<(String, u16, String)> = CODES.iter().map(|c| (c.code.to_owned(), c.status, c.title.to_owned())).collect();
        assert_eq!(documented, table);
    }

    /// Every problem this crate's source raises with a literal code is in the table, with the
    /// status the table gives it; and every code in the table is raised somewhere.
    #[test]
    fn every_code_raised_is_in_the_table() {
        fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    // Leave out test modules and comments, whose problems are examples.
                    let code = text.split("#[cfg(test)]").next().unwrap();
                    let text = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
                    out.push((path.display().to_string(), text));
                }
            }
        }
        let mut files = Vec::new();
        sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
        let status_of: BTreeMap<&str, u16> = [
            ("BAD_REQUEST", 400),
            ("FORBIDDEN", 403),
            ("NOT_FOUND", 404),
            ("METHOD_NOT_ALLOWED", 405),
            ("REQUEST_TIMEOUT", 408),
            ("CONFLICT", 409),
            ("GONE", 410),
            ("PRECONDITION_FAILED", 412),
            ("PAYLOAD_TOO_LARGE", 413),
            ("UNSUPPORTED_MEDIA_TYPE", 415),
            ("RANGE_NOT_SATISFIABLE", 416),
            ("LOCKED", 423),
            ("TOO_MANY_REQUESTS", 429),
            ("INTERNAL_SERVER_ERROR", 500),
            ("NOT_IMPLEMENTED", 501),
            ("BAD_GATEWAY", 502),
            ("SERVICE_UNAVAILABLE", 503),
        ]
        .into();
        let mut raised = std::collections::HashSet::new();
        let mut wrong = Vec::new();
        for (path, text) in &files {
            let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            // `Problem::new(StatusCode::X, "code"`, and the `bad("code"` helpers (400).
            for (pattern, fixed) in
                [("Problem::new( StatusCode::", None), ("Problem::new(StatusCode::", None), ("bad(\"", Some(400))]
            {
                for (at, _) in flat.match_indices(pattern) {
                    let rest = &flat[at + pattern.len()..];
                    let (status, rest) = match fixed {
                        Some(status) => (Some(status), rest),
                        None => {
                            let name: String = rest.chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
                            // Only a literal code: `bad(code, ...)` and its like pass a variable on.
                            let Some(rest) = rest[name.len()..].strip_prefix(", \"") else { continue };
                            (status_of.get(name.as_str()).copied(), rest)
                        }
                    };
                    let code: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    if code.is_empty() {
                        continue;
                    }
                    raised.insert(code.clone());
                    match (lookup(&code), status) {
                        (None, _) => wrong.push(format!("{path}: {code} is not in CODES")),
                        (Some(row), Some(status)) if row.status != status => {
                            wrong.push(format!("{path}: {code} raised with {status}, the table says {}", row.status))
                        }
                        _ => {}
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        let all: String = files.iter().map(|(_, t)| t.as_str()).collect();
        for c in CODES {
            assert!(all.contains(&format!("\"{}\"", c.code)), "{} is in CODES but never raised", c.code);
        }
        assert!(raised.len() > 50, "the scan finds the crate's problems ({})", raised.len());
    }
}
