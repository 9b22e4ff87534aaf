//! The S3 backend against a real S3 server that checks signatures (SeaweedFS, started by
//! `tests/s3/run.sh`). Runs when `INTAKE_S3_TEST_ENDPOINT` and `INTAKE_S3_TEST_BUCKET` are set
//! (credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`; the sweeper test uses a bucket
//! of its own, `INTAKE_S3_TEST_SWEEP_BUCKET`, by default `{bucket}-sweep`); without them each test says
//! so and passes, unless `INTAKE_REQUIRE_S3=1`, which makes a missing server a failure.

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use intake::{
    BoxError, UploadId,
    state::{MemoryLocker, MemoryState, Protocol, StateStore, UploadRecord, sweep::Sweeper},
    storage::{ByteStream, KeyPrefix, ObjectKey, PutOptions, ResumableState, ResumableStore, S3, Store, StoreError},
};
use std::{sync::Arc, time::Duration};

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
    let sweeper = Sweeper::new(state.clone(), store.clone(), Arc::new(MemoryLocker::new()))
        .orphans_after(Some(Duration::ZERO))
        .reconcile_every(Duration::ZERO);
    // SeaweedFS and S3 date uploads to the second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = sweeper.sweep().await.unwrap();
    // The orphan's tail goes with its upload; the stray tail is an orphaned object.
    assert_eq!((report.orphans, report.orphaned_objects), (1, 1), "{report:?}");
    assert_eq!(pending(&store, &orphan).await, 0, "the orphaned multipart upload is aborted");
    assert_eq!(pending(&store, &live.key()).await, 1, "the live one stays");
    let left = listed(&store, &prefix).await;
    assert_eq!(left, vec![live.key().tail(1).unwrap().to_string()], "only the live upload's tail stays");
    assert_eq!(store.offset(&live.key(), &live.storage).await.unwrap(), 10);
    store.abort(&live.key(), &live.storage).await.unwrap();
    assert!(listed(&store, &prefix).await.is_empty());
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
