//! `{prefix}/files/{id}`: downloads (`GET`, `HEAD`, with `Range`) and deletes of catalogued
//! files, each allowed by the authorisation hook with the file's owner. A download may instead
//! be redirected to the store ([`Uploads::download_redirect`](crate::Uploads::download_redirect)).

use crate::context::AppState;
use crate::{
    error::Problem,
    hooks::AccessTarget,
    id::UploadId,
    state::{FileRecord, FileStatus},
    storage::StoreError,
};
use axum::{
    body::Body,
    extract::{Path, Request, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use std::ops::Range;

/// The single byte range a `Range` header asks for, if it asks for exactly one that can be
/// served (RFC 9110 §14.1.3). Malformed and multi-range requests are answered with the whole
/// file, as RFC 9110 allows; ranges outside the file are refused with 416.
pub(crate) fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<Range<u64>>, Problem> {
    use http_range_header::{EndPosition, RangeUnsatisfiableError, StartPosition};
    let unsatisfiable = || {
        StoreError::InvalidRange { size }
            .to_problem()
            .with_header(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"))
    };
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let ranges = match http_range_header::parse_range_header(value) {
        Ok(parsed) => parsed.ranges,
        // `bytes=-0` is well-formed but names no byte: unsatisfiable, not malformed.
        Err(RangeUnsatisfiableError::ZeroSuffix) => return Err(unsatisfiable()),
        Err(_) => return Ok(None),
    };
    let [range] = ranges.as_slice() else { return Ok(None) };
    let (start, end) = match (range.start, range.end) {
        // A suffix longer than the file means the whole file. On an empty file there is no
        // byte for a Content-Range to name, so the empty file is sent as it is.
        (StartPosition::FromLast(_), _) if size == 0 => return Ok(None),
        (StartPosition::FromLast(n), _) => (size - n.min(size), size),
        (StartPosition::Index(first), _) if first >= size => return Err(unsatisfiable()),
        (StartPosition::Index(first), EndPosition::Index(last)) if last < first => return Err(unsatisfiable()),
        (StartPosition::Index(first), EndPosition::Index(last)) => (first, last.saturating_add(1).min(size)),
        (StartPosition::Index(first), EndPosition::LastByte) => (first, size),
    };
    Ok(Some(start..end))
}

fn attachment(name: Option<&str>) -> HeaderValue {
    let Some(name) = name else { return HeaderValue::from_static("attachment") };
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded = utf8_percent_encode(name, NON_ALPHANUMERIC);
    HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"))
        .unwrap_or(HeaderValue::from_static("attachment"))
}

fn no_file() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "upload_not_found", "no file with this id")
}

/// The catalogued file a request names, if the authorisation hook lets the request at it:
/// `404` for an unknown id or a file not confirmed yet.
pub(crate) async fn find(app: &AppState, id: &str, parts: &Parts) -> Result<FileRecord, Problem> {
    let id = UploadId::parse(id).ok_or_else(no_file)?;
    let r = &app.resumable;
    let file = r.state.get_file(&id).await.map_err(|e| e.to_problem())?.ok_or_else(no_file)?;
    r.hooks.authorize_access(parts, file.owner.as_deref(), || AccessTarget::File(file.clone())).await?;
    if file.status != FileStatus::Complete {
        return Err(no_file());
    }
    Ok(file)
}

/// `GET`/`HEAD {prefix}/files/{id}`.
pub(crate) async fn download(State(app): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let outcome = async {
        let file = find(&app, &id, &parts).await?;
        if parts.method == Method::GET {
            if let Some(redirect) = redirect(&app, &file).await? {
                return Ok(redirect);
            }
        }
        serve(&app, &file, &parts.headers).await
    };
    outcome.await.unwrap_or_else(IntoResponse::into_response)
}

/// A `307` to a URL of the store for a file the request may read (the authorisation hook has
/// run), when [`Uploads::download_redirect`](crate::Uploads::download_redirect) is set and the
/// store can sign one.
async fn redirect(app: &AppState, file: &FileRecord) -> Result<Option<Response>, Problem> {
    let (Some(expires_in), Some(signer)) = (app.config.download_redirect, app.store.signer()) else { return Ok(None) };
    let url = signer.signed_get(&file.key, expires_in).await.map_err(|e| e.to_problem())?;
    let location = HeaderValue::from_str(&url).map_err(|e| StoreError::backend(format!("a signed URL: {e}")).to_problem())?;
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    res.headers_mut().insert(header::LOCATION, location);
    // The URL lets anyone read the file: no cache may keep it for somebody else.
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(Some(res))
}

/// `DELETE {prefix}/files/{id}`: the catalog row goes first (the commit point), then the bytes.
pub(crate) async fn delete(State(app): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let outcome = async {
        let file = find(&app, &id, &parts).await?;
        app.resumable.state.remove_file(&file.id).await.map_err(|e| e.to_problem())?;
        if let Err(e) = app.store.delete(&file.key).await {
            // The file is gone for every reader; its bytes are an orphan that a sweep removes.
            tracing::warn!(key = %file.key, error = %e, "could not delete a file's bytes");
        }
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        Ok::<_, Problem>(res)
    };
    outcome.await.unwrap_or_else(IntoResponse::into_response)
}

/// Streams a catalogued file, all of it or the range the request asks for.
pub(crate) async fn serve(app: &AppState, file: &FileRecord, headers: &HeaderMap) -> Result<Response, Problem> {
    let range = requested_range(headers, file.size)?;
    let partial = range.is_some();
    let read = app.store.get(&file.key, range).await.map_err(|e| e.to_problem())?;
    let object = file;
    let mut res = Response::new(Body::from_stream(read.body));
    let h = res.headers_mut();
    let content_type = object.meta.content_type.as_deref().unwrap_or("application/octet-stream");
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(read.range.end - read.range.start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_DISPOSITION, attachment(object.meta.name.as_deref()));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    if let Some(sha) = object.digests.get("sha-256") {
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{sha}\"")) {
            h.insert(header::ETAG, etag);
        }
    }
    if partial {
        let content_range = format!("bytes {}-{}/{}", read.range.start, read.range.end - 1, object.size);
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&content_range).expect("ascii"));
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(res)
}
