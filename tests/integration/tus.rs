//! tus over real TCP: nesting, locks held by stalled requests, progress, expiry and sweeping.
//! (Protocol details are covered request by request in `tests/tus`; real clients in
//! `tests/tus-clients`.)

use crate::{common::*, progress::SseReader};
use axum::Router;
use intake::{Uploads, state::MemoryState, storage::LocalDisk};
use std::time::Duration;

const TUS: (&str, &str) = ("tus-resumable", "1.0.0");

async fn create(server: &TestServer, length: usize) -> String {
    let res = server
        .client
        .post(server.url("/tus/"))
        .header(TUS.0, TUS.1)
        .header("upload-length", length)
        .header("upload-metadata", "filename ZGF0YS5iaW4=")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    header(&res, "location").expect("a Location")
}

async fn patch(server: &TestServer, location: &str, offset: usize, body: Vec<u8>) -> reqwest::Response {
    server
        .client
        .patch(server.absolute(location))
        .header(TUS.0, TUS.1)
        .header("upload-offset", offset)
        .header("content-type", "application/offset+octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn offset(server: &TestServer, location: &str) -> (u16, Option<usize>) {
    let res = server.client.head(server.absolute(location)).header(TUS.0, TUS.1).send().await.unwrap();
    (res.status().as_u16(), header(&res, "upload-offset").map(|o| o.parse().unwrap()))
}

#[tokio::test]
async fn locations_follow_the_nesting_prefix() {
    for prefix in ["/upload", "/api/v1/files"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let app = Router::new().nest(prefix, Uploads::new(LocalDisk::new(&root)).into_router());
        let server = TestServer::with_app(app, prefix, Some(dir), Some(root)).await;
        let data = pseudo_random(300_000, 7);
        let location = create(&server, data.len()).await;
        assert!(location.starts_with(&server.absolute(&format!("{prefix}/tus/"))), "{location} under {prefix}");
        for (at, piece) in [(0, &data[..100_000]), (100_000, &data[100_000..])] {
            let res = patch(&server, &location, at, piece.to_vec()).await;
            assert_eq!(res.status(), 204, "{prefix}");
        }
        let res = server.client.get(server.absolute(&location)).header(TUS.0, TUS.1).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "etag").unwrap(), format!("\"{}\"", sha256_hex(&data)), "the whole-upload SHA-256");
        assert_eq!(res.bytes().await.unwrap(), data);
        // The same file through the router's download route.
        let id = location.rsplit('/').next().unwrap();
        assert_eq!(server.object_bytes(id), data);
    }
}

#[tokio::test]
async fn a_stalled_request_lets_go_of_its_upload() {
    let server = TestServer::disk(|u| u.lock_stale_after(Duration::from_millis(300))).await;
    let data = pseudo_random(200_000, 3);
    let location = create(&server, data.len()).await;
    // A client sends half its PATCH and goes quiet (lost connection, not yet noticed).
    let mut stalled = RawConn::connect(server.addr).await;
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    stalled.send(head.as_bytes()).await;
    stalled.send(&data[..100_000]).await;
    // Bytes still gathered for a disk write are not reported until they are written.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(offset(&server, &location).await, (200, Some(0)));
    // The client retries from the offset it saw: the retry asks the stalled request to let go,
    // which writes what it received and ends; the retry then learns the real offset (409), as
    // tus clients do, and continues from it.
    let res = bounded("the retried PATCH", patch(&server, &location, 0, data.clone())).await;
    assert_eq!(res.status(), 409);
    assert_eq!(header(&res, "upload-offset").as_deref(), Some("100000"));
    let res = patch(&server, &location, 100_000, data[100_000..].to_vec()).await;
    assert_eq!(res.status(), 204);
    let old = stalled.response().await.expect("the stalled request is answered");
    assert_eq!((old.status, old.json()["code"].as_str()), (423, Some("upload_interrupted")));
    let res = server.client.get(server.absolute(&location)).header(TUS.0, TUS.1).send().await.unwrap();
    assert_eq!(res.bytes().await.unwrap(), data);
}

#[tokio::test]
async fn a_request_stalled_within_the_sniffing_window_lets_go() {
    // The first bytes of an upload are held back until the content policy has seen enough of
    // them; a request that stalls in there must let go like any other (it kept its lock until
    // the body timeout, so retries got 423).
    let server = TestServer::disk(|u| u.lock_stale_after(Duration::from_millis(300))).await;
    let data = pseudo_random(20_000, 4);
    let location = create(&server, data.len()).await;
    let mut stalled = RawConn::connect(server.addr).await;
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    stalled.send(head.as_bytes()).await;
    stalled.send(&data[..100]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let (status, at) = offset(&server, &location).await;
    assert_eq!(status, 200);
    let at = at.unwrap();
    let res = bounded("the retried PATCH", patch(&server, &location, at, data[at..].to_vec())).await;
    let res = match res.status().as_u16() {
        409 => {
            let at: usize = header(&res, "upload-offset").unwrap().parse().unwrap();
            patch(&server, &location, at, data[at..].to_vec()).await
        }
        _ => res,
    };
    assert_eq!(res.status(), 204, "the retry takes the upload over");
    assert!(started.elapsed() < Duration::from_secs(4), "within the stale time, not the body timeout: {:?}", started.elapsed());
    let old = stalled.response().await.expect("the stalled request is answered");
    assert_eq!((old.status, old.json()["code"].as_str()), (423, Some("upload_interrupted")));
    let res = server.client.get(server.absolute(&location)).header(TUS.0, TUS.1).send().await.unwrap();
    assert_eq!(res.bytes().await.unwrap(), data);
}

#[tokio::test]
async fn every_request_keeps_an_upload_alive() {
    // "Unfinished uploads expire 24 h after their last request": HEAD counts.
    let state = MemoryState::new();
    let server = TestServer::disk({
        let state = state.clone();
        move |u| u.state(state).expiry(Some(Duration::from_secs(3))).sweep_every(None)
    })
    .await;
    let location = create(&server, 10).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(offset(&server, &location).await, (200, Some(0)), "HEAD keeps the upload alive");
    }
    assert_eq!(patch(&server, &location, 0, vec![b'x'; 10]).await.status(), 204);
}

#[tokio::test]
async fn a_writing_request_keeps_its_upload() {
    let server = TestServer::disk(|u| u.lock_stale_after(Duration::from_secs(5))).await;
    let location = create(&server, 1000).await;
    let mut first = RawConn::connect(server.addr).await;
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: 1000\r\n\r\n"
    );
    first.send(head.as_bytes()).await;
    first.send(&[b'a'; 10]).await;
    // A second PATCH while the first holds the lock (and is not stale): refused after the
    // locker's patience, with nothing written by it.
    let second = patch(&server, &location, 0, vec![b'b'; 1000]);
    let keep_sending = async {
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            first.send(&[b'a'; 10]).await;
        }
    };
    let (res, ()) = tokio::join!(second, keep_sending);
    assert_eq!(res.status(), 423);
    first.send(&[b'a'; 390]).await;
    let done = first.response().await.unwrap();
    assert_eq!(done.status, 204);
    let res = server.client.get(server.absolute(&location)).header(TUS.0, TUS.1).send().await.unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), [b'a'; 1000].as_slice());
}

#[tokio::test]
async fn progress_is_published_under_the_upload_id() {
    let server = TestServer::disk(|u| u).await;
    let data = pseudo_random(500_000, 5);
    let location = create(&server, data.len()).await;
    let id = location.rsplit('/').next().unwrap().to_owned();
    let res = patch(&server, &location, 0, data[..200_000].to_vec()).await;
    assert_eq!(res.status(), 204);
    let events = server.client.get(server.url(&format!("/progress/{id}"))).send().await.unwrap();
    let mut events = SseReader::new(events);
    let first = bounded("an event", events.next()).await.expect("an event");
    assert_eq!((first.id(), first.json()["total"].as_u64()), (200_000, Some(500_000)), "the offset so far");
    let res = patch(&server, &location, 200_000, data[200_000..].to_vec()).await;
    assert_eq!(res.status(), 204);
    let mut last = first;
    while last.json()["state"] != "done" {
        last = bounded("the final event", events.next()).await.expect("events until done");
    }
    assert_eq!(last.id(), 500_000);
}

#[tokio::test]
async fn expired_uploads_answer_410_and_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let uploads =
        Uploads::new(LocalDisk::new(&root)).state(MemoryState::new()).expiry(Some(Duration::from_secs(1))).sweep_every(None);
    let sweeper = uploads.sweeper();
    let app = Router::new().nest("/upload", uploads.into_router());
    let server = TestServer::with_app(app, "/upload", Some(dir), Some(root)).await;
    let location = create(&server, 100).await;
    assert_eq!(patch(&server, &location, 0, vec![1; 40]).await.status(), 204);
    assert_eq!(server.partial_files().len(), 1, "the upload's bytes are on disk");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(offset(&server, &location).await.0, 410);
    let res = patch(&server, &location, 40, vec![1; 60]).await;
    assert_problem(res, 410, "upload_expired").await;
    let report = sweeper.sweep().await.unwrap();
    assert_eq!(report.expired, 1);
    assert!(server.partial_files().is_empty(), "the sweeper removed the bytes: {:?}", server.partial_files());
    assert_eq!(offset(&server, &location).await.0, 404);
}

#[tokio::test]
async fn requests_start_sweeps_without_a_sweeper_task() {
    let server =
        TestServer::disk(|u| u.state(MemoryState::new()).expiry(Some(Duration::from_secs(2))).sweep_every(Some(Duration::ZERO)))
            .await;
    let abandoned = create(&server, 100).await;
    assert_eq!(patch(&server, &abandoned, 0, vec![1; 40]).await.status(), 204);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // Any later request to the resumable routes gives the sweeper its turn.
    create(&server, 10).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while offset(&server, &abandoned).await.0 != 404 {
        assert!(tokio::time::Instant::now() < deadline, "the abandoned upload was swept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The record goes first, then the bytes.
    let abandoned_id = abandoned.rsplit('/').next().unwrap();
    while server.partial_files().iter().any(|f| f.starts_with(abandoned_id)) {
        assert!(tokio::time::Instant::now() < deadline, "the abandoned upload's bytes were swept: {:?}", server.partial_files());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_pre_create_hook_puts_files_under_a_tenant_prefix() {
    use intake::{hooks::Hooks, storage::KeyPrefix};
    let hooks = Hooks::new().pre_create(|mut create: intake::hooks::CreateRequest| async move {
        let tenant = create.headers.get("x-tenant").and_then(|v| v.to_str().ok()).unwrap_or("public").to_owned();
        create.key_prefix = KeyPrefix::new(&format!("tenants/{tenant}"));
        create.owner = Some(tenant);
        Ok(create)
    });
    let server = TestServer::disk(|u| u.hooks(hooks)).await;
    let data = pseudo_random(70_000, 9);
    let res = server
        .client
        .post(server.url("/tus/"))
        .header(TUS.0, TUS.1)
        .header("x-tenant", "acme")
        .header("upload-length", data.len())
        .send()
        .await
        .unwrap();
    let location = header(&res, "location").unwrap();
    assert_eq!(patch(&server, &location, 0, data.clone()).await.status(), 204);
    let id = location.rsplit('/').next().unwrap();
    let stored = server.root().join("objects").join("tenants").join("acme").join(id);
    assert_eq!(std::fs::read(&stored).expect("the file is under the tenant's prefix"), data);
    let res = server.client.get(server.url(&format!("/files/{id}"))).send().await.unwrap();
    assert_eq!(res.bytes().await.unwrap(), data, "and downloads as before");
}

#[tokio::test]
async fn a_checksummed_patch_that_breaks_off_appends_nothing() {
    let server = TestServer::default_disk().await;
    let data = pseudo_random(400_000, 11);
    let location = create(&server, data.len()).await;
    assert_eq!(patch(&server, &location, 0, data[..100_000].to_vec()).await.status(), 204);
    // A PATCH with Upload-Checksum whose client goes away half-way: its bytes were never
    // verified, so none of them may stay.
    let mut conn = RawConn::connect(server.addr).await;
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 100000\r\n\
         Upload-Checksum: sha1 {}\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 300000\r\n\r\n",
        base64_sha1(&data[100_000..])
    );
    conn.send(head.as_bytes()).await;
    conn.send(&data[100_000..250_000]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(conn);
    assert_eq!(offset(&server, &location).await, (200, Some(100_000)), "only verified bytes count");
    let res = patch(&server, &location, 100_000, data[100_000..].to_vec()).await;
    assert_eq!(res.status(), 204, "the upload continues from the verified offset");
    let res = server.client.get(server.absolute(&location)).header(TUS.0, TUS.1).send().await.unwrap();
    assert_eq!(header(&res, "etag").unwrap(), format!("\"{}\"", sha256_hex(&data)));
    assert_eq!(res.bytes().await.unwrap(), data);
}

fn base64_sha1(data: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(data))
}
