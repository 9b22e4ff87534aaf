//! `{prefix}/chunked/…`: the JSON chunked-upload API that many tutorial clients speak.
//!
//! | route | what |
//! |---|---|
//! | `POST {prefix}/chunked/init` | `{"filename", "total_size", "chunk_size"}` → `201` with the upload's `id` |
//! | `POST {prefix}/chunked/chunk?upload_id=…&chunk=N` | the body is chunk `N` (0-based), in any order, in parallel |
//! | `GET {prefix}/chunked/status?upload_id=…` | which chunks arrived and which are missing |
//! | `POST {prefix}/chunked/complete?upload_id=…` | joins the chunks into one file → its `id`, `url`, `sha256` |
//!
//! Every chunk but the last is exactly `chunk_size` bytes; the last is what remains. The record
//! of the upload learns of a chunk in one atomic update once the chunk is stored whole, so
//! chunks may arrive in parallel and a retried chunk is answered as a success without being
//! stored twice. How a chunk is stored is decided at `init`, from the chunk size:
//!
//! - **As a part**, when the store offers [uploads of parts](crate::storage::MultipartStore)
//!   (S3) and every chunk but the last is within its [part limits](crate::storage::PartLimits)
//!   (5 MiB up to `part_size × (concurrency + 1)` on S3): `init` creates the store's multipart
//!   upload for the file, chunk `n` is sent as its part `n` (S3's part `n + 1`; a retry replaces
//!   it) and the update that records the chunk records the part's id. Completion asks the store
//!   for the parts it holds and joins them: the bytes are written once. A chunk that arrives
//!   right after every chunk before it carries the whole-file hash forward (saved in the
//!   record); what the hash could not take in order is read back from the file once it is
//!   joined. Expiry aborts the multipart upload.
//! - **As an object of its own** otherwise (local disk, in memory, chunks too small or too
//!   large for parts): completion streams the chunks, in order, into one new file while hashing
//!   it (never holding the file in memory), then deletes them.
//!
//! Content is checked twice: chunk 0 is sniffed before it is stored, so an executable named
//! `.png` is refused at once; and when chunks are smaller than the sniffing window, completion
//! checks the first bytes of the whole file again, so small chunks cannot slip content past the
//! policy.

use crate::{
    body::data_stream,
    declared::{DeclaredFile, essence, query_param},
    error::Problem,
    filename,
    hash::HashAlgorithm,
    hooks::CreateRequest,
    id::UploadId,
    limit::BodyLimitLayer,
    progress::ProgressState,
    rate_limit::RateLimitLayer,
    resumable::{assemble, checkpoint, chunk_key, digests, first_bytes, multipart_of, not_found, restore},
    sniff::SniffBody,
    state::{FileRecord, HashCheckpoint, Protocol, UploadRecord},
    storage::{ByteStream, Digests, FileMeta, ObjectKey, ObjectMeta, PutOptions, Store, StoreError, UploadedPart},
};
use crate::{config::UploadConfig, context::AppState};
use axum::{
    Router,
    extract::{Request, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode, header, request::Parts};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};
use tower::ServiceBuilder;

/// The largest chunk a client may choose.
pub(crate) const MAX_CHUNK_SIZE: u64 = 64 << 20;
/// The most chunks one upload may have.
pub(crate) const MAX_CHUNKS: u64 = 10_000;
/// The largest `init` (and `complete`) request body.
const CONTROL_BODY_LIMIT: u64 = 64 * 1024;

/// The chunked routes, with the same outer layers as the other upload routes (idle timeout,
/// rate limit, size limit). There is no sniff or hash layer: chunk 0 is sniffed here, and the
/// whole file is hashed when its chunks are joined.
pub(super) fn routes(config: &UploadConfig, rate_limit: &RateLimitLayer) -> Router<AppState> {
    let guard = |limit: u64| {
        ServiceBuilder::new()
            .map_request(super::idle::idle_timeout(config.body_idle_timeout))
            .layer(rate_limit.clone())
            .layer(BodyLimitLayer::new(limit))
    };
    Router::new()
        .route("/chunked/init", post(init).layer(guard(CONTROL_BODY_LIMIT)))
        .route("/chunked/chunk", post(chunk).layer(guard(MAX_CHUNK_SIZE)))
        .route("/chunked/status", get(status).layer(rate_limit.clone()))
        .route("/chunked/complete", post(complete).layer(guard(CONTROL_BODY_LIMIT)))
}

// ---------------------------------------------------------------------------------------------
// The shape of an upload

/// How a file of `total_size` bytes is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) total_size: u64,
    pub(crate) chunk_size: u64,
    pub(crate) total_chunks: u64,
}

impl Plan {
    fn new(total_size: u64, chunk_size: u64) -> Self {
        Self { total_size, chunk_size, total_chunks: total_size.div_ceil(chunk_size) }
    }

    /// The exact size of chunk `n` (which must exist).
    pub(crate) fn chunk_len(&self, n: u64) -> u64 {
        if n + 1 == self.total_chunks { self.total_size - n * self.chunk_size } else { self.chunk_size }
    }

    fn missing(&self, chunks: &BTreeSet<u64>) -> Vec<u64> {
        (0..self.total_chunks).filter(|n| !chunks.contains(n)).collect()
    }
}

/// The plan and chunks of a chunked upload; any other upload is unknown here.
fn chunked(record: &UploadRecord) -> Result<(Plan, &BTreeSet<u64>), Problem> {
    match &record.protocol {
        Protocol::Chunked { chunk_size, chunks, .. } if *chunk_size > 0 => {
            Ok((Plan::new(record.length.unwrap_or(0), *chunk_size), chunks))
        }
        _ => Err(not_found(record.id.as_str())),
    }
}

/// The parts a chunked upload's chunks became, if they are parts of the store's multipart upload.
fn recorded_parts(record: &UploadRecord) -> Option<&BTreeMap<u64, UploadedPart>> {
    match &record.protocol {
        Protocol::Chunked { parts, .. } => parts.as_ref(),
        _ => None,
    }
}

/// Whether the store takes an upload of this plan as parts: every chunk but the last at least
/// its smallest part, none larger than its largest, no more chunks than it has parts.
fn as_parts(store: &dyn Store, plan: &Plan) -> bool {
    store.multipart().is_some_and(|multipart| {
        let limits = multipart.limits();
        (plan.total_chunks == 1 || plan.chunk_size >= limits.min_size)
            && plan.chunk_len(0) <= limits.max_size
            && plan.total_chunks <= limits.max_parts
    })
}

/// What a file's name says about it, for the content policy.
fn declared(meta: &FileMeta) -> DeclaredFile {
    let content_type = meta.name.as_deref().and_then(|n| mime_guess::from_path(n).first()).and_then(|m| essence(m.as_ref()));
    DeclaredFile { name: meta.name.clone(), content_type }
}

/// What the router's URLs start with: `{origin}{nested prefix}` (no trailing slash).
fn prefix(parts: &Parts) -> String {
    crate::urls::base(parts)
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let mut res = Response::new(axum::body::Body::from(serde_json::to_vec(body).expect("serialisable")));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The upload a request names in `?upload_id=`.
fn upload_id_param(parts: &Parts) -> Result<String, Problem> {
    parts
        .uri
        .query()
        .and_then(|q| query_param(q, "upload_id"))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, "missing_upload_id", "name the upload with ?upload_id="))
}

/// Seconds since the Unix epoch as an RFC 3339 UTC timestamp.
fn rfc3339(secs: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

// ---------------------------------------------------------------------------------------------
// POST /chunked/init

#[derive(Deserialize)]
struct InitRequest {
    filename: String,
    total_size: u64,
    chunk_size: u64,
}

#[derive(Serialize)]
struct InitResponse<'a> {
    id: &'a str,
    /// The same id, under the name the other routes use.
    upload_id: &'a str,
    filename: Option<&'a str>,
    total_size: u64,
    chunk_size: u64,
    total_chunks: u64,
    uploaded_chunks: Vec<u64>,
    created_at: String,
    expires_at: Option<String>,
}

fn invalid_init(detail: impl Into<std::borrow::Cow<'static, str>>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid_init", detail)
}

/// Reads and checks an `init` body: the sanitised name, the plan and the name as sent.
pub(crate) fn parse_init(body: &[u8], max_total: u64) -> Result<(String, Plan, String), Problem> {
    // From text: serde_json does not check the UTF-8 of the strings it skips in a byte slice.
    let body = std::str::from_utf8(body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the request body is not valid JSON: {e}")))?;
    let req: InitRequest = serde_json::from_str(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => invalid_init(format!("the init request is not as expected: {e}")),
        _ => Problem::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the request body is not valid JSON: {e}")),
    })?;
    // serde's derive reads a struct from an array too, by position; the API names its fields.
    if !body.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{') {
        return Err(invalid_init("the init request must be a JSON object"));
    }
    let name = filename::sanitize(&req.filename)
        .ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, "invalid_filename", "the filename is empty once sanitised"))?;
    if req.total_size == 0 {
        return Err(invalid_init("total_size must be at least 1"));
    }
    if req.total_size > max_total {
        return Err(crate::limit::too_large_problem(max_total, Some(req.total_size)));
    }
    if !(1..=MAX_CHUNK_SIZE).contains(&req.chunk_size) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_chunk_size",
            format!("chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes"),
        )
        .with("max_chunk_size", MAX_CHUNK_SIZE));
    }
    let plan = Plan::new(req.total_size, req.chunk_size);
    if plan.total_chunks > MAX_CHUNKS {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "too_many_chunks",
            format!("{} chunks of {} bytes; an upload may have at most {MAX_CHUNKS}", plan.total_chunks, plan.chunk_size),
        )
        .with("max_chunks", MAX_CHUNKS));
    }
    Ok((name, plan, req.filename))
}

async fn init(State(app): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Problem::from_body_error(&e).into_response(),
    };
    let (name, plan, client_name) = match parse_init(&body, app.config.max_raw_body) {
        Ok(parsed) => parsed,
        Err(problem) => return problem.into_response(),
    };
    let mut meta = FileMeta { name: Some(name), ..FileMeta::default() };
    meta.content_type = declared(&meta).content_type;
    let asked = CreateRequest::new("chunked", &parts, Some(plan.total_size), meta, Some(client_name));
    let of_parts = as_parts(app.store.as_ref(), &plan).then(BTreeMap::new);
    let protocol = Protocol::Chunked { chunk_size: plan.chunk_size, chunks: BTreeSet::new(), parts: of_parts };
    let record = match app.resumable.create(asked, protocol).await {
        Ok(record) => record,
        Err(problem) => return problem.into_response(),
    };
    let mut res = json_response(
        StatusCode::CREATED,
        &InitResponse {
            id: record.id.as_str(),
            upload_id: record.id.as_str(),
            filename: record.meta.name.as_deref(),
            total_size: plan.total_size,
            chunk_size: plan.chunk_size,
            total_chunks: plan.total_chunks,
            uploaded_chunks: Vec::new(),
            created_at: rfc3339(record.created_at),
            expires_at: record.expires_at.map(rfc3339),
        },
    );
    if let Ok(location) = HeaderValue::from_str(&format!("{}/chunked/status?upload_id={}", prefix(&parts), record.id)) {
        res.headers_mut().insert(header::LOCATION, location);
    }
    res
}

// ---------------------------------------------------------------------------------------------
// POST /chunked/chunk

#[derive(Serialize)]
struct ChunkResponse {
    chunk: u64,
    uploaded: usize,
    total: u64,
}

fn wrong_size(n: u64, expected: u64, got: Option<u64>) -> Problem {
    let detail = match got {
        Some(got) => format!("chunk {n} must be {expected} bytes, not {got}"),
        None => format!("chunk {n} must be {expected} bytes; more were sent"),
    };
    Problem::new(StatusCode::BAD_REQUEST, "invalid_chunk_size", detail).with("expected", expected)
}

fn finished_problem(id: &UploadId) -> Problem {
    Problem::new(StatusCode::CONFLICT, "upload_finished", format!("upload {id} is complete and takes no more chunks"))
}

/// What recording a stored chunk came to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recorded {
    /// The chunk is now part of the upload.
    Stored,
    /// The chunk had arrived before (a retry, or a parallel duplicate that won).
    Duplicate,
    /// The upload was completed meanwhile.
    Finished,
}

async fn chunk(State(app): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match receive_chunk(&app, &parts, body).await {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(problem) => problem.into_response(),
    }
}

async fn receive_chunk(app: &AppState, parts: &Parts, body: axum::body::Body) -> Result<ChunkResponse, Problem> {
    let id = upload_id_param(parts)?;
    let n = parts.uri.query().and_then(|q| query_param(q, "chunk"));
    let record = app.resumable.load(&id, parts).await?;
    let (plan, chunks) = chunked(&record)?;
    let n = n.and_then(|n| n.parse::<u64>().ok()).filter(|&n| n < plan.total_chunks).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_chunk",
            format!("?chunk= must name a chunk from 0 to {}", plan.total_chunks - 1),
        )
        .with("total_chunks", plan.total_chunks)
    })?;
    if record.finished {
        return Err(finished_problem(&record.id));
    }
    let expected = plan.chunk_len(n);
    let declared_len = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok());
    if let Some(len) = declared_len.filter(|&len| len != expected) {
        return Err(wrong_size(n, expected, Some(len)));
    }
    if chunks.contains(&n) {
        // A retry of a chunk that arrived whole: nothing to store. The body is read (and
        // dropped) before the answer all the same: answered early, a client still sending a
        // large chunk sees the connection close under it (a broken pipe), never the answer.
        let mut data = data_stream(body);
        while let Some(piece) = data.next().await {
            piece.map_err(|e| Problem::from_body_error(e.as_ref()))?;
        }
        return Ok(ChunkResponse { chunk: n, uploaded: chunks.len(), total: plan.total_chunks });
    }

    let mut sniffed_type = None;
    let data: ByteStream<'static> = if n == 0 {
        let (mut body, _) = SniffBody::checking(body, Arc::new(app.config.policy.clone()), declared(&record.meta));
        let sniffed = std::future::poll_fn(|cx| body.poll_decide(cx)).await.map_err(|e| Problem::from_body_error(e.as_ref()))?;
        sniffed_type = sniffed.map(|s| s.content_type);
        data_stream(body)
    } else {
        data_stream(body)
    };
    let chunk_problem = |e: StoreError| match e {
        StoreError::Incomplete { offset, .. } => wrong_size(n, expected, Some(offset)),
        StoreError::LengthExceeded { .. } => wrong_size(n, expected, None),
        StoreError::Body(source) => Problem::from_body_error(source.as_ref()),
        other => other.to_problem(),
    };
    // The chunk is stored whole (a put, a part) before the record learns of it: a crash in
    // between leaves a chunk no record lists, which a retry replaces or the sweeper removes.
    let key = chunk_key(&record, n);
    let (part, carried) = if recorded_parts(&record).is_some() {
        let (part, carried) = store_part(app, &record, &plan, n, data).await?;
        (Some(part), carried)
    } else {
        app.store.put(&key, data, PutOptions::with_length(Some(expected))).await.map_err(chunk_problem)?;
        (None, None)
    };

    let expires_at = app.resumable.expires_at();
    let start = n * plan.chunk_size;
    let mut recorded = Recorded::Stored;
    let updated = app
        .resumable
        .state
        .update(&record.id, &mut |r| {
            if r.finished {
                recorded = Recorded::Finished;
                return false;
            }
            r.expires_at = expires_at;
            let Protocol::Chunked { chunks, parts, .. } = &mut r.protocol else { return false };
            recorded = if chunks.insert(n) { Recorded::Stored } else { Recorded::Duplicate };
            // The part is named in the same update that says the chunk arrived; a duplicate
            // leaves the first one's (completion asks the store which part it kept).
            if recorded == Recorded::Stored {
                if let (Some(parts), Some(part)) = (parts.as_mut(), &part) {
                    parts.insert(n, part.clone());
                }
                if let Some(carried) = carried.as_ref().filter(|_| r.hash.as_ref().is_some_and(|h| h.offset == start)) {
                    r.hash = Some(carried.clone());
                }
            }
            if let Some(content_type) = sniffed_type.clone() {
                r.meta.content_type = Some(content_type);
            }
            true
        })
        .await;
    let outcome = match updated {
        Err(e) => Err(e.to_problem()),
        Ok(None) => Err(not_found(record.id.as_str())),
        Ok(Some(_)) if recorded == Recorded::Finished => Err(finished_problem(&record.id)),
        Ok(Some(updated)) => Ok(updated),
    };
    // A chunk that came after completion (whose chunks are gone) is not needed; a duplicate in
    // parallel replaced the same key with the same chunk and stays. (A part goes with its
    // multipart upload.)
    if outcome.is_err() && part.is_none() {
        if let Err(e) = app.store.delete(&key).await {
            tracing::warn!(%key, error = %e, "could not delete a chunk that was not needed");
        }
    }
    let updated = outcome?;
    let (plan, chunks) = chunked(&updated)?;
    Ok(ChunkResponse { chunk: n, uploaded: chunks.len(), total: plan.total_chunks })
}

/// Stores chunk `n` as part `n` of the upload's multipart upload. Returns the part, and the
/// whole-file hash carried past the chunk when the record's hash has reached the chunk's start
/// (every chunk before it was hashed): the update that records the chunk keeps it if the hash
/// is still there.
async fn store_part(
    app: &AppState,
    record: &UploadRecord,
    plan: &Plan,
    n: u64,
    data: ByteStream<'static>,
) -> Result<(UploadedPart, Option<HashCheckpoint>), Problem> {
    let expected = plan.chunk_len(n);
    let bytes = whole_chunk(data, n, expected).await?;
    let multipart = multipart_of(app.store.as_ref())?;
    let once = futures_util::stream::iter([Ok(bytes.clone())]).boxed();
    let part = multipart.put_part(&record.key(), &record.storage, n, once, expected).await.map_err(|e| e.to_problem())?;
    let start = n * plan.chunk_size;
    // The record as it is now: the chunk before this one may have been recorded meanwhile.
    let now = app.resumable.state.get(&record.id).await.map_err(|e| e.to_problem())?;
    let saved = now.and_then(|r| r.hash).filter(|h| h.offset == start);
    let carried = match saved {
        Some(saved) => tokio::task::spawn_blocking(move || {
            let mut hashers = restore(&saved)?;
            hashers.iter_mut().for_each(|h| h.update(&bytes));
            checkpoint(&hashers, start + bytes.len() as u64)
        })
        .await
        .ok()
        .flatten(),
        None => None,
    };
    Ok((part, carried))
}

/// A chunk's bytes in one allocation (a part is sent whole), exactly `expected` of them.
async fn whole_chunk(mut data: ByteStream<'static>, n: u64, expected: u64) -> Result<Bytes, Problem> {
    // Reserved, not touched: pages become resident only as bytes arrive.
    let mut whole = BytesMut::with_capacity(expected as usize);
    while let Some(piece) = data.next().await {
        let piece = piece.map_err(|e| Problem::from_body_error(e.as_ref()))?;
        if (whole.len() + piece.len()) as u64 > expected {
            return Err(wrong_size(n, expected, None));
        }
        whole.extend_from_slice(&piece);
    }
    if whole.len() as u64 != expected {
        return Err(wrong_size(n, expected, Some(whole.len() as u64)));
    }
    Ok(whole.freeze())
}

// ---------------------------------------------------------------------------------------------
// GET /chunked/status

#[derive(Serialize)]
struct StatusResponse<'a> {
    upload_id: &'a str,
    filename: Option<&'a str>,
    status: &'static str,
    total_size: u64,
    chunk_size: u64,
    total_chunks: u64,
    uploaded_chunks: Vec<u64>,
    missing_chunks: Vec<u64>,
    expires_at: Option<String>,
}

async fn status(State(app): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let answer = async {
        let record = app.resumable.load(&upload_id_param(&parts)?, &parts).await?;
        let (plan, chunks) = chunked(&record)?;
        Ok::<_, Problem>(json_response(
            StatusCode::OK,
            &StatusResponse {
                upload_id: record.id.as_str(),
                filename: record.meta.name.as_deref(),
                status: if record.finished { "complete" } else { "pending" },
                total_size: plan.total_size,
                chunk_size: plan.chunk_size,
                total_chunks: plan.total_chunks,
                uploaded_chunks: chunks.iter().copied().collect(),
                missing_chunks: plan.missing(chunks),
                expires_at: record.expires_at.map(rfc3339),
            },
        ))
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

// ---------------------------------------------------------------------------------------------
// POST /chunked/complete

#[derive(Serialize)]
struct CompleteResponse<'a> {
    id: &'a str,
    upload_id: &'a str,
    filename: Option<&'a str>,
    size: u64,
    content_type: &'a str,
    status: &'static str,
    sha256: Option<&'a str>,
    url: String,
}

fn completed(parts: &Parts, file: &FileRecord) -> Response {
    json_response(
        StatusCode::OK,
        &CompleteResponse {
            id: file.id.as_str(),
            upload_id: file.id.as_str(),
            filename: file.meta.name.as_deref(),
            size: file.size,
            content_type: file.meta.content_type.as_deref().unwrap_or("application/octet-stream"),
            status: "complete",
            sha256: file.digests.get(HashAlgorithm::Sha256.name()),
            url: format!("{}/{}", crate::urls::files_url(parts), file.id),
        },
    )
}

async fn complete(State(app): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    match join_chunks(&app, &parts).await {
        Ok(file) => completed(&parts, &file),
        Err(problem) => problem.into_response(),
    }
}

/// Joins the chunks into the upload's file (which has the upload's id), catalogues it, then
/// deletes the chunks.
async fn join_chunks(app: &AppState, parts: &Parts) -> Result<FileRecord, Problem> {
    let resumable = &app.resumable;
    let record = resumable.load(&upload_id_param(parts)?, parts).await?;
    chunked(&record)?;
    // One completion at a time; a concurrent one waits here and then finds the upload finished.
    let _lock = resumable.lock(&record.id).await?;
    let mut record =
        resumable.state.get(&record.id).await.map_err(|e| e.to_problem())?.ok_or_else(|| not_found(record.id.as_str()))?;
    let (plan, chunks) = chunked(&record)?;

    if record.finished {
        return resumable
            .state
            .get_file(&record.id)
            .await
            .map_err(|e| e.to_problem())?
            .ok_or_else(|| not_found(record.id.as_str()));
    }
    let missing = plan.missing(chunks);
    if !missing.is_empty() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "chunks_missing",
            format!("{} of {} chunks have not arrived", missing.len(), plan.total_chunks),
        )
        .with("missing_chunks", missing));
    }
    let keys: Vec<_> = (0..plan.total_chunks).map(|n| chunk_key(&record, n)).collect();
    let algorithms = resumable.file_algorithms();
    // The file is stored whole (a retried completion after a crash stores it again), then
    // catalogued with the record marked finished: the commit point. The chunks go after; a crash
    // before that leaves them to the sweeper, never an unfinished upload without its chunks.
    let (object, digests) = match recorded_parts(&record) {
        Some(recorded) => {
            let (object, digests) = join_parts(app, &record, &plan, recorded).await?;
            match recheck_content(app, &plan, &[(object.key.clone(), plan.total_size)], &record.meta).await {
                Ok(detected) => record.detected_type = detected.or(record.detected_type.take()),
                Err(problem) => {
                    resumable.refuse(&record).await;
                    return Err(problem);
                }
            }
            (object, digests)
        }
        None => {
            let sized: Vec<_> = keys.iter().enumerate().map(|(n, key)| (key.clone(), plan.chunk_len(n as u64))).collect();
            if let Some(content_type) = recheck_content(app, &plan, &sized, &record.meta).await? {
                record.detected_type = Some(content_type);
            }
            assemble(app.store.as_ref(), &keys, &record.key(), plan.total_size, &algorithms).await.map_err(|e| e.to_problem())?
        }
    };
    let content_type = record.detected_type.clone().or_else(|| record.meta.content_type.clone());
    if let Err(problem) = resumable.scan(&object.key, content_type.as_deref()).await {
        resumable.refuse(&record).await;
        return Err(problem);
    }
    let (finished, file) = resumable.commit(&record, &object, digests).await?;
    for key in keys.iter().filter(|_| recorded_parts(&record).is_none()) {
        if let Err(e) = app.store.delete(key).await {
            tracing::warn!(%key, error = %e, "could not delete a joined chunk; the sweeper will retry");
        }
    }
    if let Some(progress) = resumable.progress(&finished, file.size) {
        progress.send(file.size, ProgressState::Done, None);
    }
    Ok(file)
}

/// Joins the parts of an upload of parts into its file, and computes its digests: those the
/// record's hash carried when the parts are the ones it hashed, plus the bytes after it read
/// back from the file; else all of them from the file.
async fn join_parts(
    app: &AppState,
    record: &UploadRecord,
    plan: &Plan,
    recorded: &BTreeMap<u64, UploadedPart>,
) -> Result<(ObjectMeta, Digests), Problem> {
    let multipart = multipart_of(app.store.as_ref())?;
    let key = record.key();
    // The store says which parts it kept: two requests with the same chunk at once each stored
    // a part, and the one that recorded the chunk (whose bytes the hash took) may not be the
    // one the store kept (S3 keeps the last, and with SSE-KMS even equal bytes get other ETags).
    let (object, trusted) = match multipart.parts(&key, &record.storage).await {
        Ok(held) => {
            let mut parts = Vec::with_capacity(plan.total_chunks as usize);
            for n in 0..plan.total_chunks {
                match held.get(&n).filter(|p| p.size == plan.chunk_len(n)) {
                    Some(part) => parts.push(part.clone()),
                    None => {
                        let lost = format!(
                            "the store holds no part of {} bytes for chunk {n} of upload {}",
                            plan.chunk_len(n),
                            record.id
                        );
                        return Err(StoreError::backend(lost).to_problem());
                    }
                }
            }
            let trusted = parts.iter().enumerate().all(|(n, p)| recorded.get(&(n as u64)) == Some(p));
            (multipart.complete(&key, &record.storage, &parts).await.map_err(|e| e.to_problem())?, trusted)
        }
        // Completed before a crash cut the completion short (or aborted, and then the file is not
        // there either): the file is what the store holds.
        Err(StoreError::NotFound(_)) => (app.store.head(&key).await.map_err(|e| e.to_problem())?, false),
        Err(e) => return Err(e.to_problem()),
    };
    if object.size != plan.total_size {
        let wrong = format!("the joined file of upload {} is {} bytes, not {}", record.id, object.size, plan.total_size);
        return Err(StoreError::backend(wrong).to_problem());
    }
    let saved = record.hash.as_ref().filter(|_| trusted);
    let (hashers, from) = match saved.and_then(|s| Some((restore(s)?, s.offset))) {
        Some(carried) => carried,
        None => (app.resumable.file_algorithms().into_iter().map(HashAlgorithm::hasher).collect(), 0),
    };
    let hashers = if from < object.size {
        let mut rest = app.store.get(&key, Some(from..object.size)).await.map_err(|e| e.to_problem())?.body;
        let (tx, done) = crate::hash::hashing_thread(hashers);
        while let Some(chunk) = rest.next().await {
            let chunk = chunk.map_err(|e| StoreError::from(e).to_problem())?;
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        drop(tx);
        done.await.map_err(StoreError::backend).map_err(|e| e.to_problem())?
    } else {
        hashers
    };
    Ok((object, digests(hashers)))
}

/// Checks the first bytes of the joined file against the content policy when chunk 0 alone was
/// shorter than the sniffing window; the type it finds, if it checked. `sized` are the objects
/// the file's bytes are in, in order, with their sizes: the chunks, or the joined file.
async fn recheck_content(
    app: &AppState,
    plan: &Plan,
    sized: &[(ObjectKey, u64)],
    meta: &FileMeta,
) -> Result<Option<String>, Problem> {
    let policy = &app.config.policy;
    let window = policy.peek() as u64;
    if plan.chunk_size >= window || plan.total_chunks == 1 {
        return Ok(None);
    }
    let head = first_bytes(app.store.as_ref(), sized, policy.peek()).await?;
    Ok(Some(policy.check(&head, &declared(meta))?.content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cut_the_last_chunk_short() {
        let plan = Plan::new(10, 4);
        assert_eq!(plan.total_chunks, 3);
        assert_eq!((plan.chunk_len(0), plan.chunk_len(1), plan.chunk_len(2)), (4, 4, 2));
        let exact = Plan::new(8, 4);
        assert_eq!((exact.total_chunks, exact.chunk_len(1)), (2, 4));
        let one = Plan::new(3, 64);
        assert_eq!((one.total_chunks, one.chunk_len(0)), (1, 3));
        let chunks = BTreeSet::from([2]);
        assert_eq!(plan.missing(&chunks), vec![0, 1]);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn init_bodies_are_utf8() {
        // serde_json skips an unknown field's string without checking it. Found by fuzz/chunked_init.
        let body = b"{\"filename\":\"a.bin\",\"note\":\"\xd7.\",\"total_size\":1,\"chunk_size\":1}";
        assert_eq!(parse_init(body, 1 << 20).map(|_| ()).unwrap_err().code(), "invalid_json");
    }

    #[test]
    fn init_bodies_are_objects() {
        // serde's derive also reads a struct from a JSON array, in field order. Found by fuzz/chunked_init.
        let code = |body: &str| parse_init(body.as_bytes(), 1 << 20).map(|_| ()).unwrap_err().code();
        assert_eq!(code(r#"["a.txt", 10, 4]"#), "invalid_init");
        assert_eq!(code(r#" ["a.txt", 10, 4]"#), "invalid_init");
    }

    #[test]
    fn init_bodies_are_checked() {
        let code = |body: &str| parse_init(body.as_bytes(), 1 << 20).map(|_| ()).unwrap_err().code();
        assert_eq!(code("{"), "invalid_json");
        assert_eq!(code("not json"), "invalid_json");
        assert_eq!(code(r#"{"filename": "a.txt", "total_size": 10}"#), "invalid_init");
        assert_eq!(code(r#"{"filename": "a.txt", "total_size": -1, "chunk_size": 4}"#), "invalid_init");
        assert_eq!(code(r#"{"filename": "a.txt", "total_size": 0, "chunk_size": 4}"#), "invalid_init");
        assert_eq!(code(r#"{"filename": "../", "total_size": 10, "chunk_size": 4}"#), "invalid_filename");
        assert_eq!(code(r#"{"filename": "a.txt", "total_size": 10, "chunk_size": 0}"#), "invalid_chunk_size");
        assert_eq!(code(r#"{"filename": "a.txt", "total_size": 2000000, "chunk_size": 4}"#), "body_too_large");
        assert_eq!(code(r#"{"filename": "a.txt", "total_size": 1048576, "chunk_size": 100}"#), "too_many_chunks");
        let (name, plan, _) = parse_init(br#"{"filename": "../x/a b.txt", "total_size": 10, "chunk_size": 4}"#, 10).unwrap();
        assert_eq!((name.as_str(), plan), ("a b.txt", Plan::new(10, 4)));
    }
}
