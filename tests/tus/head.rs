//! `HEAD`: the offset, length, metadata and expiry of an upload; 404 and 410.

use crate::{Case, Session, UNKNOWN_ID, app, b64, create, create_with, head, patch, uploads};
use intake::storage::InMemory;
use std::time::{Duration, SystemTime};

#[tokio::test]
async fn head_describes_an_upload() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    let meta = format!("filename {},empty", b64(b"notes.txt"));
    s.run(&[
        create_with("an upload with its first bytes and metadata", "a", 11, b"hello").header("upload-metadata", &meta),
        head("offset, length, metadata, no-store, expiry", "a")
            .status(200)
            .expect("tus-resumable", "1.0.0")
            .expect("upload-offset", "5")
            .expect("upload-length", "11")
            .absent("upload-defer-length")
            .expect("upload-metadata", &meta)
            .expect("cache-control", "no-store")
            .present("upload-expires")
            .absent("upload-concat"),
        patch("append the rest", "a", 5, b" world").status(204).expect("upload-offset", "11"),
        head("a finished upload", "a")
            .status(200)
            .expect("upload-offset", "11")
            .expect("upload-length", "11")
            .expect("cache-control", "no-store")
            .absent("upload-expires"),
        Case::new("a deferred upload", "POST", crate::TUS).tus().header("upload-defer-length", "1").status(201).capture("d"),
        head("deferred length", "d")
            .status(200)
            .expect("upload-offset", "0")
            .expect("upload-defer-length", "1")
            .absent("upload-length"),
        create("a partial upload", "p", 3).header("upload-concat", "partial"),
        head("Upload-Concat: partial", "p").status(200).expect("upload-concat", "partial"),
        Case::new("without Tus-Resumable", "HEAD", "{a}").status(412).expect("tus-version", "1.0.0"),
        Case::new("an unknown id", "HEAD", format!("/files/tus/{UNKNOWN_ID}")).tus().status(404).expect("tus-resumable", "1.0.0"),
        Case::new("an id that is not one", "HEAD", "/files/tus/not-an-id").tus().status(404),
        Case::new("an id in upper case", "HEAD", "/files/tus/0123456789ABCDEF0123456789ABCDEF").tus().status(404),
        Case::new("a traversal", "HEAD", "/files/tus/..%2F..%2Fetc%2Fpasswd").tus().status(404),
    ])
    .await;
}

#[tokio::test]
async fn upload_expires_is_an_http_date_a_day_ahead() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    s.run(&[create("an upload", "a", 10)]).await;
    let answer = s.send(&head("head", "a")).await;
    let expires = answer.header("upload-expires").expect("Upload-Expires on an unfinished upload");
    let at = httpdate::parse_http_date(expires).expect("Upload-Expires is an RFC 9110 date");
    let ahead = at.duration_since(SystemTime::now()).expect("in the future");
    assert!(ahead > Duration::from_secs(24 * 3600 - 60) && ahead <= Duration::from_secs(24 * 3600), "{expires}");
}

#[tokio::test]
async fn expired_uploads_are_gone() {
    let store = InMemory::new();
    let mut s = Session::new(app(uploads(&store).expiry(Some(Duration::ZERO)).sweep_every(None)));
    s.run(&[
        create("an upload that expires at once", "a", 10),
        head("HEAD of an expired upload", "a").status(410).expect("tus-resumable", "1.0.0"),
        patch("PATCH of an expired upload", "a", 0, b"hello").status(410).code("upload_expired"),
        Case::new("DELETE of an expired upload", "DELETE", "{a}").tus().status(410).code("upload_expired"),
    ])
    .await;
}

#[tokio::test]
async fn expiry_after_a_short_time() {
    let store = InMemory::new();
    let mut s = Session::new(app(uploads(&store).expiry(Some(Duration::from_secs(1))).sweep_every(None)));
    s.run(&[create("an upload that lives a second", "a", 10), head("still there", "a").status(200)]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    s.run(&[head("expired after its second", "a").status(410)]).await;
}
