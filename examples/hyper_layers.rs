//! intake's layers around a plain hyper service, without axum's router.
//!
//! ```text
//! cargo run --example hyper_layers
//! curl -T photo.png -H 'content-type: image/png' 'http://127.0.0.1:3001/?name=photo.png'
//! ```
//! Every `POST`/`PUT` body is stored as one file under `./uploads-hyper` (override with
//! `INTAKE_DIR`, the address with `INTAKE_ADDR`), after passing a 64 MiB limit, a per-client
//! rate limit, content sniffing, SHA-256 hashing (checking any `Content-Digest` the client
//! sends) and progress logging.

use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use intake::{
    StoreService,
    hash::HashLayer,
    limit::BodyLimitLayer,
    progress::{Progress, ProgressLayer},
    rate_limit::RateLimitLayer,
    sniff::{ContentPolicy, SniffLayer},
    storage::LocalDisk,
};
use std::net::SocketAddr;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr =
        std::env::var("INTAKE_ADDR").ok().and_then(|a| a.parse().ok()).unwrap_or(([127, 0, 0, 1], 3001).into());
    let dir = std::env::var("INTAKE_DIR").unwrap_or_else(|_| "uploads-hyper".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("storing request bodies under {dir}/ — send them to http://{}/", listener.local_addr()?);

    // Outermost first: cheap rejections, then content decisions, then hashing and progress
    // next to storage (see the crate docs, "Layer order").
    let rate_limit = RateLimitLayer::per_second(10).burst(20);
    let service = ServiceBuilder::new()
        .layer(rate_limit)
        .layer(BodyLimitLayer::new(64 << 20))
        .layer(SniffLayer::new(ContentPolicy::default()))
        .layer(HashLayer::default())
        .layer(ProgressLayer::new().on_progress(|_id: Option<&str>, p: &Progress| {
            if p.is_final() {
                println!("upload {:?}: {} bytes", p.state, p.received);
            }
        }))
        .service(StoreService::new(LocalDisk::new(dir)).files_url("/files"));

    loop {
        let (stream, peer) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            // The rate limiter keys on the peer address, which a plain hyper server must hand it.
            let service = service.map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)).await
            {
                eprintln!("connection from {peer}: {e}");
            }
        });
    }
}
