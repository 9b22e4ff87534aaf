//! `POST {prefix}/form`: streaming `multipart/form-data`.

use crate::{
    body::{data_stream, stream_body},
    declared::{DeclaredFile, essence},
    error::{BodyRejection, BoxError, Problem},
    filename,
    hash::{FormHashing, HashBody},
    hooks::CreateRequest,
    id::UploadId,
    ingest::{UploadResponse, UploadedFile, progress_id},
    limit::LimitedBody,
    sniff::{FormPolicy, SniffBody},
    state::{FileRecord, FileStatus},
    storage::{FileMeta, ObjectKey, PutOptions, now_secs},
};
use crate::{context::AppState, urls::files_url};
use axum::{
    body::Body,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{StatusCode, header};
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

fn multipart_problem(err: multer::Error) -> Problem {
    use multer::Error as E;
    match err {
        E::StreamReadFailed(source) => Problem::from_body_error(source.as_ref()),
        E::FieldSizeExceeded { limit, field_name } => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "field_too_large",
            format!("the field {} is larger than {limit} bytes", field_name.as_deref().unwrap_or("(unnamed)")),
        )
        .with("limit", limit),
        E::StreamSizeExceeded { limit } => crate::limit::too_large_problem(limit, None),
        E::NoBoundary | E::NoMultipart => {
            Problem::new(StatusCode::BAD_REQUEST, "missing_boundary", "the request is not multipart/form-data with a boundary")
        }
        E::IncompleteStream | E::IncompleteFieldData { .. } | E::IncompleteHeaders => {
            Problem::new(StatusCode::BAD_REQUEST, "invalid_multipart", "the multipart body ended before its closing boundary")
        }
        other => Problem::new(StatusCode::BAD_REQUEST, "invalid_multipart", format!("the multipart body is malformed: {other}")),
    }
}

/// The problem for an error raised while a file part streams: multer's own, or a layer's.
fn field_problem(err: BoxError) -> Problem {
    match err.downcast::<multer::Error>() {
        Ok(m) => multipart_problem(*m),
        Err(other) => Problem::from_body_error(other.as_ref()),
    }
}

fn part_headers_too_large(limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "part_headers_too_large",
        format!("a part's headers are larger than {limit} bytes"),
    )
    .with("limit", limit)
}

/// The size of a part's headers as sent (`name: value\r\n` each).
fn header_size(field: &multer::Field<'_>) -> usize {
    field.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum()
}

/// Feeds the request body to multer and bounds what multer buffers.
///
/// multer reads its input for as long as the input is ready, copying it into its own buffer, and
/// has no limit on the size of a part's headers. So this stream hands over one chunk at a time:
/// when the next chunk is ready at once, in the same read of multer's, it is held back and the
/// stream yields once (waking itself), so multer parses what it has before it reads on. While
/// the handler waits for the next part it hands over pieces of at most
/// `max_part_header_size`, one per poll, and counts them against that limit. A body that arrives
/// in one chunk (a small form) is handed over whole, with no yield.
struct HeaderGuard<S> {
    inner: S,
    pending: Bytes,
    /// Yield before handing over anything more (after a piece handed while waiting).
    yield_next: bool,
    /// A chunk was handed over and multer has not been told to wait since: it is still reading.
    handed: bool,
    watch: Arc<HeaderWatch>,
    limit: usize,
}

#[derive(Default)]
struct HeaderWatch {
    waiting: AtomicBool,
    fed: AtomicUsize,
}

impl HeaderWatch {
    fn begin_wait(&self) {
        self.fed.store(0, Ordering::Relaxed);
        self.waiting.store(true, Ordering::Relaxed);
    }

    fn end_wait(&self) {
        self.waiting.store(false, Ordering::Relaxed);
    }
}

/// The least handed to multer at a time while it parses headers.
const HEADER_PIECE: usize = 512;

impl<S> Stream for HeaderGuard<S>
where
    S: Stream<Item = Result<Bytes, BoxError>> + Unpin,
{
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if std::mem::take(&mut this.yield_next) {
            this.handed = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if this.pending.is_empty() {
            match this.inner.poll_next_unpin(cx) {
                Poll::Pending => {
                    this.handed = false;
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(chunk))) => this.pending = chunk,
                Poll::Ready(other) => return Poll::Ready(other),
            }
            if std::mem::take(&mut this.handed) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        if !this.watch.waiting.load(Ordering::Relaxed) {
            this.handed = true;
            return Poll::Ready(Some(Ok(std::mem::take(&mut this.pending))));
        }
        let size = this.limit.max(HEADER_PIECE);
        let piece = this.pending.split_to(this.pending.len().min(size));
        this.yield_next = !this.pending.is_empty();
        this.handed = this.pending.is_empty();
        let fed = this.watch.fed.fetch_add(piece.len(), Ordering::Relaxed) + piece.len();
        if fed > this.limit + size {
            return Poll::Ready(Some(Err(Box::new(BodyRejection(part_headers_too_large(this.limit))))));
        }
        Poll::Ready(Some(Ok(piece)))
    }
}

/// Collects a text field, refusing it past `limit` bytes.
async fn read_text(mut field: multer::Field<'static>, limit: usize) -> Result<String, Problem> {
    let name = field.name().unwrap_or("").to_owned();
    let mut value = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_problem)? {
        if value.len() + chunk.len() > limit {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "field_too_large",
                format!("the field {name:?} is larger than {limit} bytes"),
            )
            .with("limit", limit));
        }
        value.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&value).into_owned())
}

fn add_field(fields: &mut serde_json::Map<String, serde_json::Value>, name: String, value: String) {
    use serde_json::Value;
    match fields.get_mut(&name) {
        None => {
            fields.insert(name, Value::String(value));
        }
        Some(Value::Array(values)) => values.push(Value::String(value)),
        Some(first) => {
            let first = first.take();
            fields.insert(name, Value::Array(vec![first, Value::String(value)]));
        }
    }
}

/// The files of a form stored so far, not catalogued yet. The form is all-or-nothing: if a later
/// part fails, or the request is dropped, they are deleted (nobody has learnt their ids yet);
/// once every part is in, they are catalogued together.
struct Stored {
    store: Arc<dyn crate::storage::Store>,
    files: Vec<FileRecord>,
}

impl Stored {
    async fn undo(mut self) {
        for file in std::mem::take(&mut self.files) {
            if let Err(e) = self.store.delete(&file.key).await {
                tracing::warn!(key = %file.key, error = %e, "could not delete a file of a failed form");
            }
        }
    }

    /// The files, which the caller now catalogues (or deletes).
    fn take(mut self) -> Vec<FileRecord> {
        std::mem::take(&mut self.files)
    }
}

impl Drop for Stored {
    fn drop(&mut self) {
        let files = std::mem::take(&mut self.files);
        if files.is_empty() {
            return;
        }
        let store = self.store.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for file in files {
                    let _ = store.delete(&file.key).await;
                }
            });
        }
    }
}

pub(super) async fn upload(State(app): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let boundary = match multer::parse_boundary(content_type) {
        Ok(b) => b,
        Err(_) if content_type.is_empty() || !crate::declared::is_multipart(&parts.headers) => {
            return Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not_multipart",
                "send files to this endpoint as multipart/form-data",
            )
            .into_response();
        }
        Err(_) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "missing_boundary",
                "the multipart/form-data Content-Type has no valid boundary",
            )
            .into_response();
        }
    };
    let policy = parts.extensions.get::<FormPolicy>().map(|p| p.0.clone());
    let algorithms = parts.extensions.get::<FormHashing>().map(|h| h.0.clone()).unwrap_or_else(|| Arc::from([]));
    let limits = app.config.form;
    let watch = Arc::new(HeaderWatch::default());
    let guarded = HeaderGuard {
        inner: data_stream::<Body>(body),
        pending: Bytes::new(),
        yield_next: false,
        handed: false,
        watch: watch.clone(),
        limit: limits.max_part_header_size,
    };
    let mut multipart = multer::Multipart::new(guarded, boundary);

    let mut stored = Stored { store: app.store.clone(), files: Vec::new() };
    let mut fields = serde_json::Map::new();
    let outcome: Result<(), Problem> = async {
        let mut count = 0;
        loop {
            watch.begin_wait();
            let next = multipart.next_field().await;
            watch.end_wait();
            let Some(field) = next.map_err(multipart_problem)? else { break };
            // Headers that arrived in the same chunk as the previous part's data were parsed from
            // multer's buffer without passing the guard: check what was parsed.
            if header_size(&field) > limits.max_part_header_size {
                return Err(part_headers_too_large(limits.max_part_header_size));
            }
            count += 1;
            if count > limits.max_parts {
                return Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_parts",
                    format!("a form may have at most {} parts", limits.max_parts),
                )
                .with("limit", limits.max_parts));
            }
            let field_name = field.name().map(str::to_owned);
            let Some(raw_name) = field.file_name().map(str::to_owned) else {
                let value = read_text(field, limits.max_field_size).await?;
                add_field(&mut fields, field_name.unwrap_or_default(), value);
                continue;
            };
            if stored.files.len() >= limits.max_files {
                return Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_files",
                    format!("a form may carry at most {} files", limits.max_files),
                )
                .with("limit", limits.max_files));
            }
            let declared = DeclaredFile {
                name: filename::sanitize(&raw_name),
                content_type: field.content_type().and_then(|m| essence(m.as_ref())),
            };
            let mut meta =
                FileMeta { name: declared.name.clone(), content_type: declared.content_type.clone(), ..FileMeta::default() };
            if let Some(name) = field_name {
                meta.extra.insert("field".into(), name);
            }
            let created = app.admit(&parts, CreateRequest::new("form", &parts, None, meta, Some(raw_name))).await?;
            let file = receive_file(&app, field, declared, created, policy.clone(), &algorithms, limits.max_file_size).await?;
            stored.files.push(file);
        }
        if stored.files.is_empty() {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "no_files",
                "the form carried no file part (a part with a filename)",
            ));
        }
        Ok(())
    }
    .await;

    if let Err(problem) = outcome {
        stored.undo().await;
        return problem.into_response();
    }
    // The whole form arrived, and matched any digest the client sent for it.
    let files = stored.take();
    if let Err(problem) = app.catalog(&files).await {
        return problem.into_response();
    }
    let url = files_url(&parts);
    UploadResponse {
        files: files.iter().map(|f| UploadedFile::new(f, &url)).collect(),
        fields,
        progress_id: progress_id(&parts.extensions),
    }
    .into_http()
    .into_response()
}

/// Streams one file of the form through the same sniff, size and hash wrappers that the layers
/// put around a request body, into storage.
async fn receive_file(
    app: &AppState,
    field: multer::Field<'static>,
    declared: DeclaredFile,
    created: CreateRequest,
    policy: Option<Arc<crate::sniff::ContentPolicy>>,
    algorithms: &[crate::hash::HashAlgorithm],
    max_file_size: Option<u64>,
) -> Result<FileRecord, Problem> {
    let body = LimitedBody::with_limit(stream_body(field), max_file_size.unwrap_or(u64::MAX));
    let mut body = match policy {
        Some(policy) => SniffBody::checking(body, policy, declared.clone()).0,
        None => SniffBody::unchecked(body),
    };
    // Decide on the content before any storage is touched.
    let sniffed = std::future::poll_fn(|cx| body.poll_decide(cx)).await.map_err(field_problem)?;
    let (body, digests) = HashBody::new(body, algorithms, Vec::new());
    // The verified type wins over what was declared (and what a hook made of it).
    let mut meta = created.meta;
    meta.content_type = sniffed.map(|s| s.content_type).or(meta.content_type);
    let id = UploadId::random();
    let key = ObjectKey::of(created.key_prefix.as_ref(), &id);
    // The id is new, and the catalog row written after the put is the file's commit point.
    let options = PutOptions { content_type: meta.content_type.clone(), ..PutOptions::default() }.fresh();
    let stored = app.store.put(&key, data_stream(body), options).await.map_err(|e| match e {
        crate::storage::StoreError::Body(source) => field_problem(source),
        other => other.to_problem(),
    })?;
    Ok(FileRecord {
        id,
        key,
        owner: created.owner,
        meta,
        size: stored.size,
        digests: digests.get().cloned().unwrap_or_default(),
        status: FileStatus::Complete,
        created_at: now_secs(),
    })
}
