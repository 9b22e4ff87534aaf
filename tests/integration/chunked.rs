//! `{prefix}/chunked/…`: the JSON chunked-upload API (init, chunk, status, complete).

use crate::common::*;
use axum::Router;
use intake::{Problem, Uploads, hooks::Hooks, storage::LocalDisk};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// SHA-256 by the `sha2` crate itself, not by the code under test.
fn independent_sha256(data: &[u8]) -> String {
    hex(Sha256::digest(data).as_slice())
}

async fn post_json(server: &TestServer, url: &str, body: &Value) -> reqwest::Response {
    bounded("init", server.client.post(url).json(body).send()).await.unwrap()
}

/// Starts an upload under the server's prefix; returns the `init` answer.
async fn init(server: &TestServer, filename: &str, total_size: usize, chunk_size: usize) -> Value {
    init_at(server, &server.prefix, filename, total_size, chunk_size).await
}

async fn init_at(server: &TestServer, prefix: &str, filename: &str, total_size: usize, chunk_size: usize) -> Value {
    let body = json!({"filename": filename, "total_size": total_size, "chunk_size": chunk_size});
    let res = post_json(server, &server.absolute(&format!("{prefix}/chunked/init")), &body).await;
    assert_eq!(res.status(), 201, "init answers 201");
    let location = header(&res, "location").expect("Location");
    let json: Value = bounded("init body", res.json()).await.unwrap();
    assert_eq!(location, server.absolute(&format!("{prefix}/chunked/status?upload_id={}", json["id"].as_str().unwrap())));
    json
}

async fn send_chunk(server: &TestServer, id: &str, n: impl std::fmt::Display, bytes: &[u8]) -> reqwest::Response {
    let url = server.url(&format!("/chunked/chunk?upload_id={id}&chunk={n}"));
    bounded("chunk", server.client.post(url).body(bytes.to_vec()).send()).await.unwrap()
}

/// Sends chunk `n` of `data` and checks the answer.
async fn chunk_ok(server: &TestServer, id: &str, data: &[u8], chunk_size: usize, n: usize) -> Value {
    let piece = data.chunks(chunk_size).nth(n).unwrap();
    let res = send_chunk(server, id, n, piece).await;
    assert_eq!(res.status(), 200, "chunk {n}: {}", bounded("body", res.text()).await.unwrap());
    let json: Value = bounded("chunk body", res.json()).await.unwrap();
    assert_eq!(json["chunk"], n);
    assert_eq!(json["total"], data.len().div_ceil(chunk_size));
    json
}

async fn status(server: &TestServer, id: &str) -> reqwest::Response {
    bounded("status", server.client.get(server.url(&format!("/chunked/status?upload_id={id}"))).send()).await.unwrap()
}

async fn complete(server: &TestServer, id: &str) -> reqwest::Response {
    complete_at(server, &server.prefix, id).await
}

async fn complete_at(server: &TestServer, prefix: &str, id: &str) -> reqwest::Response {
    let url = server.absolute(&format!("{prefix}/chunked/complete?upload_id={id}"));
    bounded("complete", server.client.post(url).send()).await.unwrap()
}

async fn ok_json(res: reqwest::Response) -> Value {
    let status = res.status();
    let text = bounded("body", res.text()).await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn download(server: &TestServer, url: &str) -> Vec<u8> {
    let res = bounded("download", server.client.get(server.absolute(url)).send()).await.unwrap();
    assert_eq!(res.status(), 200);
    bounded("download body", res.bytes()).await.unwrap().to_vec()
}

fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[tokio::test]
async fn chunks_in_any_order_and_in_parallel_make_the_file() {
    let server = TestServer::default_disk().await;
    let data = pseudo_random(10_000, 7);
    let chunk_size = 3_000;
    let started = init(&server, "big data.bin", data.len(), chunk_size).await;
    let id = started["id"].as_str().unwrap().to_owned();
    assert!(is_upload_id(&id));
    assert_eq!(started["upload_id"], id.as_str());
    assert_eq!(started["filename"], "big data.bin");
    assert_eq!(started["total_size"], 10_000);
    assert_eq!(started["chunk_size"], 3_000);
    assert_eq!(started["total_chunks"], 4);
    assert_eq!(started["uploaded_chunks"], json!([]));
    assert!(is_rfc3339_utc(started["created_at"].as_str().unwrap()), "{started}");
    assert!(is_rfc3339_utc(started["expires_at"].as_str().unwrap()), "{started}");

    // The short last chunk first, then two at once, one of them twice (a duplicate in flight).
    let last = chunk_ok(&server, &id, &data, chunk_size, 3).await;
    assert_eq!(last["uploaded"], 1);
    let (a, b, c) = tokio::join!(
        chunk_ok(&server, &id, &data, chunk_size, 2),
        chunk_ok(&server, &id, &data, chunk_size, 1),
        chunk_ok(&server, &id, &data, chunk_size, 1)
    );
    let counts: Vec<u64> = [a, b, c].iter().map(|r| r["uploaded"].as_u64().unwrap()).collect();
    assert!(counts.iter().all(|n| (2..=3).contains(n)) && counts.contains(&3), "{counts:?}");

    let state = ok_json(status(&server, &id).await).await;
    assert_eq!(state["upload_id"], id.as_str());
    assert_eq!(state["filename"], "big data.bin");
    assert_eq!(state["status"], "pending");
    assert_eq!(state["total_chunks"], 4);
    assert_eq!(state["uploaded_chunks"], json!([1, 2, 3]));
    assert_eq!(state["missing_chunks"], json!([0]));
    assert!(is_rfc3339_utc(state["expires_at"].as_str().unwrap()));

    let problem = assert_problem(complete(&server, &id).await, 409, "chunks_missing").await;
    assert_eq!(problem["missing_chunks"], json!([0]));

    chunk_ok(&server, &id, &data, chunk_size, 0).await;
    // A retried chunk is a success, and is not stored twice.
    let retried = chunk_ok(&server, &id, &data, chunk_size, 2).await;
    assert_eq!(retried["uploaded"], 4);
    assert_eq!(server.object_ids().len(), 4, "one object per chunk");
    assert_eq!(ok_json(status(&server, &id).await).await["missing_chunks"], json!([]));

    let done = ok_json(complete(&server, &id).await).await;
    assert_eq!(done["status"], "complete");
    assert_eq!(done["filename"], "big data.bin");
    assert_eq!(done["size"], 10_000);
    assert_eq!(done["upload_id"], id.as_str());
    assert_eq!(done["sha256"], independent_sha256(&data));
    let file_id = done["id"].as_str().unwrap();
    assert!(is_upload_id(file_id));
    assert_eq!(done["url"], server.absolute(&format!("{PREFIX}/files/{file_id}")));
    assert_eq!(download(&server, done["url"].as_str().unwrap()).await, data);

    // Only the joined file is left.
    assert_eq!(server.object_ids(), vec![file_id.to_owned()]);
    server.assert_objects_well_formed();
    assert_eq!(server.partial_files(), Vec::<String>::new());

    // Completing again answers the same; the upload now reports itself complete and takes no
    // more chunks.
    assert_eq!(ok_json(complete(&server, &id).await).await, done);
    let state = ok_json(status(&server, &id).await).await;
    assert_eq!(state["status"], "complete");
    assert_eq!(state["missing_chunks"], json!([]));
    let piece = &data[..chunk_size];
    assert_problem(send_chunk(&server, &id, 0, piece).await, 409, "upload_finished").await;
    assert_eq!(server.object_ids(), vec![file_id.to_owned()]);
}

#[tokio::test]
async fn concurrent_completions_join_once() {
    let server = TestServer::default_disk().await;
    let data = pseudo_random(50_000, 11);
    let chunk_size = 10_000;
    let id = init(&server, "twice.bin", data.len(), chunk_size).await["id"].as_str().unwrap().to_owned();
    for n in 0..5 {
        chunk_ok(&server, &id, &data, chunk_size, n).await;
    }
    let (a, b) = tokio::join!(complete(&server, &id), complete(&server, &id));
    let (a, b) = (ok_json(a).await, ok_json(b).await);
    assert_eq!(a, b);
    assert_eq!(a["sha256"], independent_sha256(&data));
    assert_eq!(server.object_ids(), vec![a["id"].as_str().unwrap().to_owned()]);
    assert_eq!(download(&server, a["url"].as_str().unwrap()).await, data);
}

#[tokio::test]
async fn a_chunk_of_the_wrong_size_is_refused() {
    let server = TestServer::default_disk().await;
    let data = pseudo_random(250, 3);
    let id = init(&server, "sizes.bin", data.len(), 100).await["id"].as_str().unwrap().to_owned();

    // Declared by Content-Length: too big, too small, and the short last chunk sent full size.
    let problem = assert_problem(send_chunk(&server, &id, 0, &data[..101]).await, 400, "invalid_chunk_size").await;
    assert_eq!(problem["expected"], 100);
    assert_problem(send_chunk(&server, &id, 1, &data[100..199]).await, 400, "invalid_chunk_size").await;
    let problem = assert_problem(send_chunk(&server, &id, 2, &data[..100]).await, 400, "invalid_chunk_size").await;
    assert_eq!(problem["expected"], 50);

    // Past the largest chunk size, the declared length alone is refused.
    let raw = post_request(&format!("{PREFIX}/chunked/chunk?upload_id={id}&chunk=0"), &[], b"");
    let raw = String::from_utf8(raw).unwrap().replace("Content-Length: 0", "Content-Length: 67108865");
    server.raw(raw.as_bytes()).await.assert_problem(413, "body_too_large");

    // Streamed without a length: found out while storing.
    let streamed = |bytes: &[u8]| {
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(40).map(|c| Ok(c.to_vec())).collect();
        let url = server.url(&format!("/chunked/chunk?upload_id={id}&chunk=0"));
        bounded(
            "streamed chunk",
            server.client.post(url).body(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))).send(),
        )
    };
    assert_problem(streamed(&data[..150]).await.unwrap(), 400, "invalid_chunk_size").await;
    assert_problem(streamed(&data[..60]).await.unwrap(), 400, "invalid_chunk_size").await;
    // A right-sized streamed chunk is fine.
    assert_eq!(ok_json(streamed(&data[..100]).await.unwrap()).await["uploaded"], 1);

    assert_eq!(ok_json(status(&server, &id).await).await["uploaded_chunks"], json!([0]));
    assert_eq!(server.object_ids().len(), 1, "refused chunks leave nothing behind");
    server.wait_for_no_partials().await;
    assert_eq!(server.partial_files(), Vec::<String>::new());
}

#[tokio::test]
async fn chunk_numbers_and_ids_are_checked() {
    let server = TestServer::memory(|u| u).await;
    let id = init(&server, "a.bin", 10, 4).await["id"].as_str().unwrap().to_owned();
    for bad in ["3", "-1", "x", "18446744073709551616", ""] {
        let problem = assert_problem(send_chunk(&server, &id, bad, b"abcd").await, 400, "invalid_chunk").await;
        assert_eq!(problem["total_chunks"], 3, "{bad}");
    }
    let url = server.url(&format!("/chunked/chunk?upload_id={id}"));
    assert_problem(bounded("no chunk", server.client.post(url).body("abcd").send()).await.unwrap(), 400, "invalid_chunk").await;
    let url = server.url("/chunked/chunk?chunk=0");
    let res = bounded("no id", server.client.post(url).body("abcd").send()).await.unwrap();
    assert_problem(res, 400, "missing_upload_id").await;
    assert_problem(status(&server, "").await, 400, "missing_upload_id").await;

    // Unknown uploads: well-formed ids and anything else.
    for unknown in ["0123456789abcdef0123456789abcdef", "../../etc/passwd", "nope"] {
        assert_problem(send_chunk(&server, unknown, 0, b"abcd").await, 404, "upload_not_found").await;
        assert_problem(status(&server, unknown).await, 404, "upload_not_found").await;
        assert_problem(complete(&server, unknown).await, 404, "upload_not_found").await;
    }
}

#[tokio::test]
async fn an_expired_upload_is_gone() {
    // No sweep from requests: the upload stays, expired, to answer 410.
    let server = TestServer::memory(|u| u.expiry(Some(Duration::ZERO)).sweep_every(None)).await;
    let id = init(&server, "late.bin", 10, 4).await["id"].as_str().unwrap().to_owned();
    assert_problem(send_chunk(&server, &id, 0, b"abcd").await, 410, "upload_expired").await;
    assert_problem(status(&server, &id).await, 410, "upload_expired").await;
    assert_problem(complete(&server, &id).await, 410, "upload_expired").await;
}

#[tokio::test]
async fn uploads_without_expiry_say_so() {
    let server = TestServer::memory(|u| u.expiry(None)).await;
    let started = init(&server, "forever.bin", 10, 4).await;
    assert_eq!(started["expires_at"], Value::Null);
}

#[tokio::test]
async fn an_executable_named_png_is_refused_on_chunk_zero() {
    let server = TestServer::default_disk().await;
    let elf = elf();
    let id = init(&server, "cat.png", elf.len(), 64).await["id"].as_str().unwrap().to_owned();
    let problem = assert_problem(send_chunk(&server, &id, 0, &elf[..64]).await, 415, "executable_content").await;
    assert_eq!(problem["detected"], "application/x-executable");
    // The other chunks are not sniffed on their own, but the upload can never complete.
    chunk_ok(&server, &id, &elf, 64, 1).await;
    assert_problem(complete(&server, &id).await, 409, "chunks_missing").await;
    assert_eq!(server.object_ids().len(), 1, "only the harmless chunk 1 is stored");

    // A real PNG passes, and keeps its sniffed type.
    let mut png = PNG.to_vec();
    png.extend_from_slice(&pseudo_random(100, 1));
    let id = init(&server, "real.png", png.len(), 64).await["id"].as_str().unwrap().to_owned();
    for n in 0..png.len().div_ceil(64) {
        chunk_ok(&server, &id, &png, 64, n).await;
    }
    let done = ok_json(complete(&server, &id).await).await;
    assert_eq!(done["content_type"], "image/png");
    assert_eq!(download(&server, done["url"].as_str().unwrap()).await, png);
}

#[tokio::test]
async fn chunks_smaller_than_the_sniffing_window_are_checked_on_completion() {
    let server = TestServer::default_disk().await;
    let elf = elf();
    // 16 bytes of ELF tell nothing; the first 128 bytes of the whole file do.
    let id = init(&server, "notes.txt", elf.len(), 16).await["id"].as_str().unwrap().to_owned();
    for n in 0..elf.len() / 16 {
        chunk_ok(&server, &id, &elf, 16, n).await;
    }
    assert_problem(complete(&server, &id).await, 415, "executable_content").await;
    assert_eq!(server.object_ids().len(), 8, "no joined file, only the chunks (left for expiry)");
}

#[tokio::test]
async fn init_requests_are_checked() {
    let server = TestServer::memory(|u| u.max_raw_body(1_000_000)).await;
    let url = server.url("/chunked/init");
    let send = |body: &'static str| {
        bounded("init", server.client.post(&url).header("content-type", "application/json").body(body).send())
    };
    assert_problem(send("{\"filename\": ").await.unwrap(), 400, "invalid_json").await;
    assert_problem(send("filename=a.txt").await.unwrap(), 400, "invalid_json").await;
    let problem = assert_problem(send(r#"{"filename": "a.txt", "total_size": 10}"#).await.unwrap(), 400, "invalid_init").await;
    assert!(problem["detail"].as_str().unwrap().contains("chunk_size"), "{problem}");
    assert_problem(send(r#"{"filename": "a.txt", "total_size": "10", "chunk_size": 4}"#).await.unwrap(), 400, "invalid_init")
        .await;
    assert_problem(send(r#"{"filename": "a.txt", "total_size": 0, "chunk_size": 4}"#).await.unwrap(), 400, "invalid_init").await;
    assert_problem(send(r#"{"filename": "/", "total_size": 10, "chunk_size": 4}"#).await.unwrap(), 400, "invalid_filename").await;
    let problem = assert_problem(
        send(r#"{"filename": "a.txt", "total_size": 1000001, "chunk_size": 4096}"#).await.unwrap(),
        413,
        "body_too_large",
    )
    .await;
    assert_eq!(problem["limit"], 1_000_000);
    assert_problem(send(r#"{"filename": "a.txt", "total_size": 10, "chunk_size": 0}"#).await.unwrap(), 400, "invalid_chunk_size")
        .await;
    assert_problem(
        send(r#"{"filename": "a.txt", "total_size": 10, "chunk_size": 67108865}"#).await.unwrap(),
        400,
        "invalid_chunk_size",
    )
    .await;
    let problem = assert_problem(
        send(r#"{"filename": "a.txt", "total_size": 10001, "chunk_size": 1}"#).await.unwrap(),
        400,
        "too_many_chunks",
    )
    .await;
    assert_eq!(problem["max_chunks"], 10_000);

    // A name is cleaned, not refused; unknown members are ignored.
    let res = send(r#"{"filename": "../../etc/passwd", "total_size": 10, "chunk_size": 4, "type": "x"}"#).await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(bounded("body", res.json::<Value>()).await.unwrap()["filename"], "passwd");
}

#[tokio::test]
async fn hooks_see_chunked_uploads() {
    let finished = Arc::new(Mutex::new(Vec::new()));
    let seen = finished.clone();
    let hooks = Hooks::new()
        .pre_create(|mut create: intake::hooks::CreateRequest| async move {
            assert_eq!(create.protocol, "chunked");
            let tenant = create.headers.get("x-tenant").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let tenant = tenant.ok_or_else(|| Problem::new(http::StatusCode::UNAUTHORIZED, "no_tenant", "send X-Tenant"))?;
            create.owner = Some(tenant);
            Ok(create)
        })
        .authorize(|access: intake::hooks::AccessRequest| async move {
            let tenant = access.headers.get("x-tenant").and_then(|v| v.to_str().ok());
            if access.owner.as_deref() == tenant {
                Ok(())
            } else {
                Err(Problem::new(http::StatusCode::FORBIDDEN, "not_yours", "another tenant's upload"))
            }
        })
        .post_finish(move |done: intake::hooks::FinishedUpload| {
            let seen = seen.clone();
            async move { seen.lock().unwrap().push((done.record.owner.clone(), done.file.id.to_string())) }
        });
    let server = TestServer::memory(|u| u.hooks(hooks)).await;
    let body = json!({"filename": "t.bin", "total_size": 4, "chunk_size": 4});
    assert_problem(post_json(&server, &server.url("/chunked/init"), &body).await, 401, "no_tenant").await;

    let res = bounded("init", server.client.post(server.url("/chunked/init")).header("x-tenant", "acme").json(&body).send())
        .await
        .unwrap();
    let id = bounded("body", res.json::<Value>()).await.unwrap()["id"].as_str().unwrap().to_owned();
    let chunk_url = server.url(&format!("/chunked/chunk?upload_id={id}&chunk=0"));
    let res = bounded("chunk", server.client.post(&chunk_url).header("x-tenant", "other").body("abcd").send()).await.unwrap();
    assert_problem(res, 403, "not_yours").await;
    let res = bounded("chunk", server.client.post(&chunk_url).header("x-tenant", "acme").body("abcd").send()).await.unwrap();
    assert_eq!(res.status(), 200);
    let url = server.url(&format!("/chunked/complete?upload_id={id}"));
    let res = bounded("complete", server.client.post(url).header("x-tenant", "acme").send()).await.unwrap();
    let done = ok_json(res).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while finished.lock().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*finished.lock().unwrap(), vec![(Some("acme".to_owned()), done["id"].as_str().unwrap().to_owned())]);
}

#[tokio::test]
async fn urls_follow_the_prefix_the_router_is_nested_under() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let uploads = Uploads::new(LocalDisk::new(&root));
    let app = Router::new().nest("/upload", uploads.clone().into_router()).nest("/api/v1/files", uploads.into_router());
    let server = TestServer::with_app(app, "", Some(dir), Some(root)).await;
    for prefix in ["/upload", "/api/v1/files"] {
        let data = format!("uploaded in chunks under {prefix}").into_bytes();
        let id = init_at(&server, prefix, "p.txt", data.len(), 8).await["id"].as_str().unwrap().to_owned();
        for (n, piece) in data.chunks(8).enumerate() {
            let url = server.absolute(&format!("{prefix}/chunked/chunk?upload_id={id}&chunk={n}"));
            let res = bounded("chunk", server.client.post(url).body(piece.to_vec()).send()).await.unwrap();
            assert_eq!(res.status(), 200);
        }
        let done = ok_json(complete_at(&server, prefix, &id).await).await;
        let file_id = done["id"].as_str().unwrap();
        assert_eq!(done["url"], server.absolute(&format!("{prefix}/files/{file_id}")));
        assert_eq!(done["content_type"], "text/plain");
        assert_eq!(download(&server, done["url"].as_str().unwrap()).await, data);
    }
}

#[tokio::test]
async fn tus_requests_do_not_touch_a_chunked_upload() {
    // A tus DELETE of a chunked upload removed its record and leaked its chunks forever.
    let server = TestServer::default_disk().await;
    let id = init(&server, "a.bin", 8, 4).await["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(send_chunk(&server, &id, 0, b"abcd").await.status(), 200);
    let tus = server.url(&format!("/tus/{id}"));
    for method in ["DELETE", "HEAD", "PATCH", "GET"] {
        let req = server
            .client
            .request(method.parse().unwrap(), &tus)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", "4")
            .header("content-type", "application/offset+octet-stream")
            .body("efgh");
        let res = bounded(method, req.send()).await.unwrap();
        assert_eq!(res.status(), 404, "tus {method} of a chunked upload");
    }
    let res =
        bounded("draft DELETE", server.client.delete(&tus).header("upload-draft-interop-version", "8").send()).await.unwrap();
    assert_eq!(res.status(), 404, "draft DELETE of a chunked upload");
    assert_eq!(send_chunk(&server, &id, 1, b"efgh").await.status(), 200, "the chunked upload goes on");
    assert_eq!(complete(&server, &id).await.status(), 200);
}
