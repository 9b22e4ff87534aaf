//! Memory: the server's peak RSS while 100 form uploads of 20 MiB each (20 of 2 MiB in quick
//! mode) stream in at once, on hyper's default buffers and with bounded ones, and what bounding
//! them costs in throughput.
//!
//! ```text
//! cargo bench --bench memory
//! ```
//!
//! Each upload is a multipart form with one streamed file part, `POST /upload/form`, all
//! started together on connections of their own. Rows: a bare axum handler (multer, each file
//! to a new file) on `axum::serve`; the full stack on `axum::serve` (hyper's read buffer grows
//! to about 400 KiB per connection, and `LocalDisk` gathers 256 KiB while writing the previous
//! 256 KiB); the full stack on `intake::serve` with `max_buf_size` and a smaller `LocalDisk`
//! write buffer. Peak RSS is the server process's `VmHWM`.

mod common;

use common::{
    KIB, Kind, MAX_BUF_ENV, MIB, Rate, Report, Row, Run, Server, Spec, WRITE_BUF_ENV, client, client_runtime, data_pool,
};
use std::time::{Duration, Instant};

const TARGET_RSS: u64 = 32 * MIB;
/// The bounded configuration the target is for: hyper's `max_buf_size`, `LocalDisk`'s write
/// buffer.
const BOUNDED: (u64, u64) = (32 * KIB, 32 * KIB);

fn rows() -> Vec<Row> {
    let (max_buf, write_buf) = BOUNDED;
    let mut rows = vec![
        Row::new("bare", "bare axum (multer, each file to a new file)", Kind::Bare),
        Row::new("full", "intake, full stack, axum::serve", Kind::Full),
        Row::new(
            "full-bounded",
            format!("intake::serve max_buf_size {} KiB, write buffer {} KiB", max_buf / KIB, write_buf / KIB),
            Kind::Full,
        )
        .env(MAX_BUF_ENV, max_buf)
        .env(WRITE_BUF_ENV, write_buf),
    ];
    if common::diag() {
        rows.extend([
            Row::new("full-serve", "diag: intake::serve, hyper's default buffers", Kind::Full)
                .env(MAX_BUF_ENV, "default")
                .diagnostic(),
            Row::new("full-16k", "diag: max_buf_size 16 KiB, write buffer 32 KiB", Kind::Full)
                .env(MAX_BUF_ENV, 16 * KIB)
                .env(WRITE_BUF_ENV, 32 * KIB)
                .diagnostic(),
            Row::new("full-64k", "diag: max_buf_size 64 KiB, write buffer 64 KiB", Kind::Full)
                .env(MAX_BUF_ENV, 64 * KIB)
                .env(WRITE_BUF_ENV, 64 * KIB)
                .diagnostic(),
        ]);
    }
    common::only(rows)
}

async fn one(spec: Spec, pool: bytes::Bytes, count: usize, size: u64) -> common::Res<Run> {
    let server = spec.start()?;
    let client = client(count)?;
    let url = server.url("/upload/form");
    let cpu = server.cpu_secs()?;
    let started = Instant::now();
    let uploads: Vec<_> = (0..count)
        .map(|i| {
            let (client, pool, url) = (client.clone(), pool.clone(), url.clone());
            tokio::spawn(async move { common::upload_form(&client, &url, &pool, i as u64 * 4099, size).await })
        })
        .collect();
    common::within(Duration::from_secs(600), "concurrent form uploads", async {
        for upload in uploads {
            upload.await.map_err(|e| format!("upload task: {e}"))??;
        }
        Ok(())
    })
    .await?;
    let run = server.run(started.elapsed(), cpu)?;
    server.verify(count as u64, count as u64 * size)?;
    Server::retire(server);
    Ok(run)
}

fn main() {
    common::serve_if_child();
    let started = Instant::now();
    let (count, size) = if common::quick() { (20, 2 * MIB) } else { (100, 20 * MIB) };
    let mut rows = rows();
    let pool = data_pool();
    let outcome = client_runtime().block_on(common::run_rows(
        &mut rows,
        common::runs(),
        |_| {},
        |spec| Box::pin(one(spec, pool.clone(), count, size)),
    ));
    let mut report = Report::new("intake benchmark: memory");
    report.line(format!(
        "\n{count} concurrent form uploads of one {} file part each, POST /upload/form; storage under {}",
        common::mib(size),
        common::storage_root().display()
    ));
    report.table(&rows, Rate::Bytes(count as u64 * size), None);
    report.ratio(Rate::Bytes(count as u64 * size), &rows, "full-bounded", "full");
    for name in ["full", "full-bounded"] {
        let rss = rows.iter().find(|r| r.name == name).and_then(Row::peak_rss);
        report.target(
            &format!("{name}, peak RSS"),
            rss.map(common::mib),
            &format!("<= {}", common::mib(TARGET_RSS)),
            rss.map(|r| r <= TARGET_RSS),
        );
    }
    report.finish(outcome, started);
}
