//! `GET {prefix}/progress/{id}`: Server-Sent Events, read raw off the wire.

use crate::common::*;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::{pin::Pin, time::Duration};

/// One Server-Sent Event.
#[derive(Clone, Debug, Default)]
pub(crate) struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

impl SseEvent {
    pub(crate) fn id(&self) -> u64 {
        self.id.as_deref().expect("every progress event has an id").parse().expect("numeric id")
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is JSON ({e}): {:?}", self.data))
    }
}

/// Parses the event stream of a response as it arrives.
pub(crate) struct SseReader {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    pub(crate) fn new(res: reqwest::Response) -> Self {
        assert_eq!(res.status(), 200);
        let ct = header(&res, "content-type").unwrap_or_default();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Self { stream: Box::pin(res.bytes_stream()), buf: String::new() }
    }

    /// The next event (comments and keep-alives skipped); `None` when the stream ends.
    pub(crate) async fn next(&mut self) -> Option<SseEvent> {
        loop {
            let normalised = self.buf.replace("\r\n", "\n");
            if normalised.len() != self.buf.len() {
                self.buf = normalised;
            }
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf[..end].to_owned();
                self.buf.drain(..end + 2);
                let mut event = SseEvent { event: "message".into(), ..Default::default() };
                let mut any = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    any = true;
                    match field {
                        "event" => event.event = value.to_owned(),
                        "id" => event.id = Some(value.to_owned()),
                        "data" => {
                            if !event.data.is_empty() {
                                event.data.push('\n');
                            }
                            event.data.push_str(value);
                        }
                        _ => {}
                    }
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buf.push_str(std::str::from_utf8(&chunk).expect("UTF-8 event stream")),
                Some(Err(e)) => panic!("event stream failed: {e}"),
                None => return None,
            }
        }
    }

    /// Events up to and including the first `done` or `failed` (or the end of the stream), within
    /// `wait`.
    async fn until_final(&mut self, wait: Duration) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let collect = async {
            while let Some(e) = self.next().await {
                let last = e.event == "done" || e.event == "failed";
                events.push(e);
                if last {
                    break;
                }
            }
        };
        if tokio::time::timeout(wait, collect).await.is_err() {
            panic!("no final event within {wait:?}; events so far: {events:?}");
        }
        events
    }
}

async fn subscribe(server: &TestServer, id: &str, last_event_id: Option<u64>) -> SseReader {
    let mut req = server.client.get(server.url(&format!("/progress/{id}")));
    if let Some(n) = last_event_id {
        req = req.header("last-event-id", n.to_string());
    }
    SseReader::new(bounded("subscribe", req.send()).await.expect("subscribe"))
}

/// A body of `chunks` pieces of `size` bytes of text, one every `pause`.
fn slow_body(chunks: usize, size: usize, pause: Duration) -> reqwest::Body {
    let stream = futures_util::stream::unfold(0usize, move |i| async move {
        if i == chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        let piece = Bytes::from(vec![b'a' + (i % 26) as u8; size]);
        Some((Ok::<_, std::io::Error>(piece), i + 1))
    });
    reqwest::Body::wrap_stream(stream)
}

#[tokio::test]
async fn a_subscriber_follows_a_slow_upload_to_the_end() {
    let server = TestServer::memory(|u| u).await;
    let pid = "progress-test-0001";
    let mut first = subscribe(&server, pid, None).await;

    const CHUNKS: usize = 16;
    const SIZE: usize = 2048;
    let upload = {
        let client = server.client.clone();
        let url = server.url(&format!("/raw?name=slow.txt&progress_id={pid}"));
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "text/plain")
                .body(slow_body(CHUNKS, SIZE, Duration::from_millis(80)))
                .send()
                .await
                .expect("upload")
        })
    };

    // Follow the first subscriber; once it has seen real progress, a second one reconnects with
    // that event id as Last-Event-ID.
    let mut events = Vec::new();
    let mut second: Option<(u64, tokio::task::JoinHandle<Vec<SseEvent>>)> = None;
    let follow = async {
        while let Some(e) = first.next().await {
            let is_final = e.event == "done" || e.event == "failed";
            if second.is_none() && e.event == "progress" && e.id() > 0 {
                let n = e.id();
                let mut reader = subscribe(&server, pid, Some(n)).await;
                second = Some((n, tokio::spawn(async move { reader.until_final(Duration::from_secs(30)).await })));
            }
            events.push(e);
            if is_final {
                break;
            }
        }
    };
    bounded("the first subscriber's events", follow).await;

    let res = bounded("upload response", upload).await.unwrap();
    let json = assert_created(res).await;
    let total = (CHUNKS * SIZE) as u64;
    assert_eq!(json["files"][0]["size"], total);
    assert_eq!(json["progress_id"], pid);

    let (last, progress) = events.split_last().expect("events");
    assert_eq!(last.event, "done", "the stream ends with done: {events:?}");
    let done = last.json();
    assert_eq!(done["state"], "done");
    assert_eq!(done["received"], total);
    assert_eq!(last.id(), total);
    assert!(progress.iter().all(|e| e.event == "progress"), "{events:?}");
    let ids: Vec<u64> = progress.iter().map(SseEvent::id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    assert!(ids.iter().any(|&id| id > 0 && id < total), "progress was seen mid-upload: {ids:?}");
    for e in progress {
        let p = e.json();
        assert_eq!(p["received"], e.id(), "the id is the byte offset: {p}");
        assert!(p["state"] == "receiving" || p["state"] == "waiting", "{p}");
    }
    assert!(bounded("the end of the stream", first.next()).await.is_none(), "the stream ends after done");

    let (n, second) = second.expect("a second subscriber connected");
    let second = bounded("the second subscriber's events", second).await.unwrap();
    let (last, progress) = second.split_last().expect("events");
    assert_eq!(last.event, "done", "{second:?}");
    for e in progress {
        assert_eq!(e.event, "progress");
        assert!(e.id() > n, "after Last-Event-ID: {n}, no event with id <= {n}: {second:?}");
    }
}

#[tokio::test]
async fn a_refused_raw_upload_ends_the_stream_with_failed() {
    let server = TestServer::memory(|u| u).await;
    let pid = "progress-test-fail-raw";
    let mut sub = subscribe(&server, pid, None).await;
    let res = bounded(
        "refused upload",
        server.client.post(server.url(&format!("/raw?name=cat.png&progress_id={pid}"))).body(elf()).send(),
    )
    .await
    .unwrap();
    assert_problem(res, 415, "executable_content").await;
    let events = sub.until_final(Duration::from_secs(5)).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "failed", "{events:?}");
    assert_eq!(last.json()["code"], "executable_content");
    assert_eq!(last.json()["state"], "failed");
}

#[tokio::test]
async fn a_refused_form_upload_ends_the_stream_with_failed() {
    let server = TestServer::memory(|u| u).await;
    let pid = "progress-test-fail-form";
    let mut sub = subscribe(&server, pid, None).await;
    let body = Multipart::new().file("f", "cat.png", "image/png", &elf()).finish();
    let res = bounded(
        "refused upload",
        server
            .client
            .post(server.url(&format!("/form?progress_id={pid}")))
            .header("content-type", Multipart::content_type())
            .body(body)
            .send(),
    )
    .await
    .unwrap();
    assert_problem(res, 415, "executable_content").await;
    let events = sub.until_final(Duration::from_secs(10)).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "failed", "{events:?}");
    assert_eq!(last.json()["code"], "executable_content");
    assert_eq!(last.json()["state"], "failed");
    assert!(events[..events.len() - 1].iter().all(|e| e.event == "progress"));
}

#[tokio::test]
async fn a_raw_upload_with_a_wrong_digest_ends_the_stream_with_failed() {
    let server = TestServer::memory(|u| u).await;
    let pid = "progress-test-digest";
    let mut sub = subscribe(&server, pid, None).await;
    let res = bounded(
        "upload",
        server
            .client
            .post(server.url(&format!("/raw?name=a.txt&progress_id={pid}")))
            .header("content-digest", content_digest(b"something else"))
            .body("the real content")
            .send(),
    )
    .await
    .unwrap();
    assert_problem(res, 400, "digest_mismatch").await;
    let events = sub.until_final(Duration::from_secs(10)).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "failed", "{events:?}");
    assert_eq!(last.json()["code"], "digest_mismatch");
}

#[tokio::test]
async fn a_late_subscriber_gets_the_final_state() {
    let server = TestServer::memory(|u| u).await;
    let pid = "progress-test-late";
    let res = bounded(
        "upload",
        server.client.post(server.url(&format!("/raw?name=a.txt&progress_id={pid}"))).body("0123456789").send(),
    )
    .await
    .unwrap();
    assert_created(res).await;
    let mut sub = subscribe(&server, pid, None).await;
    let events = sub.until_final(Duration::from_secs(10)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event, "done");
    assert_eq!(events[0].id(), 10);
}

#[tokio::test]
async fn invalid_progress_ids_are_400() {
    let server = TestServer::memory(|u| u).await;
    for bad in ["short", "has%20space-123", "..%2F..%2Fetc%2Fpasswd", &"x".repeat(65)] {
        let res = bounded("subscribe", server.client.get(server.url(&format!("/progress/{bad}"))).send()).await.unwrap();
        assert_problem(res, 400, "invalid_progress_id").await;
    }
    // An upload naming an invalid id is refused too.
    let res =
        bounded("upload", server.client.post(server.url("/raw?name=a.txt&progress_id=bad!id")).body("x").send()).await.unwrap();
    assert_problem(res, 400, "invalid_progress_id").await;
}

#[tokio::test]
async fn refused_requests_allocate_no_progress_entry() {
    // Requests the rate limiter refuses must not fill the hub (they did: one entry per 429).
    let hub = intake::progress::ProgressHub::new();
    let server = TestServer::memory({
        let hub = hub.clone();
        move |u| u.progress_hub(hub).rate_limit(intake::rate_limit::RateLimitLayer::per_second(1).burst(1))
    })
    .await;
    let mut refused = 0;
    for n in 0..40 {
        let url = server.url(&format!("/raw?name=a.txt&progress_id=refused-{n:04}"));
        let res = bounded("raw upload", server.client.post(url).body("x").send()).await.unwrap();
        refused += usize::from(res.status() == 429);
    }
    assert!(refused >= 35, "the rate limiter refused most requests ({refused})");
    assert!(hub.len() <= 40 - refused, "{} entries for {} accepted uploads", hub.len(), 40 - refused);
}

#[tokio::test]
async fn a_full_hub_does_not_fail_uploads() {
    let hub = intake::progress::ProgressHub::new().capacity(2);
    let server = TestServer::memory({
        let hub = hub.clone();
        move |u| u.progress_hub(hub)
    })
    .await;
    // Two subscribers waiting for uploads fill the hub.
    let mut waiting = Vec::new();
    for id in ["waiting-0001", "waiting-0002"] {
        let res = bounded("subscribe", server.client.get(server.url(&format!("/progress/{id}"))).send()).await.unwrap();
        assert_eq!(res.status(), 200);
        waiting.push(res);
    }
    assert_eq!(hub.len(), 2);
    let res = bounded("upload", server.client.post(server.url("/raw?name=a.txt&progress_id=another-upload")).body("x").send())
        .await
        .unwrap();
    assert_created(res).await;
}

#[tokio::test]
async fn one_client_cannot_keep_the_hub_waiting() {
    let hub = intake::progress::ProgressHub::new().waiting_per_client(3);
    let server = TestServer::memory({
        let hub = hub.clone();
        move |u| u.progress_hub(hub)
    })
    .await;
    let mut held = Vec::new();
    for n in 0..3 {
        let res = bounded("subscribe", server.client.get(server.url(&format!("/progress/wait-{n:04}"))).send()).await.unwrap();
        assert_eq!(res.status(), 200);
        held.push(res);
    }
    let res = bounded("subscribe", server.client.get(server.url("/progress/wait-0004")).send()).await.unwrap();
    assert_problem(res, 429, "too_many_subscriptions").await;
    // Following an upload that exists is not waiting: allowed.
    let res = bounded("subscribe", server.client.get(server.url("/progress/wait-0001")).send()).await.unwrap();
    assert_eq!(res.status(), 200);
}
