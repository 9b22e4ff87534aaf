//! Appending a request's body to an upload: the one path every byte of tus and the IETF draft
//! takes into storage.

use super::{
    Checksum, Resumable,
    hashing::{CHECKPOINT_EVERY, HashTap, Hashes, TapState, checkpoint, digests},
    not_found,
    progress::ProgressReporter,
    resumable_of,
};
use crate::{
    body::{data_stream, stream_body},
    declared::DeclaredFile,
    error::{BodyRejection, BoxError, Problem},
    hash::OFFLOAD_AFTER,
    progress::ProgressState,
    sniff::SniffBody,
    state::{Concat, FileRecord, Protocol, UploadLock, UploadRecord},
    storage::{ByteStream, ResumableState, StoreError},
};
use axum::body::Body;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header, request::Parts};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::mpsc;

const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
const UPLOAD_CHECKSUM: &str = "upload-checksum";

/// How an append may change the upload besides adding bytes.
#[derive(Default)]
pub(crate) struct AppendOptions {
    /// tus `Upload-Checksum` of this request's bytes.
    pub(crate) checksum: Option<Checksum>,
    /// tus `Upload-Length` sent on a `PATCH` of a deferred-length upload.
    pub(crate) declare_length: Option<u64>,
    /// The draft's `Upload-Complete: ?1`: this request's bytes end the upload.
    pub(crate) complete: bool,
    /// The draft's rule: only `Upload-Complete: ?1` completes an upload, not reaching its length.
    pub(crate) explicit_completion: bool,
}

/// The state after an append.
pub(crate) struct Appended {
    pub(crate) record: UploadRecord,
    pub(crate) offset: u64,
    /// The file, when this append finished the upload.
    pub(crate) file: Option<FileRecord>,
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

fn mismatch(expected: u64, given: u64) -> Problem {
    Problem::new(StatusCode::CONFLICT, "offset_mismatch", format!("the upload is at offset {expected}, not {given}"))
        .with("offset", expected)
        .with_header(UPLOAD_OFFSET, HeaderValue::from(expected))
}

fn length_exceeded(length: u64) -> Problem {
    StoreError::LengthExceeded { length }.to_problem()
}

fn bad(code: &'static str, detail: impl Into<std::borrow::Cow<'static, str>>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, code, detail)
}

/// The upload's `length` and a completing request's `got` bytes disagree.
pub(crate) fn inconsistent_length(length: u64, got: u64) -> Problem {
    bad("inconsistent_length", format!("the upload's length is {length}, but {got} bytes make it complete"))
}

impl Resumable {
    /// Appends a request body to an upload at `given`, under the upload's lock: checks the
    /// offset, sniffs the first bytes of the upload, bounds the body to the declared length (or
    /// the size limit), carries the whole-upload hash on, verifies a checksum (undoing the write
    /// on a mismatch), records the new state and finishes the upload once all of it is in.
    pub(crate) async fn append(
        &self,
        parts: &Parts,
        body: Body,
        record: UploadRecord,
        given: u64,
        options: AppendOptions,
    ) -> Result<Appended, Problem> {
        if matches!(record.protocol, Protocol::Tus { concat: Concat::Final(_), .. }) {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "final_upload",
                "a final upload is assembled by the server, not patched",
            ));
        }
        let store = resumable_of(self.store.as_ref())?;
        let lock = self.lock(&record.id).await?;
        // The record as it is now that nobody else writes.
        let record =
            self.state.get(&record.id).await.map_err(|e| e.to_problem())?.ok_or_else(|| not_found(record.id.as_str()))?;
        let (offset, recovered) = self.offset(&record).await?;
        let mut record = recovered.unwrap_or(record);
        if record.finished {
            let sends_more = parts.headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
            if given != offset {
                return Err(mismatch(offset, given));
            }
            if sends_more {
                return Err(length_exceeded(offset));
            }
            return Ok(Appended { record, offset, file: None });
        }
        let key = record.key();
        // A checksummed request that a crash cut short left bytes nobody verified: they are not
        // counted (see `offset`), and go now.
        if let Some(verified) = record.unverified_from {
            let held = store.offset(&key, &record.storage).await.map_err(|e| e.to_problem())?;
            let mut state = record.storage.clone();
            if held > verified {
                state = store.truncate(&key, &record.storage, verified).await.map_err(|e| e.to_problem())?;
            }
            record = self.set_unverified(&record, None, Some(state)).await?;
        }
        if given != offset {
            return Err(mismatch(offset, given));
        }
        let max = self.config.max_raw_body;
        if let Some(declared) = options.declare_length {
            match record.length {
                Some(length) if length != declared => {
                    return Err(bad("length_mismatch", format!("the upload's length is {length}, not {declared}")));
                }
                Some(_) => {}
                None => {
                    if declared > max {
                        return Err(crate::limit::too_large_problem(max, Some(declared)));
                    }
                    if declared < offset {
                        return Err(bad("invalid_length", format!("{offset} bytes are in already, more than {declared}")));
                    }
                    record = self
                        .state
                        .update(&record.id, &mut |rec| {
                            rec.length = Some(declared);
                            true
                        })
                        .await
                        .map_err(|e| e.to_problem())?
                        .ok_or_else(|| not_found(record.id.as_str()))?;
                }
            }
        }
        let room = record.length.unwrap_or(max).saturating_sub(offset);
        // A request that says up front it carries more than fits is refused before a byte is
        // appended (one without a Content-Length is cut off at the limit as it streams).
        let declared =
            parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > room) {
            return Err(length_exceeded(record.length.unwrap_or(max)).with_header(UPLOAD_OFFSET, HeaderValue::from(offset)));
        }
        let trailers = Arc::new(Mutex::new(None));
        let mut data = until_taken_over(with_trailers(body, trailers.clone()), &lock, self.config.stale_after);
        // The upload's first bytes decide its content, before any of this request's is stored:
        // every request that writes within the sniffing window decides again on the stored bytes
        // and its own, so a tiny first request cannot slip a file past the policy. Partial
        // uploads of a concatenation are checked when the final upload is assembled.
        let mut detected = None;
        let window = self.config.policy.peek() as u64;
        let partial = matches!(record.protocol, Protocol::Tus { concat: Concat::Partial, .. });
        let head = if offset < window { Some(self.head(&record, offset).await?) } else { None };
        let seen = Arc::new(Mutex::new(Vec::new()));
        if let Some(stored) = &head {
            if !partial {
                let declared = DeclaredFile { name: record.meta.name.clone(), content_type: record.meta.content_type.clone() };
                let before = futures_util::stream::iter([Ok::<_, BoxError>(Bytes::copy_from_slice(stored))]);
                let (mut sniffing, _) =
                    SniffBody::checking(stream_body(before.chain(data)), Arc::new(self.config.policy.clone()), declared);
                let sniffed = std::future::poll_fn(|cx| sniffing.poll_decide(cx)).await.map_err(|e| body_problem(e.as_ref()))?;
                detected = sniffed.map(|s| s.content_type);
                data = skip(data_stream(sniffing), offset);
            }
            // This request's first bytes, to keep with the record while the window is open.
            let (seen, mut want) = (seen.clone(), (window - offset) as usize);
            data = data
                .inspect_ok(move |chunk| {
                    if want > 0 {
                        let take = want.min(chunk.len());
                        seen.lock().expect("head lock poisoned").extend_from_slice(&chunk[..take]);
                        want -= take;
                    }
                })
                .boxed();
        }
        let summer = options.checksum.as_ref().map(|c| Arc::new(Mutex::new(Some(c.start()))));
        if let Some(summer) = &summer {
            let summer = summer.clone();
            data = data
                .inspect_ok(move |chunk| {
                    if let Some(s) = summer.lock().expect("checksum lock poisoned").as_mut() {
                        s.update(chunk);
                    }
                })
                .boxed();
        }
        let hashes = self.resume_hash(&record, offset).await;
        let progress = self.progress(&record, offset);
        let mut append = Append { room: Some(room), declared, length: record.length.or(Some(max)), offset, hashes, progress };
        // Hashers still busy with the request before are waited for here only by a request that
        // hashes inline; one that offloads hands them to its own thread.
        if !append.offloads() {
            if let Some(hashes) = append.hashes.take() {
                append.hashes = hashes.wait().await.map(Hashes::Ready);
            }
        }
        let (stream, tap, progress) = append.wrap(data);
        // Bytes that must be verified are marked as such until they are, so that a crash in
        // between cannot leave them in the upload.
        let announced_trailer = parts
            .headers
            .get_all(header::TRAILER)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|n| n.trim().eq_ignore_ascii_case(UPLOAD_CHECKSUM))));
        let verifying = options.checksum.is_some() || announced_trailer;
        if verifying {
            record = self.set_unverified(&record, Some(offset), None).await?;
        }
        let (state, new_offset, failure) = match store.append(&key, &record.storage, offset, stream).await {
            Ok(appended) => (appended.state, appended.offset, appended.failure),
            Err(e) => {
                let held = store.offset(&key, &record.storage).await.unwrap_or(offset);
                (record.storage.clone(), held, Some(e))
            }
        };
        let hashed = tap.take();
        let progress = progress.lock().expect("progress lock poisoned").take();
        let undo = |problem: Problem| async {
            let state = store.truncate(&key, &state, offset).await.map_err(|e| e.to_problem())?;
            self.set_unverified(&record, None, Some(state)).await?;
            if let Some(p) = &progress {
                p.send(offset, ProgressState::Receiving, None);
            }
            Err::<Appended, _>(problem.with_header(UPLOAD_OFFSET, HeaderValue::from(offset)))
        };
        // A request that had to be verified and did not arrive whole appends nothing.
        if let (true, Some(e)) = (verifying, &failure) {
            return undo(append_error(e)).await;
        }
        // A checksum that does not match undoes this request's bytes. It comes as a header (and
        // was computed while the bytes streamed) or as a trailer (checked by reading the bytes
        // back).
        if failure.is_none() {
            let verdict = match (&options.checksum, &summer) {
                (Some(checksum), Some(summer)) => {
                    let got = summer.lock().expect("checksum lock poisoned").take().map(|s| s.finalize());
                    Some(Ok(got.as_deref() == Some(checksum.expected.as_slice())))
                }
                _ => {
                    let trailer = trailers.lock().expect("trailer lock poisoned").take();
                    match trailer.as_ref().and_then(|t: &HeaderMap| t.get(UPLOAD_CHECKSUM)) {
                        Some(value) => Some(self.check_trailer(&record, &state, offset..new_offset, value).await),
                        None => None,
                    }
                }
            };
            if let Some(verdict) = verdict.filter(|v| !matches!(v, Ok(true))) {
                return undo(verdict.err().unwrap_or_else(|| {
                    Problem::new(
                        StatusCode::from_u16(460).expect("460 is a valid status"),
                        "checksum_mismatch",
                        "the request's bytes do not match its Upload-Checksum; nothing was appended",
                    )
                }))
                .await;
            }
        }
        // The hashers may still be hashing this request's last chunks: the answer does not wait
        // for them unless a checkpoint is due or the upload completes. Hashers that missed bytes
        // (the store kept fewer than they were fed) are dropped; the record's checkpoint stays,
        // and the next request reads back from it.
        let hashes = match hashed {
            Some((hashes, fed)) if fed == new_offset - offset => Some(hashes),
            _ => None,
        };
        // Hashers that the next request continues from memory need no checkpoint written per
        // request: the record gets one when it falls `CHECKPOINT_EVERY` behind (or is written
        // anyway while the hashers are at hand), so that a resumed upload whose hashers are gone
        // reads back no more than that. A store that cannot read back gets one every time.
        let carries = hashes.is_some() && store.read_back().is_some();
        let hash_due = hashes.is_some()
            && (!carries || record.hash.as_ref().is_none_or(|h| new_offset.saturating_sub(h.offset) >= CHECKPOINT_EVERY));
        let hashes = match hashes {
            Some(hashes) if hash_due => hashes.wait().await.map(Hashes::Ready),
            hashes => hashes,
        };
        let saved = match &hashes {
            Some(Hashes::Ready(hashers)) => checkpoint(hashers, new_offset),
            _ => None,
        };
        let complete_length = if options.complete && failure.is_none() { Some(new_offset) } else { None };
        if let (Some(length), Some(complete)) = (record.length, complete_length) {
            if length != complete {
                return Err(inconsistent_length(length, complete));
            }
        }
        // The first bytes are kept only while the window is open (`Some(None)` clears them once
        // it is full): no later request reads them, and every request would otherwise carry
        // twice the window's size in hex through each read and write of the record.
        let head = head.map(|mut head| {
            (new_offset < window).then(|| {
                head.extend_from_slice(&seen.lock().expect("head lock poisoned"));
                head.truncate(new_offset as usize);
                crate::id::to_hex(&head)
            })
        });
        let expires_at = self.later_expiry(record.expires_at);
        let mut change = |rec: &mut UploadRecord| {
            let mut changed = set(&mut rec.storage, &state);
            changed |= set(&mut rec.unverified_from, &None);
            if let Some(at) = &expires_at {
                changed |= set(&mut rec.expires_at, at);
            }
            if let Some(head) = &head {
                changed |= set(&mut rec.head, head);
            }
            if detected.is_some() {
                changed |= set(&mut rec.detected_type, &detected);
            }
            if rec.length.is_none() {
                changed |= set(&mut rec.length, &complete_length);
            }
            if saved.is_some() && (changed || hash_due) {
                changed |= set(&mut rec.hash, &saved);
            }
            changed
        };
        // Written only when something changed, which the record read under the lock (nobody
        // else appends) tells without asking the state store: an append with no hash to carry
        // on a store that keeps no state of its own costs no transaction at all.
        if change(&mut record.clone()) {
            record = self
                .state
                .update(&record.id, &mut change)
                .await
                .map_err(|e| e.to_problem())?
                .ok_or_else(|| not_found(record.id.as_str()))?;
        }
        let completes = record.length == Some(new_offset) && (options.complete || !options.explicit_completion);
        let mut hashes = hashes;
        match hashes.take_if(|_| carries && !completes) {
            Some(carried) => self.carried.put(&record.id, new_offset, carried),
            None => self.carried.forget(&record.id),
        }
        if let Some(e) = failure {
            if let Some(p) = &progress {
                p.send(new_offset, ProgressState::Receiving, None);
            }
            return Err(append_error(&e).with_header(UPLOAD_OFFSET, HeaderValue::from(new_offset)));
        }
        let mut file = None;
        if completes {
            let (finished, made) = self.finish(&record, digests(Hashes::finished(hashes).await)).await?;
            record = finished;
            file = Some(made);
        }
        if let Some(p) = &progress {
            let state = if file.is_some() { ProgressState::Done } else { ProgressState::Receiving };
            p.send(new_offset, state, None);
        }
        drop(lock);
        Ok(Appended { record, offset: new_offset, file })
    }

    /// The first `offset` bytes of an upload whose offset is inside the sniffing window: those
    /// the record keeps, and any a crash kept from being recorded, read back.
    async fn head(&self, record: &UploadRecord, offset: u64) -> Result<Vec<u8>, Problem> {
        let mut head = record.head.as_deref().and_then(crate::id::from_hex).unwrap_or_default();
        head.truncate(offset as usize);
        if (head.len() as u64) < offset {
            let back = resumable_of(self.store.as_ref())?
                .read_back()
                .ok_or_else(|| StoreError::NotSupported("reading back an upload").to_problem())?;
            let mut missing =
                back.read(&record.key(), &record.storage, head.len() as u64..offset).await.map_err(|e| e.to_problem())?;
            while let Some(chunk) = missing.next().await {
                head.extend_from_slice(&chunk.map_err(|e| StoreError::from(e).to_problem())?);
            }
        }
        Ok(head)
    }

    /// Marks (or clears) where an upload's unverified bytes start, recording the store's state
    /// when it changed.
    async fn set_unverified(
        &self,
        record: &UploadRecord,
        from: Option<u64>,
        state: Option<ResumableState>,
    ) -> Result<UploadRecord, Problem> {
        self.state
            .update(&record.id, &mut |rec| {
                rec.unverified_from = from;
                if let Some(state) = &state {
                    rec.storage = state.clone();
                }
                true
            })
            .await
            .map_err(|e| e.to_problem())?
            .ok_or_else(|| not_found(record.id.as_str()))
    }

    /// Checks an `Upload-Checksum` trailer by reading back the bytes it covers: `Ok(matches)`,
    /// or the problem with the trailer itself.
    async fn check_trailer(
        &self,
        record: &UploadRecord,
        state: &ResumableState,
        range: std::ops::Range<u64>,
        value: &HeaderValue,
    ) -> Result<bool, Problem> {
        let text = value.to_str().map_err(|_| bad("invalid_checksum", "the Upload-Checksum trailer is not ASCII"))?;
        let checksum = Checksum::parse(text.trim())?;
        let back = resumable_of(self.store.as_ref())?
            .read_back()
            .ok_or_else(|| StoreError::NotSupported("checksum trailers").to_problem())?;
        let mut summer = checksum.start();
        let mut bytes = back.read(&record.key(), state, range).await.map_err(|e| e.to_problem())?;
        while let Some(chunk) = bytes.next().await {
            summer.update(&chunk.map_err(|e| StoreError::from(e).to_problem())?);
        }
        Ok(summer.finalize() == checksum.expected)
    }
}

/// Sets `field` to `value`; whether that changed it.
fn set<T: PartialEq + Clone>(field: &mut T, value: &T) -> bool {
    let changed = field != value;
    if changed {
        field.clone_from(value);
    }
    changed
}

/// What a client sees when its append failed part-way (the bytes before the failure stay).
fn append_error(e: &StoreError) -> Problem {
    match e {
        StoreError::Body(err) => body_problem(err.as_ref()),
        other => other.to_problem(),
    }
}

/// What a client sees when its request body failed: taken over by a newer request, or whatever
/// the body's error says.
pub(crate) fn body_problem(err: &(dyn std::error::Error + Send + Sync + 'static)) -> Problem {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if e.is::<Interrupted>() {
            return interrupted_problem();
        }
        current = e.source();
    }
    Problem::from_body_error(err)
}

/// `data` without its first `n` bytes.
fn skip(data: ByteStream<'static>, n: u64) -> ByteStream<'static> {
    let mut left = n;
    data.try_filter_map(move |mut chunk| {
        let take = left.min(chunk.len() as u64) as usize;
        left -= take as u64;
        let rest = chunk.split_off(take);
        std::future::ready(Ok((!rest.is_empty()).then_some(rest)))
    })
    .boxed()
}

/// The data of a body as a stream; its trailers (tus `checksum-trailer`) land in `trailers`.
fn with_trailers(body: Body, trailers: Arc<Mutex<Option<HeaderMap>>>) -> ByteStream<'static> {
    use http_body_util::BodyExt;
    futures_util::stream::unfold(Some(body), move |body| {
        let trailers = trailers.clone();
        async move {
            let mut body = body?;
            loop {
                match body.frame().await? {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => return Some((Ok(data), Some(body))),
                        Err(frame) => {
                            if let Ok(t) = frame.into_trailers() {
                                *trailers.lock().expect("trailer lock poisoned") = Some(t);
                            }
                        }
                    },
                    Err(e) => return Some((Err(e.into()), None)),
                }
            }
        }
    })
    .boxed()
}

/// Ends `body` early (with [`Interrupted`]) when a newer request has asked for the upload and no
/// byte came for `stale_after`: a client that lost its connection and retried gets its upload
/// back without waiting for the old request to time out. Applied to a request's body before
/// anything reads it (the sniffing window included).
fn until_taken_over(body: ByteStream<'static>, lock: &UploadLock, stale_after: Duration) -> ByteStream<'static> {
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

/// How many bytes an append may carry and still hash inline: 128 KiB, lower than the hash
/// layer's [`OFFLOAD_AFTER`] (which tests lower further). An append knows its size up front.
/// An offloaded hash goes on past the answer (see [`CarriedHashes`](super::hashing::CarriedHashes)),
/// so it overlaps the client's next request: measured with a tus client on tmpfs, 256 KiB
/// `PATCH`es went 8–23 % faster hashed on a thread than inline, while 128 KiB ones were up to 9 %
/// slower with a kept connection (a thread hop and a wake-up per chunk cost more than they save).
const OFFLOAD_APPEND_AFTER: u64 = if OFFLOAD_AFTER < 1 << 17 { OFFLOAD_AFTER } else { 1 << 17 };

/// Settings of one append.
struct Append {
    /// Bytes the upload may still take (`None`: no declared length); more is `413`.
    room: Option<u64>,
    /// This request's `Content-Length`, when it sent one.
    declared: Option<u64>,
    /// The upload's declared length, for the error message.
    length: Option<u64>,
    /// The offset the append starts at (for progress).
    offset: u64,
    hashes: Option<Hashes>,
    progress: Option<ProgressReporter>,
}

impl Append {
    /// Whether this append hashes on a thread of its own: when it may carry more than
    /// [`OFFLOAD_APPEND_AFTER`] bytes (see [`Append::wrap`]).
    fn offloads(&self) -> bool {
        let most = match (self.room, self.declared) {
            (Some(room), Some(declared)) => Some(room.min(declared)),
            (room, declared) => room.or(declared),
        };
        most.is_none_or(|n| n > OFFLOAD_APPEND_AFTER)
    }

    /// Wraps `body`: bounded to the room left, hashed, progress reported. A request that may
    /// carry more than [`OFFLOAD_APPEND_AFTER`] bytes hashes on a thread of its own, so that it
    /// hashes beside receiving and writing instead of between them; a smaller one (by its
    /// `Content-Length`, or the room left) hashes inline, which costs it no thread and no
    /// wake-up per chunk.
    fn wrap<'a>(self, body: ByteStream<'a>) -> (ByteStream<'a>, HashTap, Arc<Mutex<Option<ProgressReporter>>>) {
        let tap = Arc::new(Mutex::new(TapState { hashes: None, fed: 0 }));
        let mut sender = None;
        let offloads = self.offloads();
        match self.hashes {
            Some(hashes) if offloads => {
                let (tx, done) = crate::hash::hashing_thread_from(move || hashes.wait_blocking());
                tap.lock().expect("tap lock poisoned").hashes = Some(Hashes::Hashing(done));
                sender = Some(tx);
            }
            Some(ready @ Hashes::Ready(_)) => tap.lock().expect("tap lock poisoned").hashes = Some(ready),
            Some(Hashes::Hashing(_)) => unreachable!("busy hashers are waited for before an inline append"),
            None => {}
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
                let problem = length_exceeded(st.length.unwrap_or(room));
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
                    if let Some(Hashes::Ready(hashers)) = &mut tap.hashes {
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
