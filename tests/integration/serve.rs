//! `intake::serve`: the upload router served with bounded connection buffers, over real TCP.

use crate::common::{NET_TIMEOUT, client};
use axum::{Router, body::Body, routing::post};
use futures_util::StreamExt;
use intake::{Uploads, storage::LocalDisk};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{net::TcpListener, sync::oneshot};

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A body of `n` chunks of 64 KiB, sent as fast as the connection takes them.
fn body(n: usize) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures_util::stream::iter((0..n).map(|i| Ok::<_, std::io::Error>(vec![i as u8; 64 * 1024]))))
}

#[tokio::test]
async fn a_bounded_buffer_bounds_every_chunk_a_handler_gets() {
    // (max_buf_size, the largest chunk allowed)
    for max in [8 * 1024, 16 * 1024, 64 * 1024] {
        let largest = Arc::new(AtomicUsize::new(0));
        let seen = largest.clone();
        let app = Router::new().route(
            "/",
            post(move |body: Body| async move {
                let mut stream = body.into_data_stream();
                let mut total = 0;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.expect("the body arrives");
                    seen.fetch_max(chunk.len(), Ordering::Relaxed);
                    total += chunk.len();
                }
                total.to_string()
            }),
        );
        let (listener, addr) = listener().await;
        let server = tokio::spawn(intake::serve::serve(listener, app).max_buf_size(max).into_future());
        let res = tokio::time::timeout(NET_TIMEOUT, client().post(format!("http://{addr}/")).body(body(64)).send())
            .await
            .expect("in time")
            .expect("sent");
        assert_eq!(res.text().await.unwrap(), (64 * 64 * 1024).to_string(), "max_buf_size {max}: all of it");
        let largest = largest.load(Ordering::Relaxed);
        // hyper reads into whatever room its buffer has, which can pass the bound by what an
        // earlier, larger allocation left: about twice it at most.
        assert!(largest > 0 && largest <= 2 * max, "max_buf_size {max}: a chunk of {largest} bytes");
        server.abort();
    }
}

#[tokio::test]
async fn the_upload_router_gets_the_client_address() {
    // The rate limiter keys on ConnectInfo<SocketAddr>, and answers 500 without it.
    let dir = tempfile::tempdir().unwrap();
    let app = Router::new().nest("/upload", Uploads::new(LocalDisk::new(dir.path())).into_router());
    let (listener, addr) = listener().await;
    let server = tokio::spawn(intake::serve::serve(listener, app).max_buf_size(16 * 1024).into_future());
    let res = client()
        .post(format!("http://{addr}/upload/raw?name=a.bin"))
        .header("content-type", "application/octet-stream")
        .body(body(8))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap_or_default());
    server.abort();
}

#[tokio::test]
async fn graceful_shutdown_lets_an_upload_in_flight_finish_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let app = Router::new().nest("/upload", Uploads::new(LocalDisk::new(dir.path())).into_router());
    let (listener, addr) = listener().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        intake::serve::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    // An upload whose body is still coming when the server is told to stop.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let upload = tokio::spawn(
        client()
            .post(format!("http://{addr}/upload/raw?name=slow.bin"))
            .header("content-type", "application/octet-stream")
            .header("content-length", 2 * 1024)
            .body(reqwest::Body::wrap_stream(tokio_stream(rx)))
            .send(),
    );
    tx.send(Ok(vec![b'a'; 1024])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!server.is_finished(), "the server waits for the upload in flight");
    tx.send(Ok(vec![b'b'; 1024])).await.unwrap();
    drop(tx);
    let res = tokio::time::timeout(NET_TIMEOUT, upload).await.expect("in time").unwrap().expect("answered");
    assert_eq!(res.status(), 201);
    tokio::time::timeout(NET_TIMEOUT, server).await.expect("the server stops").unwrap().expect("cleanly");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no new connections after the shutdown");
}

fn tokio_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
