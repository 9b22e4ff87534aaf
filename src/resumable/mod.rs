//! The resumable engine that tus, the IETF draft and the chunked API share; those protocols are
//! thin adapters that parse headers and render answers (like tusd's handler over its composer).
//!
//! | step | where | what |
//! |---|---|---|
//! | create | [`Resumable::create`] | pre-create hook, the store's upload, the record (the upload's commit point) |
//! | find | [`Resumable::load`] | `404`, the authorisation hook, `410`, expiry kept alive; a crash's half-finished upload rolled forward |
//! | append | [`append`](append::append) | lock, offset check, takeover of stalled requests, sniffing window, hash state, progress, checksum, expiry |
//! | finish | [`Resumable::finish`] | the store's object, then its catalog row with the record marked finished (the file's commit point), the post-finish hook |
//! | terminate | [`Resumable::terminate`] | the record and catalog row, then the bytes |
//!
//! Every step orders its writes so that a crash between any two leaves either the state before
//! or the state after, with whatever storage the crash orphaned named by no record or row: the
//! [sweeper](crate::state::sweep::Sweeper) removes that once it is older than a grace period.

mod append;
mod checksum;
mod finish;
mod hashing;
mod progress;

pub(crate) use append::inconsistent_length;
pub(crate) use append::{AppendOptions, Appended};
pub(crate) use checksum::{CHECKSUM_ALGORITHMS, Checksum};
pub(crate) use finish::{assemble, first_bytes};
pub(crate) use hashing::{Hashes, checkpoint, digests, restore};

use crate::{
    config::UploadConfig,
    error::Problem,
    hash::HashAlgorithm,
    hooks::{AccessTarget, CreateRequest, Hooks},
    id::UploadId,
    progress::ProgressHub,
    state::{Locker, Protocol, StateStore, UploadLock, UploadRecord},
    storage::{FileMeta, MultipartStore, ObjectKey, ResumableStore, Store, StoreError, now_secs},
};
use http::{StatusCode, request::Parts};
use progress::ProgressReporter;
use std::sync::Arc;

/// The backends and settings of the resumable protocols.
#[derive(Clone, Debug)]
pub(crate) struct Resumable {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) state: Arc<dyn StateStore>,
    pub(crate) locker: Arc<dyn Locker>,
    pub(crate) hooks: Hooks,
    pub(crate) hub: ProgressHub,
    pub(crate) config: Arc<UploadConfig>,
    /// When requests last started a sweep (seconds since the Unix epoch).
    pub(crate) last_sweep: Arc<std::sync::atomic::AtomicU64>,
    /// Whole-upload hashers carried from one append to the next.
    pub(crate) carried: hashing::CarriedHashes,
}

pub(crate) fn not_found(id: &str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "upload_not_found", format!("no upload with id {id}"))
}

/// The store's uploads of parts, or `501` for a store without them.
pub(crate) fn multipart_of(store: &dyn Store) -> Result<&dyn MultipartStore, Problem> {
    store.multipart().ok_or_else(|| StoreError::NotSupported("uploads of parts").to_problem())
}

/// The store's resumable uploads, or `501` for a store without them.
pub(crate) fn resumable_of(store: &dyn Store) -> Result<&dyn ResumableStore, Problem> {
    store.resumable().ok_or_else(|| StoreError::NotSupported("resumable uploads").to_problem())
}

impl Resumable {
    /// When an upload touched now expires. Also gives the sweeper its turn (see
    /// [`UploadConfig::sweep_every`]).
    pub(crate) fn expires_at(&self) -> Option<u64> {
        self.maybe_sweep();
        self.config.expiry.map(|ttl| now_secs() + ttl.as_secs())
    }

    /// The expiry a request that appended gives its upload (`Some(None)`: none, as configured),
    /// or `None` to keep the recorded one: like [`keep_alive`](Self::keep_alive), a later expiry
    /// is written only when it moves by more than a tenth of `expiry` (at most a minute).
    pub(crate) fn later_expiry(&self, recorded: Option<u64>) -> Option<Option<u64>> {
        let fresh = self.expires_at();
        match (self.config.expiry, recorded, fresh) {
            (Some(ttl), Some(at), Some(fresh)) if at + (ttl.as_secs() / 10).min(60) >= fresh => None,
            (_, recorded, fresh) if recorded == fresh => None,
            _ => Some(fresh),
        }
    }

    /// Starts a sweep of expired uploads in the background when the last one started at least
    /// `sweep_every` ago, so a router cleans up after itself with no task of its own to spawn.
    fn maybe_sweep(&self) {
        use std::sync::atomic::Ordering;
        let Some(every) = self.config.sweep_every else { return };
        let now = now_secs();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now < last + every.as_secs()
            || self.last_sweep.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let sweeper = crate::state::sweep::Sweeper::new(self.state.clone(), self.store.clone(), self.locker.clone())
            .orphans_after(self.config.expiry);
        tokio::spawn(async move {
            match sweeper.sweep().await {
                Ok(report) if report != Default::default() => tracing::info!(?report, "swept expired uploads"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweeping expired uploads failed"),
            }
        });
    }

    /// Runs the pre-create hook, begins the store's upload (for protocols that append) and
    /// records it. The record is the upload's commit point: a crash before it leaves a pending
    /// upload no record names, which the sweeper removes.
    pub(crate) async fn create(&self, asked: CreateRequest, kind: Protocol) -> Result<UploadRecord, Problem> {
        let length = asked.length;
        let allowed = self.hooks.run_pre_create(asked).await?;
        let mut record = UploadRecord::new(UploadId::random(), kind, length, allowed.meta);
        record.owner = allowed.owner;
        record.key_prefix = allowed.key_prefix;
        record.expires_at = self.expires_at();
        let appends = matches!(record.protocol, Protocol::Tus { .. });
        let of_parts = matches!(record.protocol, Protocol::Chunked { parts: Some(_), .. });
        if appends {
            record.hash = self.fresh_checkpoint();
            record.storage = resumable_of(self.store.as_ref())?.begin(&record.key()).await.map_err(|e| e.to_problem())?;
        }
        if of_parts {
            // Chunks that arrive in order carry the hash forward; the rest is read back at the end.
            let hashers: Vec<_> = self.file_algorithms().into_iter().map(|a| a.hasher()).collect();
            record.hash = hashing::checkpoint(&hashers, 0);
            record.storage = multipart_of(self.store.as_ref())?.create(&record.key()).await.map_err(|e| e.to_problem())?;
        }
        if let Err(e) = self.state.insert(&record).await {
            if appends {
                let _ = resumable_of(self.store.as_ref())?.abort(&record.key(), &record.storage).await;
            }
            if of_parts {
                let _ = multipart_of(self.store.as_ref())?.abort(&record.key(), &record.storage).await;
            }
            return Err(e.to_problem());
        }
        Ok(record)
    }

    /// The digests a chunked upload's file gets: SHA-256 (its answer names it), then the
    /// configured ones.
    pub(crate) fn file_algorithms(&self) -> Vec<HashAlgorithm> {
        let mut algorithms = vec![HashAlgorithm::Sha256];
        algorithms.extend(self.config.algorithms.iter().copied().filter(|a| *a != HashAlgorithm::Sha256));
        algorithms
    }

    /// The record of the upload a request names: `404` when unknown (or not an id), whatever the
    /// authorisation hook says, then `410` when expired (so that nobody else learns even that).
    pub(crate) async fn load(&self, id: &str, parts: &Parts) -> Result<UploadRecord, Problem> {
        let id = UploadId::parse(id).ok_or_else(|| not_found(id))?;
        let record = self.state.get(&id).await.map_err(|e| e.to_problem())?.ok_or_else(|| not_found(id.as_str()))?;
        self.hooks.authorize_access(parts, record.owner.as_deref(), || AccessTarget::Upload(record.clone())).await?;
        if record.is_expired(now_secs()) {
            return Err(Problem::new(StatusCode::GONE, "upload_expired", format!("upload {id} has expired")));
        }
        self.keep_alive(record).await
    }

    /// Every request keeps an unfinished upload alive for another `expiry`. The record is written
    /// only when that moves its expiry by more than a tenth of `expiry` (at most a minute), so a
    /// stream of requests costs no extra write each.
    async fn keep_alive(&self, record: UploadRecord) -> Result<UploadRecord, Problem> {
        let (Some(ttl), Some(at), false) = (self.config.expiry, record.expires_at, record.finished) else { return Ok(record) };
        let Some(fresh) = self.expires_at() else { return Ok(record) };
        if at + (ttl.as_secs() / 10).min(60) >= fresh {
            return Ok(record);
        }
        let updated = self
            .state
            .update(&record.id, &mut |r| {
                let later = r.expires_at.is_some_and(|at| at < fresh);
                if later {
                    r.expires_at = Some(fresh);
                }
                later
            })
            .await
            .map_err(|e| e.to_problem())?;
        Ok(updated.unwrap_or(record))
    }

    /// [`load`](Self::load) for the tus and draft routes: another protocol's upload (a chunked
    /// one) is unknown there.
    pub(crate) async fn load_tus(&self, id: &str, parts: &Parts) -> Result<UploadRecord, Problem> {
        let record = self.load(id, parts).await?;
        match record.protocol {
            Protocol::Tus { .. } => Ok(record),
            _ => Err(not_found(id)),
        }
    }

    /// Takes the upload's write lock (`423` if another request keeps it).
    pub(crate) async fn lock(&self, id: &UploadId) -> Result<UploadLock, Problem> {
        self.locker.lock(id).await.map_err(|e| e.to_problem())
    }

    /// The offset of an appendable upload: what the store holds (which a crash may have left
    /// past the last record), less any bytes a checksummed request has not had verified; for a
    /// finished one, its file's size. A crash between the store completing the upload and its
    /// catalog row is rolled forward here (see [`recover`](Self::recover)), so the answer is the
    /// finished file's.
    pub(crate) async fn offset(&self, record: &UploadRecord) -> Result<(u64, Option<UploadRecord>), Problem> {
        if record.finished {
            return Ok((self.finished_size(record).await?, None));
        }
        let resumable = resumable_of(self.store.as_ref())?;
        match resumable.offset(&record.key(), &record.storage).await {
            Ok(held) => Ok((record.unverified_from.map_or(held, |verified| verified.min(held)), None)),
            Err(StoreError::NotFound(_)) => {
                let recovered = self.recover(record).await?;
                Ok((self.finished_size(&recovered).await?, Some(recovered)))
            }
            Err(e) => Err(e.to_problem()),
        }
    }

    /// The size of a finished upload's file.
    async fn finished_size(&self, record: &UploadRecord) -> Result<u64, Problem> {
        match self.state.get_file(&record.id).await.map_err(|e| e.to_problem())? {
            Some(file) => Ok(file.size),
            // A partial upload of a concatenation is an object without a catalog row.
            None => Ok(self.store.head(&record.key()).await.map_err(|e| e.to_problem())?.size),
        }
    }

    /// Ends an upload at its client's request: its record and its file's catalog row go first
    /// (the commit point: from then on the upload is gone for every request), then its bytes; a
    /// crash in between leaves only orphans for the sweeper.
    pub(crate) async fn terminate(&self, record: UploadRecord) -> Result<(), Problem> {
        let _lock = self.lock(&record.id).await?;
        self.state.remove(&record.id).await.map_err(|e| e.to_problem())?;
        self.carried.forget(&record.id);
        if record.finished {
            self.state.remove_file(&record.id).await.map_err(|e| e.to_problem())?;
        }
        self.discard(&record).await;
        self.hooks.notify_terminate(record);
        Ok(())
    }

    /// Removes what storage holds for an upload whose record is gone: its unfinished bytes, its
    /// chunks, and its file when finished.
    async fn discard(&self, record: &UploadRecord) {
        let outcome = crate::state::sweep::discard(self.store.as_ref(), record, true).await;
        if let Err(e) = outcome {
            tracing::warn!(id = %record.id, error = %e, "could not remove a terminated upload's bytes");
        }
    }

    /// A progress sender for an upload, keyed by its id (the SSE endpoint follows it), taken over
    /// by each request that appends to it.
    pub(crate) fn progress(&self, record: &UploadRecord, offset: u64) -> Option<ProgressReporter> {
        ProgressReporter::start(&self.hub, record, offset)
    }
}

/// The metadata a finished upload's file gets: the record's, typed by what its first bytes
/// showed.
pub(crate) fn file_meta(record: &UploadRecord) -> FileMeta {
    let mut meta = record.meta.clone();
    if let Some(detected) = &record.detected_type {
        meta.content_type = Some(detected.clone());
    }
    meta
}

/// The key a chunked upload keeps chunk `n` under.
pub(crate) fn chunk_key(record: &UploadRecord, n: u64) -> ObjectKey {
    ObjectKey::of_chunk(record.key_prefix.as_ref(), &record.id, n)
}
