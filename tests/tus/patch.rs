//! `PATCH`: appending at an offset, checksums, deferred lengths, the limits, sniffing.

use crate::{
    Case, ELF, OFFSET_STREAM, Session, TUS, UNKNOWN_ID, app, b64, create, create_with, head, patch, sha256_hex, uploads,
};
use intake::{
    UploadId,
    state::{Change, FileRecord, StateError, UploadRecord},
    storage::InMemory,
};
use sha1::Digest as _;

fn checksum(algorithm: &str, data: &[u8]) -> String {
    let digest = match algorithm {
        "sha1" => sha1::Sha1::digest(data).to_vec(),
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "md5" => md5::Md5::digest(data).to_vec(),
        "crc32" => crc32fast::hash(data).to_be_bytes().to_vec(),
        other => panic!("no {other}"),
    };
    format!("{algorithm} {}", b64(&digest))
}

#[tokio::test]
async fn core() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    s.run(&[
        create("an upload of 11 bytes", "a", 11),
        patch("the first bytes", "a", 0, b"hello")
            .status(204)
            .expect("upload-offset", "5")
            .expect("tus-resumable", "1.0.0")
            .present("upload-expires"),
        patch("an offset behind the upload's", "a", 3, b"xx").status(409).code("offset_mismatch").expect("upload-offset", "5"),
        patch("an offset ahead of the upload's", "a", 7, b"xx").status(409).code("offset_mismatch"),
        patch("another content type", "a", 5, b" world")
            .header("content-type", "application/octet-stream")
            .status(415)
            .code("invalid_content_type"),
        Case::new("no content type", "PATCH", "{a}").tus().header("upload-offset", "5").body(" world").status(415),
        Case::new("no Upload-Offset", "PATCH", "{a}")
            .tus()
            .header("content-type", OFFSET_STREAM)
            .body(" world")
            .status(400)
            .code("missing_offset"),
        Case::new("an Upload-Offset that is not a number", "PATCH", "{a}")
            .tus()
            .header("content-type", OFFSET_STREAM)
            .header("upload-offset", "five")
            .body(" world")
            .status(400)
            .code("invalid_header"),
        Case::new("without Tus-Resumable", "PATCH", "{a}")
            .header("content-type", OFFSET_STREAM)
            .header("upload-offset", "5")
            .body(" world")
            .status(412)
            .code("unsupported_version"),
        head("none of the refused bytes went in", "a").status(200).expect("upload-offset", "5"),
        patch("an empty append", "a", 5, b"").status(204).expect("upload-offset", "5"),
        patch("the rest", "a", 5, b" world").status(204).expect("upload-offset", "11").absent("upload-expires"),
        Case::new("the file", "GET", "{a}").tus().status(200).expect_body(b"hello world".to_vec()),
        patch("an empty append to the finished upload", "a", 11, b"").status(204).expect("upload-offset", "11"),
        patch("more bytes for the finished upload", "a", 11, b"!").status(413).code("length_exceeded"),
        patch("the finished upload from the start", "a", 0, b"hello world").status(409).code("offset_mismatch"),
        Case::new("the file is unchanged", "GET", "{a}").tus().status(200).expect_body(b"hello world".to_vec()),
        Case::new("an unknown upload", "PATCH", format!("/files/tus/{UNKNOWN_ID}"))
            .tus()
            .header("content-type", OFFSET_STREAM)
            .header("upload-offset", "0")
            .body("x")
            .status(404)
            .code("upload_not_found"),
        Case::new("the collection", "PATCH", TUS)
            .tus()
            .header("content-type", OFFSET_STREAM)
            .header("upload-offset", "0")
            .status(405),
        Case::new("POST to an upload without an override", "POST", "{a}").tus().status(405),
    ])
    .await;
}

#[tokio::test]
async fn checksums() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    let with = |name, offset, body: &[u8], header: String| patch(name, "c", offset, body).header("upload-checksum", header);
    s.run(&[
        create("an upload of 100 bytes", "c", 100),
        with("sha1", 0, b"abc", checksum("sha1", b"abc")).status(204).expect("upload-offset", "3"),
        with("sha256", 3, b"def", checksum("sha256", b"def")).status(204).expect("upload-offset", "6"),
        with("md5", 6, b"ghi", checksum("md5", b"ghi")).status(204).expect("upload-offset", "9"),
        with("crc32", 9, b"jkl", checksum("crc32", b"jkl")).status(204).expect("upload-offset", "12"),
        with("an upper-case algorithm name", 12, b"mno", checksum("sha1", b"mno").replace("sha1", "SHA1"))
            .status(204)
            .expect("upload-offset", "15"),
        with("sha1 mismatch", 15, b"pqr", checksum("sha1", b"xxx")).status(460).code("checksum_mismatch"),
        head("nothing was appended (sha1)", "c").status(200).expect("upload-offset", "15"),
        with("sha256 mismatch", 15, b"pqr", checksum("sha256", b"xxx")).status(460).code("checksum_mismatch"),
        with("md5 mismatch", 15, b"pqr", checksum("md5", b"xxx")).status(460).code("checksum_mismatch"),
        with("crc32 mismatch", 15, b"pqr", checksum("crc32", b"xxx")).status(460).code("checksum_mismatch"),
        head("nothing was appended (all)", "c").status(200).expect("upload-offset", "15"),
        with("an unsupported algorithm", 15, b"pqr", "whirlpool AAAA".into()).status(400).code("unsupported_checksum"),
        with("a digest that is not base64", 15, b"pqr", "sha1 !!!!".into()).status(400).code("invalid_checksum"),
        with("a digest of the wrong size", 15, b"pqr", format!("sha1 {}", b64(b"short"))).status(400).code("invalid_checksum"),
        with("no digest", 15, b"pqr", "sha1".into()).status(400).code("invalid_checksum"),
        head("nothing was appended (malformed)", "c").status(200).expect("upload-offset", "15"),
        with("an empty body with its checksum", 15, b"", checksum("sha1", b"")).status(204).expect("upload-offset", "15"),
        with("the same bytes, right this time", 15, b"pqr", checksum("sha256", b"pqr")).status(204).expect("upload-offset", "18"),
    ])
    .await;
}

#[tokio::test]
async fn lengths() {
    let store = InMemory::new();
    let mut s = Session::new(app(uploads(&store).max_raw_body(100)));
    let deferred = |name, var| Case::new(name, "POST", TUS).tus().header("upload-defer-length", "1").status(201).capture(var);
    s.run(&[
        create("an upload of 5 bytes", "a", 5),
        patch("more than the declared length", "a", 0, b"hello world").status(413).code("length_exceeded"),
        head("nothing past the length was stored", "a").status(200).expect("upload-offset", "0"),
        patch("a different Upload-Length", "a", 0, b"hel").header("upload-length", "6").status(400).code("length_mismatch"),
        patch("the same Upload-Length", "a", 0, b"hel").header("upload-length", "5").status(204).expect("upload-offset", "3"),
        deferred("a deferred upload", "d"),
        patch("bytes before the length is known", "d", 0, b"hello").status(204).expect("upload-offset", "5"),
        head("still deferred", "d").status(200).expect("upload-defer-length", "1").absent("upload-length"),
        patch("a length shorter than what is in", "d", 5, b"").header("upload-length", "4").status(400).code("invalid_length"),
        patch("a length over Tus-Max-Size", "d", 5, b"").header("upload-length", "101").status(413).code("body_too_large"),
        patch("the length, declared with the last byte", "d", 5, b"!")
            .header("upload-length", "6")
            .status(204)
            .expect("upload-offset", "6"),
        head("the length is known", "d")
            .status(200)
            .expect("upload-length", "6")
            .absent("upload-defer-length")
            .expect("upload-offset", "6"),
        Case::new("and the upload is finished", "GET", "{d}").tus().status(200).expect_body(b"hello!".to_vec()),
        deferred("another deferred upload", "e"),
        patch("the length alone", "e", 0, b"").header("upload-length", "3").status(204).expect("upload-offset", "0"),
        head("the length is recorded", "e").status(200).expect("upload-length", "3").absent("upload-defer-length"),
        patch("more than the declared length", "e", 0, b"abcd").status(413).code("length_exceeded"),
        deferred("a deferred upload whose bytes are all in", "g"),
        patch("its bytes", "g", 0, b"hello").status(204).expect("upload-offset", "5"),
        patch("then its length, equal to the offset", "g", 5, b"")
            .header("upload-length", "5")
            .status(204)
            .expect("upload-offset", "5"),
        Case::new("which finishes it", "GET", "{g}").tus().status(200).expect_body(b"hello".to_vec()),
        deferred("a third deferred upload", "f"),
        patch("a deferred upload is bounded by Tus-Max-Size", "f", 0, &[b'x'; 101]).status(413),
    ])
    .await;
}

#[tokio::test]
async fn final_uploads_are_not_patched() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    s.run(&[
        create_with("a partial upload", "p", 3, b"abc").header("upload-concat", "partial"),
        Case::new("the final upload", "POST", TUS).tus().header("upload-concat", "final;{p}").status(201).capture("f"),
        patch("PATCH of a final upload", "f", 3, b"").status(403).code("final_upload"),
        patch("PATCH of a final upload with bytes", "f", 3, b"def").status(403).code("final_upload"),
    ])
    .await;
}

#[tokio::test]
async fn method_override() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    let post = |name, headers: &[(&'static str, &str)]| {
        headers.iter().fold(Case::new(name, "POST", "{a}").tus(), |case, (k, v)| case.header(k, *v))
    };
    s.run(&[
        create("an upload", "a", 5),
        post(
            "POST overridden to PATCH",
            &[("x-http-method-override", "PATCH"), ("content-type", OFFSET_STREAM), ("upload-offset", "0")],
        )
        .body("hel")
        .status(204)
        .expect("upload-offset", "3"),
        head("appended", "a").status(200).expect("upload-offset", "3"),
        post("POST overridden to HEAD", &[("x-http-method-override", "HEAD")]).status(200).expect("upload-offset", "3"),
        post("POST overridden to DELETE", &[("x-http-method-override", "DELETE")]).status(204),
        head("deleted", "a").status(404),
    ])
    .await;
}

#[tokio::test]
async fn the_first_bytes_are_sniffed() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    s.run(&[
        create("an upload named cat.png", "a", ELF.len() as u64)
            .header("upload-metadata", format!("filename {}", b64(b"cat.png"))),
        patch("an executable at offset 0", "a", 0, ELF).status(415).code("executable_content"),
        head("the offset stays 0", "a").status(200).expect("upload-offset", "0"),
        create("a real cat.png", "b", png.len() as u64).header("upload-metadata", format!("filename {}", b64(b"cat.png"))),
        patch("PNG bytes at offset 0", "b", 0, png).status(204).expect("upload-offset", png.len().to_string()),
    ])
    .await;
}

/// The whole-upload SHA-256 is carried across requests, refused ones included: the file's
/// `ETag` is the digest of exactly the bytes it holds.
#[tokio::test]
async fn the_whole_upload_digest_spans_every_patch() {
    let (store, state) = (InMemory::new(), intake::state::MemoryState::new());
    let mut s = Session::new(crate::app(crate::uploads(&store).state(state.clone())));
    let body = b"hello, resumable world!";
    s.run(&[
        create("an upload", "a", body.len() as u64),
        patch("first", "a", 0, &body[..6]).status(204),
        patch("a checksum mismatch (undone)", "a", 6, b"XXXX").header("upload-checksum", checksum("sha1", b"YYYY")).status(460),
        patch("an offset mismatch", "a", 2, b"XXXX").status(409),
        patch("second", "a", 6, &body[6..15]).status(204),
        patch("too long (refused)", "a", 15, &[b'Z'; 30]).status(413),
        patch("last", "a", 15, &body[15..]).status(204).expect("upload-offset", body.len().to_string()),
        Case::new("the file and its digest", "GET", "{a}")
            .tus()
            .status(200)
            .expect("etag", format!("\"{}\"", sha256_hex(body)))
            .expect_body(body.to_vec()),
    ])
    .await;
    let file = intake::state::StateStore::get_file(&state, &s.id("a")).await.unwrap().expect("catalogued");
    assert_eq!(file.digests.get("sha-256"), Some(sha256_hex(body).as_str()));
}

/// The record keeps the upload's first bytes only while the sniffing window (8 KiB by default)
/// is open: past it, no request looks at them again, and carrying them would cost every later
/// request their encoding (16 KiB of hex) several times over.
#[tokio::test]
async fn the_record_drops_the_first_bytes_once_the_window_is_full() {
    let (store, state) = (InMemory::new(), intake::state::MemoryState::new());
    let mut s = Session::new(crate::app(crate::uploads(&store).state(state.clone())));
    let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    // The length of the kept hex, not the hex: a failure should not print 16 KiB of it.
    let head_of = |id| {
        let state = state.clone();
        async move { intake::state::StateStore::get(&state, &id).await.unwrap().expect("recorded").head.map(|h| h.len()) }
    };
    s.run(&[create("an upload", "a", body.len() as u64), patch("inside the window", "a", 0, &body[..100]).status(204)]).await;
    assert_eq!(head_of(s.id("a")).await, Some(200), "kept while the window is open");
    s.run(&[patch("across the window's end", "a", 100, &body[..9000][100..]).status(204)]).await;
    assert_eq!(head_of(s.id("a")).await, None, "dropped once the window is full");
    s.run(&[
        patch("past the window", "a", 9000, &body[9000..]).status(204).expect("upload-offset", body.len().to_string()),
        Case::new("the file", "GET", "{a}").tus().status(200).expect_body(body.clone()),
    ])
    .await;
}

/// A state store that counts the changes asked of it (each is a transaction, and with
/// `RedbState` a commit).
#[derive(Clone, Debug, Default)]
struct CountedState {
    inner: intake::state::MemoryState,
    updates: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountedState {
    fn updates(&self) -> usize {
        self.updates.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl intake::state::StateStore for CountedState {
    async fn insert(&self, record: &UploadRecord) -> Result<(), StateError> {
        self.inner.insert(record).await
    }
    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, StateError> {
        self.inner.get(id).await
    }
    async fn update(&self, id: &UploadId, change: Change<'_>) -> Result<Option<UploadRecord>, StateError> {
        self.updates.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.update(id, change).await
    }
    async fn remove(&self, id: &UploadId) -> Result<Option<UploadRecord>, StateError> {
        self.inner.remove(id).await
    }
    async fn expired(&self, now: u64, limit: usize) -> Result<Vec<UploadRecord>, StateError> {
        self.inner.expired(now, limit).await
    }
    async fn insert_file(&self, file: &FileRecord) -> Result<(), StateError> {
        self.inner.insert_file(file).await
    }
    async fn get_file(&self, id: &UploadId) -> Result<Option<FileRecord>, StateError> {
        self.inner.get_file(id).await
    }
    async fn remove_file(&self, id: &UploadId) -> Result<Option<FileRecord>, StateError> {
        self.inner.remove_file(id).await
    }
    async fn files(&self, after: Option<&UploadId>, limit: usize) -> Result<Vec<FileRecord>, StateError> {
        self.inner.files(after, limit).await
    }
    async fn finish(&self, upload: &UploadId, file: &FileRecord) -> Result<Option<UploadRecord>, StateError> {
        self.inner.finish(upload, file).await
    }
}

/// Past the sniffing window a `PATCH` of a few bytes leaves the upload's record as it was: the
/// bytes in the store are the offset, and the whole-upload hash goes on in memory (its
/// checkpoint is written every 64 MiB). Each change would be a state transaction per request.
#[tokio::test]
async fn a_patch_writes_the_record_only_when_it_changes() {
    let body: Vec<u8> = (0..40_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    for (hashing, per_patch) in [(false, 0), (true, 0)] {
        let (store, state) = (InMemory::new(), CountedState::default());
        let mut uploads = crate::uploads(&store).state(state.clone());
        if !hashing {
            uploads = uploads.algorithms([]);
        }
        let mut s = Session::new(crate::app(uploads));
        s.run(&[create("an upload", "a", body.len() as u64), patch("across the window", "a", 0, &body[..10_000]).status(204)])
            .await;
        let before = state.updates();
        s.run(&[
            patch("past the window", "a", 10_000, &body[10_000..20_000]).status(204),
            patch("again", "a", 20_000, &body[20_000..30_000]).status(204),
        ])
        .await;
        assert_eq!(state.updates() - before, 2 * per_patch, "state changes for two PATCHes, hashing: {hashing}");
        s.run(&[
            patch("the rest", "a", 30_000, &body[30_000..]).status(204).expect("upload-offset", body.len().to_string()),
            Case::new("the file", "GET", "{a}").tus().status(200).expect_body(body.clone()),
        ])
        .await;
    }
}

/// The whole-upload digest is right when the hashers carried in memory are gone (another
/// process, a restart): the next request restores the recorded checkpoint and reads back the
/// bytes after it.
#[tokio::test]
async fn the_digest_survives_losing_the_carried_hashers() {
    let (store, state) = (InMemory::new(), intake::state::MemoryState::new());
    let body: Vec<u8> = (0..30_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut first = Session::new(crate::app(crate::uploads(&store).state(state.clone())));
    first
        .run(&[
            create("an upload", "a", body.len() as u64),
            patch("first", "a", 0, &body[..10_000]).status(204),
            patch("second", "a", 10_000, &body[10_000..20_000]).status(204),
        ])
        .await;
    // A new router over the same store and state: nothing carried.
    let mut second = Session::new(crate::app(crate::uploads(&store).state(state.clone())));
    second.vars = first.vars.clone();
    second
        .run(&[
            patch("the rest, elsewhere", "a", 20_000, &body[20_000..]).status(204),
            Case::new("the file and its digest", "GET", "{a}")
                .tus()
                .status(200)
                .expect("etag", format!("\"{}\"", sha256_hex(&body)))
                .expect_body(body.clone()),
        ])
        .await;
}

/// `PATCH`es large enough to hash on a thread of their own answer before that thread is done:
/// the next request's thread waits for its hashers while the bytes stream in. The digest stays
/// right whatever follows such a `PATCH`: another one that hashes on a thread, one small enough
/// to hash inline (it waits for the hashers itself), one undone by a checksum mismatch (the
/// hashers are dropped and the next request reads back from the recorded checkpoint), and the
/// last one, which waits for the digest before it catalogues the file.
#[tokio::test]
async fn a_patch_hashed_on_a_thread_answers_before_its_hash_is_done() {
    // Tests hash on a thread past 64 KiB.
    let big = 100 * 1024;
    let body: Vec<u8> = (0..(6 * big + 3 * 1000) as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (store, state) = (InMemory::new(), intake::state::MemoryState::new());
    let mut s = Session::new(crate::app(crate::uploads(&store).state(state)));
    let mut cases = vec![create("an upload", "a", body.len() as u64)];
    let mut at = 0;
    for (n, len) in [big, big, 1000, big, 1000, big].into_iter().enumerate() {
        cases.push(patch("a PATCH", "a", at, &body[at as usize..at as usize + len]).status(204));
        at += len as u64;
        if n == 3 {
            let wrong = patch("a checksum mismatch (undone)", "a", at, &body[at as usize..at as usize + big])
                .header("upload-checksum", checksum("sha1", b"something else"))
                .status(460);
            cases.push(wrong);
        }
    }
    cases.push(patch("the last, inline", "a", at, &body[at as usize..at as usize + 1000]).status(204));
    at += 1000;
    cases.push(patch("the rest, on a thread", "a", at, &body[at as usize..]).status(204));
    cases.push(
        Case::new("the file and its digest", "GET", "{a}")
            .tus()
            .status(200)
            .expect("etag", format!("\"{}\"", sha256_hex(&body)))
            .expect_body(body.clone()),
    );
    s.run(&cases).await;
}
