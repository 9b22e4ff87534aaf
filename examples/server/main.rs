//! An upload server on intake's defaults: local disk, no external services.
//!
//! ```text
//! cargo run --example server
//! ```
//! Then open http://127.0.0.1:3000/ and drop some files.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `INTAKE_ADDR` | `127.0.0.1:3000` | listen address |
//! | `INTAKE_DIR` | `./uploads` | storage directory |
//! | `INTAKE_PREFIX` | `/upload` | where the upload router is nested (the demo page expects `/upload`) |
//! | `INTAKE_MAX_BODY` | `1073741824` | largest upload body, bytes |
//! | `INTAKE_RATE` | `20` | requests per second per client (0: no limit) |
//! | `INTAKE_RATE_BURST` | `40` | request burst per client |
//! | `INTAKE_RESUMABLE_RATE` | `200` | requests per second per client to tus and chunked routes, burst twice that (0: no limit) |
//! | `INTAKE_BYTES_PER_SEC` | `0` | body bytes per second per client (0: no limit) |
//! | `INTAKE_PUBLIC_URL` | (none) | the URL clients reach the server at, e.g. `https://files.example.com`: upload URLs (`Location`, `url`) start with it; unset, they are built from each request's `Host` (see `intake::urls`) |
//! | `INTAKE_TRUSTED_PROXIES` | (none) | comma-separated proxy IPs whose `X-Forwarded-For` (rate limits) and `Forwarded` / `X-Forwarded-Host` / `X-Forwarded-Proto` (upload URLs) are believed |
//! | `INTAKE_BODY_TIMEOUT_SECS` | `30` | a body that stalls this long is ended (408) |
//! | `INTAKE_SHUTDOWN_GRACE_SECS` | `30` | on SIGINT/SIGTERM, how long uploads in flight may finish |
//! | `INTAKE_FSYNC` | `never` | `never`, `finish` (survive power loss) or `always` |
//! | `INTAKE_MAX_BUF` | (hyper's, about 400 KiB) | bytes each connection buffers (hyper's `max_buf_size`, at least 8192); with `INTAKE_WRITE_BUFFER`, bounds the memory of concurrent uploads |
//! | `INTAKE_WRITE_BUFFER` | `262144` | bytes an upload gathers before a write to disk (`LocalDisk::with_write_buffer`) |
//! | `INTAKE_ALLOW` | (any) | comma-separated allowed types, e.g. `image/*,application/pdf` |
//! | `INTAKE_EXPIRY_SECS` | `86400` | unfinished resumable uploads expire after this long without a request |
//! | `INTAKE_SWEEP_SECS` | `60` | how often expired uploads are removed |
//! | `INTAKE_RECONCILE_SECS` | `3600` | how often a sweep also compares storage with the records and the catalog |
//! | `INTAKE_ORPHAN_SECS` | the expiry | how old storage that no record or catalog row names must be before it is removed |
//! | `INTAKE_CORS_ORIGINS` | (none) | comma-separated origins allowed to upload from a browser (CORS) |
//! | `INTAKE_S3_BUCKET` | (none) | store files in this S3 bucket instead of `INTAKE_DIR` (needs `--features s3`; credentials from the standard `AWS_*` variables) |
//! | `INTAKE_S3_ENDPOINT` | (AWS) | an S3-compatible server's URL, e.g. `http://127.0.0.1:8333` (plain HTTP is then allowed) |
//! | `INTAKE_S3_REGION` | `us-east-1` | the bucket's region (else `AWS_REGION`) |
//! | `INTAKE_S3_PART_SIZE` | `8388608` | bytes per multipart part (5 MiB to 5 GiB) |
//! | `INTAKE_S3_CONCURRENCY` | `4` | parts of one upload sent at once; an upload holds at most part size × (concurrency + 1) |
//! | `INTAKE_DOWNLOAD_REDIRECT_SECS` | `0` | with S3, answer downloads with `307` to a presigned `GET` valid this long (0: stream them) |
//!
//! Routes (all under `/upload`): `POST /form`, `POST /raw`, tus 1.0 and the IETF resumable
//! upload draft at `/tus/`, the chunked JSON API at `/chunked/{init,chunk,status,complete}`,
//! `GET /files/{id}`, `GET /progress/{id}`. Resumable upload state is kept in
//! `{INTAKE_DIR}/state.redb`, so uploads resume after a restart (with S3 too: the files go to the
//! bucket, the state stays there).
//!
//! The hooks show the extension points: every upload (form, raw, tus, draft, chunked) belongs to
//! the tenant named by an `X-Tenant` header (1 to 64 of `A-Z a-z 0-9 . _ -`; `public` without
//! the header; anything else is refused with `400 invalid_tenant`), is stored under
//! `tenants/{tenant}/`, and only that tenant may touch it or its file: another tenant gets `404`,
//! as if it did not exist. File names starting with a dot are refused at creation; finished and
//! cancelled uploads are logged.

use axum::{Router, response::Html, routing::get};
use http::StatusCode;
use intake::{
    Problem, Uploads,
    hooks::{AccessRequest, CreateRequest, FinishedUpload, Hooks},
    rate_limit::RateLimitLayer,
    sniff::ContentPolicy,
    state::{RedbState, UploadRecord, sweep::SweeperHandle},
    storage::{FsyncPolicy, KeyPrefix, LocalDisk, Store},
    urls::PublicUrl,
};
use std::{net::SocketAddr, str::FromStr, time::Duration};
use tokio::sync::watch;

/// Settings read from the environment.
#[derive(Debug)]
struct Settings {
    addr: SocketAddr,
    dir: String,
    prefix: String,
    max_body: u64,
    rate: u32,
    burst: u32,
    resumable_rate: u32,
    bytes_per_sec: u32,
    trusted: Vec<std::net::IpAddr>,
    public_url: Option<PublicUrl>,
    body_timeout: Duration,
    grace: Duration,
    fsync: FsyncPolicy,
    max_buf: Option<usize>,
    write_buffer: usize,
    allow: Vec<String>,
    expiry: Duration,
    sweep_every: Duration,
    reconcile_every: Duration,
    orphans_after: Duration,
    cors_origins: Vec<String>,
    s3_bucket: Option<String>,
    download_redirect: Duration,
}

fn var<T: FromStr>(name: &str, default: T) -> T
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().unwrap_or_else(|e| panic!("{name}={v:?} is not valid: {e}")),
        _ => default,
    }
}

fn list(name: &str) -> Vec<String> {
    std::env::var(name).unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl Settings {
    fn from_env() -> Self {
        Self {
            addr: var("INTAKE_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000))),
            dir: var("INTAKE_DIR", "uploads".to_owned()),
            prefix: var("INTAKE_PREFIX", "/upload".to_owned()),
            max_body: var("INTAKE_MAX_BODY", 1u64 << 30),
            rate: var("INTAKE_RATE", 20),
            burst: var("INTAKE_RATE_BURST", 40),
            resumable_rate: var("INTAKE_RESUMABLE_RATE", 200),
            bytes_per_sec: var("INTAKE_BYTES_PER_SEC", 0),
            trusted: list("INTAKE_TRUSTED_PROXIES")
                .iter()
                .map(|s| s.parse().expect("INTAKE_TRUSTED_PROXIES holds IP addresses"))
                .collect(),
            public_url: std::env::var("INTAKE_PUBLIC_URL")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.trim().parse().unwrap_or_else(|e| panic!("INTAKE_PUBLIC_URL: {e}"))),
            body_timeout: Duration::from_secs(var("INTAKE_BODY_TIMEOUT_SECS", 30)),
            grace: Duration::from_secs(var("INTAKE_SHUTDOWN_GRACE_SECS", 30)),
            fsync: match var("INTAKE_FSYNC", "never".to_owned()).as_str() {
                "never" => FsyncPolicy::Never,
                "always" => FsyncPolicy::Always,
                "finish" => FsyncPolicy::OnFinish,
                other => panic!("INTAKE_FSYNC={other:?}: use never, finish or always"),
            },
            max_buf: std::env::var("INTAKE_MAX_BUF").ok().filter(|v| !v.trim().is_empty()).map(|v| {
                v.trim().parse().ok().filter(|&n| n >= intake::serve::MIN_BUF_SIZE).unwrap_or_else(|| {
                    panic!("INTAKE_MAX_BUF={v:?}: a number of bytes, at least {}", intake::serve::MIN_BUF_SIZE)
                })
            }),
            write_buffer: var("INTAKE_WRITE_BUFFER", 256 * 1024),
            allow: list("INTAKE_ALLOW"),
            expiry: Duration::from_secs(var("INTAKE_EXPIRY_SECS", 24 * 3600)),
            sweep_every: Duration::from_secs(var("INTAKE_SWEEP_SECS", 60).max(1)),
            reconcile_every: Duration::from_secs(var("INTAKE_RECONCILE_SECS", 3600)),
            orphans_after: Duration::from_secs(var("INTAKE_ORPHAN_SECS", var("INTAKE_EXPIRY_SECS", 24 * 3600))),
            cors_origins: list("INTAKE_CORS_ORIGINS"),
            s3_bucket: std::env::var("INTAKE_S3_BUCKET").ok().filter(|b| !b.trim().is_empty()),
            download_redirect: Duration::from_secs(var("INTAKE_DOWNLOAD_REDIRECT_SECS", 0)),
        }
    }
}

fn rate_limit(s: &Settings) -> RateLimitLayer {
    let layer = match s.rate {
        0 => RateLimitLayer::unlimited_requests(),
        n => RateLimitLayer::per_second(n).burst(s.burst.max(1)),
    };
    let layer = match s.bytes_per_sec {
        0 => layer,
        n => layer.bytes_per_second(n),
    };
    let layer = layer.trusted_proxies(s.trusted.iter().copied());
    if s.rate == 0 && s.bytes_per_sec == 0 { RateLimitLayer::disabled() } else { layer }
}

/// The tenant a request speaks for: its `X-Tenant` header, 1 to 64 of `A-Z a-z 0-9 . _ -` (not
/// `.` or `..`), or `public` without one. Anything else is refused, never mapped to a default.
fn tenant(headers: &http::HeaderMap) -> Result<String, Problem> {
    let Some(value) = headers.get("x-tenant") else { return Ok("public".to_owned()) };
    let valid = |t: &str| {
        (1..=64).contains(&t.len())
            && t != "."
            && t != ".."
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    match value.to_str() {
        Ok(t) if valid(t) => Ok(t.to_owned()),
        _ => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            "X-Tenant is 1 to 64 of A-Z, a-z, 0-9, '.', '_', '-' (and not '.' or '..')",
        )),
    }
}

/// One hook of each kind.
fn hooks() -> Hooks {
    Hooks::new()
        .pre_create(|mut create: CreateRequest| async move {
            let tenant = tenant(&create.headers)?;
            // The name as the client sent it: sanitising has already stripped the dot from `meta.name`.
            if create.client_name.as_deref().is_some_and(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).starts_with('.')) {
                return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "hidden_file", "hidden files are not accepted"));
            }
            // Each tenant's files are kept under a prefix of their own: tenants/{tenant}/{id}.
            create.key_prefix = KeyPrefix::new(&format!("tenants/{tenant}"));
            create.meta.extra.insert("tenant".into(), tenant.clone());
            create.owner = Some(tenant);
            Ok(create)
        })
        .authorize(|access: AccessRequest| async move {
            let tenant = tenant(&access.headers)?;
            if access.owner.as_deref().is_none_or(|owner| owner == tenant) {
                Ok(())
            } else {
                // Another tenant's upload or file: as if it did not exist.
                Err(Problem::new(StatusCode::NOT_FOUND, "upload_not_found", "no upload or file with this id"))
            }
        })
        .post_finish(|done: FinishedUpload| async move {
            tracing::info!(id = %done.file.id, size = done.file.size, sha256 = ?done.file.digests.get("sha-256"), "upload finished");
        })
        .post_terminate(|record: UploadRecord| async move {
            tracing::info!(id = %record.id, "upload cancelled by its client");
        })
}

/// Where files go: `INTAKE_S3_BUCKET` if set, else `INTAKE_DIR`.
fn store(s: &Settings) -> std::sync::Arc<dyn Store> {
    match &s.s3_bucket {
        None => std::sync::Arc::new(LocalDisk::new(&s.dir).with_fsync(s.fsync).with_write_buffer(s.write_buffer)),
        Some(bucket) => s3_store(bucket),
    }
}

#[cfg(feature = "s3")]
fn s3_store(bucket: &str) -> std::sync::Arc<dyn Store> {
    let mut builder = intake::storage::S3::builder(bucket)
        .part_size(var("INTAKE_S3_PART_SIZE", 8usize << 20))
        .concurrency(var("INTAKE_S3_CONCURRENCY", 4usize));
    if let Ok(endpoint) = std::env::var("INTAKE_S3_ENDPOINT") {
        // A local server (SeaweedFS, MinIO) is reached over plain HTTP, its bucket in the path.
        builder = builder.allow_http(endpoint.starts_with("http://")).endpoint(endpoint);
    }
    if let Ok(region) = std::env::var("INTAKE_S3_REGION") {
        builder = builder.region(region);
    }
    let store = builder.build().unwrap_or_else(|e| panic!("INTAKE_S3_*: {e}"));
    tracing::info!(?store, "storing files in S3");
    std::sync::Arc::new(store)
}

#[cfg(not(feature = "s3"))]
fn s3_store(_: &str) -> std::sync::Arc<dyn Store> {
    panic!("INTAKE_S3_BUCKET is set, but this server was built without S3: cargo run --example server --features s3")
}

/// The whole app: the demo page, `/health`, and the uploads router at `/upload`; and the sweeper
/// of expired uploads, which runs until its handle is dropped.
fn app(s: &Settings) -> (Router, SweeperHandle) {
    let state = RedbState::open(std::path::Path::new(&s.dir).join("state.redb"))
        .unwrap_or_else(|e| panic!("cannot open the upload state in {}: {e}", s.dir));
    let uploads = Uploads::from_arc(store(s))
        .state(state)
        .hooks(hooks())
        .expiry(Some(s.expiry))
        // The sweeper below runs on its own clock; requests need not start sweeps.
        .sweep_every(None)
        .max_body(s.max_body)
        .rate_limit(rate_limit(s))
        .resumable_rate_limit(match s.resumable_rate {
            0 => RateLimitLayer::disabled(),
            n => RateLimitLayer::per_second(n).burst(n.saturating_mul(2)).trusted_proxies(s.trusted.iter().copied()),
        })
        .body_idle_timeout(s.body_timeout)
        .content_policy(ContentPolicy::default().allow(s.allow.iter().cloned()))
        .trusted_proxies(s.trusted.iter().copied());
    let uploads = match &s.public_url {
        Some(url) => uploads.public_url(url.clone()),
        None => uploads,
    };
    let uploads = match s.download_redirect {
        Duration::ZERO => uploads,
        expires_in => uploads.download_redirect(expires_in),
    };
    let sweeper =
        uploads.sweeper().every(s.sweep_every).reconcile_every(s.reconcile_every).orphans_after(Some(s.orphans_after)).spawn();
    let app = Router::new()
        .route("/", get(|| async { Html(include_str!("index.html")) }))
        .route("/health", get(|| async { "ok" }))
        .nest(&s.prefix, uploads.into_router());
    let app = if s.cors_origins.is_empty() {
        app
    } else {
        let origins = s
            .cors_origins
            .iter()
            .map(|o| o.parse().unwrap_or_else(|_| panic!("INTAKE_CORS_ORIGINS: {o:?} is not a header value")));
        app.layer(intake::cors::cors_layer(origins))
    };
    (app, sweeper)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler")
            .recv()
            .await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).init();
    let settings = Settings::from_env();
    let listener = tokio::net::TcpListener::bind(settings.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, dir = %settings.dir, "intake upload server listening; open http://{}/", listener.local_addr()?);

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let (app, _sweeper) = app(&settings);
    let settings_max_buf = settings.max_buf;
    let mut server = tokio::spawn({
        let mut stop_rx = stop_rx.clone();
        async move {
            // intake::serve is axum::serve with a bound on each connection's buffers.
            let serve = intake::serve::serve(listener, app);
            let serve = match settings_max_buf {
                Some(max) => serve.max_buf_size(max),
                None => serve,
            };
            serve
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                })
                .await
        }
    });
    tokio::select! {
        result = &mut server => return result.expect("server task").map_err(std::io::Error::other),
        _ = shutdown_signal() => {}
    }
    tracing::info!(grace = ?settings.grace, "shutting down: no new connections; uploads in flight may finish");
    let _ = stop_tx.send(true);
    let _ = stop_rx.borrow_and_update();
    match tokio::time::timeout(settings.grace, &mut server).await {
        Ok(result) => result.expect("server task").map_err(std::io::Error::other)?,
        Err(_) => {
            // Dropping the connections drops their uploads, which remove what they had written.
            tracing::warn!("grace period over: aborting the uploads still in flight");
            server.abort();
        }
    }
    tracing::info!("stopped");
    Ok(())
}
