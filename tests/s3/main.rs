//! The S3 backend against a real S3 server that checks signatures (SeaweedFS, started by
//! `tests/s3/run.sh`). Runs when `INTAKE_S3_TEST_ENDPOINT` and `INTAKE_S3_TEST_BUCKET` are set
//! (credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`; the sweeper test uses a bucket
//! of its own, `INTAKE_S3_TEST_SWEEP_BUCKET`, by default `{bucket}-sweep`); without them each test says
//! so and passes, unless `INTAKE_REQUIRE_S3=1`, which makes a missing server a failure.

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use intake::{
    BoxError, Problem, UploadId, Uploads,
    hooks::{AccessRequest, CreateRequest, Hooks},
    rate_limit::RateLimitLayer,
    state::{MemoryLocker, MemoryState, Protocol, StateStore, UploadRecord, sweep::Sweeper},
    storage::{ByteStream, KeyPrefix, ObjectKey, PutOptions, ResumableState, ResumableStore, S3, Store, StoreError},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::{net::SocketAddr, sync::Arc, time::Duration};

const MIB: usize = 1 << 20;

struct Server {
    endpoint: String,
    bucket: String,
    /// A bucket of its own for the sweeper test, which treats everything in a bucket that no
    /// record names as an orphan.
    sweep_bucket: String,
}

/// The server under test, or `None` (with a note) when none is configured.
fn server() -> Option<Server> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (var("INTAKE_S3_TEST_ENDPOINT"), var("INTAKE_S3_TEST_BUCKET")) {
        (Some(endpoint), Some(bucket)) => {
            let sweep_bucket = var("INTAKE_S3_TEST_SWEEP_BUCKET").unwrap_or_else(|| format!("{bucket}-sweep"));
            Some(Server { endpoint, bucket, sweep_bucket })
        }
        _ if var("INTAKE_REQUIRE_S3").as_deref() == Some("1") => {
            panic!("INTAKE_REQUIRE_S3=1 but INTAKE_S3_TEST_ENDPOINT / INTAKE_S3_TEST_BUCKET are not set: run tests/s3/run.sh")
        }
        _ => {
            eprintln!("no S3 server (INTAKE_S3_TEST_ENDPOINT, INTAKE_S3_TEST_BUCKET): S3 tests not run; see tests/s3/run.sh");
            None
        }
    }
}

/// A store on the test server with 5 MiB parts (the smallest), so that a few MiB make parts.
fn store(server: &Server) -> S3 {
    S3::builder(&server.bucket)
        .endpoint(&server.endpoint)
        .allow_http(true)
        .part_size(5 * MIB)
        .concurrency(3)
        .build()
        .expect("an S3 store")
}

/// `len` bytes that differ from position to position (so a misplaced part shows).
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i / 7) as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 16) as u8).collect()
}

/// `bytes` as a stream of `chunk`-sized pieces.
fn chunks(bytes: &[u8], chunk: usize) -> ByteStream<'static> {
    let pieces: Vec<Result<Bytes, BoxError>> = bytes.chunks(chunk.max(1)).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(pieces).boxed()
}

async fn read(store: &S3, key: &ObjectKey, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let got = store.get(key, range).await.expect("get");
    let parts: Vec<Bytes> = got.body.try_collect().await.expect("read");
    parts.concat()
}

fn key(prefix: &KeyPrefix) -> ObjectKey {
    ObjectKey::of(Some(prefix), &UploadId::random())
}

fn prefix() -> KeyPrefix {
    KeyPrefix::new(&format!("s3-tests/{}", UploadId::random())).unwrap()
}

async fn listed(store: &S3, prefix: &KeyPrefix) -> Vec<String> {
    let mut keys: Vec<String> = store.list(Some(prefix)).map_ok(|m| m.key.to_string()).try_collect().await.expect("list");
    keys.sort();
    keys
}

async fn pending(store: &S3, key: &ObjectKey) -> usize {
    let all: Vec<_> = store.list_pending().try_collect().await.expect("list_pending");
    all.iter().filter(|p| &p.key == key).count()
}

#[tokio::test]
async fn conformance() {
    let Some(server) = server() else { return };
    intake::storage::conformance::run(&store(&server)).await;
}

#[tokio::test]
async fn puts_stream_parts_and_downloads_take_ranges() {
    let Some(server) = server() else { return };
    let store = store(&server);
    let prefix = prefix();
    let key = key(&prefix);
    // 17 MiB + a little, in odd-sized chunks: three full parts and a short last one.
    let bytes = data(17 * MIB + 12_345, 1);
    let mut options = PutOptions::with_length(Some(bytes.len() as u64));
    options.content_type = Some("image/png".into());
    let meta = store.put(&key, chunks(&bytes, 100_003), options).await.expect("put");
    assert_eq!(meta.size, bytes.len() as u64);
    assert_eq!(store.head(&key).await.unwrap().size, bytes.len() as u64);
    assert!(read(&store, &key, None).await == bytes, "the object is the body, byte for byte");
    let range = (5 * MIB as u64 - 10)..(10 * MIB as u64 + 10);
    assert!(
        read(&store, &key, Some(range.clone())).await == bytes[range.start as usize..range.end as usize],
        "a range across parts"
    );
    assert_eq!(pending(&store, &key).await, 0, "the multipart upload was completed");
    // A body that fails after two parts went out: the multipart upload is aborted, nothing stays.
    let failing =
        chunks(&bytes[..11 * MIB], MIB).chain(stream::iter([Err::<Bytes, BoxError>("client went away".into())])).boxed();
    let other = ObjectKey::of(Some(&prefix), &UploadId::random());
    assert!(matches!(store.put(&other, failing, PutOptions::default()).await, Err(StoreError::Body(_))));
    assert_eq!(pending(&store, &other).await, 0, "a failed put aborts its multipart upload");
    assert!(matches!(store.head(&other).await, Err(StoreError::NotFound(_))));
    // A put whose request is dropped mid-way: its multipart upload is aborted in the background.
    let stalled = chunks(&bytes[..11 * MIB], MIB).chain(stream::pending()).boxed();
    let dropped = ObjectKey::of(Some(&prefix), &UploadId::random());
    let put = store.put(&dropped, stalled, PutOptions::default());
    assert!(tokio::time::timeout(Duration::from_secs(3), put).await.is_err());
    let mut left = 1;
    for _ in 0..50 {
        left = pending(&store, &dropped).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "a dropped put aborts its multipart upload");
    store.delete(&key).await.unwrap();
    assert!(listed(&store, &prefix).await.is_empty());
}

/// A tus-style upload in 1 MiB appends, continued half-way by a second store (another process:
/// nothing shared but the recorded state), with a checksum-style undo of one append.
#[tokio::test]
async fn resumable_uploads_go_on_in_another_process_and_undo_appends() {
    let Some(server) = server() else { return };
    let (first, second) = (store(&server), store(&server));
    let prefix = prefix();
    let key = key(&prefix);
    let bytes = data(13 * MIB + 777, 2);
    let mut state = first.begin(&key).await.expect("begin");
    let mut offset = 0usize;
    let mut recorded: Vec<ResumableState> = Vec::new();
    for (i, piece) in bytes.chunks(MIB).enumerate() {
        let store = if i < 6 { &first } else { &second };
        let appended = store.append(&key, &state, offset as u64, chunks(piece, 64 * 1024)).await.expect("append");
        assert!(appended.failure.is_none());
        assert_eq!(appended.offset, (offset + piece.len()) as u64);
        if i == 8 {
            // Undone (its checksum did not match): back to where it started, then sent again.
            let undone = store.truncate(&key, &appended.state, offset as u64).await.expect("truncate");
            assert_eq!(store.offset(&key, &undone).await.unwrap(), offset as u64);
            let again = store.append(&key, &undone, offset as u64, chunks(piece, MIB)).await.expect("append again");
            assert_eq!(again.offset, appended.offset);
            state = again.state;
        } else {
            state = appended.state;
        }
        offset += piece.len();
        assert_eq!(second.offset(&key, &state).await.unwrap(), offset as u64, "the state alone says where the upload is");
        recorded.push(state.clone());
    }
    let json = &state.0;
    assert_eq!(json["parts"].as_array().map(Vec::len), Some(2), "13 MiB in 5 MiB parts: {json}");
    assert_eq!(json["tail"]["len"], 3 * MIB as u64 + 777, "{json}");
    let tails: Vec<_> = listed(&first, &prefix).await;
    assert!(tails.iter().all(|k| k.contains(".tail-")), "only tails are objects yet: {tails:?}");
    assert!(tails.len() <= 3, "old tails are deleted as the upload goes on: {tails:?}");
    let meta = first.complete(&key, &state).await.expect("complete");
    assert_eq!(meta.size, bytes.len() as u64);
    assert!(read(&first, &key, None).await == bytes, "the object is every append in order");
    assert_eq!(listed(&first, &prefix).await, vec![key.to_string()], "completing removed the tails");
    assert!(matches!(first.offset(&key, &state).await, Err(StoreError::NotFound(_))));
    first.delete(&key).await.unwrap();
}

/// One large append (many parts at once) cut off by its client: the parts and the bytes after
/// them are kept; a second append goes on from there.
#[tokio::test]
async fn a_large_append_cut_off_keeps_what_arrived() {
    let Some(server) = server() else { return };
    let store = store(&server);
    let prefix = prefix();
    let key = key(&prefix);
    let bytes = data(23 * MIB + 5, 3);
    let state = store.begin(&key).await.unwrap();
    let cut = 16 * MIB + 100;
    let failing = chunks(&bytes[..cut], 256 * 1024).chain(stream::iter([Err::<Bytes, BoxError>("gone".into())])).boxed();
    let appended = store.append(&key, &state, 0, failing).await.unwrap();
    assert!(matches!(appended.failure, Some(StoreError::Body(_))));
    assert_eq!(appended.offset, cut as u64, "every byte before the failure is kept");
    let done = store.append(&key, &appended.state, cut as u64, chunks(&bytes[cut..], 3 * MIB)).await.unwrap();
    assert_eq!(done.offset, bytes.len() as u64);
    store.complete(&key, &done.state).await.unwrap();
    assert!(read(&store, &key, None).await == bytes);
    store.delete(&key).await.unwrap();
    assert!(listed(&store, &prefix).await.is_empty());
}

/// The sweeper aborts multipart uploads and deletes tails that no record names, and keeps those
/// of a live upload.
#[tokio::test]
async fn the_sweeper_removes_orphaned_uploads_and_tails() {
    let Some(mut server) = server() else { return };
    server.bucket = server.sweep_bucket.clone();
    let store = Arc::new(store(&server));
    let state = Arc::new(MemoryState::new());
    let prefix = prefix();
    // A live upload: recorded, with a tail.
    let mut live = UploadRecord::new(
        UploadId::random(),
        Protocol::Tus { metadata: None, concat: Default::default() },
        None,
        Default::default(),
    );
    live.key_prefix = Some(prefix.clone());
    live.storage = store.begin(&live.key()).await.unwrap();
    live.storage = store.append(&live.key(), &live.storage, 0, chunks(b"live bytes", 4)).await.unwrap().state;
    state.insert(&live).await.unwrap();
    // An upload a crash left unrecorded, with its tail, and a tail of an upload long gone.
    let orphan = key(&prefix);
    let orphan_state = store.begin(&orphan).await.unwrap();
    store.append(&orphan, &orphan_state, 0, chunks(b"orphan bytes", 5)).await.unwrap();
    let stray = key(&prefix).tail(4).unwrap();
    store.put(&stray, chunks(b"stray", 5), PutOptions::default()).await.unwrap();
    // Chunked uploads whose chunks are parts of the file's multipart upload: a live one, and
    // one expired (its record is removed and its multipart upload aborted).
    let mut chunked = Vec::new();
    for expires_at in [None, Some(0)] {
        let protocol = Protocol::Chunked { chunk_size: 5 * MIB as u64, chunks: [0].into(), parts: Some(Default::default()) };
        let mut record = UploadRecord::new(UploadId::random(), protocol, Some(6 * MIB as u64), Default::default());
        record.key_prefix = Some(prefix.clone());
        record.expires_at = expires_at;
        record.storage = intake::storage::MultipartStore::create(store.as_ref(), &record.key()).await.unwrap();
        let part = intake::storage::MultipartStore::put_part(
            store.as_ref(),
            &record.key(),
            &record.storage,
            0,
            chunks(&data(5 * MIB, 4), MIB),
            5 * MIB as u64,
        )
        .await
        .unwrap();
        if let Protocol::Chunked { parts: Some(parts), .. } = &mut record.protocol {
            parts.insert(0, part);
        }
        state.insert(&record).await.unwrap();
        chunked.push(record);
    }
    let sweeper = Sweeper::new(state.clone(), store.clone(), Arc::new(MemoryLocker::new()))
        .orphans_after(Some(Duration::ZERO))
        .reconcile_every(Duration::ZERO);
    // SeaweedFS and S3 date uploads to the second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = sweeper.sweep().await.unwrap();
    // The orphan's tail goes with its upload; the stray tail is an orphaned object.
    assert_eq!((report.orphans, report.orphaned_objects, report.expired), (1, 1, 1), "{report:?}");
    assert_eq!(pending(&store, &orphan).await, 0, "the orphaned multipart upload is aborted");
    assert_eq!(pending(&store, &live.key()).await, 1, "the live one stays");
    assert_eq!(pending(&store, &chunked[0].key()).await, 1, "a live chunked upload's multipart upload stays");
    assert_eq!(pending(&store, &chunked[1].key()).await, 0, "an expired one's is aborted");
    assert!(state.get(&chunked[1].id).await.unwrap().is_none());
    intake::storage::MultipartStore::abort(store.as_ref(), &chunked[0].key(), &chunked[0].storage).await.unwrap();
    let left = listed(&store, &prefix).await;
    assert_eq!(left, vec![live.key().tail(1).unwrap().to_string()], "only the live upload's tail stays");
    assert_eq!(store.offset(&live.key(), &live.storage).await.unwrap(), 10);
    store.abort(&live.key(), &live.storage).await.unwrap();
    assert!(listed(&store, &prefix).await.is_empty());
}

/// The upload router on `store`, serving on a loopback port: each upload belongs to the tenant
/// its `X-Tenant` header names (`public` without one), is kept under `{prefix}/{tenant}/`, and
/// only that tenant may touch it (anyone else gets `404`). Returns the router's base URL.
async fn serve(store: S3, prefix: &KeyPrefix, uploads: impl FnOnce(Uploads) -> Uploads) -> String {
    let tenant = |headers: &http::HeaderMap| headers.get("x-tenant").and_then(|v| v.to_str().ok()).unwrap_or("public").to_owned();
    let prefix = prefix.clone();
    let hooks = Hooks::new()
        .pre_create(move |mut create: CreateRequest| {
            let prefix = prefix.clone();
            async move {
                let tenant = tenant(&create.headers);
                create.key_prefix = KeyPrefix::new(&format!("{}/{tenant}", prefix.as_str()));
                create.owner = Some(tenant);
                Ok(create)
            }
        })
        .authorize(move |access: AccessRequest| async move {
            match access.owner.as_deref() == Some(tenant(&access.headers).as_str()) {
                true => Ok(()),
                false => Err(Problem::new(http::StatusCode::NOT_FOUND, "upload_not_found", "no upload or file with this id")),
            }
        });
    let uploads = uploads(Uploads::new(store).hooks(hooks).rate_limit(RateLimitLayer::disabled()));
    let app = axum::Router::new().nest("/upload", uploads.into_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await });
    format!("http://{addr}/upload")
}

async fn json_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}")))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The chunked API on S3 with 5 MiB chunks: each chunk goes straight into the file's multipart
/// upload as its part (in parallel, out of order, one sent twice at once and one again later),
/// so no chunk object is ever written and completion copies nothing: the file's ETag says it
/// was made of the 6 chunk parts, where a copy through the store's 8 MiB puts would have 4.
#[tokio::test]
async fn chunks_of_five_mib_become_the_parts_of_the_file() {
    let Some(server) = server() else { return };
    let store = S3::builder(&server.bucket)
        .endpoint(&server.endpoint)
        .allow_http(true)
        .part_size(8 * MIB)
        .concurrency(3)
        .build()
        .unwrap();
    let prefix = prefix();
    let base = serve(store.clone(), &prefix, |u| u).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let bytes = data(25 * MIB + 1234, 7);
    let pieces: Vec<&[u8]> = bytes.chunks(5 * MIB).collect();
    assert_eq!(pieces.len(), 6);
    let init = json!({"filename": "parts.bin", "total_size": bytes.len(), "chunk_size": 5 * MIB});
    let (status, started) = json_of(client.post(format!("{base}/chunked/init")).json(&init).send().await.unwrap()).await;
    assert_eq!(status, 201, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    let key = ObjectKey::new(&format!("{}/public/{id}", prefix.as_str())).unwrap();
    assert_eq!(key.owner_id().map(|(owner, _)| owner.to_string()), Some(id.clone()), "the sweeper finds the record by the key");
    let send = |n: usize| {
        let (client, url) = (client.clone(), format!("{base}/chunked/chunk?upload_id={id}&chunk={n}"));
        let body = pieces[n].to_vec();
        async move {
            let res = client.post(url).body(body).send().await.unwrap();
            let (status, answer) = json_of(res).await;
            assert_eq!(status, 200, "chunk {n}: {answer}");
        }
    };
    // The last chunk first, then four at once (chunk 2 twice), then the rest.
    send(5).await;
    futures_util::future::join_all([send(3), send(2), send(2), send(1)]).await;
    assert!(listed(&store, &prefix).await.is_empty(), "no chunk is an object of its own");
    let pending: Vec<_> = store.list_pending().try_filter(|p| std::future::ready(p.key == key)).try_collect().await.unwrap();
    assert_eq!(pending.len(), 1, "the file's multipart upload");
    let held = intake::storage::MultipartStore::parts(&store, &key, &pending[0].state).await.unwrap();
    let sizes: Vec<(u64, u64)> = held.iter().map(|(n, p)| (*n, p.size)).collect();
    assert_eq!(sizes, [(1, 5 * MIB as u64), (2, 5 * MIB as u64), (3, 5 * MIB as u64), (5, 1234)], "chunk n is part n");
    let (status, early) = json_of(client.post(format!("{base}/chunked/complete?upload_id={id}")).send().await.unwrap()).await;
    assert_eq!((status, &early["missing_chunks"]), (409, &json!([0, 4])), "{early}");
    send(0).await;
    send(4).await;
    send(3).await; // a retry of a chunk that arrived: a success, nothing stored
    let (status, done) = json_of(client.post(format!("{base}/chunked/complete?upload_id={id}")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["sha256"], sha256_hex(&bytes), "the SHA-256 of the file, read back past the chunks hashed in order");
    assert_eq!(done["size"], bytes.len());
    let got = client.get(format!("{base}/files/{id}")).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.bytes().await.unwrap() == bytes, "the file is the chunks in order");
    assert_eq!(listed(&store, &prefix).await, vec![key.to_string()], "only the file is left");
    assert_eq!(pending_of(&store, &key).await, 0, "the multipart upload was completed");
    let etag = etag(&server, &key).await;
    assert!(etag.trim_matches('"').ends_with("-6"), "made of the 6 chunk parts, not copied: {etag}");
    // Completing again answers the same file.
    let (status, again) = json_of(client.post(format!("{base}/chunked/complete?upload_id={id}")).send().await.unwrap()).await;
    assert_eq!((status, &again["sha256"]), (200, &done["sha256"]));

    // Chunks sent in order carry the hash: nothing is read back, and the digest is the same.
    let init = json!({"filename": "ordered.bin", "total_size": 10 * MIB + 5, "chunk_size": 5 * MIB});
    let (_, started) = json_of(client.post(format!("{base}/chunked/init")).json(&init).send().await.unwrap()).await;
    let ordered = data(10 * MIB + 5, 8);
    let id = started["id"].as_str().unwrap();
    for (n, piece) in ordered.chunks(5 * MIB).enumerate() {
        let res =
            client.post(format!("{base}/chunked/chunk?upload_id={id}&chunk={n}")).body(piece.to_vec()).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let (status, done) = json_of(client.post(format!("{base}/chunked/complete?upload_id={id}")).send().await.unwrap()).await;
    assert_eq!((status, done["sha256"].as_str()), (200, Some(sha256_hex(&ordered).as_str())));
    for file in listed(&store, &prefix).await {
        store.delete(&ObjectKey::new(&file).unwrap()).await.unwrap();
    }
}

async fn pending_of(store: &S3, key: &ObjectKey) -> usize {
    pending(store, key).await
}

/// The object's ETag, as S3 reports it.
async fn etag(server: &Server, key: &ObjectKey) -> String {
    let raw = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(&server.bucket)
        .with_endpoint(&server.endpoint)
        .with_allow_http(true)
        .build()
        .unwrap();
    let meta = object_store::ObjectStoreExt::head(&raw, &object_store::path::Path::from(key.as_str())).await.unwrap();
    meta.e_tag.expect("an ETag")
}

/// With `download_redirect`, a download the authorisation hook allows answers `307` to a
/// presigned URL of S3 (which reqwest follows to the bytes, with a range too); another tenant
/// still gets `404` and no URL; `HEAD`, and a router without the setting, answer as before.
#[tokio::test]
async fn downloads_redirect_to_a_presigned_url_once_allowed() {
    let Some(server) = server() else { return };
    let prefix = prefix();
    // Two routers on one catalog: one redirects, one does not.
    let state: Arc<dyn StateStore> = Arc::new(MemoryState::new());
    let shared = state.clone();
    let redirecting = serve(store(&server), &prefix, |u| u.state_arc(shared).download_redirect(Duration::from_secs(60))).await;
    let streaming = serve(store(&server), &prefix, |u| u.state_arc(state)).await;
    let follow = reqwest::Client::builder().no_proxy().build().unwrap();
    let stay = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let bytes = data(6 * MIB + 99, 9);
    let res = follow
        .post(format!("{redirecting}/raw?name=r.bin"))
        .header("x-tenant", "acme")
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    let (status, answer) = json_of(res).await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["files"][0]["id"].as_str().unwrap().to_owned();
    let url = format!("{redirecting}/files/{id}");

    let res = stay.get(&url).header("x-tenant", "acme").send().await.unwrap();
    assert_eq!(res.status(), 307);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/{}/", server.endpoint, server.bucket)), "{location}");
    assert!(location.contains("X-Amz-Signature=") && location.contains("X-Amz-Expires=60"), "{location}");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let res = follow.get(&url).header("x-tenant", "acme").send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.url().port()), (200, reqwest::Url::parse(&location).unwrap().port()));
    assert!(res.bytes().await.unwrap() == bytes, "the redirect is followed to the bytes");
    let res = follow.get(&url).header("x-tenant", "acme").header("range", "bytes=5242870-5242889").send().await.unwrap();
    assert_eq!(res.status(), 206);
    assert!(res.bytes().await.unwrap() == bytes[5_242_870..5_242_890], "a range, from S3");

    let res = stay.get(&url).header("x-tenant", "other").send().await.unwrap();
    assert_eq!(res.status(), 404, "another tenant is not redirected");
    assert!(res.headers().get("location").is_none());
    assert!(res.text().await.unwrap().contains("upload_not_found"));
    let res = stay.head(&url).header("x-tenant", "acme").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"].to_str().unwrap(), bytes.len().to_string(), "HEAD is answered here");

    let res = stay.get(format!("{streaming}/files/{id}")).header("x-tenant", "acme").send().await.unwrap();
    assert_eq!(res.status(), 200, "without the setting the bytes stream");
    assert!(res.headers().get("location").is_none());
    assert_eq!(res.headers()["content-disposition"], "attachment; filename=\"r.bin\"; filename*=UTF-8''r%2Ebin");
    assert!(res.bytes().await.unwrap() == bytes);
    store(&server).delete(&ObjectKey::new(&format!("{}/acme/{id}", prefix.as_str())).unwrap()).await.unwrap();
    assert!(listed(&store(&server), &prefix).await.is_empty());
}

/// Wrong credentials are a refusal (`502`), an address nobody answers is unavailability (`503`).
#[tokio::test]
async fn failures_map_to_502_and_503() {
    let Some(server) = server() else { return };
    let wrong = S3::builder(&server.bucket)
        .endpoint(&server.endpoint)
        .allow_http(true)
        .credentials("intake-wrong-key", "wrong-secret")
        .build()
        .unwrap();
    let prefix = prefix();
    let key = key(&prefix);
    let refused = wrong.put(&key, chunks(b"nope", 4), PutOptions::default()).await.unwrap_err();
    assert!(matches!(refused, StoreError::Upstream(_)), "{refused:?}");
    let problem = refused.to_problem();
    assert_eq!((problem.status(), problem.code()), (http::StatusCode::BAD_GATEWAY, "storage_refused"));
    assert!(matches!(wrong.begin(&key).await, Err(StoreError::Upstream(_))));
    // Nothing listens on a port just closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = S3::builder(&server.bucket)
        .endpoint(format!("http://127.0.0.1:{port}"))
        .allow_http(true)
        .retries(1, Duration::from_secs(2))
        .build()
        .unwrap();
    let unavailable = down.put(&key, chunks(b"nope", 4), PutOptions::default()).await.unwrap_err();
    assert!(matches!(unavailable, StoreError::Unavailable(_)), "{unavailable:?}");
    assert_eq!(unavailable.to_problem().status(), http::StatusCode::SERVICE_UNAVAILABLE);
    let state = ResumableState(serde_json::json!({"upload_id": "x"}));
    assert!(matches!(down.offset(&key, &state).await, Err(StoreError::Unavailable(_))));
    assert!(listed(&store(&server), &prefix).await.is_empty(), "nothing was written");
}
