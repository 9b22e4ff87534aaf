//! The lifecycle hooks around tus and draft uploads: pre-create, authorize, post-finish.

use crate::{Case, OFFSET_STREAM, Session, TUS, app, b64, create, create_with, head, patch, sha256_hex, uploads};
use http::StatusCode;
use intake::{
    Problem,
    hooks::{AccessRequest, CreateRequest, FinishedUpload, Hooks},
    storage::InMemory,
};
use std::time::Duration;

fn tenant(headers: &http::HeaderMap) -> Option<String> {
    headers.get("x-tenant").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Uploads need a tenant, are renamed under it, and only it may touch them.
fn tenant_hooks() -> Hooks {
    Hooks::new()
        .pre_create(|mut create: CreateRequest| async move {
            let tenant = tenant(&create.headers)
                .ok_or_else(|| Problem::new(StatusCode::PAYMENT_REQUIRED, "no_tenant", "send X-Tenant"))?;
            let name = create.meta.name.take().unwrap_or_default();
            create.meta.name = Some(format!("{tenant}-{name}"));
            create.meta.extra.insert("tenant".into(), tenant.clone());
            create.owner = Some(tenant);
            Ok(create)
        })
        .authorize(|access: AccessRequest| async move {
            if access.owner == tenant(&access.headers) {
                Ok(())
            } else {
                Err(Problem::new(StatusCode::FORBIDDEN, "not_yours", "this upload belongs to another tenant"))
            }
        })
}

#[tokio::test]
async fn pre_create_rejects_and_rewrites() {
    let (store, state) = (InMemory::new(), intake::state::MemoryState::new());
    let mut s = Session::new(app(uploads(&store).state(state.clone()).hooks(tenant_hooks())));
    let meta = format!("filename {}", b64(b"report.txt"));
    s.run(&[
        create("tus creation without a tenant", "x", 5).status(402).code("no_tenant"),
        create("tus creation-with-upload without a tenant", "x", 5)
            .header("content-type", OFFSET_STREAM)
            .body("hello")
            .status(402)
            .code("no_tenant"),
        Case::new("draft creation without a tenant", "POST", TUS)
            .draft()
            .header("upload-complete", "?1")
            .body("hello")
            .status(402)
            .code("no_tenant"),
        create_with("with a tenant", "a", 5, b"hello").header("x-tenant", "acme").header("upload-metadata", &meta),
        head("the client's metadata is echoed as sent", "a")
            .header("x-tenant", "acme")
            .status(200)
            .expect("upload-metadata", &meta),
        Case::new("the file has the rewritten name", "GET", "{a}")
            .tus()
            .header("x-tenant", "acme")
            .status(200)
            .starts_with("content-disposition", "attachment; filename=\"acme-report.txt\""),
    ])
    .await;
    assert_eq!((store.pending_uploads(), store.objects()), (0, 1), "refused creations store nothing");
    let file = intake::state::StateStore::get_file(&state, &s.id("a")).await.unwrap().expect("the file is catalogued");
    assert_eq!(file.meta.name.as_deref(), Some("acme-report.txt"));
    assert_eq!(file.meta.extra.get("tenant").map(String::as_str), Some("acme"));
    assert_eq!(file.meta.extra.get("filename").map(String::as_str), Some("report.txt"), "the client's keys stay");
    assert_eq!(file.owner.as_deref(), Some("acme"), "with its owner");
}

#[tokio::test]
async fn authorize_keeps_tenants_apart() {
    let store = InMemory::new();
    let mut s = Session::new(app(uploads(&store).hooks(tenant_hooks())));
    let as_ = |case: Case, t: &str| case.header("x-tenant", t.to_owned());
    s.run(&[
        as_(create("acme's unfinished upload", "a", 11), "acme"),
        as_(patch("acme appends", "a", 0, b"hello"), "acme").status(204),
        as_(create_with("acme's finished upload", "f", 5, b"hello"), "acme"),
        as_(head("HEAD by another tenant", "a"), "evil").status(403),
        head("HEAD by no tenant", "a").status(403),
        as_(patch("PATCH by another tenant", "a", 5, b" world"), "evil").status(403).code("not_yours"),
        as_(Case::new("GET by another tenant", "GET", "{f}").tus(), "evil").status(403).code("not_yours"),
        as_(Case::new("DELETE by another tenant", "DELETE", "{a}").tus(), "evil").status(403).code("not_yours"),
        as_(Case::new("draft HEAD by another tenant", "HEAD", "{a}").draft(), "evil").status(403),
        as_(create_with("evil's partial upload", "p", 1, b"!").header("upload-concat", "partial"), "evil"),
        as_(create_with("acme's partial upload", "q", 5, b"hello").header("upload-concat", "partial"), "acme"),
        as_(
            Case::new("a final upload of another tenant's partial upload", "POST", TUS)
                .tus()
                .header("upload-concat", "final;{p} {q}"),
            "evil",
        )
        .status(403)
        .code("not_yours"),
        as_(head("acme's upload is untouched", "a"), "acme").status(200).expect("upload-offset", "5"),
        as_(Case::new("DELETE by its tenant", "DELETE", "{a}").tus(), "acme").status(204),
    ])
    .await;
}

#[tokio::test]
async fn post_finish_gets_the_file_and_its_digest() {
    let store = InMemory::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let hooks = Hooks::new().post_finish(move |finished: FinishedUpload| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(finished);
        }
    });
    let mut s = Session::new(app(uploads(&store).hooks(hooks)));
    let body = b"three appends make one file";
    s.run(&[
        create("an upload", "a", body.len() as u64).header("upload-metadata", format!("filename {}", b64(b"three.txt"))),
        patch("one", "a", 0, &body[..5]).status(204),
        patch("two", "a", 5, &body[5..20]).status(204),
    ])
    .await;
    assert!(tokio::time::timeout(Duration::from_millis(100), rx.recv()).await.is_err(), "not finished yet");
    s.run(&[patch("three", "a", 20, &body[20..]).status(204)]).await;
    let finished = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("the hook runs").expect("an upload");
    assert_eq!(finished.file.id, s.id("a"));
    assert_eq!(finished.file.size, body.len() as u64);
    assert_eq!(finished.file.meta.name.as_deref(), Some("three.txt"));
    assert_eq!(finished.file.digests.get("sha-256"), Some(sha256_hex(body).as_str()));
    assert!(finished.record.finished);
    // A draft upload completed in one request, and a final upload assembled from partial ones.
    s.run(&[
        Case::new("draft creation, complete", "POST", TUS).draft().header("upload-complete", "?1").body("draft").status(200),
        create_with("partial", "p", 3, b"abc").header("upload-concat", "partial"),
        create_with("another partial", "q", 3, b"def").header("upload-concat", "partial"),
        Case::new("final", "POST", TUS).tus().header("upload-concat", "final;{p} {q}").status(201).capture("f"),
    ])
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let f = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("the hook runs").expect("an upload");
        seen.push((f.file.size, f.file.digests.get("sha-256").map(str::to_owned)));
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (3, Some(sha256_hex(b"abc"))),
            (3, Some(sha256_hex(b"def"))),
            (5, Some(sha256_hex(b"draft"))),
            (6, Some(sha256_hex(b"abcdef")))
        ]
    );
}
