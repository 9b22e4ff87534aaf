//! The tus 1.0 handlers. The append path ([`append`]) is shared with the IETF draft.

use super::headers::{self as h, Checksum, ConcatHeader, bad};
use crate::{
    error::Problem,
    hooks::CreateRequest,
    id::UploadId,
    progress::ProgressState,
    resumable::{Append, Interrupted, Resumable, assemble, checkpoint, digests, interrupted_problem, not_found},
    router::{AppState, download},
    sniff::SniffBody,
    state::{Concat, Protocol, UploadRecord},
    storage::{NewUpload, StoreError, StoredObject},
};
use axum::{
    body::Body,
    extract::{NestedPath, Path, Request, State},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use std::sync::{Arc, Mutex};

const VERSION: &str = "1.0.0";

/// How long an offset request waits for a request still writing to the upload.
pub(crate) const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// The URL of an upload: `{nested prefix}/tus/{id}`.
pub(crate) fn upload_url(parts: &Parts, id: &UploadId) -> String {
    let prefix = parts.extensions.get::<NestedPath>().map_or("", NestedPath::as_str);
    format!("{}/tus/{id}", prefix.trim_end_matches('/'))
}

fn set(res: &mut Response, name: &'static str, value: impl TryInto<HeaderValue>) {
    if let Ok(value) = value.try_into() {
        res.headers_mut().insert(name, value);
    }
}

fn empty(status: StatusCode) -> Response {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    res
}

fn fail(problem: Problem) -> Response {
    problem.into_response()
}

fn is_draft(headers: &HeaderMap) -> bool {
    headers.contains_key(super::draft::INTEROP_VERSION)
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
    let can = app.store.capabilities();
    if can.truncate {
        ext.push("checksum");
    }
    if can.truncate && can.read_partial {
        ext.push("checksum-trailer");
    }
    ext.join(",")
}

/// `OPTIONS {prefix}/tus/`: what this server offers.
pub(crate) async fn options(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if is_draft(&headers) {
        return super::draft::options(&app);
    }
    let mut res = empty(StatusCode::NO_CONTENT);
    set(&mut res, h::TUS_VERSION, VERSION);
    set(&mut res, h::TUS_EXTENSION, extensions(&app));
    set(&mut res, h::TUS_MAX_SIZE, app.config.max_raw_body.to_string());
    if app.store.capabilities().truncate {
        set(&mut res, h::TUS_CHECKSUM_ALGORITHM, h::CHECKSUM_ALGORITHMS);
    }
    res
}

/// `POST {prefix}/tus/`: creates an upload (with its first bytes, when a body comes along).
pub(crate) async fn create(State(app): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if is_draft(&parts.headers) {
        return super::draft::create(&app, parts, body).await;
    }
    if let Err(p) = check_version(&parts.headers) {
        return fail(p);
    }
    create_tus(&app, &parts, body).await.unwrap_or_else(fail)
}

async fn create_tus(app: &AppState, parts: &Parts, body: Body) -> Result<Response, Problem> {
    let headers = &parts.headers;
    let raw_meta = h::text(headers, h::UPLOAD_METADATA)?.map(str::to_owned);
    let pairs = raw_meta.as_deref().map(|m| h::metadata(m, &app.config.tus_metadata)).transpose()?.unwrap_or_default();
    let meta = h::file_meta(&pairs);
    let concat = h::text(headers, h::UPLOAD_CONCAT)?.map(h::concat).transpose()?;
    if let Some(ConcatHeader::Final(parts_ids)) = concat {
        return create_final(app, parts, parts_ids, raw_meta, meta).await;
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
    let record = new_upload(app, parts, "tus", length, meta, Protocol::Tus { metadata: raw_meta, concat }).await?;
    let mut res = empty(StatusCode::CREATED);
    set(&mut res, "location", upload_url(parts, &record.id));
    let with_upload = is_offset_stream(headers);
    let mut record = record;
    if with_upload {
        let outcome = append(app, parts, body, record.clone(), 0, AppendOptions::default()).await;
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
        finish_empty(app, &record).await?;
        record.finished = true;
    }
    expires(&mut res, &record);
    Ok(res)
}

fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(h::OFFSET_OCTET_STREAM.as_bytes()))
}

pub(crate) fn check_max(app: &AppState, length: Option<u64>) -> Result<(), Problem> {
    match length {
        Some(length) if length > app.config.max_raw_body => {
            Err(crate::limit::too_large_problem(app.config.max_raw_body, Some(length)))
        }
        _ => Ok(()),
    }
}

/// Runs the pre-create hook, creates the store's upload and its record.
pub(crate) async fn new_upload(
    app: &AppState,
    parts: &Parts,
    protocol: &'static str,
    length: Option<u64>,
    meta: crate::storage::FileMeta,
    kind: Protocol,
) -> Result<UploadRecord, Problem> {
    let r = &app.resumable;
    let asked = CreateRequest {
        protocol,
        headers: parts.headers.clone(),
        uri: parts.uri.clone(),
        length,
        meta,
        owner: None,
        key_prefix: None,
    };
    let allowed = r.hooks.run_pre_create(asked).await?;
    let upload = NewUpload { length, meta: allowed.meta.clone(), key_prefix: allowed.key_prefix.clone() };
    let info = r.store.create(upload).await.map_err(|e| e.to_problem())?;
    let mut record = UploadRecord::new(info.id, kind, length, allowed.meta);
    record.owner = allowed.owner;
    record.key_prefix = allowed.key_prefix;
    record.expires_at = r.expires_at();
    record.hash = r.fresh_checkpoint();
    if let Err(e) = r.state.insert(&record).await {
        let _ = r.store.abort(&record.id).await;
        return Err(e.to_problem());
    }
    Ok(record)
}

async fn finish_empty(app: &AppState, record: &UploadRecord) -> Result<StoredObject, Problem> {
    let hashers = app.resumable.resume_hash(record, 0).await.unwrap_or_default();
    app.resumable.finish(record, digests(hashers)).await
}

/// A final upload: the concatenation of finished partial uploads, assembled now.
async fn create_final(
    app: &AppState,
    parts: &Parts,
    ids: Vec<UploadId>,
    raw_meta: Option<String>,
    meta: crate::storage::FileMeta,
) -> Result<Response, Problem> {
    let r = &app.resumable;
    let mut length = 0u64;
    for id in &ids {
        let record = r.load(id.as_str(), parts).await?;
        if !matches!(record.protocol, Protocol::Tus { concat: Concat::Partial, .. }) {
            return Err(bad("not_partial", format!("upload {id} is not a partial upload")));
        }
        if !record.finished {
            return Err(bad("partial_unfinished", format!("partial upload {id} is not finished")));
        }
        length += r.store.head(id).await.map_err(|e| e.to_problem())?.size;
    }
    check_max(app, Some(length))?;
    // The content policy looks at the first bytes of the whole file.
    let mut detected = None;
    if let Some(first) = ids.first() {
        let peek = app.config.policy.peek() as u64;
        let size = r.store.head(first).await.map_err(|e| e.to_problem())?.size;
        let read = r.store.read(first, Some(0..peek.min(size))).await.map_err(|e| e.to_problem())?;
        let head: Vec<Bytes> = read.body.try_collect().await.map_err(|e| StoreError::from(e).to_problem())?;
        let declared = crate::declared::DeclaredFile { name: meta.name.clone(), content_type: meta.content_type.clone() };
        detected = Some(app.config.policy.check(&head.concat(), &declared)?.content_type);
    }
    let asked = CreateRequest {
        protocol: "tus",
        headers: parts.headers.clone(),
        uri: parts.uri.clone(),
        length: Some(length),
        meta,
        owner: None,
        key_prefix: None,
    };
    let allowed = r.hooks.run_pre_create(asked).await?;
    let mut stored_meta = allowed.meta.clone();
    stored_meta.content_type = detected.clone().or(stored_meta.content_type);
    let upload = NewUpload { length: Some(length), meta: stored_meta, key_prefix: allowed.key_prefix.clone() };
    let object = assemble(r.store.as_ref(), &ids, upload, &app.config.algorithms).await.map_err(|e| e.to_problem())?;
    let mut record = UploadRecord::new(
        object.id.clone(),
        Protocol::Tus { metadata: raw_meta, concat: Concat::Final(ids) },
        Some(length),
        allowed.meta,
    );
    record.owner = allowed.owner;
    record.key_prefix = allowed.key_prefix;
    record.expires_at = r.expires_at();
    record.detected_type = detected;
    record.finished = true;
    r.state.insert(&record).await.map_err(|e| e.to_problem())?;
    r.hooks.notify_finish(crate::hooks::FinishedUpload { record: record.clone(), object: object.clone() });
    let mut res = empty(StatusCode::CREATED);
    set(&mut res, "location", upload_url(parts, &object.id));
    Ok(res)
}

/// Adds `Upload-Expires` for an unfinished upload.
fn expires(res: &mut Response, record: &UploadRecord) {
    if let (false, Some(at)) = (record.finished, record.expires_at) {
        res.headers_mut().insert(h::UPLOAD_EXPIRES, h::http_date(at));
    }
}

/// `{prefix}/tus/{id}`: `HEAD`, `PATCH`, `GET`, `DELETE` (and `POST` with
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
        return super::draft::upload(&app, &id, parts, body).await;
    }
    // A download is not a tus request: a browser following the upload's URL sends no tus headers.
    if parts.method != Method::GET {
        if let Err(p) = check_version(&parts.headers) {
            return fail(p);
        }
    }
    let outcome = match parts.method {
        Method::HEAD => head(&app, &id, &parts).await,
        Method::PATCH => patch(&app, &id, &parts, body).await,
        Method::GET => get(&app, &id, &parts).await,
        Method::DELETE => terminate(&app, &id, &parts).await,
        _ => Err(Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use HEAD, PATCH, GET or DELETE")),
    };
    outcome.unwrap_or_else(fail)
}

/// The offset of an upload: the store's for an unfinished one, the file's size for a finished
/// one.
pub(crate) async fn current_offset(r: &Resumable, record: &UploadRecord) -> Result<u64, Problem> {
    if record.finished {
        return Ok(r.store.head(&record.id).await.map_err(|e| e.to_problem())?.size);
    }
    let stored = r.store.info(&record.id).await.map_err(|e| e.to_problem())?.offset;
    // Bytes a checksummed request is still writing (or a crash left unverified) do not count.
    Ok(record.unverified_from.map_or(stored, |verified| verified.min(stored)))
}

async fn head(app: &AppState, id: &str, parts: &Parts) -> Result<Response, Problem> {
    let r = &app.resumable;
    let record = r.load(id, parts).await?;
    // A client asking for the offset is usually about to resume after a broken request, whose
    // last bytes may still be on their way to storage: let that request end first.
    r.locker.settle(&record.id, SETTLE).await;
    let offset = current_offset(r, &record).await?;
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
    if checksum.is_some() && !app.store.capabilities().truncate {
        return Err(bad("unsupported_checksum", "this server's storage cannot verify checksums"));
    }
    let declare_length = h::number(&parts.headers, h::UPLOAD_LENGTH)?;
    let record = app.resumable.load(id, parts).await?;
    let options = AppendOptions { checksum, declare_length, ..AppendOptions::default() };
    let done = append(app, parts, body, record, given, options).await?;
    let mut res = empty(StatusCode::NO_CONTENT);
    set(&mut res, h::UPLOAD_OFFSET, done.offset.to_string());
    expires(&mut res, &done.record);
    Ok(res)
}

async fn get(app: &AppState, id: &str, parts: &Parts) -> Result<Response, Problem> {
    let record = app.resumable.load(id, parts).await?;
    if !record.finished {
        let offset = current_offset(&app.resumable, &record).await?;
        return Err(
            Problem::new(StatusCode::CONFLICT, "upload_incomplete", "the upload is not finished yet").with("offset", offset)
        );
    }
    download::serve(app, record.id.as_str(), &parts.headers).await
}

pub(crate) async fn terminate(app: &AppState, id: &str, parts: &Parts) -> Result<Response, Problem> {
    let r = &app.resumable;
    let record = r.load(id, parts).await?;
    let _lock = r.lock(&record.id).await?;
    let outcome = if record.finished { r.store.delete(&record.id).await } else { r.store.abort(&record.id).await };
    match outcome {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.to_problem()),
    }
    r.state.remove(&record.id).await.map_err(|e| e.to_problem())?;
    r.hooks.notify_terminate(record);
    Ok(empty(StatusCode::NO_CONTENT))
}

/// How an append may change the upload besides adding bytes.
#[derive(Default)]
pub(crate) struct AppendOptions {
    /// tus `Upload-Checksum` of this request's bytes.
    pub(crate) checksum: Option<Checksum>,
    /// tus `Upload-Length` sent on a `PATCH` of a deferred-length upload.
    pub(crate) declare_length: Option<u64>,
    /// The draft's `Upload-Complete: ?1`: this request's bytes end the upload.
    pub(crate) complete: bool,
    /// The draft's rule: only `Upload-Complete: ?1` completes an upload, not reaching its length.
    pub(crate) explicit_completion: bool,
}

/// The state after an append.
pub(crate) struct Appended {
    pub(crate) record: UploadRecord,
    pub(crate) offset: u64,
    /// The file, when this append finished the upload.
    pub(crate) object: Option<StoredObject>,
}

fn mismatch(expected: u64, given: u64) -> Problem {
    StoreError::OffsetMismatch { expected, given }
        .to_problem()
        .with_header(http::HeaderName::from_static(h::UPLOAD_OFFSET), HeaderValue::from(expected))
}

/// Appends a request body to an upload at `given`, under the upload's lock: checks the offset,
/// sniffs the first bytes of the upload, bounds the body to the declared length (or the size
/// limit), carries the whole-upload hash on, verifies a checksum (undoing the write on a
/// mismatch), records the new state and finishes the upload once all of it is in.
pub(crate) async fn append(
    app: &AppState,
    parts: &Parts,
    body: Body,
    record: UploadRecord,
    given: u64,
    options: AppendOptions,
) -> Result<Appended, Problem> {
    let r = &app.resumable;
    if matches!(record.protocol, Protocol::Tus { concat: Concat::Final(_), .. }) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "final_upload",
            "a final upload is assembled by the server, not patched",
        ));
    }
    let lock = r.lock(&record.id).await?;
    // The record as it is now that nobody else writes.
    let mut record = r.state.get(&record.id).await.map_err(|e| e.to_problem())?.ok_or_else(|| not_found(record.id.as_str()))?;
    if record.finished {
        let size = current_offset(r, &record).await?;
        let sends_more = parts.headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
        if given != size {
            return Err(mismatch(size, given));
        }
        if sends_more {
            return Err(StoreError::LengthExceeded { length: size }.to_problem());
        }
        return Ok(Appended { record, offset: size, object: None });
    }
    let mut offset = r.store.info(&record.id).await.map_err(|e| e.to_problem())?.offset;
    // A checksummed request that a crash cut short left bytes nobody verified: drop them.
    if let Some(verified) = record.unverified_from {
        if offset > verified {
            r.store.truncate(&record.id, verified).await.map_err(|e| e.to_problem())?;
            offset = verified;
        }
        record = set_unverified(r, &record, None).await?;
    }
    if given != offset {
        return Err(mismatch(offset, given));
    }
    if let Some(declared) = options.declare_length {
        match record.length {
            Some(length) if length != declared => {
                return Err(bad("length_mismatch", format!("the upload's length is {length}, not {declared}")));
            }
            Some(_) => {}
            None => {
                check_max(app, Some(declared))?;
                if declared < offset {
                    return Err(bad("invalid_length", format!("{offset} bytes are in already, more than {declared}")));
                }
                record = r
                    .state
                    .update(&record.id, &mut |rec| {
                        rec.length = Some(declared);
                        true
                    })
                    .await
                    .map_err(|e| e.to_problem())?
                    .ok_or_else(|| not_found(record.id.as_str()))?;
            }
        }
    }
    let room = record.length.unwrap_or(app.config.max_raw_body).saturating_sub(offset);
    // A request that says up front it carries more than fits is refused before a byte is
    // appended (one without a Content-Length is cut off at the limit as it streams).
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > room) {
        let length = record.length.unwrap_or(app.config.max_raw_body);
        return Err(StoreError::LengthExceeded { length }
            .to_problem()
            .with_header(http::HeaderName::from_static(h::UPLOAD_OFFSET), HeaderValue::from(offset)));
    }
    let trailers = Arc::new(Mutex::new(None));
    let mut data = with_trailers(body, trailers.clone());
    // The upload's first bytes decide its content, before any of this request's is stored: every
    // request that writes within the sniffing window decides again on the stored bytes and its
    // own, so a tiny first request cannot slip a file past the policy. Partial uploads of a
    // concatenation are checked when the final upload is assembled.
    let mut detected = None;
    let window = app.config.policy.peek() as u64;
    let partial = matches!(record.protocol, Protocol::Tus { concat: Concat::Partial, .. });
    if offset < window && !partial && (offset == 0 || app.store.capabilities().read_partial) {
        let stored: crate::storage::ByteStream<'static> = if offset == 0 {
            futures_util::stream::empty().boxed()
        } else {
            let head = r.store.read_partial(&record.id, 0..offset).await.map_err(|e| e.to_problem())?;
            head.map_err(|e| Box::new(e) as crate::error::BoxError).boxed()
        };
        let declared =
            crate::declared::DeclaredFile { name: record.meta.name.clone(), content_type: record.meta.content_type.clone() };
        let body = crate::body::stream_body(stored.chain(data));
        let (mut sniffing, _) = SniffBody::checking(body, Arc::new(app.config.policy.clone()), declared);
        let sniffed =
            std::future::poll_fn(|cx| sniffing.poll_decide(cx)).await.map_err(|e| Problem::from_body_error(e.as_ref()))?;
        detected = sniffed.map(|s| s.content_type);
        data = skip(crate::body::data_stream(sniffing), offset);
    }
    let summer = options.checksum.as_ref().map(|c| Arc::new(Mutex::new(Some(c.start()))));
    if let Some(summer) = &summer {
        let summer = summer.clone();
        data = data
            .inspect_ok(move |chunk| {
                if let Some(s) = summer.lock().expect("checksum lock poisoned").as_mut() {
                    s.update(chunk);
                }
            })
            .boxed();
    }
    let hashers = r.resume_hash(&record, offset).await;
    let progress = r.progress(&record, offset);
    let append = Append {
        room: Some(room),
        length: record.length.or(Some(app.config.max_raw_body)),
        offset,
        hashers,
        lock: &lock,
        stale_after: app.config.stale_after,
        progress,
    };
    let (stream, tap, progress) = append.wrap(data);
    // Bytes that must be verified are marked as such until they are, so that a crash in between
    // cannot leave them in the upload.
    let announced_trailer = parts
        .headers
        .get_all(header::TRAILER)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|n| n.trim().eq_ignore_ascii_case(h::UPLOAD_CHECKSUM))));
    let verifying = options.checksum.is_some() || announced_trailer;
    if verifying {
        record = set_unverified(r, &record, Some(offset)).await?;
    }
    let written = r.store.write(&record.id, offset, stream).await;
    let hashed = tap.take().await;
    let new_offset = match &written {
        Ok(o) => *o,
        Err(_) => r.store.info(&record.id).await.map(|i| i.offset).unwrap_or(offset),
    };
    let progress = progress.lock().expect("progress lock poisoned").take();
    // A request that had to be verified and did not arrive whole appends nothing.
    if let (true, Err(e)) = (verifying, &written) {
        let problem = append_error_ref(e);
        r.store.truncate(&record.id, offset).await.map_err(|e| e.to_problem())?;
        set_unverified(r, &record, None).await?;
        if let Some(p) = &progress {
            p.send(offset, ProgressState::Receiving, None);
        }
        return Err(problem.with_header(http::HeaderName::from_static(h::UPLOAD_OFFSET), HeaderValue::from(offset)));
    }
    // A checksum that does not match undoes this request's bytes. It comes as a header (and was
    // computed while the bytes streamed) or as a trailer (checked by reading the bytes back).
    if written.is_ok() {
        let verdict = match (&options.checksum, &summer) {
            (Some(checksum), Some(summer)) => {
                let got = summer.lock().expect("checksum lock poisoned").take().map(|s| s.finalize());
                Some(Ok(got.as_deref() == Some(checksum.expected.as_slice())))
            }
            _ => {
                let trailer = trailers.lock().expect("trailer lock poisoned").take();
                match trailer.as_ref().and_then(|t: &HeaderMap| t.get(h::UPLOAD_CHECKSUM)) {
                    Some(value) => Some(check_trailer(r, &record.id, offset..new_offset, value).await),
                    None => None,
                }
            }
        };
        if let Some(verdict) = verdict.filter(|v| !matches!(v, Ok(true))) {
            r.store.truncate(&record.id, offset).await.map_err(|e| e.to_problem())?;
            set_unverified(r, &record, None).await?;
            if let Some(p) = &progress {
                p.send(offset, ProgressState::Receiving, None);
            }
            return Err(verdict.err().unwrap_or_else(|| {
                Problem::new(
                    StatusCode::from_u16(460).expect("460 is a valid status"),
                    "checksum_mismatch",
                    "the request's bytes do not match its Upload-Checksum; nothing was appended",
                )
            }));
        }
    }
    let (hashers, saved) = match hashed {
        Some((hashers, fed)) if fed == new_offset - offset => {
            let saved = checkpoint(&hashers, new_offset);
            (Some(hashers), saved)
        }
        _ => (None, None),
    };
    let complete_length = if options.complete && written.is_ok() { Some(new_offset) } else { None };
    if let (Some(length), Some(complete)) = (record.length, complete_length) {
        if length != complete {
            return Err(super::draft::inconsistent_length(length, complete));
        }
    }
    let expires_at = r.expires_at();
    record = r
        .state
        .update(&record.id, &mut |rec| {
            rec.hash = saved.clone();
            rec.expires_at = expires_at;
            rec.unverified_from = None;
            if detected.is_some() {
                rec.detected_type = detected.clone();
            }
            if rec.length.is_none() {
                rec.length = complete_length;
            }
            true
        })
        .await
        .map_err(|e| e.to_problem())?
        .ok_or_else(|| not_found(record.id.as_str()))?;
    if let Err(e) = written {
        if let Some(p) = &progress {
            p.send(new_offset, ProgressState::Receiving, None);
        }
        return Err(append_error(e).with_header(http::HeaderName::from_static(h::UPLOAD_OFFSET), HeaderValue::from(new_offset)));
    }
    let mut object = None;
    if record.length == Some(new_offset) && (options.complete || !options.explicit_completion) {
        let finished = r.finish(&record, digests(hashers.unwrap_or_default())).await?;
        record.finished = true;
        object = Some(finished);
    }
    if let Some(p) = &progress {
        let state = if object.is_some() { ProgressState::Done } else { ProgressState::Receiving };
        p.send(new_offset, state, None);
    }
    drop(lock);
    Ok(Appended { record, offset: new_offset, object })
}

/// `data` without its first `n` bytes.
fn skip(data: crate::storage::ByteStream<'static>, n: u64) -> crate::storage::ByteStream<'static> {
    let mut left = n;
    data.try_filter_map(move |mut chunk| {
        let take = left.min(chunk.len() as u64) as usize;
        left -= take as u64;
        let rest = chunk.split_off(take);
        std::future::ready(Ok((!rest.is_empty()).then_some(rest)))
    })
    .boxed()
}

/// The data of a body as a stream; its trailers (tus `checksum-trailer`) land in `trailers`.
fn with_trailers(body: Body, trailers: Arc<Mutex<Option<HeaderMap>>>) -> crate::storage::ByteStream<'static> {
    use http_body_util::BodyExt;
    futures_util::stream::unfold(Some(body), move |body| {
        let trailers = trailers.clone();
        async move {
            let mut body = body?;
            loop {
                match body.frame().await? {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => return Some((Ok(data), Some(body))),
                        Err(frame) => {
                            if let Ok(t) = frame.into_trailers() {
                                *trailers.lock().expect("trailer lock poisoned") = Some(t);
                            }
                        }
                    },
                    Err(e) => return Some((Err(e.into()), None)),
                }
            }
        }
    })
    .boxed()
}

/// Checks an `Upload-Checksum` trailer by reading back the bytes it covers: `Ok(matches)`, or
/// the problem with the trailer itself.
async fn check_trailer(r: &Resumable, id: &UploadId, range: std::ops::Range<u64>, value: &HeaderValue) -> Result<bool, Problem> {
    let text = value.to_str().map_err(|_| bad("invalid_checksum", "the Upload-Checksum trailer is not ASCII"))?;
    let checksum = Checksum::parse(text.trim())?;
    let mut summer = checksum.start();
    let mut bytes = r.store.read_partial(id, range).await.map_err(|e| e.to_problem())?;
    while let Some(chunk) = bytes.next().await {
        summer.update(&chunk.map_err(|e| StoreError::from(e).to_problem())?);
    }
    Ok(summer.finalize() == checksum.expected)
}

/// What a client sees when its append failed part-way (the bytes before the failure stay).
fn append_error(e: StoreError) -> Problem {
    append_error_ref(&e)
}

fn append_error_ref(e: &StoreError) -> Problem {
    match e {
        StoreError::Body(err) if is_interrupted(err.as_ref()) => interrupted_problem(),
        StoreError::Body(err) => Problem::from_body_error(err.as_ref()),
        other => other.to_problem(),
    }
}

/// Marks (or clears) where an upload's unverified bytes start.
async fn set_unverified(r: &Resumable, record: &UploadRecord, from: Option<u64>) -> Result<UploadRecord, Problem> {
    r.state
        .update(&record.id, &mut |rec| {
            rec.unverified_from = from;
            true
        })
        .await
        .map_err(|e| e.to_problem())?
        .ok_or_else(|| not_found(record.id.as_str()))
}

fn is_interrupted(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if e.is::<Interrupted>() {
            return true;
        }
        current = e.source();
    }
    false
}
