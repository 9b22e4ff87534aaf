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
    /// [`CarriedHashes`]; they may still be hashing its last bytes), else restored from the
    /// record's checkpoint and brought forward by reading back the bytes it missed (written
    /// since, or before a crash). `None` when that cannot be done: the upload then gets no
    /// digests.
    pub(crate) async fn resume_hash(&self, record: &UploadRecord, offset: u64) -> Option<Hashes> {
        let saved = record.hash.as_ref()?;
        if let Some(carried) = self.carried.take(&record.id, offset) {
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
        Some(Hashes::Ready(hashers))
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
///
/// Hashers may still be hashing the end of the request before ([`Hashes::Hashing`]): a request
/// answers once its bytes are stored, and its hashing thread finishes the last chunks while the
/// client sends the next request. That request's own hashing thread waits for them, so its body
/// streams into the store meanwhile; only a request that hashes inline, completes the upload or
/// writes a checkpoint waits for them itself.
#[derive(Clone, Default)]
pub(crate) struct CarriedHashes(Arc<Mutex<HashMap<UploadId, Carried>>>);

/// Hashers and the offset they reach.
type Carried = (u64, Hashes);

/// Hashers, or the thread still feeding them.
pub(crate) enum Hashes {
    Ready(Vec<Hasher>),
    /// A hashing thread that sends its hashers once it has hashed what it was given.
    Hashing(oneshot::Receiver<Vec<Hasher>>),
}

impl Hashes {
    /// The hashers, once they have hashed everything they were given (`None`: their thread
    /// died, and what it hashed is lost).
    pub(crate) async fn wait(self) -> Option<Vec<Hasher>> {
        match self {
            Hashes::Ready(hashers) => Some(hashers),
            Hashes::Hashing(done) => done.await.ok(),
        }
    }

    /// The hashers of an upload that is complete, once done (none when they are lost: the file
    /// then gets no digests).
    pub(crate) async fn finished(hashes: Option<Self>) -> Vec<Hasher> {
        match hashes {
            Some(hashes) => hashes.wait().await.unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// [`Hashes::wait`] for a blocking thread.
    pub(crate) fn wait_blocking(self) -> Option<Vec<Hasher>> {
        match self {
            Hashes::Ready(hashers) => Some(hashers),
            Hashes::Hashing(done) => done.blocking_recv().ok(),
        }
    }
}

impl std::fmt::Debug for CarriedHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CarriedHashes").field(&self.0.lock().map(|m| m.len()).unwrap_or_default()).finish()
    }
}

impl CarriedHashes {
    /// The hashers of upload `id` if they reach `offset`. They leave the map: the request that
    /// takes them puts back what it carries on (a request that fails before that leaves the next
    /// one to restore the recorded checkpoint).
    pub(crate) fn take(&self, id: &UploadId, offset: u64) -> Option<Hashes> {
        let mut carried = self.0.lock().expect("carried hashes lock poisoned");
        if carried.get(id).is_none_or(|(at, _)| *at != offset) {
            return None;
        }
        carried.remove(id).map(|(_, hashes)| hashes)
    }

    /// Keeps the hashers of upload `id` at `offset`.
    pub(crate) fn put(&self, id: &UploadId, offset: u64, hashes: Hashes) {
        let mut carried = self.0.lock().expect("carried hashes lock poisoned");
        if carried.len() >= CARRIED_MAX && !carried.contains_key(id) {
            if let Some(any) = carried.keys().next().cloned() {
                carried.remove(&any);
            }
        }
        carried.insert(id.clone(), (offset, hashes));
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
    /// The hashers: `Ready` ones hashed inline as the stream passes, or the thread fed by it.
    pub(super) hashes: Option<Hashes>,
    pub(super) fed: u64,
}

impl HashTap {
    /// The hashers and how many bytes they were fed, once the stream has been dropped; an
    /// offloaded hasher may still be hashing the last of them.
    pub(crate) fn take(self) -> Option<(Hashes, u64)> {
        let mut s = self.0.lock().expect("tap lock poisoned");
        let fed = s.fed;
        s.hashes.take().map(|hashes| (hashes, fed))
    }
}
