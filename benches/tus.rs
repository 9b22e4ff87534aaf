//! tus: one large upload (1 GiB; 64 MiB in quick mode) in 5 MiB `PATCH`es, against the same
//! upload in one `PATCH`, through the same stack.
//!
//! ```text
//! cargo bench --bench tus
//! INTAKE_BENCH_TUS_PATCH_MIB=1,5,64 cargo bench --bench tus   # other PATCH sizes too
//! ```
//!
//! `POST /upload/tus/` with `Upload-Length`, then `PATCH`es of `application/offset+octet-stream`
//! one after the other, as tus clients send them, timed from the `POST` to the last `204`. The
//! real router with upload state in `RedbState` (the default of `uploads_router()`; rate limit
//! disabled, otherwise its defaults: SHA-256 carried across the `PATCH`es, `LocalDisk::new`).
//! Each upload's stored SHA-256 is checked against the bytes sent. Diagnostics: the same without
//! hashing, with `MemoryState`, a bare handler receiving the bytes in one `POST`, and the fixed
//! cost of a `PATCH` (the median time of 100 `PATCH`es that carry no bytes, after each upload).

mod common;

use common::{
    KIB, Kind, MIB, Rate, Report, Row, Run, Server, Spec, TUS_RESUMABLE, body_stream_at, chain, client, client_runtime,
    data_pool, expect_status, within,
};
use reqwest::header;
use std::time::{Duration, Instant};

const TARGET_RATIO: f64 = 0.85;
const TARGET_PATCH: u64 = 5 * MIB;

/// The PATCH sizes: `INTAKE_BENCH_TUS_PATCH_MIB` (comma-separated MiB, fractions allowed), else
/// 5 MiB.
fn patch_sizes() -> Vec<u64> {
    let Ok(list) = std::env::var("INTAKE_BENCH_TUS_PATCH_MIB") else { return vec![TARGET_PATCH] };
    let sizes: Vec<u64> = list
        .split(',')
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .map(|mib| (mib * MIB as f64) as u64)
        .filter(|&n| n >= KIB)
        .collect();
    if sizes.is_empty() { vec![TARGET_PATCH] } else { sizes }
}

fn patches_name(patch: u64) -> String {
    match patch {
        0 => "1patch".into(),
        n if n % MIB == 0 => format!("{}mib", n / MIB),
        n => format!("{}kib", n / KIB),
    }
}

fn patches_label(patch: u64) -> String {
    match patch {
        0 => "one PATCH".into(),
        n if n % MIB == 0 => format!("{} MiB PATCHes", n / MIB),
        n => format!("{} KiB PATCHes", n / KIB),
    }
}

fn rows() -> Vec<Row> {
    let sizes = patch_sizes();
    let tus = |kind: Kind, what: &str, patch: u64| {
        Row::new(format!("{}-{}", kind.name(), patches_name(patch)), format!("{what}, {}", patches_label(patch)), kind)
            .param(patch)
    };
    let mut rows = vec![tus(Kind::Tus, "tus (SHA-256, RedbState)", 0)];
    rows.extend(sizes.iter().map(|&p| tus(Kind::Tus, "tus (SHA-256, RedbState)", p)));
    if common::diag() {
        rows.push(tus(Kind::TusNoHash, "diag: tus, no hashing", 0).diagnostic());
        rows.extend(sizes.iter().map(|&p| tus(Kind::TusNoHash, "diag: tus, no hashing", p).diagnostic()));
        rows.extend(sizes.iter().map(|&p| tus(Kind::TusMemState, "diag: tus, MemoryState", p).diagnostic()));
        rows.push(Row::new("bare-sha-thread", "diag: bare axum + SHA-256 thread, one POST", Kind::BareShaThread).diagnostic());
    }
    common::only(rows)
}

/// One tus upload of `size` bytes in `PATCH`es of `patch` bytes (0: one); the time until the
/// last `204` has been read, and the upload's URL.
async fn upload_tus(
    client: &reqwest::Client,
    base: &str,
    pool: &bytes::Bytes,
    size: u64,
    patch: u64,
) -> common::Res<(Duration, String)> {
    let started = Instant::now();
    let create = format!("{base}/upload/tus/");
    let res = client
        .post(&create)
        .header(TUS_RESUMABLE.0, TUS_RESUMABLE.1)
        .header("upload-length", size)
        .header("upload-metadata", "filename YmlnLmJpbg==") // big.bin
        .send()
        .await
        .map_err(|e| format!("POST {create}: {}", chain(&e)))?;
    let headers = expect_status(&create, res, reqwest::StatusCode::CREATED).await?;
    let location =
        headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| format!("POST {create}: no Location"))?;
    let url = if location.starts_with('/') { format!("{base}{location}") } else { location.to_owned() };
    let step = if patch == 0 { size } else { patch };
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

/// The SHA-256 the server catalogued for a finished upload: the `ETag` of its download.
async fn stored_sha256(client: &reqwest::Client, url: &str) -> common::Res<Option<String>> {
    let res = client.get(url).header(header::RANGE, "bytes=0-0").send().await.map_err(|e| format!("GET {url}: {}", chain(&e)))?;
    let headers = expect_status(url, res, reqwest::StatusCode::PARTIAL_CONTENT).await?;
    Ok(headers.get(header::ETAG).and_then(|v| v.to_str().ok()).map(|etag| etag.trim_matches('"').to_owned()))
}

/// The fixed cost of a `PATCH`: the median time of 100 that carry no bytes, to a second upload
/// (of 2 bytes, 1 of them sent first so that nothing is sniffed), in seconds.
async fn empty_patches(client: &reqwest::Client, base: &str) -> common::Res<f64> {
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
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

async fn one(spec: Spec, pool: bytes::Bytes, size: u64, sha256: String) -> common::Res<Run> {
    let limit = Duration::from_secs(600);
    let server = spec.start()?;
    let client = client(1)?;
    let cpu = server.cpu_secs()?;
    if spec.kind.is_bare() {
        let url = server.url("/upload/raw?name=big.bin");
        let elapsed = within(limit, &url, common::upload_raw(&client, &url, &pool, size)).await?;
        let run = server.run(elapsed, cpu)?;
        server.verify(1, size)?;
        Server::retire(server);
        return Ok(run);
    }
    let base = server.url("");
    let (elapsed, url) = within(limit, "tus upload", upload_tus(&client, &base, &pool, size, spec.param)).await?;
    let run = server.run(elapsed, cpu)?;
    server.verify(1, size)?;
    let stored = within(limit, "the stored digest", stored_sha256(&client, &url)).await?;
    match (spec.kind.hashes(), stored) {
        (true, Some(d)) if d == sha256 => {}
        (false, None) => {}
        (_, stored) => {
            return Err(format!("the {} server stored SHA-256 {stored:?}; the bytes sent have {sha256}", spec.kind.name()));
        }
    }
    let probe = if common::diag() { Some(within(limit, "empty PATCHes", empty_patches(&client, &base)).await?) } else { None };
    Server::retire(server);
    Ok(Run { probe, ..run })
}

fn main() {
    common::serve_if_child();
    let started = Instant::now();
    let size = if common::quick() { 64 * MIB } else { 1 << 30 };
    let mut rows = rows();
    let pool = data_pool();
    let sha256 = common::pool_sha256(&pool, size);
    let outcome = client_runtime().block_on(async {
        // Untimed: the first large write of a process tree is slow while the kernel first hands
        // out page-cache memory; the first measured run should not pay for it.
        let warm = Row::new("warm-up", "", Kind::Bare).spec();
        one(warm, pool.clone(), size, sha256.clone()).await.map_err(|e| format!("warm-up: {e}"))?;
        common::run_rows(&mut rows, common::runs(), |_| {}, |spec| Box::pin(one(spec, pool.clone(), size, sha256.clone()))).await
    });
    let mut report = Report::new("intake benchmark: tus");
    report.line(format!(
        "\none {} tus upload: POST /upload/tus/, then PATCHes one after the other; storage under {}",
        common::mib(size),
        common::storage_root().display()
    ));
    let rate = Rate::Bytes(size);
    report.table(&rows, rate, None);
    let main_ratio = report.ratio(rate, &rows, &format!("tus-{}", patches_name(TARGET_PATCH)), "tus-1patch");
    for &p in patch_sizes().iter().filter(|&&p| p != TARGET_PATCH) {
        report.ratio(rate, &rows, &format!("tus-{}", patches_name(p)), "tus-1patch");
    }
    for &p in &patch_sizes() {
        report.ratio(rate, &rows, &format!("tus-nohash-{}", patches_name(p)), "tus-nohash-1patch");
    }
    report.ratio(rate, &rows, "tus-1patch", "bare-sha-thread");
    let probed: Vec<&Row> = rows.iter().filter(|r| r.median_probe().is_some()).collect();
    if !probed.is_empty() {
        report.line("    fixed cost of a PATCH (median of 100 PATCHes with no bytes; median of runs):");
        for row in probed {
            report.line(format!("    {:<54} {:>10.3} ms", row.name, row.median_probe().unwrap_or(f64::NAN) * 1e3));
        }
    }
    report.target(
        &format!("{} / one PATCH, MB/s", patches_label(TARGET_PATCH)),
        main_ratio.map(|r| format!("{r:.3}")),
        &format!(">= {TARGET_RATIO:.2}"),
        main_ratio.map(|r| r >= TARGET_RATIO),
    );
    report.finish(outcome, started);
}
