use crate::{error::Problem, id::UploadId};
use async_trait::async_trait;
use http::StatusCode;
use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::{Notify, watch};

/// The right to write to one upload, held by one request until dropped.
///
/// A lock can be *asked to let go*: when a new request for the upload arrives while this one
/// holds it (typically because the client lost its connection and retried, and the old request
/// has not noticed yet), the locker asks the holder to stop. The holder decides: a request that
/// is still receiving bytes keeps going, one that has stalled ends and drops its lock.
pub struct UploadLock {
    asked: watch::Receiver<bool>,
    _held: Box<dyn Send + Sync>,
}

impl UploadLock {
    /// A lock that is released when `held` is dropped; `asked` turns `true` when another request
    /// wants it.
    pub fn new(asked: watch::Receiver<bool>, held: impl Send + Sync + 'static) -> Self {
        Self { asked, _held: Box::new(held) }
    }

    /// Whether another request has asked for this lock.
    pub fn is_asked(&self) -> bool {
        *self.asked.borrow()
    }

    /// Resolves once another request asks for this lock (never, if none does).
    pub async fn asked(&self) {
        wait_until_asked(self.asked.clone()).await
    }

    /// A handle that resolves like [`asked`](Self::asked) without borrowing the lock.
    pub(crate) fn asked_handle(&self) -> watch::Receiver<bool> {
        self.asked.clone()
    }
}

impl fmt::Debug for UploadLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadLock").field("asked", &self.is_asked()).finish()
    }
}

/// Resolves once `asked` turns `true` (never, if its lock goes away unasked).
pub(crate) async fn wait_until_asked(mut asked: watch::Receiver<bool>) {
    if asked.wait_for(|asked| *asked).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Why a lock was not granted.
#[derive(Debug)]
#[non_exhaustive]
pub enum LockError {
    /// Another request kept the lock for longer than the locker waits.
    Locked(UploadId),
    /// The backend failed.
    Backend(crate::error::BoxError),
}

impl LockError {
    /// The problem a client should see: `423 upload_locked`.
    pub fn to_problem(&self) -> Problem {
        match self {
            LockError::Locked(id) => {
                Problem::new(StatusCode::LOCKED, "upload_locked", format!("upload {id} is being written by another request"))
            }
            LockError::Backend(e) => {
                tracing::error!(error = %e, "upload locker failed");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "state_error", "the upload locker failed")
            }
        }
    }
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Locked(id) => write!(f, "upload {id} is locked"),
            LockError::Backend(e) => write!(f, "locker failed: {e}"),
        }
    }
}

impl std::error::Error for LockError {}

/// Grants one request at a time the right to write to an upload. See [`UploadLock`].
#[async_trait]
pub trait Locker: Send + Sync + fmt::Debug + 'static {
    /// Takes the upload's lock. If another request holds it, asks that request to let go and
    /// waits a while for it to, then fails with [`LockError::Locked`].
    async fn lock(&self, id: &UploadId) -> Result<UploadLock, LockError>;

    /// Waits until no request holds the upload, or `wait` has passed, without asking the holder
    /// to let go: an offset read right after a broken request then sees that request's last
    /// bytes. The default returns at once.
    async fn settle(&self, id: &UploadId, wait: Duration) {
        let _ = (id, wait);
    }
}

/// Locks within one process (the default).
#[derive(Clone, Debug)]
pub struct MemoryLocker {
    held: Arc<Mutex<HashMap<UploadId, Holder>>>,
    patience: Duration,
}

#[derive(Debug)]
struct Holder {
    generation: u64,
    ask: watch::Sender<bool>,
    released: Arc<Notify>,
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Default for MemoryLocker {
    fn default() -> Self {
        Self { held: Arc::default(), patience: Duration::from_secs(5) }
    }
}

impl MemoryLocker {
    /// A locker that waits up to 5 s for a holder to let go.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a request waits for the holder to let go before `423 Locked`.
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }
}

struct Release {
    held: Arc<Mutex<HashMap<UploadId, Holder>>>,
    id: UploadId,
    generation: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.get(&self.id).is_some_and(|h| h.generation == self.generation) {
            if let Some(holder) = held.remove(&self.id) {
                holder.released.notify_waiters();
            }
        }
    }
}

#[async_trait]
impl Locker for MemoryLocker {
    async fn settle(&self, id: &UploadId, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let released = match self.held.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
                Some(holder) => holder.released.clone(),
                None => return,
            };
            let notified = released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.held.lock().unwrap_or_else(|e| e.into_inner()).contains_key(id) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    async fn lock(&self, id: &UploadId) -> Result<UploadLock, LockError> {
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            let released = {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                match held.get(id) {
                    None => {
                        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let (ask, asked) = watch::channel(false);
                        held.insert(id.clone(), Holder { generation, ask, released: Arc::new(Notify::new()) });
                        let release = Release { held: self.held.clone(), id: id.clone(), generation };
                        return Ok(UploadLock::new(asked, release));
                    }
                    Some(holder) => {
                        holder.ask.send_replace(true);
                        holder.released.clone()
                    }
                }
            };
            let notified = released.notified();
            tokio::pin!(notified);
            // Registered before checking again, so a release between the two is not missed.
            notified.as_mut().enable();
            if !self.held.lock().unwrap_or_else(|e| e.into_inner()).contains_key(id) {
                continue;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(LockError::Locked(id.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_and_a_polite_handover() {
        let locker = MemoryLocker::new().patience(Duration::from_millis(200));
        let id = UploadId::random();
        let first = locker.lock(&id).await.unwrap();
        assert!(!first.is_asked());
        // Nobody lets go: the second request is refused once its patience runs out.
        assert!(matches!(locker.lock(&id).await, Err(LockError::Locked(_))));
        assert!(first.is_asked(), "the holder was asked to let go");
        // The holder lets go when asked: the waiting request gets the lock.
        let waiter = tokio::spawn({
            let locker = locker.clone();
            let id = id.clone();
            async move { locker.lock(&id).await.map(|_| ()) }
        });
        tokio::time::timeout(Duration::from_secs(1), first.asked()).await.unwrap();
        drop(first);
        waiter.await.unwrap().unwrap();
        // Other uploads are independent.
        let _other = locker.lock(&UploadId::random()).await.unwrap();
        let _again = locker.lock(&id).await.unwrap();
    }
}
