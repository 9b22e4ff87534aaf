//! An in-memory store for tests and examples.

use super::{
    ByteStream, Capabilities, Digests, DigestsAtEnd, FileMeta, LengthCheck, NewUpload, ObjectRead, Store, StoreError,
    StoredObject, UploadInfo, WriteGuard, check_room, now_secs, resolve_range,
};
use crate::id::UploadId;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream::BoxStream};
use std::{
    collections::{HashMap, HashSet},
    ops::Range,
    sync::{Arc, Mutex},
};

/// Keeps uploads and objects in memory. Cloning shares the contents.
#[derive(Clone, Debug, Default)]
pub struct InMemory {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    uploads: Mutex<HashMap<UploadId, (UploadInfo, BytesMut)>>,
    objects: Mutex<HashMap<UploadId, (StoredObject, Bytes)>>,
    writing: Mutex<HashSet<UploadId>>,
}

impl InMemory {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many unfinished uploads are held (for tests that check nothing is left behind).
    pub fn pending_uploads(&self) -> usize {
        self.inner.uploads.lock().expect("lock poisoned").len()
    }

    /// How many finished objects are held.
    pub fn objects(&self) -> usize {
        self.inner.objects.lock().expect("lock poisoned").len()
    }

    fn upload<T>(&self, id: &UploadId, f: impl FnOnce(&mut (UploadInfo, BytesMut)) -> T) -> Result<T, StoreError> {
        let mut uploads = self.inner.uploads.lock().expect("lock poisoned");
        uploads.get_mut(id).map(f).ok_or_else(|| StoreError::NotFound(id.clone()))
    }
}

#[async_trait]
impl Store for InMemory {
    async fn create(&self, upload: NewUpload) -> Result<UploadInfo, StoreError> {
        let info = UploadInfo::new(upload);
        self.inner.uploads.lock().expect("lock poisoned").insert(info.id.clone(), (info.clone(), BytesMut::new()));
        Ok(info)
    }

    async fn write(&self, id: &UploadId, offset: u64, mut data: ByteStream<'_>) -> Result<u64, StoreError> {
        let _guard = WriteGuard::acquire(&self.inner.writing, id)?;
        let (start, length) = self.upload(id, |(info, _)| (info.offset, info.length))?;
        if start != offset {
            return Err(StoreError::OffsetMismatch { expected: start, given: offset });
        }
        let room = length.map(|l| l - start);
        let mut written = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(StoreError::Body)?;
            check_room(&chunk, written, room, length)?;
            written += chunk.len() as u64;
            self.upload(id, |(info, buf)| {
                buf.extend_from_slice(&chunk);
                info.offset += chunk.len() as u64;
            })?;
        }
        Ok(start + written)
    }

    async fn info(&self, id: &UploadId) -> Result<UploadInfo, StoreError> {
        self.upload(id, |(info, _)| info.clone())
    }

    async fn finish(&self, id: &UploadId, digests: Digests, meta: Option<FileMeta>) -> Result<StoredObject, StoreError> {
        let _guard = WriteGuard::acquire(&self.inner.writing, id)?;
        let mut uploads = self.inner.uploads.lock().expect("lock poisoned");
        let (info, _) = uploads.get(id).ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let object = info.clone().finished(digests, meta)?;
        let (_, data) = uploads.remove(id).expect("checked above");
        self.inner.objects.lock().expect("lock poisoned").insert(id.clone(), (object.clone(), data.freeze()));
        Ok(object)
    }

    async fn abort(&self, id: &UploadId) -> Result<(), StoreError> {
        self.inner.uploads.lock().expect("lock poisoned").remove(id).map(drop).ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    async fn read_partial(
        &self,
        id: &UploadId,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes, std::io::Error>>, StoreError> {
        let bytes = self.upload(id, |(info, buf)| {
            resolve_range(Some(range), info.offset).map(|r| Bytes::copy_from_slice(&buf[r.start as usize..r.end as usize]))
        })??;
        Ok(futures_util::stream::iter([Ok(bytes)]).boxed())
    }

    async fn truncate(&self, id: &UploadId, offset: u64) -> Result<(), StoreError> {
        let _guard = WriteGuard::acquire(&self.inner.writing, id)?;
        self.upload(id, |(info, buf)| {
            if offset > info.offset {
                return Err(StoreError::InvalidRange { size: info.offset });
            }
            buf.truncate(offset as usize);
            info.offset = offset;
            Ok(())
        })?
    }

    async fn list_unfinished(&self) -> Result<Vec<UploadInfo>, StoreError> {
        Ok(self.inner.uploads.lock().expect("lock poisoned").values().map(|(info, _)| info.clone()).collect())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn head(&self, id: &UploadId) -> Result<StoredObject, StoreError> {
        let objects = self.inner.objects.lock().expect("lock poisoned");
        objects.get(id).map(|(o, _)| o.clone()).ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    async fn read(&self, id: &UploadId, range: Option<Range<u64>>) -> Result<ObjectRead, StoreError> {
        let (object, data) = {
            let objects = self.inner.objects.lock().expect("lock poisoned");
            objects.get(id).cloned().ok_or_else(|| StoreError::NotFound(id.clone()))?
        };
        let range = resolve_range(range, object.size)?;
        let bytes = data.slice(range.start as usize..range.end as usize);
        Ok(ObjectRead { object, range, body: futures_util::stream::iter([Ok(bytes)]).boxed() })
    }

    async fn put_object(
        &self,
        upload: NewUpload,
        mut data: ByteStream<'_>,
        digests: DigestsAtEnd,
    ) -> Result<StoredObject, StoreError> {
        // Nothing is shared until the body is whole: a failed or dropped upload leaves nothing.
        let (mut buf, mut length) = (BytesMut::new(), LengthCheck::new(upload.length));
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(StoreError::Body)?;
            length.admit(&chunk)?;
            buf.extend_from_slice(&chunk);
        }
        length.end()?;
        let object = StoredObject {
            id: UploadId::random(),
            size: buf.len() as u64,
            meta: upload.meta,
            digests: digests(),
            created_at: now_secs(),
            key_prefix: upload.key_prefix,
        };
        self.inner.objects.lock().expect("lock poisoned").insert(object.id.clone(), (object.clone(), buf.freeze()));
        Ok(object)
    }

    async fn delete(&self, id: &UploadId) -> Result<(), StoreError> {
        self.inner.objects.lock().expect("lock poisoned").remove(id).map(drop).ok_or_else(|| StoreError::NotFound(id.clone()))
    }
}
