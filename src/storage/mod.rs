//! Pluggable storage: key-addressed bytes, with a small required core and capabilities as traits
//! of their own (the shape of [object_store](https://docs.rs/object_store)).
//!
//! A [`Store`] keeps objects under keys the server chooses ([`ObjectKey`], never a client's
//! name): one-shot [`put`](Store::put) (visible only once complete; nothing is left when it fails
//! or is dropped), [`get`](Store::get) with a range, [`head`](Store::head),
//! [`delete`](Store::delete) and [`list`](Store::list). What only some backends can do is reached
//! through the store, so protocols advertise only what works:
//!
//! | capability | reached by | used for |
//! |---|---|---|
//! | [`ResumableStore`] | [`Store::resumable`] | tus and the IETF draft: an upload that grows over many requests, in any process |
//! | [`ReadBack`] | [`ResumableStore::read_back`] | reading an unfinished upload's bytes: a checksum trailer, catching a hash up after a crash |
//! | [`MultipartStore`] | [`Store::multipart`] | the chunked API: chunk `n` stored as part `n` of one upload, in any order, in parallel, in any process (no assembly copy) |
//! | [`Signer`] | [`Store::signer`] | downloads answered with a redirect to a presigned URL ([`Uploads::download_redirect`](crate::Uploads::download_redirect)) |
//!
//! A store keeps bytes and nothing else. It does not lock and does not police offsets: the
//! resumable engine does that once, under the upload's lock. What a file is (its name, type,
//! owner, digests) lives in the [catalog](crate::state::FileRecord) of the state store, whose row
//! is a file's commit point; storage that no row or record names is an orphan that the
//! [sweeper](crate::state::sweep::Sweeper) removes.
//!
//! | backend | feature | notes |
//! |---|---|---|
//! | [`LocalDisk`] | `local-disk` (default) | files under a root; puts and completions by atomic rename; fsync policy |
//! | [`InMemory`] | always | for tests and docs |
//! | [`S3`] | `s3` | S3 and compatible servers: streaming multipart puts, resumable uploads as multipart uploads plus a tail object, multipart uploads of parts, presigned `GET`s |
//!
//! Every backend must pass the [`conformance`] suite.
//!
//! # Examples
//! ```
//! use intake::storage::{InMemory, ObjectKey, PutOptions, Store};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = InMemory::new();
//! let key = ObjectKey::new("tenants/acme/hello.txt").unwrap();
//! let data = futures_util::stream::iter([Ok(bytes::Bytes::from("hello"))]);
//! let meta = store.put(&key, Box::pin(data), PutOptions::default()).await.unwrap();
//! assert_eq!(meta.size, 5);
//! # }
//! ```

pub mod conformance;
#[cfg(feature = "local-disk")]
mod local;
mod memory;
#[cfg(feature = "s3")]
pub mod s3;

#[cfg(feature = "local-disk")]
pub use local::{FsyncPolicy, LocalDisk};
pub use memory::InMemory;
#[cfg(feature = "s3")]
pub use s3::{S3, S3Builder};

use crate::{
    error::{BoxError, Problem},
    id::UploadId,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    fmt,
    ops::Range,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Bytes on their way into a store.
pub type ByteStream<'a> = BoxStream<'a, Result<Bytes, BoxError>>;

/// Bytes on their way out of a store.
pub type ReadStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// What the client said about a file, kept with it in the catalog.
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

fn valid_segment(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
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
        let ok = (1..=8).contains(&segments.len()) && segments.iter().all(|s| s.len() <= 64 && valid_segment(s));
        ok.then(|| Self(trimmed.to_owned()))
    }

    /// The prefix, without leading or trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
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

/// The key of an object: one to sixteen `/`-separated segments of 1 to 128 characters from
/// `[A-Za-z0-9._-]`, none of them `.` or `..`, at most 1024 bytes. The server chooses every key
/// (`{tenant prefix}/{id}`), so a valid key is always a safe relative path and a safe object
/// name, on disk and in S3.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates a key.
    pub fn new(key: &str) -> Option<Self> {
        let ok = key.len() <= 1024 && {
            let segments: Vec<_> = key.split('/').collect();
            segments.len() <= 16 && segments.iter().all(|s| valid_segment(s))
        };
        ok.then(|| Self(key.to_owned()))
    }

    /// The key of a file: `{prefix}/{id}`, or the id alone.
    pub fn of(prefix: Option<&KeyPrefix>, id: &UploadId) -> Self {
        Self::named(prefix, id.as_str())
    }

    /// The key of chunk `n` of a chunked upload: `{prefix}/{id}.{n}`.
    pub fn of_chunk(prefix: Option<&KeyPrefix>, id: &UploadId, n: u64) -> Self {
        Self::named(prefix, &format!("{id}.{n}"))
    }

    /// The key of tail `n` of the resumable upload that becomes this object: `{key}.tail-{n}`. A
    /// store that cannot append to an object (S3) keeps an upload's last bytes, too few for a
    /// part of their own, there. `None` when the key has no room left for the suffix.
    pub fn tail(&self, n: u64) -> Option<Self> {
        Self::new(&format!("{}.tail-{n}", self.0))
    }

    fn named(prefix: Option<&KeyPrefix>, name: &str) -> Self {
        match prefix {
            Some(p) => Self(format!("{}/{name}", p.0)),
            None => Self(name.to_owned()),
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// What the server made this key for, read from its last segment: a file or upload id
    /// (`None` beside it), or `Some(n)` for what lives only as long as its upload does: chunk `n`
    /// of a chunked upload (`{id}.{n}`) or tail `n` of a resumable one (`{id}.tail-{n}`, see
    /// [`tail`](Self::tail)). `None` for keys the server does not make.
    pub fn owner_id(&self) -> Option<(UploadId, Option<u64>)> {
        let name = self.name();
        let number = |n: &str| (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| n.parse().ok()).flatten();
        match name.split_once('.') {
            None => Some((UploadId::parse(name)?, None)),
            Some((id, rest)) => {
                let n = number(rest).or_else(|| number(rest.strip_prefix("tail-")?))?;
                Some((UploadId::parse(id)?, Some(n)))
            }
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::new(&s).ok_or_else(|| format!("not an object key: {s:?}"))
    }
}

impl From<ObjectKey> for String {
    fn from(k: ObjectKey) -> String {
        k.0
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

/// What a store knows of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Its key.
    pub key: ObjectKey,
    /// Its length in bytes.
    pub size: u64,
    /// When it was last written, in seconds since the Unix epoch.
    pub last_modified: u64,
}

/// How to store an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// The length the data must have: a chunk past it fails the put with
    /// [`StoreError::LengthExceeded`], an end before it with [`StoreError::Incomplete`].
    pub length: Option<u64>,
    /// The media type, for backends that keep one with the object (S3).
    pub content_type: Option<String>,
    /// The key is new, and nothing reads the object before the caller records it elsewhere
    /// (intake's uploads: the file's catalog row is the commit point). A store may then write
    /// the object in place instead of staging it and moving it there; [`LocalDisk`] does,
    /// which saves a rename per file. A put that fails or is dropped still leaves nothing
    /// behind, but a crash in the middle of one can leave part of the object under its key:
    /// the caller removes what it never recorded (intake's sweeper removes objects that no
    /// catalog row names, once they are old enough). The caller makes sure no object is under
    /// the key; `LocalDisk` refuses to write over one.
    pub fresh: bool,
}

impl PutOptions {
    /// Options with a declared length.
    pub fn with_length(length: Option<u64>) -> Self {
        Self { length, ..Self::default() }
    }

    /// These options for a key that is new and recorded elsewhere before anything reads it
    /// (see [`PutOptions::fresh`]).
    pub fn fresh(mut self) -> Self {
        self.fresh = true;
        self
    }
}

/// Bytes of an object being read.
pub struct GetResult {
    /// The object.
    pub meta: ObjectMeta,
    /// The bytes the stream yields (the whole object when no range was asked for).
    pub range: Range<u64>,
    /// The bytes.
    pub body: ReadStream,
}

impl fmt::Debug for GetResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResult").field("meta", &self.meta).field("range", &self.range).finish()
    }
}

/// Errors of a store. Each maps to an HTTP status and a stable code through
/// [`StoreError::to_problem`].
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// No such object or upload.
    NotFound(String),
    /// Data would pass the declared length.
    LengthExceeded {
        /// The declared length.
        length: u64,
    },
    /// Data ended before the declared length.
    Incomplete {
        /// Bytes received.
        offset: u64,
        /// Bytes declared.
        length: u64,
    },
    /// A range outside the object.
    InvalidRange {
        /// The object's size.
        size: u64,
    },
    /// The store does not offer this operation.
    NotSupported(&'static str),
    /// The body being stored failed (client error, rejection by a layer).
    Body(BoxError),
    /// The backend is unreachable or refused for now; the request can be retried.
    Unavailable(BoxError),
    /// A remote backend refused the request for good (an S3 server that rejects the
    /// credentials or the request): `502 storage_refused`, and the reason is logged.
    Upstream(BoxError),
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
            StoreError::NotFound(_) => Problem::new(StatusCode::NOT_FOUND, "upload_not_found", "no upload or file with this id"),
            StoreError::LengthExceeded { length } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "length_exceeded",
                format!("the upload was declared to be {length} bytes long"),
            ),
            StoreError::Incomplete { offset, length } => {
                Problem::new(StatusCode::CONFLICT, "upload_incomplete", format!("{offset} of {length} bytes received"))
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
            StoreError::Unavailable(err) => {
                tracing::error!(error = %err, "storage backend unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the storage backend is unavailable; retry later",
                )
                .with_header(http::header::RETRY_AFTER, http::HeaderValue::from_static("5"))
            }
            StoreError::Upstream(err) => {
                tracing::error!(error = %err, "the storage backend refused the request");
                Problem::new(StatusCode::BAD_GATEWAY, "storage_refused", "the storage backend refused the request")
            }
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
            StoreError::NotFound(key) => write!(f, "no object or upload {key}"),
            StoreError::Body(e) => write!(f, "body failed: {e}"),
            StoreError::Unavailable(e) => write!(f, "storage backend unavailable: {e}"),
            StoreError::Upstream(e) => write!(f, "storage backend refused the request: {e}"),
            StoreError::Backend(e) => write!(f, "storage backend failed: {e}"),
            other => f.write_str(other.to_problem().detail()),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Body(e) | StoreError::Backend(e) | StoreError::Unavailable(e) | StoreError::Upstream(e) => {
                Some(e.as_ref())
            }
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
/// - `put` stores all of `data` under `key`, replacing an object there, and the object is
///   visible only once the put has succeeded; a put that fails (its data failed, passed or fell
///   short of the declared length) or is dropped leaves nothing behind, and an object it would
///   have replaced stays as it was (a [fresh](PutOptions::fresh) put, to a key that names no
///   object, may instead write the object in place, visible before it is whole);
/// - `get` reads all of an object or a range inside it; `head` describes it;
/// - `delete` removes an object; deleting one that is not there is not an error;
/// - `list` yields every object under a prefix (all of them without one), each once.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Stores `data` as the object `key`, atomically.
    async fn put(&self, key: &ObjectKey, data: ByteStream<'_>, options: PutOptions) -> Result<ObjectMeta, StoreError>;

    /// An object's bytes, all or `range` (which must lie inside the object).
    async fn get(&self, key: &ObjectKey, range: Option<Range<u64>>) -> Result<GetResult, StoreError>;

    /// An object's size and age.
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError>;

    /// Deletes an object.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// Every object whose key starts with `prefix` (then `/`), or every object.
    fn list(&self, prefix: Option<&KeyPrefix>) -> BoxStream<'_, Result<ObjectMeta, StoreError>>;

    /// Uploads that grow over many requests, if this store can keep them.
    fn resumable(&self) -> Option<&dyn ResumableStore> {
        None
    }

    /// Objects made of parts uploaded independently, if this store can make them.
    fn multipart(&self) -> Option<&dyn MultipartStore> {
        None
    }

    /// URLs that let a client read an object from the store itself, if this store can sign them.
    fn signer(&self) -> Option<&dyn Signer> {
        None
    }

    /// Removes what interrupted writes of the store itself left behind (a one-shot put's
    /// temporary file after a crash) once older than `age` seconds; returns how many.
    async fn clean_up(&self, age: u64) -> Result<usize, StoreError> {
        let _ = age;
        Ok(0)
    }
}

/// The state a backend keeps for an unfinished resumable upload (an S3 multipart upload's id and
/// parts, say): opaque to everything but the store, kept in the upload's record so that any
/// process can continue the upload. `null` for stores that need none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResumableState(pub serde_json::Value);

impl ResumableState {
    /// Whether the store keeps nothing here.
    pub fn is_empty(&self) -> bool {
        self.0.is_null()
    }
}

/// What an append did.
#[derive(Debug)]
pub struct Appended {
    /// The upload's state afterwards, to be recorded.
    pub state: ResumableState,
    /// The upload's length afterwards.
    pub offset: u64,
    /// Why the data ended early, if it did: the bytes before the failure are kept where the
    /// store can keep them, and `offset` counts them.
    pub failure: Option<StoreError>,
}

/// An unfinished resumable upload a store holds, as [`ResumableStore::list_pending`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingUpload {
    /// The key the upload will have.
    pub key: ObjectKey,
    /// When it was last written, in seconds since the Unix epoch.
    pub last_modified: u64,
    /// What the store needs to abort it.
    pub state: ResumableState,
}

/// Uploads that grow over many requests, in any process (tus, the IETF draft). The store does
/// not lock or police offsets: the caller appends at the offset it checked under the upload's
/// lock, and records the state each call returns.
///
/// Contract (checked by [`conformance::run`]):
/// - `begin` starts an upload that becomes the object `key` once `complete`d; until then the
///   object is not visible (an object already there stays as it was);
/// - `append` adds data at `offset`: bytes the upload held past `offset` (a crash cut an append
///   short after they were written) are dropped first; a failing `data` keeps what arrived
///   before it where the store can, and says so in [`Appended::failure`];
/// - `offset` reports what the upload holds, which may be more than the last recorded state
///   says when a crash came between an append and its record;
/// - `truncate` cuts the upload back to a shorter offset (undoing an append that failed
///   verification);
/// - `complete` makes the upload the object, atomically, and `abort` removes it; neither fails
///   for an upload that is already gone (a retry after a crash);
/// - `list_pending` yields every unfinished upload once.
#[async_trait]
pub trait ResumableStore: Send + Sync {
    /// Starts an upload that becomes the object `key`.
    async fn begin(&self, key: &ObjectKey) -> Result<ResumableState, StoreError>;

    /// Appends `data` at `offset`.
    async fn append(
        &self,
        key: &ObjectKey,
        state: &ResumableState,
        offset: u64,
        data: ByteStream<'_>,
    ) -> Result<Appended, StoreError>;

    /// How many bytes the upload holds.
    async fn offset(&self, key: &ObjectKey, state: &ResumableState) -> Result<u64, StoreError>;

    /// Cuts the upload back to `offset` bytes.
    async fn truncate(&self, key: &ObjectKey, state: &ResumableState, offset: u64) -> Result<ResumableState, StoreError>;

    /// Makes the upload the object `key`.
    async fn complete(&self, key: &ObjectKey, state: &ResumableState) -> Result<ObjectMeta, StoreError>;

    /// Discards the upload.
    async fn abort(&self, key: &ObjectKey, state: &ResumableState) -> Result<(), StoreError>;

    /// Every unfinished upload, for sweeps that compare them with the upload records.
    fn list_pending(&self) -> BoxStream<'_, Result<PendingUpload, StoreError>>;

    /// Reading back an unfinished upload's bytes, if this store can.
    fn read_back(&self) -> Option<&dyn ReadBack> {
        None
    }
}

/// A part stored by [`MultipartStore::put_part`], as its upload's completion needs it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedPart {
    /// What the store knows the part by (S3: its `ETag`).
    pub id: String,
    /// Its length in bytes.
    pub size: u64,
}

/// The parts a [`MultipartStore`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartLimits {
    /// The smallest part but an upload's last, which may be shorter (S3: 5 MiB).
    pub min_size: u64,
    /// The largest part (a store may hold a part in memory while it sends it).
    pub max_size: u64,
    /// The most parts of one upload (S3: 10 000).
    pub max_parts: u64,
}

impl PartLimits {
    /// Limits from their values.
    pub const fn new(min_size: u64, max_size: u64, max_parts: u64) -> Self {
        Self { min_size, max_size, max_parts }
    }
}

/// Objects made of numbered parts that are uploaded independently — in any order, in parallel,
/// from any process — and joined by the store when the upload completes, without the bytes
/// being written twice: S3's multipart uploads, as object_store's stateless
/// [`MultipartStore`](https://docs.rs/object_store/latest/object_store/multipart/trait.MultipartStore.html)
/// offers them. The chunked API stores chunk `n` as part `n` when the chunk size fits the
/// store's [`limits`](Self::limits).
///
/// The store keeps no state of its own: `create` returns the upload's [`ResumableState`] and
/// `put_part` the part's [`UploadedPart`], which the caller records and hands back.
///
/// Contract:
/// - `create` starts an upload that becomes the object `key` once `complete`d; until then the
///   object is not visible (an object already there stays as it was);
/// - `put_part` stores exactly `length` bytes as part `index` (from 0; S3 numbers it
///   `index + 1`), replacing a part stored under that index before; data that passes or falls
///   short of `length` fails it ([`StoreError::LengthExceeded`], [`StoreError::Incomplete`]);
/// - `parts` lists the parts the store holds, by index; [`StoreError::NotFound`] once the upload
///   is completed or aborted;
/// - `complete` makes the object of `parts` (index `i` at position `i`), atomically; completing
///   again an upload completed before (a retry after a crash) describes the object;
/// - `abort` discards the upload and its parts, and does not fail for an upload that is gone.
///
/// An upload a crash left unrecorded is found by the sweeper's reconciliation when the store
/// lists it in [`ResumableStore::list_pending`] (S3 lists every multipart upload there).
#[async_trait]
pub trait MultipartStore: Send + Sync {
    /// The parts this store takes.
    fn limits(&self) -> PartLimits;

    /// Starts an upload that becomes the object `key`.
    async fn create(&self, key: &ObjectKey) -> Result<ResumableState, StoreError>;

    /// Stores `data`, which must be `length` bytes, as part `index` of the upload.
    async fn put_part(
        &self,
        key: &ObjectKey,
        state: &ResumableState,
        index: u64,
        data: ByteStream<'_>,
        length: u64,
    ) -> Result<UploadedPart, StoreError>;

    /// The parts the upload holds, by index.
    async fn parts(&self, key: &ObjectKey, state: &ResumableState) -> Result<BTreeMap<u64, UploadedPart>, StoreError>;

    /// Makes the object `key` of `parts`, in order.
    async fn complete(&self, key: &ObjectKey, state: &ResumableState, parts: &[UploadedPart]) -> Result<ObjectMeta, StoreError>;

    /// Discards the upload.
    async fn abort(&self, key: &ObjectKey, state: &ResumableState) -> Result<(), StoreError>;
}

/// URLs that let a client read an object from the store itself, signed with the store's
/// credentials, so that a download need not pass through the server (S3's presigned `GET`, as
/// object_store's
/// [`Signer`](https://docs.rs/object_store/latest/object_store/signer/trait.Signer.html) makes
/// them). Whoever holds such a URL can read the object until it expires: hand one out only
/// after deciding that the requester may read the object.
#[async_trait]
pub trait Signer: Send + Sync {
    /// A URL that answers a `GET` (with `Range`, if the client sends one) with the object `key`,
    /// valid for `expires_in`.
    async fn signed_get(&self, key: &ObjectKey, expires_in: Duration) -> Result<String, StoreError>;
}

/// Reading an unfinished resumable upload's bytes (a checksum trailer is checked by reading back
/// what it covers; a whole-upload hash is caught up after a crash).
#[async_trait]
pub trait ReadBack: Send + Sync {
    /// The bytes `range` of what the upload holds.
    async fn read(&self, key: &ObjectKey, state: &ResumableState, range: Range<u64>) -> Result<ReadStream, StoreError>;
}

/// Counts a body against its declared length: no chunk may pass it, and the body must reach it
/// exactly by its end.
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
        match self.length {
            Some(length) if self.seen + chunk.len() as u64 > length => Err(StoreError::LengthExceeded { length }),
            _ => {
                self.seen += chunk.len() as u64;
                Ok(())
            }
        }
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

#[cfg(test)]
mod key_tests {
    use super::{KeyPrefix, ObjectKey};
    use crate::UploadId;

    #[test]
    fn prefixes_are_safe_relative_paths() {
        assert_eq!(KeyPrefix::new("/tenants/acme-1/").unwrap().as_str(), "tenants/acme-1");
        for bad in ["", "/", "a//b", "../x", "a/./b", "a/..", "a b", "a\\b", "ä", &"x".repeat(65), "1/2/3/4/5/6/7/8/9"] {
            assert_eq!(KeyPrefix::new(bad), None, "{bad:?}");
        }
        assert_eq!(serde_json::from_str::<KeyPrefix>("\"../etc\"").ok(), None, "deserialising validates too");
    }

    #[test]
    fn keys_are_safe_and_say_what_they_hold() {
        for bad in ["", "/a", "a/", "a//b", "..", "a/../b", "a b", "a\\b", "ä", &"x".repeat(129)] {
            assert_eq!(ObjectKey::new(bad), None, "{bad:?}");
        }
        let id = UploadId::random();
        let prefix = KeyPrefix::new("tenants/acme").unwrap();
        let file = ObjectKey::of(Some(&prefix), &id);
        assert_eq!(file.as_str(), format!("tenants/acme/{id}"));
        assert_eq!(file.owner_id(), Some((id.clone(), None)));
        let chunk = ObjectKey::of_chunk(None, &id, 12);
        assert_eq!(chunk.as_str(), format!("{id}.12"));
        assert_eq!(chunk.owner_id(), Some((id.clone(), Some(12))));
        let tail = file.tail(3).expect("a file key has tails");
        assert_eq!(tail.as_str(), format!("tenants/acme/{id}.tail-3"));
        assert_eq!(tail.owner_id(), Some((id, Some(3))), "a tail lives only as long as its upload, like a chunk");
        for foreign in ["notes.tail-3", "0123456789abcdef0123456789abcdef.tail-", "0123456789abcdef0123456789abcdef.tail-x"] {
            assert_eq!(ObjectKey::new(foreign).unwrap().owner_id(), None, "{foreign}");
        }
        assert_eq!(ObjectKey::new("notes.txt").unwrap().owner_id(), None, "not a key the server makes");
        assert_eq!(serde_json::from_str::<ObjectKey>("\"a/../b\"").ok(), None);
    }
}
