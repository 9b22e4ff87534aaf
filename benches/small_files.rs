//! Small files: 4 KiB multipart form uploads over 16 keep-alive connections, through the full
//! stack into `LocalDisk`, against a bare axum handler that parses the form with multer and
//! writes each file to a new file.
//!
//! ```text
//! cargo bench --bench small_files
//! ```
//!
//! 20 000 uploads per run (2 000 in quick mode) after an uncounted warm-up, each a form with one
//! file part `x.bin`. Storage on disk (`target/tmp`) and on tmpfs (`/dev/shm`), which tells
//! the file system's share from the server's. Diagnostics: the full stack over `InMemory`
//! (against the bare handler on tmpfs) and without hashing. CPU us/upload is the server's CPU
//! time per upload: the least noisy figure on a shared machine.
//!
//! Small files are sensitive to the state of the file system: on ext4, creating files within
//! minutes of deleting thousands is many times slower (recently deleted inodes are passed
//! over), so the files of every run are kept until the end, and the cost of creating an empty
//! file is probed and printed before each round.

mod common;

use common::{Kind, Rate, Report, Row, Run, Spec, client, client_runtime, data_pool, upload_form, within};
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

const FILE: u64 = 4 * 1024;
const CONNECTIONS: usize = 16;
const TARGET_RATIO: f64 = 0.85;

/// Storage directories to delete once every run is done.
type Graveyard = Arc<std::sync::Mutex<Vec<tempfile::TempDir>>>;

fn rows() -> Vec<Row> {
    let mut rows = vec![
        Row::new("bare", "bare axum (multer, one new file each), disk", Kind::Bare),
        Row::new("full", "intake, full stack (SHA-256, LocalDisk), disk", Kind::Full),
        Row::new("full-redb", "intake, catalog in RedbState, disk", Kind::FullRedb),
    ];
    if let Some(shm) = common::tmpfs_root() {
        rows.extend([
            Row::new("bare@tmpfs", "bare axum, tmpfs", Kind::Bare).root(shm.clone()),
            Row::new("full@tmpfs", "intake, full stack, tmpfs", Kind::Full).root(shm.clone()),
            Row::new("full-redb@tmpfs", "intake, catalog in RedbState, tmpfs", Kind::FullRedb).root(shm.clone()),
        ]);
        if common::diag() {
            rows.extend([
                Row::new("full-nohash@tmpfs", "diag: intake, no hashing, tmpfs", Kind::FullNoHash).root(shm).diagnostic(),
                Row::new("full-memory", "diag: intake over InMemory (no file system)", Kind::FullMemory).diagnostic(),
            ]);
        }
    }
    common::only(rows)
}

/// Sends form uploads numbered from the shared counter until it reaches `end`.
async fn worker(client: reqwest::Client, url: String, pool: bytes::Bytes, next: Arc<AtomicUsize>, end: usize) -> common::Res<()> {
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= end {
            return Ok(());
        }
        upload_form(&client, &url, &pool, i as u64 * 97, FILE).await?;
    }
}

async fn batch(client: &reqwest::Client, url: &str, pool: &bytes::Bytes, count: usize) -> common::Res<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(worker(client.clone(), url.to_owned(), pool.clone(), next.clone(), count)))
        .collect();
    for w in workers {
        w.await.map_err(|e| format!("upload task: {e}"))??;
    }
    Ok(())
}

/// One run: a fresh server, a warm-up, then `count` timed uploads. Its files go to
/// `graveyard`, deleted at the end.
async fn one(spec: Spec, pool: bytes::Bytes, count: usize, graveyard: Graveyard) -> common::Res<Run> {
    let (pool, limit) = (&pool, Duration::from_secs(600));
    let server = spec.start()?;
    let client = client(CONNECTIONS)?;
    let url = server.url("/upload/form");
    let warmup = (count / 20).max(CONNECTIONS);
    within(limit, "warm-up", batch(&client, &url, pool, warmup)).await?;
    let cpu = server.cpu_secs()?;
    let started = Instant::now();
    within(limit, "form uploads", batch(&client, &url, pool, count)).await?;
    let run = server.run(started.elapsed(), cpu)?;
    server.verify((warmup + count) as u64, (warmup + count) as u64 * FILE)?;
    graveyard.lock().unwrap().extend(server.retire_keeping_files());
    Ok(run)
}

/// How long creating an empty file under the disk storage root takes, in microseconds (the
/// median of 200); the files stay in `graveyard`, so that the probe deletes nothing.
fn create_probe(graveyard: &Graveyard) -> f64 {
    let root = common::storage_root();
    let _ = std::fs::create_dir_all(&root);
    let Ok(dir) = tempfile::Builder::new().prefix("intake-bench-probe-").tempdir_in(&root) else { return f64::NAN };
    let mut times = Vec::with_capacity(200);
    for i in 0..200 {
        let started = Instant::now();
        let _ = std::fs::File::create(dir.path().join(format!("p{i}")));
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    graveyard.lock().unwrap().push(dir);
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    common::serve_if_child();
    let started = Instant::now();
    let count = if common::quick() { 2_000 } else { 20_000 };
    let mut rows = rows();
    let pool = data_pool();
    let graveyard = Graveyard::default();
    let mut probes = Vec::new();
    let outcome = client_runtime().block_on(common::run_rows(
        &mut rows,
        common::runs(),
        |_| probes.push(create_probe(&graveyard)),
        |spec| Box::pin(one(spec, pool.clone(), count, graveyard.clone())),
    ));
    drop(graveyard);
    let mut report = Report::new("intake benchmark: small files");
    report
        .line(format!("\n{count} form uploads of one 4 KiB file part, POST /upload/form, {CONNECTIONS} keep-alive connections"));
    let probes: Vec<String> = probes.iter().map(|us| format!("{us:.0}")).collect();
    report.line(format!(
        "creating an empty file under {} took {} us before each round (ext4: tens when quiet)",
        common::storage_root().display(),
        probes.join(", ")
    ));
    let rate = Rate::Uploads(count as u64);
    report.table(&rows, rate, Some(count as u64));
    let disk = report.ratio(rate, &rows, "full", "bare");
    let tmpfs = report.ratio(rate, &rows, "full@tmpfs", "bare@tmpfs");
    report.ratio(rate, &rows, "full-memory", "bare@tmpfs");
    for (name, ratio) in [("full / bare uploads/s, disk", disk), ("full / bare uploads/s, tmpfs", tmpfs)] {
        report.target(name, ratio.map(|r| format!("{r:.3}")), &format!(">= {TARGET_RATIO:.2}"), ratio.map(|r| r >= TARGET_RATIO));
    }
    report.finish(outcome, started);
}
