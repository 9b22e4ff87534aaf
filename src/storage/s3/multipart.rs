//! Multipart uploads of parts sent one by one ([`MultipartStore`]), and presigned `GET`s
//! ([`Signer`]), on object_store's own traits of those names.

use super::{MIN_PART_SIZE, S3, store_error};
use crate::storage::{
    ByteStream, LengthCheck, MultipartStore, ObjectKey, ObjectMeta, PartLimits, ResumableState, Signer, Store, StoreError,
    UploadedPart, now_secs,
};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use object_store::{PutPayload, multipart::MultipartStore as _, multipart::PartId, signer::Signer as _};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, time::Duration};

/// S3 numbers parts 1 to 10 000.
const MAX_PARTS: u64 = 10_000;

/// What [`ResumableState`] holds for a multipart upload of parts: the same `upload_id` as a
/// resumable upload's state, so that the sweeper aborts either kind the same way.
#[derive(Serialize, Deserialize)]
struct Upload {
    upload_id: String,
}

impl Upload {
    fn parse(state: &ResumableState, key: &ObjectKey) -> Result<Self, StoreError> {
        serde_json::from_value(state.0.clone())
            .map_err(|e| StoreError::backend(format!("the recorded S3 multipart upload of {key} is not readable: {e}")))
    }
}

/// A part's bytes as one payload: a body that arrives as one piece is sent as it is; one in
/// pieces is copied into a single allocation (holding the HTTP server's read buffers instead
/// would keep far more memory alive than the part).
async fn gather(mut data: ByteStream<'_>, length: u64) -> Result<PutPayload, StoreError> {
    let mut check = LengthCheck::new(Some(length));
    let mut pieces: Vec<Bytes> = Vec::new();
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(StoreError::Body)?;
        check.admit(&chunk)?;
        if !chunk.is_empty() {
            pieces.push(chunk);
        }
    }
    check.end()?;
    Ok(match pieces.len() {
        0 | 1 => pieces.pop().unwrap_or_default().into(),
        _ => {
            let mut whole = BytesMut::with_capacity(length as usize);
            pieces.iter().for_each(|p| whole.extend_from_slice(p));
            whole.freeze().into()
        }
    })
}

#[async_trait]
impl MultipartStore for S3 {
    /// Parts of 5 MiB up to what one put holds (`part_size × (concurrency + 1)`): a part is held
    /// in memory while it is sent, since S3 needs its length first and its signature its hash.
    fn limits(&self) -> PartLimits {
        let most = (self.inner.part_size * (self.inner.concurrency + 1)) as u64;
        PartLimits::new(MIN_PART_SIZE as u64, most, MAX_PARTS)
    }

    async fn create(&self, key: &ObjectKey) -> Result<ResumableState, StoreError> {
        let upload_id = self.inner.store.create_multipart(&Self::path(key)).await.map_err(|e| store_error(e, key.as_str()))?;
        Ok(ResumableState(serde_json::to_value(Upload { upload_id }).expect("an upload id serialises")))
    }

    async fn put_part(
        &self,
        key: &ObjectKey,
        state: &ResumableState,
        index: u64,
        data: ByteStream<'_>,
        length: u64,
    ) -> Result<UploadedPart, StoreError> {
        let upload = Upload::parse(state, key)?;
        if index >= MAX_PARTS {
            return Err(StoreError::NotSupported("more than 10 000 parts in one S3 upload"));
        }
        let payload = gather(data, length).await?;
        let part = self
            .inner
            .store
            .put_part(&Self::path(key), &upload.upload_id, index as usize, payload)
            .await
            .map_err(|e| store_error(e, key.as_str()))?;
        Ok(UploadedPart { id: part.content_id, size: length })
    }

    async fn parts(&self, key: &ObjectKey, state: &ResumableState) -> Result<BTreeMap<u64, UploadedPart>, StoreError> {
        let upload = Upload::parse(state, key)?;
        let listed = self.inner.api.parts(key, &upload.upload_id).await?;
        Ok(listed
            .into_iter()
            .filter(|(number, _, _)| *number >= 1)
            .map(|(number, id, size)| (number - 1, UploadedPart { id, size }))
            .collect())
    }

    async fn complete(&self, key: &ObjectKey, state: &ResumableState, parts: &[UploadedPart]) -> Result<ObjectMeta, StoreError> {
        let upload = Upload::parse(state, key)?;
        let ids = parts.iter().map(|p| PartId { content_id: p.id.clone() }).collect();
        match self.inner.store.complete_multipart(&Self::path(key), &upload.upload_id, ids).await {
            Ok(_) => Ok(ObjectMeta { key: key.clone(), size: parts.iter().map(|p| p.size).sum(), last_modified: now_secs() }),
            // Completed before (a retry after a crash), or aborted: the object tells which.
            Err(object_store::Error::NotFound { .. }) => self.head(key).await,
            Err(e) => Err(store_error(e, key.as_str())),
        }
    }

    async fn abort(&self, key: &ObjectKey, state: &ResumableState) -> Result<(), StoreError> {
        let upload = Upload::parse(state, key)?;
        match self.inner.store.abort_multipart(&Self::path(key), &upload.upload_id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e, key.as_str())),
        }
    }
}

#[async_trait]
impl Signer for S3 {
    /// A SigV4 presigned `GET` of the object (S3 allows up to 7 days).
    async fn signed_get(&self, key: &ObjectKey, expires_in: Duration) -> Result<String, StoreError> {
        let url = self
            .inner
            .store
            .signed_url(http::Method::GET, &Self::path(key), expires_in)
            .await
            .map_err(|e| store_error(e, key.as_str()))?;
        Ok(url.into())
    }
}

#[cfg(test)]
mod tests {
    use super::gather;
    use crate::{error::BoxError, storage::StoreError};
    use bytes::Bytes;
    use futures_util::StreamExt;

    fn stream(pieces: &[&'static [u8]]) -> crate::storage::ByteStream<'static> {
        let items: Vec<Result<Bytes, BoxError>> = pieces.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        futures_util::stream::iter(items).boxed()
    }

    #[tokio::test]
    async fn a_part_is_exactly_its_length_in_one_piece() {
        let bytes = |p: object_store::PutPayload| p.iter().flat_map(|b| b.to_vec()).collect::<Vec<u8>>();
        let one = gather(stream(&[b"abcdef"]), 6).await.unwrap();
        assert_eq!((one.iter().count(), bytes(one)), (1, b"abcdef".to_vec()));
        let many = gather(stream(&[b"ab", b"", b"cd", b"ef"]), 6).await.unwrap();
        assert_eq!((many.iter().count(), bytes(many)), (1, b"abcdef".to_vec()), "copied into one allocation");
        assert!(matches!(gather(stream(&[b"abc"]), 6).await, Err(StoreError::Incomplete { offset: 3, length: 6 })));
        assert!(matches!(gather(stream(&[b"abc", b"defg"]), 6).await, Err(StoreError::LengthExceeded { length: 6 })));
    }
}
