//! Turning uploads into files: completing a resumable upload, rolling a completion a crash cut
//! short forward, and assembling stored objects into one.

use super::{
    Resumable, file_meta,
    hashing::{digests, restore},
    not_found, resumable_of,
};
use crate::{
    error::{BodyRejection, BoxError, Problem},
    hash::{HashAlgorithm, Hasher},
    hooks::FinishedUpload,
    state::{Concat, FileRecord, FileStatus, Protocol, UploadRecord},
    storage::{Digests, ObjectKey, ObjectMeta, PutOptions, Store, StoreError},
};
use futures_util::{StreamExt, TryStreamExt};
use std::sync::{Arc, Mutex};

impl Resumable {
    /// Finishes an upload whose bytes are all in. The store completes it (the object appears,
    /// atomically), then the file's catalog row is added and the record marked finished in one
    /// step: the commit point. A crash between the two leaves the object with an unfinished
    /// record, which [`recover`](Self::recover) rolls forward. Returns the finished record and
    /// the file.
    pub(crate) async fn finish(&self, record: &UploadRecord, digests: Digests) -> Result<(UploadRecord, FileRecord), Problem> {
        let key = record.key();
        let meta = resumable_of(self.store.as_ref())?.complete(&key, &record.storage).await.map_err(|e| e.to_problem())?;
        // A partial upload of a concatenation is checked as part of its final upload.
        if !matches!(record.protocol, Protocol::Tus { concat: Concat::Partial, .. }) {
            if let Err(problem) = self.scan(&key, file_meta(record).content_type.as_deref()).await {
                self.refuse(record).await;
                return Err(problem);
            }
        }
        self.commit(record, &meta, digests).await
    }

    /// Checks a complete object against the content policy's scan of active content (an SVG's
    /// scripts and event handlers can be anywhere in it, so only the whole file tells).
    pub(crate) async fn scan(&self, key: &ObjectKey, content_type: Option<&str>) -> Result<(), Problem> {
        let Some(content_type) = content_type else { return Ok(()) };
        // Most types are never scanned: do not open the object for them.
        if !crate::sniff::may_hold_active_content(&self.config.policy, content_type) {
            return Ok(());
        }
        let bytes = self.store.get(key, None).await.map_err(|e| e.to_problem())?.body;
        crate::sniff::scan_active_content(&self.config.policy, content_type, bytes).await
    }

    /// Discards an upload whose content the policy refused once it was whole: its record (the
    /// commit point), then its bytes, chunks and object. Nothing of it is kept.
    pub(crate) async fn refuse(&self, record: &UploadRecord) {
        if let Err(e) = self.state.remove(&record.id).await {
            tracing::warn!(id = %record.id, error = %e, "could not remove a refused upload's record");
            return;
        }
        let mut whole = record.clone();
        whole.finished = true;
        if let Err(e) = crate::state::sweep::discard(self.store.as_ref(), &whole, true).await {
            tracing::warn!(id = %record.id, error = %e, "could not remove a refused upload's bytes");
        }
    }

    /// Records a completed upload's file and tells the post-finish hook.
    pub(crate) async fn commit(
        &self,
        record: &UploadRecord,
        meta: &ObjectMeta,
        digests: Digests,
    ) -> Result<(UploadRecord, FileRecord), Problem> {
        let file = FileRecord {
            id: record.id.clone(),
            key: meta.key.clone(),
            owner: record.owner.clone(),
            meta: file_meta(record),
            size: meta.size,
            digests,
            status: FileStatus::Complete,
            created_at: record.created_at,
        };
        // A partial upload of a concatenation is a part, not a file: it is never catalogued, so
        // it cannot be downloaded; the final upload made of it is checked and catalogued.
        let finished = if matches!(record.protocol, Protocol::Tus { concat: Concat::Partial, .. }) {
            self.state
                .update(&record.id, &mut |r| {
                    r.mark_finished();
                    true
                })
                .await
        } else {
            self.state.finish(&record.id, &file).await
        };
        let finished = finished.map_err(|e| e.to_problem())?.ok_or_else(|| not_found(record.id.as_str()))?;
        self.hooks.notify_finish(FinishedUpload { record: finished.clone(), file: file.clone() });
        Ok((finished, file))
    }

    /// An unfinished upload whose bytes the store no longer holds as an upload: a crash came
    /// after the store completed it and before its catalog row. If the object is there, the
    /// finish is rolled forward (its digests from the hash state when that covers every byte,
    /// else by reading the object); if not, the upload is lost (`404`).
    pub(crate) async fn recover(&self, record: &UploadRecord) -> Result<UploadRecord, Problem> {
        let gone = || {
            tracing::warn!(id = %record.id, "an unfinished upload's bytes are gone");
            not_found(record.id.as_str())
        };
        let meta = match self.store.head(&record.key()).await {
            Ok(meta) => meta,
            Err(StoreError::NotFound(_)) => return Err(gone()),
            Err(e) => return Err(e.to_problem()),
        };
        if record.length.is_some_and(|length| length != meta.size) {
            return Err(gone());
        }
        let hashers = match record.hash.as_ref().filter(|saved| saved.offset == meta.size).and_then(restore) {
            Some(hashers) => hashers,
            None => {
                let algorithms = &self.config.algorithms;
                let mut hashers: Vec<Hasher> = algorithms.iter().map(|a| a.hasher()).collect();
                let mut bytes = self.store.get(&meta.key, None).await.map_err(|e| e.to_problem())?.body;
                while let Some(chunk) = bytes.next().await {
                    let chunk = chunk.map_err(|e| StoreError::from(e).to_problem())?;
                    hashers.iter_mut().for_each(|h| h.update(&chunk));
                }
                hashers
            }
        };
        tracing::info!(id = %record.id, "rolling forward an upload completed before a crash");
        Ok(self.commit(record, &meta, digests(hashers)).await?.0)
    }
}

/// Builds the object `key` of `length` bytes from stored objects, in order, without holding
/// more than a chunk in memory, computing `algorithms` over the whole. The parts are left as
/// they are; a failure leaves nothing at `key` (a put is atomic).
pub(crate) async fn assemble(
    store: &dyn Store,
    parts: &[ObjectKey],
    key: &ObjectKey,
    length: u64,
    algorithms: &[HashAlgorithm],
) -> Result<(ObjectMeta, Digests), StoreError> {
    let hashers = Arc::new(Mutex::new(algorithms.iter().map(|a| a.hasher()).collect::<Vec<_>>()));
    let tap = hashers.clone();
    let bytes = futures_util::stream::iter(parts)
        .then(move |part| store.get(part, None))
        // A part that cannot be read fails the put with the problem storage has, not as a body
        // the client broke off.
        .map_ok(|got| got.body.map_err(|e| rejection(StoreError::from(e))))
        .map_err(rejection)
        .try_flatten()
        .inspect_ok(move |chunk| tap.lock().expect("hash lock poisoned").iter_mut().for_each(|h| h.update(chunk)));
    let meta = store.put(key, bytes.boxed(), PutOptions::with_length(Some(length))).await?;
    let hashers = std::mem::take(&mut *hashers.lock().expect("hash lock poisoned"));
    Ok((meta, digests(hashers)))
}

fn rejection(e: StoreError) -> BoxError {
    Box::new(BodyRejection(e.to_problem()))
}

/// The first `window` bytes of the file that stored objects make in this order (each given with
/// its size), read from as many of them as that takes.
pub(crate) async fn first_bytes(store: &dyn Store, parts: &[(ObjectKey, u64)], window: usize) -> Result<Vec<u8>, Problem> {
    let mut head = Vec::with_capacity(window);
    for (key, size) in parts {
        let want = (window - head.len()) as u64;
        if want == 0 {
            break;
        }
        let mut got = store.get(key, Some(0..want.min(*size))).await.map_err(|e| e.to_problem())?;
        while let Some(bytes) = got.body.next().await {
            head.extend_from_slice(&bytes.map_err(|e| StoreError::from(e).to_problem())?);
        }
    }
    Ok(head)
}
