//! Crash windows, by fault injection: a store decorator stops the server dead at one storage
//! call (before or after doing it) and the request is dropped, as a crashed process drops it;
//! then a new router starts over the same storage and state. For every window: the upload is in
//! its old state or its new one (never half), nothing acknowledged is lost, and once a sweep has
//! reconciled storage with the records and the catalog nothing is left behind.
//!
//! The kill -9 suite (`tests/crash/crash_test.py`) does the same with the real server process.

use crate::common::*;
use async_trait::async_trait;
use axum::{Router, body::Body};
use futures_util::{StreamExt, TryStreamExt, stream::BoxStream};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use intake::{
    Uploads,
    rate_limit::RateLimitLayer,
    state::{MemoryLocker, MemoryState, StateStore},
    storage::{
        Appended, ByteStream, GetResult, KeyPrefix, LocalDisk, ObjectKey, ObjectMeta, PendingUpload, PutOptions, ReadBack,
        ResumableState, ResumableStore, Store, StoreError,
    },
};
use std::{
    ops::Range,
    sync::{Arc, Mutex},
    time::Duration,
};
use tower::ServiceExt;

/// Where the server dies: at the `nth` call (from 1) of `op`, before or after doing it.
#[derive(Clone, Copy, Debug)]
struct Crash {
    op: &'static str,
    nth: usize,
    after: bool,
}

/// A store that dies at its crash point: the call never returns, so nothing after it runs.
#[derive(Clone, Debug)]
struct Crashing {
    inner: LocalDisk,
    plan: Arc<Mutex<Option<(Crash, usize)>>>,
    /// The next append writes only this many bytes, takes the rest and fails.
    short: Arc<Mutex<Option<usize>>>,
}

impl Crashing {
    fn new(inner: LocalDisk) -> Self {
        Self { inner, plan: Arc::default(), short: Arc::default() }
    }

    fn arm(&self, crash: Crash) {
        *self.plan.lock().unwrap() = Some((crash, 0));
    }

    /// Makes the next append keep only its first `bytes`, take the rest and fail, as a disk
    /// that fills up does (the server lives on).
    fn shorten_next_append(&self, bytes: usize) {
        *self.short.lock().unwrap() = Some(bytes);
    }

    fn disarm(&self) {
        *self.plan.lock().unwrap() = None;
    }

    /// Whether the call to `op` now is the crash point, and when.
    fn hit(&self, op: &str) -> Option<bool> {
        let mut plan = self.plan.lock().unwrap();
        let (crash, seen) = plan.as_mut()?;
        if crash.op != op {
            return None;
        }
        *seen += 1;
        (*seen == crash.nth).then_some(crash.after)
    }

    /// Runs `call`, unless this is the crash point: then dies before or after it.
    async fn run<T>(&self, op: &str, call: impl std::future::Future<Output = T>) -> T {
        match self.hit(op) {
            None => call.await,
            Some(false) => std::future::pending().await,
            Some(true) => {
                let _ = call.await;
                std::future::pending().await
            }
        }
    }

    fn resumable_inner(&self) -> &dyn ResumableStore {
        self.inner.resumable().expect("LocalDisk keeps resumable uploads")
    }
}

#[async_trait]
impl Store for Crashing {
    async fn put(&self, key: &ObjectKey, data: ByteStream<'_>, options: PutOptions) -> Result<ObjectMeta, StoreError> {
        self.run("put", self.inner.put(key, data, options)).await
    }
    async fn get(&self, key: &ObjectKey, range: Option<Range<u64>>) -> Result<GetResult, StoreError> {
        self.inner.get(key, range).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.run("delete", self.inner.delete(key)).await
    }
    fn list(&self, prefix: Option<&KeyPrefix>) -> BoxStream<'_, Result<ObjectMeta, StoreError>> {
        self.inner.list(prefix)
    }
    fn resumable(&self) -> Option<&dyn ResumableStore> {
        Some(self)
    }
    async fn clean_up(&self, age: u64) -> Result<usize, StoreError> {
        self.inner.clean_up(age).await
    }
}

#[async_trait]
impl ResumableStore for Crashing {
    async fn begin(&self, key: &ObjectKey) -> Result<ResumableState, StoreError> {
        self.run("begin", self.resumable_inner().begin(key)).await
    }
    async fn append(
        &self,
        key: &ObjectKey,
        state: &ResumableState,
        offset: u64,
        mut data: ByteStream<'_>,
    ) -> Result<Appended, StoreError> {
        let Some(keep) = self.short.lock().unwrap().take() else {
            return self.run("append", self.resumable_inner().append(key, state, offset, data)).await;
        };
        let (mut kept, mut seen) = (Vec::new(), 0);
        while let Some(chunk) = data.try_next().await.map_err(StoreError::Body)? {
            if seen < keep {
                kept.push(Ok(chunk.slice(..(keep - seen).min(chunk.len()))));
            }
            seen += chunk.len();
        }
        self.resumable_inner().append(key, state, offset, futures_util::stream::iter(kept).boxed()).await?;
        Err(StoreError::backend(std::io::Error::other("no space left on the device")))
    }
    async fn offset(&self, key: &ObjectKey, state: &ResumableState) -> Result<u64, StoreError> {
        self.resumable_inner().offset(key, state).await
    }
    async fn truncate(&self, key: &ObjectKey, state: &ResumableState, offset: u64) -> Result<ResumableState, StoreError> {
        self.run("truncate", self.resumable_inner().truncate(key, state, offset)).await
    }
    async fn complete(&self, key: &ObjectKey, state: &ResumableState) -> Result<ObjectMeta, StoreError> {
        self.run("complete", self.resumable_inner().complete(key, state)).await
    }
    async fn abort(&self, key: &ObjectKey, state: &ResumableState) -> Result<(), StoreError> {
        self.run("abort", self.resumable_inner().abort(key, state)).await
    }
    fn list_pending(&self) -> BoxStream<'_, Result<PendingUpload, StoreError>> {
        self.resumable_inner().list_pending()
    }
    fn read_back(&self) -> Option<&dyn ReadBack> {
        self.resumable_inner().read_back()
    }
}

/// One "process": a router over the shared storage and state (locks and progress are the
/// process's own, as after a restart).
struct Node {
    store: Crashing,
    state: MemoryState,
    app: Router,
}

impl Node {
    fn start(store: &Crashing, state: &MemoryState) -> Self {
        let uploads = Uploads::from_arc(Arc::new(store.clone()))
            .state(state.clone())
            .locker(MemoryLocker::new())
            .rate_limit(RateLimitLayer::disabled())
            .resumable_rate_limit(RateLimitLayer::disabled())
            .relative_urls()
            .sweep_every(None);
        Self { store: store.clone(), state: state.clone(), app: Router::new().nest("/upload", uploads.into_router()) }
    }

    /// Sends a request; `None` when the server died on it (it did not answer within 2 s).
    async fn send(&self, req: Request<Body>) -> Option<(StatusCode, http::HeaderMap, Vec<u8>)> {
        let answer = async {
            let res = self.app.clone().oneshot(req).await.unwrap();
            let (parts, body) = res.into_parts();
            (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
        };
        tokio::time::timeout(Duration::from_secs(2), answer).await.ok()
    }

    async fn ok(&self, req: Request<Body>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
        self.send(req).await.expect("an answer")
    }

    /// A sweep that takes anything unnamed for an orphan, however young.
    async fn sweep(&self) -> intake::state::sweep::SweepReport {
        intake::state::sweep::Sweeper::new(
            Arc::new(self.state.clone()),
            Arc::new(self.store.clone()),
            Arc::new(MemoryLocker::new()),
        )
        .orphans_after(Some(Duration::ZERO))
        .reconcile_every(Duration::ZERO)
        .sweep()
        .await
        .unwrap()
    }

    /// After a sweep, storage holds exactly what records and catalog rows name.
    async fn assert_nothing_left_behind(&self, window: &str) {
        self.sweep().await;
        let objects: Vec<ObjectMeta> = self.store.list(None).try_collect().await.unwrap();
        for object in objects {
            let (id, chunk) = object.key.owner_id().expect("a key the server made");
            let named = match chunk {
                Some(_) => self.state.get(&id).await.unwrap().is_some(),
                None => {
                    self.state.get_file(&id).await.unwrap().is_some_and(|f| f.key == object.key)
                        || self.state.get(&id).await.unwrap().is_some()
                }
            };
            assert!(named, "{window}: {} is left behind", object.key);
        }
        let pending: Vec<PendingUpload> = self.store.list_pending().try_collect().await.unwrap();
        for upload in pending {
            let (id, _) = upload.key.owner_id().unwrap();
            assert!(self.state.get(&id).await.unwrap().is_some(), "{window}: the upload {} is left behind", upload.key);
        }
        assert_eq!(files_under(&self.store.inner.root().join("tmp")), Vec::<String>::new(), "{window}: temporary files");
    }
}

fn tus_create(length: usize) -> Request<Body> {
    Request::post("/upload/tus/")
        .header("tus-resumable", "1.0.0")
        .header("upload-length", length)
        .header("upload-metadata", "filename YS5iaW4=")
        .body(Body::empty())
        .unwrap()
}

fn tus_patch(url: &str, offset: usize, data: &[u8]) -> Request<Body> {
    Request::patch(url)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset)
        .header("content-type", "application/offset+octet-stream")
        .body(Body::from(data.to_vec()))
        .unwrap()
}

fn tus(method: &str, url: &str) -> Request<Body> {
    Request::builder().method(method).uri(url).header("tus-resumable", "1.0.0").body(Body::empty()).unwrap()
}

fn raw(data: &[u8]) -> Request<Body> {
    Request::post("/upload/raw?name=a.bin").body(Body::from(data.to_vec())).unwrap()
}

fn json_post(url: &str, body: serde_json::Value) -> Request<Body> {
    Request::post(url).header("content-type", "application/json").body(Body::from(body.to_string())).unwrap()
}

fn location(headers: &http::HeaderMap) -> String {
    headers["location"].to_str().unwrap().to_owned()
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

fn setup() -> (tempfile::TempDir, Crashing, MemoryState) {
    let dir = tempfile::tempdir().unwrap();
    let store = Crashing::new(LocalDisk::new(dir.path().join("store")));
    (dir, store, MemoryState::new())
}

#[tokio::test]
async fn tus_completion_cut_before_its_catalog_row_is_rolled_forward() {
    let (_dir, store, state) = setup();
    let data = pseudo_random(50_000, 1);
    let node = Node::start(&store, &state);
    let url = location(&node.ok(tus_create(data.len())).await.1);
    assert_eq!(node.ok(tus_patch(&url, 0, &data[..20_000])).await.0, 204);
    store.arm(Crash { op: "complete", nth: 1, after: true });
    assert!(node.send(tus_patch(&url, 20_000, &data[20_000..])).await.is_none(), "the server died completing the upload");
    store.disarm();
    let node = Node::start(&store, &state);
    let (status, headers, _) = node.ok(tus("HEAD", &url)).await;
    assert_eq!((status, headers["upload-offset"].to_str().unwrap()), (StatusCode::OK, "50000"), "the new state: all of it");
    let (status, headers, body) = node.ok(tus("GET", &url)).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, data.as_slice()), "the file is whole");
    assert_eq!(headers["etag"].to_str().unwrap(), format!("\"{}\"", sha256_hex(&data)), "with its digest");
    let id = url.rsplit('/').next().unwrap();
    let (status, _, body) = node.ok(tus("GET", &format!("/upload/files/{id}"))).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, data.as_slice()), "and catalogued");
    node.assert_nothing_left_behind("completion").await;
}

#[tokio::test]
async fn tus_creation_cut_before_its_record_leaves_an_orphan_the_sweep_removes() {
    let (_dir, store, state) = setup();
    let node = Node::start(&store, &state);
    store.arm(Crash { op: "begin", nth: 1, after: true });
    assert!(node.send(tus_create(10)).await.is_none());
    store.disarm();
    let node = Node::start(&store, &state);
    let pending: Vec<PendingUpload> = store.list_pending().try_collect().await.unwrap();
    assert_eq!(pending.len(), 1, "the store began an upload no record names");
    assert_eq!(state.len(), 0);
    assert_eq!(node.sweep().await.orphans, 1);
    node.assert_nothing_left_behind("creation").await;
}

#[tokio::test]
async fn tus_termination_cut_before_the_bytes_leaves_an_orphan_the_sweep_removes() {
    let (_dir, store, state) = setup();
    let node = Node::start(&store, &state);
    let url = location(&node.ok(tus_create(100)).await.1);
    assert_eq!(node.ok(tus_patch(&url, 0, b"some bytes")).await.0, 204);
    store.arm(Crash { op: "abort", nth: 1, after: false });
    assert!(node.send(tus("DELETE", &url)).await.is_none());
    store.disarm();
    let node = Node::start(&store, &state);
    assert_eq!(node.ok(tus("HEAD", &url)).await.0, StatusCode::NOT_FOUND, "the new state: terminated");
    assert_eq!(node.sweep().await.orphans, 1);
    node.assert_nothing_left_behind("termination").await;
}

#[tokio::test]
async fn a_put_cut_before_its_catalog_row_leaves_an_orphan_the_sweep_removes() {
    let (_dir, store, state) = setup();
    let node = Node::start(&store, &state);
    store.arm(Crash { op: "put", nth: 1, after: true });
    assert!(node.send(raw(b"never acknowledged")).await.is_none());
    store.disarm();
    let node = Node::start(&store, &state);
    assert_eq!(state.file_count(), 0, "the old state: no file");
    assert_eq!(node.sweep().await.orphaned_objects, 1);
    node.assert_nothing_left_behind("one-shot put").await;
    let objects: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
    assert!(objects.is_empty());
}

#[tokio::test]
async fn a_file_delete_cut_before_the_bytes_leaves_an_orphan_the_sweep_removes() {
    let (_dir, store, state) = setup();
    let node = Node::start(&store, &state);
    let (status, _, body) = node.ok(raw(b"a file")).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = json(&body)["files"][0]["id"].as_str().unwrap().to_owned();
    store.arm(Crash { op: "delete", nth: 1, after: false });
    assert!(node.send(tus("DELETE", &format!("/upload/files/{id}"))).await.is_none());
    store.disarm();
    let node = Node::start(&store, &state);
    assert_eq!(node.ok(tus("GET", &format!("/upload/files/{id}"))).await.0, StatusCode::NOT_FOUND, "the new state: deleted");
    assert_eq!(node.sweep().await.orphaned_objects, 1);
    node.assert_nothing_left_behind("file delete").await;
}

#[tokio::test]
async fn a_chunk_stored_but_not_recorded_is_sent_again() {
    let (_dir, store, state) = setup();
    let data = pseudo_random(10_000, 2);
    let node = Node::start(&store, &state);
    let init =
        json_post("/upload/chunked/init", serde_json::json!({"filename": "a.bin", "total_size": 10_000, "chunk_size": 5_000}));
    let id = json(&node.ok(init).await.2)["upload_id"].as_str().unwrap().to_owned();
    let chunk = |n: usize| {
        Request::post(format!("/upload/chunked/chunk?upload_id={id}&chunk={n}"))
            .body(Body::from(data[n * 5_000..][..5_000].to_vec()))
            .unwrap()
    };
    store.arm(Crash { op: "put", nth: 1, after: true });
    assert!(node.send(chunk(0)).await.is_none());
    store.disarm();
    let node = Node::start(&store, &state);
    let status = json(&node.ok(tus("GET", &format!("/upload/chunked/status?upload_id={id}"))).await.2);
    assert_eq!(status["missing_chunks"], serde_json::json!([0, 1]), "the old state: chunk 0 was never acknowledged");
    assert_eq!(node.ok(chunk(0)).await.0, StatusCode::OK);
    assert_eq!(node.ok(chunk(1)).await.0, StatusCode::OK);
    let done = node.ok(Request::post(format!("/upload/chunked/complete?upload_id={id}")).body(Body::empty()).unwrap()).await;
    assert_eq!(done.0, StatusCode::OK);
    let (_, _, body) = node.ok(tus("GET", &format!("/upload/files/{id}"))).await;
    assert_eq!(body, data);
    node.assert_nothing_left_behind("chunk").await;
}

#[tokio::test]
async fn a_chunked_completion_cut_before_its_catalog_row_is_completed_again() {
    let (_dir, store, state) = setup();
    let data = pseudo_random(10_000, 3);
    let node = Node::start(&store, &state);
    let init =
        json_post("/upload/chunked/init", serde_json::json!({"filename": "a.bin", "total_size": 10_000, "chunk_size": 5_000}));
    let id = json(&node.ok(init).await.2)["upload_id"].as_str().unwrap().to_owned();
    for n in 0..2 {
        let chunk = Request::post(format!("/upload/chunked/chunk?upload_id={id}&chunk={n}"))
            .body(Body::from(data[n * 5_000..][..5_000].to_vec()))
            .unwrap();
        assert_eq!(node.ok(chunk).await.0, StatusCode::OK);
    }
    let complete = || Request::post(format!("/upload/chunked/complete?upload_id={id}")).body(Body::empty()).unwrap();
    store.arm(Crash { op: "put", nth: 1, after: true });
    assert!(node.send(complete()).await.is_none(), "the server died once the file was assembled");
    store.disarm();
    let node = Node::start(&store, &state);
    assert_eq!(state.file_count(), 0, "the old state: not complete");
    let (status, _, body) = node.ok(complete()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["sha256"], sha256_hex(&data));
    assert_eq!(node.ok(tus("GET", &format!("/upload/files/{id}"))).await.2, data);
    node.assert_nothing_left_behind("chunked completion").await;
}

#[tokio::test]
async fn a_concatenation_cut_before_its_record_leaves_an_orphan_the_sweep_removes() {
    let (_dir, store, state) = setup();
    let node = Node::start(&store, &state);
    let mut partials = Vec::new();
    for piece in [&b"hello "[..], b"world"] {
        let create = Request::post("/upload/tus/")
            .header("tus-resumable", "1.0.0")
            .header("upload-length", piece.len())
            .header("upload-concat", "partial")
            .body(Body::empty())
            .unwrap();
        let url = location(&node.ok(create).await.1);
        assert_eq!(node.ok(tus_patch(&url, 0, piece)).await.0, 204);
        partials.push(url);
    }
    let concat = || {
        Request::post("/upload/tus/")
            .header("tus-resumable", "1.0.0")
            .header("upload-concat", format!("final;{} {}", partials[0], partials[1]))
            .body(Body::empty())
            .unwrap()
    };
    store.arm(Crash { op: "put", nth: 1, after: true });
    assert!(node.send(concat()).await.is_none());
    store.disarm();
    let node = Node::start(&store, &state);
    assert_eq!(state.file_count(), 0, "the old state: no final upload");
    assert_eq!(node.sweep().await.orphaned_objects, 1);
    node.assert_nothing_left_behind("concatenation").await;
    let (status, headers, _) = node.ok(concat()).await;
    assert_eq!(status, StatusCode::CREATED, "the partial uploads are intact: concatenating again works");
    assert_eq!(node.ok(tus("GET", &location(&headers))).await.2, b"hello world");
}

/// An append that fails partway (a full disk) keeps some of the bytes its whole-upload hashers
/// were fed: they are dropped, and the upload's recorded checkpoint stays, so the request that
/// resumes reads back from it and the file still gets its digest (before, the record lost its
/// checkpoint and the file was catalogued without a digest).
#[tokio::test]
async fn an_append_cut_short_by_the_store_keeps_the_upload_digest() {
    let (_dir, store, state) = setup();
    let data = pseudo_random(300_000, 2);
    let node = Node::start(&store, &state);
    let url = location(&node.ok(tus_create(data.len())).await.1);
    assert_eq!(node.ok(tus_patch(&url, 0, &data[..100_000])).await.0, 204);
    store.shorten_next_append(50_000);
    let (status, headers, _) = node.ok(tus_patch(&url, 100_000, &data[100_000..200_000])).await;
    assert!(status.is_server_error(), "the failed append answers {status}");
    assert_eq!(headers["upload-offset"].to_str().unwrap(), "150000", "with what the store kept");
    let (_, headers, _) = node.ok(tus("HEAD", &url)).await;
    assert_eq!(headers["upload-offset"].to_str().unwrap(), "150000");
    assert_eq!(node.ok(tus_patch(&url, 150_000, &data[150_000..])).await.0, 204);
    let (status, headers, body) = node.ok(tus("GET", &url)).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, data.as_slice()), "the file is whole");
    let etag = headers.get("etag").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(etag, Some(format!("\"{}\"", sha256_hex(&data))), "with its digest");
}
