//! `POST {prefix}/raw`: the request body is the file.

use crate::{context::AppState, urls::files_url};
use crate::{
    error::Problem,
    hooks::CreateRequest,
    ingest::{UploadResponse, UploadedFile, declared_meta, progress_id, refuse_multipart, store_as},
};
use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
};

pub(super) async fn upload(State(app): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let outcome = async {
        refuse_multipart(&parts.headers)?;
        let client_name = crate::declared::client_name(&parts.uri, &parts.headers);
        let length = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let asked = CreateRequest::new("raw", &parts, length, declared_meta(&parts), client_name);
        let created = app.admit(&parts, asked).await?;
        let file = store_as(app.store.as_ref(), &parts, body, Some(created), true).await?;
        app.catalog(std::slice::from_ref(&file)).await?;
        Ok::<_, Problem>(file)
    };
    match outcome.await {
        Ok(file) => UploadResponse {
            files: vec![UploadedFile::new(&file, &files_url(&parts))],
            fields: Default::default(),
            progress_id: progress_id(&parts.extensions),
        }
        .into_http()
        .into_response(),
        Err(problem) => problem.into_response(),
    }
}
