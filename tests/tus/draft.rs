//! The IETF resumable-upload draft (interop version 8, and 6) at the tus endpoint.

use crate::{Case, OFFSET_STREAM, PARTIAL_UPLOAD, Session, TUS, UNKNOWN_ID, app, uploads};
use intake::storage::InMemory;

const MISMATCHING_OFFSET: &str = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset";
const COMPLETED_UPLOAD: &str = "https://iana.org/assignments/http-problem-types#completed-upload";
const INCONSISTENT_LENGTH: &str = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length";
const LIMIT: &str = "min-size=0, max-size=4096";

fn create(name: &'static str, var: &'static str, complete: bool) -> Case {
    Case::new(name, "POST", TUS).draft().header("upload-complete", if complete { "?1" } else { "?0" }).capture(var)
}

fn append(name: &'static str, var: &str, offset: u64, complete: bool, body: &[u8]) -> Case {
    Case::new(name, "PATCH", format!("{{{var}}}"))
        .draft()
        .header("content-type", PARTIAL_UPLOAD)
        .header("upload-offset", offset.to_string())
        .header("upload-complete", if complete { "?1" } else { "?0" })
        .body(body)
}

fn head(name: &'static str, var: &str) -> Case {
    Case::new(name, "HEAD", format!("{{{var}}}")).draft()
}

fn session() -> (InMemory, Session) {
    let store = InMemory::new();
    let s = Session::new(app(uploads(&store).max_raw_body(4096)));
    (store, s)
}

#[tokio::test]
async fn careful_creation_then_appends() {
    let (_store, mut s) = session();
    s.run(&[
        create("creation with Upload-Complete: ?0 and the first bytes", "a", false)
            .header("upload-length", "11")
            .body("hello")
            .status(201)
            .starts_with("location", "/files/tus/")
            .expect("upload-complete", "?0")
            .expect("upload-offset", "5")
            .starts_with("upload-limit", format!("{LIMIT}, max-age="))
            .expect("upload-draft-interop-version", "8"),
        head("offset retrieval", "a")
            .status(204)
            .expect("upload-offset", "5")
            .expect("upload-complete", "?0")
            .expect("upload-length", "11")
            .starts_with("upload-limit", LIMIT)
            .expect("cache-control", "no-store")
            .expect("upload-draft-interop-version", "8"),
        append("append with ?0", "a", 5, false, b" wor").status(204).expect("upload-complete", "?0").expect("upload-offset", "9"),
        append("an offset mismatch", "a", 3, false, b"xx")
            .status(409)
            .expect("upload-offset", "9")
            .expect("upload-complete", "?0")
            .json("type", MISMATCHING_OFFSET)
            .json("expected-offset", 9)
            .json("provided-offset", 3),
        append("the tus content type", "a", 9, false, b"ld").header("content-type", OFFSET_STREAM).status(415),
        append("without Upload-Complete", "a", 9, false, b"ld")
            .without("upload-complete")
            .status(400)
            .code("missing_upload_complete"),
        append("without Upload-Offset", "a", 9, false, b"ld").without("upload-offset").status(400).code("missing_offset"),
        append("a different Upload-Length", "a", 9, false, b"ld")
            .header("upload-length", "12")
            .status(400)
            .json("type", INCONSISTENT_LENGTH),
        head("the refused appends left the offset", "a").status(204).expect("upload-offset", "9"),
        append("append with ?1 completes", "a", 9, true, b"ld")
            .status(200)
            .expect("upload-complete", "?1")
            .expect("upload-draft-interop-version", "8"),
        head("a completed upload", "a")
            .status(204)
            .expect("upload-offset", "11")
            .expect("upload-complete", "?1")
            .expect("upload-length", "11"),
        Case::new("the file", "GET", "{a}").tus().status(200).expect_body(b"hello world".to_vec()),
        append("an empty append to the completed upload", "a", 11, true, b"")
            .status(400)
            .json("type", COMPLETED_UPLOAD)
            .code("upload_completed"),
        append("more bytes for the completed upload", "a", 11, true, b"!")
            .status(400)
            .json("type", INCONSISTENT_LENGTH)
            .code("inconsistent_length"),
        Case::new("the file is unchanged", "GET", "{a}").tus().status(200).expect_body(b"hello world".to_vec()),
    ])
    .await;
}

#[tokio::test]
async fn creation_complete_in_one_request() {
    let (_store, mut s) = session();
    s.run(&[
        create("Upload-Complete: ?1 with the whole body", "a", true)
            .header("upload-length", "5")
            .body("hello")
            .status(200)
            .expect("upload-complete", "?1")
            .expect("upload-draft-interop-version", "8"),
        head("the upload is complete", "a")
            .status(204)
            .expect("upload-complete", "?1")
            .expect("upload-offset", "5")
            .expect("upload-length", "5"),
        Case::new("the file", "GET", "{a}").tus().status(200).expect_body(b"hello".to_vec()),
        create("?1 without Upload-Length: the length is the body's", "b", true)
            .body("hey")
            .status(200)
            .expect("upload-complete", "?1"),
        head("its length", "b").status(204).expect("upload-length", "3"),
        create("?1 with an empty body", "c", true).status(200).expect("upload-complete", "?1"),
        head("an empty upload", "c").status(204).expect("upload-offset", "0").expect("upload-complete", "?1"),
        create("?1 with an Upload-Length other than the body's", "x", true)
            .header("upload-length", "10")
            .body("hello")
            .status(400)
            .json("type", INCONSISTENT_LENGTH)
            .code("inconsistent_length"),
        create("?1 over max-size", "y", true).body(vec![b'x'; 4097]).status(413),
    ])
    .await;
}

#[tokio::test]
async fn lengths() {
    let (_store, mut s) = session();
    s.run(&[
        create("?0 with Upload-Length and no body", "a", false).header("upload-length", "11").status(201),
        append("?1 before all of the length is in", "a", 0, true, b"hello")
            .status(400)
            .json("type", INCONSISTENT_LENGTH)
            .code("inconsistent_length"),
        create("?0 without a length", "b", false).body("hel").status(201).expect("upload-offset", "3"),
        head("no length known", "b").status(204).absent("upload-length").expect("upload-complete", "?0"),
        append("the length on an append", "b", 3, false, b"lo")
            .header("upload-length", "6")
            .status(204)
            .expect("upload-offset", "5"),
        head("the length is known", "b").status(204).expect("upload-length", "6"),
        append("past the length", "b", 5, false, b"!!").status(413),
        create("an Upload-Length over max-size", "c", false).header("upload-length", "4097").status(413),
    ])
    .await;
}

/// Only `Upload-Complete: ?1` completes an upload: an offset that reaches the length does not
/// (draft -11 §4.1: the client may still send an empty `?1` append).
#[tokio::test]

async fn reaching_the_length_does_not_complete() {
    let (_store, mut s) = session();
    s.run(&[
        create("?0 with Upload-Length 5 and all 5 bytes", "a", false)
            .header("upload-length", "5")
            .body("hello")
            .status(201)
            .expect("upload-complete", "?0")
            .expect("upload-offset", "5"),
        head("not complete yet", "a").status(204).expect("upload-complete", "?0"),
        append("an empty ?1 append completes it", "a", 5, true, b"").status(200).expect("upload-complete", "?1"),
    ])
    .await;
}

#[tokio::test]
async fn cancellation_and_versions() {
    let (_store, mut s) = session();
    s.run(&[
        create("an upload", "a", false).status(201),
        Case::new("DELETE", "DELETE", "{a}").draft().status(204),
        head("gone", "a").status(404),
        Case::new("an unknown upload", "HEAD", format!("/files/tus/{UNKNOWN_ID}")).draft().status(404),
        Case::new("interop version 5", "POST", TUS)
            .header("upload-draft-interop-version", "5")
            .header("upload-complete", "?0")
            .status(400)
            .code("unsupported_interop_version"),
        Case::new("interop version 9", "POST", TUS)
            .header("upload-draft-interop-version", "9")
            .header("upload-complete", "?0")
            .status(400)
            .code("unsupported_interop_version"),
        Case::new("an interop version that is not a number", "POST", TUS)
            .header("upload-draft-interop-version", "eight")
            .header("upload-complete", "?0")
            .status(400),
        create("creation without Upload-Complete", "x", false)
            .without("upload-complete")
            .status(400)
            .code("missing_upload_complete"),
        create("an Upload-Complete that is not a boolean", "x", false)
            .header("upload-complete", "yes")
            .status(400)
            .code("invalid_header"),
        create("interop version 6: the limit is `expires`", "v6", false)
            .header("upload-draft-interop-version", "6")
            .status(201)
            .expect("upload-draft-interop-version", "6")
            .expect("upload-offset", "0")
            .starts_with("upload-limit", format!("{LIMIT}, expires=")),
        Case::new("HEAD with interop version 7", "HEAD", "{v6}")
            .header("upload-draft-interop-version", "7")
            .status(204)
            .expect("upload-draft-interop-version", "7"),
    ])
    .await;
}
