//! Pluggable storage: a small required trait that every backend implements.
//!
//! The trait is shaped for resumable protocols (tus, chunked uploads) as well as one-shot ones:
//! an upload is *created*, receives bytes *written at an offset* (possibly over many requests
//! and processes), and is then *finished* — only then does it become an object that can be read.
//! An upload that fails is *aborted* and leaves nothing behind.
//!
//! | backend | feature | notes |
//! |---|---|---|
//! | [`LocalDisk`] | `local-disk` (default) | temp file, atomic rename on finish, fsync policy |
//! | [`InMemory`] | always | for tests and docs |
//!
//! Every backend must pass the [`conformance`] suite.
//!
//! Convenience operations built from the required ones live in [`StoreExt`], implemented for
//! every store, so implementors cannot get them subtly wrong.
//!
//! # Examples
//! ```
//! use intake::storage::{InMemory, NewUpload, Store, StoreExt};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = InMemory::new();
//! let object = store
//!     .put(NewUpload::default(), futures_util::stream::iter([Ok(bytes::Bytes::from("hello"))]))
//!     .await
//!     .unwrap();
//! assert_eq!(object.size, 5);
//! # }
//! ```

pub mod conformance;
#[cfg(feature = "local-disk")]
mod local;
mod memory;

#[cfg(feature = "local-disk")]
pub use local::{FsyncPolicy, LocalDisk};
pub use memory::InMemory;

use crate::{
    error::{BoxError, Problem},
    id::UploadId,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream::BoxStream};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    fmt,
    ops::Range,
    time::{SystemTime, UNIX_EPOCH},
};

/// Bytes on their way into a store.
pub type ByteStream<'a> = BoxStream<'a, Result<Bytes, BoxError>>;

/// What the client said about a file, kept with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// The sanitised client file name (metadata only, never a path).
    pub name: Option<String>,
    /// The media type, as verified by sniffing when the sniff layer ran.
    pub content_type: Option<String>,
    /// Free-form metadata (form field name, tus `Upload-Metadata`, tenant, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// A request to start an upload.
#[derive(Clone, Debug, Default)]
pub struct NewUpload {
    /// The final length, when known in advance; writes past it fail.
    pub length: Option<u64>,
    /// Metadata kept with the upload and the object.
    pub meta: FileMeta,
    /// Where the object is kept: under this prefix (`{prefix}/{id}`), e.g. a tenant's.
    pub key_prefix: Option<KeyPrefix>,
}

/// A prefix of storage keys, such as a tenant's: one to eight `/`-separated segments of 1 to 64
/// characters from `[A-Za-z0-9._-]`, none of them `.` or `..`. A valid prefix is always a safe
/// relative path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Validates a prefix (leading and trailing `/` are ignored).
    pub fn new(prefix: &str) -> Option<Self> {
        let trimmed = prefix.trim_matches('/');
        let segments: Vec<_> = trimmed.split('/').collect();
        let ok = (1..=8).contains(&segments.len())
            && segments.iter().all(|s| {
                (1..=64).contains(&s.len())
                    && *s != "."
                    && *s != ".."
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            });
        ok.then(|| Self(trimmed.to_owned()))
    }

    /// The prefix, without leading or trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of an object under this prefix (`None`: the id alone).
    pub fn key(prefix: Option<&KeyPrefix>, id: &UploadId) -> String {
        match prefix {
            Some(p) => format!("{}/{id}", p.0),
            None => id.to_string(),
        }
    }
}

impl TryFrom<String> for KeyPrefix {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::new(&s).ok_or_else(|| format!("not a key prefix: {s:?}"))
    }
}

impl From<KeyPrefix> for String {
    fn from(p: KeyPrefix) -> String {
        p.0
    }
}

/// Digests of an object's bytes, keyed by algorithm name (RFC 9530 names: `sha-256`, `md5`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests(pub BTreeMap<String, String>);

impl Digests {
    /// Records a digest, given as raw bytes (kept as lowercase hex).
    pub fn insert(&mut self, algorithm: &str, digest: &[u8]) {
        self.0.insert(algorithm.to_owned(), crate::id::to_hex(digest));
    }

    /// The hex digest for an algorithm.
    pub fn get(&self, algorithm: &str) -> Option<&str> {
        self.0.get(algorithm).map(String::as_str)
    }
}

/// The state of an upload that is not finished yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadInfo {
    /// The upload's id, which the object keeps.
    pub id: UploadId,
    /// How many bytes have been durably received.
    pub offset: u64,
    /// The final length, when known.
    pub length: Option<u64>,
    /// Metadata.
    pub meta: FileMeta,
    /// Seconds since the Unix epoch when the upload was created.
    pub created_at: u64,
    /// The prefix its object will be kept under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<KeyPrefix>,
}

impl UploadInfo {
    /// A new upload with a fresh random id, at offset 0.
    pub fn new(upload: NewUpload) -> Self {
        Self {
            id: UploadId::random(),
            offset: 0,
            length: upload.length,
            meta: upload.meta,
            created_at: now_secs(),
            key_prefix: upload.key_prefix,
        }
    }

    /// The object this upload becomes, once all of its declared length is in; `meta` replaces
    /// the metadata given at creation ([`Store::finish`]).
    pub fn finished(self, digests: Digests, meta: Option<FileMeta>) -> Result<StoredObject, StoreError> {
        if let Some(length) = self.length.filter(|&l| l != self.offset) {
            return Err(StoreError::Incomplete { offset: self.offset, length });
        }
        Ok(StoredObject {
            id: self.id,
            size: self.offset,
            meta: meta.unwrap_or(self.meta),
            digests,
            created_at: self.created_at,
            key_prefix: self.key_prefix,
        })
    }
}

/// A finished, readable object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    /// The id (also the storage key).
    pub id: UploadId,
    /// Its length in bytes.
    pub size: u64,
    /// Metadata.
    pub meta: FileMeta,
    /// Digests computed while the bytes streamed in.
    pub digests: Digests,
    /// Seconds since the Unix epoch when the upload was created.
    pub created_at: u64,
    /// The prefix it is kept under: its storage key is `{prefix}/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<KeyPrefix>,
}

impl StoredObject {
    /// Its storage key: `{prefix}/{id}`, or the id alone.
    pub fn key(&self) -> String {
        KeyPrefix::key(self.key_prefix.as_ref(), &self.id)
    }
}

/// A byte range of an object being read.
pub struct ObjectRead {
    /// The object.
    pub object: StoredObject,
    /// The bytes the stream yields (the whole object when no range was asked for).
    pub range: Range<u64>,
    /// The bytes.
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

impl fmt::Debug for ObjectRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectRead").field("object", &self.object).field("range", &self.range).finish()
    }
}

/// Errors of a store. Each maps to an HTTP status and a stable code through
/// [`StoreError::to_problem`].
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// No such upload or object.
    NotFound(UploadId),
    /// A write did not start at the upload's current offset.
    OffsetMismatch {
        /// The upload's offset.
        expected: u64,
        /// The offset the write asked for.
        given: u64,
    },
    /// A write would pass the declared length.
    LengthExceeded {
        /// The declared length.
        length: u64,
    },
    /// `finish` was called before all declared bytes arrived.
    Incomplete {
        /// Bytes received.
        offset: u64,
        /// Bytes declared.
        length: u64,
    },
    /// Another write to the same upload is in progress.
    Locked(UploadId),
    /// A range outside the object.
    InvalidRange {
        /// The object's size.
        size: u64,
    },
    /// The store does not offer this optional operation.
    NotSupported(&'static str),
    /// The body being written failed (client error, rejection by a layer); bytes before the
    /// failure are kept and [`Store::info`] reports the offset reached.
    Body(BoxError),
    /// The backend failed.
    Backend(BoxError),
}

impl StoreError {
    /// A backend failure from any error.
    pub fn backend(err: impl Into<BoxError>) -> Self {
        StoreError::Backend(err.into())
    }

    /// The problem a client should see. Backend failures are logged, not shown.
    pub fn to_problem(&self) -> Problem {
        match self {
            StoreError::NotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, "upload_not_found", format!("no upload or file with id {id}"))
            }
            StoreError::OffsetMismatch { expected, given } => {
                Problem::new(StatusCode::CONFLICT, "offset_mismatch", format!("the upload is at offset {expected}, not {given}"))
                    .with("offset", *expected)
            }
            StoreError::LengthExceeded { length } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "length_exceeded",
                format!("the upload was declared to be {length} bytes long"),
            ),
            StoreError::Incomplete { offset, length } => {
                Problem::new(StatusCode::CONFLICT, "upload_incomplete", format!("{offset} of {length} bytes received"))
            }
            StoreError::Locked(id) => {
                Problem::new(StatusCode::LOCKED, "upload_locked", format!("upload {id} is being written by another request"))
            }
            StoreError::InvalidRange { size } => Problem::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid_range",
                format!("the requested range is outside the {size}-byte file"),
            )
            .with("size", *size),
            StoreError::NotSupported(what) => {
                Problem::new(StatusCode::NOT_IMPLEMENTED, "not_supported", format!("the storage backend does not support {what}"))
            }
            StoreError::Body(err) => Problem::from_body_error(err.as_ref()),
            StoreError::Backend(err) => {
                tracing::error!(error = %err, "storage backend failed");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", "the storage backend failed")
            }
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Body(e) => write!(f, "body failed: {e}"),
            StoreError::Backend(e) => write!(f, "storage backend failed: {e}"),
            other => f.write_str(other.to_problem().detail()),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Body(e) | StoreError::Backend(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(err: std::io::Error) -> Self {
        StoreError::Backend(Box::new(err))
    }
}

/// The required storage operations. See the [module docs](self).
///
/// Contract (checked by [`conformance::run`]):
/// - ids are chosen by the store (`create`), random and unguessable;
/// - `write` appends at exactly the current offset, never past the declared length, keeps the
///   bytes received before a failing body and reports the failure as [`StoreError::Body`];
///   concurrent writes to one upload fail with [`StoreError::Locked`];
/// - an upload is invisible to `head`/`read` until `finish` succeeds, and `finish` is atomic;
/// - `abort` removes every trace of an unfinished upload.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Starts an upload.
    async fn create(&self, upload: NewUpload) -> Result<UploadInfo, StoreError>;

    /// Appends `data` at `offset`, which must be the upload's current offset. Returns the new
    /// offset.
    async fn write(&self, id: &UploadId, offset: u64, data: ByteStream<'_>) -> Result<u64, StoreError>;

    /// The state of an unfinished upload.
    async fn info(&self, id: &UploadId) -> Result<UploadInfo, StoreError>;

    /// Makes the upload a readable object, atomically. With a declared length, all of it must
    /// have arrived. `meta` replaces the metadata given at creation (a resumable upload learns its
    /// content type from its first bytes, after creation); `None` keeps it.
    async fn finish(&self, id: &UploadId, digests: Digests, meta: Option<FileMeta>) -> Result<StoredObject, StoreError>;

    /// Discards an unfinished upload and its bytes.
    async fn abort(&self, id: &UploadId) -> Result<(), StoreError>;

    /// A finished object's description.
    async fn head(&self, id: &UploadId) -> Result<StoredObject, StoreError>;

    /// A finished object's bytes, all or `range` (which must lie inside the object).
    async fn read(&self, id: &UploadId, range: Option<Range<u64>>) -> Result<ObjectRead, StoreError>;

    /// Deletes a finished object.
    async fn delete(&self, id: &UploadId) -> Result<(), StoreError>;

    /// Optional: the bytes an unfinished upload has received so far (all, or `range`, which must
    /// lie within them). Resumable protocols use it to continue a hash after a crash. The default
    /// answers [`StoreError::NotSupported`].
    async fn read_partial(
        &self,
        id: &UploadId,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes, std::io::Error>>, StoreError> {
        let _ = (id, range);
        Err(StoreError::NotSupported("reading unfinished uploads"))
    }

    /// Optional: cuts an unfinished upload back to `offset` bytes (no more than it has), to undo
    /// a write that failed verification (tus `checksum`). The default answers
    /// [`StoreError::NotSupported`].
    async fn truncate(&self, id: &UploadId, offset: u64) -> Result<(), StoreError> {
        let _ = (id, offset);
        Err(StoreError::NotSupported("truncating uploads"))
    }

    /// Optional: every unfinished upload, so that a sweeper can find those whose state was lost
    /// (a crash between creating an upload and recording it). The default answers
    /// [`StoreError::NotSupported`].
    async fn list_unfinished(&self) -> Result<Vec<UploadInfo>, StoreError> {
        Err(StoreError::NotSupported("listing unfinished uploads"))
    }

    /// Which optional operations this store offers, so protocols advertise only what works.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Stores a whole object from one stream, for one-shot uploads that never resume. `digests`
    /// is called once `data` has ended. On failure, or if the future is dropped, nothing is left
    /// behind.
    ///
    /// The default creates an upload, writes and finishes it (aborting on failure); backends
    /// override it when they can do less work for a body that arrives whole (`LocalDisk` skips
    /// the resumable-upload record and writes small files in one step).
    async fn put_object(
        &self,
        upload: NewUpload,
        data: ByteStream<'_>,
        digests: DigestsAtEnd,
    ) -> Result<StoredObject, StoreError> {
        let info = self.create(upload).await?;
        let written = self.write(&info.id, 0, data).await;
        let finished = match written {
            Ok(_) => self.finish(&info.id, digests(), None).await,
            Err(e) => Err(e),
        };
        if finished.is_err() {
            if let Err(e) = self.abort(&info.id).await {
                tracing::warn!(id = %info.id, error = %e, "could not abort a failed upload");
            }
        }
        finished
    }
}

/// The optional operations of a [`Store`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`Store::read_partial`] works.
    pub read_partial: bool,
    /// [`Store::truncate`] works.
    pub truncate: bool,
    /// [`Store::list_unfinished`] works.
    pub list_unfinished: bool,
}

impl Capabilities {
    /// Every optional operation.
    pub const ALL: Capabilities = Capabilities { read_partial: true, truncate: true, list_unfinished: true };
}

/// Digests computed while a body streamed, asked for once it has ended.
pub type DigestsAtEnd = Box<dyn FnOnce() -> Digests + Send>;

/// Operations built from [`Store`]'s required ones, for every store.
#[async_trait]
pub trait StoreExt: Store {
    /// Stores all of `data` as one object with the `digests` computed by the caller once the
    /// data has ended ([`Store::put_object`]), or leaves nothing behind if anything fails.
    async fn put_with<S>(
        &self,
        upload: NewUpload,
        data: S,
        digests: impl FnOnce() -> Digests + Send + 'static,
    ) -> Result<StoredObject, StoreError>
    where
        S: Stream<Item = Result<Bytes, BoxError>> + Send,
    {
        self.put_object(upload, data.boxed(), Box::new(digests)).await
    }

    /// [`put_with`](StoreExt::put_with) without digests.
    async fn put<S>(&self, upload: NewUpload, data: S) -> Result<StoredObject, StoreError>
    where
        S: Stream<Item = Result<Bytes, BoxError>> + Send,
    {
        self.put_with(upload, data, Digests::default).await
    }
}

impl<T: Store + ?Sized> StoreExt for T {}

/// Counts a one-shot body against its declared length: no chunk may pass it, and the body must
/// reach it exactly by its end.
pub(crate) struct LengthCheck {
    length: Option<u64>,
    seen: u64,
}

impl LengthCheck {
    pub(crate) fn new(length: Option<u64>) -> Self {
        Self { length, seen: 0 }
    }

    /// Accepts `chunk`, or refuses it for passing the declared length.
    pub(crate) fn admit(&mut self, chunk: &Bytes) -> Result<(), StoreError> {
        check_room(chunk, self.seen, self.length, self.length)?;
        self.seen += chunk.len() as u64;
        Ok(())
    }

    /// The body's size, once it has ended at its declared length.
    pub(crate) fn end(&self) -> Result<u64, StoreError> {
        match self.length.filter(|&l| l != self.seen) {
            Some(length) => Err(StoreError::Incomplete { offset: self.seen, length }),
            None => Ok(self.seen),
        }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Checks a requested range against an object's size.
pub(crate) fn resolve_range(range: Option<Range<u64>>, size: u64) -> Result<Range<u64>, StoreError> {
    match range {
        None => Ok(0..size),
        Some(r) if r.start <= r.end && r.end <= size => Ok(r),
        Some(_) => Err(StoreError::InvalidRange { size }),
    }
}

/// Holds the per-upload write lock of a single-process store until dropped.
pub(crate) struct WriteGuard<'a> {
    locks: &'a std::sync::Mutex<std::collections::HashSet<UploadId>>,
    id: UploadId,
}

impl<'a> WriteGuard<'a> {
    pub(crate) fn acquire(
        locks: &'a std::sync::Mutex<std::collections::HashSet<UploadId>>,
        id: &UploadId,
    ) -> Result<Self, StoreError> {
        let mut held = locks.lock().expect("lock poisoned");
        if !held.insert(id.clone()) {
            return Err(StoreError::Locked(id.clone()));
        }
        Ok(Self { locks, id: id.clone() })
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut held) = self.locks.lock() {
            held.remove(&self.id);
        }
    }
}

/// Takes from `data` at most `room` more bytes (the rest of a declared length), failing with
/// [`StoreError::LengthExceeded`] when the stream holds more; `None` means no declared length.
pub(crate) fn check_room(chunk: &Bytes, written: u64, room: Option<u64>, length: Option<u64>) -> Result<(), StoreError> {
    match (room, length) {
        (Some(room), Some(length)) if written + chunk.len() as u64 > room => Err(StoreError::LengthExceeded { length }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod key_prefix_tests {
    use super::KeyPrefix;

    #[test]
    fn prefixes_are_safe_relative_paths() {
        assert_eq!(KeyPrefix::new("/tenants/acme-1/").unwrap().as_str(), "tenants/acme-1");
        for bad in ["", "/", "a//b", "../x", "a/./b", "a/..", "a b", "a\\b", "ä", &"x".repeat(65), "1/2/3/4/5/6/7/8/9"] {
            assert_eq!(KeyPrefix::new(bad), None, "{bad:?}");
        }
        assert_eq!(serde_json::from_str::<KeyPrefix>("\"../etc\"").ok(), None, "deserialising validates too");
    }
}
