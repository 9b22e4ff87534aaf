//! The upload router: every protocol behind one [`Router`] that nests anywhere.
//!
//! | route | what |
//! |---|---|
//! | `POST {prefix}/form` | streaming `multipart/form-data`, any number of files plus text fields |
//! | `POST {prefix}/raw` | the body is the file; name from `Content-Disposition` or `?name=` |
//! | `GET {prefix}/files/{id}` | download, with `Range` (and `HEAD`) |
//! | `DELETE {prefix}/files/{id}` | delete a file |
//! | `GET {prefix}/progress/{id}` | Server-Sent Events for an upload that names `?progress_id=` |
//! | `POST {prefix}/chunked/init`, `…/chunk`, `…/complete`, `GET …/status` | the JSON chunked-upload API (see `chunked.rs`) |
//!
//! Uploads answer `201 Created` with a `Location` and an [`UploadResponse`](crate::UploadResponse)
//! JSON body; every error is `application/problem+json` with a stable code (see [`crate::error`]).
//! Handlers build URLs from the prefix the router was nested under, so `Location` is right
//! wherever it is mounted; they are absolute, with the origin chosen as [`urls`] explains.

pub(crate) mod chunked;
mod events;
mod form;
mod idle;
mod raw;

use crate::{
    config::{FormLimits, MetadataLimits, UploadConfig},
    context::AppState,
    hash::{HashAlgorithm, HashLayer},
    hooks::Hooks,
    limit::BodyLimitLayer,
    progress::{ProgressHub, ProgressLayer, ReportRefusalsLayer},
    rate_limit::RateLimitLayer,
    resumable::Resumable,
    sniff::{ContentPolicy, SniffLayer},
    state::{Locker, MemoryLocker, MemoryState, StateStore, sweep::Sweeper},
    storage::Store,
    urls::{PublicUrl, UrlBase, UrlSettings},
};
use axum::{
    Extension, Router,
    routing::{any, get, post},
};
use std::{net::IpAddr, sync::Arc, time::Duration};
use tower::ServiceBuilder;

/// Builds the upload router: storage, limits, policies.
///
/// ```
/// use intake::{Uploads, storage::InMemory, sniff::ContentPolicy};
/// let app: axum::Router = axum::Router::new().nest(
///     "/upload",
///     Uploads::new(InMemory::new())
///         .max_body(100 << 20)
///         .content_policy(ContentPolicy::default().allow(["image/*", "application/pdf"]))
///         .into_router(),
/// );
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
pub struct Uploads {
    store: Arc<dyn Store>,
    state: Arc<dyn StateStore>,
    locker: Arc<dyn Locker>,
    hooks: Hooks,
    hub: ProgressHub,
    rate_limit: RateLimitLayer,
    /// `None` until set: the resumable routes then follow [`Uploads::rate_limit`] if that was
    /// set, or get their own default quota.
    resumable_rate_limit: Option<RateLimitLayer>,
    rate_limit_set: bool,
    config: UploadConfig,
}

impl Uploads {
    /// Uploads into `store`, with default settings and a rate limit of 20 requests per second
    /// per client (burst 40). Resumable upload state is kept in memory until [`state`](Self::state)
    /// says otherwise.
    pub fn new(store: impl Store) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Uploads into a shared store.
    pub fn from_arc(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            state: Arc::new(MemoryState::new()),
            locker: Arc::new(MemoryLocker::new()),
            hooks: Hooks::default(),
            hub: ProgressHub::new(),
            rate_limit: RateLimitLayer::per_second(20).burst(40),
            resumable_rate_limit: None,
            rate_limit_set: false,
            config: UploadConfig::default(),
        }
    }

    /// The largest upload body, raw or form (default 1 GiB).
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.config.max_raw_body = bytes;
        self.config.max_form_body = bytes;
        self
    }

    /// The largest raw upload body.
    pub fn max_raw_body(mut self, bytes: u64) -> Self {
        self.config.max_raw_body = bytes;
        self
    }

    /// The largest form upload body.
    pub fn max_form_body(mut self, bytes: u64) -> Self {
        self.config.max_form_body = bytes;
        self
    }

    /// Limits within a form.
    pub fn form_limits(mut self, limits: FormLimits) -> Self {
        self.config.form = limits;
        self
    }

    /// Where resumable uploads keep their state (default: in memory, lost on restart;
    /// [`uploads_router`] uses a [`RedbState`](crate::state::RedbState) file).
    pub fn state(self, state: impl StateStore) -> Self {
        self.state_arc(Arc::new(state))
    }

    /// A shared state store.
    pub fn state_arc(mut self, state: Arc<dyn StateStore>) -> Self {
        self.state = state;
        self
    }

    /// How one request at a time gets to write to an upload (default [`MemoryLocker`]).
    pub fn locker(mut self, locker: impl Locker) -> Self {
        self.locker = Arc::new(locker);
        self
    }

    /// Lifecycle hooks of resumable uploads.
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// How long an unfinished resumable upload lives after its last request (default 24 h).
    pub fn expiry(mut self, expiry: Option<Duration>) -> Self {
        self.config.expiry = expiry;
        self
    }

    /// While a request waits for an upload another request is writing, the writer lets go once
    /// it has received nothing for this long (default 2 s): a client that lost its connection
    /// and retried gets its upload back without waiting for the old request to time out.
    pub fn lock_stale_after(mut self, after: Duration) -> Self {
        self.config.stale_after = after;
        self
    }

    /// How often requests to the resumable routes start a background sweep of expired uploads
    /// (default one minute; `None`: never, run a [`sweeper`](Self::sweeper) yourself).
    pub fn sweep_every(mut self, every: Option<Duration>) -> Self {
        self.config.sweep_every = every;
        self
    }

    /// The most partial uploads a tus final upload may name (default 256); more are refused with
    /// `400 too_many_partials`.
    pub fn max_concat_parts(mut self, parts: usize) -> Self {
        self.config.max_concat_parts = parts;
        self
    }

    /// Bounds on a tus creation's `Upload-Metadata` (default 64 keys, 16 KiB); beyond them the
    /// creation is refused with `413` and nothing is created.
    pub fn metadata_limits(mut self, limits: MetadataLimits) -> Self {
        self.config.tus_metadata = limits;
        self
    }

    /// Answers a download (`GET {prefix}/files/{id}`) with `307 Temporary Redirect` to a URL
    /// that reads the file from the store itself, valid for `expires_in` (S3: a presigned `GET`,
    /// at most 7 days), so that the bytes do not pass through this server. Off by default; with
    /// a store that cannot [sign URLs](crate::storage::Signer), files stream as without it.
    ///
    /// The redirect is sent only after the [authorisation hook](crate::hooks) allowed the
    /// request (anyone else still gets `404`), with `Cache-Control: no-store` so that no cache
    /// hands the URL to somebody else; `HEAD` is answered here as before.
    ///
    /// # Security
    /// Whoever holds the URL can read the file until it expires: keep `expires_in` short. The
    /// store serves the file with its own headers, not those this router sends
    /// (`Content-Disposition: attachment`, `X-Content-Type-Options: nosniff`, a sandboxing
    /// `Content-Security-Policy`): serve the bucket from an origin of its own, never the app's,
    /// so that an uploaded HTML or SVG file cannot run script in the app's origin.
    ///
    /// ```
    /// # use intake::{Uploads, storage::InMemory};
    /// use std::time::Duration;
    /// let uploads = Uploads::new(InMemory::new()).download_redirect(Duration::from_secs(60));
    /// # let _ = uploads;
    /// ```
    pub fn download_redirect(mut self, expires_in: Duration) -> Self {
        self.config.download_redirect = Some(expires_in);
        self
    }

    /// A sweeper that removes expired uploads of this router's backends; run it with
    /// [`Sweeper::spawn`].
    pub fn sweeper(&self) -> Sweeper {
        Sweeper::new(self.state.clone(), self.store.clone(), self.locker.clone()).orphans_after(self.config.expiry)
    }

    /// Hands out URLs under `url`, whatever a request says: the public address of the app
    /// (and any path a proxy adds in front of it), followed by the prefix the router is nested
    /// under. See [`urls`](crate::urls) for the other choices and why.
    pub fn public_url(mut self, url: PublicUrl) -> Self {
        self.config.urls = UrlBase::Public(url);
        self
    }

    /// Hands out server-relative URLs (`/upload/tus/{id}`) instead of absolute ones.
    pub fn relative_urls(mut self) -> Self {
        self.config.urls = UrlBase::Relative;
        self
    }

    /// Believes these proxies' `Forwarded` (`host=`, `proto=`) and `X-Forwarded-Host` /
    /// `X-Forwarded-Proto` about the address clients used, when building absolute URLs from a
    /// request (see [`urls`](crate::urls)). The rate limit has its own list
    /// ([`RateLimitLayer::trusted_proxies`]).
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        self.config.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// The content policy.
    pub fn content_policy(mut self, policy: ContentPolicy) -> Self {
        self.config.policy = policy;
        self
    }

    /// The digests computed for every file.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = HashAlgorithm>) -> Self {
        self.config.algorithms = algorithms.into_iter().collect();
        self
    }

    /// The per-client rate limit (see [`RateLimitLayer`]); [`RateLimitLayer::disabled`] for none.
    ///
    /// It applies to every route, the resumable ones included unless
    /// [`resumable_rate_limit`](Self::resumable_rate_limit) gives them their own.
    pub fn rate_limit(mut self, layer: RateLimitLayer) -> Self {
        self.rate_limit = layer;
        self.rate_limit_set = true;
        self
    }

    /// The per-client rate limit of the resumable protocols (tus, the IETF draft, chunked), kept
    /// apart from [`rate_limit`](Self::rate_limit) because one file takes many requests there —
    /// a tus client sending 1 MiB chunks makes one request per MiB. Default: 200 requests per
    /// second per client, burst 400 — or, once [`rate_limit`](Self::rate_limit) was called, that
    /// limit.
    pub fn resumable_rate_limit(mut self, layer: RateLimitLayer) -> Self {
        self.resumable_rate_limit = Some(layer);
        self
    }

    /// How long a request body may stall.
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.body_idle_timeout = timeout;
        self
    }

    /// Shares a progress hub (to follow uploads from elsewhere in the app).
    pub fn progress_hub(mut self, hub: ProgressHub) -> Self {
        self.hub = hub;
        self
    }

    /// The progress hub the router publishes to.
    pub fn hub(&self) -> &ProgressHub {
        &self.hub
    }

    /// The router, for any app state.
    ///
    /// Each upload route stacks, from the outside in:
    /// body idle timeout → [rate limit](crate::rate_limit) → [size limit](crate::limit) →
    /// [sniff](crate::sniff) → [hash](crate::hash) → [progress](crate::progress) → handler.
    /// See the crate docs for why this order.
    pub fn into_router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let config = Arc::new(self.config);
        let resumable = Resumable {
            store: self.store.clone(),
            state: self.state,
            locker: self.locker,
            hooks: self.hooks,
            hub: self.hub.clone(),
            config: config.clone(),
            last_sweep: Default::default(),
            carried: Default::default(),
        };
        let state = AppState { store: self.store, hub: self.hub.clone(), config, resumable };
        let config = state.config.clone();
        let stack = |limit: u64| {
            ServiceBuilder::new()
                .map_request(idle::idle_timeout(config.body_idle_timeout))
                .layer(ReportRefusalsLayer::new(self.hub.clone()))
                .layer(self.rate_limit.clone())
                .layer(BodyLimitLayer::new(limit))
                .layer(SniffLayer::new(config.policy.clone()))
                .layer(HashLayer::new(config.algorithms.iter().copied()))
                .layer(ProgressLayer::new().hub(self.hub.clone()))
        };
        let reads = ServiceBuilder::new().layer(self.rate_limit.clone());
        let resumable_limit = match (self.resumable_rate_limit.clone(), self.rate_limit_set) {
            (Some(layer), _) => layer,
            (None, true) => self.rate_limit.clone(),
            (None, false) => RateLimitLayer::per_second(200).burst(400),
        };
        // tus and the IETF draft: size limits and content checks are applied per upload (by the
        // declared Upload-Length, and on the upload's first bytes), not per request body.
        let resumable = ServiceBuilder::new()
            .map_response(tus_resumable)
            .map_request(idle::idle_timeout(config.body_idle_timeout))
            .layer(resumable_limit.clone())
            .layer(BodyLimitLayer::new(config.max_raw_body));
        let tus_root = post(crate::tus::create).options(crate::tus::options);
        let tus_upload = any(crate::tus::upload);
        Router::new()
            .route("/tus", tus_root.clone().layer(resumable.clone()))
            .route("/tus/", tus_root.layer(resumable.clone()))
            .route("/tus/{id}", tus_upload.layer(resumable))
            .route("/form", post(form::upload).layer(stack(config.max_form_body)))
            .route("/raw", post(raw::upload).layer(stack(config.max_raw_body)))
            .route("/files/{id}", get(crate::files::download).delete(crate::files::delete).layer(reads.clone()))
            .route("/progress/{id}", get(events::events).layer(reads))
            .merge(chunked::routes(&config, &resumable_limit))
            .layer(Extension(UrlSettings::new(config.urls.clone(), &config.trusted_proxies)))
            .with_state(state)
    }
}

/// Every tus answer (rejections by the layers included) says which protocol version it speaks.
fn tus_resumable<B>(mut res: http::Response<B>) -> http::Response<B> {
    res.headers_mut().insert("tus-resumable", http::HeaderValue::from_static("1.0.0"));
    res
}

impl<S: Clone + Send + Sync + 'static> From<Uploads> for Router<S> {
    fn from(uploads: Uploads) -> Self {
        uploads.into_router()
    }
}

/// The upload router on the defaults: [`LocalDisk`](crate::storage::LocalDisk) under
/// `./uploads`, resumable upload state in `./uploads/state.redb` (with the `redb` feature), 1 GiB
/// bodies, SHA-256, the default content policy, 20 requests per second per client. Nest it
/// anywhere:
///
/// ```no_run
/// let app: axum::Router = axum::Router::new().nest("/upload", intake::uploads_router());
/// ```
///
/// # Panics
/// When the state database cannot be opened (another process has it open, or `./uploads` is
/// not writable). Build an [`Uploads`] with [`RedbState::open`](crate::state::RedbState::open)
/// to handle that error yourself.
#[cfg(feature = "local-disk")]
pub fn uploads_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let uploads = Uploads::new(crate::storage::LocalDisk::new("uploads"));
    #[cfg(feature = "redb")]
    let uploads = uploads.state(crate::state::RedbState::open("uploads/state.redb").expect("uploads/state.redb can be opened"));
    uploads.into_router()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{storage::InMemory, test_util::json};
    use axum::{body::Body, extract::ConnectInfo};
    use http::{Request, StatusCode};
    use std::net::SocketAddr;
    use tower::ServiceExt;

    fn request(uri: &str, content_type: &str, body: &'static [u8]) -> Request<Body> {
        let mut req = Request::post(uri)
            .header("content-type", content_type)
            .header("content-length", body.len())
            .body(Body::from(body))
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))));
        req
    }

    #[tokio::test]
    async fn limits_differ_per_route() {
        let store = InMemory::new();
        let app: Router =
            Router::new().nest("/up", Uploads::new(store.clone()).max_raw_body(8).max_form_body(4096).into_router());
        let body: &'static [u8] =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nhello world\r\n--XyZ--\r\n";
        let res = app.clone().oneshot(request("/up/raw?name=a.txt", "text/plain", b"hello world")).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json(res).await["limit"], 8);
        let res = app.clone().oneshot(request("/up/form", "multipart/form-data; boundary=XyZ", body)).await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let json = json(res).await;
        assert_eq!(json["files"][0]["url"].as_str().unwrap(), format!("/up/files/{}", json["files"][0]["id"].as_str().unwrap()));
        assert_eq!((store.objects(), store.pending_uploads()), (1, 0));
    }
}
