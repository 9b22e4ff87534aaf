//! The IETF "Resumable Uploads for HTTP" draft (draft-ietf-httpbis-resumable-upload), interop
//! versions 5 to 9, at the tus endpoint. A request is a draft request when it carries
//! `Upload-Draft-Interop-Version`; every answer names the version it was asked in.
//!
//! hyper cannot send `104 Upload Resumption Supported`, so a client learns the upload's URL
//! from the final response only: the `201` answering a creation with `Upload-Complete: ?0`
//! (the draft's "careful creation": create with no or some content, then append with `PATCH`),
//! or the `Location` header on a failed creation's error response when the connection survived.
//! A client that sends a whole file in one creation request and loses the connection cannot
//! resume it, and starts again.
//!
//! # Interop versions
//!
//! | version | drafts | clients |
//! |---|---|---|
//! | 5 | -03 | tus-js-client 5 `protocol: 'ietf-draft-03'` |
//! | 6 | -04, -05 | tus-js-client 5 `protocol: 'ietf-draft-05'` |
//! | 7 | -06 to -08 | |
//! | 8 | -09 to -11 | |
//! | 9 | -12 on (httpwg/http-extensions PR #3476) | |
//!
//! What all of them share: a creation is a `POST` with `Upload-Complete`; `?0` answers `201` with
//! `Location`, `Upload-Offset` and `Upload-Complete: ?0`; a request whose `?1` completes the upload
//! answers `200` with the stored file (`{"files": [...]}`), `Upload-Complete: ?1` and
//! `Upload-Offset`; `HEAD` answers `204` with `Upload-Offset`, `Upload-Complete`, `Upload-Length`
//! (once known) and `Cache-Control: no-store`; `PATCH` appends at `Upload-Offset` (`409` with the
//! `mismatching-upload-offset` problem, `Upload-Offset` and `Upload-Complete: ?0` otherwise);
//! only `Upload-Complete: ?1` completes an upload, never reaching its length; `DELETE` answers
//! `204`. `Upload-Length` is honoured in every version (tus-js-client sends it with -03 too, which
//! does not define it), and a length that contradicts another answers `400`
//! (`inconsistent-upload-length`).
//!
//! What differs, as the server sees it (the [`INTEROP`] table):
//!
//! | | 5 | 6 | 7 | 8 | 9 |
//! |---|---|---|---|---|---|
//! | append media type | any (-03 has none) | `application/partial-upload`, else `415` | same | same | same |
//! | `Upload-Limit` | not sent (-03 has no such header) | `min-size`, `max-size`, lifetime as `expires` | lifetime as `max-age` (-06) | same | same, plus on `413` answers |
//! | append leaving the upload incomplete | `201` (-03, -05: "MUST … `201 (Created)`") | `201` | `204` (-06: any `2xx`) | `204` | `204` |
//! | `HEAD` with `Upload-Offset`, `Upload-Complete` | `400` (-03 MUST) | `400`, also `Upload-Length` (-05) | ignored | ignored | ignored |
//! | `DELETE` with `Upload-Offset`, `Upload-Complete` | `400` (-03 MUST) | `400` | ignored | ignored | ignored |
//! | `OPTIONS` | version only | `Upload-Limit` (-05), `Accept-Patch` | same | same (-10, -11: `Accept-Patch` MUST) | `Upload-Limit`, no `Accept-Patch` |
//! | `GET` on the upload | the file's download (no part of the draft) | same | same | same | offset retrieval, as `HEAD` |
//! | refused creation or append | `Upload-Complete: ?0` on `409` and on refusals after the upload was created | same | same | same | `Upload-Complete: ?0` on every refusal |
//! | append to a completed upload | `400`: `inconsistent-upload-length` with content, else `completed-upload` | same | same | same | see below |
//!
//! What -12 (interop 9) changed since -11, each server-visible point and what intake does:
//! 1. `OPTIONS` (PRs #3440, #3444): the `Accept-Patch` requirement of -10/-11 is reverted;
//!    `Upload-Limit` becomes a MUST for a resource that can create uploads, `min-size=0` when no
//!    limit applies. intake sends `Upload-Limit` and no `Accept-Patch`.
//! 2. `Upload-Complete` in responses (PR #3404): an upload is completed by the client, or by a
//!    response carrying `Upload-Complete: ?1`; in an answer to a creation or append `?1` means the
//!    answer is the target resource's (it processed the representation) and `?0` the resumable
//!    upload's; the server SHOULD send it on these answers, MUST send `?0` with `409`; `HEAD`'s
//!    says whether a final response was produced. intake sends `?0` on every refused creation
//!    or append (nothing of the upload is lost and it can be resumed), `?1` only with the final
//!    response.
//! 3. Completed uploads (PRs #3404, #3405): the `completed-upload` problem type and the rules
//!    for appending to a completed upload are gone; a server may replay the final response to a
//!    valid append to a completed upload, and answer `Upload-Complete: ?0` to an invalid one.
//!    intake answers an empty `?1` append at the upload's end with the final response again
//!    (`200`, the file, `Upload-Complete: ?1`), so a client that lost it gets it back; content
//!    for a completed upload is `400` `inconsistent-upload-length`, another offset `409`, an
//!    empty `?0` append `400` `upload_completed` (intake's own problem type), all with `?0`.
//! 4. `GET` on the upload resource (PR #3467): `HEAD` or `GET` retrieves the offset, with the
//!    same header fields; content in the answer means nothing. intake answers a `GET` in
//!    version 9 exactly like `HEAD` (`204`, no content).
//! 5. Limits (PRs #3407, #3408, #3460): `min-size` is the size from which resumable uploads are
//!    offered (smaller ones may be accepted without resumption); `min-append-size` and
//!    `max-append-size` apply to creations with content too, except empty creations and `?1`
//!    requests; `min-size` and `min-append-size` SHOULD NOT increase, `max-age`'s implied end
//!    SHOULD NOT come earlier. intake sends `min-size=0` and `max-size` only: every upload is
//!    resumable and no per-request size applies besides `max-size`; an upload expires a fixed
//!    time after its last request, so the end `max-age` implies only moves later.
//! 6. `413` (PR #3312): an answer `413` caused by the upload limits SHOULD carry
//!    `Upload-Limit`. intake's does in version 9, except a `413` the router's body limit gives
//!    before the request reaches this handler (a `Content-Length` over `max-size`).
//! 7. Offsets count bytes "processed", not "received" (PR #3293): intake's offset has always
//!    been the bytes stored. The rest of -12 (clients may meet a greater offset, incremental
//!    delivery, editorial changes) asks nothing new of a server.

use super::common::{SETTLE, check_max, get, terminate, upload_url};
use super::headers::bad;
use crate::{
    context::AppState,
    error::Problem,
    hooks::CreateRequest,
    ingest::{UploadResponse, UploadedFile},
    resumable::{AppendOptions, Appended},
    state::{Concat, Protocol},
    storage::FileMeta,
    urls::files_url,
};
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts};

pub(crate) const INTEROP_VERSION: &str = "upload-draft-interop-version";
const UPLOAD_COMPLETE: &str = "upload-complete";
const UPLOAD_OFFSET: &str = "upload-offset";
const UPLOAD_LENGTH: &str = "upload-length";
const UPLOAD_LIMIT: &str = "upload-limit";
const PARTIAL_UPLOAD: &str = "application/partial-upload";
const MISMATCHING_OFFSET: &str = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset";
const COMPLETED_UPLOAD: &str = "https://iana.org/assignments/http-problem-types#completed-upload";
const INCONSISTENT_LENGTH: &str = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length";

/// What one interop version asks of the server, where versions differ (see the module docs).
#[derive(Clone, Copy, Debug)]
struct Interop {
    version: i64,
    /// The name of `Upload-Limit`'s lifetime member; `None` where the header does not exist (-03).
    lifetime: Option<&'static str>,
    /// An append that leaves the upload incomplete answers `201 Created` (-03 to -05).
    created_on_append: bool,
    /// Appends carry `application/partial-upload` (from -04).
    partial_upload: bool,
    /// `OPTIONS` lists `Accept-Patch: application/partial-upload` (-04 to -11).
    accept_patch: bool,
    /// Header fields a `HEAD` must not carry (-03 to -05).
    head_refuses: &'static [&'static str],
    /// Header fields a `DELETE` must not carry (-03 to -05).
    delete_refuses: &'static [&'static str],
    /// -12 on: `Upload-Complete` says whose answer a response is, `GET` retrieves the offset, and
    /// a completed upload may replay its final response.
    server_side_complete: bool,
}

const INTEROP: [Interop; 5] = [
    Interop {
        version: 5,
        lifetime: None,
        created_on_append: true,
        partial_upload: false,
        accept_patch: false,
        head_refuses: &[UPLOAD_OFFSET, UPLOAD_COMPLETE],
        delete_refuses: &[UPLOAD_OFFSET, UPLOAD_COMPLETE],
        server_side_complete: false,
    },
    Interop {
        version: 6,
        lifetime: Some("expires"),
        created_on_append: true,
        partial_upload: true,
        accept_patch: true,
        head_refuses: &[UPLOAD_OFFSET, UPLOAD_COMPLETE, UPLOAD_LENGTH],
        delete_refuses: &[UPLOAD_OFFSET, UPLOAD_COMPLETE],
        server_side_complete: false,
    },
    Interop {
        version: 7,
        lifetime: Some("max-age"),
        created_on_append: false,
        partial_upload: true,
        accept_patch: true,
        head_refuses: &[],
        delete_refuses: &[],
        server_side_complete: false,
    },
    Interop {
        version: 8,
        lifetime: Some("max-age"),
        created_on_append: false,
        partial_upload: true,
        accept_patch: true,
        head_refuses: &[],
        delete_refuses: &[],
        server_side_complete: false,
    },
    Interop {
        version: 9,
        lifetime: Some("max-age"),
        created_on_append: false,
        partial_upload: true,
        accept_patch: false,
        head_refuses: &[],
        delete_refuses: &[],
        server_side_complete: true,
    },
];

/// A structured-field integer (RFC 9651): at most 15 digits, parameters ignored.
pub(crate) fn sf_integer(headers: &HeaderMap, name: &'static str) -> Result<Option<u64>, Problem> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    let text = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim();
    if text.is_empty() || text.len() > 15 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("invalid_header", format!("{name} must be a non-negative integer")));
    }
    Ok(text.parse().ok())
}

/// A structured-field boolean: `?1` or `?0`.
pub(crate) fn sf_boolean(headers: &HeaderMap, name: &'static str) -> Result<Option<bool>, Problem> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    match value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim() {
        "?1" => Ok(Some(true)),
        "?0" => Ok(Some(false)),
        _ => Err(bad("invalid_header", format!("{name} must be ?1 or ?0"))),
    }
}

fn interop(headers: &HeaderMap) -> Result<Interop, Problem> {
    let v = sf_integer(headers, INTEROP_VERSION)?.unwrap_or(0) as i64;
    INTEROP.iter().find(|i| i.version == v).copied().ok_or_else(|| {
        bad("unsupported_interop_version", format!("this server implements interop versions 5 to 9 of the draft, not {v}"))
    })
}

/// The interop version a request names, if this server serves it (for the fuzz targets).
#[cfg(any(fuzzing, test))]
pub(crate) fn version(headers: &HeaderMap) -> Result<i64, Problem> {
    interop(headers).map(|v| v.version)
}

fn set(res: &mut Response, name: &'static str, value: impl TryInto<HeaderValue>) {
    if let Ok(value) = value.try_into() {
        res.headers_mut().insert(name, value);
    }
}

fn boolean(b: bool) -> &'static str {
    if b { "?1" } else { "?0" }
}

/// `Upload-Limit`: the size limit and, for an upload, how long it has left; `None` in a version
/// without the header.
fn limits(app: &AppState, v: Interop, expires_at: Option<u64>) -> Option<String> {
    let lifetime = v.lifetime?;
    let mut limit = format!("min-size=0, max-size={}", app.config.max_raw_body);
    if let Some(at) = expires_at {
        let left = at.saturating_sub(crate::storage::now_secs());
        limit.push_str(&format!(", {lifetime}={left}"));
    }
    Some(limit)
}

fn set_limits(res: &mut Response, app: &AppState, v: Interop, expires_at: Option<u64>) {
    if let Some(limit) = limits(app, v, expires_at) {
        set(res, UPLOAD_LIMIT, limit);
    }
}

fn response(status: StatusCode, v: Interop) -> Response {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    set(&mut res, INTEROP_VERSION, v.version.to_string());
    res
}

fn inconsistent_length(length: u64, got: u64) -> Problem {
    crate::resumable::inconsistent_length(length, got).with_type(INCONSISTENT_LENGTH)
}

fn mismatching_offset(expected: u64, provided: u64) -> Problem {
    Problem::new(StatusCode::CONFLICT, "offset_mismatch", format!("the upload is at offset {expected}, not {provided}"))
        .with("offset", expected)
        .with_type(MISMATCHING_OFFSET)
        .with("expected-offset", expected)
        .with("provided-offset", provided)
        .with_header(HeaderName::from_static(UPLOAD_OFFSET), HeaderValue::from(expected))
        .with_header(HeaderName::from_static(UPLOAD_COMPLETE), HeaderValue::from_static("?0"))
}

/// Gives the draft's problem types and headers to the errors an append raises.
fn draft_problem(problem: Problem, provided: u64) -> Problem {
    match problem.code() {
        "offset_mismatch" => {
            let expected = problem.extension("offset").and_then(|v| v.as_u64()).unwrap_or(0);
            mismatching_offset(expected, provided)
        }
        "length_mismatch" | "inconsistent_length" => problem.with_type(INCONSISTENT_LENGTH),
        _ => problem,
    }
}

/// A refusal in version `v`. From -12 every refused creation or append says it is the resumable
/// upload's answer (`Upload-Complete: ?0`), and a `413` states the limits it was measured by.
fn refusal(app: &AppState, v: Interop, problem: Problem, creation_or_append: bool) -> Response {
    let mut res = problem.with_header(HeaderName::from_static(INTEROP_VERSION), HeaderValue::from(v.version)).into_response();
    if v.server_side_complete && creation_or_append {
        res.headers_mut().entry(UPLOAD_COMPLETE).or_insert(HeaderValue::from_static("?0"));
        if res.status() == StatusCode::PAYLOAD_TOO_LARGE {
            set_limits(&mut res, app, v, None);
        }
    }
    res
}

/// `OPTIONS`: the limits, and (-04 to -11) that appends use `application/partial-upload`.
pub(crate) fn options(app: &AppState, headers: &HeaderMap) -> Response {
    let v = match interop(headers) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let mut res = response(StatusCode::NO_CONTENT, v);
    set_limits(&mut res, app, v, None);
    if v.accept_patch {
        set(&mut res, "accept-patch", PARTIAL_UPLOAD);
    }
    res
}

/// The answer to a request that completed the upload: `200` with the file, like the raw route.
fn completed(parts: &Parts, v: Interop, done: &Appended) -> Response {
    let mut res = match &done.file {
        Some(file) => UploadResponse {
            files: vec![UploadedFile::new(file, &files_url(parts))],
            fields: Default::default(),
            progress_id: None,
        }
        .into_http()
        .into_response(),
        None => Response::new(Body::empty()),
    };
    *res.status_mut() = StatusCode::OK;
    set(&mut res, INTEROP_VERSION, v.version.to_string());
    set(&mut res, UPLOAD_COMPLETE, "?1");
    set(&mut res, UPLOAD_OFFSET, done.offset.to_string());
    set(&mut res, header::LOCATION.as_str(), upload_url(parts, &done.record.id));
    res
}

/// Upload creation: a `POST` with `Upload-Complete`, and possibly the first (or all) bytes.
pub(crate) async fn create(app: &AppState, parts: Parts, body: Body) -> Response {
    let v = match interop(&parts.headers) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    match create_inner(app, &parts, body, v).await {
        Ok(res) => res,
        Err(p) => refusal(app, v, p, true),
    }
}

async fn create_inner(app: &AppState, parts: &Parts, body: Body, v: Interop) -> Result<Response, Problem> {
    let headers = &parts.headers;
    let complete = sf_boolean(headers, UPLOAD_COMPLETE)?
        .ok_or_else(|| bad("missing_upload_complete", "a resumable upload creation carries Upload-Complete"))?;
    let mut length = sf_integer(headers, UPLOAD_LENGTH)?;
    let content_length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if complete {
        match (length, content_length) {
            (Some(l), Some(c)) if l != c => return Err(inconsistent_length(l, c)),
            (None, Some(c)) => length = Some(c),
            _ => {}
        }
    }
    check_max(app, length)?;
    let mut declared = crate::declared::DeclaredFile::from_request(&parts.uri, headers);
    // The media type of appends says how bytes travel, not what the file is (tus-js-client 5
    // labels a creation that carries bytes with it): the content decides.
    if declared.content_type.as_deref() == Some(PARTIAL_UPLOAD) {
        declared.content_type = None;
    }
    let meta = FileMeta { name: declared.name, content_type: declared.content_type, ..FileMeta::default() };
    let client_name = crate::declared::client_name(&parts.uri, headers);
    let record = app
        .resumable
        .create(
            CreateRequest::new("ietf-draft", parts, length, meta, client_name),
            Protocol::Tus { metadata: None, concat: Concat::None },
        )
        .await?;
    let location = upload_url(parts, &record.id);
    let options = AppendOptions { complete, explicit_completion: true, ..AppendOptions::default() };
    let done = app.resumable.append(parts, body, record.clone(), 0, options).await.map_err(|p| {
        // The upload exists and keeps what arrived: the client resumes it at this URL.
        draft_problem(p, 0)
            .with_header(header::LOCATION, HeaderValue::from_str(&location).expect("an upload URL is ASCII"))
            .with_header(HeaderName::from_static(UPLOAD_COMPLETE), HeaderValue::from_static("?0"))
    })?;
    if done.file.is_some() {
        return Ok(completed(parts, v, &done));
    }
    let mut res = response(StatusCode::CREATED, v);
    set(&mut res, header::LOCATION.as_str(), location);
    set(&mut res, UPLOAD_COMPLETE, "?0");
    set(&mut res, UPLOAD_OFFSET, done.offset.to_string());
    set_limits(&mut res, app, v, done.record.expires_at);
    Ok(res)
}

/// Offset retrieval (`HEAD`, and `GET` from -12), append (`PATCH`) and cancellation (`DELETE`)
/// of an upload. Before -12 a `GET` is no part of the draft, and downloads the finished file.
pub(crate) async fn upload(app: &AppState, id: &str, parts: Parts, body: Body) -> Response {
    let v = match interop(&parts.headers) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let outcome = match parts.method {
        Method::HEAD => head(app, id, &parts, v).await,
        Method::GET if v.server_side_complete => head(app, id, &parts, v).await,
        Method::GET => get(app, id, &parts).await,
        Method::PATCH => patch(app, id, &parts, body, v).await,
        Method::DELETE => match refuse_headers(&parts, v.delete_refuses) {
            Ok(()) => terminate(app, id, &parts).await.map(|mut res| {
                set(&mut res, INTEROP_VERSION, v.version.to_string());
                res
            }),
            Err(p) => Err(p),
        },
        _ => Err(Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use HEAD, PATCH or DELETE")),
    };
    let is_append = parts.method == Method::PATCH;
    outcome.unwrap_or_else(|p| refusal(app, v, p, is_append))
}

/// -03 to -05: offset retrieval and cancellation must not carry the fields of creations and
/// appends.
fn refuse_headers(parts: &Parts, refused: &[&'static str]) -> Result<(), Problem> {
    match refused.iter().find(|name| parts.headers.contains_key(**name)) {
        Some(name) => Err(bad("invalid_header", format!("a {} request must not carry {name}", parts.method))),
        None => Ok(()),
    }
}

async fn head(app: &AppState, id: &str, parts: &Parts, v: Interop) -> Result<Response, Problem> {
    refuse_headers(parts, v.head_refuses)?;
    let r = &app.resumable;
    let record = r.load_tus(id, parts).await?;
    r.locker.settle(&record.id, SETTLE).await;
    let (offset, recovered) = r.offset(&record).await?;
    let record = recovered.unwrap_or(record);
    let mut res = response(StatusCode::NO_CONTENT, v);
    set(&mut res, UPLOAD_OFFSET, offset.to_string());
    set(&mut res, UPLOAD_COMPLETE, boolean(record.finished));
    if let Some(length) = record.length {
        set(&mut res, UPLOAD_LENGTH, length.to_string());
    }
    set_limits(&mut res, app, v, record.expires_at.filter(|_| !record.finished));
    set(&mut res, header::CACHE_CONTROL.as_str(), "no-store");
    Ok(res)
}

async fn patch(app: &AppState, id: &str, parts: &Parts, body: Body, v: Interop) -> Result<Response, Problem> {
    let headers = &parts.headers;
    let content_type_ok =
        headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(PARTIAL_UPLOAD.as_bytes()));
    if v.partial_upload && !content_type_ok {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_content_type",
            "an append carries Content-Type: application/partial-upload",
        ));
    }
    let given = sf_integer(headers, UPLOAD_OFFSET)?.ok_or_else(|| bad("missing_offset", "send Upload-Offset"))?;
    let complete = sf_boolean(headers, UPLOAD_COMPLETE)?
        .ok_or_else(|| bad("missing_upload_complete", "an append carries Upload-Complete"))?;
    let declare_length = sf_integer(headers, UPLOAD_LENGTH)?;
    let record = app.resumable.load_tus(id, parts).await?;
    let (size, recovered) = app.resumable.offset(&record).await?;
    let record = recovered.unwrap_or(record);
    if record.finished {
        let has_content = headers.get(header::CONTENT_LENGTH).is_none_or(|v| v.as_bytes() != b"0");
        if has_content {
            return Err(inconsistent_length(size, size + 1));
        }
        if !v.server_side_complete {
            return Err(bad("upload_completed", "the upload is complete already").with_type(COMPLETED_UPLOAD));
        }
        if given != size {
            return Err(mismatching_offset(size, given));
        }
        if !complete {
            return Err(bad("upload_completed", "the upload is complete already; only an empty ?1 append is answered"));
        }
        // A client that lost the final response asks again: it gets the same answer.
        let file = app.resumable.state.get_file(&record.id).await.map_err(|e| e.to_problem())?;
        return Ok(completed(parts, v, &Appended { record, offset: size, file }));
    }
    let options = AppendOptions { checksum: None, declare_length, complete, explicit_completion: true };
    let done = app.resumable.append(parts, body, record, given, options).await.map_err(|p| draft_problem(p, given))?;
    if done.file.is_some() {
        return Ok(completed(parts, v, &done));
    }
    let status = if v.created_on_append { StatusCode::CREATED } else { StatusCode::NO_CONTENT };
    let mut res = response(status, v);
    set(&mut res, UPLOAD_COMPLETE, "?0");
    set(&mut res, UPLOAD_OFFSET, done.offset.to_string());
    Ok(res)
}
