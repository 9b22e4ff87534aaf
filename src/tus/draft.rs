//! The IETF "Resumable Uploads for HTTP" draft (draft-ietf-httpbis-resumable-upload, interop
//! versions 6 to 8; 8 is that of drafts -09 to -11), at the tus endpoint. A request is a draft
//! request when it carries `Upload-Draft-Interop-Version`.
//!
//! hyper cannot send `104 Upload Resumption Supported`, so a client learns the upload's URL
//! from the final response only: the `201` answering a creation with `Upload-Complete: ?0`
//! (the draft's "careful creation": create with no or some content, then append with `PATCH`),
//! or the `Location` header on a failed creation's error response when the connection survived.
//! A client that sends a whole file in one creation request and loses the connection cannot
//! resume it, and starts again.

use super::handler::{AppendOptions, Appended, append, check_max, current_offset, new_upload, terminate, upload_url};
use super::headers::bad;
use crate::{
    error::Problem,
    ingest::{UploadResponse, UploadedFile},
    router::{AppState, files_url},
    state::{Concat, Protocol},
    storage::FileMeta,
};
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};

pub(crate) const INTEROP_VERSION: &str = "upload-draft-interop-version";
const UPLOAD_COMPLETE: &str = "upload-complete";
const UPLOAD_OFFSET: &str = "upload-offset";
const UPLOAD_LENGTH: &str = "upload-length";
const UPLOAD_LIMIT: &str = "upload-limit";
const PARTIAL_UPLOAD: &str = "application/partial-upload";
const MISMATCHING_OFFSET: &str = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset";
const COMPLETED_UPLOAD: &str = "https://iana.org/assignments/http-problem-types#completed-upload";
const INCONSISTENT_LENGTH: &str = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length";

/// The interop versions served.
const VERSIONS: std::ops::RangeInclusive<i64> = 6..=8;

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

pub(crate) fn version(headers: &HeaderMap) -> Result<i64, Problem> {
    let v = sf_integer(headers, INTEROP_VERSION)?.unwrap_or(0) as i64;
    if VERSIONS.contains(&v) {
        Ok(v)
    } else {
        Err(bad("unsupported_interop_version", format!("this server implements interop versions 6 to 8 of the draft, not {v}")))
    }
}

fn set(res: &mut Response, name: &'static str, value: impl TryInto<HeaderValue>) {
    if let Ok(value) = value.try_into() {
        res.headers_mut().insert(name, value);
    }
}

fn boolean(b: bool) -> &'static str {
    if b { "?1" } else { "?0" }
}

/// `Upload-Limit`: the size limit and, for an upload, how long it has left.
fn limits(app: &AppState, version: i64, expires_at: Option<u64>) -> String {
    let mut limit = format!("min-size=0, max-size={}", app.config.max_raw_body);
    if let Some(at) = expires_at {
        let left = at.saturating_sub(crate::storage::now_secs());
        limit.push_str(&format!(", {}={left}", if version <= 6 { "expires" } else { "max-age" }));
    }
    limit
}

fn response(status: StatusCode, version: i64) -> Response {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    set(&mut res, INTEROP_VERSION, version.to_string());
    res
}

pub(crate) fn inconsistent_length(length: u64, got: u64) -> Problem {
    bad("inconsistent_length", format!("the upload's length is {length}, but {got} bytes make it complete"))
        .with_type(INCONSISTENT_LENGTH)
}

/// Gives the draft's problem types and headers to the errors an append raises.
fn draft_problem(problem: Problem, provided: u64) -> Problem {
    match problem.code() {
        "offset_mismatch" => {
            let expected = problem.extension("offset").and_then(|v| v.as_u64()).unwrap_or(0);
            problem
                .with_type(MISMATCHING_OFFSET)
                .with("expected-offset", expected)
                .with("provided-offset", provided)
                .with_header(http::HeaderName::from_static(UPLOAD_COMPLETE), HeaderValue::from_static("?0"))
        }
        "length_mismatch" => problem.with_type(INCONSISTENT_LENGTH),
        _ => problem,
    }
}

/// `OPTIONS`: the limits, and that appends use `application/partial-upload`.
pub(crate) fn options(app: &AppState) -> Response {
    let mut res = response(StatusCode::NO_CONTENT, 8);
    set(&mut res, UPLOAD_LIMIT, limits(app, 8, None));
    set(&mut res, "accept-patch", PARTIAL_UPLOAD);
    res
}

/// The answer to a request that completed the upload: `200` with the file, like the raw route.
fn completed(parts: &Parts, version: i64, done: &Appended) -> Response {
    let mut res = match &done.object {
        Some(object) => UploadResponse {
            files: vec![UploadedFile::new(object, &files_url(parts))],
            fields: Default::default(),
            progress_id: None,
        }
        .into_http()
        .into_response(),
        None => Response::new(Body::empty()),
    };
    *res.status_mut() = StatusCode::OK;
    set(&mut res, INTEROP_VERSION, version.to_string());
    set(&mut res, UPLOAD_COMPLETE, "?1");
    set(&mut res, UPLOAD_OFFSET, done.offset.to_string());
    set(&mut res, header::LOCATION.as_str(), upload_url(parts, &done.record.id));
    res
}

/// Upload creation: a `POST` with `Upload-Complete`, and possibly the first (or all) bytes.
pub(crate) async fn create(app: &AppState, parts: Parts, body: Body) -> Response {
    let version = match version(&parts.headers) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    match create_inner(app, &parts, body, version).await {
        Ok(res) => res,
        Err(p) => p.with_header(http::HeaderName::from_static(INTEROP_VERSION), HeaderValue::from(version)).into_response(),
    }
}

async fn create_inner(app: &AppState, parts: &Parts, body: Body, version: i64) -> Result<Response, Problem> {
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
    let declared = crate::declared::DeclaredFile::from_request(&parts.uri, headers);
    let meta = FileMeta { name: declared.name, content_type: declared.content_type, ..FileMeta::default() };
    let record =
        new_upload(app, parts, "ietf-draft", length, meta, Protocol::Tus { metadata: None, concat: Concat::None }).await?;
    let location = upload_url(parts, &record.id);
    let options = AppendOptions { complete, explicit_completion: true, ..AppendOptions::default() };
    let done = append(app, parts, body, record.clone(), 0, options).await.map_err(|p| {
        // The upload exists and keeps what arrived: the client resumes it at this URL.
        draft_problem(p, 0)
            .with_header(header::LOCATION, HeaderValue::from_str(&location).expect("an upload URL is ASCII"))
            .with_header(http::HeaderName::from_static(UPLOAD_COMPLETE), HeaderValue::from_static("?0"))
    })?;
    if done.object.is_some() {
        return Ok(completed(parts, version, &done));
    }
    let mut res = response(StatusCode::CREATED, version);
    set(&mut res, header::LOCATION.as_str(), location);
    set(&mut res, UPLOAD_COMPLETE, "?0");
    set(&mut res, UPLOAD_OFFSET, done.offset.to_string());
    set(&mut res, UPLOAD_LIMIT, limits(app, version, done.record.expires_at));
    Ok(res)
}

/// Offset retrieval (`HEAD`), append (`PATCH`) and cancellation (`DELETE`) of an upload.
pub(crate) async fn upload(app: &AppState, id: &str, parts: Parts, body: Body) -> Response {
    let version = match version(&parts.headers) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let outcome = match parts.method {
        Method::HEAD | Method::GET => head(app, id, &parts, version).await,
        Method::PATCH => patch(app, id, &parts, body, version).await,
        Method::DELETE => terminate(app, id, &parts).await.map(|mut res| {
            set(&mut res, INTEROP_VERSION, version.to_string());
            res
        }),
        _ => Err(Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use HEAD, PATCH or DELETE")),
    };
    outcome.unwrap_or_else(|p| {
        p.with_header(http::HeaderName::from_static(INTEROP_VERSION), HeaderValue::from(version)).into_response()
    })
}

async fn head(app: &AppState, id: &str, parts: &Parts, version: i64) -> Result<Response, Problem> {
    let r = &app.resumable;
    let record = r.load(id, parts).await?;
    r.locker.settle(&record.id, super::handler::SETTLE).await;
    let offset = current_offset(r, &record).await?;
    let mut res = response(StatusCode::NO_CONTENT, version);
    set(&mut res, UPLOAD_OFFSET, offset.to_string());
    set(&mut res, UPLOAD_COMPLETE, boolean(record.finished));
    if let Some(length) = record.length {
        set(&mut res, UPLOAD_LENGTH, length.to_string());
    }
    set(&mut res, UPLOAD_LIMIT, limits(app, version, record.expires_at.filter(|_| !record.finished)));
    set(&mut res, header::CACHE_CONTROL.as_str(), "no-store");
    Ok(res)
}

async fn patch(app: &AppState, id: &str, parts: &Parts, body: Body, version: i64) -> Result<Response, Problem> {
    let headers = &parts.headers;
    let content_type_ok =
        headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(PARTIAL_UPLOAD.as_bytes()));
    if version >= 6 && !content_type_ok {
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
    let record = app.resumable.load(id, parts).await?;
    if record.finished {
        let has_content = headers.get(header::CONTENT_LENGTH).is_none_or(|v| v.as_bytes() != b"0");
        if has_content {
            let size = current_offset(&app.resumable, &record).await?;
            return Err(inconsistent_length(size, size + 1));
        }
        return Err(bad("upload_completed", "the upload is complete already").with_type(COMPLETED_UPLOAD));
    }
    let options = AppendOptions { checksum: None, declare_length, complete, explicit_completion: true };
    let done = append(app, parts, body, record, given, options).await.map_err(|p| draft_problem(p, given))?;
    if done.object.is_some() {
        return Ok(completed(parts, version, &done));
    }
    let mut res = response(StatusCode::NO_CONTENT, version);
    set(&mut res, UPLOAD_COMPLETE, "?0");
    set(&mut res, UPLOAD_OFFSET, done.offset.to_string());
    Ok(res)
}
