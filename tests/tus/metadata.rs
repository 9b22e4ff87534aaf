//! `Upload-Metadata` bounds: how many keys and how many bytes a creation may send.

use crate::{Case, Session, TUS, app, b64, create, head, uploads};
use intake::storage::InMemory;

fn post(name: &'static str) -> Case {
    Case::new(name, "POST", TUS).tus().header("upload-length", "10")
}

/// `n` keys without values: `k0,k1,…`.
fn keys(n: usize) -> String {
    (0..n).map(|i| format!("k{i}")).collect::<Vec<_>>().join(",")
}

/// One key whose header value is exactly `len` bytes long.
fn sized(len: usize) -> String {
    let prefix = "filename ";
    // Base64 of 3n bytes is 4n characters; pad the key to reach `len` exactly.
    let value = b64(&vec![b'a'; (len - prefix.len()) / 4 * 3]);
    let key = "k".repeat(len - prefix.len() - value.len() + "filename".len());
    format!("{key} {value}")
}

#[tokio::test]
async fn default_bounds() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    let at_limit = format!("filename {},{}", b64(b"a.txt"), keys(63));
    assert_eq!(sized(16 * 1024).len(), 16 * 1024);
    s.run(&[
        // 126 KiB: the byte bound is checked first, before anything is split or decoded.
        post("20 000 keys").header("upload-metadata", keys(20_000)).status(413).code("metadata_too_large"),
        post("65 keys").header("upload-metadata", keys(65)).status(413).code("too_many_metadata_keys").json("limit", 64),
        create("64 keys", "a", 10).header("upload-metadata", &at_limit),
        head("every key comes back", "a").status(200).expect("upload-metadata", &at_limit),
        post("one byte over 16 KiB")
            .header("upload-metadata", sized(16 * 1024 + 1))
            .status(413)
            .code("metadata_too_large")
            .json("limit", 16 * 1024),
        create("exactly 16 KiB", "b", 10).header("upload-metadata", sized(16 * 1024)),
        post("a final upload is bounded too")
            .without("upload-length")
            .header("upload-concat", "final;{a}")
            .header("upload-metadata", keys(65))
            .status(413)
            .code("too_many_metadata_keys"),
    ])
    .await;
    assert_eq!(store.pending_uploads(), 2, "refused creations leave nothing behind");
}

#[tokio::test]
async fn configured_bounds() {
    let store = InMemory::new();
    let limits = intake::tus::MetadataLimits { max_keys: 2, max_bytes: 32 };
    let mut s = Session::new(app(uploads(&store).metadata_limits(limits)));
    s.run(&[
        create("two keys", "a", 10).header("upload-metadata", keys(2)),
        post("three keys").header("upload-metadata", keys(3)).status(413).code("too_many_metadata_keys").json("limit", 2),
        create("32 bytes", "b", 10).header("upload-metadata", sized(32)),
        post("33 bytes").header("upload-metadata", sized(33)).status(413).code("metadata_too_large").json("limit", 32),
    ])
    .await;
    assert_eq!(store.pending_uploads(), 2);
}
