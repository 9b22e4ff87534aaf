//! Upload state: what a resumable upload is (its length, metadata, expiry, the hash computed so
//! far, which chunks arrived) kept apart from its bytes, so that it survives a restart and, with a
//! shared backend, moves between instances.
//!
//! Two separate axes, as in tusd: a [`StateStore`] keeps [`UploadRecord`]s and the catalog of
//! finished files ([`FileRecord`]s), and a [`Locker`] makes sure one request at a time writes to
//! an upload.
//!
//! The catalog is what downloads, deletes and authorisation read: a file's owner stays with it
//! for as long as the file exists, long after the record of the upload that made it has expired.
//! A catalog row is the commit point of a file: storage that no row names is an orphan, which
//! the [sweeper](sweep::Sweeper) removes. Any state store combines with any
//! locker and any [`Store`](crate::storage::Store).
//!
//! | state store | feature | notes |
//! |---|---|---|
//! | [`RedbState`] | `redb` (default) | embedded, crash-safe, one process |
//! | [`MemoryState`] | always | tests and docs; lost on restart |
//!
//! | locker | notes |
//! |---|---|
//! | [`MemoryLocker`] | one process; a new request asks a stale holder to let go |
//!
//! The trait is shaped for a shared implementation: [`StateStore::update`] is a read-modify-write
//! that a SQL backend runs in a transaction (`SELECT … FOR UPDATE`), [`StateStore::expired`]
//! pages through records a sweeper may take (`FOR UPDATE SKIP LOCKED`), and a lock is a lease
//! that can be asked to let go.

mod lock;
mod memory;
#[cfg(feature = "redb")]
mod redb;
pub mod sweep;

pub(crate) use lock::wait_until_asked;
pub use lock::{LockError, Locker, MemoryLocker, UploadLock};
pub use memory::MemoryState;
#[cfg(feature = "redb")]
pub use redb::RedbState;

use crate::{
    error::{BoxError, Problem},
    id::UploadId,
    storage::{Digests, FileMeta, ObjectKey, ResumableState, UploadedPart},
};
use async_trait::async_trait;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

/// Which protocol created an upload, with what only that protocol needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Protocol {
    /// A tus 1.0 upload (or one of the IETF draft, which shares the endpoint).
    Tus {
        /// The `Upload-Metadata` header as the client sent it, echoed back on `HEAD`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<String>,
        /// Concatenation role.
        #[serde(default, skip_serializing_if = "Concat::is_none")]
        concat: Concat,
    },
    /// A chunked upload: chunk `n` is an object of its own
    /// ([`ObjectKey::of_chunk`](crate::storage::ObjectKey::of_chunk)), assembled on completion;
    /// or, when `parts` is set, part `n` of the store's multipart upload
    /// ([`MultipartStore`](crate::storage::MultipartStore), its state in
    /// [`UploadRecord::storage`]), which completion joins without copying.
    Chunked {
        /// The size of every chunk but the last.
        chunk_size: u64,
        /// The chunks received whole.
        #[serde(default)]
        chunks: BTreeSet<u64>,
        /// For an upload of parts, the part each received chunk became, by chunk number
        /// (recorded in the same update as the chunk); `None` for an upload of chunk objects.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parts: Option<BTreeMap<u64, UploadedPart>>,
    },
}

/// The tus concatenation role of an upload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concat {
    /// An ordinary upload.
    #[default]
    None,
    /// A partial upload, meant to be concatenated into a final one.
    Partial,
    /// A final upload made of these partial uploads, in order.
    Final(Vec<UploadId>),
}

impl Concat {
    /// Whether this is an ordinary upload.
    pub fn is_none(&self) -> bool {
        matches!(self, Concat::None)
    }
}

/// The hash computed over an upload's first `offset` bytes, saved so that the next request (in
/// any process) continues it instead of reading the bytes again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashCheckpoint {
    /// How many bytes the states cover.
    pub offset: u64,
    /// Saved hasher states (hex), by algorithm name (`sha-256`, ...).
    pub states: BTreeMap<String, String>,
}

/// Everything known about an upload in progress, apart from its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The id, shared with the store's upload.
    pub id: UploadId,
    /// The protocol and what it keeps.
    pub protocol: Protocol,
    /// The final length; `None` while deferred.
    pub length: Option<u64>,
    /// Metadata (file name, type, tenant, ...).
    pub meta: FileMeta,
    /// The tenant or owner the upload belongs to, checked on every request by the authorisation
    /// hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The prefix the upload's object (and a chunked upload's chunks) are kept under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<crate::storage::KeyPrefix>,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// When an unfinished upload expires (seconds since the Unix epoch); `None` never.
    pub expires_at: Option<u64>,
    /// The whole-upload hash so far; `None` once it could not be continued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<HashCheckpoint>,
    /// The content type the upload's first bytes showed (see [`sniff`](crate::sniff)), which the
    /// file gets when it is finished; `meta.content_type` keeps what the client declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_type: Option<String>,
    /// Set while a request whose bytes must be verified (tus `Upload-Checksum`) writes from this
    /// offset: if a crash cuts it short, the bytes after it were never verified and are dropped
    /// before the upload goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified_from: Option<u64>,
    /// Set once the upload became a file: the record stays (for `HEAD`, and a retried
    /// completion) until it expires.
    #[serde(default)]
    pub finished: bool,
    /// What the store keeps to continue the upload ([`ResumableState`]), opaque here.
    #[serde(default, skip_serializing_if = "ResumableState::is_empty")]
    pub storage: ResumableState,
    /// The upload's first bytes (hex), kept while they are fewer than the content policy looks
    /// at, so that each request within that window is checked together with the bytes before
    /// it, on any store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
}

impl UploadRecord {
    /// A new record.
    pub fn new(id: UploadId, protocol: Protocol, length: Option<u64>, meta: FileMeta) -> Self {
        Self {
            id,
            protocol,
            length,
            meta,
            owner: None,
            key_prefix: None,
            created_at: crate::storage::now_secs(),
            expires_at: None,
            hash: None,
            detected_type: None,
            unverified_from: None,
            finished: false,
            storage: ResumableState::default(),
            head: None,
        }
    }

    /// Where the upload's file is (or will be) kept: `{key_prefix}/{id}`.
    pub fn key(&self) -> ObjectKey {
        ObjectKey::of(self.key_prefix.as_ref(), &self.id)
    }

    /// Whether the upload has expired at `now` (seconds since the Unix epoch).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// What [`StateStore::finish`] does to the record.
    pub(crate) fn mark_finished(&mut self) {
        self.finished = true;
        self.hash = None;
    }
}

/// Whether a catalogued file can be read yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FileStatus {
    /// Stored whole and verified: it can be downloaded.
    #[default]
    Complete,
    /// Announced but not confirmed yet (a direct upload to object storage).
    Pending,
}

/// A file in the catalog: what downloads, deletes and authorisation read. See the
/// [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file's id, in its download URL. A resumable upload's file has the upload's id.
    pub id: UploadId,
    /// Where its bytes are kept in the store.
    pub key: ObjectKey,
    /// The tenant or owner, checked by the authorisation hook on every request that names the
    /// file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Name, type and the client's metadata.
    pub meta: FileMeta,
    /// Its length in bytes.
    pub size: u64,
    /// Digests computed while its bytes streamed in.
    #[serde(default)]
    pub digests: Digests,
    /// Whether it can be read yet.
    #[serde(default)]
    pub status: FileStatus,
    /// Seconds since the Unix epoch when its upload began.
    pub created_at: u64,
}

/// Errors of a state store or locker backend.
#[derive(Debug)]
#[non_exhaustive]
pub enum StateError {
    /// A record with this id exists already.
    AlreadyExists(UploadId),
    /// The backend failed.
    Backend(BoxError),
}

impl StateError {
    /// A backend failure from any error.
    pub fn backend(err: impl Into<BoxError>) -> Self {
        StateError::Backend(err.into())
    }

    /// The problem a client should see; details are logged, not shown.
    pub fn to_problem(&self) -> Problem {
        tracing::error!(error = %self, "upload state backend failed");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "state_error", "the upload state backend failed")
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::AlreadyExists(id) => write!(f, "an upload record {id} exists already"),
            StateError::Backend(e) => write!(f, "upload state backend failed: {e}"),
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Backend(e) => Some(e.as_ref()),
            StateError::AlreadyExists(_) => None,
        }
    }
}

/// A change to a record, run by [`StateStore::update`] inside whatever makes it atomic. It may be
/// called more than once (a backend may retry a conflicting transaction), so it must only change
/// the record. It returns `false` to leave the record unchanged.
pub type Change<'a> = &'a mut (dyn FnMut(&mut UploadRecord) -> bool + Send);

/// Keeps upload records and the catalog of files. Every operation is atomic; see the
/// [module docs](self).
///
/// Contract (checked by [`conformance::run`]):
/// - `insert` refuses an id that exists;
/// - `update` applies a change atomically with respect to other updates of the same record and
///   returns the record as it is afterwards (`None` when there is no such record);
/// - `expired` returns up to `limit` records whose `expires_at` is at or before `now`, oldest
///   first;
/// - `insert_file` refuses an id that exists; `finish` adds the file and marks its upload's
///   record finished in one atomic step, or does nothing when there is no such record;
/// - `files` pages through the catalog in id order.
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug + 'static {
    /// Adds a new record.
    async fn insert(&self, record: &UploadRecord) -> Result<(), StateError>;

    /// A record.
    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, StateError>;

    /// Changes a record atomically; see [`Change`].
    async fn update(&self, id: &UploadId, change: Change<'_>) -> Result<Option<UploadRecord>, StateError>;

    /// Removes a record, returning it.
    async fn remove(&self, id: &UploadId) -> Result<Option<UploadRecord>, StateError>;

    /// Records expired at `now`, at most `limit`, oldest expiry first.
    async fn expired(&self, now: u64, limit: usize) -> Result<Vec<UploadRecord>, StateError>;

    /// Adds a file to the catalog (a one-shot upload's commit point).
    async fn insert_file(&self, file: &FileRecord) -> Result<(), StateError>;

    /// A file of the catalog.
    async fn get_file(&self, id: &UploadId) -> Result<Option<FileRecord>, StateError>;

    /// Removes a file from the catalog, returning it (a delete's commit point: its bytes go
    /// after).
    async fn remove_file(&self, id: &UploadId) -> Result<Option<FileRecord>, StateError>;

    /// Up to `limit` files with ids after `after` (from the first when `None`), in id order: for
    /// sweeps that compare the catalog with storage.
    async fn files(&self, after: Option<&UploadId>, limit: usize) -> Result<Vec<FileRecord>, StateError>;

    /// Adds `file` to the catalog and marks the record `upload` finished (its hash state
    /// dropped), atomically: a resumable upload's commit point. Returns the finished record, or
    /// `None`, changing nothing, when there is no such record. A file with the same id replaces
    /// the catalogued one (finishing again after a crash is harmless).
    async fn finish(&self, upload: &UploadId, file: &FileRecord) -> Result<Option<UploadRecord>, StateError>;
}

pub mod conformance;
