//! `GET`: downloading a finished upload, with `Range`.

use crate::{Case, Session, UNKNOWN_ID, b64, create, create_with, patch, sha256_hex};
use intake::storage::InMemory;

fn get(name: &'static str, var: &str) -> Case {
    Case::new(name, "GET", format!("{{{var}}}")).tus()
}

#[tokio::test]
async fn downloads() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    let meta = format!("filename {},filetype {}", b64(b"greeting.txt"), b64(b"text/plain"));
    s.run(&[
        create_with("a finished upload", "a", 11, b"hello world").header("upload-metadata", &meta),
        get("the whole file", "a")
            .status(200)
            .expect("content-length", "11")
            .expect("content-type", "text/plain")
            .expect("accept-ranges", "bytes")
            .expect("etag", format!("\"{}\"", sha256_hex(b"hello world")))
            .starts_with("content-disposition", "attachment; filename=\"greeting.txt\"")
            .expect_body(b"hello world".to_vec()),
        get("the first bytes", "a")
            .header("range", "bytes=0-4")
            .status(206)
            .expect("content-range", "bytes 0-4/11")
            .expect("content-length", "5")
            .expect_body(b"hello".to_vec()),
        get("from an offset on", "a")
            .header("range", "bytes=6-")
            .status(206)
            .expect("content-range", "bytes 6-10/11")
            .expect_body(b"world".to_vec()),
        get("the last bytes", "a")
            .header("range", "bytes=-3")
            .status(206)
            .expect("content-range", "bytes 8-10/11")
            .expect_body(b"rld".to_vec()),
        get("a range past the end", "a")
            .header("range", "bytes=20-30")
            .status(416)
            .code("invalid_range")
            .expect("content-range", "bytes */11"),
        get("a malformed range is ignored", "a").header("range", "lines=1-2").status(200).expect_body(b"hello world".to_vec()),
        Case::new("a plain download link: no tus headers needed", "GET", "{a}").status(200).expect_body(b"hello world".to_vec()),
        create("an unfinished upload", "u", 11),
        patch("its first bytes", "u", 0, b"hello").status(204),
        get("an unfinished upload", "u").status(409).code("upload_incomplete").json("offset", 5),
        Case::new("an unknown upload", "GET", format!("/files/tus/{UNKNOWN_ID}")).tus().status(404).code("upload_not_found"),
        Case::new("not an id", "GET", "/files/tus/nope").tus().status(404).code("upload_not_found"),
    ])
    .await;
    // The same file at the router's download route, where no tus header is needed.
    let file = format!("/files/files/{}", s.id("a"));
    s.run(&[Case::new("the download route", "GET", file).status(200).expect_body(b"hello world".to_vec())]).await;
}
