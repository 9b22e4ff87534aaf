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
async fn a_range_on_an_empty_file_gets_the_whole_file() {
    // An empty file has no byte a range could select: the Range header is ignored (RFC 9110
    // lets a server do that), not served as one byte past the end. Found by fuzz/range.
    let server = TestServer::default_disk().await;
    let res = bounded("upload", server.client.post(server.url("/raw?name=empty.txt")).body(Vec::new()).send()).await.unwrap();
    let file = assert_created(res).await["files"][0].clone();
    assert_eq!(file["size"], 0);
    let url = server.absolute(file["url"].as_str().unwrap());
    for range in ["bytes=0-", "bytes=0-0", "bytes=-1", "bytes=0-9"] {
        let res = get(&server, &url, Some(range)).await;
        assert_eq!(res.status(), 200, "{range}");
        assert_eq!(header(&res, "content-length").as_deref(), Some("0"), "{range}");
        assert!(header(&res, "content-range").is_none(), "{range}");
        assert!(bounded("body", res.bytes()).await.unwrap().is_empty(), "{range}");
    }
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
    // While a slow raw upload is in progress its data has no description yet: not downloadable.
    let server = TestServer::default_disk().await;
    let mut conn = RawConn::connect(server.addr).await;
    let head = format!(
        "POST {PREFIX}/raw?name=slow.txt HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 400000\r\n\r\n"
    );
    conn.send(head.as_bytes()).await;
    // More than one write batch, so the data file exists.
    conn.send(&[b'a'; 200_000]).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let id = loop {
        if let Some(name) = server.partial_files().into_iter().find(|n| !n.contains('.')) {
            break name;
        }
        assert!(tokio::time::Instant::now() < deadline, "the upload started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let res = get(&server, &server.url(&format!("/files/{id}")), None).await;
    assert_problem(res, 404, "upload_not_found").await;
    conn.send(&[b'b'; 200_000]).await;
    let res = conn.response().await.expect("the upload's response");
    assert_eq!(res.status, 201);
    assert_eq!(res.json()["files"][0]["id"], id.as_str());
    let res = get(&server, &server.url(&format!("/files/{id}")), None).await;
    assert_eq!(res.status(), 200);
}
