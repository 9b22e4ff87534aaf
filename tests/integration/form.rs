//! `POST {prefix}/form`: streaming multipart uploads from real clients.

use crate::common::*;
use bytes::Bytes;
use reqwest::multipart::{Form, Part};
use std::time::Duration;

async fn download(server: &TestServer, url: &str) -> (reqwest::StatusCode, Vec<u8>) {
    let res = bounded("download", server.client.get(server.absolute(url)).send()).await.expect("download");
    let status = res.status();
    (status, bounded("download body", res.bytes()).await.expect("download body").to_vec())
}

#[tokio::test]
async fn several_files_and_text_fields_in_one_request() {
    let server = TestServer::default_disk().await;
    let text = b"hello, world\n".to_vec();
    let png = [PNG, &[7u8; 300][..]].concat();
    let json_doc = br#"{"a": 1, "b": [true, null]}"#.to_vec();
    let form = Form::new()
        .text("title", "holiday pictures")
        .part("notes", Part::bytes(text.clone()).file_name("notes.txt").mime_str("text/plain").unwrap())
        .text("album", "2024")
        .part("photo", Part::bytes(png.clone()).file_name("beach.png").mime_str("image/png").unwrap())
        .part("meta", Part::bytes(json_doc.clone()).file_name("meta.json").mime_str("application/json").unwrap());
    let res = bounded("form upload", server.client.post(server.url("/form")).multipart(form).send()).await.unwrap();
    let location = header(&res, "location");
    let json = assert_created(res).await;

    let files = json["files"].as_array().expect("files array");
    assert_eq!(files.len(), 3, "{json}");
    let expected = [
        ("notes", "notes.txt", &text, "text/plain"),
        ("photo", "beach.png", &png, "image/png"),
        ("meta", "meta.json", &json_doc, "application/json"),
    ];
    for (file, (field, name, bytes, content_type)) in files.iter().zip(expected) {
        let id = file["id"].as_str().expect("id");
        assert!(is_upload_id(id), "{id}");
        assert_eq!(file["name"], name);
        assert_eq!(file["field"], field);
        assert_eq!(file["size"], bytes.len() as u64);
        assert_eq!(file["content_type"], content_type);
        assert_eq!(file["sha256"], sha256_hex(bytes), "the SHA-256 matches the bytes sent");
        assert_eq!(file["digests"]["sha-256"], sha256_hex(bytes));
        assert_eq!(file["url"], server.absolute(&format!("{PREFIX}/files/{id}")));
        let (status, body) = download(&server, file["url"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(&body, bytes, "the file downloads intact");
    }
    assert_eq!(location.as_deref(), files[0]["url"].as_str(), "Location is the first file's url");
    assert_eq!(json["fields"], serde_json::json!({"title": "holiday pictures", "album": "2024"}));

    assert_eq!(server.object_ids().len(), 3);
    server.assert_objects_well_formed();
    assert_eq!(server.partial_files(), Vec::<String>::new());
}

#[tokio::test]
async fn a_repeated_text_field_becomes_an_array() {
    let server = TestServer::memory(|u| u).await;
    let form = Form::new()
        .text("tag", "red")
        .text("single", "one")
        .text("tag", "green")
        .part("f", Part::bytes(b"data".to_vec()).file_name("a.txt").mime_str("text/plain").unwrap())
        .text("tag", "blue");
    let res = bounded("form upload", server.client.post(server.url("/form")).multipart(form).send()).await.unwrap();
    let json = assert_created(res).await;
    assert_eq!(json["fields"]["tag"], serde_json::json!(["red", "green", "blue"]));
    assert_eq!(json["fields"]["single"], "one");
}

#[tokio::test]
async fn a_5_mib_file_streamed_in_small_chunks_is_stored_intact() {
    let server = TestServer::default_disk().await;
    let data = pseudo_random(5 * 1024 * 1024, 42);
    let body = Multipart::new()
        .text("description", "big one")
        .file("upload", "big.bin", "application/octet-stream", &data)
        .text("after", "the file")
        .finish();
    // Odd-sized chunks, so boundaries and headers straddle chunk edges.
    let chunks: Vec<Result<Bytes, std::io::Error>> = body.chunks(997).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let chunk_count = chunks.len();
    assert!(chunk_count > 5000);
    let stream = futures_util::stream::iter(chunks);
    let res = server.post_form("streamed form upload", reqwest::Body::wrap_stream(stream)).await;
    let json = assert_created(res).await;
    let file = &json["files"][0];
    assert_eq!(file["size"], data.len() as u64);
    assert_eq!(file["sha256"], sha256_hex(&data));
    assert_eq!(json["fields"], serde_json::json!({"description": "big one", "after": "the file"}));
    let id = file["id"].as_str().unwrap();
    assert!(server.object_bytes(id) == data, "the stored bytes are the bytes sent");
    let (status, body) = download(&server, file["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert!(body == data, "the download is the bytes sent");
    server.assert_objects_well_formed();
}

#[tokio::test]
async fn a_slowly_streamed_form_is_stored_intact() {
    // A client that trickles its body (pauses between chunks) is not a stalled client.
    let server = TestServer::memory(|u| u).await;
    let data = pseudo_random(40_000, 7);
    let body = Multipart::new().file("f", "slow.bin", "application/octet-stream", &data).finish();
    let pieces: Vec<Bytes> = body.chunks(4096).map(Bytes::copy_from_slice).collect();
    let stream = futures_util::stream::unfold(pieces.into_iter(), |mut it| async move {
        let next = it.next()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Some((Ok::<_, std::io::Error>(next), it))
    });
    let res = server.post_form("slow form upload", reqwest::Body::wrap_stream(stream)).await;
    let json = assert_created(res).await;
    assert_eq!(json["files"][0]["sha256"], sha256_hex(&data));
}

#[tokio::test]
async fn a_form_without_a_file_is_refused() {
    let server = TestServer::default_disk().await;
    let form = Form::new().text("only", "text");
    let res = bounded("form upload", server.client.post(server.url("/form")).multipart(form).send()).await.unwrap();
    assert_problem(res, 400, "no_files").await;
    server.assert_nothing_stored().await;
}
