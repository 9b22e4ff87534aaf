//! S3 benchmark: a file uploaded through intake into an S3 server, against the same file
//! uploaded straight to it by boto3's multipart upload with the same part size and concurrency.
//!
//! ```text
//! bash tests/s3/run.sh --install-only    # once: SeaweedFS, boto3 (tests/s3/.venv)
//! tests/s3/.venv/bin/python tests/s3/seaweed.py -- cargo bench --features s3 --bench s3
//! INTAKE_BENCH_QUICK=1 ...                # 64 MiB instead of 1 GiB
//! INTAKE_BENCH_RUNS=5 ...                 # 5 runs of each (default 3)
//! INTAKE_BENCH_MIB=256 ...                # another size
//! INTAKE_BENCH_SKIP_BOTO3=1 ...           # intake alone
//! INTAKE_S3_PART_SIZE=16777216 INTAKE_S3_CONCURRENCY=8 ...   # default 8 MiB × 4
//! ```
//! `seaweed.py` starts SeaweedFS on free loopback ports with a random SigV4 identity and runs the
//! command with `S3_ENDPOINT`, `S3_BUCKET` and the `AWS_*` credentials set; any S3 server with
//! those variables works.
//!
//! - **intake**: `POST /upload/raw` of the file (read from disk as it is sent, with
//!   `Content-Length`) to the router on its defaults (SHA-256 of the whole file, sniffing; rate
//!   limit off) with [`S3`](intake::storage::S3) as the store: the body streams into a multipart
//!   upload, `concurrency` parts at a time. The server is this binary re-executed in a process of
//!   its own, so its peak RSS (`VmHWM`) is the upload's.
//! - **boto3**: `upload_file` with `TransferConfig(multipart_threshold = multipart_chunksize =
//!   part size, max_concurrency = concurrency)`, in a Python process of its own.
//!
//! The two alternate, `runs` times each (intake first); the medians are compared. Each object
//! is deleted after its run. Targets: intake ≥ 0.90 × boto3, and peak RSS ≤ part size ×
//! (concurrency + 1) + 32 MiB. Missing one is reported, not fatal: the process fails only when
//! something broke.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const MIB: u64 = 1 << 20;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_num(name: &str, default: u64) -> u64 {
    env(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

struct Settings {
    endpoint: String,
    bucket: String,
    part: u64,
    concurrency: u64,
}

impl Settings {
    fn from_env() -> Option<Self> {
        Some(Self {
            endpoint: env("S3_ENDPOINT")?,
            bucket: env("S3_BUCKET")?,
            part: env_num("INTAKE_S3_PART_SIZE", 8 * MIB),
            concurrency: env_num("INTAKE_S3_CONCURRENCY", 4),
        })
    }
}

/// The server side: the router on S3, on a loopback port it prints.
fn serve(s: &Settings) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = intake::storage::S3::builder(&s.bucket)
            .endpoint(&s.endpoint)
            .allow_http(true)
            .part_size(s.part as usize)
            .concurrency(s.concurrency as usize)
            .build()
            .expect("S3 store");
        let uploads = intake::Uploads::new(store).max_body(8 << 30).rate_limit(intake::rate_limit::RateLimitLayer::disabled());
        let app = axum::Router::new().nest("/upload", uploads.into_router());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("address"));
        std::io::stdout().flush().expect("stdout");
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.expect("serve");
    });
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .env("INTAKE_S3_BENCH_SERVE", "1")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line)
            .expect("the server's address");
        let addr = line.trim().parse().unwrap_or_else(|_| panic!("the server printed {line:?}"));
        Self { child, addr }
    }

    /// `VmHWM` (peak) or `VmRSS` (now) of the server process.
    fn rss(&self, which: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        let kib = status.lines().find_map(|l| l.strip_prefix(which)).expect("VmHWM");
        kib.trim().trim_end_matches("kB").trim().parse::<u64>().expect("a number") * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One upload through intake; returns its time, the server's peak RSS and its RSS before the
/// upload, and the object's key.
async fn intake_run(file: &Path, size: u64) -> (Duration, u64, u64, String) {
    let server = Server::start();
    let idle = server.rss("VmRSS:");
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let reader = tokio::fs::File::open(file).await.expect("open the file");
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024));
    let started = Instant::now();
    let res = client
        .post(format!("http://{}/upload/raw?name=bench.bin", server.addr))
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = res.status();
    let answer: serde_json::Value = res.json().await.expect("a JSON answer");
    let elapsed = started.elapsed();
    assert_eq!(status.as_u16(), 201, "intake answered {status}: {answer}");
    let file = &answer["files"][0];
    assert_eq!(file["size"].as_u64(), Some(size), "{answer}");
    let key = file["id"].as_str().expect("an id").to_owned();
    (elapsed, server.rss("VmHWM:"), idle, key)
}

const BOTO3: &str = r#"
import os, sys, time, boto3
from boto3.s3.transfer import TransferConfig
path, key, part, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name=os.environ.get("AWS_REGION", "us-east-1"))
config = TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=conc, use_threads=True)
started = time.perf_counter()
s3.upload_file(path, os.environ["S3_BUCKET"], key, Config=config)
print(time.perf_counter() - started)
"#;

fn boto3_run(python: &Path, file: &Path, s: &Settings, key: &str) -> Duration {
    let out = Command::new(python)
        .args(["-c", BOTO3])
        .arg(file)
        .arg(key)
        .arg(s.part.to_string())
        .arg(s.concurrency.to_string())
        .output()
        .expect("run boto3");
    assert!(out.status.success(), "boto3 failed: {}", String::from_utf8_lossy(&out.stderr));
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("boto3's time");
    Duration::from_secs_f64(secs)
}

fn delete(python: &Path, key: &str) {
    let script = "import os, sys, boto3; boto3.client('s3', endpoint_url=os.environ['S3_ENDPOINT'], \
                  region_name='us-east-1').delete_object(Bucket=os.environ['S3_BUCKET'], Key=sys.argv[1])";
    let status = Command::new(python).args(["-c", script, key]).status().expect("delete");
    assert!(status.success(), "could not delete {key}");
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let Some(settings) = Settings::from_env() else {
        eprintln!(
            "no S3 server: set S3_ENDPOINT, S3_BUCKET and AWS_* (tests/s3/.venv/bin/python tests/s3/seaweed.py -- \
             cargo bench --features s3 --bench s3)"
        );
        return;
    };
    if env("INTAKE_S3_BENCH_SERVE").is_some() {
        return serve(&settings);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("tests/s3/.venv/bin/python");
    assert!(python.exists(), "boto3 lives in tests/s3/.venv: run tests/s3/run.sh --install-only");
    let quick = env("INTAKE_BENCH_QUICK").is_some();
    let size = env_num("INTAKE_BENCH_MIB", if quick { 64 } else { 1024 }) * MIB;
    let boto3 = env("INTAKE_BENCH_SKIP_BOTO3").is_none();
    let runs = env_num("INTAKE_BENCH_RUNS", 3) as usize;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("bench.bin");
    {
        // Incompressible bytes behind a text prefix (so sniffing sees no executable).
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
        out.write_all(b"intake s3 benchmark\n").expect("write");
        let mut block = vec![0u8; MIB as usize];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut written = 20;
        while written < size {
            for b in block.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            let n = (size - written).min(MIB) as usize;
            out.write_all(&block[..n]).expect("write");
            written += n as u64;
        }
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (mut intake_secs, mut boto_secs, mut peaks) = (Vec::new(), Vec::new(), Vec::new());
    let mib = size as f64 / MIB as f64;
    println!(
        "S3 upload of {mib:.0} MiB to {} (part {} MiB × concurrency {}), {runs} alternated runs each",
        settings.endpoint,
        settings.part / MIB,
        settings.concurrency
    );
    for run in 1..=runs {
        let (elapsed, peak, idle, key) = runtime.block_on(intake_run(&file, size));
        delete(&python, &key);
        println!(
            "  run {run}: intake {:>7.1} MiB/s ({:.2} s, peak RSS {:.1} MiB, {:.1} MiB before the upload)",
            mib / elapsed.as_secs_f64(),
            elapsed.as_secs_f64(),
            peak as f64 / MIB as f64,
            idle as f64 / MIB as f64
        );
        intake_secs.push(elapsed.as_secs_f64());
        peaks.push(peak);
        if !boto3 {
            continue;
        }
        let key = format!("bench/boto3-{run}");
        let elapsed = boto3_run(&python, &file, &settings, &key);
        delete(&python, &key);
        println!("  run {run}: boto3  {:>7.1} MiB/s ({:.2} s)", mib / elapsed.as_secs_f64(), elapsed.as_secs_f64());
        boto_secs.push(elapsed.as_secs_f64());
    }
    if !boto3 {
        boto_secs.push(f64::NAN);
    }
    let (intake, boto) = (mib / median(intake_secs), mib / median(boto_secs));
    let peak = *peaks.iter().max().expect("runs") as f64 / MIB as f64;
    let bound = (settings.part * (settings.concurrency + 1)) as f64 / MIB as f64 + 32.0;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "medians: intake {intake:.1} MiB/s, boto3 {boto:.1} MiB/s: intake/boto3 = {:.2} (target ≥ 0.90: {})",
        intake / boto,
        verdict(intake >= 0.9 * boto)
    );
    println!("intake peak RSS {peak:.1} MiB (target ≤ {bound:.0} MiB: {})", verdict(peak <= bound));
}
