//! Serving an app over HTTP/1.1 with a bound on what each connection buffers.
//!
//! `axum::serve` runs hyper on its defaults, and hyper's read buffer adapts to the traffic: a
//! connection that streams an upload grows it to about 400 KiB, and the chunks it hands out
//! keep their buffer alive until the store has written them. With many concurrent uploads that,
//! not the uploads' data, is most of a server's memory (100 concurrent form uploads: about
//! 1.2 MiB each on the defaults). [`serve`] is `axum::serve` for HTTP/1.1 with hyper's
//! `max_buf_size` settable ([`Serve::max_buf_size`]), which bounds both the read buffer and the
//! write buffer of every connection; pair it with
//! [`LocalDisk::with_write_buffer`](crate::storage::LocalDisk::with_write_buffer), which bounds
//! what a file holds before it is written. Smaller buffers mean more, smaller reads: the README's
//! benchmark table shows what that costs in throughput.
//!
//! Like `into_make_service_with_connect_info::<SocketAddr>()`, every request carries the
//! peer's [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), which the
//! [rate limiter](crate::rate_limit) keys on. Connections are served with `TCP_NODELAY` and
//! with upgrades (WebSockets) allowed; HTTP/2 is not offered.
//!
//! # Examples
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! # let uploads = axum::Router::new();
//! // With the router feature: `let uploads = intake::uploads_router();`
//! let app = axum::Router::new().nest("/upload", uploads);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! intake::serve::serve(listener, app)
//!     .max_buf_size(64 * 1024)
//!     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await
//! # }
//! ```

use axum::{Router, body::Body, extract::ConnectInfo};
use futures_util::future::BoxFuture;
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use std::{
    future::{Future, IntoFuture},
    io,
    pin::pin,
    sync::Arc,
    time::Duration,
};
use tokio::{net::TcpListener, sync::watch};
use tower::ServiceExt;

/// The smallest `max_buf_size` hyper accepts: its first read buffer.
pub const MIN_BUF_SIZE: usize = 8192;

/// Serves `app` on `listener` until the graceful-shutdown signal, if any, resolves (see the
/// [module docs](self)).
pub fn serve(listener: TcpListener, app: Router) -> Serve {
    Serve { listener, app, max_buf_size: None, shutdown: None }
}

/// A server being configured; `.await` it to run it. See [`serve`].
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve {
    listener: TcpListener,
    app: Router,
    max_buf_size: Option<usize>,
    shutdown: Option<BoxFuture<'static, ()>>,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve").field("listener", &self.listener).field("max_buf_size", &self.max_buf_size).finish()
    }
}

impl Serve {
    /// The most each connection buffers for reading, and for writing (hyper's `max_buf_size`;
    /// its default is about 400 KiB). A request body then arrives in chunks of about this size
    /// at most (a read fills whatever room the buffer has, which can be up to twice it).
    ///
    /// # Panics
    /// When `bytes` is below [`MIN_BUF_SIZE`], which hyper refuses.
    pub fn max_buf_size(mut self, bytes: usize) -> Self {
        assert!(bytes >= MIN_BUF_SIZE, "max_buf_size must be at least {MIN_BUF_SIZE} bytes, not {bytes}");
        self.max_buf_size = Some(bytes);
        self
    }

    /// Stops accepting connections once `signal` resolves, lets the requests in flight finish,
    /// then resolves (as `axum::serve(…).with_graceful_shutdown(…)` does).
    pub fn with_graceful_shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    async fn run(self) -> io::Result<()> {
        let Serve { listener, app, max_buf_size, shutdown } = self;
        let mut builder = http1::Builder::new();
        if let Some(max) = max_buf_size {
            builder.max_buf_size(max);
        }
        let builder = Arc::new(builder);
        // Dropping `stop` tells every connection to finish gracefully; `done` closes once the
        // last connection has dropped its receiver.
        let (stop, stopped) = watch::channel(());
        let (done, running) = watch::channel(());
        let mut shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        pause_after(&e).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let service = app.clone().map_request(move |req: http::Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
            let (builder, mut stopped, running) = (builder.clone(), stopped.clone(), running.clone());
            tokio::spawn(async move {
                let mut conn =
                    pin!(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)).with_upgrades());
                let outcome = tokio::select! {
                    outcome = conn.as_mut() => outcome,
                    _ = stopped.changed() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = outcome {
                    tracing::trace!(%peer, error = %e, "connection ended with an error");
                }
                drop(running);
            });
        }
        drop(listener);
        drop(stop);
        drop(running);
        done.closed().await;
        Ok(())
    }
}

/// After a failed accept: at once for errors of one connection, else (out of file descriptors,
/// say) after a second, so that the loop does not spin.
async fn pause_after(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        tracing::error!(error = %e, "accepting a connection failed");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = BoxFuture<'static, io::Result<()>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
