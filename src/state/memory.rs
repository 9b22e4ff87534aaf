use super::{Change, StateError, StateStore, UploadRecord};
use crate::id::UploadId;
use async_trait::async_trait;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// Upload records in memory: for tests and docs. Everything is lost when the process ends, so a
/// restarted server cannot resume these uploads; use [`RedbState`](super::RedbState) (the
/// default of [`uploads_router`](crate::uploads_router)) for that.
#[derive(Clone, Debug, Default)]
pub struct MemoryState {
    records: Arc<Mutex<HashMap<UploadId, UploadRecord>>>,
}

impl MemoryState {
    /// An empty state store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.records.lock().expect("state lock poisoned").len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl StateStore for MemoryState {
    async fn insert(&self, record: &UploadRecord) -> Result<(), StateError> {
        let mut records = self.records.lock().expect("state lock poisoned");
        if records.contains_key(&record.id) {
            return Err(StateError::AlreadyExists(record.id.clone()));
        }
        records.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, StateError> {
        Ok(self.records.lock().expect("state lock poisoned").get(id).cloned())
    }

    async fn update(&self, id: &UploadId, change: Change<'_>) -> Result<Option<UploadRecord>, StateError> {
        let mut records = self.records.lock().expect("state lock poisoned");
        Ok(records.get_mut(id).map(|record| {
            let mut changed = record.clone();
            if change(&mut changed) {
                *record = changed;
            }
            record.clone()
        }))
    }

    async fn remove(&self, id: &UploadId) -> Result<Option<UploadRecord>, StateError> {
        Ok(self.records.lock().expect("state lock poisoned").remove(id))
    }

    async fn expired(&self, now: u64, limit: usize) -> Result<Vec<UploadRecord>, StateError> {
        let records = self.records.lock().expect("state lock poisoned");
        let mut expired: Vec<_> = records.values().filter(|r| r.is_expired(now)).cloned().collect();
        expired.sort_by_key(|r| r.expires_at);
        expired.truncate(limit);
        Ok(expired)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conforms() {
        super::super::conformance::run(&super::MemoryState::new()).await;
    }
}
