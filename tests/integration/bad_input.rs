//! Hostile and broken requests (issue section 8): every one is refused with the right status and
//! code, and none leaves anything behind in storage.

use crate::common::*;
use intake::{FormLimits, rate_limit::RateLimitLayer};
use std::time::Duration;

fn raw_path(rest: &str) -> String {
    format!("{PREFIX}{rest}")
}

// ---------------------------------------------------------------------------------------------
// Malformed multipart

#[tokio::test]
async fn multipart_without_a_boundary_is_400_missing_boundary() {
    let server = TestServer::default_disk().await;
    let body = Multipart::new().file("f", "a.txt", "text/plain", b"hello").finish();
    let res = bounded(
        "upload",
        server.client.post(server.url("/form")).header("content-type", "multipart/form-data").body(body).send(),
    )
    .await
    .unwrap();
    assert_problem(res, 400, "missing_boundary").await;
    server.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_garbage_multipart_body_is_400_invalid_multipart() {
    let server = TestServer::default_disk().await;
    let res = server.post_form("upload", "this is not a multipart body at all, no boundary anywhere").await;
    assert_problem(res, 400, "invalid_multipart").await;

    // A boundary parameter that does not match the body.
    let body = Multipart::new().file("f", "a.txt", "text/plain", b"hello").finish();
    let res = bounded(
        "upload",
        server
            .client
            .post(server.url("/form"))
            .header("content-type", "multipart/form-data; boundary=something-else")
            .body(body)
            .send(),
    )
    .await
    .unwrap();
    assert_problem(res, 400, "invalid_multipart").await;
    server.assert_nothing_stored().await;
}

/// A form whose body ends (at its declared length) without the closing boundary.
async fn post_unfinished_form(server: &TestServer, file: &[u8]) -> reqwest::Response {
    let body = Multipart::new().file("f", "a.txt", "text/plain", file).unfinished();
    server.post_form("upload", body).await
}

#[tokio::test]
async fn a_form_without_its_closing_boundary_is_400_invalid_multipart() {
    // A file longer than the sniffer's 8 KiB peek: the error surfaces while storing.
    let server = TestServer::default_disk().await;
    let res = post_unfinished_form(&server, &[b'x'; 20_000]).await;
    assert_problem(res, 400, "invalid_multipart").await;
    server.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_short_form_without_its_closing_boundary_is_400_invalid_multipart() {
    // A file shorter than the sniffer's 8 KiB peek: the error surfaces while sniffing decides.
    let server = TestServer::default_disk().await;
    let res = post_unfinished_form(&server, b"hello").await;
    assert_problem(res, 400, "invalid_multipart").await;
    server.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_non_multipart_body_to_form_is_415_not_multipart() {
    let server = TestServer::default_disk().await;
    let res =
        bounded("upload", server.client.post(server.url("/form")).header("content-type", "text/plain").body("just text").send())
            .await
            .unwrap();
    assert_problem(res, 415, "not_multipart").await;
    let res = bounded(
        "upload",
        server.client.post(server.url("/form")).header("content-type", "application/json").body("{\"a\":1}").send(),
    )
    .await
    .unwrap();
    assert_problem(res, 415, "not_multipart").await;
    let res = bounded("upload", server.client.post(server.url("/form")).body("no content type").send()).await.unwrap();
    assert_problem(res, 415, "not_multipart").await;
    server.assert_nothing_stored().await;
}

// ---------------------------------------------------------------------------------------------
// Clients that go away

#[tokio::test]
async fn a_form_cut_off_by_a_disconnect_leaves_nothing() {
    let server = TestServer::default_disk().await;
    // Half of it is more than one write batch (256 KiB), so the file reaches storage.
    let data = pseudo_random(1_200_000, 3);
    let body = Multipart::new().text("a", "b").file("f", "big.bin", "application/octet-stream", &data).finish();
    let mut conn = RawConn::connect(server.addr).await;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        raw_path("/form"),
        Multipart::content_type(),
        body.len()
    );
    conn.send(head.as_bytes()).await;
    conn.send(&body[..body.len() / 2]).await;
    // Let the server start storing the file, then vanish.
    wait_for_partial(&server).await;
    drop(conn);
    server.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_raw_body_cut_off_by_a_disconnect_leaves_nothing() {
    let server = TestServer::default_disk().await;
    let mut conn = RawConn::connect(server.addr).await;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 1200000\r\n\r\n",
        raw_path("/raw?name=cut.txt")
    );
    conn.send(head.as_bytes()).await;
    conn.send(&[b'z'; 600_000]).await;
    wait_for_partial(&server).await;
    drop(conn);
    server.assert_nothing_stored().await;
}

/// Waits (at most 10 s) until an upload's bytes reach the disk (a one-shot upload writes its
/// object in place, uncatalogued until it ends), so that a disconnect test really disconnects
/// mid-upload.
async fn wait_for_partial(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.partial_files().is_empty() && server.object_ids().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the upload never reached storage");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends the headers of a 100 000-byte raw upload and `sent` bytes of its body, then stalls: the
/// server must end it with 408 (or close) and store nothing.
async fn stalled_raw_upload(sent: usize) {
    let server = TestServer::disk(|u| u.body_idle_timeout(Duration::from_millis(300))).await;
    let mut conn = RawConn::connect(server.addr).await;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n",
        raw_path("/raw?name=stall.txt")
    );
    conn.send(head.as_bytes()).await;
    conn.send(&vec![b's'; sent]).await;
    expect_timeout_or_close(&mut conn).await;
    server.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_stalled_raw_body_times_out() {
    // More than the sniffer's 8 KiB, so storage has begun when the client stalls.
    stalled_raw_upload(20_000).await;
}

#[tokio::test]
async fn a_stalled_body_before_sniffing_decides_times_out() {
    stalled_raw_upload(100).await;
}

#[tokio::test]
async fn a_stalled_form_body_times_out() {
    let server = TestServer::disk(|u| u.body_idle_timeout(Duration::from_millis(300))).await;
    let data = pseudo_random(100_000, 9);
    let body = Multipart::new().file("f", "stall.bin", "application/octet-stream", &data).finish();
    let mut conn = RawConn::connect(server.addr).await;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        raw_path("/form"),
        Multipart::content_type(),
        body.len()
    );
    conn.send(head.as_bytes()).await;
    conn.send(&body[..30_000]).await;
    expect_timeout_or_close(&mut conn).await;
    server.assert_nothing_stored().await;
}

/// The server answers a stalled body with `408 body_timeout`, or closes the connection; within
/// a few seconds either way.
async fn expect_timeout_or_close(conn: &mut RawConn) {
    match conn.response_within(Duration::from_secs(10)).await {
        Ok(res) => {
            res.assert_problem(408, "body_timeout");
        }
        Err(ReadEnd::Closed) => {}
        Err(ReadEnd::TimedOut) => panic!("the server neither answered nor closed a stalled upload within 10 s"),
    }
}

// ---------------------------------------------------------------------------------------------
// File names

/// The names a hostile client might send, with what sanitising must leave of them.
fn hostile_names() -> Vec<(String, Option<&'static str>)> {
    vec![
        ("../../etc/passwd".to_owned(), Some("passwd")),
        ("/abs/path.txt".to_owned(), Some("path.txt")),
        ("..\\..\\windows\\win.ini".to_owned(), Some("win.ini")),
        (format!("{}.txt", "a".repeat(10 * 1024)), None),
    ]
}

fn assert_safe_name(name: &str) {
    assert!(!name.contains('/'), "no slash in {name:?}");
    assert!(!name.contains('\\'), "no backslash in {name:?}");
    assert!(!name.contains('\0'), "no NUL in {name:?}");
    assert!(!name.starts_with('.'), "no leading dot in {name:?}");
    assert!(!name.is_empty() && name.len() <= 255, "1 to 255 bytes: {} bytes", name.len());
}

/// Nothing exists in the temporary directory but the store, and the store holds only
/// `objects/`, `uploads/` and `tmp/` with server-named files.
fn assert_only_store_contents(server: &TestServer) {
    assert_eq!(list_dir(server.temp_dir()), vec!["store".to_owned()], "nothing written next to the store root");
    for path in walk(server.root()) {
        let mut parts = path.split('/');
        let top = parts.next().unwrap();
        assert!(["objects", "uploads", "tmp"].contains(&top), "unexpected path in the store: {path}");
        if let Some(file) = parts.next() {
            assert!(parts.next().is_none(), "no subdirectories: {path}");
            assert!(is_upload_id(file), "files are named by server ids: {path}");
        }
    }
}

#[tokio::test]
async fn hostile_raw_file_names_are_sanitised() {
    let server = TestServer::default_disk().await;
    let mut names = hostile_names();
    // A NUL byte, only expressible through filename* percent-encoding.
    names.push(("evil\0.png".to_owned(), Some("evil.png")));
    for (raw, expected) in names {
        let encoded: String = raw.bytes().map(|b| format!("%{b:02X}")).collect();
        let content: Vec<u8> = if raw.ends_with(".png") { [PNG, b"rest"].concat() } else { b"just text".to_vec() };
        let res = bounded(
            "upload",
            server
                .client
                .post(server.url("/raw"))
                .header("content-disposition", format!("attachment; filename*=UTF-8''{encoded}"))
                .body(content.clone())
                .send(),
        )
        .await
        .unwrap();
        let json = assert_created(res).await;
        let file = &json["files"][0];
        let name = file["name"].as_str().expect("a name is kept");
        assert_safe_name(name);
        if let Some(expected) = expected {
            assert_eq!(name, expected);
        } else {
            assert!(name.ends_with(".txt"), "the extension is kept: {name}");
        }
        let id = file["id"].as_str().unwrap();
        assert_eq!(server.object_bytes(id), content);

        // The download's Content-Disposition is a valid header and names the sanitised file.
        let res = bounded("download", server.client.get(server.absolute(file["url"].as_str().unwrap())).send()).await.unwrap();
        assert_eq!(res.status(), 200);
        let disposition = header(&res, "content-disposition").unwrap();
        assert!(disposition.starts_with("attachment"), "{disposition}");
        assert!(!disposition.contains('/') && !disposition.contains("%2F"), "{disposition}");
    }

    // The same through the query parameter.
    let res =
        bounded("upload", server.client.post(server.url("/raw?name=..%2F..%2F..%2Ftmp%2Fx.txt")).body("q").send()).await.unwrap();
    assert_eq!(assert_created(res).await["files"][0]["name"], "x.txt");

    server.assert_objects_well_formed();
    assert_only_store_contents(&server);
}

#[tokio::test]
async fn hostile_form_file_names_are_sanitised() {
    // Part headers must fit the 10 KB name.
    let server =
        TestServer::disk(|u| u.form_limits(FormLimits { max_part_header_size: 32 * 1024, ..FormLimits::default() })).await;
    for (raw, expected) in hostile_names() {
        let body = Multipart::new().file("f", &raw, "text/plain", b"just text").finish();
        let res = server.post_form("upload", body).await;
        let json = assert_created(res).await;
        let name = json["files"][0]["name"].as_str().expect("a name is kept");
        assert_safe_name(name);
        if let Some(expected) = expected {
            assert_eq!(name, expected);
        } else {
            assert!(name.ends_with(".txt"), "the extension is kept: {name}");
        }
    }
    server.assert_objects_well_formed();
    assert_only_store_contents(&server);
}

// ---------------------------------------------------------------------------------------------
// Size limits

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_before_the_body_is_sent() {
    let server = TestServer::disk(|u| u.max_body(1024)).await;
    for path in ["/raw?name=huge.txt", "/form"] {
        let mut conn = RawConn::connect(server.addr).await;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {}\r\nContent-Length: 10000000000\r\n\r\n",
            raw_path(path),
            if path == "/form" { Multipart::content_type() } else { "text/plain".to_owned() }
        );
        conn.send(head.as_bytes()).await;
        // Not a byte of the body is sent: the answer must come from the headers alone.
        let res = conn.response_within(Duration::from_secs(10)).await.expect("an answer without the body");
        let json = res.assert_problem(413, "body_too_large");
        assert_eq!(json["limit"], 1024);
    }

    // A client that asks first is told no, never to continue.
    let mut conn = RawConn::connect(server.addr).await;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
        raw_path("/raw?name=asked.txt")
    );
    conn.send(head.as_bytes()).await;
    let res = conn.response_within(Duration::from_secs(10)).await.expect("an answer without the body");
    res.assert_problem(413, "body_too_large");
    server.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_and_not_stored() {
    let server = TestServer::disk(|u| u.max_body(1024)).await;
    let res = server.raw(&post_chunked(&raw_path("/raw?name=big.txt"), &["Content-Type: text/plain"], &[b'c'; 4096], 500)).await;
    res.assert_problem(413, "body_too_large");

    // Bigger than the sniffer's 8 KiB peek too: the limit still cuts it off.
    let res =
        server.raw(&post_chunked(&raw_path("/raw?name=big.txt"), &["Content-Type: text/plain"], &[b'c'; 20_000], 1000)).await;
    res.assert_problem(413, "body_too_large");

    let body = Multipart::new().file("f", "big.txt", "text/plain", &[b'c'; 4096]).finish();
    let ct = format!("Content-Type: {}", Multipart::content_type());
    let res = server.raw(&post_chunked(&raw_path("/form"), &[&ct], &body, 700)).await;
    res.assert_problem(413, "body_too_large");
    server.assert_nothing_stored().await;

    // Exactly at the limit is fine, chunked or declared.
    let res = server.raw(&post_chunked(&raw_path("/raw?name=at.txt"), &["Content-Type: text/plain"], &[b'c'; 1024], 100)).await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["files"][0]["size"], 1024);
    let res = server.raw(&post_request(&raw_path("/raw?name=at.txt"), &["Content-Type: text/plain"], &[b'c'; 1024])).await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let res = server.raw(&post_request(&raw_path("/raw?name=over.txt"), &["Content-Type: text/plain"], &[b'c'; 1025])).await;
    res.assert_problem(413, "body_too_large");

    // Within the limit, chunked is fine.
    let res = server.raw(&post_chunked(&raw_path("/raw?name=ok.txt"), &["Content-Type: text/plain"], &[b'c'; 1000], 300)).await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["files"][0]["size"], 1000);
}

#[tokio::test]
async fn a_body_longer_than_its_content_length_is_cut_at_the_declared_length() {
    let server = TestServer::default_disk().await;
    let mut conn = RawConn::connect(server.addr).await;
    // 10 declared bytes, then 10 more that must not be appended to the file. The extra bytes are
    // a (broken) request of their own to the server.
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n",
        raw_path("/raw?name=ten.txt")
    )
    .into_bytes();
    request.extend_from_slice(b"0123456789");
    request.extend_from_slice(b"ABCDEF\r\n\r\n");
    conn.send(&request).await;
    let res = conn.response().await.expect("the upload's response");
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let json = res.json();
    let id = json["files"][0]["id"].as_str().unwrap();
    assert_eq!(json["files"][0]["size"], 10);
    assert_eq!(json["files"][0]["sha256"], sha256_hex(b"0123456789"));
    assert_eq!(server.object_bytes(id), b"0123456789", "exactly the declared bytes are stored");

    // The leftover is answered as a bad request, or the connection is closed.
    match conn.response_within(Duration::from_secs(10)).await {
        Ok(res) => assert_eq!(res.status, 400, "{res:?}"),
        Err(ReadEnd::Closed) => {}
        Err(ReadEnd::TimedOut) => panic!("the leftover bytes were neither answered nor the connection closed"),
    }
    assert_eq!(server.object_ids(), vec![id.to_owned()], "one object only");
    assert_eq!(server.object_bytes(id), b"0123456789", "nothing was appended afterwards");
    server.wait_for_no_partials().await;
    assert_eq!(server.partial_files(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Content

#[tokio::test]
async fn an_executable_renamed_png_is_415_on_form_and_raw() {
    let server = TestServer::default_disk().await;
    let res = bounded("raw upload", server.client.post(server.url("/raw?name=cat.png")).body(elf()).send()).await.unwrap();
    let json = assert_problem(res, 415, "executable_content").await;
    assert_eq!(json["detected"], "application/x-executable");

    let res = bounded(
        "raw upload",
        server
            .client
            .post(server.url("/raw"))
            .header("content-type", "image/png")
            .header("content-disposition", "attachment; filename=\"cat.png\"")
            .body(elf())
            .send(),
    )
    .await
    .unwrap();
    assert_problem(res, 415, "executable_content").await;

    // In a form, next to an honest file: the whole form is refused, the honest file not kept.
    let body =
        Multipart::new().file("ok", "fine.txt", "text/plain", b"harmless").file("cat", "cat.png", "image/png", &elf()).finish();
    let res = server.post_form("form upload", body).await;
    assert_problem(res, 415, "executable_content").await;
    server.assert_nothing_stored().await;
}

#[tokio::test]
async fn client_digests_are_verified() {
    let server = TestServer::default_disk().await;
    let content = b"the content that was really sent".to_vec();

    let res = bounded(
        "wrong digest",
        server
            .client
            .post(server.url("/raw?name=a.txt"))
            .header("content-digest", content_digest(b"the content that was meant"))
            .body(content.clone())
            .send(),
    )
    .await
    .unwrap();
    assert_problem(res, 400, "digest_mismatch").await;
    server.assert_nothing_stored().await;

    for bad in ["sha-256=:not base64!:", "sha-256=:AAAA:", "sha-256=abc", "sha-256"] {
        let res = bounded(
            "malformed digest",
            server.client.post(server.url("/raw?name=a.txt")).header("content-digest", bad).body(content.clone()).send(),
        )
        .await
        .unwrap();
        assert_problem(res, 400, "invalid_digest").await;
    }
    server.assert_nothing_stored().await;

    let res = bounded(
        "right digest",
        server
            .client
            .post(server.url("/raw?name=a.txt"))
            .header("content-digest", content_digest(&content))
            .body(content.clone())
            .send(),
    )
    .await
    .unwrap();
    let json = assert_created(res).await;
    assert_eq!(json["files"][0]["sha256"], sha256_hex(&content));
    assert_eq!(server.object_ids().len(), 1);
}

#[tokio::test]
async fn a_digest_of_a_whole_form_is_verified() {
    let server = TestServer::default_disk().await;
    let body = Multipart::new()
        .file("a", "a.txt", "text/plain", b"first file")
        .text("t", "v")
        .file("b", "b.txt", "text/plain", &[b'b'; 20_000])
        .finish();
    let post = |digest: String| {
        server
            .client
            .post(server.url("/form"))
            .header("content-type", Multipart::content_type())
            .header("content-digest", digest)
            .body(body.clone())
            .send()
    };
    let res = bounded("wrong digest", post(content_digest(b"another body"))).await.unwrap();
    assert_problem(res, 400, "digest_mismatch").await;
    server.assert_nothing_stored().await;

    let res = bounded("right digest", post(content_digest(&body))).await.unwrap();
    let json = assert_created(res).await;
    assert_eq!(json["files"].as_array().unwrap().len(), 2);
    assert_eq!(json["files"][1]["sha256"], sha256_hex(&[b'b'; 20_000]));
}

#[tokio::test]
async fn a_wrong_digest_of_a_large_streamed_body_is_not_stored() {
    // The mismatch is only known at the very end, after every byte went to storage.
    let server = TestServer::default_disk().await;
    let content = pseudo_random(2 * 1024 * 1024, 11);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        content.chunks(8192).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    let res = bounded(
        "wrong digest",
        server
            .client
            .post(server.url("/raw?name=big.bin"))
            .header("content-digest", content_digest(b"not it"))
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
            .send(),
    )
    .await
    .unwrap();
    assert_problem(res, 400, "digest_mismatch").await;
    server.assert_nothing_stored().await;
}

// ---------------------------------------------------------------------------------------------
// Rate limit

#[tokio::test]
async fn a_spoofed_x_forwarded_for_does_not_escape_the_rate_limit() {
    let server = TestServer::memory(|u| u.rate_limit(RateLimitLayer::per_second(2))).await;
    let started = std::time::Instant::now();
    // Five requests at once from 127.0.0.1, each claiming another client address.
    let requests = (0..5).map(|i| {
        server
            .client
            .post(server.url("/raw?name=a.txt"))
            .header("x-forwarded-for", format!("198.51.100.{}", i + 1))
            .header("forwarded", format!("for=203.0.113.{}", i + 1))
            .body("x")
            .send()
    });
    let responses = bounded("uploads", futures_util::future::join_all(requests)).await;
    let elapsed = started.elapsed();
    let mut statuses = Vec::new();
    let mut limited = None;
    for res in responses {
        let res = res.expect("a response");
        statuses.push(res.status().as_u16());
        if res.status() == 429 && limited.is_none() {
            let retry_after = header(&res, "retry-after").expect("Retry-After");
            let secs: u64 = retry_after.parse().expect("Retry-After in seconds");
            assert!(secs >= 1, "{retry_after}");
            limited = Some(assert_problem(res, 429, "rate_limited").await);
        } else {
            let _ = bounded("body", res.bytes()).await;
        }
    }
    // A burst of 2, refilled at 2 per second: no more can have passed (on any machine speed).
    let allowed = 2 + (elapsed.as_secs_f64() * 2.0).ceil() as usize;
    let created = statuses.iter().filter(|&&s| s == 201).count();
    assert!(created <= allowed, "at most {allowed} got through in {elapsed:?}: {statuses:?}");
    if elapsed < Duration::from_millis(1500) {
        assert!(limited.is_some(), "at least one request was rate limited: {statuses:?}");
    }
    assert!(statuses.iter().all(|&s| s == 201 || s == 429), "{statuses:?}");
}

// ---------------------------------------------------------------------------------------------
// Form limits

#[tokio::test]
async fn too_many_parts_is_413() {
    let server = TestServer::disk(|u| u.form_limits(FormLimits { max_parts: 3, ..FormLimits::default() })).await;
    let body = Multipart::new()
        .file("f", "a.txt", "text/plain", b"a file")
        .text("one", "1")
        .text("two", "2")
        .text("three", "3")
        .finish();
    let res = server.post_form("upload", body).await;
    let json = assert_problem(res, 413, "too_many_parts").await;
    assert_eq!(json["limit"], 3);
    server.assert_nothing_stored().await;

    // Exactly at the limit is fine.
    let body = Multipart::new().file("f", "a.txt", "text/plain", b"a file").text("one", "1").text("two", "2").finish();
    let res = server.post_form("upload", body).await;
    assert_created(res).await;
}

#[tokio::test]
async fn a_text_field_over_max_field_size_is_413() {
    let server = TestServer::disk(|u| u.form_limits(FormLimits { max_field_size: 100, ..FormLimits::default() })).await;
    let body = Multipart::new().file("f", "a.txt", "text/plain", b"a file").text("comment", &"long comment ".repeat(20)).finish();
    let res = server.post_form("upload", body).await;
    let json = assert_problem(res, 413, "field_too_large").await;
    assert_eq!(json["limit"], 100);
    server.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_text_field_over_the_default_max_field_size_is_413() {
    let server = TestServer::default_disk().await;
    let body = Multipart::new().text("comment", &"x".repeat(70 * 1024)).file("f", "a.txt", "text/plain", b"a file").finish();
    let res =
        server.raw(&post_request(&raw_path("/form"), &[&format!("Content-Type: {}", Multipart::content_type())], &body)).await;
    res.assert_problem(413, "field_too_large");
    server.assert_nothing_stored().await;
}

#[tokio::test]
async fn part_headers_over_the_limit_are_413() {
    let server = TestServer::default_disk().await;
    let pad = format!("X-Padding: {}", "p".repeat(20 * 1024));
    let body =
        Multipart::new().part(&["Content-Disposition: form-data; name=\"f\"; filename=\"a.txt\"", &pad], b"content").finish();
    let res =
        server.raw(&post_request(&raw_path("/form"), &[&format!("Content-Type: {}", Multipart::content_type())], &body)).await;
    let json = res.assert_problem(413, "part_headers_too_large");
    assert_eq!(json["limit"], 8 * 1024);
    server.assert_nothing_stored().await;
}

#[tokio::test]
async fn part_headers_over_the_limit_after_a_file_are_413() {
    // A second part with huge headers, after a good file: refused, and the good file not kept.
    let server = TestServer::default_disk().await;
    let pad = format!("X-Padding: {}", "p".repeat(20 * 1024));
    let body = Multipart::new()
        .file("ok", "ok.txt", "text/plain", b"fine")
        .part(&["Content-Disposition: form-data; name=\"g\"; filename=\"b.txt\"", &pad], b"content")
        .finish();
    let res =
        server.raw(&post_request(&raw_path("/form"), &[&format!("Content-Type: {}", Multipart::content_type())], &body)).await;
    res.assert_problem(413, "part_headers_too_large");
    server.assert_nothing_stored().await;
}

#[tokio::test]
async fn too_many_files_is_413() {
    let server = TestServer::disk(|u| u.form_limits(FormLimits { max_files: 2, ..FormLimits::default() })).await;
    let body = Multipart::new()
        .file("a", "a.txt", "text/plain", b"1")
        .file("b", "b.txt", "text/plain", b"2")
        .file("c", "c.txt", "text/plain", b"3")
        .finish();
    let res = server.post_form("upload", body).await;
    assert_problem(res, 413, "too_many_files").await;
    server.assert_nothing_stored().await;
}
