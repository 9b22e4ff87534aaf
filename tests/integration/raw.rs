//! `POST {prefix}/raw`: the request body is the file.

use crate::common::*;

#[tokio::test]
async fn name_from_content_disposition_filename_star() {
    let server = TestServer::default_disk().await;
    let body = b"summer notes\n".to_vec();
    let res = bounded(
        "raw upload",
        server
            .client
            .post(server.url("/raw"))
            .header("content-type", "text/plain; charset=utf-8")
            .header("content-disposition", "attachment; filename*=UTF-8''%C3%A9t%C3%A9.txt")
            .body(body.clone())
            .send(),
    )
    .await
    .unwrap();
    let location = header(&res, "location");
    let json = assert_created(res).await;
    let file = &json["files"][0];
    assert_eq!(json["files"].as_array().unwrap().len(), 1);
    assert_eq!(file["name"], "été.txt");
    assert_eq!(file["content_type"], "text/plain");
    assert_eq!(file["size"], body.len() as u64);
    assert_eq!(file["sha256"], sha256_hex(&body));
    let id = file["id"].as_str().unwrap();
    assert_eq!(file["url"], server.absolute(&format!("{PREFIX}/files/{id}")));
    assert_eq!(location.as_deref(), file["url"].as_str());
    assert!(json.get("fields").is_none() || json["fields"] == serde_json::json!({}), "{json}");

    assert_eq!(server.object_bytes(id), body);
    server.assert_objects_well_formed();
    assert_eq!(server.partial_files(), Vec::<String>::new());

    // The name survives to the download, encoded for any client.
    let res = bounded("download", server.client.get(server.absolute(file["url"].as_str().unwrap())).send()).await.unwrap();
    let disposition = header(&res, "content-disposition").unwrap();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''%C3%A9t%C3%A9%2Etxt")
            || disposition.contains("filename*=UTF-8''%C3%A9t%C3%A9.txt")
    );
    assert_eq!(bounded("body", res.bytes()).await.unwrap(), body);
}

#[tokio::test]
async fn name_from_the_query() {
    let server = TestServer::memory(|u| u).await;
    let res = bounded(
        "raw upload",
        server
            .client
            .post(server.url("/raw?name=report%20final.txt"))
            .header("content-type", "text/plain")
            .body("the report")
            .send(),
    )
    .await
    .unwrap();
    let json = assert_created(res).await;
    assert_eq!(json["files"][0]["name"], "report final.txt");
    assert_eq!(json["files"][0]["content_type"], "text/plain");
    assert_eq!(json["files"][0]["size"], 10);
}

#[tokio::test]
async fn content_disposition_wins_over_the_query() {
    let server = TestServer::memory(|u| u).await;
    let res = bounded(
        "raw upload",
        server
            .client
            .post(server.url("/raw?name=from-query.txt"))
            .header("content-disposition", "attachment; filename=\"from-header.txt\"")
            .body("x")
            .send(),
    )
    .await
    .unwrap();
    let json = assert_created(res).await;
    assert_eq!(json["files"][0]["name"], "from-header.txt");
}

#[tokio::test]
async fn content_type_is_checked_by_sniffing() {
    let server = TestServer::default_disk().await;
    let png = [PNG, &[0u8; 1000][..]].concat();
    let res = bounded(
        "png upload",
        server.client.post(server.url("/raw?name=pixel.png")).header("content-type", "image/png").body(png.clone()).send(),
    )
    .await
    .unwrap();
    let json = assert_created(res).await;
    assert_eq!(json["files"][0]["content_type"], "image/png");
    assert_eq!(json["files"][0]["sha256"], sha256_hex(&png));

    // No declared type at all: the sniffed one is stored.
    let res = bounded("png upload, undeclared", server.client.post(server.url("/raw")).body(png.clone()).send()).await.unwrap();
    let json = assert_created(res).await;
    assert_eq!(json["files"][0]["content_type"], "image/png");
    assert_eq!(json["files"][0]["name"], serde_json::Value::Null);

    // A PNG that claims to be a JPEG contradicts its magic bytes.
    let res = bounded(
        "png declared as jpeg",
        server.client.post(server.url("/raw?name=pixel.jpg")).header("content-type", "image/jpeg").body(png.clone()).send(),
    )
    .await
    .unwrap();
    assert_problem(res, 415, "content_type_mismatch").await;
    server.wait_for_no_partials().await;
    assert_eq!(server.object_ids().len(), 2, "the refused upload was not stored");
    assert_eq!(server.partial_files(), Vec::<String>::new());
}

#[tokio::test]
async fn an_empty_body_is_an_empty_file() {
    let server = TestServer::memory(|u| u).await;
    let res = bounded("empty upload", server.client.post(server.url("/raw?name=empty.txt")).body(Vec::<u8>::new()).send())
        .await
        .unwrap();
    let json = assert_created(res).await;
    assert_eq!(json["files"][0]["size"], 0);
    assert_eq!(json["files"][0]["sha256"], sha256_hex(b""));
}

/// A PE executable in a file part, as a hostile client builds it.
fn pe() -> Vec<u8> {
    let mut v = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0".to_vec();
    v.resize(0x3c, 0);
    v.extend_from_slice(&0x80u32.to_le_bytes());
    v.resize(0x80, 0);
    v.extend_from_slice(b"PE\0\0\x4c\x01");
    v.resize(512, 0);
    v
}

#[tokio::test]
async fn a_multipart_body_is_not_stored_unchecked() {
    // The sniff and hash layers leave multipart bodies to the form handler; the raw route must not
    // store one whole (a PE named cat.png was stored before).
    let server = TestServer::default_disk().await;
    let body = [
        &b"--x\r\nContent-Disposition: form-data; name=\"f\"; filename=\"cat.png\"\r\nContent-Type: image/png\r\n\r\n"[..],
        &pe(),
        b"\r\n--x--\r\n",
    ]
    .concat();
    for content_type in ["multipart/form-data; boundary=x", "Multipart/Mixed; boundary=x"] {
        let res = bounded(
            "multipart raw",
            server.client.post(server.url("/raw?name=cat.png")).header("content-type", content_type).body(body.clone()).send(),
        )
        .await
        .unwrap();
        assert_problem(res, 415, "multipart_body").await;
    }
    server.wait_for_no_partials().await;
    assert_eq!(server.object_ids(), Vec::<String>::new(), "nothing was stored");
}
