//! `DELETE`: termination of unfinished and finished uploads.

use crate::{Case, Session, UNKNOWN_ID, app, create, create_with, head, patch, uploads};
use intake::{hooks::Hooks, storage::InMemory};
use std::time::Duration;

fn delete(name: &'static str, var: &str) -> Case {
    Case::new(name, "DELETE", format!("{{{var}}}")).tus()
}

#[tokio::test]
async fn termination() {
    let store = InMemory::new();
    let mut s = Session::memory(&store);
    s.run(&[
        create("an unfinished upload", "a", 11),
        patch("its first bytes", "a", 0, b"hello").status(204),
        delete("without Tus-Resumable", "a").without("tus-resumable").status(412).code("unsupported_version"),
        head("still there", "a").status(200).expect("upload-offset", "5"),
        delete("terminate the unfinished upload", "a").status(204).expect("tus-resumable", "1.0.0"),
        head("HEAD after termination", "a").status(404),
        patch("PATCH after termination", "a", 5, b" world").status(404).code("upload_not_found"),
        delete("DELETE after termination", "a").status(404).code("upload_not_found"),
        create_with("a finished upload", "b", 5, b"hello"),
        delete("terminate the finished upload", "b").status(204),
        Case::new("GET after termination", "GET", "{b}").tus().status(404).code("upload_not_found"),
        Case::new("an unknown upload", "DELETE", format!("/files/tus/{UNKNOWN_ID}")).tus().status(404).code("upload_not_found"),
    ])
    .await;
    assert_eq!((store.pending_uploads(), store.objects()), (0, 0), "termination removes the bytes");
}

#[tokio::test]
async fn post_terminate_hook() {
    let store = InMemory::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let hooks = Hooks::new().post_terminate(move |record: intake::state::UploadRecord| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(record);
        }
    });
    let mut s = Session::new(app(uploads(&store).hooks(hooks)));
    s.run(&[
        create("an upload", "a", 11).header("upload-metadata", format!("filename {}", crate::b64(b"a.txt"))),
        delete("terminate it", "a").status(204),
    ])
    .await;
    let record = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("the hook runs").expect("a record");
    assert_eq!(record.id, s.id("a"));
    assert_eq!(record.meta.name.as_deref(), Some("a.txt"));
    assert_eq!(record.length, Some(11));
    s.run(&[delete("a refused termination", "a").status(404)]).await;
    assert!(tokio::time::timeout(Duration::from_millis(200), rx.recv()).await.is_err(), "the hook runs once");
}
