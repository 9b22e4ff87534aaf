//! `POST` to the collection: creation, creation-with-upload, deferred length, concatenation.

use crate::{Case, ELF, OFFSET_STREAM, Session, TUS, UNKNOWN_ID, app, b64, create, create_with, head, uploads};
use intake::storage::InMemory;

fn post() -> Case {
    Case::new("", "POST", TUS)
}

fn named(name: &'static str) -> Case {
    Case { name, ..post() }
}

#[tokio::test]
async fn creation() {
    let store = InMemory::new();
    let mut s = Session::new(app(uploads(&store).max_raw_body(1024)));
    s.run(&[
        named("Upload-Length")
            .tus()
            .header("upload-length", "10")
            .status(201)
            .starts_with("location", "/files/tus/")
            .expect("tus-resumable", "1.0.0")
            .present("upload-expires")
            .capture("a"),
        head("the new upload is empty", "a").status(200).expect("upload-offset", "0").expect("upload-length", "10"),
        Case::new("the collection without a trailing slash", "POST", "/files/tus")
            .tus()
            .header("upload-length", "10")
            .status(201)
            .starts_with("location", "/files/tus/"),
        named("Upload-Length equal to Tus-Max-Size").tus().header("upload-length", "1024").status(201),
        named("Upload-Length over Tus-Max-Size")
            .tus()
            .header("upload-length", "1025")
            .status(413)
            .code("body_too_large")
            .absent("location")
            .json("limit", 1024),
        named("without Tus-Resumable")
            .header("upload-length", "10")
            .status(412)
            .expect("tus-version", "1.0.0")
            .code("unsupported_version"),
        named("an unsupported Tus-Resumable")
            .header("tus-resumable", "0.2.2")
            .header("upload-length", "10")
            .status(412)
            .expect("tus-version", "1.0.0")
            .code("unsupported_version"),
        named("neither Upload-Length nor Upload-Defer-Length").tus().status(400).code("missing_length"),
        named("both Upload-Length and Upload-Defer-Length")
            .tus()
            .header("upload-length", "10")
            .header("upload-defer-length", "1")
            .status(400)
            .code("invalid_length"),
        named("Upload-Defer-Length other than 1").tus().header("upload-defer-length", "2").status(400).code("invalid_header"),
        named("a negative Upload-Length").tus().header("upload-length", "-1").status(400).code("invalid_length"),
        named("a non-numeric Upload-Length").tus().header("upload-length", "ten").status(400).code("invalid_length"),
        named("an Upload-Length beyond u64")
            .tus()
            .header("upload-length", "99999999999999999999999")
            .status(400)
            .code("invalid_length"),
    ])
    .await;
    // The two 201s above without a capture plus "a".
    assert_eq!(store.pending_uploads(), 3, "refused creations leave nothing behind");
}

#[tokio::test]
async fn deferred_and_empty_uploads() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    s.run(&[
        named("Upload-Defer-Length: 1").tus().header("upload-defer-length", "1").status(201).capture("d"),
        head("a deferred upload has no length yet", "d")
            .status(200)
            .expect("upload-defer-length", "1")
            .absent("upload-length")
            .expect("upload-offset", "0"),
        create("an empty upload is finished at once", "e", 0),
        head("the empty upload", "e")
            .status(200)
            .expect("upload-offset", "0")
            .expect("upload-length", "0")
            .absent("upload-expires"),
        Case::new("the empty file downloads", "GET", "{e}").tus().status(200).expect_body(b"".to_vec()),
    ])
    .await;
    assert_eq!(store.objects(), 1);
}

#[tokio::test]
async fn creation_with_upload() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    s.run(&[
        create_with("part of the upload", "a", 11, b"hello").present("upload-expires"),
        head("the first bytes are in", "a").status(200).expect("upload-offset", "5").expect("upload-length", "11"),
        create_with("all of the upload", "b", 5, b"hello"),
        Case::new("the whole upload downloads", "GET", "{b}").tus().status(200).expect_body(b"hello".to_vec()),
        create_with("an empty body with the offset stream type", "c", 5, b""),
        create("a body of another type is not appended", "d", 5).header("content-type", "text/plain").body("hello"),
        head("nothing was appended", "d").status(200).expect("upload-offset", "0"),
        named("a body longer than Upload-Length")
            .tus()
            .header("upload-length", "3")
            .header("content-type", OFFSET_STREAM)
            .body("hello")
            .status(413)
            .code("length_exceeded")
            .capture("e"),
        head("nothing past the length was stored", "e").status(200).expect("upload-offset", "0").expect("upload-length", "3"),
        named("a deferred length and a body")
            .tus()
            .header("upload-defer-length", "1")
            .header("content-type", OFFSET_STREAM)
            .body("hello")
            .status(201)
            .expect("upload-offset", "5")
            .capture("f"),
        head("the deferred upload has its first bytes", "f")
            .status(200)
            .expect("upload-offset", "5")
            .expect("upload-defer-length", "1"),
    ])
    .await;
}

#[tokio::test]
async fn creation_with_upload_is_sniffed() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    s.run(&[
        create("an executable named cat.png", "x", ELF.len() as u64)
            .header("upload-metadata", format!("filename {}", b64(b"cat.png")))
            .header("content-type", OFFSET_STREAM)
            .body(ELF)
            .status(415)
            .code("executable_content"),
        head("nothing was stored", "x").status(200).expect("upload-offset", "0"),
    ])
    .await;
}

#[tokio::test]
async fn metadata() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    let meta = format!("filename {},is_confidential,filetype {}", b64(b"world_domination_plan.pdf"), b64(b"application/pdf"));
    let with = |name: &'static str, value: &str| named(name).tus().header("upload-length", "5").header("upload-metadata", value);
    s.run(&[
        with("pairs, one without a value", &meta).status(201).capture("m"),
        head("echoed as sent", "m").status(200).expect("upload-metadata", &meta),
        create("no metadata", "n", 5),
        head("no Upload-Metadata without metadata", "n").status(200).absent("upload-metadata"),
        with("a value that is not base64", "filename not-base64!").status(400).code("invalid_metadata"),
        with("a key twice", "a YQ==,a Yg==").status(400).code("invalid_metadata"),
        with("an empty pair (empty key)", "a YQ==,,b Yg==").status(400).code("invalid_metadata"),
        with("three parts in a pair", "a YQ== Yg==").status(400).code("invalid_metadata"),
    ])
    .await;
}

#[tokio::test]
async fn metadata_that_is_not_ascii() {
    let store = InMemory::new();
    let s = Session::memory(&store);
    let req = http::Request::post(TUS)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "5")
        .header("upload-metadata", http::HeaderValue::from_bytes(b"n\xe4me YQ==").unwrap())
        .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from(([192, 0, 2, 7], 40000))))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(s.app.clone(), req).await.unwrap();
    assert_eq!(res.status(), 400, "a key that is not ASCII");
    assert_eq!(store.pending_uploads(), 0);
}

#[tokio::test]
async fn concatenation() {
    let store = InMemory::new();
    let mut s = Session::new(app(uploads(&store).max_raw_body(64)));
    let final_of = |name: &'static str, urls: &str| named(name).tus().header("upload-concat", format!("final;{urls}"));
    s.run(&[
        create_with("partial upload 1", "p1", 6, b"hello ").header("upload-concat", "partial"),
        create_with("partial upload 2", "p2", 5, b"world").header("upload-concat", "partial"),
        head("a partial upload says so", "p1").status(200).expect("upload-concat", "partial").expect("upload-offset", "6"),
        final_of("the final upload", "{p1} {p2}").status(201).starts_with("location", "/files/tus/").capture("f"),
        head("the final upload is complete", "f")
            .status(200)
            .expect("upload-offset", "11")
            .expect("upload-length", "11")
            .expect("upload-concat", "final;{p1} {p2}")
            .absent("upload-expires"),
        Case::new("the final upload downloads", "GET", "{f}").tus().status(200).expect_body(b"hello world".to_vec()),
        final_of("absolute URLs", "http://example.com{p2} http://example.com{p1}").status(201).capture("g"),
        Case::new("in the order named", "GET", "{g}").tus().status(200).expect_body(b"worldhello ".to_vec()),
        create_with("an unfinished partial upload", "p3", 10, b"abc").header("upload-concat", "partial"),
        final_of("of an unfinished partial upload", "{p1} {p3}").status(400).code("partial_unfinished"),
        create_with("a plain upload", "u", 3, b"abc"),
        final_of("of an upload that is not partial", "{p1} {u}").status(400).code("not_partial"),
        final_of("of an unknown upload", &format!("{{p1}} /files/tus/{UNKNOWN_ID}")).status(404).code("upload_not_found"),
        final_of("of no upload", "").status(400).code("invalid_concat"),
        final_of("of a path that is not an upload", "/files/tus/../../etc/passwd").status(400).code("invalid_concat"),
        named("an Upload-Concat that is neither partial nor final")
            .tus()
            .header("upload-length", "3")
            .header("upload-concat", "whole")
            .status(400)
            .code("invalid_concat"),
        create_with("a partial upload of 60 bytes", "big", 60, &[b'x'; 60]).header("upload-concat", "partial"),
        final_of("longer than Tus-Max-Size", "{big} {p1}").status(413).code("body_too_large"),
    ])
    .await;
}

#[tokio::test]
async fn a_final_upload_is_sniffed_as_a_whole() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    s.run(&[
        create_with("partial uploads are not sniffed on their own", "p", ELF.len() as u64, ELF)
            .header("upload-concat", "partial")
            .header("upload-metadata", format!("filename {}", b64(b"cat.png"))),
        named("the final upload named cat.png is an executable")
            .tus()
            .header("upload-concat", "final;{p}")
            .header("upload-metadata", format!("filename {}", b64(b"cat.png")))
            .status(415)
            .code("executable_content"),
    ])
    .await;
    assert_eq!(store.objects(), 1, "only the partial upload became a file");
}

#[tokio::test]
async fn a_final_upload_is_sniffed_on_its_own_first_bytes() {
    // Today's hole: a 1-byte first partial was all the content policy saw.
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    let cat = format!("filename {}", b64(b"cat.png"));
    s.run(&[
        create_with("the first byte of an executable", "p1", 1, &ELF[..1]).header("upload-concat", "partial"),
        create_with("two more", "p2", 2, &ELF[1..3]).header("upload-concat", "partial"),
        create_with("the rest of it", "p3", (ELF.len() - 3) as u64, &ELF[3..]).header("upload-concat", "partial"),
        named("the final upload named cat.png")
            .tus()
            .header("upload-concat", "final;{p1} {p2} {p3}")
            .header("upload-metadata", cat.clone())
            .status(415)
            .code("executable_content"),
        Case::new("a partial upload is a part, not a file to download", "GET", "{p3}").tus().status(404),
    ])
    .await;
    assert_eq!(store.objects(), 3, "only the partial uploads are kept, as parts");
}

#[tokio::test]
async fn concatenation_is_bounded() {
    let store = InMemory::new();
    let mut s = Session::new(app(uploads(&store).max_concat_parts(3)));
    let final_of = |name: &'static str, urls: &str| named(name).tus().header("upload-concat", format!("final;{urls}"));
    s.run(&[
        create_with("a partial upload", "p", 4, b"abcd").header("upload-concat", "partial"),
        create_with("another", "q", 4, b"efgh").header("upload-concat", "partial"),
        final_of("naming a partial upload twice", "{p} {q} {p}").status(400).code("duplicate_partial"),
        final_of("naming it twice by absolute URL", "{p} http://example.com{p}").status(400).code("duplicate_partial"),
        final_of(
            "more partial uploads than allowed",
            "{p} {q} /files/tus/0123456789abcdef0123456789abcde0 /files/tus/0123456789abcdef0123456789abcde1",
        )
        .status(400)
        .code("too_many_partials"),
        final_of("distinct ones within the limit", "{q} {p}").status(201).capture("f"),
        Case::new("downloads", "GET", "{f}").tus().status(200).expect_body(b"efghabcd".to_vec()),
    ])
    .await;
}
