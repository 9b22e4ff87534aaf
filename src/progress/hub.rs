use super::{Progress, ProgressState};
use crate::error::Problem;
use http::StatusCode;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::watch;

/// The identifier a client gives an upload so it can follow its progress: 8 to 64 characters
/// from `[A-Za-z0-9_-]`, chosen by the client before it sends (a browser subscribes first, then
/// uploads with `?progress_id=`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProgressId(String);

impl ProgressId {
    /// Validates a client's progress id.
    pub fn parse(s: &str) -> Result<Self, Problem> {
        let ok = (8..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_progress_id",
                "a progress id is 8 to 64 characters from A-Z, a-z, 0-9, '-' and '_'",
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Publishes the progress of uploads in flight to subscribers (the SSE endpoint), across
/// requests of one process. Cloning shares the hub.
///
/// Entries are created by whichever comes first, subscriber or upload, and are dropped a while
/// after the upload ended ([`ProgressHub::linger`], 60 s) or after a subscriber waited for an
/// upload that never came ([`ProgressHub::max_wait`], 10 min). Memory is bounded whatever
/// clients do: at most [`ProgressHub::capacity`] entries are kept, one client may hold at most
/// [`ProgressHub::waiting_per_client`] entries that wait for an upload, and a refused request
/// allocates nothing. A full hub never fails an upload: the upload goes on untracked.
///
/// Each entry knows the owner of its upload once the upload has said (see
/// [`hooks`](crate::hooks)), so that the progress endpoint shows it to nobody else.
#[derive(Clone, Debug)]
pub struct ProgressHub {
    inner: Arc<Mutex<HubInner>>,
    config: HubConfig,
}

#[derive(Clone, Copy, Debug)]
struct HubConfig {
    linger: Duration,
    max_wait: Duration,
    capacity: usize,
    waiting_per_client: usize,
}

#[derive(Debug, Default)]
struct HubInner {
    channels: HashMap<ProgressId, Channel>,
    last_prune: Option<Instant>,
}

#[derive(Debug)]
struct Channel {
    tx: watch::Sender<Progress>,
    touched: Instant,
    publishing: bool,
    /// The owner of the upload, once known: `Some(None)` for an upload without owner.
    owner: Option<Option<String>>,
    /// The client whose subscription created the entry, while no upload has claimed it.
    waiting_for: Option<Arc<str>>,
}

impl Channel {
    fn new(tx: watch::Sender<Progress>, publishing: bool, waiting_for: Option<Arc<str>>) -> Self {
        Self { tx, touched: Instant::now(), publishing, owner: None, waiting_for }
    }
}

impl Default for ProgressHub {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            config: HubConfig {
                linger: Duration::from_secs(60),
                max_wait: Duration::from_secs(600),
                capacity: 10_000,
                waiting_per_client: 32,
            },
        }
    }
}

impl ProgressHub {
    /// A hub with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a finished upload's last state stays available (default 60 s).
    pub fn linger(mut self, d: Duration) -> Self {
        self.config.linger = d;
        self
    }

    /// How long a subscription waits for its upload to start (default 10 min).
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.config.max_wait = d;
        self
    }

    /// The most uploads tracked at once (default 10 000).
    pub fn capacity(mut self, n: usize) -> Self {
        self.config.capacity = n;
        self
    }

    /// The most entries one client's subscriptions may hold while they wait for their uploads to
    /// start (default 32); more are refused with `429 too_many_subscriptions`.
    pub fn waiting_per_client(mut self, n: usize) -> Self {
        self.config.waiting_per_client = n;
        self
    }

    /// The longest a subscriber may wait for an upload to start.
    pub fn wait_limit(&self) -> Duration {
        self.config.max_wait
    }

    /// Follows an upload, before or after it starts.
    pub fn subscribe(&self, id: &ProgressId) -> Result<watch::Receiver<Progress>, Problem> {
        self.subscribe_as(id, None)
    }

    /// Follows an upload for `client` (a rate-limit key): a client may make at most
    /// [`waiting_per_client`](Self::waiting_per_client) entries wait for uploads.
    pub fn subscribe_as(&self, id: &ProgressId, client: Option<&str>) -> Result<watch::Receiver<Progress>, Problem> {
        let mut inner = self.inner.lock().expect("hub lock poisoned");
        inner.prune(&self.config, Instant::now());
        if let Some(ch) = inner.channels.get_mut(id) {
            ch.touched = Instant::now();
            return Ok(ch.tx.subscribe());
        }
        if let Some(client) = client {
            let waiting = inner.channels.values().filter(|ch| ch.waiting_for.as_deref() == Some(client)).count();
            if waiting >= self.config.waiting_per_client {
                return Err(Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_subscriptions",
                    format!("a client may wait for at most {} uploads at once", self.config.waiting_per_client),
                )
                .with("limit", self.config.waiting_per_client));
            }
        }
        inner.check_capacity(&self.config)?;
        let (tx, rx) = watch::channel(Progress::waiting());
        inner.channels.insert(id.clone(), Channel::new(tx, false, client.map(Arc::from)));
        Ok(rx)
    }

    /// Starts publishing an upload's progress. An id already publishing is refused: a second
    /// upload must not overwrite the progress others are following. `None` when the hub is
    /// full: the upload goes on untracked.
    pub(crate) fn publish(&self, id: &ProgressId) -> Result<Option<watch::Sender<Progress>>, Problem> {
        self.claim(id, true)
    }

    /// Publishes an upload that continues over several requests (a resumable upload, keyed by
    /// its id): each request takes the entry over from the one before. `None` when the hub is
    /// full.
    pub(crate) fn take_over(&self, id: &ProgressId) -> Option<watch::Sender<Progress>> {
        self.claim(id, false).ok().flatten()
    }

    fn claim(&self, id: &ProgressId, exclusive: bool) -> Result<Option<watch::Sender<Progress>>, Problem> {
        let mut inner = self.inner.lock().expect("hub lock poisoned");
        inner.prune(&self.config, Instant::now());
        if let Some(ch) = inner.channels.get_mut(id) {
            if exclusive && ch.publishing && !ch.tx.borrow().is_final() {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "progress_id_in_use",
                    "another upload in flight uses this progress id",
                ));
            }
            ch.publishing = true;
            ch.waiting_for = None;
            ch.touched = Instant::now();
            return Ok(Some(ch.tx.clone()));
        }
        if inner.check_capacity(&self.config).is_err() {
            return Ok(None);
        }
        let (tx, _) = watch::channel(Progress::waiting());
        inner.channels.insert(id.clone(), Channel::new(tx.clone(), true, None));
        Ok(Some(tx))
    }

    /// Records the owner of the upload publishing under `id` (see [`owner`](Self::owner)).
    pub(crate) fn set_owner(&self, id: &ProgressId, owner: Option<String>) {
        if let Some(ch) = self.inner.lock().expect("hub lock poisoned").channels.get_mut(id) {
            ch.owner = Some(owner);
        }
    }

    /// The owner of the upload publishing under `id`: `None` while no upload has said (or there
    /// is no such entry), `Some(None)` for an upload without owner.
    pub fn owner(&self, id: &ProgressId) -> Option<Option<String>> {
        self.inner.lock().expect("hub lock poisoned").channels.get(id).and_then(|ch| ch.owner.clone())
    }

    /// Ends one request's turn at publishing a resumable upload: the entry stays while someone
    /// follows it, and is dropped like any idle entry otherwise.
    pub(crate) fn release(&self, id: &ProgressId) {
        if let Some(ch) = self.inner.lock().expect("hub lock poisoned").channels.get_mut(id) {
            ch.publishing = false;
            ch.touched = Instant::now();
        }
    }

    /// Ends the progress of an upload refused before it was tracked: subscribers waiting for it
    /// get `failed` with `code`. An upload being tracked, or already ended, is left as it is. A
    /// refusal allocates nothing: with no subscriber waiting, there is nobody to tell.
    pub(crate) fn report_refusal(&self, id: &ProgressId, code: &'static str) {
        let failed = Progress { state: ProgressState::Failed, code: Some(code), ..Progress::waiting() };
        let mut inner = self.inner.lock().expect("hub lock poisoned");
        if let Some(ch) = inner.channels.get_mut(id) {
            if !ch.publishing && !ch.tx.borrow().is_final() {
                ch.tx.send_replace(failed);
                ch.waiting_for = None;
                ch.touched = Instant::now();
            }
        }
    }

    /// Marks an upload's entry as just used (its final state then lingers from now).
    pub(crate) fn touch(&self, id: &ProgressId) {
        if let Some(ch) = self.inner.lock().expect("hub lock poisoned").channels.get_mut(id) {
            ch.touched = Instant::now();
        }
    }

    /// How many uploads are tracked.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("hub lock poisoned").channels.len()
    }

    /// Whether no upload is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl HubInner {
    fn check_capacity(&mut self, config: &HubConfig) -> Result<(), Problem> {
        if self.channels.len() >= config.capacity {
            self.last_prune = None;
            self.prune(config, Instant::now());
        }
        if self.channels.len() >= config.capacity {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "progress_capacity",
                "too many uploads are being tracked; try again later",
            ));
        }
        Ok(())
    }

    fn prune(&mut self, config: &HubConfig, now: Instant) {
        if self.last_prune.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return;
        }
        self.last_prune = Some(now);
        self.channels.retain(|_, ch| {
            let idle = now.duration_since(ch.touched);
            let state = ch.tx.borrow().state;
            match state {
                ProgressState::Done | ProgressState::Failed => idle < config.linger,
                ProgressState::Waiting if !ch.publishing => idle < config.max_wait,
                // Uploads in flight are kept while their sender is alive.
                _ => ch.publishing || ch.tx.receiver_count() > 0,
            }
        });
    }
}
