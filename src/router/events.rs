//! `GET {prefix}/progress/{id}`: Server-Sent Events for an upload in flight.
//!
//! The authorisation hook decides who may follow an upload, with the upload's owner: that of its
//! record or catalogued file when the id is a resumable upload's or a file's, else the owner the
//! upload gave the progress hub. A subscriber who came before the upload said who owns it is
//! checked as soon as it does, and the stream ends, before any byte count, if it may not follow.

use crate::context::AppState;
use crate::{
    error::Problem,
    hooks::AccessTarget,
    id::UploadId,
    progress::{Progress, ProgressHub, ProgressId, ProgressState},
    rate_limit::ClientKey,
};
use axum::{
    extract::{ConnectInfo, Path, Request, State},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::stream;
use http::request::Parts;
use std::{convert::Infallible, net::SocketAddr};
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
    app: AppState,
    parts: Parts,
    id: ProgressId,
    /// Whether the hook allowed the upload's owner (checked once the owner is known).
    allowed: bool,
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
            if !self.allowed && p.state != ProgressState::Waiting {
                let owner = match self.app.hub.owner(&self.id) {
                    Some(owner) => owner,
                    // An upload that ended without saying whose it is has no owner.
                    None if p.is_final() => None,
                    // Wait for the upload to say whose it is before showing any count.
                    None => continue,
                };
                if authorize(&self.app, &self.parts, &self.id, owner).await.is_err() {
                    return None;
                }
                self.allowed = true;
            }
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

async fn authorize(app: &AppState, parts: &Parts, id: &ProgressId, owner: Option<String>) -> Result<(), Problem> {
    app.resumable.hooks.authorize_access(parts, owner.as_deref(), || AccessTarget::Progress(id.as_str().to_owned())).await
}

/// Runs the authorisation hook with the owner of whatever `id` names, as far as it is known now:
/// `Ok(true)` when the owner was known and allowed.
async fn check(app: &AppState, parts: &Parts, id: &ProgressId) -> Result<bool, Problem> {
    let r = &app.resumable;
    if !r.hooks.has_authorize() {
        return Ok(true);
    }
    if let Some(upload) = UploadId::parse(id.as_str()) {
        if let Some(record) = r.state.get(&upload).await.map_err(|e| e.to_problem())? {
            r.hooks.authorize_access(parts, record.owner.as_deref(), || AccessTarget::Upload(record.clone())).await?;
            return Ok(true);
        }
        if let Some(file) = r.state.get_file(&upload).await.map_err(|e| e.to_problem())? {
            r.hooks.authorize_access(parts, file.owner.as_deref(), || AccessTarget::File(file.clone())).await?;
            return Ok(true);
        }
    }
    match app.hub.owner(id) {
        Some(owner) => authorize(app, parts, id, owner).await.map(|()| true),
        None => Ok(false),
    }
}

/// Who is subscribing, for the hub's per-client bound: the rate limiter's key, else the peer.
fn client(parts: &Parts) -> Option<String> {
    match parts.extensions.get::<ClientKey>() {
        Some(key) => Some(key.0.to_string()),
        None => parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()),
    }
}

fn subscribe(hub: &ProgressHub, id: &ProgressId, parts: &Parts) -> Result<watch::Receiver<Progress>, Problem> {
    hub.subscribe_as(id, client(parts).as_deref())
}

pub(super) async fn events(State(app): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let id = match ProgressId::parse(&id) {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    let allowed = match check(&app, &parts, &id).await {
        Ok(allowed) => allowed,
        Err(problem) => return problem.into_response(),
    };
    let rx = match subscribe(&app.hub, &id, &parts) {
        Ok(rx) => rx,
        Err(problem) => return problem.into_response(),
    };
    let seen = parts.headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok());
    let waiting_until = Instant::now() + app.hub.wait_limit();
    let sub = Subscription { app, parts, id, allowed, rx, seen, first: true, ended: false, waiting_until };
    let events = stream::unfold(sub, |mut sub| async move { sub.next().await.map(|e| (Ok::<_, Infallible>(e), sub)) });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
