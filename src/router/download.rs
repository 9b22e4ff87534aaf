//! `GET {prefix}/files/{id}`: downloads with `Range` support.

use super::AppState;
use crate::{error::Problem, id::UploadId, storage::StoreError};
use axum::{
    body::Body,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use std::ops::Range;

/// The single byte range a `Range` header asks for, if it asks for exactly one that can be
/// served. Malformed and multi-range requests are answered with the whole file, as RFC 9110
/// allows; ranges outside the file are refused with 416.
pub(crate) fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<Range<u64>>, Problem> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    if size == 0 {
        // No byte of an empty file can be selected (http-range-header would answer 0..=0): it is
        // served whole, as RFC 9110 lets a server ignore Range.
        return Ok(None);
    }
    let Ok(parsed) = http_range_header::parse_range_header(value) else { return Ok(None) };
    match parsed.validate(size) {
        Ok(ranges) if ranges.len() == 1 => Ok(Some(*ranges[0].start()..ranges[0].end() + 1)),
        Ok(_) => Ok(None),
        Err(_) => Err(StoreError::InvalidRange { size }
            .to_problem()
            .with_header(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"))),
    }
}

fn attachment(name: Option<&str>) -> HeaderValue {
    let Some(name) = name else { return HeaderValue::from_static("attachment") };
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded = utf8_percent_encode(name, NON_ALPHANUMERIC);
    HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"))
        .unwrap_or(HeaderValue::from_static("attachment"))
}

pub(super) async fn download(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    match serve(&app, &id, &headers).await {
        Ok(res) => res,
        Err(problem) => problem.into_response(),
    }
}

pub(crate) async fn serve(app: &AppState, id: &str, headers: &HeaderMap) -> Result<Response, Problem> {
    let id =
        UploadId::parse(id).ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "upload_not_found", "no file with this id"))?;
    let object = app.store.head(&id).await.map_err(|e| e.to_problem())?;
    let range = requested_range(headers, object.size)?;
    let partial = range.is_some();
    let read = app.store.read(&id, range).await.map_err(|e| e.to_problem())?;
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
