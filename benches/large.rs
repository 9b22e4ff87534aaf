//! One large raw upload (1 GiB; 64 MiB in quick mode) through the full stack, against bare axum
//! handlers that stream the body to a file.
//!
//! ```text
//! cargo bench --bench large
//! ```
//!
//! `POST /upload/raw?name=big.bin` (`application/octet-stream`, with `Content-Length`) to the
//! real router (rate limit disabled, otherwise its defaults: SHA-256, `LocalDisk::new`). The
//! target's baseline is a bare handler that streams the body to a file through a 256 KiB
//! `BufWriter` and hashes it with SHA-256 on a thread of its own, beside the writes (as intake
//! hashes large bodies): SHA-256 at about 1 GB/s on this CPU bounds both. Diagnostics: the bare
//! handler without hashing and hashing between writes, the full stack without hashing. See
//! `common/mod.rs` for the settings every benchmark shares.

mod common;

use common::{Kind, MIB, Rate, Report, Row, Run, Server, Spec, client, client_runtime, data_pool, upload_raw, within};
use std::time::{Duration, Instant};

const TARGET_RATIO: f64 = 0.95;
const TARGET_RSS: u64 = 32 * MIB;

fn rows() -> Vec<Row> {
    let mut rows = vec![
        Row::new("bare-sha-thread", "bare axum + SHA-256 on its own thread (baseline)", Kind::BareShaThread),
        Row::new("full", "intake, full stack (SHA-256, LocalDisk)", Kind::Full),
    ];
    if common::diag() {
        rows.extend([
            Row::new("bare", "diag: bare axum, no hashing", Kind::Bare).diagnostic(),
            Row::new("bare-sha", "diag: bare axum + SHA-256 between writes", Kind::BareSha).diagnostic(),
            Row::new("full-nohash", "diag: intake, no hashing", Kind::FullNoHash).diagnostic(),
        ]);
    }
    common::only(rows)
}

async fn one(spec: Spec, pool: bytes::Bytes, size: u64, limit: Duration) -> common::Res<Run> {
    let server = spec.start()?;
    let client = client(1)?;
    let url = server.url("/upload/raw?name=big.bin");
    let cpu = server.cpu_secs()?;
    let elapsed = within(limit, &url, upload_raw(&client, &url, &pool, size)).await?;
    let run = server.run(elapsed, cpu)?;
    server.verify(1, size)?;
    Server::retire(server);
    Ok(run)
}

fn main() {
    common::serve_if_child();
    let started = Instant::now();
    let size = if common::quick() { 64 * MIB } else { 1 << 30 };
    let limit = Duration::from_secs(600);
    let mut rows = rows();
    let pool = data_pool();
    let outcome = client_runtime().block_on(async {
        // Untimed: the first large write of a process tree is slow while the kernel first hands
        // out page-cache memory; the first measured run should not pay for it.
        let warm = Row::new("warm-up", "", Kind::Bare).spec();
        one(warm, pool.clone(), size, limit).await.map_err(|e| format!("warm-up: {e}"))?;
        common::run_rows(&mut rows, common::runs(), |_| {}, |spec| Box::pin(one(spec, pool.clone(), size, limit))).await
    });
    let mut report = Report::new("intake benchmark: one large upload");
    report.line(format!(
        "\none {} raw upload: POST /upload/raw?name=big.bin, application/octet-stream; storage under {}",
        common::mib(size),
        common::storage_root().display()
    ));
    let rate = Rate::Bytes(size);
    report.table(&rows, rate, None);
    let ratio = report.ratio(rate, &rows, "full", "bare-sha-thread");
    report.ratio(rate, &rows, "full-nohash", "bare");
    report.target(
        "full / bare + SHA-256 thread, MB/s",
        ratio.map(|r| format!("{r:.3}")),
        &format!(">= {TARGET_RATIO:.2}"),
        ratio.map(|r| r >= TARGET_RATIO),
    );
    let rss = rows.iter().find(|r| r.name == "full").and_then(Row::peak_rss);
    report.target(
        "full, peak RSS",
        rss.map(common::mib),
        &format!("<= {}", common::mib(TARGET_RSS)),
        rss.map(|r| r <= TARGET_RSS),
    );
    report.finish(outcome, started);
}
