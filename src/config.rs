//! The settings of the upload routes ([`UploadConfig`]), which every protocol and the resumable
//! engine read; set them through [`Uploads`](crate::Uploads).

use crate::{hash::HashAlgorithm, sniff::ContentPolicy, urls::UrlBase};
use std::{net::IpAddr, time::Duration};

/// Settings of the upload routes, with their defaults.
#[derive(Clone, Debug)]
pub struct UploadConfig {
    /// Largest raw upload body (default 1 GiB).
    pub max_raw_body: u64,
    /// Largest form upload body, all parts together (default 1 GiB).
    pub max_form_body: u64,
    /// Limits within a form.
    pub form: FormLimits,
    /// A request body that sends nothing for this long is ended with `408 body_timeout`
    /// (default 30 s).
    pub body_idle_timeout: Duration,
    /// Digests computed for every file (default SHA-256).
    pub algorithms: Vec<HashAlgorithm>,
    /// What content is accepted.
    pub policy: ContentPolicy,
    /// How long an unfinished resumable upload lives after its last request (default 24 h);
    /// `None` keeps it forever. Finished uploads' records are dropped after the same time (the
    /// files stay).
    pub expiry: Option<Duration>,
    /// While another request waits for an upload's lock, the holder lets go once it has received
    /// nothing for this long (default 2 s).
    pub stale_after: Duration,
    /// Requests to the resumable routes start a background sweep of expired uploads when the
    /// last one started at least this long ago (default one minute); `None` leaves sweeping to a
    /// [`Sweeper`](crate::state::sweep::Sweeper) you run.
    pub sweep_every: Option<Duration>,
    /// The most partial uploads a tus final upload may name (default 256).
    pub max_concat_parts: usize,
    /// Where the URLs handed out (`Location`, `url`) start (default: from each request; see
    /// [`urls`](crate::urls)).
    pub urls: UrlBase,
    /// Proxies whose `Forwarded` / `X-Forwarded-Host` / `X-Forwarded-Proto` are believed when
    /// URLs are built from the request (default none).
    pub trusted_proxies: Vec<IpAddr>,
    /// Bounds on a tus creation's `Upload-Metadata` (default 64 keys, 16 KiB).
    pub tus_metadata: MetadataLimits,
    /// When set, and the store can [sign URLs](crate::storage::Signer), a download (`GET
    /// {prefix}/files/{id}`) the authorisation hook allowed is answered with `307` to a URL of
    /// the store valid this long, instead of with the bytes (default `None`; see
    /// [`Uploads::download_redirect`](crate::Uploads::download_redirect)).
    pub download_redirect: Option<Duration>,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            max_raw_body: 1 << 30,
            max_form_body: 1 << 30,
            form: FormLimits::default(),
            body_idle_timeout: Duration::from_secs(30),
            algorithms: vec![HashAlgorithm::Sha256],
            policy: ContentPolicy::default(),
            expiry: Some(Duration::from_secs(24 * 3600)),
            stale_after: Duration::from_secs(2),
            sweep_every: Some(Duration::from_secs(60)),
            max_concat_parts: 256,
            urls: UrlBase::default(),
            trusted_proxies: Vec::new(),
            tus_metadata: MetadataLimits::default(),
            download_redirect: None,
        }
    }
}

/// Limits of the form endpoint.
#[derive(Clone, Copy, Debug)]
pub struct FormLimits {
    /// Parts (files and text fields) per request (default 64).
    pub max_parts: usize,
    /// Files per request (default 32).
    pub max_files: usize,
    /// Bytes of one text field (default 64 KiB).
    pub max_field_size: usize,
    /// Bytes of one part's headers, including the boundary line (default 8 KiB).
    pub max_part_header_size: usize,
    /// Bytes of one file (default: only the request's body limit applies).
    pub max_file_size: Option<u64>,
}

impl Default for FormLimits {
    fn default() -> Self {
        Self { max_parts: 64, max_files: 32, max_field_size: 64 * 1024, max_part_header_size: 8 * 1024, max_file_size: None }
    }
}

/// Bounds on the `Upload-Metadata` of a tus creation, checked before anything is parsed or
/// stored.
///
/// An upload's metadata is kept with its record, rewritten with every `PATCH`, and echoed in
/// every `HEAD` response, so unbounded metadata costs on every request of the upload (20 000
/// keys make a `PATCH` hundreds of times slower) and can make the `HEAD` response a header line
/// that clients refuse to read (Python's `http.client` stops at 64 KiB, curl at 100 KiB).
/// tusd bounds metadata only through Go's 1 MiB limit on all request headers, and tus-node-server
/// through Node's 16 KiB; the defaults here keep Node's byte bound and the form's part count.
///
/// ```
/// use intake::{Uploads, storage::InMemory, tus::MetadataLimits};
/// let uploads = Uploads::new(InMemory::new()).metadata_limits(MetadataLimits { max_keys: 16, ..MetadataLimits::default() });
/// # let _ = uploads;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataLimits {
    /// Keys per upload (default 64); more are refused with `413 too_many_metadata_keys`.
    pub max_keys: usize,
    /// Bytes of the `Upload-Metadata` header value as sent, base64 included (default 16 KiB);
    /// more are refused with `413 metadata_too_large`.
    pub max_bytes: usize,
}

impl Default for MetadataLimits {
    fn default() -> Self {
        Self { max_keys: 64, max_bytes: 16 * 1024 }
    }
}
