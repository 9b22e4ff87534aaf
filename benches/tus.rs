//! tus: one large upload (1 GiB; 64 MiB in quick mode) in one `PATCH`, in 5 MiB and in
//! 256 KiB `PATCH`es; on tmpfs and on disk; by a client that opens a connection per request and
//! by one that keeps it; through intake (SHA-256, and without hashing), a bare sink, and rustus
//! when its binary is given.
//!
//! ```text
//! cargo bench --bench tus
//! INTAKE_BENCH_RUSTUS=/work/rustus/target/release/rustus cargo bench --bench tus   # with rustus 1.1.4
//! INTAKE_BENCH_TUS_PATCH_MIB=0,5,0.25   # PATCH sizes in MiB (0: one PATCH); this is the default
//! INTAKE_BENCH_TUS_STORAGE=tmpfs,disk   # storages; INTAKE_BENCH_TUS_CLIENT=close,keep  # clients
//! ```
//!
//! `POST` with `Upload-Length`, then `PATCH`es of `application/offset+octet-stream` one after
//! the other, as tus clients send them, timed from the `POST` to the last `204`. Servers:
//!
//! - `tus`: the real router with upload state in `RedbState` (the default of `uploads_router()`;
//!   rate limit disabled, otherwise its defaults: SHA-256 carried across the `PATCH`es,
//!   `LocalDisk::new`). Each upload's stored SHA-256 is checked against the bytes sent.
//! - `tus-nohash`: the same without hashing.
//! - `bare-sink`: a bare axum handler appending each `PATCH`'s body to a file (no offsets, no
//!   state): what the file system and HTTP cost alone.
//! - `rustus`: rustus (s3rius/rustus, built from its tag 1.1.4 by whoever runs this; never
//!   vendored) at `INTAKE_BENCH_RUSTUS`, run as
//!   `rustus --host 127.0.0.1 --port P --data-dir D --info-dir D --max-body-size 2147483648`
//!   (file storage, file info storage, its other defaults; no hashing). Skipped, with a message,
//!   when the variable is not set or names no file.
//!
//! Figures: MB/s (median of the runs), server CPU seconds per GiB (`utime + stime` of the
//! server process, all threads) and per `PATCH`, peak RSS (`VmHWM`). Rows of a scenario run in
//! turn, round after round. The targets are those of issue 10 (intake against rustus).

mod common;

use common::{
    KIB, Kind, MIB, Rate, Report, Row, Run, Server, Spec, TUS_RESUMABLE, body_stream_at, chain, client, client_runtime,
    data_pool, expect_status, within,
};
use reqwest::header;
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

const TARGET_RATIO: f64 = 0.85;
const TARGET_PATCH: u64 = 5 * MIB;
const GIB: f64 = (1u64 << 30) as f64;

/// The PATCH sizes: `INTAKE_BENCH_TUS_PATCH_MIB` (comma-separated MiB, fractions allowed; 0 is
/// one PATCH), else one PATCH, 5 MiB and 256 KiB.
fn patch_sizes() -> Vec<u64> {
    let default = vec![0, TARGET_PATCH, 256 * KIB];
    let Ok(list) = std::env::var("INTAKE_BENCH_TUS_PATCH_MIB") else { return default };
    let sizes: Vec<u64> = list
        .split(',')
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .map(|mib| (mib * MIB as f64) as u64)
        .filter(|&n| n == 0 || n >= KIB)
        .collect();
    if sizes.is_empty() { default } else { sizes }
}

/// The items of a comma-separated setting that are among `all` (all of them without it).
fn chosen(var: &str, all: &[&'static str]) -> Vec<&'static str> {
    let Ok(list) = std::env::var(var) else { return all.to_vec() };
    let picked: Vec<&'static str> = all.iter().copied().filter(|a| list.split(',').any(|v| v.trim() == *a)).collect();
    if picked.is_empty() { all.to_vec() } else { picked }
}

/// The rustus binary, if `INTAKE_BENCH_RUSTUS` names one.
fn rustus() -> Result<PathBuf, String> {
    match std::env::var_os("INTAKE_BENCH_RUSTUS") {
        Some(path) if PathBuf::from(&path).is_file() => Ok(PathBuf::from(path)),
        Some(path) => Err(format!("INTAKE_BENCH_RUSTUS={} is not a file", PathBuf::from(path).display())),
        None => Err("INTAKE_BENCH_RUSTUS is not set".into()),
    }
}

fn patches_name(patch: u64) -> String {
    match patch {
        0 => "1patch".into(),
        n if n % MIB == 0 => format!("{}mib", n / MIB),
        n => format!("{}kib", n / KIB),
    }
}

fn patches_short(patch: u64) -> String {
    match patch {
        0 => "1 PATCH".into(),
        n if n % MIB == 0 => format!("{} MiB", n / MIB),
        n => format!("{} KiB", n / KIB),
    }
}

fn patches_label(patch: u64) -> String {
    match patch {
        0 => "one PATCH".into(),
        n if n % MIB == 0 => format!("{} MiB PATCHes", n / MIB),
        n => format!("{} KiB PATCHes", n / KIB),
    }
}

/// The servers compared, by row-name prefix.
const SERVERS: [(Kind, &str, &str); 4] = [
    (Kind::Rustus, "rustus", "rustus 1.1.4"),
    (Kind::Tus, "tus", "intake SHA-256"),
    (Kind::TusNoHash, "tus-nohash", "intake no hash"),
    (Kind::BareSink, "bare-sink", "bare sink"),
];

fn row_name(server: &str, patch: u64, storage: &str, client: &str) -> String {
    format!("{server}-{}-{storage}-{client}", patches_name(patch))
}

fn rows(with_rustus: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    for storage in chosen("INTAKE_BENCH_TUS_STORAGE", &["tmpfs", "disk"]) {
        let root = match storage {
            "tmpfs" => match common::tmpfs_root() {
                Some(root) => root,
                None => continue,
            },
            _ => common::storage_root(),
        };
        for client in chosen("INTAKE_BENCH_TUS_CLIENT", &["close", "keep"]) {
            for patch in patch_sizes() {
                for (kind, name, label) in SERVERS {
                    if kind == Kind::Rustus && !with_rustus {
                        continue;
                    }
                    let connection = if client == "close" { "new conn." } else { "keep-alive" };
                    rows.push(
                        Row::new(
                            row_name(name, patch, storage, client),
                            format!("{label}, {}, {storage}, {connection}", patches_short(patch)),
                            kind,
                        )
                        .param(patch)
                        .root(root.clone())
                        .keep_alive(client == "keep"),
                    );
                }
            }
        }
    }
    common::only(rows)
}

/// Where a server creates uploads, relative to its base URL.
fn create_path(kind: Kind) -> &'static str {
    match kind {
        Kind::Rustus => "/files/",
        Kind::BareSink => "/upload/sink/",
        _ => "/upload/tus/",
    }
}

/// One tus upload of `size` bytes in `PATCH`es of `patch` bytes (0: one) to `base`; the time
/// until the last `204` has been read, the upload's URL and the number of PATCHes.
async fn upload_tus(
    client: &reqwest::Client,
    base: &str,
    create: &str,
    pool: &bytes::Bytes,
    size: u64,
    patch: u64,
) -> common::Res<(Duration, String, u64)> {
    let started = Instant::now();
    let res = client
        .post(create)
        .header(TUS_RESUMABLE.0, TUS_RESUMABLE.1)
        .header("upload-length", size)
        .header("upload-metadata", "filename YmlnLmJpbg==") // big.bin
        .send()
        .await
        .map_err(|e| format!("POST {create}: {}", chain(&e)))?;
    let headers = expect_status(create, res, reqwest::StatusCode::CREATED).await?;
    let location =
        headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| format!("POST {create}: no Location"))?;
    let url = if location.starts_with('/') { format!("{base}{location}") } else { location.to_owned() };
    let step = if patch == 0 { size } else { patch };
    let (mut offset, mut patches) = (0u64, 0u64);
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
        patches += 1;
    }
    Ok((started.elapsed(), url, patches))
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

/// The rustus command line: `{dir}` and `{port}` are filled in by `Server::start_program`.
const RUSTUS_ARGS: [&str; 10] =
    ["--host", "127.0.0.1", "--port", "{port}", "--data-dir", "{dir}", "--info-dir", "{dir}", "--max-body-size", "2147483648"];

async fn one(spec: Spec, pool: bytes::Bytes, size: u64, sha256: String) -> common::Res<Run> {
    let limit = Duration::from_secs(600);
    let server = match spec.kind {
        Kind::Rustus => Server::start_program(Kind::Rustus, &rustus()?, &RUSTUS_ARGS, &spec.root)?,
        _ => spec.start()?,
    };
    let client = client(if spec.keep_alive { 1 } else { 0 })?;
    let cpu = server.cpu_secs()?;
    if spec.kind == Kind::Bare {
        let url = server.url("/upload/raw?name=big.bin");
        let elapsed = within(limit, &url, common::upload_raw(&client, &url, &pool, size)).await?;
        let run = server.run(elapsed, cpu)?;
        server.verify(1, size)?;
        Server::retire(server);
        return Ok(run);
    }
    let (base, create) = (server.url(""), server.url(create_path(spec.kind)));
    let (elapsed, url, patches) =
        within(limit, "tus upload", upload_tus(&client, &base, &create, &pool, size, spec.param)).await?;
    let run = Run { patches, ..server.run(elapsed, cpu)? };
    server.verify(1, size)?;
    if matches!(spec.kind, Kind::Tus | Kind::TusNoHash) {
        let stored = within(limit, "the stored digest", stored_sha256(&client, &url)).await?;
        match (spec.kind.hashes(), stored) {
            (true, Some(d)) if d == sha256 => {}
            (false, None) => {}
            (_, stored) => {
                return Err(format!("the {} server stored SHA-256 {stored:?}; the bytes sent have {sha256}", spec.kind.name()));
            }
        }
    }
    let probe = if common::diag() && matches!(spec.kind, Kind::Tus | Kind::TusNoHash) {
        Some(within(limit, "empty PATCHes", empty_patches(&client, &base)).await?)
    } else {
        None
    };
    Server::retire(server);
    Ok(Run { probe, ..run })
}

/// The median rate of a row, by name.
fn rate_of(rows: &[Row], rate: Rate, name: &str) -> Option<f64> {
    rows.iter().find(|r| r.name == name && r.failure.is_none()).and_then(|r| rate.median(r))
}

fn find<'a>(rows: &'a [Row], name: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.name == name && r.failure.is_none() && !r.runs.is_empty())
}

/// Server CPU seconds per GiB of a row (median of its runs).
fn cpu_per_gib(rows: &[Row], name: &str, size: u64) -> Option<f64> {
    find(rows, name)?.median_cpu().map(|c| c / (size as f64 / GIB))
}

/// Server CPU milliseconds per PATCH of a row (median of its runs).
fn cpu_per_patch(rows: &[Row], name: &str) -> Option<f64> {
    let row = find(rows, name)?;
    let patches = row.runs.first()?.patches.max(1);
    row.median_cpu().map(|c| c / patches as f64 * 1e3)
}

fn show(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

/// The table of issue 10, one line per scenario.
fn issue_table(report: &mut Report, rows: &[Row], size: u64) {
    let rate = Rate::Bytes(size);
    report.line("\n    MB/s (median); ratios of intake to rustus; CPU = server CPU-s per GiB (ms per PATCH); RSS = peak MiB");
    report.line(format!(
        "    {:<16} {:<6} {:<6} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6}  {:<26} {:<22} {:<13}",
        "PATCH size",
        "store",
        "client",
        "rustus",
        "intake",
        "nohash",
        "bare",
        "i/r",
        "nh/r",
        "CPU rustus/intake/nh/bare",
        "ms/PATCH rustus/nh",
        "RSS rustus/i"
    ));
    for storage in ["tmpfs", "disk"] {
        for client in ["close", "keep"] {
            for patch in patch_sizes() {
                let name = |server: &str| row_name(server, patch, storage, client);
                if SERVERS.iter().all(|(_, s, _)| find(rows, &name(s)).is_none()) {
                    continue;
                }
                let mbs = |server: &str| rate_of(rows, rate, &name(server));
                let ratio = |server: &str| Some(mbs(server)? / mbs("rustus")?);
                let cpus: Vec<String> = SERVERS.iter().map(|(_, s, _)| show(cpu_per_gib(rows, &name(s), size), 1)).collect();
                let per_patch = format!(
                    "{} / {}",
                    show(cpu_per_patch(rows, &name("rustus")), 3),
                    show(cpu_per_patch(rows, &name("tus-nohash")), 3)
                );
                let rss = |server: &str| find(rows, &name(server)).and_then(Row::peak_rss).map(|b| b as f64 / MIB as f64);
                report.line(format!(
                    "    {:<16} {:<6} {:<6} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6}  {:<26} {:<22} {:<13}",
                    patches_label(patch),
                    storage,
                    client,
                    show(mbs("rustus"), 0),
                    show(mbs("tus"), 0),
                    show(mbs("tus-nohash"), 0),
                    show(mbs("bare-sink"), 0),
                    show(ratio("tus"), 2),
                    show(ratio("tus-nohash"), 2),
                    cpus.join(" / "),
                    per_patch,
                    format!("{} / {}", show(rss("rustus"), 0), show(rss("tus"), 0)),
                ));
            }
        }
    }
}

/// The targets of issue 10, for every storage and client that ran with rustus.
fn issue_targets(report: &mut Report, rows: &[Row], size: u64) {
    let rate = Rate::Bytes(size);
    let goals: [(&str, u64, f64); 4] =
        [("tus", 256 * KIB, 1.0), ("tus", TARGET_PATCH, 1.3), ("tus-nohash", 256 * KIB, 1.5), ("tus-nohash", TARGET_PATCH, 1.5)];
    for storage in ["tmpfs", "disk"] {
        for client in ["close", "keep"] {
            for (server, patch, goal) in goals {
                let (ours, theirs) = (row_name(server, patch, storage, client), row_name("rustus", patch, storage, client));
                if find(rows, &theirs).is_none() || find(rows, &ours).is_none() {
                    continue;
                }
                let ratio = rate_of(rows, rate, &ours).zip(rate_of(rows, rate, &theirs)).map(|(a, b)| a / b);
                let what = if server == "tus" { "SHA-256" } else { "no hash" };
                report.target(
                    &format!("{what}, {}, {storage}, {client}: intake / rustus", patches_label(patch)),
                    ratio.map(|r| format!("{r:.2}")),
                    &format!(">= {goal:.1}"),
                    ratio.map(|r| r >= goal),
                );
            }
            for patch in [256 * KIB, TARGET_PATCH] {
                let (ours, theirs) = (row_name("tus-nohash", patch, storage, client), row_name("rustus", patch, storage, client));
                let cpu = cpu_per_patch(rows, &ours).zip(cpu_per_patch(rows, &theirs));
                if cpu.is_none() {
                    continue;
                }
                report.target(
                    &format!("CPU per PATCH, no hash, {}, {storage}, {client}: intake / rustus", patches_label(patch)),
                    cpu.map(|(a, b)| format!("{:.2}", a / b)),
                    "<= 1.0",
                    cpu.map(|(a, b)| a <= b),
                );
            }
        }
    }
}

fn main() {
    common::serve_if_child();
    let started = Instant::now();
    let size = if common::quick() { 64 * MIB } else { 1 << 30 };
    let with_rustus = match rustus() {
        Ok(_) => true,
        Err(why) => {
            eprintln!("rustus: skipped ({why}); build rustus 1.1.4 and set INTAKE_BENCH_RUSTUS to its binary to compare");
            false
        }
    };
    let mut rows = rows(with_rustus);
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
        "\none {} tus upload: POST, then PATCHes one after the other; disk storage under {}, tmpfs under /dev/shm",
        common::mib(size),
        common::storage_root().display()
    ));
    if !with_rustus {
        report.line("rustus: SKIPPED (INTAKE_BENCH_RUSTUS names no rustus binary); its columns and targets are empty");
    }
    let rate = Rate::Bytes(size);
    report.table(&rows, rate, None);
    issue_table(&mut report, &rows, size);
    report.line("");
    let main_ratio =
        report.ratio(rate, &rows, &row_name("tus", TARGET_PATCH, "disk", "keep"), &row_name("tus", 0, "disk", "keep"));
    let probed: Vec<&Row> = rows.iter().filter(|r| r.median_probe().is_some()).collect();
    if !probed.is_empty() {
        report.line("    fixed cost of a PATCH (median of 100 PATCHes with no bytes; median of runs):");
        for row in probed {
            report.line(format!("    {:<54} {:>10.3} ms", row.name, row.median_probe().unwrap_or(f64::NAN) * 1e3));
        }
    }
    report.target(
        &format!("{} / one PATCH, disk, kept connection, MB/s", patches_label(TARGET_PATCH)),
        main_ratio.map(|r| format!("{r:.3}")),
        &format!(">= {TARGET_RATIO:.2}"),
        main_ratio.map(|r| r >= TARGET_RATIO),
    );
    issue_targets(&mut report, &rows, size);
    report.finish(outcome, started);
}
