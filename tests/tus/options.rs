//! `OPTIONS`: what the server offers (tus core, and the IETF draft's discovery).

use crate::{Case, Session, TUS, UNKNOWN_ID, app, uploads};
use intake::storage::InMemory;

const ALL_EXTENSIONS: &[&str] =
    &["creation", "creation-with-upload", "creation-defer-length", "termination", "concatenation", "expiration", "checksum"];

#[tokio::test]
async fn options_advertises_version_extensions_and_limits() {
    let store = InMemory::new();
    let mut s = Session::new(app(uploads(&store).max_raw_body(4096)));
    let full = |name, path: &str| {
        Case::new(name, "OPTIONS", path)
            .status(204)
            .expect("tus-version", "1.0.0")
            .expect("tus-resumable", "1.0.0")
            .lists("tus-extension", ALL_EXTENSIONS)
            .omits("tus-extension", "concatenation-unfinished")
            .expect("tus-max-size", "4096")
            .expect("tus-checksum-algorithm", "sha1,sha256,md5,crc32")
    };
    s.run(&[
        full("without Tus-Resumable (OPTIONS must not require it)", TUS),
        full("with Tus-Resumable", TUS).tus(),
        full("with an unsupported Tus-Resumable (not checked on OPTIONS)", TUS).header("tus-resumable", "0.2.2"),
        full("the collection without a trailing slash", "/files/tus"),
        full("an upload URL", &format!("/files/tus/{UNKNOWN_ID}")),
    ])
    .await;
}

#[tokio::test]
async fn options_leaves_out_expiration_when_uploads_never_expire() {
    let store = InMemory::new();
    let mut s = Session::new(app(uploads(&store).expiry(None)));
    s.run(&[Case::new("no expiry", "OPTIONS", TUS)
        .status(204)
        .lists(
            "tus-extension",
            &["creation", "creation-with-upload", "creation-defer-length", "termination", "concatenation", "checksum"],
        )
        .omits("tus-extension", "expiration")
        .expect("tus-max-size", (1u64 << 30).to_string())])
        .await;
}

#[tokio::test]
async fn options_of_the_draft() {
    let store = InMemory::new();
    let mut s = Session::new(app(uploads(&store).max_raw_body(4096)));
    s.run(&[Case::new("draft discovery: Upload-Limit and Accept-Patch", "OPTIONS", TUS)
        .draft()
        .status(204)
        .expect("upload-limit", "min-size=0, max-size=4096")
        .expect("accept-patch", "application/partial-upload")
        .expect("upload-draft-interop-version", "8")])
        .await;
}
