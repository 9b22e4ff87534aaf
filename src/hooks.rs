//! Lifecycle hooks of uploads: the extension points users ask for most, as async callbacks.
//!
//! | hook | when | can |
//! |---|---|---|
//! | [`pre_create`](Hooks::pre_create) | before any upload is created: each file of a form, a raw body, a tus, draft or chunked upload | reject (any status, code, message), rewrite metadata, set the owner and the storage key prefix |
//! | [`authorize`](Hooks::authorize) | on every request that names an existing upload or file: tus and draft requests, chunked chunks, status and completion, downloads (`GET`, `HEAD`, ranges), deletes, progress streams | reject |
//! | [`post_finish`](Hooks::post_finish) | after a resumable upload became a file | observe (runs in its own task) |
//! | [`post_terminate`](Hooks::post_terminate) | after a resumable upload was cancelled | observe (runs in its own task) |
//!
//! The owner set at creation is kept with the upload's record and, once it is a file, with the
//! file in the catalog ([`FileRecord`]): [`AccessRequest::owner`] is the owner for as long as the
//! file exists, also after the upload's record has expired. Without an `authorize` hook every
//! request is allowed.
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
//!         if access.owner == tenant(&access.headers) {
//!             Ok(())
//!         } else {
//!             Err(Problem::new(StatusCode::FORBIDDEN, "not_yours", "this upload belongs to another tenant"))
//!         }
//!     });
//! # let _ = hooks;
//! ```

use crate::{
    error::Problem,
    state::{FileRecord, UploadRecord},
    storage::FileMeta,
};
use http::{HeaderMap, Method, Uri};
use std::{fmt, future::Future, pin::Pin, sync::Arc};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Hook<I, O> = Arc<dyn Fn(I) -> BoxFuture<O> + Send + Sync>;

/// An upload about to be created, as [`Hooks::pre_create`] sees and may change it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CreateRequest {
    /// `"form"`, `"raw"`, `"tus"`, `"ietf-draft"` or `"chunked"`.
    pub protocol: &'static str,
    /// The file name exactly as the client sent it, before sanitising (which strips paths and
    /// leading dots): for policies on names, such as refusing dot files. Never use it as a path;
    /// `meta.name` is the sanitised one that is stored.
    pub client_name: Option<String>,
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

impl CreateRequest {
    /// What a request asks to create, before any hook changed it.
    pub(crate) fn new(
        protocol: &'static str,
        parts: &http::request::Parts,
        length: Option<u64>,
        meta: FileMeta,
        client_name: Option<String>,
    ) -> Self {
        Self {
            protocol,
            client_name,
            headers: parts.headers.clone(),
            uri: parts.uri.clone(),
            length,
            meta,
            owner: None,
            key_prefix: None,
        }
    }
}

/// A request that names an existing upload or file, as [`Hooks::authorize`] sees it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AccessRequest {
    /// The method (`HEAD`, `PATCH`, `GET`, `DELETE`, `POST` for chunks ...).
    pub method: Method,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The request's URI.
    pub uri: Uri,
    /// The owner the upload or file was created with ([`CreateRequest::owner`]).
    pub owner: Option<String>,
    /// What the request names.
    pub target: AccessTarget,
}

/// What an [`AccessRequest`] names.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AccessTarget {
    /// A resumable upload, finished or not (tus, draft and chunked requests).
    Upload(UploadRecord),
    /// A file of the catalog (downloads, deletes).
    File(FileRecord),
    /// The progress of an upload in flight, by its progress id (`GET {prefix}/progress/{id}`).
    Progress(String),
}

/// A finished upload, for [`Hooks::post_finish`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FinishedUpload {
    /// The upload's record as it was when it finished.
    pub record: UploadRecord,
    /// The file it became, as catalogued (a partial upload of a concatenation is not
    /// catalogued: its file is described all the same).
    pub file: FileRecord,
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

    /// Called before an upload is created (each file of a form, a raw body, a resumable
    /// upload); an `Err` refuses it with that problem, an `Ok` carries the (possibly rewritten)
    /// request on.
    pub fn pre_create<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(CreateRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CreateRequest, Problem>> + Send + 'static,
    {
        self.pre_create = Some(Arc::new(move |req| Box::pin(hook(req))));
        self
    }

    /// Called on every request that names an existing upload or file; an `Err` refuses the
    /// request.
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

    pub(crate) fn has_authorize(&self) -> bool {
        self.authorize.is_some()
    }

    /// Runs the authorisation hook, if there is one, for a request naming `target`.
    pub(crate) async fn authorize_access(
        &self,
        parts: &http::request::Parts,
        owner: Option<&str>,
        target: impl FnOnce() -> AccessTarget,
    ) -> Result<(), Problem> {
        let Some(hook) = &self.authorize else { return Ok(()) };
        hook(AccessRequest {
            method: parts.method.clone(),
            headers: parts.headers.clone(),
            uri: parts.uri.clone(),
            owner: owner.map(str::to_owned),
            target: target(),
        })
        .await
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
