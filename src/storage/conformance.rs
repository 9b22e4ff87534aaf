//! The behaviour every [`Store`] must show, as a test suite that ships with the crate.
//!
//! Backends (including third-party ones) call [`run`] from a test:
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! intake::storage::conformance::run(&intake::storage::InMemory::new()).await;
//! # }
//! ```
//! Each check panics with a message naming the broken rule.

use super::{ByteStream, Digests, FileMeta, KeyPrefix, NewUpload, Store, StoreError, StoreExt};
use crate::id::UploadId;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};

fn chunks(parts: &[&'static [u8]]) -> ByteStream<'static> {
    stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>()).boxed()
}

async fn read_all(store: &dyn Store, id: &UploadId, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let read = store.read(id, range).await.expect("read a finished object");
    let parts: Vec<Bytes> = read.body.try_collect().await.expect("read the bytes");
    parts.concat()
}

/// Runs every check against `store`.
pub async fn run(store: &dyn Store) {
    write_finish_read(store).await;
    resume_at_offset(store).await;
    declared_length(store).await;
    failed_body_keeps_received_bytes(store).await;
    abort_leaves_nothing(store).await;
    unfinished_is_invisible(store).await;
    concurrent_writes_are_refused(store).await;
    unknown_ids(store).await;
    empty_object(store).await;
    one_shot_declared_length(store).await;
    delete(store).await;
    optional_operations(store).await;
    key_prefixes(store).await;
}

/// An upload created under a key prefix keeps it, as a resumable upload and as a one-shot one.
async fn key_prefixes(store: &dyn Store) {
    let prefix = KeyPrefix::new("tenants/acme").expect("a valid prefix");
    let upload = NewUpload { length: Some(3), key_prefix: Some(prefix.clone()), ..NewUpload::default() };
    let info = store.create(upload.clone()).await.expect("create");
    assert_eq!(info.key_prefix.as_ref(), Some(&prefix));
    store.write(&info.id, 0, chunks(&[b"abc"])).await.expect("write");
    let object = store.finish(&info.id, Digests::default(), None).await.expect("finish");
    assert_eq!(object.key(), format!("tenants/acme/{}", info.id), "the key is the prefix and the id");
    assert_eq!(store.head(&info.id).await.expect("head").key_prefix.as_ref(), Some(&prefix));
    assert_eq!(read_all(store, &info.id, None).await, b"abc");
    let put = store.put(upload, chunks(&[b"x", b"yz"])).await.expect("put");
    assert_eq!(put.key_prefix.as_ref(), Some(&prefix));
    assert_eq!(read_all(store, &put.id, Some(1..3)).await, b"yz");
    for id in [&info.id, &put.id] {
        store.delete(id).await.expect("delete");
        assert!(matches!(store.head(id).await, Err(StoreError::NotFound(_))), "deleted");
    }
}

/// `finish` may replace the metadata, and the optional operations a store advertises work.
async fn optional_operations(store: &dyn Store) {
    let info = store.create(NewUpload { length: None, meta: FileMeta::default(), key_prefix: None }).await.expect("create");
    store.write(&info.id, 0, chunks(&[b"hello", b" world"])).await.expect("write");
    let can = store.capabilities();
    if can.list_unfinished {
        let listed = store.list_unfinished().await.expect("list_unfinished");
        let mine = listed.iter().find(|i| i.id == info.id).expect("an unfinished upload is listed");
        assert_eq!(mine.offset, 11, "with its offset");
    } else {
        assert!(matches!(store.list_unfinished().await, Err(StoreError::NotSupported(_))));
    }
    if can.read_partial {
        let bytes: Vec<_> =
            store.read_partial(&info.id, 2..7).await.expect("read_partial").map(|c| c.expect("bytes")).collect().await;
        assert_eq!(bytes.concat(), b"llo w", "read_partial returns the bytes received so far");
        assert!(store.read_partial(&info.id, 0..12).await.is_err(), "read_partial stays within the bytes received");
    } else {
        assert!(matches!(store.read_partial(&info.id, 0..1).await, Err(StoreError::NotSupported(_))));
    }
    if can.truncate {
        store.truncate(&info.id, 5).await.expect("truncate");
        assert_eq!(store.info(&info.id).await.expect("info").offset, 5, "truncate cuts the upload back");
        assert!(store.truncate(&info.id, 6).await.is_err(), "truncate cannot grow an upload");
        store.write(&info.id, 5, chunks(&[b"!"])).await.expect("write after truncate");
    } else {
        assert!(matches!(store.truncate(&info.id, 0).await, Err(StoreError::NotSupported(_))));
    }
    let meta = FileMeta { name: Some("late.txt".into()), content_type: Some("text/plain".into()), ..FileMeta::default() };
    let object = store.finish(&info.id, Digests::default(), Some(meta.clone())).await.expect("finish");
    assert_eq!(object.meta, meta, "finish replaces the metadata");
    assert_eq!(store.head(&info.id).await.expect("head").meta, meta);
    if can.list_unfinished {
        let listed = store.list_unfinished().await.expect("list_unfinished");
        assert!(listed.iter().all(|i| i.id != info.id), "a finished upload is not listed");
    }
    let expected: &[u8] = if can.truncate { b"hello!" } else { b"hello world" };
    assert_eq!(read_all(store, &info.id, None).await, expected);
}

async fn write_finish_read(store: &dyn Store) {
    let meta = FileMeta { name: Some("a.txt".into()), content_type: Some("text/plain".into()), ..FileMeta::default() };
    let info = store.create(NewUpload { length: None, meta: meta.clone(), key_prefix: None }).await.expect("create");
    assert_eq!(info.offset, 0, "a new upload starts at offset 0");
    let other = store.create(NewUpload::default()).await.expect("create");
    assert_ne!(info.id, other.id, "ids are unique");
    store.abort(&other.id).await.expect("abort");
    let offset = store.write(&info.id, 0, chunks(&[b"hello ", b"world"])).await.expect("write");
    assert_eq!(offset, 11, "write returns the new offset");
    let mut digests = Digests::default();
    digests.insert("sha-256", &[1, 2, 3]);
    let object = store.finish(&info.id, digests.clone(), None).await.expect("finish");
    assert_eq!((object.size, &object.meta, &object.digests), (11, &meta, &digests), "finish keeps size, meta, digests");
    assert_eq!(store.head(&info.id).await.expect("head"), object, "head returns what finish returned");
    assert_eq!(read_all(store, &info.id, None).await, b"hello world", "read returns the bytes written");
    assert_eq!(read_all(store, &info.id, Some(6..11)).await, b"world", "read honours a range");
    assert_eq!(read_all(store, &info.id, Some(11..11)).await, b"", "an empty range at the end is valid");
    assert!(
        matches!(store.read(&info.id, Some(5..12)).await, Err(StoreError::InvalidRange { size: 11 })),
        "a range past the end is refused"
    );
    assert!(matches!(store.info(&info.id).await, Err(StoreError::NotFound(_))), "a finished upload has no upload info");
}

async fn resume_at_offset(store: &dyn Store) {
    let info = store.create(NewUpload { length: Some(6), ..NewUpload::default() }).await.expect("create");
    assert_eq!(store.write(&info.id, 0, chunks(&[b"abc"])).await.expect("first write"), 3);
    assert_eq!(store.info(&info.id).await.expect("info").offset, 3, "info reports the offset");
    assert!(
        matches!(store.write(&info.id, 1, chunks(&[b"x"])).await, Err(StoreError::OffsetMismatch { expected: 3, given: 1 })),
        "a write at the wrong offset is refused"
    );
    assert_eq!(store.info(&info.id).await.expect("info").offset, 3, "a refused write changes nothing");
    assert_eq!(store.write(&info.id, 3, chunks(&[b"def"])).await.expect("second write"), 6);
    store.finish(&info.id, Digests::default(), None).await.expect("finish");
    assert_eq!(read_all(store, &info.id, None).await, b"abcdef");
}

async fn declared_length(store: &dyn Store) {
    let info = store.create(NewUpload { length: Some(4), ..NewUpload::default() }).await.expect("create");
    assert!(
        matches!(store.finish(&info.id, Digests::default(), None).await, Err(StoreError::Incomplete { offset: 0, length: 4 })),
        "finishing before the declared length is refused"
    );
    assert!(
        matches!(store.write(&info.id, 0, chunks(&[b"ab", b"cde"])).await, Err(StoreError::LengthExceeded { length: 4 })),
        "writing past the declared length is refused"
    );
    let offset = store.info(&info.id).await.expect("info").offset;
    assert!(offset <= 4, "nothing past the declared length is kept (offset {offset})");
    store.abort(&info.id).await.expect("abort");
}

async fn failed_body_keeps_received_bytes(store: &dyn Store) {
    let info = store.create(NewUpload::default()).await.expect("create");
    let failing: ByteStream<'static> =
        stream::iter(vec![Ok(Bytes::from_static(b"kept")), Err("client went away".into())]).boxed();
    assert!(matches!(store.write(&info.id, 0, failing).await, Err(StoreError::Body(_))), "a failing body is reported as such");
    assert_eq!(store.info(&info.id).await.expect("info").offset, 4, "bytes before a failure are kept for resuming");
    store.abort(&info.id).await.expect("abort");
    let failing: ByteStream<'static> = stream::iter(vec![Ok(Bytes::from_static(b"x")), Err("boom".into())]).boxed();
    assert!(store.put(NewUpload::default(), failing).await.is_err(), "put fails with its body");
}

async fn abort_leaves_nothing(store: &dyn Store) {
    let info = store.create(NewUpload::default()).await.expect("create");
    store.write(&info.id, 0, chunks(&[b"partial"])).await.expect("write");
    store.abort(&info.id).await.expect("abort");
    assert!(matches!(store.info(&info.id).await, Err(StoreError::NotFound(_))), "an aborted upload is gone");
    assert!(matches!(store.head(&info.id).await, Err(StoreError::NotFound(_))), "an aborted upload never becomes an object");
    assert!(matches!(store.abort(&info.id).await, Err(StoreError::NotFound(_))), "aborting twice reports NotFound");
}

async fn unfinished_is_invisible(store: &dyn Store) {
    let info = store.create(NewUpload::default()).await.expect("create");
    store.write(&info.id, 0, chunks(&[b"not yet"])).await.expect("write");
    assert!(matches!(store.head(&info.id).await, Err(StoreError::NotFound(_))), "an unfinished upload has no object");
    assert!(matches!(store.read(&info.id, None).await, Err(StoreError::NotFound(_))), "an unfinished upload cannot be read");
    store.abort(&info.id).await.expect("abort");
}

async fn concurrent_writes_are_refused(store: &dyn Store) {
    let info = store.create(NewUpload::default()).await.expect("create");
    // A body that sends one chunk, then stays open until `release` fires.
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let open_body = stream::iter([Ok(Bytes::from_static(b"first"))])
        .chain(stream::once(held).filter_map(|_| async { None::<Result<Bytes, crate::BoxError>> }))
        .boxed();
    let first = store.write(&info.id, 0, open_body);
    let second = async {
        // Let the first write take its lock and start reading its stream.
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let r = store.write(&info.id, 0, chunks(&[b"second"])).await;
        let _ = release.send(());
        r
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.expect("the first write succeeds"), 5);
    assert!(matches!(second, Err(StoreError::Locked(_))), "a concurrent write is refused, got {second:?}");
    store.abort(&info.id).await.expect("abort");
}

async fn unknown_ids(store: &dyn Store) {
    let id = UploadId::random();
    assert!(matches!(store.info(&id).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.write(&id, 0, chunks(&[b"x"])).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.finish(&id, Digests::default(), None).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.head(&id).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.delete(&id).await, Err(StoreError::NotFound(_))));
}

async fn empty_object(store: &dyn Store) {
    let object = store.put(NewUpload { length: Some(0), ..NewUpload::default() }, stream::empty()).await.expect("put empty");
    assert_eq!(object.size, 0);
    assert_eq!(read_all(store, &object.id, None).await, b"");
}

async fn one_shot_declared_length(store: &dyn Store) {
    let long = store.put(NewUpload { length: Some(3), ..NewUpload::default() }, chunks(&[b"ab", b"cde"])).await;
    assert!(
        matches!(long, Err(StoreError::LengthExceeded { length: 3 })),
        "a one-shot body past its length is refused, got {long:?}"
    );
    let short = store.put(NewUpload { length: Some(5), ..NewUpload::default() }, chunks(&[b"abc"])).await;
    assert!(
        matches!(short, Err(StoreError::Incomplete { offset: 3, length: 5 })),
        "a one-shot body short of its length is refused, got {short:?}"
    );
    let exact = store.put(NewUpload { length: Some(3), ..NewUpload::default() }, chunks(&[b"a", b"bc"])).await.expect("put");
    assert_eq!(read_all(store, &exact.id, None).await, b"abc");
}

async fn delete(store: &dyn Store) {
    let object = store.put(NewUpload::default(), chunks(&[b"bye"])).await.expect("put");
    store.delete(&object.id).await.expect("delete");
    assert!(matches!(store.head(&object.id).await, Err(StoreError::NotFound(_))), "a deleted object is gone");
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn in_memory_conforms() {
        super::run(&super::super::InMemory::new()).await;
    }

    #[cfg(feature = "local-disk")]
    #[tokio::test]
    async fn local_disk_conforms() {
        let dir = tempfile::tempdir().unwrap();
        super::run(&super::super::LocalDisk::new(dir.path())).await;
        let partial = std::fs::read_dir(dir.path().join("partial")).unwrap().count();
        assert_eq!(partial, 0, "no partial files are left behind");
    }

    #[cfg(feature = "local-disk")]
    #[tokio::test]
    async fn local_disk_conforms_with_every_fsync_policy() {
        use super::super::{FsyncPolicy, LocalDisk};
        for policy in [FsyncPolicy::OnFinish, FsyncPolicy::Always] {
            let dir = tempfile::tempdir().unwrap();
            super::run(&LocalDisk::new(dir.path()).with_fsync(policy).with_write_buffer(4096)).await;
        }
    }
}
