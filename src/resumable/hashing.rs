//! The whole-upload hash, carried across requests (and processes) as saved hasher states.

use super::{Resumable, resumable_of};
use crate::id::UploadId;
use crate::{
    hash::{HashAlgorithm, Hasher},
    state::{HashCheckpoint, UploadRecord},
    storage::Digests,
};
use futures_util::StreamExt;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tokio::sync::oneshot;

impl Resumable {
    /// The hash state of a new upload: every configured algorithm, at offset 0; `None` when an
    /// algorithm cannot save its state (then no whole-upload digest is kept), or when there is
    /// none to compute (then no request has a checkpoint to write).
    pub(crate) fn fresh_checkpoint(&self) -> Option<HashCheckpoint> {
        if self.config.algorithms.is_empty() {
            return None;
        }
        let hashers: Vec<Hasher> = self.config.algorithms.iter().map(|a| a.hasher()).collect();
        checkpoint(&hashers, 0)
    }

    /// The hashers to continue an upload at `offset`: those the request before carried (see
    /// [`CarriedHashes`]), else restored from the record's checkpoint and brought forward by
    /// reading back the bytes it missed (written since, or before a crash). `None` when that
    /// cannot be done: the upload then gets no digests.
    pub(crate) async fn resume_hash(&self, record: &UploadRecord, offset: u64) -> Option<Vec<Hasher>> {
        let saved = record.hash.as_ref()?;
        if let Some(carried) = self.carried.get(&record.id, offset) {
            return Some(carried);
        }
        let mut hashers = restore(saved)?;
        if saved.offset > offset {
            return None;
        }
        if saved.offset < offset {
            let back = resumable_of(self.store.as_ref()).ok()?.read_back()?;
            let mut missed = back.read(&record.key(), &record.storage, saved.offset..offset).await.ok()?;
            while let Some(chunk) = missed.next().await {
                let chunk = chunk.ok()?;
                hashers.iter_mut().for_each(|h| h.update(&chunk));
            }
        }
        Some(hashers)
    }
}

/// How far an upload's recorded hash checkpoint may fall behind the hashers carried in memory
/// before an append writes it anyway: what a resumed upload reads back at most when the carried
/// hashers are gone (another process, a restart, an eviction).
pub(crate) const CHECKPOINT_EVERY: u64 = 64 << 20;

/// Uploads carried in memory at most; past that, an arbitrary one is dropped (its next request
/// reads back from its recorded checkpoint).
const CARRIED_MAX: usize = 4096;

/// The whole-upload hashers of recent appends, by upload, with the offset they reached: the next
/// request to an upload at that offset continues them as they are, instead of restoring a
/// checkpoint that every request would otherwise have to write to the state store. Only bytes
/// an upload holds are ever hashed into them, and bytes before an upload's offset never change,
/// so hashers at the offset a request starts from are right whatever happened in between.
#[derive(Clone, Default)]
pub(crate) struct CarriedHashes(Arc<Mutex<HashMap<UploadId, Carried>>>);

/// Hashers and the offset they reached.
type Carried = (u64, Vec<Hasher>);

impl std::fmt::Debug for CarriedHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CarriedHashes").field(&self.0.lock().map(|m| m.len()).unwrap_or_default()).finish()
    }
}

impl CarriedHashes {
    /// A copy of the hashers of upload `id` if they reached `offset` (the entry stays, so that a
    /// request that fails leaves them for its retry).
    pub(crate) fn get(&self, id: &UploadId, offset: u64) -> Option<Vec<Hasher>> {
        let carried = self.0.lock().expect("carried hashes lock poisoned");
        carried.get(id).filter(|(at, _)| *at == offset).map(|(_, hashers)| hashers.clone())
    }

    /// Keeps the hashers of upload `id` at `offset`.
    pub(crate) fn put(&self, id: &UploadId, offset: u64, hashers: Vec<Hasher>) {
        let mut carried = self.0.lock().expect("carried hashes lock poisoned");
        if carried.len() >= CARRIED_MAX && !carried.contains_key(id) {
            if let Some(any) = carried.keys().next().cloned() {
                carried.remove(&any);
            }
        }
        carried.insert(id.clone(), (offset, hashers));
    }

    /// Drops what is carried for upload `id` (finished or ended).
    pub(crate) fn forget(&self, id: &UploadId) {
        self.0.lock().expect("carried hashes lock poisoned").remove(id);
    }
}

/// The hashers a checkpoint saved.
pub(crate) fn restore(saved: &HashCheckpoint) -> Option<Vec<Hasher>> {
    let mut hashers = Vec::with_capacity(saved.states.len());
    for (name, state) in &saved.states {
        let algorithm = HashAlgorithm::from_name(name)?;
        hashers.push(Hasher::restore(algorithm, &crate::id::from_hex(state)?)?);
    }
    Some(hashers)
}

/// Saves hashers at `offset`.
pub(crate) fn checkpoint(hashers: &[Hasher], offset: u64) -> Option<HashCheckpoint> {
    let mut states = std::collections::BTreeMap::new();
    for h in hashers {
        states.insert(h.algorithm().name().to_owned(), crate::id::to_hex(&h.save()?));
    }
    Some(HashCheckpoint { offset, states })
}

/// The digests of finished hashers.
pub(crate) fn digests(hashers: Vec<Hasher>) -> Digests {
    let mut digests = Digests::default();
    for h in hashers {
        let algorithm = h.algorithm();
        digests.insert(algorithm.name(), &h.finalize());
    }
    digests
}

/// The hashers of an append, fed by its stream; read them back once the store is done with the
/// stream.
pub(crate) struct HashTap(pub(super) Arc<Mutex<TapState>>);

pub(super) struct TapState {
    pub(super) inline: Option<Vec<Hasher>>,
    pub(super) offloaded: Option<oneshot::Receiver<Vec<Hasher>>>,
    pub(super) fed: u64,
}

impl HashTap {
    /// The hashers and how many bytes they were fed, once the stream has been dropped.
    pub(crate) async fn take(self) -> Option<(Vec<Hasher>, u64)> {
        let (inline, offloaded, fed) = {
            let mut s = self.0.lock().expect("tap lock poisoned");
            (s.inline.take(), s.offloaded.take(), s.fed)
        };
        match (inline, offloaded) {
            (Some(h), _) => Some((h, fed)),
            (None, Some(rx)) => rx.await.ok().map(|h| (h, fed)),
            (None, None) => None,
        }
    }
}
