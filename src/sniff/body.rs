use super::{ContentPolicy, Sniffed, markup::MarkupScan};
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
///
/// When the decision is to store markup as a media type (an SVG, or an "image" that starts
/// like markup), the body goes on scanning every frame it passes for active content, holding
/// no more than the one tag a frame boundary cuts, and fails with a [`BodyRejection`] (`415 active_content`,
/// `415 invalid_markup`, `413 markup_too_large`) at the frame where it finds some: the
/// handler's store sees the body fail and aborts, so nothing is kept.
pub struct SniffBody<B> {
    inner: Pin<Box<B>>,
    state: State,
    /// The active-content scan of markup stored as media, once the first bytes said so.
    scan: Option<Box<MarkupScan>>,
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
        (Self { inner: Box::pin(inner), state, scan: None }, outcome)
    }

    /// Passes `inner` through unchecked.
    pub fn unchecked(inner: B) -> Self {
        Self { inner: Box::pin(inner), state: State::Streaming, scan: None }
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
                self.scan = MarkupScan::for_type(&policy, &sniffed.content_type).map(Box::new);
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
        let polled = match &mut this.state {
            State::Replaying { held, ended } => match held.pop_front() {
                Some(frame) => Some(Ok(frame)),
                None if *ended => None,
                None => {
                    this.state = State::Streaming;
                    ready!(this.inner.as_mut().poll_frame(cx)).map(|r| r.map_err(Into::into))
                }
            },
            State::Streaming => ready!(this.inner.as_mut().poll_frame(cx)).map(|r| r.map_err(Into::into)),
            State::Failed => None,
            State::Peeking { .. } => unreachable!("decided above"),
        };
        if let Some(scan) = &mut this.scan {
            let verdict = match &polled {
                Some(Ok(frame)) => frame.data_ref().map_or(Ok(()), |data| scan.feed(data)),
                Some(Err(_)) => Ok(()),
                None => scan.finish(),
            };
            if let Err(problem) = verdict {
                tracing::info!(code = problem.code(), detail = problem.detail(), "upload refused by content policy");
                this.state = State::Failed;
                this.scan = None;
                return Poll::Ready(Some(Err(Box::new(BodyRejection(problem)))));
            }
            if scan.is_done() || polled.is_none() {
                this.scan = None;
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        // A scan may still fail the body once its input has ended.
        if self.scan.is_some() {
            return false;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        error::Problem,
        test_util::{chunked, read},
    };
    use http_body_util::BodyExt;

    fn svg(declared: &str) -> DeclaredFile {
        DeclaredFile { name: Some(declared.into()), content_type: None }
    }

    #[tokio::test]
    async fn markup_stored_as_an_image_is_scanned_to_its_end() {
        let padding = vec![b' '; 100 * 1024];
        let start: &[u8] = b"<svg xmlns=\"http://www.w3.org/2000/svg\">";
        let policy = Arc::new(ContentPolicy::default());

        // A clean SVG passes through unchanged.
        let (body, outcome) = SniffBody::checking(chunked(&[start, &padding, b"<g/></svg>"]), policy.clone(), svg("a.svg"));
        assert_eq!(read(body).await.unwrap(), [start, &padding[..], b"<g/></svg>"].concat());
        assert_eq!(outcome.get().unwrap().content_type, "image/svg+xml");

        // An event handler far past the sniffed bytes fails the body at its frame; later
        // frames are not read.
        let frames: [&[u8]; 5] = [start, &padding, b"<g onl", b"oad=\"alert(1)\"/>", b"</svg>"];
        let (mut body, _) = SniffBody::checking(chunked(&frames), policy.clone(), svg("a.svg"));
        let mut passed = Vec::new();
        let err = loop {
            match body.frame().await.expect("the body fails before it ends") {
                Ok(frame) => passed.extend_from_slice(frame.data_ref().unwrap()),
                Err(e) => break e,
            }
        };
        assert_eq!(passed, [start, &padding[..], b"<g onl"].concat(), "frames before the finding pass");
        let problem = Problem::from_body_error(err.as_ref());
        assert_eq!((problem.status().as_u16(), problem.code()), (415, "active_content"));
        assert_eq!(problem.extension("offset").unwrap(), start.len() + padding.len());
        assert!(body.frame().await.is_none(), "a failed body ends");

        // The same file sniffed as plain text is not scanned (nor is it stored as an image).
        let (body, outcome) = SniffBody::checking(chunked(&frames), policy, svg("a.txt"));
        assert_eq!(read(body).await.unwrap().len(), frames.concat().len());
        assert_eq!(outcome.get().unwrap().content_type, "text/plain");
    }

    #[tokio::test]
    async fn markup_over_the_scan_limit_fails_with_413() {
        let policy = Arc::new(ContentPolicy::default().markup_scan_limit(64 * 1024));
        let rect: &[u8] = b"<rect width=\"1\"/>";
        let rects = rect.repeat(4096);
        let (body, _) = SniffBody::checking(chunked(&[b"<svg>", &rects, b"</svg>"]), policy, svg("a.svg"));
        let problem = Problem::from_body_error(read(body).await.unwrap_err().as_ref());
        assert_eq!((problem.status().as_u16(), problem.code()), (413, "markup_too_large"));
    }
}
