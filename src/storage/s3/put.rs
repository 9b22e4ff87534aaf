//! One-shot puts: a single `PutObject` for a body that fits in a part, else a multipart upload
//! fed part by part as the body arrives, and aborted unless it completes.

use super::{S3, store_error};
use crate::storage::{ByteStream, LengthCheck, ObjectKey, ObjectMeta, PutOptions, StoreError, now_secs};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::{Attribute, Attributes, MultipartUpload, ObjectStore, PutMultipartOptions, PutPayload};
use std::collections::VecDeque;
use tokio::task::JoinSet;

/// Bytes gathered for the next part, kept as the chunks they came in (no copy).
#[derive(Default)]
pub(super) struct Buffer {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Buffer {
    pub(super) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `n` bytes (at most what is held).
    pub(super) fn take(&mut self, n: usize) -> PutPayload {
        let mut need = n.min(self.len);
        self.len -= need;
        let mut out = Vec::new();
        while need > 0 {
            let mut chunk = self.chunks.pop_front().expect("the buffer holds `len` bytes");
            if chunk.len() > need {
                self.chunks.push_front(chunk.split_off(need));
            }
            need -= chunk.len();
            out.push(chunk);
        }
        out.into_iter().collect()
    }

    /// Everything held.
    pub(super) fn take_all(&mut self) -> PutPayload {
        self.take(self.len)
    }
}

/// A multipart upload being fed: at most `concurrency` parts on their way at once, each sent by
/// a task of its own so that parts travel while the body is read. Dropped before it completed
/// (the put failed, or its request was dropped), it aborts the upload in the background.
struct Uploading {
    upload: Option<Box<dyn MultipartUpload>>,
    parts: JoinSet<object_store::Result<()>>,
    concurrency: usize,
}

impl Uploading {
    /// Sends `part`, once fewer than `concurrency` parts are on their way.
    async fn send(&mut self, part: PutPayload, key: &ObjectKey) -> Result<(), StoreError> {
        while self.parts.len() >= self.concurrency {
            self.settle_one(key).await?;
        }
        let upload = self.upload.as_mut().expect("an upload until it completes or aborts");
        self.parts.spawn(upload.put_part(part));
        Ok(())
    }

    async fn settle_one(&mut self, key: &ObjectKey) -> Result<(), StoreError> {
        match self.parts.join_next().await {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(store_error(e, key.as_str())),
            Some(Err(e)) => Err(StoreError::backend(e)),
        }
    }

    async fn complete(&mut self, key: &ObjectKey) -> Result<(), StoreError> {
        while !self.parts.is_empty() {
            self.settle_one(key).await?;
        }
        let upload = self.upload.as_mut().expect("an upload until it completes or aborts");
        upload.complete().await.map_err(|e| store_error(e, key.as_str()))?;
        self.upload = None;
        Ok(())
    }

    async fn abort(&mut self, key: &ObjectKey) {
        self.parts.abort_all();
        if let Some(mut upload) = self.upload.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(key = %key, error = %e, "could not abort a failed S3 multipart upload; the sweeper will");
            }
        }
    }
}

impl Drop for Uploading {
    fn drop(&mut self) {
        if let (Some(mut upload), Ok(runtime)) = (self.upload.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(error = %e, "could not abort a dropped S3 multipart upload; the sweeper will");
                }
            });
        }
    }
}

pub(super) async fn put(s3: &S3, key: &ObjectKey, data: ByteStream<'_>, options: PutOptions) -> Result<ObjectMeta, StoreError> {
    let mut uploading = None;
    let outcome = stream(s3, key, data, &options, &mut uploading).await;
    if let (Err(_), Some(upload)) = (&outcome, uploading.as_mut()) {
        upload.abort(key).await;
    }
    outcome
}

async fn stream(
    s3: &S3,
    key: &ObjectKey,
    mut data: ByteStream<'_>,
    options: &PutOptions,
    uploading: &mut Option<Uploading>,
) -> Result<ObjectMeta, StoreError> {
    let (store, part_size) = (&s3.inner.store, s3.inner.part_size);
    let path = S3::path(key);
    let mut attributes = Attributes::new();
    if let Some(content_type) = &options.content_type {
        attributes.insert(Attribute::ContentType, content_type.clone().into());
    }
    let mut length = LengthCheck::new(options.length);
    let mut buffer = Buffer::default();
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(StoreError::Body)?;
        length.admit(&chunk)?;
        buffer.push(chunk);
        while buffer.len() >= part_size {
            if uploading.is_none() {
                let opts = PutMultipartOptions { attributes: attributes.clone(), ..Default::default() };
                let upload = store.put_multipart_opts(&path, opts).await.map_err(|e| store_error(e, key.as_str()))?;
                *uploading = Some(Uploading { upload: Some(upload), parts: JoinSet::new(), concurrency: s3.inner.concurrency });
            }
            let part = buffer.take(part_size);
            uploading.as_mut().expect("started above").send(part, key).await?;
        }
    }
    let size = length.end()?;
    match uploading {
        Some(upload) => {
            if !buffer.is_empty() {
                upload.send(buffer.take_all(), key).await?;
            }
            upload.complete(key).await?;
        }
        None => {
            let opts = object_store::PutOptions { attributes, ..Default::default() };
            store.put_opts(&path, buffer.take_all(), opts).await.map_err(|e| store_error(e, key.as_str()))?;
        }
    }
    Ok(ObjectMeta { key: key.clone(), size, last_modified: now_secs() })
}

#[cfg(test)]
mod tests {
    use super::Buffer;
    use bytes::Bytes;

    #[test]
    fn buffers_cut_parts_without_copying_whole_chunks() {
        let mut buffer = Buffer::default();
        for chunk in [&b"abc"[..], b"", b"defg", b"h"] {
            buffer.push(Bytes::copy_from_slice(chunk));
        }
        assert_eq!(buffer.len(), 8);
        let part: Vec<u8> = buffer.take(5).iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(part, b"abcde");
        assert_eq!(buffer.len(), 3);
        let rest: Vec<u8> = buffer.take_all().iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(rest, b"fgh");
        assert!(buffer.is_empty());
    }
}
