//! Storing one body as one object: the innermost piece of every one-shot upload, used by the
//! raw endpoint and by [`StoreService`].

use crate::{
    body::data_stream,
    declared::DeclaredFile,
    error::{BoxError, Problem},
    id::UploadId,
    state::{FileRecord, FileStatus},
    storage::{Digests, FileMeta, ObjectKey, PutOptions, Store, now_secs},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header, request::Parts};
use http_body::Body;
use http_body_util::Full;
use serde::Serialize;
use std::{collections::BTreeMap, sync::Arc};

/// A stored file as the upload endpoints describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UploadedFile {
    /// The server-chosen id.
    pub id: String,
    /// The sanitised client file name.
    pub name: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// The stored (sniffed, when sniffing ran) media type.
    pub content_type: String,
    /// Hex SHA-256, when computed.
    pub sha256: Option<String>,
    /// Every digest computed, hex, by algorithm name.
    pub digests: BTreeMap<String, String>,
    /// Where to download it.
    pub url: String,
    /// The form field it came in, for form uploads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl UploadedFile {
    /// Describes a file, downloadable under `files_url` (`{prefix}/files`).
    pub fn new(file: &FileRecord, files_url: &str) -> Self {
        Self {
            id: file.id.to_string(),
            name: file.meta.name.clone(),
            size: file.size,
            content_type: file.meta.content_type.clone().unwrap_or_else(|| "application/octet-stream".into()),
            sha256: file.digests.get("sha-256").map(str::to_owned),
            digests: file.digests.0.clone(),
            url: format!("{}/{}", files_url.trim_end_matches('/'), file.id),
            field: file.meta.extra.get("field").cloned(),
        }
    }
}

/// The JSON body of a successful upload (`201 Created`).
#[derive(Clone, Debug, Serialize)]
pub struct UploadResponse {
    /// The stored files.
    pub files: Vec<UploadedFile>,
    /// Text fields of a form (a name sent more than once maps to an array).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The progress id the client named, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_id: Option<String>,
}

impl UploadResponse {
    /// `201 Created` with `Location` of the first file and the JSON body.
    pub fn into_http(self) -> Response<Full<Bytes>> {
        let mut res = Response::new(Full::from(serde_json::to_vec(&self).expect("serialisable")));
        *res.status_mut() = StatusCode::CREATED;
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(loc) = self.files.first().and_then(|f| HeaderValue::from_str(&f.url).ok()) {
            res.headers_mut().insert(header::LOCATION, loc);
        }
        res
    }
}

/// The content type to store: what sniffing found, else what was declared, else a guess from
/// the extension, else `application/octet-stream`.
pub(crate) fn stored_content_type(parts_ext: &http::Extensions, declared: &DeclaredFile) -> Option<String> {
    #[cfg(feature = "sniff")]
    if let Some(s) = parts_ext.get::<crate::sniff::Sniffed>() {
        return Some(s.content_type.clone());
    }
    let _ = parts_ext;
    declared.content_type.clone()
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok())
}

/// Stores a request body as one object, named by `Content-Disposition` or `?name=`, typed by the
/// sniff layer's verdict (or `Content-Type`), with the digests of the hash layer (if they ran),
/// and describes it as a file (which the caller may catalogue). On any failure — or if the
/// returned future is dropped — nothing is stored.
///
/// A `multipart/*` body is refused with `415 multipart_body`: the sniff and hash layers leave
/// multipart bodies to a form handler, which checks each file of the form, so storing one whole
/// would store content nothing has checked.
pub async fn store_body<B>(store: &dyn Store, parts: &Parts, body: B) -> Result<FileRecord, Problem>
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<BoxError>,
{
    refuse_multipart(&parts.headers)?;
    store_as(store, parts, body, None, false).await
}

/// Refuses a `multipart/*` body where a raw one is expected.
pub(crate) fn refuse_multipart(headers: &HeaderMap) -> Result<(), Problem> {
    if crate::declared::is_multipart(headers) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "multipart_body",
            "this endpoint takes the file itself as the body; send multipart/form-data to the form endpoint",
        ));
    }
    Ok(())
}

/// [`store_body`] with what a pre-create hook made of the request (metadata, owner, key
/// prefix). A caller that `catalogues` the file it gets back makes that row the commit point,
/// so the object is put [fresh](PutOptions::fresh); [`store_body`]'s caller may keep no
/// catalogue, and its objects appear whole or not at all.
pub(crate) async fn store_as<B>(
    store: &dyn Store,
    parts: &Parts,
    body: B,
    created: Option<crate::hooks::CreateRequest>,
    catalogues: bool,
) -> Result<FileRecord, Problem>
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<BoxError>,
{
    let (meta, key_prefix, owner) = match created {
        Some(created) => (created.meta, created.key_prefix, created.owner),
        None => (declared_meta(parts), None, None),
    };
    let id = UploadId::random();
    let key = ObjectKey::of(key_prefix.as_ref(), &id);
    let options = PutOptions {
        content_type: meta.content_type.clone(),
        fresh: catalogues,
        ..PutOptions::with_length(declared_length(&parts.headers))
    };
    let stored = store.put(&key, data_stream(body), options).await.map_err(|e| e.to_problem())?;
    Ok(FileRecord {
        id,
        key,
        owner,
        meta,
        size: stored.size,
        digests: digests_at_end(&parts.extensions),
        status: FileStatus::Complete,
        created_at: now_secs(),
    })
}

/// The metadata a raw upload request declares, typed by the sniff layer's verdict if it ran.
pub(crate) fn declared_meta(parts: &Parts) -> FileMeta {
    let declared = DeclaredFile::from_request(&parts.uri, &parts.headers);
    FileMeta { content_type: stored_content_type(&parts.extensions, &declared), name: declared.name, ..FileMeta::default() }
}

/// The digests the hash layer computed for a body that has ended.
pub(crate) fn digests_at_end(extensions: &http::Extensions) -> Digests {
    #[cfg(feature = "hash")]
    if let Some(handle) = extensions.get::<crate::hash::DigestHandle>() {
        return handle.get().cloned().unwrap_or_default();
    }
    let _ = extensions;
    Digests::default()
}

/// The progress id a request named, if the progress layer ran.
pub(crate) fn progress_id(extensions: &http::Extensions) -> Option<String> {
    #[cfg(feature = "progress")]
    if let Some(id) = extensions.get::<crate::progress::ProgressId>() {
        return Some(id.as_str().to_owned());
    }
    let _ = extensions;
    None
}

/// A tower service that stores each request body as one object and answers `201` with the
/// [`UploadResponse`] JSON — the innermost service of a plain tower/hyper upload server:
///
/// ```
/// use intake::{StoreService, storage::InMemory, limit::BodyLimitLayer, hash::HashLayer};
/// let svc = tower::ServiceBuilder::new()
///     .layer(BodyLimitLayer::new(1 << 20))
///     .layer(HashLayer::default())
///     .service(StoreService::new(InMemory::new()).files_url("/files"));
/// # let _ = svc;
/// ```
#[derive(Clone, Debug)]
pub struct StoreService {
    store: Arc<dyn Store>,
    files_url: Arc<str>,
}

impl StoreService {
    /// Stores into `store`; download URLs default to `/files/{id}`.
    pub fn new(store: impl Store) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Stores into a shared store.
    pub fn from_arc(store: Arc<dyn Store>) -> Self {
        Self { store, files_url: Arc::from("/files") }
    }

    /// The URL prefix of downloads in responses (`Location`, `url`).
    pub fn files_url(mut self, prefix: &str) -> Self {
        self.files_url = Arc::from(prefix);
        self
    }
}

impl<B> tower_service::Service<http::Request<B>> for StoreService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let store = self.store.clone();
        let files_url = self.files_url.clone();
        Box::pin(async move {
            if req.method() != http::Method::POST && req.method() != http::Method::PUT {
                return Ok(Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "send the file with POST or PUT")
                    .into_http());
            }
            let (parts, body) = req.into_parts();
            Ok(match store_body(store.as_ref(), &parts, body).await {
                Ok(file) => UploadResponse {
                    files: vec![UploadedFile::new(&file, &files_url)],
                    fields: Default::default(),
                    progress_id: progress_id(&parts.extensions),
                }
                .into_http(),
                Err(problem) => problem.into_http(),
            })
        })
    }
}
