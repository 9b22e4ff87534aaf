//! What every benchmark shares: the servers under test (each in a process of its own), the
//! client, alternated runs, and the report.
//!
//! Every server runs in its own process — the benchmark binary re-executed with
//! `INTAKE_BENCH_SERVE` set — started fresh for every run, so that its peak RSS (`VmHWM`) and
//! CPU time (`utime + stime`) are its own. The rows of a scenario are run in turn, round after
//! round, so that drift of a shared machine hits every row alike, and each row reports the
//! median of its runs.
//!
//! Settings, for every benchmark (`cargo bench` runs them all):
//!
//! | variable | meaning |
//! |---|---|
//! | `INTAKE_BENCH_QUICK=1` | small scenarios, for CI: indicative only |
//! | `INTAKE_BENCH_RUNS=N` | runs of each row (default 3; the median counts) |
//! | `INTAKE_BENCH_DIAG=0` | without the diagnostic rows |
//! | `INTAKE_BENCH_ONLY=a,b` | only the rows with these names (as printed) |
//! | `INTAKE_BENCH_TMPDIR=DIR` | disk storage there instead of `target/tmp` |
//! | `INTAKE_BENCH_SERVER_WRAP="valgrind --tool=callgrind"` | run each server under this command (profiling) |

#![allow(dead_code)]

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
use futures_util::{Stream, StreamExt, future::BoxFuture};
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
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::io::{AsyncWriteExt, BufWriter};

/// Set in a server child: which server to run.
const SERVE_ENV: &str = "INTAKE_BENCH_SERVE";
/// Set in a server child: its storage directory.
const DIR_ENV: &str = "INTAKE_BENCH_DIR";
/// Set in a server child: serve through `intake::serve` with this `max_buf_size` (`default`:
/// through `intake::serve` on hyper's default).
pub const MAX_BUF_ENV: &str = "INTAKE_BENCH_MAX_BUF";
/// Set in a server child: the `LocalDisk` write buffer.
pub const WRITE_BUF_ENV: &str = "INTAKE_BENCH_WRITE_BUF";
/// What a server child prints on stdout once it listens, followed by its port.
const PORT_LINE: &str = "INTAKE_BENCH_PORT=";

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
/// Client chunk and bare-server write buffer size.
pub const CHUNK: usize = 256 * 1024;
/// tus's version header, on every request.
pub const TUS_RESUMABLE: (&str, &str) = ("tus-resumable", "1.0.0");

pub type Res<T> = Result<T, String>;

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

fn flag(name: &str) -> Option<bool> {
    std::env::var(name).ok().map(|v| !matches!(v.trim(), "" | "0" | "false" | "no"))
}

/// `INTAKE_BENCH_QUICK=1`: small scenarios for CI.
pub fn quick() -> bool {
    flag("INTAKE_BENCH_QUICK").unwrap_or(false)
}

/// Whether to add the diagnostic rows (`INTAKE_BENCH_DIAG=0`: no).
pub fn diag() -> bool {
    flag("INTAKE_BENCH_DIAG").unwrap_or(true)
}

/// Runs of each row: `INTAKE_BENCH_RUNS`, else 3 (1 in quick mode).
pub fn runs() -> usize {
    let asked = std::env::var("INTAKE_BENCH_RUNS").ok().and_then(|v| v.trim().parse().ok()).filter(|&n| n > 0);
    asked.unwrap_or(if quick() { 1 } else { 3 })
}

/// Where disk storage goes: `INTAKE_BENCH_TMPDIR`, else Cargo's `target/tmp`.
pub fn storage_root() -> PathBuf {
    match std::env::var_os("INTAKE_BENCH_TMPDIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    }
}

/// `/dev/shm`, where there is one: storage that costs no disk.
pub fn tmpfs_root() -> Option<PathBuf> {
    let shm = PathBuf::from("/dev/shm");
    shm.is_dir().then_some(shm)
}

// ---------------------------------------------------------------------------------------------
// Servers (child processes)
// ---------------------------------------------------------------------------------------------

/// The servers under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The real router on its defaults (SHA-256, `LocalDisk::new`, `MemoryState`), rate limit
    /// disabled.
    Full,
    /// The same without hashing (`.algorithms([])`).
    FullNoHash,
    /// The same with `FsyncPolicy::OnFinish`.
    FullFsync,
    /// The same over `InMemory`: layers and protocol without a file system (small uploads only).
    FullMemory,
    /// The same with the catalog in `RedbState`, as `uploads_router()` and the example server.
    FullRedb,
    /// The real router with upload state in `RedbState` (as `uploads_router()`), for tus.
    Tus,
    /// The same without hashing.
    TusNoHash,
    /// The same with upload state in `MemoryState`.
    TusMemState,
    /// Bare axum handlers: a raw body streamed to a new file through a 256 KiB `BufWriter`; each
    /// file of a form (parsed by multer) written to a new file.
    Bare,
    /// The bare raw handler reading the body and dropping it: HTTP alone.
    BareDrain,
    /// The bare handlers hashing with SHA-256 between writes.
    BareSha,
    /// The bare handlers hashing with SHA-256 on a thread of their own, beside the writes.
    BareShaThread,
    /// The bare handlers hashing with SHA-256 and fsyncing every file before answering.
    BareShaFsync,
    /// A bare axum sink for tus clients: `POST` creates an empty file, each `PATCH` appends its
    /// body through a 256 KiB `BufWriter` (no offset check, no state, no hashing).
    BareSink,
    /// rustus (s3rius/rustus), an external binary: `INTAKE_BENCH_RUSTUS`.
    Rustus,
}

const KINDS: [Kind; 15] = [
    Kind::Full,
    Kind::FullRedb,
    Kind::FullNoHash,
    Kind::FullFsync,
    Kind::FullMemory,
    Kind::Tus,
    Kind::TusNoHash,
    Kind::TusMemState,
    Kind::Bare,
    Kind::BareDrain,
    Kind::BareSha,
    Kind::BareShaThread,
    Kind::BareShaFsync,
    Kind::BareSink,
    Kind::Rustus,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::FullNoHash => "full-nohash",
            Kind::FullFsync => "full-fsync",
            Kind::FullMemory => "full-memory",
            Kind::FullRedb => "full-redb",
            Kind::Tus => "tus",
            Kind::TusNoHash => "tus-nohash",
            Kind::TusMemState => "tus-memstate",
            Kind::Bare => "bare",
            Kind::BareDrain => "bare-drain",
            Kind::BareSha => "bare-sha",
            Kind::BareShaThread => "bare-sha-thread",
            Kind::BareShaFsync => "bare-sha-fsync",
            Kind::BareSink => "bare-sink",
            Kind::Rustus => "rustus",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        KINDS.into_iter().find(|k| k.name() == s)
    }

    pub fn is_bare(self) -> bool {
        matches!(self, Kind::Bare | Kind::BareDrain | Kind::BareSha | Kind::BareShaThread | Kind::BareShaFsync | Kind::BareSink)
    }

    /// Whether the server computes SHA-256.
    pub fn hashes(self) -> bool {
        !matches!(self, Kind::FullNoHash | Kind::TusNoHash | Kind::Bare | Kind::BareDrain | Kind::BareSink | Kind::Rustus)
    }

    /// Whether the server keeps what it receives (so that it can be counted on disk).
    fn stores_files(self) -> bool {
        !matches!(self, Kind::FullMemory | Kind::BareDrain)
    }
}

/// In `main`, first: serves and exits when this process is a server child.
pub fn serve_if_child() {
    let Some(kind) = std::env::var_os(SERVE_ENV) else { return };
    let kind = kind.to_string_lossy();
    let kind = Kind::parse(&kind).unwrap_or_else(|| panic!("{SERVE_ENV}={kind:?}: not one of {:?}", KINDS.map(Kind::name)));
    assert!(kind != Kind::Rustus, "rustus is an external binary, not served by this one");
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("INTAKE_BENCH_DIR is set"));
    std::thread::spawn(|| {
        // The parent closes our stdin when it is done with us (or dies).
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
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{PORT_LINE}{port}").and_then(|()| stdout.flush()).expect("write the port");
        drop(stdout);
        match std::env::var(MAX_BUF_ENV).ok() {
            Some(max) => {
                let serve = intake::serve::serve(listener, app);
                let serve = match max.trim() {
                    "default" => serve,
                    n => serve.max_buf_size(n.parse().expect("INTAKE_BENCH_MAX_BUF is a number of bytes")),
                };
                serve.await.expect("serve");
            }
            None => {
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.expect("serve");
            }
        }
    });
    std::process::exit(0);
}

fn full_router(kind: Kind, dir: PathBuf) -> Router {
    let state = dir.join("state.redb");
    let mut disk = LocalDisk::new(dir);
    if kind == Kind::FullFsync {
        disk = disk.with_fsync(FsyncPolicy::OnFinish);
    }
    if let Some(bytes) = std::env::var(WRITE_BUF_ENV).ok().and_then(|v| v.trim().parse().ok()) {
        disk = disk.with_write_buffer(bytes);
    }
    let uploads = match kind {
        Kind::FullMemory => Uploads::new(InMemory::new()),
        _ => Uploads::new(disk),
    };
    let mut uploads = uploads.rate_limit(RateLimitLayer::disabled()).max_body(2 << 30);
    if !kind.hashes() {
        uploads = uploads.algorithms([]);
    }
    if matches!(kind, Kind::Tus | Kind::TusNoHash | Kind::FullRedb) {
        uploads = uploads.state(RedbState::open(&state).expect("open state.redb"));
    }
    Router::new().nest("/upload", uploads.into_router())
}

#[derive(Clone)]
struct Bare {
    dir: Arc<PathBuf>,
    next: Arc<AtomicU64>,
    kind: Kind,
}

/// Where a bare handler's SHA-256 is computed.
enum BareHash {
    None,
    Inline(Sha256),
    /// On a thread of its own, fed through a bounded queue (as intake hashes large bodies).
    Thread(tokio::sync::mpsc::Sender<Bytes>, tokio::task::JoinHandle<[u8; 32]>),
}

impl BareHash {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::BareSha | Kind::BareShaFsync => BareHash::Inline(Sha256::new()),
            Kind::BareShaThread => {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(2);
                let done = tokio::task::spawn_blocking(move || {
                    let mut hasher = Sha256::new();
                    while let Some(chunk) = rx.blocking_recv() {
                        hasher.update(&chunk);
                    }
                    hasher.finalize().into()
                });
                BareHash::Thread(tx, done)
            }
            _ => BareHash::None,
        }
    }

    async fn update(&mut self, chunk: &Bytes) {
        match self {
            BareHash::None => {}
            BareHash::Inline(h) => h.update(chunk),
            BareHash::Thread(tx, _) => {
                let _ = tx.send(chunk.clone()).await;
            }
        }
    }

    async fn finish(self) {
        match self {
            BareHash::None => {}
            BareHash::Inline(h) => {
                std::hint::black_box(h.finalize());
            }
            BareHash::Thread(tx, done) => {
                drop(tx);
                std::hint::black_box(done.await.expect("hashing thread"));
            }
        }
    }
}

impl Bare {
    fn new_path(&self) -> PathBuf {
        self.dir.join(format!("bare-{}.bin", self.next.fetch_add(1, Ordering::Relaxed)))
    }

    /// The end of a file: its digest, and the fsync if asked for.
    async fn finish(&self, file: &mut tokio::fs::File, hash: BareHash) -> std::io::Result<()> {
        hash.finish().await;
        if self.kind == Kind::BareShaFsync {
            file.sync_all().await?;
        }
        Ok(())
    }
}

fn bare_router(kind: Kind, dir: PathBuf) -> Router {
    std::fs::create_dir_all(&dir).expect("create the storage directory");
    let state = Bare { dir: Arc::new(dir), next: Arc::default(), kind };
    if kind == Kind::BareDrain {
        return Router::new().route("/upload/raw", post(bare_drain)).with_state(state);
    }
    if kind == Kind::BareSink {
        return Router::new()
            .route("/upload/sink/", post(sink_create))
            .route("/upload/sink/{n}", axum::routing::patch(sink_append))
            .with_state(state);
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
        let mut hash = BareHash::new(bare.kind);
        let mut stream = body.into_data_stream();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(std::io::Error::other)?;
            hash.update(&chunk).await;
            out.write_all(&chunk).await?;
            size += chunk.len() as u64;
        }
        out.flush().await?;
        bare.finish(out.get_mut(), hash).await?;
        out.shutdown().await?;
        Ok::<_, std::io::Error>(size)
    };
    match stored.await {
        Ok(size) => created(&[size]),
        Err(e) => failed(e),
    }
}

/// `POST /upload/sink/`: an empty file, at the `Location` a tus client appends to.
async fn sink_create(State(bare): State<Bare>) -> Response {
    let n = bare.next.fetch_add(1, Ordering::Relaxed);
    match tokio::fs::File::create(bare.dir.join(format!("bare-{n}.bin"))).await {
        Ok(_) => (StatusCode::CREATED, [(header::LOCATION, format!("/upload/sink/{n}"))]).into_response(),
        Err(e) => failed(e),
    }
}

/// `PATCH /upload/sink/{n}`: the body appended to file `n` through a 256 KiB `BufWriter`;
/// answers `204` with the file's new length as `Upload-Offset`.
async fn sink_append(State(bare): State<Bare>, axum::extract::Path(n): axum::extract::Path<u64>, body: Body) -> Response {
    let stored = async {
        let file = tokio::fs::OpenOptions::new().append(true).open(bare.dir.join(format!("bare-{n}.bin"))).await?;
        let mut out = BufWriter::with_capacity(CHUNK, file);
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk.map_err(std::io::Error::other)?).await?;
        }
        out.flush().await?;
        let len = out.get_ref().metadata().await?.len();
        out.shutdown().await?;
        Ok::<_, std::io::Error>(len)
    };
    match stored.await {
        Ok(len) => (StatusCode::NO_CONTENT, [("upload-offset", len.to_string())]).into_response(),
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
            let mut hash = BareHash::new(bare.kind);
            let mut size = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(std::io::Error::other)? {
                hash.update(&chunk).await;
                file.write_all(&chunk).await?;
                size += chunk.len() as u64;
            }
            file.flush().await?;
            bare.finish(&mut file, hash).await?;
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
// The parent: starts servers, reads their memory and CPU time
// ---------------------------------------------------------------------------------------------

/// A running server child with its own storage directory; killed and cleaned up on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    kind: Kind,
    /// Its storage; `None` once handed over by [`Server::retire_keeping_files`].
    dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a `kind` server, with `env` set, storing into a fresh directory under `root`.
    pub fn start(kind: Kind, env: &[(&'static str, String)], root: &Path) -> Res<Server> {
        std::fs::create_dir_all(root).map_err(|e| format!("create {}: {e}", root.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("intake-bench-")
            .tempdir_in(root)
            .map_err(|e| format!("temp dir under {}: {e}", root.display()))?;
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let wrap: Vec<String> = std::env::var("INTAKE_BENCH_SERVER_WRAP")
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        command.env(SERVE_ENV, kind.name()).env(DIR_ENV, dir.path()).env_remove(MAX_BUF_ENV).env_remove(WRITE_BUF_ENV);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
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
        let mut server = Server { child, port: 0, kind, dir: Some(dir) };
        server.port = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => return Err(format!("the {} server printed a bad port: {e}", kind.name())),
            Err(_) => return Err(format!("the {} server did not report its port within 60 s", kind.name())),
        };
        Ok(server)
    }

    /// Starts an external tus server (`Kind::Rustus`): `program` with `args`, where `{dir}` is
    /// a fresh storage directory under `root` and `{port}` a free port of 127.0.0.1; ready once
    /// the port accepts connections. Its output is discarded (rustus logs every request).
    pub fn start_program(kind: Kind, program: &Path, args: &[&str], root: &Path) -> Res<Server> {
        std::fs::create_dir_all(root).map_err(|e| format!("create {}: {e}", root.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("intake-bench-")
            .tempdir_in(root)
            .map_err(|e| format!("temp dir under {}: {e}", root.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        let dir_arg = dir.path().to_string_lossy().into_owned();
        let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", &dir_arg).replace("{port}", &port.to_string())).collect();
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", program.display()))?;
        let server = Server { child, port, kind, dir: Some(dir) };
        let asked = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if asked.elapsed() > Duration::from_secs(60) {
                return Err(format!("{} did not listen on port {port} within 60 s", program.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn status(&self, key: &str) -> Res<u64> {
        proc_status(&format!("/proc/{}/status", self.child.id()), key)
    }

    /// The process's peak resident set size so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> Res<u64> {
        self.status("VmHWM:").map(|kib| kib * KIB)
    }

    /// CPU seconds the process has used, all threads, user and system (`/proc/{pid}/stat`,
    /// in clock ticks of 1/100 s).
    pub fn cpu_secs(&self) -> Res<f64> {
        let path = format!("/proc/{}/stat", self.child.id());
        let stat = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| format!("{path}: no command"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line: 12 and 13 after the state.
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| format!("{path}: field {i}"));
        Ok((ticks(11)? + ticks(12)?) as f64 / 100.0)
    }

    /// What a scenario cost the server: its peak RSS and CPU seconds now, against `elapsed`.
    pub fn run(&self, elapsed: Duration, cpu_before: f64) -> Res<Run> {
        Ok(Run { elapsed, peak_rss: self.peak_rss()?, cpu: self.cpu_secs()? - cpu_before, probe: None, patches: 0 })
    }

    /// Files stored (not counting state), and their total size.
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
    pub fn verify(&self, files: u64, bytes: u64) -> Res<()> {
        if !self.kind.stores_files() {
            return Ok(());
        }
        match self.stored()? {
            (f, b) if f == files && b == bytes => Ok(()),
            (f, b) => {
                Err(format!("the {} server stored {f} files, {b} bytes; expected {files} files, {bytes} bytes", self.kind.name()))
            }
        }
    }

    /// Stops the server, deletes its files, and lets the kernel write back what is dirty, so
    /// that the next run starts from a quiet disk.
    pub fn retire(self) {
        drop(self);
        let _ = Command::new("sync").status();
    }

    /// Stops the server but keeps its files, to delete later: ext4 passes over inodes deleted in
    /// the last minute or more when it allocates new ones, so creating files right after
    /// deleting thousands is slow — the next run would pay for this one.
    pub fn retire_keeping_files(mut self) -> Option<tempfile::TempDir> {
        let dir = self.dir.take();
        drop(self);
        let _ = Command::new("sync").status();
        dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing its stdin asks the child to exit (so that a wrapper such as valgrind or strace
        // writes its report); after 30 s it is killed, by its own handle. The temp dir goes
        // with the fields.
        drop(self.child.stdin.take());
        let asked = Instant::now();
        // An external server does not read its stdin: it is killed at once.
        let patience = if self.kind == Kind::Rustus { Duration::ZERO } else { Duration::from_secs(30) };
        while matches!(self.child.try_wait(), Ok(None)) && asked.elapsed() < patience {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A number from a `/proc/*/status` line such as `VmHWM:     1234 kB`.
pub fn proc_status(path: &str, key: &str) -> Res<u64> {
    let status = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key} in {path}"))
}

// ---------------------------------------------------------------------------------------------
// Data and the client
// ---------------------------------------------------------------------------------------------

/// 256 KiB of pseudo-random bytes (xorshift64*), starting with a line of ordinary text so that
/// nothing sniffs it as a known format.
pub fn data_pool() -> Bytes {
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

/// Bytes `start..start + size` of the pool repeated without end, as slices of the pool (up to
/// 256 KiB each): the client holds no more than the pool however large the upload, and a tus
/// `PATCH` at `start` sends the bytes a single upload would have there.
pub fn body_stream_at(pool: Bytes, start: u64, size: u64) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
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
pub fn pool_sha256(pool: &Bytes, size: u64) -> String {
    let mut hasher = Sha256::new();
    for range in pool_slices(0, size) {
        hasher.update(&pool[range]);
    }
    hasher.finalize().iter().fold(String::with_capacity(64), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

pub fn client(pool_idle: usize) -> Res<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(pool_idle)
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .map_err(|e| format!("build the client: {e}"))
}

/// An error with its sources: reqwest's own message alone hides what went wrong.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let _ = write!(out, ": {e}");
        source = e.source();
    }
    out
}

/// Reads an answer to its end and checks its status; its headers.
pub async fn expect_status(what: &str, res: reqwest::Response, want: reqwest::StatusCode) -> Res<reqwest::header::HeaderMap> {
    let (status, headers) = (res.status(), res.headers().clone());
    let body = res.bytes().await.map_err(|e| format!("{what}: reading the answer: {e}"))?;
    if status != want {
        return Err(format!("{what}: {status} (expected {want}): {}", String::from_utf8_lossy(&body[..body.len().min(500)])));
    }
    Ok(headers)
}

/// One raw upload of `size` bytes; the time until the `201` has been read.
pub async fn upload_raw(client: &reqwest::Client, url: &str, pool: &Bytes, size: u64) -> Res<Duration> {
    let started = Instant::now();
    let res = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(body_stream_at(pool.clone(), 0, size)))
        .send()
        .await
        .map_err(|e| format!("POST {url}: {}", chain(&e)))?;
    expect_status(url, res, reqwest::StatusCode::CREATED).await?;
    Ok(started.elapsed())
}

/// One form upload: a file part `x.bin` of `size` bytes starting at byte `start` of the pool's
/// repetition, streamed.
pub async fn upload_form(client: &reqwest::Client, url: &str, pool: &Bytes, start: u64, size: u64) -> Res<()> {
    let part = if size <= CHUNK as u64 / 2 {
        reqwest::multipart::Part::bytes(form_file(pool, start, size))
    } else {
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body_stream_at(pool.clone(), start, size)), size)
    };
    let part = part.file_name("x.bin").mime_str("application/octet-stream").map_err(|e| e.to_string())?;
    let form = reqwest::multipart::Form::new().part("file", part);
    let res = client.post(url).multipart(form).send().await.map_err(|e| format!("POST {url}: {}", chain(&e)))?;
    expect_status(url, res, reqwest::StatusCode::CREATED).await?;
    Ok(())
}

/// The bytes of a small form file: an ordinary first line, then pool bytes from `start`.
fn form_file(pool: &Bytes, start: u64, size: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(size as usize);
    data.extend_from_slice(b"x.bin\n");
    let offset = 64 + start as usize % (CHUNK - size as usize - 64);
    data.extend_from_slice(&pool[offset..offset + size as usize - data.len()]);
    data
}

pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = Res<T>>) -> Res<T> {
    tokio::time::timeout(limit, fut).await.map_err(|_| format!("{what}: no result within {limit:?}"))?
}

// ---------------------------------------------------------------------------------------------
// Rows, runs, the report
// ---------------------------------------------------------------------------------------------

/// What one server did in one run.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub elapsed: Duration,
    /// The server's peak RSS at the end of the run.
    pub peak_rss: u64,
    /// The server's CPU seconds during the run.
    pub cpu: f64,
    /// A scenario's own extra measurement (the fixed cost of a tus `PATCH`, in seconds).
    pub probe: Option<f64>,
    /// Requests the run made, where a scenario counts them (tus `PATCH`es).
    pub patches: u64,
}

/// What a run needs of its row.
#[derive(Clone, Debug)]
pub struct Spec {
    pub kind: Kind,
    pub env: Vec<(&'static str, String)>,
    pub root: PathBuf,
    pub param: u64,
    /// Whether the client keeps its connection for the next request (else one per request).
    pub keep_alive: bool,
}

impl Spec {
    pub fn start(&self) -> Res<Server> {
        Server::start(self.kind, &self.env, &self.root)
    }
}

/// One server configuration in a scenario, with its runs.
pub struct Row {
    /// Short name, for `INTAKE_BENCH_ONLY` and the ratio lines.
    pub name: String,
    pub label: String,
    pub kind: Kind,
    /// Environment of the server child (`MAX_BUF_ENV`, `WRITE_BUF_ENV`).
    pub env: Vec<(&'static str, String)>,
    /// Where its storage goes.
    pub root: PathBuf,
    /// A diagnostic: its failure is reported, not fatal.
    pub diagnostic: bool,
    /// A scenario's own setting for this row (the tus PATCH size).
    pub param: u64,
    /// Whether the client keeps its connection (default) or opens one per request.
    pub keep_alive: bool,
    pub runs: Vec<Run>,
    pub failure: Option<String>,
}

impl Row {
    pub fn new(name: impl Into<String>, label: impl Into<String>, kind: Kind) -> Self {
        Row {
            name: name.into(),
            label: label.into(),
            kind,
            env: Vec::new(),
            root: storage_root(),
            diagnostic: false,
            param: 0,
            keep_alive: true,
            runs: Vec::new(),
            failure: None,
        }
    }

    pub fn diagnostic(mut self) -> Self {
        self.diagnostic = true;
        self
    }

    pub fn env(mut self, name: &'static str, value: impl ToString) -> Self {
        self.env.push((name, value.to_string()));
        self
    }

    pub fn root(mut self, root: PathBuf) -> Self {
        self.root = root;
        self
    }

    pub fn param(mut self, param: u64) -> Self {
        self.param = param;
        self
    }

    pub fn keep_alive(mut self, keep_alive: bool) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// What a run needs of the row, owned (runs are `'static` futures).
    pub fn spec(&self) -> Spec {
        Spec { kind: self.kind, env: self.env.clone(), root: self.root.clone(), param: self.param, keep_alive: self.keep_alive }
    }

    fn median_of(&self, f: impl Fn(&Run) -> f64) -> Option<f64> {
        let mut values: Vec<f64> = self.runs.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        let n = values.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(values[n / 2]),
            _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
        }
    }

    /// The median run's time, in seconds.
    pub fn median_secs(&self) -> Option<f64> {
        self.median_of(|r| r.elapsed.as_secs_f64())
    }

    pub fn median_cpu(&self) -> Option<f64> {
        self.median_of(|r| r.cpu)
    }

    pub fn median_probe(&self) -> Option<f64> {
        let probes: Vec<f64> = self.runs.iter().filter_map(|r| r.probe).collect();
        (!probes.is_empty()).then(|| self.median_of(|r| r.probe.unwrap_or(f64::NAN))).flatten()
    }

    pub fn peak_rss(&self) -> Option<u64> {
        self.runs.iter().map(|r| r.peak_rss).max()
    }
}

/// Keeps the rows `INTAKE_BENCH_ONLY` names (all without it).
pub fn only(mut rows: Vec<Row>) -> Vec<Row> {
    if let Ok(only) = std::env::var("INTAKE_BENCH_ONLY") {
        let only: Vec<&str> = only.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if !only.is_empty() {
            rows.retain(|r| only.contains(&r.name.as_str()));
        }
    }
    rows
}

/// Runs every row `rounds` times, the rows in turn within each round, with `before_round` run
/// first in each. A failing diagnostic row is recorded and dropped from later rounds; any other
/// failure ends it.
pub async fn run_rows(
    rows: &mut [Row],
    rounds: usize,
    mut before_round: impl FnMut(usize),
    mut scenario: impl FnMut(Spec) -> BoxFuture<'static, Res<Run>>,
) -> Res<()> {
    for round in 1..=rounds {
        before_round(round);
        for row in rows.iter_mut().filter(|r| r.failure.is_none()) {
            match scenario(row.spec()).await {
                Ok(run) => {
                    let probe = run.probe.map(|p| format!(", probe {:.3} ms", p * 1e3)).unwrap_or_default();
                    eprintln!(
                        "{:<28} run {round}: {:>8.2}s, server CPU {:>6.2}s, peak RSS {}{probe}",
                        row.name,
                        run.elapsed.as_secs_f64(),
                        run.cpu,
                        mib(run.peak_rss)
                    );
                    row.runs.push(run);
                }
                Err(e) if row.diagnostic => {
                    eprintln!("{} (diagnostic) FAILED: {e}", row.name);
                    row.failure = Some(e);
                }
                Err(e) => return Err(format!("{}: {e}", row.name)),
            }
        }
    }
    Ok(())
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// How a scenario's rate is computed from a run's time.
#[derive(Clone, Copy)]
pub enum Rate {
    /// `bytes` per run, shown in MB/s (10^6 bytes per second).
    Bytes(u64),
    /// `count` uploads per run, shown in uploads per second.
    Uploads(u64),
}

impl Rate {
    fn of(self, secs: f64) -> f64 {
        match self {
            Rate::Bytes(b) => b as f64 / secs / 1e6,
            Rate::Uploads(n) => n as f64 / secs,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Rate::Bytes(_) => "MB/s",
            Rate::Uploads(_) => "uploads/s",
        }
    }

    /// A row's rate at its median time.
    pub fn median(self, row: &Row) -> Option<f64> {
        row.median_secs().map(|s| self.of(s))
    }
}

/// The report of one benchmark: a header, the table of rows, ratios and targets.
pub struct Report {
    pub out: String,
    pub misses: usize,
}

impl Report {
    pub fn new(title: &str) -> Self {
        let mut out = String::new();
        let mode = if quick() { "QUICK mode (INTAKE_BENCH_QUICK=1): indicative only" } else { "full mode" };
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let _ = writeln!(out, "\n=== {title}, {mode} ===");
        let _ = writeln!(
            out,
            "{cpus} CPUs, load average {}; servers: a fresh process per run, tokio multi-thread (2 workers).",
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
        let _ = writeln!(
            out,
            "Rows run in turn, {} round(s); each figure is the median of its runs. Server CPU = utime + stime",
            runs()
        );
        let _ = writeln!(out, "of the server process; peak RSS = its VmHWM (worst run). MB/s = 10^6 bytes/s.");
        Report { out, misses: 0 }
    }

    pub fn line(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", text.as_ref());
    }

    /// The table of `rows` at `rate`; `per` divides the CPU seconds into a CPU cost per upload
    /// (for small uploads) when given.
    pub fn table(&mut self, rows: &[Row], rate: Rate, cpu_per: Option<u64>) {
        let cpu_head = if cpu_per.is_some() { "CPU us/upload" } else { "server CPU s" };
        let _ = writeln!(
            self.out,
            "    {:<54} {:>10}  {:<22} {:>13} {:>10}",
            "server",
            rate.unit(),
            "each run",
            cpu_head,
            "peak RSS"
        );
        for row in rows {
            if let Some(e) = &row.failure {
                let _ = writeln!(self.out, "    {:<54} FAILED: {e}", row.label);
                continue;
            }
            let Some(median) = rate.median(row) else { continue };
            let each: Vec<String> = row.runs.iter().map(|r| format!("{:.0}", rate.of(r.elapsed.as_secs_f64()))).collect();
            let cpu = match (row.median_cpu(), cpu_per) {
                (Some(c), Some(n)) => format!("{:.1}", c / n as f64 * 1e6),
                (Some(c), None) => format!("{c:.2}"),
                (None, _) => "-".into(),
            };
            let rss = row.peak_rss().map_or_else(|| "-".into(), mib);
            let _ = writeln!(self.out, "    {:<54} {median:>10.1}  {:<22} {cpu:>13} {rss:>10}", row.label, each.join(" "));
        }
    }

    /// A target: `measured` against `goal`, met when `pass`.
    pub fn target(&mut self, name: &str, measured: Option<String>, goal: &str, pass: Option<bool>) {
        let result = pass.map_or("not run", |p| if p { "PASS" } else { "MISS" });
        if pass == Some(false) {
            self.misses += 1;
        }
        let measured = measured.unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(self.out, "    target: {name:<52} {measured:>10} {goal:>12}  {result}");
    }

    /// The ratio of two rows' median rates, printed; `None` when either did not run.
    pub fn ratio(&mut self, rate: Rate, rows: &[Row], top: &str, bottom: &str) -> Option<f64> {
        let find = |name: &str| rows.iter().find(|r| r.name == name && r.failure.is_none());
        let ratio = rate.median(find(top)?)? / rate.median(find(bottom)?)?;
        let _ = writeln!(self.out, "    {:<54} {ratio:>10.3}", format!("ratio {top} / {bottom}"));
        Some(ratio)
    }

    /// Prints the report (and the outcome), and exits non-zero only when something broke.
    pub fn finish(mut self, outcome: Res<()>, started: Instant) {
        if quick() {
            self.line("  (quick mode: smaller scenarios than the targets were set for)");
        }
        let _ = writeln!(self.out, "bench time: {:.1}s", started.elapsed().as_secs_f64());
        print!("{}", self.out);
        if let Err(e) = outcome {
            eprintln!("\nbenchmark FAILED: {e}");
            std::process::exit(1);
        }
    }
}

/// A multi-thread client runtime of two workers, like the servers'.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("client runtime")
}
