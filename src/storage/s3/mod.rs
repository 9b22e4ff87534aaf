//! S3 and compatible servers (feature `s3`), on [object_store](https://docs.rs/object_store)'s
//! AWS client (SigV4 signing with `ring`, rustls, no C build).
//!
//! | operation | S3 requests |
//! |---|---|
//! | [`put`](Store::put) | one `PutObject` when the body fits in a part; else a multipart upload fed as bytes arrive, up to `concurrency` parts at once, aborted when the put fails or is dropped |
//! | [`get`](Store::get) | `GetObject`, streamed, with `Range` (and a `HeadObject` to check the range) |
//! | [`head`](Store::head), [`delete`](Store::delete), [`list`](Store::list) | `HeadObject`, `DeleteObject`, `ListObjectsV2` |
//! | [resumable uploads](ResumableStore) | a multipart upload per upload, plus a *tail* object `{key}.tail-{n}` for bytes too few for a part (see [`resumable`](self#resumable-uploads)) |
//! | [uploads of parts](MultipartStore) | `CreateMultipartUpload`, `UploadPart` (part `index + 1`, held in memory while it is sent: 5 MiB up to `part_size × (concurrency + 1)`), `ListParts`, `CompleteMultipartUpload`, `AbortMultipartUpload` |
//! | [presigned `GET`s](Signer) | none: a SigV4 query-string signature made locally |
//!
//! A put holds at most `part_size × (concurrency + 1)` bytes of a body: `concurrency` parts on
//! their way to S3 and one being filled. What object_store cannot send (`ListParts`,
//! `ListMultipartUploads`) is signed with its own [`AwsAuthorizer`](object_store::aws::AwsAuthorizer).
//!
//! # Failures
//! A server that cannot be reached, times out, answers `5xx` or throttles is
//! [`StoreError::Unavailable`] (`503 storage_unavailable`, the client may retry); one that refuses
//! the request for good — wrong credentials (`403 SignatureDoesNotMatch`, `InvalidAccessKeyId`),
//! a missing bucket — is [`StoreError::Upstream`] (`502 storage_refused`), logged with S3's answer.
//! object_store retries transient failures a few times first (see [`S3Builder::retries`]).
//!
//! # Resumable uploads
//! S3 cannot append to an object, and every part of a multipart upload but the last must be at
//! least 5 MiB, while tus clients send `PATCH`es of any size. So an upload is a multipart upload
//! (begun with the upload) whose parts are `part_size` bytes each, and a tail: the bytes after
//! the last part, kept as an object of their own until they fill a part. Each append reads the
//! tail back, sends full parts as the bytes stream in, and writes what is left as a *new* tail
//! object; completing uploads the tail as the last part. Everything an upload is made of is named
//! by its [`ResumableState`](super::ResumableState), which the engine records after every append, so any process
//! continues it. The state is JSON:
//!
//! ```json
//! {"upload_id": "…", "parts": [{"etag": "\"…\"", "size": 8388608}], "tail": {"n": 3, "len": 1048576},
//!  "tails": 3, "before": {"parts": 0, "tail": {"n": 2, "len": 7340032}}}
//! ```
//! - `parts`: the finished parts, numbered from 1 in order;
//! - `tail`: the first `len` bytes of the object `{key}.tail-{n}` follow the parts;
//! - `tails`: how many tail objects were written (the next append writes `tails + 1`, so it never
//!   overwrites what a recorded state names);
//! - `before`: the upload before the last append, so that the append can be undone
//!   ([`truncate`](ResumableStore::truncate)); the next append deletes the tail it names.
//!
//! Completing and aborting delete every tail of the upload; tails a crash left are removed with
//! the upload, or by the [sweeper](crate::state::sweep::Sweeper) once no record names their
//! upload ([`ObjectKey::owner_id`] knows the name). An upload holds at most 10 000 parts
//! (80 GB with the default 8 MiB parts). [`ReadBack`](super::ReadBack) is not offered: the parts
//! of an unfinished multipart upload cannot be read.
//!
//! # Examples
//! ```no_run
//! use intake::storage::S3;
//! # fn main() -> Result<(), intake::storage::StoreError> {
//! // Credentials, region and endpoint from the standard AWS_* variables, then overridden.
//! let store = S3::builder("uploads")
//!     .endpoint("http://127.0.0.1:8333")
//!     .allow_http(true)
//!     .part_size(16 << 20)
//!     .concurrency(8)
//!     .build()?;
//! # Ok(()) }
//! ```

mod api;
mod multipart;
mod put;
mod resumable;

use super::{
    ByteStream, GetResult, KeyPrefix, MultipartStore, ObjectKey, ObjectMeta, PutOptions, ResumableStore, Signer, Store,
    StoreError, resolve_range,
};
use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    BackoffConfig, ClientConfigKey, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig,
    aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey},
    path::Path,
};
use std::{fmt, ops::Range, sync::Arc, time::Duration};

/// The smallest part S3 accepts (but for an upload's last).
pub const MIN_PART_SIZE: usize = 5 << 20;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 << 30;

/// An S3 bucket as a [`Store`] with [resumable uploads](ResumableStore),
/// [uploads of parts](MultipartStore) and [presigned `GET`s](Signer). See the
/// [module docs](self).
#[derive(Clone)]
pub struct S3 {
    inner: Arc<Inner>,
}

struct Inner {
    store: AmazonS3,
    api: api::Api,
    bucket: String,
    part_size: usize,
    concurrency: usize,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3")
            .field("bucket", &self.inner.bucket)
            .field("part_size", &self.inner.part_size)
            .field("concurrency", &self.inner.concurrency)
            .finish_non_exhaustive()
    }
}

/// Configures an [`S3`] store. Starts from the standard AWS environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or `AWS_DEFAULT_REGION`,
/// `AWS_ENDPOINT_URL` or `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ... as object_store reads them, web
/// identity and container credentials included); every setting given here overrides it.
pub struct S3Builder {
    builder: AmazonS3Builder,
    part_size: usize,
    concurrency: usize,
    retry: RetryConfig,
}

impl fmt::Debug for S3Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Builder").field("part_size", &self.part_size).field("concurrency", &self.concurrency).finish()
    }
}

impl S3 {
    /// A builder for the store of `bucket`.
    pub fn builder(bucket: impl Into<String>) -> S3Builder {
        let builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout), "5s")
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "60s");
        S3Builder {
            builder,
            part_size: 8 << 20,
            concurrency: 4,
            retry: RetryConfig { backoff: BackoffConfig::default(), max_retries: 3, retry_timeout: Duration::from_secs(10) },
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// How many bytes each part of a multipart upload holds.
    pub fn part_size(&self) -> usize {
        self.inner.part_size
    }

    /// How many parts of one upload are sent at once.
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    fn path(key: &ObjectKey) -> Path {
        Path::from(key.as_str())
    }
}

impl S3Builder {
    /// The server's URL, for S3-compatible servers (`http://127.0.0.1:8333`); AWS without one.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.builder = self.builder.with_endpoint(url);
        self
    }

    /// The region (`us-east-1` unless the environment says otherwise).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.builder = self.builder.with_region(region);
        self
    }

    /// Static credentials.
    pub fn credentials(mut self, access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        self.builder = self.builder.with_access_key_id(access_key_id).with_secret_access_key(secret_access_key);
        self
    }

    /// Allows a plain-HTTP endpoint (a local server); off by default.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.builder = self.builder.with_allow_http(allow);
        self
    }

    /// Addresses the bucket as a host name (`bucket.endpoint`) instead of a path
    /// (`endpoint/bucket`, the default, which local servers expect).
    pub fn virtual_hosted_style(mut self, virtual_hosted: bool) -> Self {
        self.builder = self.builder.with_virtual_hosted_style_request(virtual_hosted);
        self
    }

    /// Sends `UNSIGNED-PAYLOAD` instead of each body's SHA-256 in the signature (saves hashing
    /// every byte; TLS protects the body in transit).
    pub fn unsigned_payload(mut self, unsigned: bool) -> Self {
        self.builder = self.builder.with_unsigned_payload(unsigned);
        self
    }

    /// The size of each part (default 8 MiB; S3 needs 5 MiB to 5 GiB).
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// How many parts of one upload are sent at once (default 4).
    pub fn concurrency(mut self, parts: usize) -> Self {
        self.concurrency = parts;
        self
    }

    /// How often a failed request is retried, and for how long at most (default 3 times within
    /// 10 s): past that, a request fails with [`StoreError::Unavailable`].
    pub fn retries(mut self, max_retries: usize, within: Duration) -> Self {
        self.retry.max_retries = max_retries;
        self.retry.retry_timeout = within;
        self
    }

    /// Builds the store. Fails for settings S3 cannot take (a part size outside 5 MiB – 5 GiB,
    /// no concurrency, a malformed endpoint); nothing is sent yet.
    pub fn build(self) -> Result<S3, StoreError> {
        let invalid = |what: String| StoreError::Upstream(what.into());
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(invalid(format!("an S3 part size must be 5 MiB to 5 GiB, not {} bytes", self.part_size)));
        }
        if self.concurrency == 0 {
            return Err(invalid("an S3 store needs a concurrency of at least 1".into()));
        }
        let config = |key: AmazonS3ConfigKey| self.builder.get_config_value(&key);
        let bucket = config(AmazonS3ConfigKey::Bucket).unwrap_or_default();
        let region = config(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".to_owned());
        let endpoint = config(AmazonS3ConfigKey::S3Endpoint).or_else(|| config(AmazonS3ConfigKey::Endpoint));
        let virtual_hosted = config(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| truthy(&v));
        let unsigned = config(AmazonS3ConfigKey::UnsignedPayload).is_some_and(|v| truthy(&v));
        let allow_http = config(AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp)).is_some_and(|v| truthy(&v));
        let store = self.builder.with_retry(self.retry).build().map_err(|e| invalid(format!("S3 settings: {e}")))?;
        // The same base URL object_store addresses objects under.
        let base = match (endpoint, virtual_hosted) {
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (Some(endpoint), true) => endpoint.trim_end_matches('/').to_owned(),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let options = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(60));
        let api = api::Api::new(&options, base, region, store.credentials().clone(), !unsigned)?;
        Ok(S3 { inner: Arc::new(Inner { store, api, bucket, part_size: self.part_size, concurrency: self.concurrency }) })
    }
}

fn truthy(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
}

/// What an object_store failure means for a client: an object that is not there, a server that
/// may answer later, or one that refused for good.
pub(crate) fn store_error(err: object_store::Error, key: &str) -> StoreError {
    match err {
        object_store::Error::NotFound { .. } => StoreError::NotFound(key.to_owned()),
        other if transient(&other) => StoreError::Unavailable(Box::new(other)),
        other => StoreError::Upstream(Box::new(other)),
    }
}

/// Whether an error (or one it was caused by) is a connection failure, a timeout, a `5xx` or
/// throttling. object_store keeps the status in a private type; its message names it.
fn transient(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as Kind;
            if matches!(http.kind(), Kind::Connect | Kind::Request | Kind::Timeout | Kind::Interrupted) {
                return true;
            }
        }
        let text = e.to_string();
        if ["status code: 5", "status code: 429", "SlowDown", "ServiceUnavailable", "RequestTimeout"]
            .iter()
            .any(|mark| text.contains(mark))
        {
            return true;
        }
        current = e.source();
    }
    false
}

fn meta_of(key: ObjectKey, meta: &object_store::ObjectMeta) -> ObjectMeta {
    ObjectMeta { key, size: meta.size, last_modified: meta.last_modified.timestamp().max(0) as u64 }
}

fn read_stream(payload: BoxStream<'static, object_store::Result<bytes::Bytes>>) -> super::ReadStream {
    payload.map_err(std::io::Error::other).boxed()
}

#[async_trait]
impl Store for S3 {
    async fn put(&self, key: &ObjectKey, data: ByteStream<'_>, options: PutOptions) -> Result<ObjectMeta, StoreError> {
        put::put(self, key, data, options).await
    }

    async fn get(&self, key: &ObjectKey, range: Option<Range<u64>>) -> Result<GetResult, StoreError> {
        let path = Self::path(key);
        let err = |e| store_error(e, key.as_str());
        let Some(range) = range else {
            let got = self.inner.store.get_opts(&path, GetOptions::default()).await.map_err(err)?;
            let meta = meta_of(key.clone(), &got.meta);
            return Ok(GetResult { range: 0..meta.size, meta, body: read_stream(got.into_stream()) });
        };
        // S3 answers a range past the end with what there is, and cannot send an empty one:
        // the object's size decides first.
        let meta = self.head(key).await?;
        let range = resolve_range(Some(range), meta.size)?;
        if range.is_empty() {
            return Ok(GetResult { meta, range, body: futures_util::stream::empty().boxed() });
        }
        let options = GetOptions { range: Some(GetRange::Bounded(range.clone())), ..GetOptions::default() };
        let got = self.inner.store.get_opts(&path, options).await.map_err(err)?;
        Ok(GetResult { meta: meta_of(key.clone(), &got.meta), range, body: read_stream(got.into_stream()) })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let meta = self.inner.store.head(&Self::path(key)).await.map_err(|e| store_error(e, key.as_str()))?;
        Ok(meta_of(key.clone(), &meta))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        match self.inner.store.delete(&Self::path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e, key.as_str())),
        }
    }

    fn list(&self, prefix: Option<&KeyPrefix>) -> BoxStream<'_, Result<ObjectMeta, StoreError>> {
        let prefix = prefix.map(|p| Path::from(p.as_str()));
        self.inner
            .store
            .list(prefix.as_ref())
            .map_err(|e| store_error(e, "(listing)"))
            // Objects whose names the server would not make are somebody else's: not listed.
            .try_filter_map(|meta| async move { Ok(ObjectKey::new(meta.location.as_ref()).map(|key| meta_of(key, &meta))) })
            .boxed()
    }

    fn resumable(&self) -> Option<&dyn ResumableStore> {
        Some(self)
    }

    fn multipart(&self) -> Option<&dyn MultipartStore> {
        Some(self)
    }

    fn signer(&self) -> Option<&dyn Signer> {
        Some(self)
    }
}
