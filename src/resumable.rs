//! What the resumable protocols (tus, the IETF draft, chunked) share: finding an upload for a
//! request (404, 410, the authorisation hook), expiry, the whole-upload hash carried across
//! requests, the stream wrapper every appended body goes through, and assembling stored parts
//! into one file.

use crate::{
    error::{BodyRejection, BoxError, Problem},
    hash::{HashAlgorithm, Hasher},
    hooks::{AccessTarget, Hooks},
    id::UploadId,
    progress::{Progress, ProgressHub, ProgressId, ProgressState},
    router::UploadConfig,
    state::{Concat, FileRecord, HashCheckpoint, Locker, Protocol, StateStore, UploadLock, UploadRecord},
    storage::{ByteStream, Digests, NewUpload, Store, StoreError, StoredObject, now_secs},
};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{StatusCode, request::Parts};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, oneshot, watch};

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
}

pub(crate) fn not_found(id: &str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "upload_not_found", format!("no upload with id {id}"))
}

impl Resumable {
    /// When an upload touched now expires. Also gives the sweeper its turn (see
    /// [`UploadConfig::sweep_every`]).
    pub(crate) fn expires_at(&self) -> Option<u64> {
        self.maybe_sweep();
        self.config.expiry.map(|ttl| now_secs() + ttl.as_secs())
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

    /// The hash state of a new upload: every configured algorithm, at offset 0; `None` when an
    /// algorithm cannot save its state (then no whole-upload digest is kept).
    pub(crate) fn fresh_checkpoint(&self) -> Option<HashCheckpoint> {
        let hashers: Vec<Hasher> = self.config.algorithms.iter().map(|a| a.hasher()).collect();
        checkpoint(&hashers, 0)
    }

    /// The hashers to continue an upload at `offset`: restored from the record's checkpoint, and
    /// brought forward by reading back bytes the checkpoint missed (a crash between writing and
    /// recording). `None` when that cannot be done: the upload then gets no digests.
    pub(crate) async fn resume_hash(&self, record: &UploadRecord, offset: u64) -> Option<Vec<Hasher>> {
        let saved = record.hash.as_ref()?;
        let mut hashers = Vec::with_capacity(saved.states.len());
        for (name, state) in &saved.states {
            let algorithm = HashAlgorithm::from_name(name)?;
            hashers.push(Hasher::restore(algorithm, &from_hex(state)?)?);
        }
        if saved.offset > offset {
            return None;
        }
        if saved.offset < offset {
            let mut missed = self.store.read_partial(&record.id, saved.offset..offset).await.ok()?;
            while let Some(chunk) = missed.next().await {
                let chunk = chunk.ok()?;
                hashers.iter_mut().for_each(|h| h.update(&chunk));
            }
        }
        Some(hashers)
    }

    /// Finishes an upload whose bytes are all in: the store makes it a file with the digests,
    /// the record is marked finished, and the post-finish hook is told.
    pub(crate) async fn finish(&self, record: &UploadRecord, digests: Digests) -> Result<StoredObject, Problem> {
        let mut meta = record.meta.clone();
        if let Some(detected) = &record.detected_type {
            meta.content_type = Some(detected.clone());
        }
        let object = self.store.finish(&record.id, digests, Some(meta)).await.map_err(|e| e.to_problem())?;
        // A partial upload of a concatenation is a part, not a file: it is never catalogued, so it
        // cannot be downloaded; the final upload made of it is checked and catalogued.
        let finished = if matches!(record.protocol, Protocol::Tus { concat: Concat::Partial, .. }) {
            self.state
                .update(&record.id, &mut |r| {
                    r.mark_finished();
                    true
                })
                .await
        } else {
            self.state.finish(&record.id, &FileRecord::of(&object, record.owner.clone())).await
        };
        let finished = finished.map_err(|e| e.to_problem())?.ok_or_else(|| not_found(record.id.as_str()))?;
        self.hooks.notify_finish(crate::hooks::FinishedUpload { record: finished, object: object.clone() });
        Ok(object)
    }

    /// A progress sender for an upload, keyed by its id (the SSE endpoint follows it), taken over
    /// by each request that appends to it.
    pub(crate) fn progress(&self, record: &UploadRecord, offset: u64) -> Option<ProgressReporter> {
        let id = ProgressId::parse(record.id.as_str()).ok()?;
        let tx = self.hub.take_over(&id)?;
        self.hub.set_owner(&id, record.owner.clone());
        let reporter = ProgressReporter {
            hub: self.hub.clone(),
            id,
            tx,
            total: record.length,
            started: Instant::now(),
            last: Instant::now(),
        };
        reporter.send(offset, ProgressState::Receiving, None);
        Some(reporter)
    }
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

fn from_hex(s: &str) -> Option<Vec<u8>> {
    (s.len() % 2 == 0).then_some(())?;
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Publishes an upload's absolute offset to the progress hub, throttled.
pub(crate) struct ProgressReporter {
    hub: ProgressHub,
    id: ProgressId,
    tx: watch::Sender<Progress>,
    total: Option<u64>,
    started: Instant,
    last: Instant,
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        self.hub.release(&self.id);
    }
}

impl ProgressReporter {
    fn tick(&mut self, offset: u64) {
        if self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            self.send(offset, ProgressState::Receiving, None);
        }
    }

    pub(crate) fn send(&self, offset: u64, state: ProgressState, code: Option<&'static str>) {
        let total = if state == ProgressState::Done { Some(offset) } else { self.total };
        self.tx.send_replace(Progress { received: offset, total, state, code, elapsed: self.started.elapsed() });
    }
}

// Past OFFLOAD_AFTER bytes in one request, hashing moves to a thread of its own (as in the hash
// layer), so that a large append hashes beside the write instead of between writes.
use crate::hash::OFFLOAD_AFTER;

/// The hashers of an append, fed by its [`Append`] stream; read them back once the store is done
/// with the stream.
pub(crate) struct HashTap(Arc<Mutex<TapState>>);

struct TapState {
    inline: Option<Vec<Hasher>>,
    offloaded: Option<oneshot::Receiver<Vec<Hasher>>>,
    fed: u64,
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

/// Why an append ended early: another request asked for the upload while this one was stalled.
#[derive(Debug)]
pub(crate) struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a newer request took over this upload")
    }
}

impl std::error::Error for Interrupted {}

pub(crate) fn interrupted_problem() -> Problem {
    Problem::new(StatusCode::LOCKED, "upload_interrupted", "a newer request for this upload took over while this one stalled")
}

/// Settings of one append.
pub(crate) struct Append {
    /// Bytes the upload may still take (`None`: no declared length); more is `413`.
    pub(crate) room: Option<u64>,
    /// The upload's declared length, for the error message.
    pub(crate) length: Option<u64>,
    /// The offset the append starts at (for progress).
    pub(crate) offset: u64,
    pub(crate) hashers: Option<Vec<Hasher>>,
    pub(crate) progress: Option<ProgressReporter>,
}

/// Ends `body` early (with [`Interrupted`]) when a newer request has asked for the upload and no
/// byte came for `stale_after`: a client that lost its connection and retried gets its upload
/// back without waiting for the old request to time out. Applied to a request's body before
/// anything reads it (the sniffing window included).
pub(crate) fn until_taken_over(body: ByteStream<'static>, lock: &UploadLock, stale_after: Duration) -> ByteStream<'static> {
    struct St {
        body: ByteStream<'static>,
        /// Resolves when a newer request asks; `None` once it has.
        asked: Option<futures_util::future::BoxFuture<'static, ()>>,
        last: tokio::time::Instant,
        stale_after: Duration,
        done: bool,
    }
    let asked = Box::pin(crate::state::wait_until_asked(lock.asked_handle())) as futures_util::future::BoxFuture<'static, ()>;
    let st = St { body, asked: Some(asked), last: tokio::time::Instant::now(), stale_after, done: false };
    futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let item = loop {
            let waiting = st.asked.is_some();
            tokio::select! {
                biased;
                item = st.body.next() => break item,
                _ = async { st.asked.as_mut().expect("asked while waiting").await }, if waiting => st.asked = None,
                _ = tokio::time::sleep_until(st.last + st.stale_after), if !waiting => {
                    st.done = true;
                    return Some((Err(Box::new(Interrupted) as BoxError), st));
                }
            }
        };
        st.last = tokio::time::Instant::now();
        let item = item?;
        st.done = item.is_err();
        Some((item, st))
    })
    .boxed()
}

impl Append {
    /// Wraps `body`: bounded to the room left, hashed, progress reported.
    pub(crate) fn wrap<'a>(self, body: ByteStream<'a>) -> (ByteStream<'a>, HashTap, Arc<Mutex<Option<ProgressReporter>>>) {
        let tap = Arc::new(Mutex::new(TapState { inline: None, offloaded: None, fed: 0 }));
        let mut sender = None;
        if let Some(hashers) = self.hashers {
            let big = self.room.is_none_or(|r| r > OFFLOAD_AFTER);
            if big {
                let (tx, done) = crate::hash::hashing_thread(hashers);
                tap.lock().expect("tap lock poisoned").offloaded = Some(done);
                sender = Some(tx);
            } else {
                tap.lock().expect("tap lock poisoned").inline = Some(hashers);
            }
        }
        let progress = Arc::new(Mutex::new(self.progress));
        struct St<'a> {
            body: ByteStream<'a>,
            room: Option<u64>,
            length: Option<u64>,
            seen: u64,
            offset: u64,
            sender: Option<mpsc::Sender<Bytes>>,
            tap: Arc<Mutex<TapState>>,
            progress: Arc<Mutex<Option<ProgressReporter>>>,
            done: bool,
        }
        let st = St {
            body,
            room: self.room,
            length: self.length,
            seen: 0,
            offset: self.offset,
            sender,
            tap: tap.clone(),
            progress: progress.clone(),
            done: false,
        };
        let stream = futures_util::stream::unfold(st, |mut st| async move {
            if st.done {
                return None;
            }
            let chunk = match st.body.next().await? {
                Ok(chunk) => chunk,
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            };
            if let Some(room) = st.room.filter(|&room| st.seen + chunk.len() as u64 > room) {
                st.done = true;
                let length = st.length.unwrap_or(room);
                let problem = Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "length_exceeded",
                    format!("the upload was declared to be {length} bytes long"),
                );
                return Some((Err(Box::new(BodyRejection(problem)) as BoxError), st));
            }
            st.seen += chunk.len() as u64;
            match &st.sender {
                Some(tx) => {
                    if tx.send(chunk.clone()).await.is_err() {
                        st.done = true;
                        return Some((Err("the hashing thread ended".into()), st));
                    }
                    st.tap.lock().expect("tap lock poisoned").fed += chunk.len() as u64;
                }
                None => {
                    let mut tap = st.tap.lock().expect("tap lock poisoned");
                    if let Some(hashers) = &mut tap.inline {
                        hashers.iter_mut().for_each(|h| h.update(&chunk));
                    }
                    tap.fed += chunk.len() as u64;
                }
            }
            if let Some(p) = st.progress.lock().expect("progress lock poisoned").as_mut() {
                p.tick(st.offset + st.seen);
            }
            Some((Ok(chunk), st))
        });
        (stream.boxed(), HashTap(tap), progress)
    }
}

/// Builds one file from stored files, in order, without holding more than a chunk in memory,
/// computing `algorithms` over the whole. The parts are left as they are.
pub(crate) async fn assemble(
    store: &dyn Store,
    parts: &[UploadId],
    upload: NewUpload,
    algorithms: &[HashAlgorithm],
) -> Result<StoredObject, StoreError> {
    let info = store.create(upload).await?;
    let result = async {
        let mut hashers: Vec<Hasher> = algorithms.iter().map(|a| a.hasher()).collect();
        let mut offset = 0;
        for part in parts {
            let read = store.read(part, None).await?;
            let hashing = read.body.map_err(|e| Box::new(e) as BoxError).inspect_ok(|chunk| {
                hashers.iter_mut().for_each(|h| h.update(chunk));
            });
            offset = store.write(&info.id, offset, hashing.boxed()).await?;
        }
        store.finish(&info.id, digests(hashers), None).await
    }
    .await;
    if result.is_err() {
        let _ = store.abort(&info.id).await;
    }
    result
}

/// The first `window` bytes of the file that stored files make in this order (each given with its
/// size), read from as many of them as that takes.
pub(crate) async fn first_bytes(store: &dyn Store, parts: &[(UploadId, u64)], window: usize) -> Result<Vec<u8>, Problem> {
    let mut head = Vec::with_capacity(window);
    for (id, size) in parts {
        let want = (window - head.len()) as u64;
        if want == 0 {
            break;
        }
        let mut read = store.read(id, Some(0..want.min(*size))).await.map_err(|e| e.to_problem())?;
        while let Some(bytes) = read.body.next().await {
            head.extend_from_slice(&bytes.map_err(|e| StoreError::from(e).to_problem())?);
        }
    }
    Ok(head)
}
