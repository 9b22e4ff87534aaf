//! The behaviour every [`Store`] must show, as a test suite that ships with the crate.
//!
//! Backends (including third-party ones) call [`run`] from a test:
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! intake::storage::conformance::run(&intake::storage::InMemory::new()).await;
//! # }
//! ```
//! Each check panics with a message naming the broken rule. A store that offers
//! [`ResumableStore`] (and [`ReadBack`](super::ReadBack)) is checked for that too. Every check
//! uses keys of its own under a random prefix and removes what it stored, so the suite can run
//! against a shared bucket.

use super::{ByteStream, KeyPrefix, ObjectKey, PutOptions, ResumableStore, Store, StoreError};
use crate::{error::BoxError, id::UploadId};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use std::time::Duration;

fn chunks(parts: &[&[u8]]) -> ByteStream<'static> {
    let owned: Vec<Result<Bytes, BoxError>> = parts.iter().map(|p| Ok(Bytes::copy_from_slice(p))).collect();
    stream::iter(owned).boxed()
}

/// `parts`, then an error: a client that went away mid-body.
fn failing(parts: &[&[u8]]) -> ByteStream<'static> {
    chunks(parts).chain(stream::iter([Err::<Bytes, BoxError>("the client went away".into())])).boxed()
}

async fn read(store: &dyn Store, key: &ObjectKey, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let got = store.get(key, range).await.expect("get an object");
    let parts: Vec<Bytes> = got.body.try_collect().await.expect("read its bytes");
    parts.concat()
}

fn gone<T: std::fmt::Debug>(outcome: Result<T, StoreError>) -> bool {
    matches!(outcome, Err(StoreError::NotFound(_)))
}

struct Keys(KeyPrefix);

impl Keys {
    fn new() -> Self {
        Self(KeyPrefix::new(&format!("conformance/{}", UploadId::random())).expect("a valid prefix"))
    }

    fn key(&self) -> ObjectKey {
        ObjectKey::of(Some(&self.0), &UploadId::random())
    }
}

/// Runs every check against `store`.
pub async fn run(store: &dyn Store) {
    let keys = Keys::new();
    put_get_head_delete(store, &keys).await;
    put_replaces_atomically(store, &keys).await;
    declared_length(store, &keys).await;
    failed_and_dropped_puts_leave_nothing(store, &keys).await;
    fresh_puts(store, &keys).await;
    empty_object(store, &keys).await;
    list(store, &keys).await;
    if let Some(resumable) = store.resumable() {
        resumable_uploads(store, resumable, &keys).await;
        appends_after_a_crash(resumable, &keys).await;
        abort_and_retries(store, resumable, &keys).await;
    }
    let left: Vec<_> = store.list(Some(&keys.0)).try_collect().await.expect("list");
    assert!(left.is_empty(), "every check removed what it stored: {left:?}");
}

async fn put_get_head_delete(store: &dyn Store, keys: &Keys) {
    let key = keys.key();
    let meta = store.put(&key, chunks(&[b"hello ", b"world"]), PutOptions::default()).await.expect("put");
    assert_eq!((meta.key.clone(), meta.size), (key.clone(), 11), "put describes the object");
    assert_eq!(store.head(&key).await.expect("head").size, 11);
    assert_eq!(read(store, &key, None).await, b"hello world");
    assert_eq!(read(store, &key, Some(6..11)).await, b"world", "a range");
    assert_eq!(read(store, &key, Some(3..3)).await, b"", "an empty range");
    assert!(matches!(store.get(&key, Some(5..12)).await, Err(StoreError::InvalidRange { size: 11 })), "a range past the end");
    store.delete(&key).await.expect("delete");
    assert!(gone(store.head(&key).await) && gone(store.get(&key, None).await), "a deleted object is gone");
    store.delete(&key).await.expect("deleting what is not there is not an error");
}

async fn put_replaces_atomically(store: &dyn Store, keys: &Keys) {
    let key = keys.key();
    store.put(&key, chunks(&[b"old"]), PutOptions::default()).await.expect("put");
    let failed = store.put(&key, failing(&[b"new bytes"]), PutOptions::default()).await;
    assert!(matches!(failed, Err(StoreError::Body(_))), "a failing body fails the put: {failed:?}");
    assert_eq!(read(store, &key, None).await, b"old", "a failed put leaves the object it would have replaced");
    store.put(&key, chunks(&[b"newer"]), PutOptions::default()).await.expect("put again");
    assert_eq!(read(store, &key, None).await, b"newer", "a put replaces the object");
    store.delete(&key).await.expect("delete");
}

async fn declared_length(store: &dyn Store, keys: &Keys) {
    let key = keys.key();
    let short = store.put(&key, chunks(&[b"abc"]), PutOptions::with_length(Some(5))).await;
    assert!(matches!(short, Err(StoreError::Incomplete { offset: 3, length: 5 })), "short of its length: {short:?}");
    let long = store.put(&key, chunks(&[b"abc", b"def"]), PutOptions::with_length(Some(4))).await;
    assert!(matches!(long, Err(StoreError::LengthExceeded { length: 4 })), "past its length: {long:?}");
    assert!(gone(store.head(&key).await), "neither was stored");
    assert_eq!(store.put(&key, chunks(&[b"ab", b"cd"]), PutOptions::with_length(Some(4))).await.expect("exact").size, 4);
    store.delete(&key).await.expect("delete");
}

async fn failed_and_dropped_puts_leave_nothing(store: &dyn Store, keys: &Keys) {
    let key = keys.key();
    assert!(store.put(&key, failing(&[b"partial"]), PutOptions::default()).await.is_err());
    assert!(gone(store.head(&key).await), "a failed put leaves nothing");
    // A client that stops sending: the put waits for more, and its request is dropped.
    let stalled = chunks(&[b"some bytes"]).chain(stream::pending()).boxed();
    let put = store.put(&key, stalled, PutOptions::default());
    assert!(tokio::time::timeout(Duration::from_millis(50), put).await.is_err(), "the put waits for the rest");
    assert!(gone(store.head(&key).await), "a dropped put leaves nothing");
    assert_eq!(store.clean_up(0).await.expect("clean_up"), 0, "and nothing for clean_up either");
}

/// A fresh put (a new key, recorded by the caller afterwards) may be written in place, but
/// stores the same object, and one that fails or is dropped still leaves nothing.
async fn fresh_puts(store: &dyn Store, keys: &Keys) {
    let fresh = || PutOptions::default().fresh();
    let key = keys.key();
    assert_eq!(store.put(&key, chunks(&[b"fresh ", b"bytes"]), fresh()).await.expect("fresh put").size, 11);
    assert_eq!(read(store, &key, None).await, b"fresh bytes", "a fresh put stores the object");
    store.delete(&key).await.expect("delete");
    let key = keys.key();
    assert!(matches!(store.put(&key, failing(&[b"partial"]), fresh()).await, Err(StoreError::Body(_))));
    assert!(gone(store.head(&key).await), "a failed fresh put leaves nothing");
    let short = store.put(&key, chunks(&[b"abc"]), PutOptions { fresh: true, ..PutOptions::with_length(Some(5)) }).await;
    assert!(matches!(short, Err(StoreError::Incomplete { offset: 3, length: 5 })), "short of its length: {short:?}");
    assert!(gone(store.head(&key).await), "a fresh put short of its length leaves nothing");
    let stalled = chunks(&[b"some bytes"]).chain(stream::pending()).boxed();
    assert!(tokio::time::timeout(Duration::from_millis(50), store.put(&key, stalled, fresh())).await.is_err());
    assert!(gone(store.head(&key).await), "a dropped fresh put leaves nothing");
}

async fn empty_object(store: &dyn Store, keys: &Keys) {
    let key = keys.key();
    assert_eq!(store.put(&key, chunks(&[]), PutOptions::default()).await.expect("put").size, 0);
    assert_eq!(read(store, &key, None).await, b"");
    store.delete(&key).await.expect("delete");
}

async fn list(store: &dyn Store, keys: &Keys) {
    let (a, b) =
        (KeyPrefix::new(&format!("{}/a", keys.0.as_str())).unwrap(), KeyPrefix::new(&format!("{}/b", keys.0.as_str())).unwrap());
    let under_a = [ObjectKey::of(Some(&a), &UploadId::random()), ObjectKey::of(Some(&a), &UploadId::random())];
    let under_b = ObjectKey::of(Some(&b), &UploadId::random());
    for key in under_a.iter().chain([&under_b]) {
        store.put(key, chunks(&[b"x"]), PutOptions::default()).await.expect("put");
    }
    let mut listed: Vec<_> = store.list(Some(&a)).map_ok(|m| m.key).try_collect().await.expect("list");
    listed.sort();
    let mut expected = under_a.to_vec();
    expected.sort();
    assert_eq!(listed, expected, "list yields exactly the objects under the prefix");
    let all: Vec<_> = store.list(Some(&keys.0)).map_ok(|m| (m.key, m.size)).try_collect().await.expect("list");
    assert_eq!(all.len(), 3, "and everything under a shorter one: {all:?}");
    assert!(all.iter().all(|(_, size)| *size == 1), "with sizes");
    for key in under_a.iter().chain([&under_b]) {
        store.delete(key).await.expect("delete");
    }
}

async fn resumable_uploads(store: &dyn Store, resumable: &dyn ResumableStore, keys: &Keys) {
    let key = keys.key();
    store.put(&key, chunks(&[b"the old object"]), PutOptions::default()).await.expect("put");
    let state = resumable.begin(&key).await.expect("begin");
    let pending: Vec<_> = resumable.list_pending().map_ok(|p| p.key).try_collect().await.expect("list_pending");
    assert!(pending.contains(&key), "a begun upload is pending");
    let mut offset = 0;
    let mut state = state;
    for piece in [&b"hello"[..], b" ", b"", b"world"] {
        let appended = resumable.append(&key, &state, offset, chunks(&[piece])).await.expect("append");
        assert!(appended.failure.is_none());
        assert_eq!(appended.offset, offset + piece.len() as u64, "append reports the new offset");
        (offset, state) = (appended.offset, appended.state);
        assert_eq!(resumable.offset(&key, &state).await.expect("offset"), offset);
    }
    assert_eq!(read(store, &key, None).await, b"the old object", "an unfinished upload is not the object yet");
    if let Some(back) = resumable.read_back() {
        let bytes: Vec<Bytes> = back.read(&key, &state, 2..8).await.expect("read back").try_collect().await.expect("bytes");
        assert_eq!(bytes.concat(), b"llo wo", "read_back reads what the upload holds");
    }
    let meta = resumable.complete(&key, &state).await.expect("complete");
    assert_eq!(meta.size, 11);
    assert_eq!(read(store, &key, None).await, b"hello world", "complete makes the upload the object");
    assert!(gone(resumable.offset(&key, &state).await), "and it is no longer an upload");
    assert_eq!(resumable.complete(&key, &state).await.expect("completing again").size, 11, "a retried completion is harmless");
    let pending: Vec<_> = resumable.list_pending().map_ok(|p| p.key).try_collect().await.expect("list_pending");
    assert!(!pending.contains(&key), "a completed upload is not pending");
    store.delete(&key).await.expect("delete");
}

async fn appends_after_a_crash(resumable: &dyn ResumableStore, keys: &Keys) {
    let key = keys.key();
    let state = resumable.begin(&key).await.expect("begin");
    let appended = resumable.append(&key, &state, 0, failing(&[b"abc", b"def"])).await.expect("append");
    assert!(matches!(appended.failure, Some(StoreError::Body(_))), "a failing body is reported");
    assert_eq!(appended.offset, 6, "and the bytes before it are kept");
    assert_eq!(resumable.offset(&key, &appended.state).await.expect("offset"), 6);
    // A crash cut an append short after its bytes were written: the record says 4.
    let appended = resumable.append(&key, &appended.state, 4, chunks(&[b"XY"])).await.expect("append at the recorded offset");
    assert_eq!(appended.offset, 6, "bytes past the offset are dropped first");
    let state = resumable.truncate(&key, &appended.state, 2).await.expect("truncate");
    assert_eq!(resumable.offset(&key, &state).await.expect("offset"), 2, "truncate cuts the upload back");
    assert!(resumable.append(&key, &state, 5, chunks(&[b"!"])).await.is_err(), "an append past what is held fails");
    if let Some(back) = resumable.read_back() {
        let bytes: Vec<Bytes> = back.read(&key, &state, 0..2).await.expect("read back").try_collect().await.expect("bytes");
        assert_eq!(bytes.concat(), b"ab");
    }
    resumable.abort(&key, &state).await.expect("abort");
}

async fn abort_and_retries(store: &dyn Store, resumable: &dyn ResumableStore, keys: &Keys) {
    let key = keys.key();
    let state = resumable.begin(&key).await.expect("begin");
    resumable.append(&key, &state, 0, chunks(&[b"bytes"])).await.expect("append");
    resumable.abort(&key, &state).await.expect("abort");
    assert!(gone(resumable.offset(&key, &state).await), "an aborted upload is gone");
    assert!(gone(store.head(&key).await), "and never became an object");
    resumable.abort(&key, &state).await.expect("aborting again is not an error");
    let pending: Vec<_> = resumable.list_pending().map_ok(|p| p.key).try_collect().await.expect("list_pending");
    assert!(!pending.contains(&key), "an aborted upload is not pending");
}
