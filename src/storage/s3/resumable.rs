//! Resumable uploads on S3: a multipart upload plus a tail object (see the
//! [module docs](super#resumable-uploads)).

use super::{S3, put::Buffer, store_error};
use crate::storage::{
    Appended, ByteStream, ObjectKey, ObjectMeta, PendingUpload, ResumableState, ResumableStore, Store, StoreError, now_secs,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, stream::BoxStream};
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    list::{PaginatedListOptions, PaginatedListStore},
    multipart::{MultipartStore, PartId},
    path::Path,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::task::JoinSet;

/// S3 numbers parts 1 to 10 000; the last is kept for the tail.
const MAX_PARTS: usize = 9_999;

/// A finished part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Part {
    etag: String,
    size: u64,
}

/// The first `len` bytes of the object `{key}.tail-{n}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Tail {
    n: u64,
    len: u64,
}

/// The upload before the last append: its first `parts` parts, and its tail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Before {
    parts: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<Tail>,
}

/// What [`ResumableState`] holds for an S3 upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    upload_id: String,
    #[serde(default)]
    parts: Vec<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<Tail>,
    #[serde(default)]
    tails: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<Before>,
}

impl State {
    fn new(upload_id: String) -> Self {
        Self { upload_id, parts: Vec::new(), tail: None, tails: 0, before: None }
    }

    fn parse(state: &ResumableState, key: &ObjectKey) -> Result<Self, StoreError> {
        serde_json::from_value(state.0.clone())
            .map_err(|e| StoreError::backend(format!("the recorded S3 state of upload {key} is not readable: {e}")))
    }

    fn save(&self) -> ResumableState {
        ResumableState(serde_json::to_value(self).expect("an S3 state serialises"))
    }

    fn in_parts(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }

    /// How many bytes the upload holds.
    fn held(&self) -> u64 {
        self.in_parts() + self.tail.as_ref().map_or(0, |t| t.len)
    }

    /// The upload cut back to `offset` bytes, which must not be more than it holds: the upload
    /// before its last append if that is where `offset` is, else shorter tail, or fewer parts when
    /// `offset` falls between two. A finished part cannot be cut (it cannot be read back).
    fn cut(mut self, offset: u64) -> Result<Self, StoreError> {
        let held = self.held();
        if offset == held {
            return Ok(self);
        }
        if offset > held {
            return Err(StoreError::InvalidRange { size: held });
        }
        if let Some(before) = self.before.take() {
            let parts: u64 = self.parts.iter().take(before.parts).map(|p| p.size).sum();
            if before.parts <= self.parts.len() && parts + before.tail.as_ref().map_or(0, |t| t.len) == offset {
                self.parts.truncate(before.parts);
                self.tail = before.tail;
                return Ok(self);
            }
        }
        let in_parts = self.in_parts();
        if offset >= in_parts {
            self.tail = self.tail.map(|t| Tail { len: offset - in_parts, ..t }).filter(|t| t.len > 0);
            return Ok(self);
        }
        let mut sum = 0;
        for (i, part) in self.parts.iter().enumerate() {
            if sum == offset {
                self.parts.truncate(i);
                self.tail = None;
                return Ok(self);
            }
            sum += part.size;
        }
        Err(StoreError::NotSupported("cutting an S3 upload back into one of its finished parts"))
    }
}

/// Sends parts of one append, numbered on from `first`, up to `concurrency` at once.
struct Parts {
    s3: S3,
    path: Path,
    upload_id: String,
    first: usize,
    sent: usize,
    running: JoinSet<(usize, u64, object_store::Result<PartId>)>,
    done: BTreeMap<usize, Part>,
    failure: Option<StoreError>,
}

impl Parts {
    /// Sends `part` once a place is free; `false` once a part has failed (nothing more is sent).
    async fn send(&mut self, part: PutPayload) -> bool {
        while self.running.len() >= self.s3.inner.concurrency && self.failure.is_none() {
            self.settle_one().await;
        }
        if self.failure.is_some() {
            return false;
        }
        if self.first + self.sent >= MAX_PARTS {
            self.failure = Some(StoreError::LengthExceeded { length: (self.s3.inner.part_size * MAX_PARTS) as u64 });
            return false;
        }
        let (store, path, id, idx) =
            (self.s3.inner.store.clone(), self.path.clone(), self.upload_id.clone(), self.first + self.sent);
        let size = part.content_length() as u64;
        self.running.spawn(async move { (idx, size, store.put_part(&path, &id, idx, part).await) });
        self.sent += 1;
        true
    }

    async fn settle_one(&mut self) {
        match self.running.join_next().await {
            Some(Ok((idx, size, Ok(part)))) => {
                self.done.insert(idx, Part { etag: part.content_id, size });
            }
            Some(Ok((_, _, Err(e)))) => {
                self.failure.get_or_insert(store_error(e, self.path.as_ref()));
            }
            Some(Err(e)) => {
                self.failure.get_or_insert(StoreError::backend(e));
            }
            None => {}
        }
    }

    /// Waits for every part sent; returns those in, in order from `first` without a gap, and
    /// the first failure.
    async fn finish(mut self) -> (Vec<Part>, bool, Option<StoreError>) {
        while !self.running.is_empty() {
            self.settle_one().await;
        }
        let mut parts = Vec::new();
        for idx in self.first.. {
            match self.done.remove(&idx) {
                Some(part) => parts.push(part),
                None => break,
            }
        }
        let all = parts.len() == self.sent;
        (parts, all, self.failure)
    }
}

impl S3 {
    fn tail_key(key: &ObjectKey, n: u64) -> Result<ObjectKey, StoreError> {
        key.tail(n).ok_or(StoreError::NotSupported("resumable uploads to keys this long on S3"))
    }

    /// The bytes of a tail.
    async fn read_tail(&self, key: &ObjectKey, tail: &Tail) -> Result<Bytes, StoreError> {
        if tail.len == 0 {
            return Ok(Bytes::new());
        }
        let tail_key = Self::tail_key(key, tail.n)?;
        let options = GetOptions { range: Some(GetRange::Bounded(0..tail.len)), ..GetOptions::default() };
        let err = |e| match store_error(e, tail_key.as_str()) {
            // The tail a recorded state names is gone: the upload cannot go on.
            StoreError::NotFound(what) => StoreError::backend(format!("the tail {what} of an S3 upload is missing")),
            other => other,
        };
        let got = self.inner.store.get_opts(&Self::path(&tail_key), options).await.map_err(err)?;
        got.bytes().await.map_err(err)
    }

    /// Deletes a tail, logging a failure (a tail left behind goes with its upload).
    async fn drop_tail(&self, key: &ObjectKey, n: u64) {
        if let Ok(tail_key) = Self::tail_key(key, n) {
            if let Err(e) = Store::delete(self, &tail_key).await {
                tracing::warn!(key = %tail_key, error = %e, "could not delete an S3 upload's old tail");
            }
        }
    }

    /// Deletes every tail object of the upload of `key`.
    async fn drop_tails(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let prefix = format!("{key}.tail-");
        let mut options = PaginatedListOptions::default();
        loop {
            let page =
                self.inner.store.list_paginated(Some(&prefix), options.clone()).await.map_err(|e| store_error(e, &prefix))?;
            for object in &page.result.objects {
                match self.inner.store.delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(store_error(e, object.location.as_ref())),
                }
            }
            match page.page_token {
                Some(token) => options.page_token = Some(token),
                None => return Ok(()),
            }
        }
    }

    fn gone(&self, key: &ObjectKey) -> StoreError {
        StoreError::NotFound(key.to_string())
    }
}

#[async_trait]
impl ResumableStore for S3 {
    async fn begin(&self, key: &ObjectKey) -> Result<ResumableState, StoreError> {
        let upload_id = self.inner.store.create_multipart(&Self::path(key)).await.map_err(|e| store_error(e, key.as_str()))?;
        Ok(State::new(upload_id).save())
    }

    async fn append(
        &self,
        key: &ObjectKey,
        state: &ResumableState,
        offset: u64,
        mut data: ByteStream<'_>,
    ) -> Result<Appended, StoreError> {
        let state = State::parse(state, key)?.cut(offset)?;
        let mut start = state.clone();
        // The state given is the recorded one: the tail before its append is no longer needed.
        if let Some(old) = start.before.take().and_then(|b| b.tail) {
            if start.tail.as_ref().is_none_or(|t| t.n != old.n) {
                self.drop_tail(key, old.n).await;
            }
        }
        // Nothing to do for a body without bytes.
        let first = loop {
            match data.next().await {
                None => return Ok(Appended { offset: start.held(), state: start.save(), failure: None }),
                Some(Err(e)) => {
                    return Ok(Appended { offset: start.held(), state: start.save(), failure: Some(StoreError::Body(e)) });
                }
                Some(Ok(chunk)) if chunk.is_empty() => {}
                Some(Ok(chunk)) => break chunk,
            }
        };
        let mut buffer = Buffer::new(self.inner.part_size, self.inner.concurrency + 1);
        if let Some(tail) = &start.tail {
            buffer.push(&self.read_tail(key, tail).await?);
        }
        let mut parts = Parts {
            s3: self.clone(),
            path: Self::path(key),
            upload_id: start.upload_id.clone(),
            first: start.parts.len(),
            sent: 0,
            running: JoinSet::new(),
            done: BTreeMap::new(),
            failure: None,
        };
        let mut body_failure = None;
        let mut chunk = first;
        'body: loop {
            // Each part filled is sent before the rest of the chunk starts the next one.
            let mut rest = &chunk[..];
            loop {
                while let Some(part) = buffer.next_part() {
                    if !parts.send(part).await {
                        break 'body;
                    }
                }
                if rest.is_empty() {
                    break;
                }
                rest = &rest[buffer.fill(rest)..];
            }
            match data.next().await {
                None => break,
                Some(Ok(next)) => chunk = next,
                Some(Err(e)) => {
                    body_failure = Some(StoreError::Body(e));
                    break;
                }
            }
        }
        let (new_parts, all_in, store_failure) = parts.finish().await;
        let mut next = State {
            upload_id: start.upload_id.clone(),
            parts: start.parts.iter().cloned().chain(new_parts.iter().cloned()).collect(),
            // The old tail went into the first new part; until one is in, it still holds.
            tail: if new_parts.is_empty() { start.tail.clone() } else { None },
            tails: start.tails,
            before: Some(Before { parts: start.parts.len(), tail: start.tail.clone() }),
        };
        let mut failure = store_failure.or(body_failure);
        // What is left becomes the new tail: under a new name, so that the tail the recorded
        // state names stays until the engine records this one.
        if all_in && !buffer.is_empty() && !matches!(failure, Some(ref e) if !matches!(e, StoreError::Body(_))) {
            let n = start.tails + 1;
            let tail_key = Self::tail_key(key, n)?;
            let len = buffer.len() as u64;
            match self.inner.store.put(&Self::path(&tail_key), buffer.take_all()).await {
                Ok(_) => {
                    next.tail = Some(Tail { n, len });
                    next.tails = n;
                }
                Err(e) => failure = Some(store_error(e, tail_key.as_str())),
            }
        }
        if next.before.as_ref().is_some_and(|b| b.parts == next.parts.len() && b.tail == next.tail) {
            next.before = None;
        }
        Ok(Appended { offset: next.held(), state: next.save(), failure })
    }

    async fn offset(&self, key: &ObjectKey, state: &ResumableState) -> Result<u64, StoreError> {
        let state = State::parse(state, key)?;
        match self.inner.api.upload_exists(key, &state.upload_id).await? {
            true => Ok(state.held()),
            false => Err(self.gone(key)),
        }
    }

    async fn truncate(&self, key: &ObjectKey, state: &ResumableState, offset: u64) -> Result<ResumableState, StoreError> {
        // A tail this drops stays until the upload completes or is aborted: `state` may be the
        // recorded one, which must stay whole until the engine records the cut.
        Ok(State::parse(state, key)?.cut(offset)?.save())
    }

    async fn complete(&self, key: &ObjectKey, state: &ResumableState) -> Result<ObjectMeta, StoreError> {
        let state = State::parse(state, key)?;
        let path = Self::path(key);
        // Already completed (a retry after a crash) or aborted: the object tells which.
        if !self.inner.api.upload_exists(key, &state.upload_id).await? {
            return self.head(key).await;
        }
        let mut parts: Vec<PartId> = state.parts.iter().map(|p| PartId { content_id: p.etag.clone() }).collect();
        if let Some(tail) = state.tail.as_ref().filter(|t| t.len > 0) {
            let bytes = self.read_tail(key, tail).await?;
            let part = self
                .inner
                .store
                .put_part(&path, &state.upload_id, parts.len(), bytes.into())
                .await
                .map_err(|e| store_error(e, key.as_str()))?;
            parts.push(part);
        }
        match self.inner.store.complete_multipart(&path, &state.upload_id, parts).await {
            Ok(_) => {}
            // Completed by a retry of this very request.
            Err(object_store::Error::NotFound { .. }) => return self.head(key).await,
            Err(e) => return Err(store_error(e, key.as_str())),
        }
        if let Err(e) = self.drop_tails(key).await {
            tracing::warn!(key = %key, error = %e, "could not delete a completed S3 upload's tails; the sweeper will");
        }
        Ok(ObjectMeta { key: key.clone(), size: state.held(), last_modified: now_secs() })
    }

    async fn abort(&self, key: &ObjectKey, state: &ResumableState) -> Result<(), StoreError> {
        let state = State::parse(state, key)?;
        match self.inner.store.abort_multipart(&Self::path(key), &state.upload_id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(e, key.as_str())),
        }
        self.drop_tails(key).await
    }

    fn list_pending(&self) -> BoxStream<'_, Result<PendingUpload, StoreError>> {
        futures_util::stream::once(self.inner.api.pending())
            .flat_map(|listed| {
                let items: Vec<Result<PendingUpload, StoreError>> = match listed {
                    Err(e) => vec![Err(e)],
                    Ok(pending) => pending
                        .into_iter()
                        .filter_map(|p| {
                            // Uploads of keys the server would not make are somebody else's.
                            let key = ObjectKey::new(&p.key)?;
                            Some(Ok(PendingUpload { key, last_modified: p.initiated, state: State::new(p.upload_id).save() }))
                        })
                        .collect(),
                };
                futures_util::stream::iter(items)
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::{Before, Part, State, Tail};
    use crate::storage::StoreError;

    fn state(parts: &[u64], tail: Option<(u64, u64)>, before: Option<(usize, Option<(u64, u64)>)>) -> State {
        let tail_of = |t: Option<(u64, u64)>| t.map(|(n, len)| Tail { n, len });
        State {
            upload_id: "u".into(),
            parts: parts.iter().map(|&size| Part { etag: format!("e{size}"), size }).collect(),
            tail: tail_of(tail),
            tails: 9,
            before: before.map(|(parts, tail)| Before { parts, tail: tail_of(tail) }),
        }
    }

    /// Parts left and the tail `(n, len)` left after a cut; `None` when it is refused.
    type Cut = Option<(usize, Option<(u64, u64)>)>;

    #[test]
    fn cutting_an_upload_back() {
        let five = 5 << 20;
        // (state, offset, parts left, tail left) — `None` when the cut is refused.
        let cases: &[(State, u64, Cut)] = &[
            (state(&[five], Some((3, 10)), None), five + 10, Some((1, Some((3, 10))))),
            (state(&[five], Some((3, 10)), None), five + 4, Some((1, Some((3, 4))))),
            (state(&[five], Some((3, 10)), None), five, Some((1, None))),
            (state(&[five, five], None, None), five, Some((1, None))),
            (state(&[five, five], None, None), 0, Some((0, None))),
            (state(&[five, five], None, None), 7, None),
            // The append that made parts 2 and 3 out of tail 2 is undone: tail 2 is back.
            (state(&[five, five, five], Some((4, 1)), Some((1, Some((2, 6))))), five + 6, Some((1, Some((2, 6))))),
        ];
        for (i, (st, offset, expected)) in cases.iter().enumerate() {
            let cut = st.clone().cut(*offset);
            match expected {
                None => assert!(matches!(cut, Err(StoreError::NotSupported(_))), "case {i}: {cut:?}"),
                Some((parts, tail)) => {
                    let cut = cut.unwrap_or_else(|e| panic!("case {i}: {e}"));
                    assert_eq!(cut.parts.len(), *parts, "case {i}");
                    assert_eq!(cut.tail.as_ref().map(|t| (t.n, t.len)), *tail, "case {i}");
                    assert_eq!(cut.held(), *offset, "case {i}");
                    assert_eq!(cut.tails, 9, "tail numbers are never reused (case {i})");
                }
            }
        }
        assert!(matches!(state(&[], Some((1, 3)), None).cut(4), Err(StoreError::InvalidRange { size: 3 })));
    }

    #[test]
    fn the_state_is_plain_json() {
        let st = state(&[5 << 20], Some((2, 7)), Some((0, Some((1, 3)))));
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"upload_id": "u", "parts": [{"etag": "e5242880", "size": 5242880}],
                "tail": {"n": 2, "len": 7}, "tails": 9, "before": {"parts": 0, "tail": {"n": 1, "len": 3}}})
        );
        assert_eq!(serde_json::from_value::<State>(serde_json::json!({"upload_id": "x"})).unwrap(), State::new("x".into()));
    }
}
