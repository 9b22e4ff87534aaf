//! What every upload route shares: the store, the progress hub, the settings and the resumable
//! engine (which holds the state store, the locker and the hooks).

use crate::{
    config::UploadConfig,
    error::Problem,
    hooks::CreateRequest,
    progress::{ProgressHub, ProgressId},
    resumable::Resumable,
    state::FileRecord,
    storage::Store,
};
use http::request::Parts;
use std::sync::Arc;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) hub: ProgressHub,
    pub(crate) config: Arc<UploadConfig>,
    /// The same store, hub and config with the state of resumable uploads.
    pub(crate) resumable: Resumable,
}

impl AppState {
    /// Runs the pre-create hook for a one-shot upload (a raw body, a file of a form), and tells
    /// the progress hub whose upload the request's progress is.
    pub(crate) async fn admit(&self, parts: &Parts, asked: CreateRequest) -> Result<CreateRequest, Problem> {
        let created = self.resumable.hooks.run_pre_create(asked).await?;
        if let Some(id) = parts.extensions.get::<ProgressId>() {
            if self.hub.owner(id).is_none() {
                self.hub.set_owner(id, created.owner.clone());
            }
        }
        Ok(created)
    }

    /// Catalogues stored files (the commit point of one-shot uploads): all of them or, if that
    /// fails, none, with their bytes deleted.
    pub(crate) async fn catalog(&self, files: &[FileRecord]) -> Result<(), Problem> {
        let state = &self.resumable.state;
        for (n, file) in files.iter().enumerate() {
            if let Err(e) = state.insert_file(file).await {
                for done in &files[..n] {
                    let _ = state.remove_file(&done.id).await;
                }
                for file in files {
                    if let Err(e) = self.store.delete(&file.key).await {
                        tracing::warn!(key = %file.key, error = %e, "could not delete a file that was not catalogued");
                    }
                }
                return Err(e.to_problem());
            }
        }
        Ok(())
    }
}
