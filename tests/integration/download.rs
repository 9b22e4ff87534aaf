//! `GET {prefix}/files/{id}`: downloads, ranges, unknown and hostile ids.

use crate::common::*;

const DIGITS: &[u8] = b"0123456789";

/// Uploads `DIGITS` as `digits.txt`; returns the file's JSON.
async fn upload_digits(server: &TestServer) -> serde_json::Value {
    let res = bounded(
        "upload",
        server.client.post(server.url("/raw?name=digits.txt")).header("content-type", "text/plain").body(DIGITS).send(),
    )
    .await
    .unwrap();
    assert_created(res).await["files"][0].clone()
}

async fn get(server: &TestServer, url: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = server.client.get(url);
    if let Some(range) = range {
        req = req.header("range", range);
    }
    bounded("download", req.send()).await.expect("download")
}

#[tokio::test]
async fn whole_file_with_safe_headers() {
    let server = TestServer::default_disk().await;
    let file = upload_digits(&server).await;
    let res = get(&server, &server.absolute(file["url"].as_str().unwrap()), None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type").as_deref(), Some("text/plain"));
    assert_eq!(header(&res, "content-length").as_deref(), Some("10"));
    assert_eq!(header(&res, "accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(header(&res, "etag"), Some(format!("\"{}\"", sha256_hex(DIGITS))));
    let disposition = header(&res, "content-disposition").unwrap();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(disposition.contains("filename=\"digits.txt\""), "{disposition}");
    assert_eq!(header(&res, "x-content-type-options").as_deref(), Some("nosniff"));
    assert!(header(&res, "content-range").is_none());
    assert_eq!(bounded("body", res.bytes()).await.unwrap(), DIGITS);
}

#[tokio::test]
async fn a_range_gets_206_with_the_right_bytes() {
    let server = TestServer::default_disk().await;
    let file = upload_digits(&server).await;
    let url = server.absolute(file["url"].as_str().unwrap());

    let res = get(&server, &url, Some("bytes=2-5")).await;
    assert_eq!(res.status(), 206);
    assert_eq!(header(&res, "content-range").as_deref(), Some("bytes 2-5/10"));
    assert_eq!(header(&res, "content-length").as_deref(), Some("4"));
    assert_eq!(bounded("body", res.bytes()).await.unwrap(), &b"2345"[..]);

    // A suffix range: the last three bytes.
    let res = get(&server, &url, Some("bytes=-3")).await;
    assert_eq!(res.status(), 206);
    assert_eq!(header(&res, "content-range").as_deref(), Some("bytes 7-9/10"));
    assert_eq!(bounded("body", res.bytes()).await.unwrap(), &b"789"[..]);

    // An open-ended range.
    let res = get(&server, &url, Some("bytes=8-")).await;
    assert_eq!(res.status(), 206);
    assert_eq!(header(&res, "content-range").as_deref(), Some("bytes 8-9/10"));
    assert_eq!(bounded("body", res.bytes()).await.unwrap(), &b"89"[..]);
}

#[tokio::test]
async fn an_unsatisfiable_range_is_416() {
    let server = TestServer::default_disk().await;
    let file = upload_digits(&server).await;
    let url = server.absolute(file["url"].as_str().unwrap());
    let res = get(&server, &url, Some("bytes=20-30")).await;
    assert_eq!(header(&res, "content-range").as_deref(), Some("bytes */10"));
    let json = assert_problem(res, 416, "invalid_range").await;
    assert_eq!(json["size"], 10);
}

#[tokio::test]
async fn an_unknown_id_is_404() {
    let server = TestServer::default_disk().await;
    upload_digits(&server).await;
    let res = get(&server, &server.url("/files/0123456789abcdef0123456789abcdef"), None).await;
    assert_problem(res, 404, "upload_not_found").await;
    let res = get(&server, &server.url("/files/not-an-id"), None).await;
    assert_problem(res, 404, "upload_not_found").await;
}

#[tokio::test]
async fn a_traversal_id_is_404() {
    let server = TestServer::default_disk().await;
    upload_digits(&server).await;
    // Percent-encoded slashes stay inside the one path segment: the id is "../../etc/passwd".
    let res = get(&server, &server.url("/files/..%2F..%2Fetc%2Fpasswd"), None).await;
    assert_problem(res, 404, "upload_not_found").await;
    let res = get(&server, &server.url("/files/..%2F..%2Fobjects%2F"), None).await;
    assert_problem(res, 404, "upload_not_found").await;

    // Literal dot segments, which reqwest would normalise away, over a raw socket.
    let mut conn = RawConn::connect(server.addr).await;
    conn.send(format!("GET {PREFIX}/files/../../../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).await;
    let res = conn.response().await.expect("a response");
    assert_eq!(res.status, 404);
    assert!(!String::from_utf8_lossy(&res.body).contains("root:"), "no file outside the store is served");
}

#[tokio::test]
async fn an_unfinished_upload_cannot_be_downloaded() {
    // While a slow raw upload is in progress its bytes are written in place, under the id it
    // will have, but nothing catalogues them yet: not downloadable.
    let server = TestServer::default_disk().await;
    let mut conn = RawConn::connect(server.addr).await;
    let head = format!(
        "POST {PREFIX}/raw?name=slow.txt HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 1200000\r\n\r\n"
    );
    conn.send(head.as_bytes()).await;
    // More than one write batch (256 KiB), so the data file exists.
    conn.send(&[b'a'; 600_000]).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let id = loop {
        if let Some(id) = server.object_ids().pop() {
            break id;
        }
        assert!(tokio::time::Instant::now() < deadline, "the upload started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let res = get(&server, &server.url(&format!("/files/{id}")), None).await;
    assert_problem(res, 404, "upload_not_found").await;
    conn.send(&[b'b'; 600_000]).await;
    let res = conn.response().await.expect("the upload's response");
    assert_eq!(res.status, 201);
    let stored = res.json()["files"][0]["id"].as_str().unwrap().to_owned();
    let res = get(&server, &server.url(&format!("/files/{stored}")), None).await;
    assert_eq!(res.status(), 200, "once stored and catalogued it is a file");
    assert_eq!(stored, id, "the bytes written in place are the object");
    assert!(server.partial_files().is_empty());
}

/// RFC 9110 §14.1.3 for one range, as a table: what each `Range` gets from a 10-byte file and
/// from an empty one.
#[tokio::test]
async fn ranges_follow_rfc_9110() {
    struct Case {
        range: &'static str,
        status: u16,
        content_range: Option<&'static str>,
        body: &'static [u8],
    }
    let case = |range, status, content_range, body| Case { range, status, content_range, body };
    let digits = [
        // A suffix longer than the file is the whole file, as a 206.
        case("bytes=-20", 206, Some("bytes 0-9/10"), DIGITS),
        case("bytes=-10", 206, Some("bytes 0-9/10"), DIGITS),
        case("bytes=-11", 206, Some("bytes 0-9/10"), DIGITS),
        case("bytes=-1", 206, Some("bytes 9-9/10"), b"9"),
        // A zero-length suffix is not satisfiable.
        case("bytes=-0", 416, Some("bytes */10"), b""),
        case("bytes=0-", 206, Some("bytes 0-9/10"), DIGITS),
        case("bytes=9-", 206, Some("bytes 9-9/10"), b"9"),
        case("bytes=3-3", 206, Some("bytes 3-3/10"), b"3"),
        case("bytes=8-100", 206, Some("bytes 8-9/10"), b"89"),
        case("bytes=10-", 416, Some("bytes */10"), b""),
        case("bytes=10-20", 416, Some("bytes */10"), b""),
        case("bytes=5-2", 416, Some("bytes */10"), b""),
        // Not a byte range this server understands: the whole file.
        case("items=0-1", 200, None, DIGITS),
        case("bytes=a-b", 200, None, DIGITS),
    ];
    let empty = [
        // Only a non-zero suffix is satisfiable on an empty file, and there is no byte to name
        // in a Content-Range: the (empty) representation is sent whole.
        case("bytes=-5", 200, None, b""),
        case("bytes=0-", 416, Some("bytes */0"), b""),
        case("bytes=0-0", 416, Some("bytes */0"), b""),
        case("bytes=-0", 416, Some("bytes */0"), b""),
    ];
    let server = TestServer::default_disk().await;
    let file = upload_digits(&server).await;
    let digits_url = server.absolute(file["url"].as_str().unwrap());
    let res = bounded("upload", server.client.post(server.url("/raw?name=empty.txt")).body("").send()).await.unwrap();
    let empty_url = server.absolute(assert_created(res).await["files"][0]["url"].as_str().unwrap());
    let mut failures = Vec::new();
    for (url, cases) in [(&digits_url, &digits[..]), (&empty_url, &empty[..])] {
        for c in cases {
            let res = get(&server, url, Some(c.range)).await;
            let got = (res.status().as_u16(), header(&res, "content-range"));
            let body = bounded("body", res.bytes()).await.unwrap();
            let body_ok = c.status == 416 || body == c.body;
            if got != (c.status, c.content_range.map(str::to_owned)) || !body_ok {
                failures.push(format!(
                    "{} of {url}: expected {} {:?}, got {got:?} with {body:?}",
                    c.range, c.status, c.content_range
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
