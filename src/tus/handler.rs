//! The tus 1.0 adapter: headers parsed and answers rendered around the resumable engine
//! (`crate::resumable`), which the IETF draft adapter shares.

use super::{
    common::{SETTLE, check_max, empty, get, set, terminate, upload_url},
    headers::{self as h, ConcatHeader, bad},
};
use crate::{
    context::AppState,
    error::Problem,
    hooks::CreateRequest,
    id::UploadId,
    resumable::{AppendOptions, Checksum, Hashes, assemble, digests, first_bytes, resumable_of},
    state::{Concat, Protocol, UploadRecord},
    storage::{FileMeta, ObjectKey},
};
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};

const VERSION: &str = "1.0.0";

fn fail(problem: Problem) -> Response {
    problem.into_response()
}

/// Requests other than `OPTIONS` must speak tus 1.0.0.
fn check_version(headers: &HeaderMap) -> Result<(), Problem> {
    match headers.get(h::TUS_RESUMABLE).map(HeaderValue::as_bytes) {
        Some(v) if v == VERSION.as_bytes() => Ok(()),
        other => Err(Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "unsupported_version",
            match other {
                Some(_) => "this server speaks tus 1.0.0 only",
                None => "send Tus-Resumable: 1.0.0",
            },
        )
        .with_header(http::HeaderName::from_static(h::TUS_VERSION), HeaderValue::from_static(VERSION))),
    }
}

/// The extensions the configured store supports.
fn extensions(app: &AppState) -> String {
    let mut ext = vec!["creation", "creation-with-upload", "creation-defer-length", "termination", "concatenation"];
    if app.config.expiry.is_some() {
        ext.push("expiration");
    }
    // A resumable store can cut back an append that failed verification; reading a trailer's
    // bytes back needs more.
    if let Some(resumable) = app.store.resumable() {
        ext.push("checksum");
        if resumable.read_back().is_some() {
            ext.push("checksum-trailer");
        }
    }
    ext.join(",")
}

/// `OPTIONS {prefix}/tus/`: what this server offers.
pub(super) fn options(app: &AppState) -> Response {
    let mut res = empty(StatusCode::NO_CONTENT);
    set(&mut res, h::TUS_VERSION, VERSION);
    set(&mut res, h::TUS_EXTENSION, extensions(app));
    set(&mut res, h::TUS_MAX_SIZE, app.config.max_raw_body.to_string());
    if app.store.resumable().is_some() {
        set(&mut res, h::TUS_CHECKSUM_ALGORITHM, crate::resumable::CHECKSUM_ALGORITHMS);
    }
    res
}

/// `POST {prefix}/tus/`: creates an upload (with its first bytes, when a body comes along).
pub(super) async fn create(app: &AppState, parts: Parts, body: Body) -> Response {
    if let Err(p) = check_version(&parts.headers) {
        return fail(p);
    }
    create_tus(app, &parts, body).await.unwrap_or_else(fail)
}

async fn create_tus(app: &AppState, parts: &Parts, body: Body) -> Result<Response, Problem> {
    let headers = &parts.headers;
    let raw_meta = h::text(headers, h::UPLOAD_METADATA)?.map(str::to_owned);
    let pairs = raw_meta.as_deref().map(|m| h::metadata(m, &app.config.tus_metadata)).transpose()?.unwrap_or_default();
    let meta = h::file_meta(&pairs);
    let concat = h::text(headers, h::UPLOAD_CONCAT)?.map(h::concat).transpose()?;
    if let Some(ConcatHeader::Final(parts_ids)) = concat {
        return create_final(app, parts, parts_ids, raw_meta, meta, h::client_name(&pairs)).await;
    }
    let length = h::number(headers, h::UPLOAD_LENGTH)?;
    let deferred = match h::text(headers, h::UPLOAD_DEFER_LENGTH)? {
        None => false,
        Some("1") => true,
        Some(_) => return Err(bad("invalid_header", "Upload-Defer-Length must be 1")),
    };
    match (length, deferred) {
        (Some(_), true) => return Err(bad("invalid_length", "send Upload-Length or Upload-Defer-Length, not both")),
        (None, false) => return Err(bad("missing_length", "send Upload-Length (or Upload-Defer-Length: 1)")),
        _ => {}
    }
    check_max(app, length)?;
    let concat = match concat {
        Some(ConcatHeader::Partial) => Concat::Partial,
        _ => Concat::None,
    };
    let asked = CreateRequest::new("tus", parts, length, meta, h::client_name(&pairs));
    let record = app.resumable.create(asked, Protocol::Tus { metadata: raw_meta, concat }).await?;
    let mut res = empty(StatusCode::CREATED);
    set(&mut res, "location", upload_url(parts, &record.id));
    let with_upload = is_offset_stream(headers);
    let mut record = record;
    if with_upload {
        let outcome = app.resumable.append(parts, body, record.clone(), 0, AppendOptions::default()).await;
        match outcome {
            Ok(done) => {
                set(&mut res, h::UPLOAD_OFFSET, done.offset.to_string());
                record = done.record;
            }
            // The upload exists: a client resumes it from the URL, so the refusal carries it.
            Err(problem) => {
                let url = upload_url(parts, &record.id);
                let location = HeaderValue::from_str(&url).expect("an upload URL is ASCII");
                return Err(problem.with("location", url).with_header(header::LOCATION, location));
            }
        }
    } else if length == Some(0) {
        let hashers = Hashes::finished(app.resumable.resume_hash(&record, 0).await).await;
        record = app.resumable.finish(&record, digests(hashers)).await?.0;
    }
    expires(&mut res, &record);
    Ok(res)
}

fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(h::OFFSET_OCTET_STREAM.as_bytes()))
}

/// A final upload: the concatenation of finished partial uploads, assembled now.
async fn create_final(
    app: &AppState,
    parts: &Parts,
    ids: Vec<UploadId>,
    raw_meta: Option<String>,
    meta: FileMeta,
    client_name: Option<String>,
) -> Result<Response, Problem> {
    let r = &app.resumable;
    let limit = app.config.max_concat_parts;
    if ids.len() > limit {
        return Err(
            bad("too_many_partials", format!("a final upload names at most {limit} partial uploads")).with("limit", limit)
        );
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = ids.iter().find(|id| !seen.insert(*id)) {
        return Err(bad("duplicate_partial", format!("partial upload {twice} is named more than once")));
    }
    let mut sized = Vec::with_capacity(ids.len());
    for id in &ids {
        let record = r.load(id.as_str(), parts).await?;
        if !matches!(record.protocol, Protocol::Tus { concat: Concat::Partial, .. }) {
            return Err(bad("not_partial", format!("upload {id} is not a partial upload")));
        }
        if !record.finished {
            return Err(bad("partial_unfinished", format!("partial upload {id} is not finished")));
        }
        let key = record.key();
        let size = r.store.head(&key).await.map_err(|e| e.to_problem())?.size;
        sized.push((key, size));
    }
    let length = sized.iter().map(|(_, size)| size).sum();
    check_max(app, Some(length))?;
    // The content policy looks at the first bytes of the whole file, across as many partial
    // uploads as they take.
    let head = first_bytes(r.store.as_ref(), &sized, app.config.policy.peek()).await?;
    let declared = crate::declared::DeclaredFile { name: meta.name.clone(), content_type: meta.content_type.clone() };
    let detected = app.config.policy.check(&head, &declared)?.content_type;
    let allowed = r.hooks.run_pre_create(CreateRequest::new("tus", parts, Some(length), meta, client_name)).await?;
    let mut record = UploadRecord::new(
        UploadId::random(),
        Protocol::Tus { metadata: raw_meta, concat: Concat::Final(ids) },
        Some(length),
        allowed.meta,
    );
    record.owner = allowed.owner;
    record.key_prefix = allowed.key_prefix;
    record.expires_at = r.expires_at();
    record.detected_type = Some(detected);
    // The object first, then the record, then its catalog row: a crash after the object leaves
    // an orphan for the sweeper, one after the record an upload that the next request rolls
    // forward.
    let keys: Vec<ObjectKey> = sized.into_iter().map(|(key, _)| key).collect();
    let (object, digests) =
        assemble(r.store.as_ref(), &keys, &record.key(), length, &app.config.algorithms).await.map_err(|e| e.to_problem())?;
    if let Err(problem) = r.scan(&object.key, record.detected_type.as_deref()).await {
        if let Err(e) = r.store.delete(&object.key).await {
            tracing::warn!(key = %object.key, error = %e, "could not delete a refused final upload");
        }
        return Err(problem);
    }
    r.state.insert(&record).await.map_err(|e| e.to_problem())?;
    r.commit(&record, &object, digests).await?;
    let mut res = empty(StatusCode::CREATED);
    set(&mut res, "location", upload_url(parts, &record.id));
    Ok(res)
}

/// Adds `Upload-Expires` for an unfinished upload.
fn expires(res: &mut Response, record: &UploadRecord) {
    if let (false, Some(at)) = (record.finished, record.expires_at) {
        res.headers_mut().insert(h::UPLOAD_EXPIRES, h::http_date(at));
    }
}

/// `{prefix}/tus/{id}`: `HEAD`, `PATCH`, `GET`, `DELETE`.
pub(super) async fn upload(app: &AppState, id: &str, parts: Parts, body: Body) -> Response {
    // A download is not a tus request: a browser following the upload's URL sends no tus headers.
    if parts.method != Method::GET {
        if let Err(p) = check_version(&parts.headers) {
            return fail(p);
        }
    }
    let outcome = match parts.method {
        Method::HEAD => head(app, id, &parts).await,
        Method::PATCH => patch(app, id, &parts, body).await,
        Method::GET => get(app, id, &parts).await,
        Method::DELETE => terminate(app, id, &parts).await,
        _ => Err(Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use HEAD, PATCH, GET or DELETE")),
    };
    outcome.unwrap_or_else(fail)
}

async fn head(app: &AppState, id: &str, parts: &Parts) -> Result<Response, Problem> {
    let r = &app.resumable;
    let record = r.load_tus(id, parts).await?;
    // A client asking for the offset is usually about to resume after a broken request, whose
    // last bytes may still be on their way to storage: let that request end first.
    r.locker.settle(&record.id, SETTLE).await;
    let (offset, recovered) = r.offset(&record).await?;
    let record = recovered.unwrap_or(record);
    let mut res = empty(StatusCode::OK);
    set(&mut res, h::UPLOAD_OFFSET, offset.to_string());
    match record.length {
        Some(length) => set(&mut res, h::UPLOAD_LENGTH, length.to_string()),
        None => set(&mut res, h::UPLOAD_DEFER_LENGTH, "1"),
    }
    if let Protocol::Tus { metadata, concat } = &record.protocol {
        if let Some(m) = metadata {
            set(&mut res, h::UPLOAD_METADATA, m.as_str());
        }
        match concat {
            Concat::None => {}
            Concat::Partial => set(&mut res, h::UPLOAD_CONCAT, "partial"),
            Concat::Final(ids) => {
                let urls: Vec<_> = ids.iter().map(|id| upload_url(parts, id)).collect();
                set(&mut res, h::UPLOAD_CONCAT, format!("final;{}", urls.join(" ")));
            }
        }
    }
    set(&mut res, "cache-control", "no-store");
    expires(&mut res, &record);
    Ok(res)
}

async fn patch(app: &AppState, id: &str, parts: &Parts, body: Body) -> Result<Response, Problem> {
    if !is_offset_stream(&parts.headers) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_content_type",
            "a PATCH carries Content-Type: application/offset+octet-stream",
        ));
    }
    let given = h::number(&parts.headers, h::UPLOAD_OFFSET)?.ok_or_else(|| bad("missing_offset", "send Upload-Offset"))?;
    let checksum = h::text(&parts.headers, h::UPLOAD_CHECKSUM)?.map(Checksum::parse).transpose()?;
    resumable_of(app.store.as_ref())?;
    let declare_length = h::number(&parts.headers, h::UPLOAD_LENGTH)?;
    let record = app.resumable.load_tus(id, parts).await?;
    let options = AppendOptions { checksum, declare_length, ..AppendOptions::default() };
    let done = app.resumable.append(parts, body, record, given, options).await?;
    let mut res = empty(StatusCode::NO_CONTENT);
    set(&mut res, h::UPLOAD_OFFSET, done.offset.to_string());
    expires(&mut res, &done.record);
    Ok(res)
}
