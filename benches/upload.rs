//! Upload benchmark: intake's full layer stack against bare axum handlers.
//!
//! ```text
//! cargo bench --bench upload                          # 1 GiB raw, 100 × 20 MiB raw, 20 000 forms, 1 GiB tus
//! INTAKE_BENCH_QUICK=1 cargo bench --bench upload     # 64 MiB raw, 20 × 2 MiB raw, 2 000 forms, 64 MiB tus
//! INTAKE_BENCH_DIAG=0 cargo bench --bench upload      # without the diagnostic rows
//! INTAKE_BENCH_PHASES=ac cargo bench --bench upload   # only some of the phases a, b, c, d
//! INTAKE_BENCH_ONLY=bare,full cargo bench ...         # only these rows (names as in the progress lines)
//! INTAKE_BENCH_ONLY=tus cargo bench ...               # only (d), the tus rows and their baseline
//! INTAKE_BENCH_RUNS=5 cargo bench --bench upload      # 5 runs (default 2 in (a), 3 in (c) and (d))
//! INTAKE_BENCH_TUS_PATCH_MIB=1,5,64 cargo bench ...   # (d) with these PATCH sizes (default 5)
//! INTAKE_BENCH_TMPDIR=/tmp cargo bench --bench upload # storage elsewhere than target/tmp
//! ```
//!
//! What it measures, printed side by side with targets:
//!
//! - **(a)** one large raw upload (`POST /upload/raw?name=big.bin`, `application/octet-stream`,
//!   with `Content-Length`) through the real router (rate limit disabled, otherwise its
//!   defaults: SHA-256, `LocalDisk::new`) versus a bare axum handler that streams the request
//!   body to a file through a 256 KiB `BufWriter` (no hashing, no fsync). Best of two runs.
//! - **(b)** the server process's peak RSS (`VmHWM`) during (a), and during 100 concurrent raw
//!   uploads of 20 MiB.
//! - **(c)** 4 KiB multipart uploads per second over 16 keep-alive connections: the router's
//!   `POST /upload/form` versus a bare handler that parses the form with `multer` and writes the
//!   file (create, write, done). Best of three runs.
//! - **(d)** one large tus 1.0 upload (`POST /upload/tus/` with `Upload-Length`, then `PATCH`es
//!   of `application/offset+octet-stream` with `Upload-Offset`, one after the other as tus
//!   clients send them) through the real router with upload state in `RedbState` (the default of
//!   `uploads_router()`; rate limit disabled, otherwise its defaults: SHA-256 carried across the
//!   `PATCH`es, `LocalDisk::new`): the whole upload in one `PATCH`, and in 5 MiB `PATCH`es. Timed
//!   from the `POST` to the last `204`, against the same bare handler as (a) receiving the same
//!   bytes in one `POST`; the server's peak RSS too. The median of three runs. The same uploads
//!   without hashing (`.algorithms([])`) show what SHA-256 costs. Each upload's stored SHA-256
//!   is checked against the bytes sent. Diagnostics: the bare handler hashing, the tus server
//!   with `MemoryState` (what `RedbState` costs per `PATCH`), and the fixed cost of a `PATCH`
//!   (the median time of 100 `PATCH`es that carry no bytes, after each upload).
//!
//! Diagnostic rows take one thing away from the full stack (hashing, the file system) or add it
//! to the bare handler (SHA-256, fsync), so that a gap can be traced to its cause.
//!
//! Every server runs in its own process — this binary re-executed with `INTAKE_BENCH_SERVE` set —
//! started fresh for every measurement, so each peak RSS is its own scenario's. Storage goes to a
//! fresh directory under Cargo's `target/tmp` (or `INTAKE_BENCH_TMPDIR`), deleted after each
//! scenario of (a) and (b) and after the whole of (c): the numbers are "disk as the OS gives it"
//! (page cache included). Small files are sensitive to the state of the file system: on ext4,
//! creating files within minutes of deleting thousands is many times slower (recently deleted
//! inodes are passed over), so (c) probes the cost of a file creation before each round and
//! prints it.
//!
//! Missing a target is reported, never fatal: the process exits non-zero only when something
//! broke (a non-201 answer, a timeout, a server that did not start, bytes missing on disk).

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
    serve::ListenerExt,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use intake::{
    Uploads,
    rate_limit::RateLimitLayer,
    state::RedbState,
    storage::{FsyncPolicy, InMemory, LocalDisk},
};
use sha2::{Digest, Sha256};
use std::{
    convert::Infallible,
    fmt::Write as _,
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::io::{AsyncWriteExt, BufWriter};

/// Set in a server child: which server to run.
const SERVE_ENV: &str = "INTAKE_BENCH_SERVE";
/// Set in a server child: its storage directory.
const DIR_ENV: &str = "INTAKE_BENCH_DIR";
/// What a server child prints on stdout once it listens, followed by its port.
const PORT_LINE: &str = "INTAKE_BENCH_PORT=";

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Client chunk and bare-server write buffer size.
const CHUNK: usize = 256 * 1024;
/// Size of one form upload's file.
const FORM_FILE: usize = 4 * 1024;
/// Connections of the form phase.
const FORM_CONNECTIONS: usize = 16;

const TARGET_A_RATIO: f64 = 0.90;
const TARGET_RSS_ONE: u64 = 32 * MIB;
const TARGET_RSS_MANY: u64 = 96 * MIB;
const TARGET_C_RATIO: f64 = 0.85;
const TARGET_D_ONE_RATIO: f64 = 0.90;
const TARGET_D_PATCHES_RATIO: f64 = 0.85;
/// The PATCH size the (d) target is set for.
const TARGET_D_PATCH: u64 = 5 * MIB;
/// tus's version header, on every request.
const TUS_RESUMABLE: (&str, &str) = ("tus-resumable", "1.0.0");

// ---------------------------------------------------------------------------------------------
// Servers (child processes)
// ---------------------------------------------------------------------------------------------

/// The servers under test. `Full` and `Bare` are the comparison the targets are about; the
/// others are diagnostics that take one thing away from, or add one thing to, either side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The real router on its defaults (SHA-256, `LocalDisk::new`), rate limit disabled.
    Full,
    /// The full stack without hashing (`.algorithms([])`).
    FullNoHash,
    /// The full stack with `FsyncPolicy::OnFinish`.
    FullFsync,
    /// The full stack with `FsyncPolicy::Never`.
    FullNoFsync,
    /// The full stack with no hashing and `FsyncPolicy::Never`: the layers and the store's own
    /// bookkeeping.
    FullLean,
    /// The full stack with a 64 KiB `LocalDisk` write buffer.
    FullBuf64k,
    /// The full stack (SHA-256) over `InMemory`: layers and protocol without a file system.
    /// Only for small uploads: it keeps every file in memory.
    FullMemory,
    /// The real router on its defaults with upload state in `RedbState` (as `uploads_router()`),
    /// rate limit disabled: for tus.
    Tus,
    /// The same without hashing (`.algorithms([])`).
    TusNoHash,
    /// The same with upload state in memory (`MemoryState`): what `RedbState` costs each `PATCH`.
    TusMemState,
    /// The same without hashing and with upload state in memory.
    TusNoHashMemState,
    /// Bare axum handlers: stream to a file; multer to a file.
    Bare,
    /// The bare raw handler reading the body and dropping it: HTTP alone.
    BareDrain,
    /// The bare handlers hashing every file with SHA-256.
    BareSha,
    /// The bare handlers hashing with SHA-256 and fsyncing every file before answering.
    BareShaFsync,
}

const KINDS: [Kind; 15] = [
    Kind::Full,
    Kind::FullNoHash,
    Kind::FullFsync,
    Kind::FullNoFsync,
    Kind::FullLean,
    Kind::FullBuf64k,
    Kind::FullMemory,
    Kind::Tus,
    Kind::TusNoHash,
    Kind::TusMemState,
    Kind::TusNoHashMemState,
    Kind::Bare,
    Kind::BareDrain,
    Kind::BareSha,
    Kind::BareShaFsync,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::FullNoHash => "full-nohash",
            Kind::FullFsync => "full-fsync",
            Kind::FullNoFsync => "full-nofsync",
            Kind::FullLean => "full-lean",
            Kind::FullBuf64k => "full-buf64k",
            Kind::FullMemory => "full-memory",
            Kind::Tus => "tus",
            Kind::TusNoHash => "tus-nohash",
            Kind::TusMemState => "tus-memstate",
            Kind::TusNoHashMemState => "tus-nohash-memstate",
            Kind::Bare => "bare",
            Kind::BareDrain => "bare-drain",
            Kind::BareSha => "bare-sha",
            Kind::BareShaFsync => "bare-sha-fsync",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        KINDS.into_iter().find(|k| k.name() == s)
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Full => "full stack (SHA-256, LocalDisk::new)",
            Kind::FullNoHash => "diag: full, no hashing",
            Kind::FullFsync => "diag: full, FsyncPolicy::OnFinish",
            Kind::FullNoFsync => "diag: full, FsyncPolicy::Never",
            Kind::FullLean => "diag: full, no hashing, FsyncPolicy::Never",
            Kind::FullBuf64k => "diag: full, LocalDisk write buffer 64 KiB",
            Kind::FullMemory => "diag: full, InMemory store (no disk)",
            Kind::Tus => "tus (SHA-256, RedbState)",
            Kind::TusNoHash => "tus, no hashing",
            Kind::TusMemState => "diag: tus, MemoryState",
            Kind::TusNoHashMemState => "diag: tus, no hashing, MemoryState",
            Kind::Bare => "bare axum handler",
            Kind::BareDrain => "diag: bare, body read and dropped (no file)",
            Kind::BareSha => "diag: bare + SHA-256",
            Kind::BareShaFsync => "diag: bare + SHA-256 + fsync",
        }
    }

    fn is_bare(self) -> bool {
        matches!(self, Kind::Bare | Kind::BareDrain | Kind::BareSha | Kind::BareShaFsync)
    }

    fn hashes(self) -> bool {
        !matches!(
            self,
            Kind::FullNoHash | Kind::FullLean | Kind::TusNoHash | Kind::TusNoHashMemState | Kind::Bare | Kind::BareDrain
        )
    }

    fn is_tus(self) -> bool {
        matches!(self, Kind::Tus | Kind::TusNoHash | Kind::TusMemState | Kind::TusNoHashMemState)
    }

    /// The fsync policy of a full stack: `None` for `LocalDisk::new`'s default.
    fn fsync(self) -> Option<FsyncPolicy> {
        match self {
            Kind::FullFsync => Some(FsyncPolicy::OnFinish),
            Kind::FullNoFsync | Kind::FullLean => Some(FsyncPolicy::Never),
            _ => None,
        }
    }

    /// Whether this row differs from the full stack's defaults (a diagnostic that would equal
    /// `full` is left out).
    fn differs_from_defaults(self) -> bool {
        self.fsync().is_none_or(|f| f != FsyncPolicy::default())
    }
}

/// The child process: serve until killed, or until the parent closes our stdin.
fn serve(kind: &str) {
    let kind = Kind::parse(kind).unwrap_or_else(|| panic!("{SERVE_ENV}={kind:?}: not one of {:?}", KINDS.map(Kind::name)));
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("INTAKE_BENCH_DIR is set"));
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin();
        let mut sink = [0u8; 64];
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    // Storage failures are logged, not shown to the client: let them reach our stderr.
    tracing_subscriber::fmt().with_ansi(false).with_max_level(tracing::Level::WARN).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("server runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let app = if kind.is_bare() { bare_router(kind, dir) } else { full_router(kind, dir) };
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{PORT_LINE}{port}").and_then(|()| stdout.flush()).expect("write the port");
        drop(stdout);
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.expect("serve");
    });
}

fn full_router(kind: Kind, dir: PathBuf) -> Router {
    let state = dir.join("state.redb");
    let disk = match kind.fsync() {
        Some(policy) => LocalDisk::new(dir).with_fsync(policy),
        None => LocalDisk::new(dir),
    };
    let uploads = match kind {
        Kind::FullMemory => Uploads::new(InMemory::new()),
        Kind::FullBuf64k => Uploads::new(disk.with_write_buffer(64 * 1024)),
        _ => Uploads::new(disk),
    };
    let mut uploads = uploads.rate_limit(RateLimitLayer::disabled()).max_body(2 << 30);
    if !kind.hashes() {
        uploads = uploads.algorithms([]);
    }
    if matches!(kind, Kind::Tus | Kind::TusNoHash) {
        uploads = uploads.state(RedbState::open(&state).expect("open state.redb"));
    }
    Router::new().nest("/upload", uploads.into_router())
}

#[derive(Clone)]
struct Bare {
    dir: Arc<PathBuf>,
    next: Arc<AtomicU64>,
    /// Hash every file with SHA-256.
    hash: bool,
    /// Fsync every file before answering.
    fsync: bool,
}

impl Bare {
    fn new_path(&self) -> PathBuf {
        self.dir.join(format!("bare-{}.bin", self.next.fetch_add(1, Ordering::Relaxed)))
    }

    fn hasher(&self) -> Option<Sha256> {
        self.hash.then(Sha256::new)
    }

    /// The end of a file: its digest (computed, then dropped) and the fsync, if asked for.
    async fn finish(&self, file: &mut tokio::fs::File, hasher: Option<Sha256>) -> std::io::Result<()> {
        if let Some(hasher) = hasher {
            std::hint::black_box(hasher.finalize());
        }
        if self.fsync {
            file.sync_all().await?;
        }
        Ok(())
    }
}

fn bare_router(kind: Kind, dir: PathBuf) -> Router {
    std::fs::create_dir_all(&dir).expect("create the storage directory");
    let state = Bare { dir: Arc::new(dir), next: Arc::default(), hash: kind.hashes(), fsync: kind == Kind::BareShaFsync };
    if kind == Kind::BareDrain {
        return Router::new().route("/upload/raw", post(bare_drain)).with_state(state);
    }
    Router::new().route("/upload/raw", post(bare_raw)).route("/upload/form", post(bare_form)).with_state(state)
}

fn created(sizes: &[u64]) -> Response {
    let files: Vec<_> = sizes.iter().map(|size| serde_json::json!({ "size": size })).collect();
    (StatusCode::CREATED, axum::Json(serde_json::json!({ "files": files }))).into_response()
}

fn failed(err: std::io::Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
}

/// axum's stream-to-file pattern: the body's data stream into a 256 KiB `BufWriter` over a file.
async fn bare_raw(State(bare): State<Bare>, body: Body) -> Response {
    let stored = async {
        let file = tokio::fs::File::create(bare.new_path()).await?;
        let mut out = BufWriter::with_capacity(CHUNK, file);
        let mut hasher = bare.hasher();
        let mut stream = body.into_data_stream();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(std::io::Error::other)?;
            if let Some(h) = &mut hasher {
                h.update(&chunk);
            }
            out.write_all(&chunk).await?;
            size += chunk.len() as u64;
        }
        out.flush().await?;
        bare.finish(out.get_mut(), hasher).await?;
        out.shutdown().await?;
        Ok::<_, std::io::Error>(size)
    };
    match stored.await {
        Ok(size) => created(&[size]),
        Err(e) => failed(e),
    }
}

/// Reads the body to its end and keeps nothing.
async fn bare_drain(body: Body) -> Response {
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => size += chunk.len() as u64,
            Err(e) => return failed(std::io::Error::other(e)),
        }
    }
    created(&[size])
}

/// `multer` over the body; each file part written to a new file (create, write, done).
async fn bare_form(State(bare): State<Bare>, headers: HeaderMap, body: Body) -> Response {
    let boundary = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|ct| multer::parse_boundary(ct).ok());
    let Some(boundary) = boundary else {
        return (StatusCode::BAD_REQUEST, "not multipart/form-data").into_response();
    };
    let mut multipart = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut sizes = Vec::new();
    let stored = async {
        while let Some(mut field) = multipart.next_field().await.map_err(std::io::Error::other)? {
            if field.file_name().is_none() {
                continue;
            }
            let mut file = tokio::fs::File::create(bare.new_path()).await?;
            let mut hasher = bare.hasher();
            let mut size = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(std::io::Error::other)? {
                if let Some(h) = &mut hasher {
                    h.update(&chunk);
                }
                file.write_all(&chunk).await?;
                size += chunk.len() as u64;
            }
            file.flush().await?;
            bare.finish(&mut file, hasher).await?;
            sizes.push(size);
        }
        Ok::<_, std::io::Error>(())
    };
    match stored.await {
        Ok(()) => created(&sizes),
        Err(e) => failed(e),
    }
}

// ---------------------------------------------------------------------------------------------
// The parent: starts servers, runs the load, reads their memory
// ---------------------------------------------------------------------------------------------

type Res<T> = Result<T, String>;

/// A running server child with its own storage directory; killed and cleaned up on drop.
struct Server {
    child: Child,
    port: u16,
    kind: Kind,
    /// Peak RSS right after it started listening.
    start_hwm: u64,
    /// Its storage; `None` once handed over by [`Server::retire_keeping_files`].
    dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a `kind` server storing into a fresh directory under `root`.
    fn start(kind: Kind, root: &Path) -> Res<Server> {
        std::fs::create_dir_all(root).map_err(|e| format!("create {}: {e}", root.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("intake-bench-")
            .tempdir_in(root)
            .map_err(|e| format!("temp dir under {}: {e}", root.display()))?;
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .env(SERVE_ENV, kind.name())
            .env(DIR_ENV, dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start the {} server: {e}", kind.name()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.strip_prefix(PORT_LINE) {
                    let _ = tx.send(port.trim().parse::<u16>());
                }
            }
        });
        let mut server = Server { child, port: 0, kind, start_hwm: 0, dir: Some(dir) };
        server.port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => return Err(format!("the {} server printed a bad port: {e}", kind.name())),
            Err(_) => return Err(format!("the {} server did not report its port within 30 s", kind.name())),
        };
        server.start_hwm = server.peak_rss()?;
        Ok(server)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The process's peak resident set size so far (`VmHWM`), in bytes.
    fn peak_rss(&self) -> Res<u64> {
        proc_status_kib(&format!("/proc/{}/status", self.child.id()), "VmHWM:").map(|kib| kib * KIB)
    }

    /// What the scenario cost the server: time given, memory and threads from `/proc`.
    fn run(&self, elapsed: Duration) -> Res<Run> {
        let threads = proc_status_kib(&format!("/proc/{}/status", self.child.id()), "Threads:")?;
        Ok(Run { elapsed, peak_rss: self.peak_rss()?, start_rss: self.start_hwm, threads, empty_patch: None })
    }

    /// Files stored (not counting metadata), and their total size.
    fn stored(&self) -> Res<(u64, u64)> {
        fn walk(dir: &Path, acc: &mut (u64, u64)) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                if meta.is_dir() {
                    walk(&entry.path(), acc)?;
                } else if entry.path().extension().is_none_or(|e| e == "bin") {
                    acc.0 += 1;
                    acc.1 += meta.len();
                }
            }
            Ok(())
        }
        let mut acc = (0, 0);
        let dir = self.dir.as_ref().expect("storage of a running server").path();
        walk(dir, &mut acc).map_err(|e| format!("list {}: {e}", dir.display()))?;
        Ok(acc)
    }

    /// Checks that exactly `files` files of `bytes` bytes in all were stored.
    fn verify(&self, files: u64, bytes: u64) -> Res<()> {
        if matches!(self.kind, Kind::FullMemory | Kind::BareDrain) {
            return Ok(());
        }
        match self.stored()? {
            (f, b) if f == files && b == bytes => Ok(()),
            (f, b) => {
                Err(format!("the {} server stored {f} files, {b} bytes; expected {files} files, {bytes} bytes", self.kind.name()))
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only our own child, by its handle; then the temp dir goes with the fields.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the scenarios' storage directories go: `INTAKE_BENCH_TMPDIR`, else Cargo's
/// `target/tmp`.
fn storage_root() -> PathBuf {
    match std::env::var_os("INTAKE_BENCH_TMPDIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    }
}

/// A value in kB from a `/proc/*/status` line such as `VmHWM:     1234 kB`.
fn proc_status_kib(path: &str, key: &str) -> Res<u64> {
    let status = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key} in {path}"))
}

/// Stops a server, deletes its files and lets the kernel write back what is dirty, so the next
/// scenario starts from a quiet disk.
fn retire(server: Server) {
    drop(server);
    let _ = Command::new("sync").status();
}

impl Server {
    /// Stops the server but keeps its files, to delete later: ext4 passes over inodes deleted in
    /// the last minute or more when it allocates new ones (`recently_deleted`), so creating files
    /// right after deleting thousands is slow — the next scenario would pay for this one.
    fn retire_keeping_files(mut self) -> Option<tempfile::TempDir> {
        let dir = self.dir.take();
        drop(self);
        let _ = Command::new("sync").status();
        dir
    }
}

/// 256 KiB of pseudo-random bytes (xorshift64*), starting with a line of ordinary text so that
/// nothing sniffs it as a known format.
fn data_pool() -> Bytes {
    let mut buf = Vec::with_capacity(CHUNK);
    buf.extend_from_slice(b"intake benchmark data\n");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    while buf.len() < CHUNK {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        buf.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    buf.truncate(CHUNK);
    Bytes::from(buf)
}

/// `size` bytes as a stream of 256 KiB chunks that share one buffer: the client holds no more
/// than the pool however large the upload.
fn body_stream(pool: Bytes, size: u64) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    body_stream_at(pool, 0, size)
}

/// Bytes `start..start + size` of the pool repeated without end, as slices of the pool (up to
/// 256 KiB each): a tus `PATCH` at `start` sends the bytes a single upload would have there.
fn body_stream_at(pool: Bytes, start: u64, size: u64) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures_util::stream::iter(pool_slices(start, size).map(move |range| Ok(pool.slice(range))))
}

/// The pool ranges that make up bytes `start..start + size` of the endless repetition.
fn pool_slices(start: u64, size: u64) -> impl Iterator<Item = std::ops::Range<usize>> {
    let (chunk, end) = (CHUNK as u64, start + size);
    (start / chunk..end.div_ceil(chunk)).map(move |i| {
        let (lo, hi) = ((i * chunk).max(start), ((i + 1) * chunk).min(end));
        (lo - i * chunk) as usize..(hi - i * chunk) as usize
    })
}

/// The SHA-256 (lowercase hex) of the first `size` bytes of the endless repetition of the pool.
fn pool_sha256(pool: &Bytes, size: u64) -> String {
    let mut hasher = Sha256::new();
    for range in pool_slices(0, size) {
        hasher.update(&pool[range]);
    }
    hasher.finalize().iter().fold(String::with_capacity(64), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

fn client(pool_idle: usize) -> Res<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(pool_idle)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("build the client: {e}"))
}

/// An error with its sources: reqwest's own message alone hides what went wrong.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let _ = write!(out, ": {e}");
        source = e.source();
    }
    out
}

/// Reads an answer to its end and checks it is `201 Created`.
async fn expect_created(what: &str, res: reqwest::Response) -> Res<()> {
    let status = res.status();
    let body = res.bytes().await.map_err(|e| format!("{what}: reading the answer: {e}"))?;
    if status != reqwest::StatusCode::CREATED {
        return Err(format!("{what}: {status}: {}", String::from_utf8_lossy(&body[..body.len().min(500)])));
    }
    Ok(())
}

/// One raw upload of `size` bytes; the time until the `201` has been read.
async fn upload_raw(client: &reqwest::Client, url: &str, pool: &Bytes, size: u64) -> Res<Duration> {
    let started = Instant::now();
    let res = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(body_stream(pool.clone(), size)))
        .send()
        .await;
    let res = match res {
        Ok(res) => res,
        Err(e) => return Err(format!("POST {url}: {}{}", chain(&e), diagnose(client, url, pool).await)),
    };
    expect_created(url, res).await?;
    Ok(started.elapsed())
}

/// Reads an answer to its end and checks its status.
async fn expect_status(what: &str, res: reqwest::Response, want: reqwest::StatusCode) -> Res<reqwest::header::HeaderMap> {
    let (status, headers) = (res.status(), res.headers().clone());
    let body = res.bytes().await.map_err(|e| format!("{what}: reading the answer: {e}"))?;
    if status != want {
        return Err(format!("{what}: {status} (expected {want}): {}", String::from_utf8_lossy(&body[..body.len().min(500)])));
    }
    Ok(headers)
}

/// How a tus upload is sent: in one `PATCH`, or in `PATCH`es of this many bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Patches {
    One,
    Of(u64),
}

impl Patches {
    fn name(self) -> String {
        match self {
            Patches::One => "1patch".to_owned(),
            Patches::Of(n) if n % MIB == 0 => format!("{}mib", n / MIB),
            Patches::Of(n) => format!("{}kib", n / KIB),
        }
    }

    fn label(self) -> String {
        match self {
            Patches::One => "one PATCH".to_owned(),
            Patches::Of(n) if n % MIB == 0 => format!("{} MiB PATCHes", n / MIB),
            Patches::Of(n) => format!("{} KiB PATCHes", n / KIB),
        }
    }
}

/// One tus upload of `size` bytes: `POST {prefix}/tus/` with `Upload-Length`, then `PATCH`es one
/// after the other. The time until the last `204` has been read.
async fn upload_tus(client: &reqwest::Client, base: &str, pool: &Bytes, size: u64, patches: Patches) -> Res<(Duration, String)> {
    let started = Instant::now();
    let create = format!("{base}/upload/tus/");
    let res = client
        .post(&create)
        .header(TUS_RESUMABLE.0, TUS_RESUMABLE.1)
        .header("upload-length", size)
        // "filename big.bin"
        .header("upload-metadata", "filename YmlnLmJpbg==")
        .send()
        .await
        .map_err(|e| format!("POST {create}: {}", chain(&e)))?;
    let headers = expect_status(&create, res, reqwest::StatusCode::CREATED).await?;
    let location =
        headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| format!("POST {create}: no Location"))?;
    let url = if location.starts_with('/') { format!("{base}{location}") } else { location.to_owned() };
    let step = match patches {
        Patches::One => size,
        Patches::Of(n) => n,
    };
    let mut offset = 0u64;
    while offset < size {
        let len = step.min(size - offset);
        let res = client
            .patch(&url)
            .header(TUS_RESUMABLE.0, TUS_RESUMABLE.1)
            .header(header::CONTENT_TYPE, "application/offset+octet-stream")
            .header("upload-offset", offset)
            .header(header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(body_stream_at(pool.clone(), offset, len)))
            .send()
            .await
            .map_err(|e| format!("PATCH {url} at {offset}: {}", chain(&e)))?;
        let what = format!("PATCH {url} at {offset}");
        let headers = expect_status(&what, res, reqwest::StatusCode::NO_CONTENT).await?;
        let new_offset = headers.get("upload-offset").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if new_offset != Some(offset + len) {
            return Err(format!("{what}: Upload-Offset {new_offset:?}, expected {}", offset + len));
        }
        offset += len;
    }
    Ok((started.elapsed(), url))
}

/// After a failed upload (a server that answers early and closes the connection shows up as a
/// broken pipe): what the server says to a small upload of the same bytes to the same URL.
async fn diagnose(client: &reqwest::Client, url: &str, pool: &Bytes) -> String {
    let small = pool.slice(..16 * 1024);
    let res = client.post(url).header(header::CONTENT_TYPE, "application/octet-stream").body(small).send().await;
    match res {
        Ok(res) => {
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            format!("\n  (a 16 KiB upload of the same data to the same URL gets {status}: {body})")
        }
        Err(e) => format!("\n  (a 16 KiB upload to the same URL fails too: {})", chain(&e)),
    }
}

async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = Res<T>>) -> Res<T> {
    tokio::time::timeout(limit, fut).await.map_err(|_| format!("{what}: no result within {limit:?}"))?
}

/// What one server did in one scenario.
#[derive(Clone, Copy, Debug)]
struct Run {
    elapsed: Duration,
    peak_rss: u64,
    start_rss: u64,
    /// Threads of the server at the end (blocking-pool threads linger 10 s, so about the peak).
    threads: u64,
    /// (d), diagnostic: the median time of a `PATCH` carrying no bytes (its fixed cost).
    empty_patch: Option<Duration>,
}

/// (a): one raw upload of `size` bytes into a fresh server.
async fn scenario_one(kind: Kind, root: &Path, pool: &Bytes, size: u64, limit: Duration) -> Res<Run> {
    let server = Server::start(kind, root)?;
    let client = client(1)?;
    let url = server.url("/upload/raw?name=big.bin");
    let elapsed = within(limit, &url, upload_raw(&client, &url, pool, size)).await?;
    server.verify(1, size)?;
    let run = server.run(elapsed)?;
    retire(server);
    Ok(run)
}

/// (d): one tus upload of the plan's size into a fresh server; its stored SHA-256 checked against
/// `sha256` (and its absence when the server does not hash); with the diagnostics, the fixed
/// cost of a `PATCH` after it.
async fn scenario_tus(plan: &Plan, kind: Kind, root: &Path, pool: &Bytes, patches: Patches, sha256: &str) -> Res<Run> {
    let (size, limit, probe) = (plan.tus_size, plan.limit, plan.diag);
    let server = Server::start(kind, root)?;
    let client = client(1)?;
    let base = server.url("");
    let (elapsed, url) = within(limit, "tus upload", upload_tus(&client, &base, pool, size, patches)).await?;
    server.verify(1, size)?;
    let stored = within(limit, "the stored digest", stored_sha256(&client, &url)).await?;
    match (kind.hashes(), stored) {
        (true, Some(d)) if d == sha256 => {}
        (false, None) => {}
        (_, stored) => {
            return Err(format!("the {} server stored SHA-256 {stored:?}; the bytes sent have {sha256}", kind.name()));
        }
    }
    let empty_patch = if probe { Some(within(limit, "empty PATCHes", empty_patches(&client, &base)).await?) } else { None };
    let run = Run { empty_patch, ..server.run(elapsed)? };
    retire(server);
    Ok(run)
}

/// The SHA-256 the server catalogued for a finished upload: the `ETag` of its download.
async fn stored_sha256(client: &reqwest::Client, url: &str) -> Res<Option<String>> {
    let res = client.get(url).header(header::RANGE, "bytes=0-0").send().await.map_err(|e| format!("GET {url}: {}", chain(&e)))?;
    let headers = expect_status(url, res, reqwest::StatusCode::PARTIAL_CONTENT).await?;
    Ok(headers.get(header::ETAG).and_then(|v| v.to_str().ok()).map(|etag| etag.trim_matches('"').to_owned()))
}

/// The fixed cost of a `PATCH`: the median time of 100 that carry no bytes, after the upload of
/// (d), to a second upload (of 2 bytes, 1 of them sent first so that nothing is sniffed).
async fn empty_patches(client: &reqwest::Client, base: &str) -> Res<Duration> {
    let create = format!("{base}/upload/tus/");
    let res = client
        .post(&create)
        .header(TUS_RESUMABLE.0, TUS_RESUMABLE.1)
        .header("upload-length", 2)
        .header(header::CONTENT_TYPE, "application/offset+octet-stream")
        .body("x")
        .send()
        .await
        .map_err(|e| format!("POST {create}: {}", chain(&e)))?;
    let headers = expect_status(&create, res, reqwest::StatusCode::CREATED).await?;
    let location = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).ok_or("no Location")?;
    let url = if location.starts_with('/') { format!("{base}{location}") } else { location.to_owned() };
    let mut times = Vec::with_capacity(100);
    for _ in 0..100 {
        let started = Instant::now();
        let res = client
            .patch(&url)
            .header(TUS_RESUMABLE.0, TUS_RESUMABLE.1)
            .header(header::CONTENT_TYPE, "application/offset+octet-stream")
            .header("upload-offset", 1)
            .header(header::CONTENT_LENGTH, 0)
            .send()
            .await
            .map_err(|e| format!("PATCH {url}: {}", chain(&e)))?;
        expect_status(&url, res, reqwest::StatusCode::NO_CONTENT).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// (b): `count` concurrent raw uploads of `size` bytes each into a fresh server.
async fn scenario_many(kind: Kind, root: &Path, pool: &Bytes, count: usize, size: u64, limit: Duration) -> Res<Run> {
    let server = Server::start(kind, root)?;
    let client = client(count)?;
    let started = Instant::now();
    let uploads = (0..count).map(|i| {
        let (client, pool) = (client.clone(), pool.clone());
        let url = server.url(&format!("/upload/raw?name=part-{i}.bin"));
        tokio::spawn(async move { upload_raw(&client, &url, &pool, size).await })
    });
    let uploads: Vec<_> = uploads.collect();
    within(limit, "concurrent raw uploads", async {
        for upload in uploads {
            upload.await.map_err(|e| format!("upload task: {e}"))??;
        }
        Ok(())
    })
    .await?;
    let elapsed = started.elapsed();
    server.verify(count as u64, count as u64 * size)?;
    let run = server.run(elapsed)?;
    retire(server);
    Ok(run)
}

/// The bytes of form upload number `i`: 4 KiB, an ordinary prefix, then pseudo-random bytes.
fn form_file(pool: &Bytes, i: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(FORM_FILE);
    data.extend_from_slice(b"x.bin 4k\n");
    let offset = 64 + (i * 97) % (CHUNK - FORM_FILE - 64);
    data.extend_from_slice(&pool[offset..offset + FORM_FILE - data.len()]);
    data
}

/// Sends form uploads numbered from the shared counter until it reaches `end`.
async fn form_worker(client: reqwest::Client, url: String, pool: Bytes, next: Arc<AtomicUsize>, end: usize) -> Res<()> {
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= end {
            return Ok(());
        }
        let part = reqwest::multipart::Part::bytes(form_file(&pool, i))
            .file_name("x.bin")
            .mime_str("application/octet-stream")
            .map_err(|e| e.to_string())?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let res = client.post(&url).multipart(form).send().await.map_err(|e| format!("POST {url}: {}", chain(&e)))?;
        expect_created(&url, res).await?;
    }
}

async fn form_batch(client: &reqwest::Client, url: &str, pool: &Bytes, count: usize) -> Res<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..FORM_CONNECTIONS)
        .map(|_| tokio::spawn(form_worker(client.clone(), url.to_owned(), pool.clone(), next.clone(), count)))
        .collect();
    for worker in workers {
        worker.await.map_err(|e| format!("form task: {e}"))??;
    }
    Ok(())
}

/// (c): `count` form uploads (after a short uncounted warm-up) over 16 connections.
async fn scenario_forms(
    kind: Kind,
    root: &Path,
    pool: &Bytes,
    count: usize,
    limit: Duration,
    graveyard: &mut Vec<tempfile::TempDir>,
) -> Res<Run> {
    let server = Server::start(kind, root)?;
    let client = client(FORM_CONNECTIONS)?;
    let url = server.url("/upload/form");
    let warmup = (count / 20).max(FORM_CONNECTIONS);
    within(limit, "form warm-up", form_batch(&client, &url, pool, warmup)).await?;
    let started = Instant::now();
    within(limit, "form uploads", form_batch(&client, &url, pool, count)).await?;
    let elapsed = started.elapsed();
    server.verify((warmup + count) as u64, (warmup + count) as u64 * FORM_FILE as u64)?;
    let run = server.run(elapsed)?;
    graveyard.extend(server.retire_keeping_files());
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// Plan, report
// ---------------------------------------------------------------------------------------------

struct Plan {
    quick: bool,
    /// Which of the phases a, b, c to run.
    phases: String,
    /// Whether to add the diagnostic rows.
    diag: bool,
    one_size: u64,
    many_count: usize,
    many_size: u64,
    forms: usize,
    /// Runs of each row of (a); the best one counts.
    runs: usize,
    /// Runs of each row of (c): one more than (a), as small-file numbers on a shared disk vary
    /// more.
    form_runs: usize,
    /// Size of the tus upload of (d).
    tus_size: u64,
    /// The PATCH sizes of (d), besides one PATCH for the whole upload.
    tus_patches: Vec<u64>,
    /// Runs of each row of (d); the median counts.
    tus_runs: usize,
    /// Time limit of each scenario.
    limit: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// (a) one large raw upload.
    One,
    /// (b) many concurrent raw uploads.
    Many,
    /// (c) small form uploads.
    Forms,
    /// (d) one large tus upload.
    Tus,
}

/// One server configuration in one phase, with its runs.
struct Row {
    phase: Phase,
    kind: Kind,
    /// Diagnostic: storage on tmpfs (`/dev/shm`), to tell file system costs from the server's.
    tmpfs: bool,
    /// How a tus row sends its upload.
    patches: Option<Patches>,
    runs: Vec<Run>,
    /// Why a diagnostic row stopped (a failure of a main row ends the benchmark).
    failure: Option<String>,
}

impl Row {
    fn new(phase: Phase, kind: Kind, tmpfs: bool) -> Self {
        Row { phase, kind, tmpfs, patches: None, runs: Vec::new(), failure: None }
    }

    /// A row of (d): a tus server, or the bare baseline when `patches` is `None`.
    fn tus(kind: Kind, patches: Option<Patches>) -> Self {
        Row { patches, ..Row::new(Phase::Tus, kind, false) }
    }

    fn diagnostic(&self) -> bool {
        self.tmpfs || !matches!(self.kind, Kind::Full | Kind::Bare | Kind::Tus | Kind::TusNoHash)
    }

    fn label(&self) -> String {
        match (self.tmpfs, self.kind, self.patches) {
            (false, kind, Some(patches)) => format!("{}, {}", kind.label(), patches.label()),
            (false, kind, None) => kind.label().to_owned(),
            (true, Kind::Bare, _) => "diag: bare, storage on tmpfs".to_owned(),
            (true, kind, _) => format!("diag: {}, storage on tmpfs", kind.name()),
        }
    }

    fn name(&self) -> String {
        match (self.tmpfs, self.patches) {
            (true, _) => format!("{}@tmpfs", self.kind.name()),
            (false, Some(patches)) => format!("{}-{}", self.kind.name(), patches.name()),
            (false, None) => self.kind.name().to_owned(),
        }
    }

    fn root(&self) -> PathBuf {
        if self.tmpfs { PathBuf::from("/dev/shm") } else { storage_root() }
    }

    fn best(&self) -> Option<Duration> {
        self.runs.iter().map(|r| r.elapsed).min()
    }

    /// The median run's time (of an even number, the faster of the middle two).
    fn median(&self) -> Option<Duration> {
        let mut times: Vec<Duration> = self.runs.iter().map(|r| r.elapsed).collect();
        times.sort();
        times.get(times.len().saturating_sub(1) / 2).copied()
    }

    /// The time that counts: the median in (d), else the best.
    fn typical(&self) -> Option<Duration> {
        if self.phase == Phase::Tus { self.median() } else { self.best() }
    }

    fn peak_rss(&self) -> Option<u64> {
        self.runs.iter().map(|r| r.peak_rss).max()
    }

    fn idle_rss(&self) -> Option<u64> {
        self.runs.iter().map(|r| r.start_rss).max()
    }
}

/// A run's rate in `phase`: MB/s for large uploads, uploads/s for forms.
fn run_rate(plan: &Plan, phase: Phase, elapsed: Duration) -> f64 {
    match phase {
        Phase::One => mb_per_s(plan.one_size, elapsed),
        Phase::Many => mb_per_s(plan.many_count as u64 * plan.many_size, elapsed),
        Phase::Forms => plan.forms as f64 / elapsed.as_secs_f64(),
        Phase::Tus => mb_per_s(plan.tus_size, elapsed),
    }
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

fn opt_mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".to_owned(), mib)
}

struct Report {
    rows: Vec<Row>,
    /// Microseconds per file of a file-creation probe in the storage directory, before each
    /// round of (c).
    create_probes: Vec<f64>,
}

impl Report {
    fn plan(plan: &Plan) -> Self {
        let tmpfs = plan.diag && Path::new("/dev/shm").is_dir();
        let mut rows = Vec::new();
        if plan.phases.contains('a') {
            rows.extend([Kind::Bare, Kind::Full].map(|k| Row::new(Phase::One, k, false)));
            if plan.diag {
                let diag =
                    [Kind::FullNoHash, Kind::FullFsync, Kind::FullNoFsync, Kind::FullLean, Kind::BareSha, Kind::BareShaFsync];
                rows.extend(diag.into_iter().filter(|k| k.differs_from_defaults()).map(|k| Row::new(Phase::One, k, false)));
            }
        }
        if plan.phases.contains('b') {
            rows.extend([Kind::Bare, Kind::Full].map(|k| Row::new(Phase::Many, k, false)));
            if plan.diag {
                rows.extend([Kind::FullBuf64k, Kind::BareDrain].map(|k| Row::new(Phase::Many, k, false)));
            }
        }
        if plan.phases.contains('c') {
            rows.extend([Kind::Bare, Kind::Full].map(|k| Row::new(Phase::Forms, k, false)));
            if plan.diag {
                let diag = [Kind::FullFsync, Kind::FullNoFsync, Kind::FullLean, Kind::FullMemory, Kind::BareShaFsync];
                rows.extend(diag.into_iter().filter(|k| k.differs_from_defaults()).map(|k| Row::new(Phase::Forms, k, false)));
            }
            if tmpfs {
                rows.extend([Kind::Bare, Kind::Full].map(|k| Row::new(Phase::Forms, k, true)));
            }
        }
        if plan.phases.contains('d') {
            let patches: Vec<Patches> =
                std::iter::once(Patches::One).chain(plan.tus_patches.iter().map(|&n| Patches::Of(n))).collect();
            rows.push(Row::tus(Kind::Bare, None));
            for kind in [Kind::Tus, Kind::TusNoHash] {
                rows.extend(patches.iter().map(|&p| Row::tus(kind, Some(p))));
            }
            if plan.diag {
                rows.push(Row::tus(Kind::BareSha, None));
                for kind in [Kind::TusMemState, Kind::TusNoHashMemState] {
                    rows.extend(plan.tus_patches.iter().map(|&n| Row::tus(kind, Some(Patches::Of(n)))));
                }
            }
        }
        if let Ok(only) = std::env::var("INTAKE_BENCH_ONLY") {
            let only: Vec<&str> = only.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            if !only.is_empty() {
                // `tus` picks all of (d); a name such as `tus-5mib` one row.
                rows.retain(|r| only.contains(&r.name().as_str()) || (r.phase == Phase::Tus && only.contains(&"tus")));
            }
        }
        Report { rows, create_probes: Vec::new() }
    }

    fn row(&self, phase: Phase, kind: Kind, tmpfs: bool) -> Option<&Row> {
        self.rows.iter().find(|r| r.phase == phase && r.kind == kind && r.tmpfs == tmpfs && !r.runs.is_empty())
    }

    /// The rate of a row's best (in (d), median) run: MB/s for large uploads, uploads/s for forms.
    fn rate(&self, plan: &Plan, row: &Row) -> Option<f64> {
        let time = row.typical()?;
        Some(run_rate(plan, row.phase, time))
    }

    /// A row of (d): the tus server `kind` sending in `patches`.
    fn tus_row(&self, kind: Kind, patches: Patches) -> Option<&Row> {
        self.rows.iter().find(|r| r.phase == Phase::Tus && r.kind == kind && r.patches == Some(patches) && !r.runs.is_empty())
    }

    /// A row of (d)'s rate over the bare handler's in (d).
    fn tus_ratio(&self, plan: &Plan, row: &Row) -> Option<f64> {
        Some(self.rate(plan, row)? / self.rate(plan, self.row(Phase::Tus, Kind::Bare, false)?)?)
    }

    /// A row's best rate over the bare server's on the same storage (the full stack over
    /// `InMemory` is compared with the bare handler on tmpfs, when there is one); with the name of
    /// that bare row.
    fn ratio(&self, plan: &Plan, phase: Phase, kind: Kind, tmpfs: bool) -> Option<(f64, String)> {
        let rate = self.rate(plan, self.row(phase, kind, tmpfs)?)?;
        let bare_tmpfs = tmpfs || (kind == Kind::FullMemory && self.row(phase, Kind::Bare, true).is_some());
        let bare = self.row(phase, Kind::Bare, bare_tmpfs)?;
        Some((rate / self.rate(plan, bare)?, bare.name()))
    }

    fn render(&self, plan: &Plan) -> String {
        let mut out = String::new();
        let w = &mut out;
        let mode = if plan.quick { "QUICK mode (INTAKE_BENCH_QUICK=1)" } else { "full mode" };
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let _ = writeln!(w, "\n=== intake upload benchmark, {mode} ===");
        let _ = writeln!(w, "storage: a fresh directory per scenario under {}.", storage_root().display());
        let _ = writeln!(w, "  This is disk \"as the OS gives it\": writes land in the page cache. The full stack's");
        let _ = writeln!(
            w,
            "  LocalDisk::new fsyncs per FsyncPolicy::{:?} (the default); the bare handler never fsyncs.",
            FsyncPolicy::default()
        );
        let _ = writeln!(w, "  Files of (a) and (b) are deleted after each scenario; those of (c) when the phase ends, as");
        let _ = writeln!(w, "  on ext4 creating files right after deleting thousands is slow (recently deleted inodes are");
        let _ = writeln!(w, "  passed over), which would bias the next row.");
        let _ = writeln!(
            w,
            "servers: a fresh process per measurement, tokio multi-thread (2 workers); client: the same; {cpus} CPUs."
        );
        let _ =
            writeln!(w, "MB/s = 10^6 bytes/s. RSS = the server process's VmHWM: peak = at the end of the scenario (worst run),");
        let _ = writeln!(
            w,
            "  idle = once it listened. Best of {} runs for (a), of {} for (c); the median of {} for (d).",
            plan.runs, plan.form_runs, plan.tus_runs
        );

        let others = |phase: Phase| self.rows.iter().filter(move |r| r.phase == phase && r.kind != Kind::Bare);
        let failure = |w: &mut String, row: &Row| {
            if let Some(e) = &row.failure {
                let _ = writeln!(w, "    {:<42} FAILED: {e}", row.label());
            }
        };

        if self.rows.iter().any(|r| r.phase == Phase::One) {
            let _ = writeln!(
                w,
                "\n(a) one {} raw upload: POST /upload/raw?name=big.bin, application/octet-stream",
                mib(plan.one_size)
            );
            let _ = writeln!(w, "    {:<42} {:>9}  {:<16} {:>11} {:>11}", "server", "MB/s", "each run", "peak RSS", "idle RSS");
            for row in self.rows.iter().filter(|r| r.phase == Phase::One) {
                failure(w, row);
                let Some(rate) = self.rate(plan, row) else { continue };
                let each: Vec<String> = row.runs.iter().map(|r| format!("{:.0}", mb_per_s(plan.one_size, r.elapsed))).collect();
                let (peak, idle) = (opt_mib(row.peak_rss()), opt_mib(row.idle_rss()));
                let _ = writeln!(w, "    {:<42} {rate:>9.1}  {:<16} {peak:>11} {idle:>11}", row.label(), each.join(" "));
            }
            for row in others(Phase::One) {
                if let Some((ratio, bare)) = self.ratio(plan, Phase::One, row.kind, row.tmpfs) {
                    let _ = writeln!(w, "    {:<42} {ratio:>9.3}", format!("ratio {}/{bare}", row.name()));
                }
            }
        }

        if self.rows.iter().any(|r| r.phase == Phase::Many) {
            let _ =
                writeln!(w, "\n(b) {} concurrent raw uploads of {} each: POST /upload/raw", plan.many_count, mib(plan.many_size));
            let _ = writeln!(
                w,
                "    {:<42} {:>9}  {:>9} {:>11} {:>11} {:>8}",
                "server", "MB/s", "time", "peak RSS", "idle RSS", "threads"
            );
            for row in self.rows.iter().filter(|r| r.phase == Phase::Many) {
                failure(w, row);
                let (Some(rate), Some(best)) = (self.rate(plan, row), row.best()) else { continue };
                let (peak, idle) = (opt_mib(row.peak_rss()), opt_mib(row.idle_rss()));
                let threads = row.runs.iter().map(|r| r.threads).max().unwrap_or(0);
                let _ = writeln!(
                    w,
                    "    {:<42} {rate:>9.1}  {:>8.2}s {peak:>11} {idle:>11} {threads:>8}",
                    row.label(),
                    best.as_secs_f64()
                );
            }
        }

        if self.rows.iter().any(|r| r.phase == Phase::Forms) {
            let _ = writeln!(
                w,
                "\n(c) {} form uploads, one 4 KiB file part x.bin each: POST /upload/form, {} keep-alive connections",
                plan.forms, FORM_CONNECTIONS
            );
            if !self.create_probes.is_empty() {
                let probes: Vec<String> = self.create_probes.iter().map(|us| format!("{us:.0}")).collect();
                let _ = writeln!(
                    w,
                    "    creating an empty file in the storage directory took {} us before each round",
                    probes.join(", ")
                );
                let _ = writeln!(w, "    (ext4: tens of us when quiet, hundreds within minutes of deleting thousands of files)");
            }
            let _ = writeln!(w, "    {:<42} {:>9}  {:<16} {:>11}", "server", "uploads/s", "each run", "peak RSS");
            for row in self.rows.iter().filter(|r| r.phase == Phase::Forms) {
                failure(w, row);
                let Some(rate) = self.rate(plan, row) else { continue };
                let each: Vec<String> =
                    row.runs.iter().map(|r| format!("{:.0}", plan.forms as f64 / r.elapsed.as_secs_f64())).collect();
                let _ =
                    writeln!(w, "    {:<42} {rate:>9.0}  {:<16} {:>11}", row.label(), each.join(" "), opt_mib(row.peak_rss()));
            }
            for row in others(Phase::Forms) {
                if let Some((ratio, bare)) = self.ratio(plan, Phase::Forms, row.kind, row.tmpfs) {
                    let _ = writeln!(w, "    {:<42} {ratio:>9.3}", format!("ratio {}/{bare}", row.name()));
                }
            }
        }

        if self.rows.iter().any(|r| r.phase == Phase::Tus) {
            let _ = writeln!(
                w,
                "\n(d) one {} tus upload: POST /upload/tus/ (Upload-Length), then PATCHes one after the other",
                mib(plan.tus_size)
            );
            let _ = writeln!(w, "    (application/offset+octet-stream, Upload-Offset); timed from the POST to the last 204.");
            let _ = writeln!(w, "    tus rows: upload state in RedbState (the uploads_router() default); bare rows: one POST");
            let _ = writeln!(w, "    /upload/raw of the same bytes (as in (a)).");
            let _ = writeln!(w, "    {:<50} {:>9}  {:<16} {:>11} {:>11}", "server", "MB/s", "each run", "peak RSS", "idle RSS");
            for row in self.rows.iter().filter(|r| r.phase == Phase::Tus) {
                failure(w, row);
                let Some(rate) = self.rate(plan, row) else { continue };
                let each: Vec<String> = row.runs.iter().map(|r| format!("{:.0}", mb_per_s(plan.tus_size, r.elapsed))).collect();
                let (peak, idle) = (opt_mib(row.peak_rss()), opt_mib(row.idle_rss()));
                let _ = writeln!(w, "    {:<50} {rate:>9.1}  {:<16} {peak:>11} {idle:>11}", row.label(), each.join(" "));
            }
            for row in others(Phase::Tus) {
                if let Some(ratio) = self.tus_ratio(plan, row) {
                    let _ = writeln!(w, "    {:<50} {ratio:>9.3}", format!("ratio {}/bare", row.name()));
                }
            }
            let probed: Vec<_> = self.rows.iter().filter(|r| r.runs.iter().any(|r| r.empty_patch.is_some())).collect();
            if !probed.is_empty() {
                let _ = writeln!(w, "    fixed cost of a PATCH (diag): median time of 100 PATCHes with no bytes, per run");
                for row in probed {
                    let each: Vec<String> =
                        row.runs.iter().filter_map(|r| Some(format!("{:.2}", r.empty_patch?.as_secs_f64() * 1e3))).collect();
                    let _ = writeln!(w, "    {:<50} {:>9}  {} ms", row.name(), "", each.join(" "));
                }
            }
        }

        let _ = writeln!(w, "\ntargets (the full stack; a MISS is reported, it is not an error)");
        if plan.quick {
            let _ = writeln!(w, "  quick mode: smaller scenarios than the targets were set for, so indicative only");
        }
        let _ = writeln!(w, "    {:<48} {:>10} {:>12}  result", "target", "measured", "target");
        let mut target = |name: String, measured: Option<String>, goal: String, pass: Option<bool>| {
            let result = pass.map_or("not run", |p| if p { "PASS" } else { "MISS" });
            let measured = measured.unwrap_or_else(|| "-".to_owned());
            let _ = writeln!(w, "    {name:<48} {measured:>10} {goal:>12}  {result}");
        };
        let ratio_a = self.ratio(plan, Phase::One, Kind::Full, false).map(|(r, _)| r);
        target(
            "(a) raw upload MB/s, full/bare".into(),
            ratio_a.map(|r| format!("{r:.3}")),
            format!(">= {TARGET_A_RATIO:.2}"),
            ratio_a.map(|r| r >= TARGET_A_RATIO),
        );
        let rss_one = self.row(Phase::One, Kind::Full, false).and_then(Row::peak_rss);
        target(
            format!("(b) full peak RSS, one {} upload", mib(plan.one_size)),
            rss_one.map(mib),
            format!("<= {}", mib(TARGET_RSS_ONE)),
            rss_one.map(|r| r <= TARGET_RSS_ONE),
        );
        let rss_many = self.row(Phase::Many, Kind::Full, false).and_then(Row::peak_rss);
        target(
            format!("(b) full peak RSS, {} x {} concurrent", plan.many_count, mib(plan.many_size)),
            rss_many.map(mib),
            format!("<= {}", mib(TARGET_RSS_MANY)),
            rss_many.map(|r| r <= TARGET_RSS_MANY),
        );
        let ratio_c = self.ratio(plan, Phase::Forms, Kind::Full, false).map(|(r, _)| r);
        target(
            "(c) 4 KiB form uploads/s, full/bare".into(),
            ratio_c.map(|r| format!("{r:.3}")),
            format!(">= {TARGET_C_RATIO:.2}"),
            ratio_c.map(|r| r >= TARGET_C_RATIO),
        );
        for (patches, goal) in [(Patches::One, TARGET_D_ONE_RATIO), (Patches::Of(TARGET_D_PATCH), TARGET_D_PATCHES_RATIO)] {
            let ratio = self.tus_row(Kind::Tus, patches).and_then(|row| self.tus_ratio(plan, row));
            target(
                format!("(d) tus MB/s, {}, tus/bare", patches.label()),
                ratio.map(|r| format!("{r:.3}")),
                format!(">= {goal:.2}"),
                ratio.map(|r| r >= goal),
            );
        }
        for patches in [Patches::One, Patches::Of(TARGET_D_PATCH)] {
            let rss = self.tus_row(Kind::Tus, patches).and_then(Row::peak_rss);
            target(
                format!("(d) tus peak RSS, {}, {}", mib(plan.tus_size), patches.label()),
                rss.map(mib),
                format!("<= {}", mib(TARGET_RSS_ONE)),
                rss.map(|r| r <= TARGET_RSS_ONE),
            );
        }
        let failed: Vec<_> = self.rows.iter().filter(|r| r.failure.is_some()).collect();
        if !failed.is_empty() {
            let names: Vec<_> = failed.iter().map(|r| r.name()).collect();
            let _ = writeln!(w, "\nWARNING: diagnostic rows failed (not fatal): {}; see above.", names.join(", "));
        }
        if let Ok(kib) = proc_status_kib("/proc/self/status", "VmHWM:") {
            let _ = writeln!(w, "\nclient (this process) peak RSS: {}", mib(kib * KIB));
        }
        out
    }
}

/// How long creating an empty file under the storage root takes, in microseconds (the median of
/// 200). The files stay, in `graveyard`, so that the probe deletes nothing.
fn create_probe(graveyard: &mut Vec<tempfile::TempDir>) -> Res<f64> {
    let root = storage_root();
    std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
    let dir = tempfile::Builder::new().prefix("intake-bench-probe-").tempdir_in(&root).map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(200);
    for i in 0..200 {
        let started = Instant::now();
        std::fs::File::create(dir.path().join(format!("p{i}"))).map_err(|e| format!("create probe: {e}"))?;
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    graveyard.push(dir);
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Runs one scenario. The storage of (c) goes to `graveyard`, to be deleted after the phase.
/// `tus_sha256` is the SHA-256 of the upload of (d).
async fn scenario(plan: &Plan, pool: &Bytes, tus_sha256: &str, row: &Row, graveyard: &mut Vec<tempfile::TempDir>) -> Res<Run> {
    let root = row.root();
    match (row.phase, row.patches) {
        (Phase::One, _) => scenario_one(row.kind, &root, pool, plan.one_size, plan.limit).await,
        (Phase::Many, _) => scenario_many(row.kind, &root, pool, plan.many_count, plan.many_size, plan.limit).await,
        (Phase::Forms, _) => scenario_forms(row.kind, &root, pool, plan.forms, plan.limit, graveyard).await,
        (Phase::Tus, None) => scenario_one(row.kind, &root, pool, plan.tus_size, plan.limit).await,
        (Phase::Tus, Some(patches)) => scenario_tus(plan, row.kind, &root, pool, patches, tus_sha256).await,
    }
}

fn progress(plan: &Plan, row: &Row, round: usize, run: &Run) {
    let secs = run.elapsed.as_secs_f64();
    let rate = match row.phase {
        Phase::Forms => format!("{:>8.0} uploads/s", run_rate(plan, row.phase, run.elapsed)),
        phase => format!("{:>8.1} MB/s", run_rate(plan, phase, run.elapsed)),
    };
    let phase = match row.phase {
        Phase::One => "a",
        Phase::Many => "b",
        Phase::Forms => "c",
        Phase::Tus => "d",
    };
    let empty = run.empty_patch.map(|d| format!(", empty PATCH {:.2} ms", d.as_secs_f64() * 1e3)).unwrap_or_default();
    eprintln!(
        "({phase}) {:<18} run {round}: {rate} in {secs:>7.2}s, peak RSS {}, {} threads{empty}",
        row.name(),
        mib(run.peak_rss),
        run.threads
    );
}

/// Runs every row; the rounds of a phase are interleaved so that drift of a shared machine hits
/// every row alike. A failing diagnostic row is recorded and skipped; any other failure ends it.
async fn run(plan: &Plan, report: &mut Report) -> Res<()> {
    let pool = data_pool();
    let tus_sha256 = if report.rows.iter().any(|r| r.phase == Phase::Tus && r.kind.is_tus() && r.kind.hashes()) {
        pool_sha256(&pool, plan.tus_size)
    } else {
        String::new()
    };
    if report.rows.iter().any(|r| matches!(r.phase, Phase::One | Phase::Many | Phase::Tus)) {
        // Untimed: the first large write of a process tree is slow while the kernel (and, in a VM,
        // the host) first hands out the page-cache memory; the first measured run should not pay.
        let size = report
            .rows
            .iter()
            .map(|r| match r.phase {
                Phase::One => plan.one_size,
                Phase::Many => plan.many_count as u64 * plan.many_size,
                Phase::Forms => 0,
                Phase::Tus => plan.tus_size,
            })
            .max()
            .unwrap_or(0);
        let started = Instant::now();
        scenario_one(Kind::Bare, &storage_root(), &pool, size, plan.limit).await.map_err(|e| format!("warm-up: {e}"))?;
        eprintln!("warm-up: one untimed {} upload to a bare server in {:.2}s", mib(size), started.elapsed().as_secs_f64());
    }
    for phase in [Phase::One, Phase::Many, Phase::Forms, Phase::Tus] {
        let rounds = match phase {
            Phase::One => plan.runs,
            Phase::Many => 1,
            Phase::Forms => plan.form_runs,
            Phase::Tus => plan.tus_runs,
        };
        let mut graveyard = Vec::new();
        for round in 1..=rounds {
            if phase == Phase::Forms && report.rows.iter().any(|r| r.phase == phase && !r.tmpfs) {
                let us = create_probe(&mut graveyard)?;
                eprintln!("(c) round {round}: creating an empty file in the storage directory takes {us:.0} us");
                report.create_probes.push(us);
            }
            for row in report.rows.iter_mut().filter(|r| r.phase == phase && r.failure.is_none()) {
                match scenario(plan, &pool, &tus_sha256, row, &mut graveyard).await {
                    Ok(run) => {
                        progress(plan, row, round, &run);
                        row.runs.push(run);
                    }
                    Err(e) if row.diagnostic() => {
                        eprintln!("{} (diagnostic) FAILED: {e}", row.name());
                        row.failure = Some(e);
                    }
                    Err(e) => return Err(format!("{}: {e}", row.name())),
                }
            }
        }
    }
    Ok(())
}

fn flag(name: &str) -> Option<bool> {
    std::env::var(name).ok().map(|v| !matches!(v.trim(), "" | "0" | "false" | "no"))
}

/// The PATCH sizes of (d): `INTAKE_BENCH_TUS_PATCH_MIB` (comma-separated MiB, fractions
/// allowed), else 5 MiB.
fn tus_patches() -> Vec<u64> {
    let Ok(list) = std::env::var("INTAKE_BENCH_TUS_PATCH_MIB") else { return vec![TARGET_D_PATCH] };
    let sizes: Vec<u64> = list
        .split(',')
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .map(|mib| (mib * MIB as f64) as u64)
        .filter(|&n| n >= KIB)
        .collect();
    if sizes.is_empty() { vec![TARGET_D_PATCH] } else { sizes }
}

fn main() {
    if let Some(kind) = std::env::var_os(SERVE_ENV) {
        serve(&kind.to_string_lossy());
        return;
    }
    let quick = flag("INTAKE_BENCH_QUICK").unwrap_or(false);
    let runs: Option<usize> = std::env::var("INTAKE_BENCH_RUNS").ok().and_then(|v| v.trim().parse().ok()).filter(|&n| n > 0);
    let plan = Plan {
        quick,
        phases: std::env::var("INTAKE_BENCH_PHASES").unwrap_or_else(|_| "abcd".into()).to_ascii_lowercase(),
        diag: flag("INTAKE_BENCH_DIAG").unwrap_or(true),
        one_size: if quick { 64 * MIB } else { 1 << 30 },
        many_count: if quick { 20 } else { 100 },
        many_size: if quick { 2 * MIB } else { 20 * MIB },
        forms: if quick { 2_000 } else { 20_000 },
        runs: runs.unwrap_or(2),
        form_runs: runs.unwrap_or(3),
        tus_size: if quick { 64 * MIB } else { 1 << 30 },
        tus_patches: tus_patches(),
        tus_runs: runs.unwrap_or(3),
        limit: Duration::from_secs(if quick { 120 } else { 600 }),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("client runtime");
    let mut report = Report::plan(&plan);
    let started = Instant::now();
    let outcome = runtime.block_on(run(&plan, &mut report));
    print!("{}", report.render(&plan));
    println!("total bench time: {:.1}s", started.elapsed().as_secs_f64());
    if let Err(e) = outcome {
        eprintln!("\nbenchmark FAILED: {e}");
        std::process::exit(1);
    }
}
