//! One-shot puts: a single `PutObject` for a body that fits in a part, else a multipart upload
//! fed part by part as the body arrives, and aborted unless it completes.

use super::{S3, store_error};
use crate::storage::{ByteStream, LengthCheck, ObjectKey, ObjectMeta, PutOptions, StoreError, now_secs};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use object_store::{Attribute, Attributes, MultipartUpload, ObjectStore, PutMultipartOptions, PutPayload};
use std::collections::VecDeque;
use tokio::task::JoinSet;

/// Bytes gathered into parts of one size, copied out of the request's chunks as they come. A
/// part is one allocation, and once S3 has it the next part reuses it: an upload allocates
/// `concurrency + 1` parts at most and holds none of the HTTP server's read buffers, which would
/// otherwise stay alive, hundreds of small chunks per part, and fragment the allocator's
/// per-thread arenas (with glibc, a 1 GiB upload peaked 20 MiB over the parts it held that way).
///
/// Every part, the first included, is allocated at its full size, and none is freed before the
/// upload ends. A small body still costs no more memory than its size: an allocation that large
/// is mapped, not touched, and pages become resident only as bytes are written. Growing the
/// first part instead (64 KiB, 128 KiB, … 4 MiB) freed mapped blocks, which makes glibc raise
/// its mmap threshold to their size and its trim threshold to twice that, so that each thread's
/// arena then kept up to 8 MiB of freed memory resident: 1 GiB through 8 MiB × 4 peaked at
/// 67 MiB instead of 55.
pub(super) struct Buffer {
    part: usize,
    full: VecDeque<Bytes>,
    current: BytesMut,
    len: usize,
    /// Parts handed out, to be reused once nobody else holds them.
    lent: Vec<Bytes>,
    keep: usize,
}

impl Buffer {
    /// A buffer of `part`-byte parts that reuses up to `keep` of those it handed out.
    pub(super) fn new(part: usize, keep: usize) -> Self {
        Self { part, full: VecDeque::new(), current: BytesMut::new(), len: 0, lent: Vec::new(), keep }
    }

    /// An empty part: one S3 is done with, if one is.
    fn allocate(&mut self) -> BytesMut {
        for i in 0..self.lent.len() {
            if self.lent[i].is_unique() {
                if let Ok(mut reused) = self.lent.swap_remove(i).try_into_mut() {
                    reused.clear();
                    return reused;
                }
                break;
            }
        }
        BytesMut::with_capacity(self.part)
    }

    /// Takes all of `chunk`, cutting as many parts as it fills.
    pub(super) fn push(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while !rest.is_empty() {
            rest = &rest[self.fill(rest)..];
        }
    }

    /// Takes bytes of `chunk` up to the end of the part being filled, and returns how many. A
    /// caller that sends each part it fills before it passes on the rest of the chunk holds at
    /// most `concurrency + 1` parts: the next part's buffer is taken only once a place is free,
    /// so it can be one S3 is done with.
    pub(super) fn fill(&mut self, chunk: &[u8]) -> usize {
        let n = (self.part - self.current.len()).min(chunk.len());
        if n == 0 {
            return 0;
        }
        if self.current.capacity() == 0 {
            self.current = self.allocate();
        }
        self.current.extend_from_slice(&chunk[..n]);
        self.len += n;
        if self.current.len() == self.part {
            self.full.push_back(std::mem::take(&mut self.current).freeze());
        }
        n
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next full part, if one is.
    pub(super) fn next_part(&mut self) -> Option<PutPayload> {
        let part = self.full.pop_front()?;
        self.len -= part.len();
        if self.lent.len() < self.keep {
            self.lent.push(part.clone());
        }
        Some(part.into())
    }

    /// Everything held.
    pub(super) fn take_all(&mut self) -> PutPayload {
        self.len = 0;
        let rest = std::mem::take(&mut self.current).freeze();
        self.full.drain(..).chain((!rest.is_empty()).then_some(rest)).collect()
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
    let mut buffer = Buffer::new(part_size, s3.inner.concurrency + 1);
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(StoreError::Body)?;
        length.admit(&chunk)?;
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            rest = &rest[buffer.fill(rest)..];
            // A part filled is sent before the rest of the chunk starts the next one.
            while let Some(part) = buffer.next_part() {
                if uploading.is_none() {
                    let opts = PutMultipartOptions { attributes: attributes.clone(), ..Default::default() };
                    let upload = store.put_multipart_opts(&path, opts).await.map_err(|e| store_error(e, key.as_str()))?;
                    *uploading =
                        Some(Uploading { upload: Some(upload), parts: JoinSet::new(), concurrency: s3.inner.concurrency });
                }
                uploading.as_mut().expect("started above").send(part, key).await?;
            }
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
    use object_store::PutPayload;

    #[test]
    fn buffers_cut_parts_of_one_size() {
        let bytes = |p: PutPayload| p.iter().flat_map(|b| b.to_vec()).collect::<Vec<u8>>();
        let mut buffer = Buffer::new(5, 2);
        for chunk in [&b"abc"[..], b"", b"defg", b"hijklm"] {
            buffer.push(chunk);
        }
        assert_eq!(buffer.len(), 13);
        assert_eq!(bytes(buffer.next_part().unwrap()), b"abcde");
        assert_eq!(bytes(buffer.next_part().unwrap()), b"fghij");
        assert!(buffer.next_part().is_none(), "three bytes are no part");
        assert_eq!(buffer.len(), 3);
        assert_eq!(bytes(buffer.take_all()), b"klm");
        assert!(buffer.is_empty() && bytes(buffer.take_all()).is_empty());
        // Parts are allocated whole, the first too...
        let mut buffer = Buffer::new(1 << 20, 1);
        buffer.push(&[1; 1000]);
        assert_eq!(buffer.current.capacity(), 1 << 20);
        buffer.push(&vec![2; (1 << 20) + 10]);
        let first = buffer.next_part().unwrap();
        assert_eq!(first.content_length(), 1 << 20);
        assert_eq!(buffer.current.capacity(), 1 << 20);
        assert_eq!(buffer.len(), 1010);
        // ... or reuse one that was sent, once nobody else holds it.
        buffer.push(&vec![3; (1 << 20) - 1010]);
        let second = buffer.next_part().unwrap();
        buffer.push(&[4; 10]);
        let first_at = first.iter().next().unwrap().as_ptr();
        assert_ne!(buffer.current.as_ptr(), first_at, "still held: not reused");
        drop((first, second));
        buffer.push(&vec![5; (1 << 20) - 10]);
        assert_eq!(buffer.next_part().map(|p| p.content_length()), Some(1 << 20));
        buffer.push(&[6]);
        assert_eq!(buffer.current.as_ptr(), first_at, "reused once let go");
    }

    #[test]
    fn filling_stops_at_the_end_of_a_part() {
        let mut buffer = Buffer::new(4, 1);
        assert_eq!(buffer.fill(b"abc"), 3);
        assert_eq!(buffer.fill(b"defghij"), 1, "the part is full");
        let capacity = buffer.current.capacity();
        assert_eq!(capacity, 0, "no buffer is taken for the next part before this one is sent");
        assert_eq!(buffer.next_part().map(|p| p.content_length()), Some(4));
        assert_eq!(buffer.fill(b"efghij"), 4);
        assert_eq!(buffer.fill(b"ij"), 2);
        assert_eq!((buffer.len(), buffer.fill(b"")), (6, 0));
    }
}
