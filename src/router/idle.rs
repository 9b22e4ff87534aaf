//! The idle timeout of request bodies: a body that sends nothing for too long fails with
//! `408 body_timeout`.
//!
//! tower-http's `RequestBodyTimeout` arms a new timer for every frame it passes on, even one that
//! was ready at once; with short requests the timer wheel keeps going empty and filling again, and
//! each refill wakes the runtime's timer driver (a system call, and a thread woken) — twice per
//! small upload. This body arms its timer only when the body has to wait for the network, and
//! after that only moves it later (which the timer wheel takes without waking anyone), so a body
//! that arrives whole costs no timer at all. The time a consumer takes between two frames (a slow
//! disk) is never counted against the client: the clock starts when the body waits.

use crate::error::{BodyRejection, BoxError, Problem};
use axum::body::Body;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::{Instant, Sleep};

/// Wraps every request body in an [`IdleTimeoutBody`] (for `ServiceBuilder::map_request`).
pub(crate) fn idle_timeout(timeout: Duration) -> impl Fn(Request<Body>) -> Request<Body> + Clone {
    move |req: Request<Body>| req.map(|body| Body::new(IdleTimeoutBody::new(body, timeout)))
}

pin_project! {
    /// A body that fails with `408 body_timeout` once it has waited for data for `timeout`.
    pub(crate) struct IdleTimeoutBody<B> {
        #[pin]
        inner: B,
        timeout: Duration,
        sleep: Option<Pin<Box<Sleep>>>,
        // The body is waiting for data, and the timer runs for this wait.
        waiting: bool,
        timed_out: bool,
    }
}

impl<B> IdleTimeoutBody<B> {
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        Self { inner, timeout, sleep: None, waiting: false, timed_out: false }
    }
}

fn timed_out() -> BoxError {
    Box::new(BodyRejection(Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "the request body stalled for longer than the server's idle timeout",
    )))
}

impl<B> http_body::Body for IdleTimeoutBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.timed_out {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = Instant::now() + *this.timeout;
                let sleep = match this.sleep {
                    Some(sleep) => {
                        if !*this.waiting {
                            sleep.as_mut().reset(deadline);
                        }
                        sleep
                    }
                    None => this.sleep.insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                *this.waiting = true;
                if sleep.as_mut().poll(cx).is_ready() {
                    *this.timed_out = true;
                    return Poll::Ready(Some(Err(timed_out())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    /// A body of the given chunks, each after the given pause.
    fn paced(chunks: Vec<(u64, &'static [u8])>) -> impl http_body::Body<Data = Bytes, Error = BoxError> {
        let stream = futures_util::stream::unfold(chunks.into_iter(), |mut chunks| async move {
            let (pause, data) = chunks.next()?;
            tokio::time::sleep(Duration::from_millis(pause)).await;
            Some((Ok::<_, BoxError>(Frame::data(Bytes::from_static(data))), chunks))
        });
        StreamBody::new(stream)
    }

    fn code(err: &BoxError) -> &'static str {
        Problem::from_body_error(err.as_ref()).code()
    }

    // Real time, with wide margins: a loaded machine must not turn a pass into a timeout.
    #[tokio::test]
    async fn stalls_time_out_and_steady_bodies_do_not() {
        // (pauses before each chunk in ms, timeout in ms, what reading it all gives)
        let cases: [(&[u64], u64, Result<usize, &str>); 4] = [
            (&[0, 0, 0], 400, Ok(3)),
            (&[50, 50, 50, 50], 400, Ok(4)),
            (&[0, 1000], 150, Err("body_timeout")),
            (&[1000], 150, Err("body_timeout")),
        ];
        for (pauses, timeout, want) in cases {
            let chunks = pauses.iter().map(|&p| (p, &b"x"[..])).collect();
            let mut body = Box::pin(IdleTimeoutBody::new(paced(chunks), Duration::from_millis(timeout)));
            let mut got = Ok(0);
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(_) => got = got.map(|n| n + 1),
                    Err(e) => {
                        got = Err(code(&e));
                        break;
                    }
                }
            }
            assert_eq!(got, want, "pauses {pauses:?}, timeout {timeout} ms");
            if got.is_err() {
                assert!(body.frame().await.is_none(), "a timed-out body ends");
            }
        }
    }

    #[tokio::test]
    async fn a_slow_consumer_is_not_counted_against_the_client() {
        let mut body = Box::pin(IdleTimeoutBody::new(paced(vec![(0, b"a"), (20, b"b"), (0, b"c")]), Duration::from_millis(300)));
        let mut n = 0;
        while let Some(frame) = body.frame().await {
            frame.expect("no timeout: the client never made the body wait 300 ms");
            n += 1;
            // The consumer takes longer than the timeout between frames.
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn a_body_ready_at_once_arms_no_timer() {
        let mut body = IdleTimeoutBody::new(http_body_util::Full::new(Bytes::from_static(b"whole")), Duration::from_secs(30));
        let collected = (&mut body).collect().await.expect("read").to_bytes();
        assert_eq!(&collected[..], b"whole");
        assert!(body.sleep.is_none(), "no timer for a body that never waited");
    }
}
