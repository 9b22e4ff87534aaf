//! An in-memory store for tests and examples.

use super::{
    Appended, ByteStream, GetResult, KeyPrefix, LengthCheck, ObjectKey, ObjectMeta, PendingUpload, PutOptions, ReadBack,
    ReadStream, ResumableState, ResumableStore, Store, StoreError, now_secs, resolve_range,
};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream::BoxStream};
use std::{
    collections::BTreeMap,
    ops::Range,
    sync::{Arc, Mutex, MutexGuard},
};

/// Keeps objects and resumable uploads in memory. Cloning shares the contents.
#[derive(Clone, Debug, Default)]
pub struct InMemory {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<ObjectKey, (Bytes, u64)>,
    uploads: BTreeMap<ObjectKey, (BytesMut, u64)>,
}

impl InMemory {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("store lock poisoned")
    }

    /// How many unfinished resumable uploads are held (for tests that check nothing is left
    /// behind).
    pub fn pending_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// How many objects are held.
    pub fn objects(&self) -> usize {
        self.lock().objects.len()
    }

    /// The keys of the objects held, in order.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.lock().objects.keys().cloned().collect()
    }

    fn meta(key: &ObjectKey, bytes: &[u8], modified: u64) -> ObjectMeta {
        ObjectMeta { key: key.clone(), size: bytes.len() as u64, last_modified: modified }
    }
}

fn one(bytes: Bytes) -> ReadStream {
    futures_util::stream::iter((!bytes.is_empty()).then_some(Ok(bytes))).boxed()
}

fn missing(key: &ObjectKey) -> StoreError {
    StoreError::NotFound(key.to_string())
}

#[async_trait]
impl Store for InMemory {
    async fn put(&self, key: &ObjectKey, mut data: ByteStream<'_>, options: PutOptions) -> Result<ObjectMeta, StoreError> {
        let mut buf = BytesMut::new();
        let mut length = LengthCheck::new(options.length);
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(StoreError::Body)?;
            length.admit(&chunk)?;
            buf.extend_from_slice(&chunk);
        }
        length.end()?;
        let (bytes, now) = (buf.freeze(), now_secs());
        let meta = Self::meta(key, &bytes, now);
        self.lock().objects.insert(key.clone(), (bytes, now));
        Ok(meta)
    }

    async fn get(&self, key: &ObjectKey, range: Option<Range<u64>>) -> Result<GetResult, StoreError> {
        let (bytes, modified) = self.lock().objects.get(key).cloned().ok_or_else(|| missing(key))?;
        let range = resolve_range(range, bytes.len() as u64)?;
        let body = one(bytes.slice(range.start as usize..range.end as usize));
        Ok(GetResult { meta: Self::meta(key, &bytes, modified), range, body })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let inner = self.lock();
        let (bytes, modified) = inner.objects.get(key).ok_or_else(|| missing(key))?;
        Ok(Self::meta(key, bytes, *modified))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.lock().objects.remove(key);
        Ok(())
    }

    fn list(&self, prefix: Option<&KeyPrefix>) -> BoxStream<'_, Result<ObjectMeta, StoreError>> {
        let under = prefix.map(|p| format!("{}/", p.as_str()));
        let found: Vec<_> = self
            .lock()
            .objects
            .iter()
            .filter(|(key, _)| under.as_deref().is_none_or(|p| key.as_str().starts_with(p)))
            .map(|(key, (bytes, modified))| Ok(Self::meta(key, bytes, *modified)))
            .collect();
        futures_util::stream::iter(found).boxed()
    }

    fn resumable(&self) -> Option<&dyn ResumableStore> {
        Some(self)
    }
}

#[async_trait]
impl ResumableStore for InMemory {
    async fn begin(&self, key: &ObjectKey) -> Result<ResumableState, StoreError> {
        self.lock().uploads.insert(key.clone(), (BytesMut::new(), now_secs()));
        Ok(ResumableState::default())
    }

    async fn append(
        &self,
        key: &ObjectKey,
        _state: &ResumableState,
        offset: u64,
        mut data: ByteStream<'_>,
    ) -> Result<Appended, StoreError> {
        {
            let mut inner = self.lock();
            let (buf, _) = inner.uploads.get_mut(key).ok_or_else(|| missing(key))?;
            if (buf.len() as u64) < offset {
                return Err(StoreError::InvalidRange { size: buf.len() as u64 });
            }
            buf.truncate(offset as usize);
        }
        let mut end = offset;
        while let Some(chunk) = data.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    return Ok(Appended { state: ResumableState::default(), offset: end, failure: Some(StoreError::Body(e)) });
                }
            };
            let mut inner = self.lock();
            let (buf, modified) = inner.uploads.get_mut(key).ok_or_else(|| missing(key))?;
            buf.extend_from_slice(&chunk);
            *modified = now_secs();
            end = buf.len() as u64;
        }
        Ok(Appended { state: ResumableState::default(), offset: end, failure: None })
    }

    async fn offset(&self, key: &ObjectKey, _state: &ResumableState) -> Result<u64, StoreError> {
        self.lock().uploads.get(key).map(|(buf, _)| buf.len() as u64).ok_or_else(|| missing(key))
    }

    async fn truncate(&self, key: &ObjectKey, _state: &ResumableState, offset: u64) -> Result<ResumableState, StoreError> {
        let mut inner = self.lock();
        let (buf, _) = inner.uploads.get_mut(key).ok_or_else(|| missing(key))?;
        if offset > buf.len() as u64 {
            return Err(StoreError::InvalidRange { size: buf.len() as u64 });
        }
        buf.truncate(offset as usize);
        Ok(ResumableState::default())
    }

    async fn complete(&self, key: &ObjectKey, _state: &ResumableState) -> Result<ObjectMeta, StoreError> {
        let mut inner = self.lock();
        if let Some((buf, _)) = inner.uploads.remove(key) {
            inner.objects.insert(key.clone(), (buf.freeze(), now_secs()));
        }
        let (bytes, modified) = inner.objects.get(key).ok_or_else(|| missing(key))?;
        Ok(Self::meta(key, bytes, *modified))
    }

    async fn abort(&self, key: &ObjectKey, _state: &ResumableState) -> Result<(), StoreError> {
        self.lock().uploads.remove(key);
        Ok(())
    }

    fn list_pending(&self) -> BoxStream<'_, Result<PendingUpload, StoreError>> {
        let found: Vec<_> = self
            .lock()
            .uploads
            .iter()
            .map(|(key, (_, modified))| {
                Ok(PendingUpload { key: key.clone(), last_modified: *modified, state: ResumableState::default() })
            })
            .collect();
        futures_util::stream::iter(found).boxed()
    }

    fn read_back(&self) -> Option<&dyn ReadBack> {
        Some(self)
    }
}

#[async_trait]
impl ReadBack for InMemory {
    async fn read(&self, key: &ObjectKey, _state: &ResumableState, range: Range<u64>) -> Result<ReadStream, StoreError> {
        let inner = self.lock();
        let (buf, _) = inner.uploads.get(key).ok_or_else(|| missing(key))?;
        let range = resolve_range(Some(range), buf.len() as u64)?;
        Ok(one(Bytes::copy_from_slice(&buf[range.start as usize..range.end as usize])))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conforms() {
        super::super::conformance::run(&super::InMemory::new()).await;
    }
}
