//! The layers around `intake::StoreService`, served by plain hyper (no axum router), as in
//! `examples/hyper_layers.rs`.

use crate::common::*;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use intake::{
    StoreService,
    hash::HashLayer,
    limit::BodyLimitLayer,
    progress::ProgressLayer,
    rate_limit::RateLimitLayer,
    sniff::{ContentPolicy, SniffLayer},
    storage::LocalDisk,
};
use std::{net::SocketAddr, path::PathBuf};
use tempfile::TempDir;
use tokio::{net::TcpListener, task::JoinHandle};
use tower::{ServiceBuilder, ServiceExt};

struct HyperServer {
    addr: SocketAddr,
    root: PathBuf,
    _dir: TempDir,
    task: JoinHandle<()>,
}

impl Drop for HyperServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HyperServer {
    fn objects(&self) -> Vec<String> {
        list_dir(&self.root.join("objects"))
    }

    fn partials(&self) -> Vec<String> {
        list_dir(&self.root.join("partial"))
    }
}

async fn start(limit: u64) -> HyperServer {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::per_second(100).burst(100))
        .layer(BodyLimitLayer::new(limit))
        .layer(SniffLayer::new(ContentPolicy::default()))
        .layer(HashLayer::default())
        .layer(ProgressLayer::new())
        .service(StoreService::new(LocalDisk::new(&root)).files_url("/files"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else { return };
            let service = service.clone();
            tokio::spawn(async move {
                // The rate limiter keys on the peer address, which a plain hyper server must hand it.
                let service = service.map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)).await;
            });
        }
    });
    HyperServer { addr, root, _dir: dir, task }
}

#[tokio::test]
async fn a_post_stores_the_body() {
    let server = start(1024).await;
    let client = client();
    let body = b"stored by plain hyper".to_vec();
    let res = bounded(
        "upload",
        client
            .post(format!("http://{}/?name=hyper.txt", server.addr))
            .header("content-type", "text/plain")
            .body(body.clone())
            .send(),
    )
    .await
    .unwrap();
    let location = header(&res, "location");
    let ratelimit = header(&res, "ratelimit-limit");
    let json = assert_created(res).await;
    let file = &json["files"][0];
    let id = file["id"].as_str().unwrap();
    assert_eq!(file["name"], "hyper.txt");
    assert_eq!(file["size"], body.len() as u64);
    assert_eq!(file["content_type"], "text/plain");
    assert_eq!(file["sha256"], sha256_hex(&body));
    assert_eq!(file["url"], format!("/files/{id}"));
    assert_eq!(location.as_deref(), file["url"].as_str());
    assert_eq!(ratelimit.as_deref(), Some("100"), "the rate limiter saw the peer address");
    assert_eq!(server.objects(), vec![id.to_owned()], "one file per object, nothing beside it");
    assert_eq!(std::fs::read(server.root.join("objects").join(id)).unwrap(), body);

    // A correct client digest passes; PUT works as well as POST.
    let res = bounded(
        "upload with digest",
        client
            .put(format!("http://{}/?name=d.txt", server.addr))
            .header("content-digest", content_digest(b"digest me"))
            .body("digest me")
            .send(),
    )
    .await
    .unwrap();
    assert_created(res).await;
}

#[tokio::test]
async fn an_over_limit_body_gets_413() {
    let server = start(1024).await;
    let client = client();
    // Declared over the limit.
    let res = bounded("upload", client.post(format!("http://{}/?name=big.txt", server.addr)).body(vec![b'x'; 2048]).send())
        .await
        .unwrap();
    let json = assert_problem(res, 413, "body_too_large").await;
    assert_eq!(json["limit"], 1024);

    // Chunked, over the limit once streamed.
    let mut conn = RawConn::connect(server.addr).await;
    conn.send(&post_chunked("/?name=big.txt", &["Content-Type: text/plain"], &[b'y'; 2048], 256)).await;
    let res = conn.response().await.expect("a response");
    res.assert_problem(413, "body_too_large");

    // Refused content and wrong digests are refused here too.
    let res = bounded("upload", client.post(format!("http://{}/?name=cat.png", server.addr)).body(elf()).send()).await.unwrap();
    assert_problem(res, 415, "executable_content").await;
    let res = bounded(
        "upload",
        client
            .post(format!("http://{}/?name=a.txt", server.addr))
            .header("content-digest", content_digest(b"other"))
            .body("content")
            .send(),
    )
    .await
    .unwrap();
    assert_problem(res, 400, "digest_mismatch").await;

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !server.partials().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(server.partials(), Vec::<String>::new());
    assert_eq!(server.objects(), Vec::<String>::new(), "nothing was stored");
}

#[tokio::test]
async fn a_get_is_refused() {
    let server = start(1024).await;
    let res = bounded("get", client().get(format!("http://{}/", server.addr)).send()).await.unwrap();
    assert_problem(res, 405, "method_not_allowed").await;
}
