use super::{Change, FileRecord, StateError, StateStore, UploadRecord};
use crate::id::UploadId;
use async_trait::async_trait;
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};

/// Upload records and the file catalog in memory: for tests and docs. Everything is lost when the process ends, so a
/// restarted server cannot resume these uploads; use [`RedbState`](super::RedbState) (the
/// default of [`uploads_router`](crate::uploads_router)) for that.
#[derive(Clone, Debug, Default)]
pub struct MemoryState {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<UploadId, UploadRecord>,
    /// Keyed by the id's 128 bits: ordered as the ids are (32 lowercase hex digits), and
    /// compared without following a pointer to the id's text, which with a large catalog was a
    /// cache miss per comparison on every insert. Boxed, so that an insert shifts pointers
    /// within a tree node, not records of 200 bytes.
    files: BTreeMap<u128, Box<FileRecord>>,
}

/// The catalog key of an id: its 128 bits, big-endian, which sort as its hex text does.
fn key(id: &UploadId) -> u128 {
    u128::from_str_radix(id.as_str(), 16).expect("an upload id is 32 hex digits")
}

impl MemoryState {
    /// An empty state store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("state lock poisoned")
    }

    /// How many upload records it holds.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether it holds no upload record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many files its catalog holds.
    pub fn file_count(&self) -> usize {
        self.lock().files.len()
    }
}

#[async_trait]
impl StateStore for MemoryState {
    async fn insert(&self, record: &UploadRecord) -> Result<(), StateError> {
        let records = &mut self.lock().records;
        if records.contains_key(&record.id) {
            return Err(StateError::AlreadyExists(record.id.clone()));
        }
        records.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, StateError> {
        Ok(self.lock().records.get(id).cloned())
    }

    async fn update(&self, id: &UploadId, change: Change<'_>) -> Result<Option<UploadRecord>, StateError> {
        Ok(self.lock().records.get_mut(id).map(|record| {
            let mut changed = record.clone();
            if change(&mut changed) {
                *record = changed;
            }
            record.clone()
        }))
    }

    async fn remove(&self, id: &UploadId) -> Result<Option<UploadRecord>, StateError> {
        Ok(self.lock().records.remove(id))
    }

    async fn expired(&self, now: u64, limit: usize) -> Result<Vec<UploadRecord>, StateError> {
        let mut expired: Vec<_> = self.lock().records.values().filter(|r| r.is_expired(now)).cloned().collect();
        expired.sort_by_key(|r| r.expires_at);
        expired.truncate(limit);
        Ok(expired)
    }

    async fn insert_file(&self, file: &FileRecord) -> Result<(), StateError> {
        let files = &mut self.lock().files;
        match files.entry(key(&file.id)) {
            std::collections::btree_map::Entry::Occupied(_) => return Err(StateError::AlreadyExists(file.id.clone())),
            std::collections::btree_map::Entry::Vacant(slot) => slot.insert(Box::new(file.clone())),
        };
        Ok(())
    }

    async fn get_file(&self, id: &UploadId) -> Result<Option<FileRecord>, StateError> {
        Ok(self.lock().files.get(&key(id)).map(|f| FileRecord::clone(f)))
    }

    async fn remove_file(&self, id: &UploadId) -> Result<Option<FileRecord>, StateError> {
        Ok(self.lock().files.remove(&key(id)).map(|f| *f))
    }

    async fn files(&self, after: Option<&UploadId>, limit: usize) -> Result<Vec<FileRecord>, StateError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, |id| Excluded(key(id)));
        Ok(self.lock().files.range((start, Unbounded)).take(limit).map(|(_, f)| FileRecord::clone(f)).collect())
    }

    async fn finish(&self, upload: &UploadId, file: &FileRecord) -> Result<Option<UploadRecord>, StateError> {
        let inner = &mut *self.lock();
        let Some(record) = inner.records.get_mut(upload) else { return Ok(None) };
        record.mark_finished();
        inner.files.insert(key(&file.id), Box::new(file.clone()));
        Ok(Some(record.clone()))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conforms() {
        super::super::conformance::run(&super::MemoryState::new()).await;
    }
}
