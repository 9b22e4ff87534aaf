use super::{ContentPolicy, Sniffed};
use crate::{
    declared::DeclaredFile,
    error::{BodyRejection, BoxError},
};
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use std::{
    collections::VecDeque,
    fmt,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, ready},
};

/// A body whose first bytes are checked against a [`ContentPolicy`] before any of them are
/// passed on; then the held frames are replayed unchanged and the rest streams through.
///
/// The sniff layer decides before calling its inner service; protocol handlers wrap the inner
/// streams of a request (each file of a form) with [`SniffBody::checking`], which fails the
/// stream with a [`BodyRejection`] (415) instead.
pub struct SniffBody<B> {
    inner: Pin<Box<B>>,
    state: State,
}

enum State {
    Peeking {
        held: VecDeque<Frame<Bytes>>,
        len: usize,
        policy: Arc<ContentPolicy>,
        declared: DeclaredFile,
        outcome: Arc<OnceLock<Sniffed>>,
        ended: bool,
    },
    Replaying {
        held: VecDeque<Frame<Bytes>>,
        ended: bool,
    },
    Streaming,
    Failed,
}

impl<B> fmt::Debug for SniffBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Peeking { .. } => "peeking",
            State::Replaying { .. } => "replaying",
            State::Streaming => "streaming",
            State::Failed => "failed",
        };
        f.debug_struct("SniffBody").field("state", &state).finish()
    }
}

impl<B> SniffBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    /// Checks the first bytes of `inner` against `policy` when it is first polled. The outcome
    /// is available from the returned handle once the check passed.
    pub fn checking(inner: B, policy: Arc<ContentPolicy>, declared: DeclaredFile) -> (Self, Arc<OnceLock<Sniffed>>) {
        let outcome = Arc::new(OnceLock::new());
        let state = State::Peeking { held: VecDeque::new(), len: 0, policy, declared, outcome: outcome.clone(), ended: false };
        (Self { inner: Box::pin(inner), state }, outcome)
    }

    /// Passes `inner` through unchecked.
    pub fn unchecked(inner: B) -> Self {
        Self { inner: Box::pin(inner), state: State::Streaming }
    }

    /// Reads until the policy can decide. `Ok(Some(_))` once it accepted (also on every later
    /// call), `Ok(None)` for an unchecked body; errors are the body's own or a
    /// [`BodyRejection`].
    pub(crate) fn poll_decide(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Sniffed>, BoxError>> {
        loop {
            let State::Peeking { held, len, policy, ended, .. } = &mut self.state else {
                return Poll::Ready(Ok(None));
            };
            if *len >= policy.peek() || *ended {
                break;
            }
            match ready!(self.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let is_data = frame.is_data();
                    *len += frame.data_ref().map_or(0, |d| d.remaining());
                    held.push_back(frame);
                    // A trailer frame ends the data: decide on what we have.
                    *ended |= !is_data;
                }
                Some(Err(e)) => {
                    self.state = State::Failed;
                    return Poll::Ready(Err(e.into()));
                }
                None => *ended = true,
            }
        }
        let State::Peeking { held, policy, declared, outcome, ended, .. } = std::mem::replace(&mut self.state, State::Failed)
        else {
            unreachable!("checked above")
        };
        let mut head = Vec::with_capacity(policy.peek());
        for frame in &held {
            if let Some(data) = frame.data_ref() {
                let take = (policy.peek() - head.len()).min(data.len());
                head.extend_from_slice(&data[..take]);
            }
        }
        match policy.check(&head, &declared) {
            Ok(sniffed) => {
                let _ = outcome.set(sniffed.clone());
                self.state = State::Replaying { held, ended };
                Poll::Ready(Ok(Some(sniffed)))
            }
            Err(problem) => {
                tracing::info!(code = problem.code(), detail = problem.detail(), "upload refused by content policy");
                Poll::Ready(Err(Box::new(BodyRejection(problem))))
            }
        }
    }
}

impl<B> Body for SniffBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let State::Peeking { .. } = this.state {
            if let Err(e) = ready!(this.poll_decide(cx)) {
                return Poll::Ready(Some(Err(e)));
            }
        }
        match &mut this.state {
            State::Replaying { held, ended } => match held.pop_front() {
                Some(frame) => Poll::Ready(Some(Ok(frame))),
                None if *ended => Poll::Ready(None),
                None => {
                    this.state = State::Streaming;
                    this.inner.as_mut().poll_frame(cx).map_err(Into::into)
                }
            },
            State::Streaming => this.inner.as_mut().poll_frame(cx).map_err(Into::into),
            State::Failed => Poll::Ready(None),
            State::Peeking { .. } => unreachable!("decided above"),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Replaying { held, ended } => held.is_empty() && *ended,
            State::Failed => true,
            // Held frames, and the decision, are still to come.
            State::Peeking { .. } => false,
            State::Streaming => self.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let held: u64 = match &self.state {
            State::Peeking { held, .. } | State::Replaying { held, .. } => {
                held.iter().filter_map(|f| f.data_ref()).map(|d| d.len() as u64).sum()
            }
            _ => 0,
        };
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}
