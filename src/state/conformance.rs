//! The contract every [`StateStore`] keeps, as a test suite that ships with the crate: call
//! [`run`] from a test of your own backend.

use super::{Concat, FileRecord, FileStatus, HashCheckpoint, Protocol, StateError, StateStore, UploadRecord};
use crate::{
    id::UploadId,
    storage::{Digests, FileMeta, KeyPrefix, ObjectKey},
};
use std::sync::Arc;

fn record(expires_at: Option<u64>) -> UploadRecord {
    let mut meta = FileMeta { name: Some("a.bin".into()), ..FileMeta::default() };
    meta.extra.insert("k".into(), "v".into());
    let mut r = UploadRecord::new(
        UploadId::random(),
        Protocol::Tus { metadata: Some("filename YS5iaW4=".into()), concat: Concat::Partial },
        Some(10),
        meta,
    );
    r.expires_at = expires_at;
    r
}

/// A catalogue row for `id`, with every field set.
pub(crate) fn file(id: UploadId) -> FileRecord {
    let mut digests = Digests::default();
    digests.insert("sha-256", &[0xab; 32]);
    FileRecord {
        key: ObjectKey::of(KeyPrefix::new("tenants/acme").as_ref(), &id),
        id,
        owner: Some("acme".into()),
        meta: FileMeta { name: Some("a.bin".into()), content_type: Some("image/png".into()), ..FileMeta::default() },
        size: 10,
        digests,
        status: FileStatus::Complete,
        created_at: 1_700_000_000,
    }
}

/// Runs every check against `state`, panicking on the first failure. The store should be empty
/// (a fresh one is best).
///
/// # Panics
/// When the store breaks its contract.
pub async fn run(state: &dyn StateStore) {
    // insert, get, duplicate insert
    let r = record(None);
    state.insert(&r).await.expect("insert");
    assert_eq!(state.get(&r.id).await.expect("get").as_ref(), Some(&r), "a record reads back as written");
    assert!(matches!(state.insert(&r).await, Err(StateError::AlreadyExists(_))), "a duplicate id is refused");
    assert_eq!(state.get(&UploadId::random()).await.expect("get"), None, "unknown ids have no record");

    // update: applied, skipped when the change says so, None for unknown ids
    let updated = state
        .update(&r.id, &mut |rec| {
            rec.hash = Some(HashCheckpoint { offset: 4, states: [("sha-256".into(), "00ff".into())].into() });
            rec.length = Some(12);
            true
        })
        .await
        .expect("update")
        .expect("the record exists");
    assert_eq!(updated.length, Some(12));
    assert_eq!(state.get(&r.id).await.unwrap().unwrap(), updated, "an update is stored");
    let unchanged = state
        .update(&r.id, &mut |rec| {
            rec.length = Some(99);
            false
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged.length, Some(12), "a change that returns false leaves the record alone");
    assert_eq!(state.update(&UploadId::random(), &mut |_| true).await.unwrap(), None);

    // chunked records keep their chunk map, and the parts they became (keyed by number)
    let mut chunked = record(None);
    let part = |id: &str| crate::storage::UploadedPart { id: id.into(), size: 5 };
    let parts = Some([(1, part("\"e1\"")), (3, part("\"e3\""))].into());
    chunked.protocol = Protocol::Chunked { chunk_size: 5, chunks: [1, 3].into(), parts };
    chunked.storage = crate::storage::ResumableState(serde_json::json!({"upload_id": "abc", "parts": [1, 2]}));
    chunked.head = Some("89504e47".into());
    state.insert(&chunked).await.unwrap();
    assert_eq!(state.get(&chunked.id).await.unwrap().unwrap(), chunked);

    // concurrent updates all apply (atomic read-modify-write)
    let counter = record(None);
    state.insert(&counter).await.unwrap();
    let id = Arc::new(counter.id.clone());
    let increments = (0..16).map(|_| {
        let id = id.clone();
        async move {
            state
                .update(&id, &mut |rec| {
                    rec.length = Some(rec.length.unwrap_or(0) + 1);
                    true
                })
                .await
                .unwrap()
        }
    });
    futures_util::future::join_all(increments).await;
    assert_eq!(state.get(&id).await.unwrap().unwrap().length, Some(10 + 16), "no update is lost");

    // expiry: only expired, oldest first, limited
    let now = 1_000_000;
    let (late, early, future) = (record(Some(now - 5)), record(Some(now - 50)), record(Some(now + 50)));
    for r in [&late, &early, &future] {
        state.insert(r).await.unwrap();
    }
    let expired = state.expired(now, 10).await.unwrap();
    let ids: Vec<_> = expired.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, vec![early.id.clone(), late.id.clone()], "expired records, oldest first");
    assert_eq!(state.expired(now, 1).await.unwrap().len(), 1, "the limit holds");

    // remove
    for r in [&r, &chunked, &counter, &late, &early, &future] {
        assert!(state.remove(&r.id).await.unwrap().is_some());
        assert_eq!(state.get(&r.id).await.unwrap(), None);
    }
    assert_eq!(state.remove(&r.id).await.unwrap(), None, "removing twice finds nothing");

    catalog(state).await;
}

async fn catalog(state: &dyn StateStore) {
    // insert_file, get_file, duplicates
    let f = file(UploadId::random());
    state.insert_file(&f).await.expect("insert_file");
    assert_eq!(state.get_file(&f.id).await.unwrap().as_ref(), Some(&f), "a file reads back as written");
    assert!(matches!(state.insert_file(&f).await, Err(StateError::AlreadyExists(_))), "a duplicate file id is refused");
    assert_eq!(state.get_file(&UploadId::random()).await.unwrap(), None);
    assert_eq!(state.get(&f.id).await.unwrap(), None, "files and upload records are apart");

    // finish: the file and the finished record at once; nothing without a record
    let mut upload = record(None);
    upload.hash = Some(HashCheckpoint { offset: 10, states: [("sha-256".into(), "00".into())].into() });
    state.insert(&upload).await.unwrap();
    let made = file(upload.id.clone());
    let finished = state.finish(&upload.id, &made).await.unwrap().expect("the record exists");
    assert!(finished.finished && finished.hash.is_none(), "finish marks the record finished and drops its hash state");
    assert_eq!(state.get(&upload.id).await.unwrap().as_ref(), Some(&finished));
    assert_eq!(state.get_file(&upload.id).await.unwrap().as_ref(), Some(&made));
    assert!(state.finish(&upload.id, &made).await.unwrap().is_some(), "finishing again is harmless");
    let orphan = file(UploadId::random());
    assert_eq!(state.finish(&orphan.id, &orphan).await.unwrap(), None, "no record: nothing finished");
    assert_eq!(state.get_file(&orphan.id).await.unwrap(), None, "... and no file added");

    // paging in id order
    let mut ids = vec![f.id.clone(), made.id.clone()];
    for _ in 0..3 {
        let extra = file(UploadId::random());
        state.insert_file(&extra).await.unwrap();
        ids.push(extra.id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = state.files(after.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2, "the limit holds");
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        seen.extend(page.into_iter().map(|f| f.id));
    }
    assert_eq!(seen, ids, "paging visits every file once, in id order");

    // remove_file
    for id in &ids {
        assert!(state.remove_file(id).await.unwrap().is_some());
        assert_eq!(state.get_file(id).await.unwrap(), None);
    }
    assert_eq!(state.remove_file(&f.id).await.unwrap(), None, "removing twice finds nothing");
    assert!(state.files(None, 10).await.unwrap().is_empty());
    state.remove(&upload.id).await.unwrap();
}
