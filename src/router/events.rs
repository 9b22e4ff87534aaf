//! `GET {prefix}/progress/{id}`: Server-Sent Events for an upload in flight.

use super::AppState;
use crate::{
    error::Problem,
    progress::{Progress, ProgressId, ProgressState},
};
use axum::{
    extract::{Path, State},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::stream;
use http::HeaderMap;
use std::convert::Infallible;
use tokio::{sync::watch, time::Instant};

fn event(p: &Progress) -> Event {
    let name = match p.state {
        ProgressState::Done => "done",
        ProgressState::Failed => "failed",
        ProgressState::Waiting | ProgressState::Receiving => "progress",
    };
    Event::default().event(name).id(p.received.to_string()).json_data(p).expect("progress serialises")
}

struct Subscription {
    rx: watch::Receiver<Progress>,
    /// Progress at or below this offset was already seen (`Last-Event-ID` on a reconnect).
    seen: Option<u64>,
    first: bool,
    ended: bool,
    waiting_until: Instant,
}

impl Subscription {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if self.ended {
                return None;
            }
            if !self.first {
                let wait = if self.rx.borrow().state == ProgressState::Waiting {
                    tokio::time::timeout_at(self.waiting_until, self.rx.changed()).await
                } else {
                    Ok(self.rx.changed().await)
                };
                match wait {
                    Ok(Ok(())) => {}
                    // The upload never started, or its entry was dropped: end the stream.
                    Ok(Err(_)) | Err(_) => return None,
                }
            }
            let p = self.rx.borrow_and_update().clone();
            let first = std::mem::take(&mut self.first);
            if p.is_final() {
                self.ended = true;
                return Some(event(&p));
            }
            let fresh = self.seen.is_none_or(|seen| p.received > seen);
            if fresh && (p.state == ProgressState::Receiving || first) {
                self.seen = Some(p.received);
                return Some(event(&p));
            }
        }
    }
}

pub(super) async fn events(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let subscribe = || -> Result<_, Problem> {
        let id = ProgressId::parse(&id)?;
        app.hub.subscribe(&id)
    };
    let rx = match subscribe() {
        Ok(rx) => rx,
        Err(problem) => return problem.into_response(),
    };
    let seen = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok());
    let sub = Subscription { rx, seen, first: true, ended: false, waiting_until: Instant::now() + app.hub.wait_limit() };
    let events = stream::unfold(sub, |mut sub| async move { sub.next().await.map(|e| (Ok::<_, Infallible>(e), sub)) });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
