//! Lifecycle hooks of resumable uploads (tus, the IETF draft, chunked): the extension points
//! users ask for most, as async callbacks.
//!
//! | hook | when | can |
//! |---|---|---|
//! | [`pre_create`](Hooks::pre_create) | before an upload is created | reject (any status, code, message), rewrite metadata, set the owner and the storage key prefix |
//! | [`authorize`](Hooks::authorize) | on every request to an existing upload | reject |
//! | [`post_finish`](Hooks::post_finish) | after an upload became a file | observe (runs in its own task) |
//! | [`post_terminate`](Hooks::post_terminate) | after an upload was cancelled | observe (runs in its own task) |
//!
//! # Examples
//! Put every upload under the caller's tenant, and let only that tenant touch it:
//! ```
//! use intake::{Problem, hooks::Hooks};
//! use http::StatusCode;
//!
//! fn tenant(headers: &http::HeaderMap) -> Option<String> {
//!     headers.get("x-tenant").and_then(|v| v.to_str().ok()).map(str::to_owned)
//! }
//!
//! let hooks = Hooks::new()
//!     .pre_create(|mut create: intake::hooks::CreateRequest| async move {
//!         let tenant = tenant(&create.headers)
//!             .ok_or_else(|| Problem::new(StatusCode::UNAUTHORIZED, "no_tenant", "send X-Tenant"))?;
//!         create.meta.extra.insert("tenant".into(), tenant.clone());
//!         create.key_prefix = intake::storage::KeyPrefix::new(&format!("tenants/{tenant}"));
//!         create.owner = Some(tenant);
//!         Ok(create)
//!     })
//!     .authorize(|access: intake::hooks::AccessRequest| async move {
//!         if access.record.owner == tenant(&access.headers) {
//!             Ok(())
//!         } else {
//!             Err(Problem::new(StatusCode::FORBIDDEN, "not_yours", "this upload belongs to another tenant"))
//!         }
//!     });
//! # let _ = hooks;
//! ```

use crate::{
    error::Problem,
    state::UploadRecord,
    storage::{FileMeta, StoredObject},
};
use http::{HeaderMap, Method, Uri};
use std::{fmt, future::Future, pin::Pin, sync::Arc};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Hook<I, O> = Arc<dyn Fn(I) -> BoxFuture<O> + Send + Sync>;

/// An upload about to be created, as [`Hooks::pre_create`] sees and may change it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CreateRequest {
    /// `"tus"`, `"ietf-draft"` or `"chunked"`.
    pub protocol: &'static str,
    /// The request's headers (credentials, tenant, ...).
    pub headers: HeaderMap,
    /// The request's URI.
    pub uri: Uri,
    /// The declared length, if any.
    pub length: Option<u64>,
    /// Metadata; the hook may rewrite it (file name, type, extra keys).
    pub meta: FileMeta,
    /// The owner or tenant recorded with the upload, which [`Hooks::authorize`] can check.
    pub owner: Option<String>,
    /// The storage key prefix the file is kept under (e.g. the tenant's), so its key becomes
    /// `{prefix}/{id}`; `None`: the id alone.
    pub key_prefix: Option<crate::storage::KeyPrefix>,
}

/// A request to an existing upload, as [`Hooks::authorize`] sees it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AccessRequest {
    /// The method (`HEAD`, `PATCH`, `GET`, `DELETE`, `POST` for chunks ...).
    pub method: Method,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The request's URI.
    pub uri: Uri,
    /// The upload's record (owner, metadata, length).
    pub record: UploadRecord,
}

/// A finished upload, for [`Hooks::post_finish`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FinishedUpload {
    /// The upload's record as it was when it finished.
    pub record: UploadRecord,
    /// The stored file.
    pub object: StoredObject,
}

/// The async callbacks of resumable uploads. See the [module docs](self).
#[derive(Clone, Default)]
pub struct Hooks {
    pre_create: Option<Hook<CreateRequest, Result<CreateRequest, Problem>>>,
    authorize: Option<Hook<AccessRequest, Result<(), Problem>>>,
    post_finish: Option<Hook<FinishedUpload, ()>>,
    post_terminate: Option<Hook<UploadRecord, ()>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("pre_create", &self.pre_create.is_some())
            .field("authorize", &self.authorize.is_some())
            .field("post_finish", &self.post_finish.is_some())
            .field("post_terminate", &self.post_terminate.is_some())
            .finish()
    }
}

impl Hooks {
    /// No hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Called before an upload is created; an `Err` refuses it with that problem, an `Ok`
    /// carries the (possibly rewritten) request on.
    pub fn pre_create<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(CreateRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CreateRequest, Problem>> + Send + 'static,
    {
        self.pre_create = Some(Arc::new(move |req| Box::pin(hook(req))));
        self
    }

    /// Called on every request to an existing upload; an `Err` refuses the request.
    pub fn authorize<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(AccessRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Problem>> + Send + 'static,
    {
        self.authorize = Some(Arc::new(move |req| Box::pin(hook(req))));
        self
    }

    /// Called (in a task of its own) once an upload has become a file.
    pub fn post_finish<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(FinishedUpload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.post_finish = Some(Arc::new(move |req| Box::pin(hook(req))));
        self
    }

    /// Called (in a task of its own) once an upload has been cancelled by its client.
    pub fn post_terminate<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(UploadRecord) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.post_terminate = Some(Arc::new(move |req| Box::pin(hook(req))));
        self
    }

    pub(crate) async fn run_pre_create(&self, req: CreateRequest) -> Result<CreateRequest, Problem> {
        match &self.pre_create {
            Some(hook) => hook(req).await,
            None => Ok(req),
        }
    }

    pub(crate) async fn run_authorize(&self, req: AccessRequest) -> Result<(), Problem> {
        match &self.authorize {
            Some(hook) => hook(req).await,
            None => Ok(()),
        }
    }

    pub(crate) fn has_authorize(&self) -> bool {
        self.authorize.is_some()
    }

    pub(crate) fn notify_finish(&self, finished: FinishedUpload) {
        if let Some(hook) = self.post_finish.clone() {
            tokio::spawn(async move { hook(finished).await });
        }
    }

    pub(crate) fn notify_terminate(&self, record: UploadRecord) {
        if let Some(hook) = self.post_terminate.clone() {
            tokio::spawn(async move { hook(record).await });
        }
    }
}
