//! `POST {prefix}/raw`: the request body is the file.

use super::{AppState, files_url};
use crate::ingest::{UploadResponse, UploadedFile, progress_id, store_body};
use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
};

pub(super) async fn upload(State(app): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match store_body(app.store.as_ref(), &parts, body).await {
        Ok(object) => UploadResponse {
            files: vec![UploadedFile::new(&object, &files_url(&parts))],
            fields: Default::default(),
            progress_id: progress_id(&parts.extensions),
        }
        .into_http()
        .into_response(),
        Err(problem) => problem.into_response(),
    }
}
