//! What the tus and IETF draft adapters share: upload URLs, limits, downloads and termination.

use crate::{UploadId, context::AppState, error::Problem, files as download};
use axum::{body::Body, response::Response};
use http::{HeaderValue, StatusCode, request::Parts};

/// How long an offset request waits for a request still writing to the upload.
pub(crate) const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// The URL of an upload: `{origin}{nested prefix}/tus/{id}`.
pub(crate) fn upload_url(parts: &Parts, id: &UploadId) -> String {
    format!("{}/tus/{id}", crate::urls::base(parts))
}

pub(super) fn set(res: &mut Response, name: &'static str, value: impl TryInto<HeaderValue>) {
    if let Ok(value) = value.try_into() {
        res.headers_mut().insert(name, value);
    }
}

pub(super) fn empty(status: StatusCode) -> Response {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    res
}

pub(crate) fn check_max(app: &AppState, length: Option<u64>) -> Result<(), Problem> {
    match length {
        Some(length) if length > app.config.max_raw_body => {
            Err(crate::limit::too_large_problem(app.config.max_raw_body, Some(length)))
        }
        _ => Ok(()),
    }
}

/// A finished upload is a file of the catalog, downloadable at its upload URL also after the
/// upload's record has expired. A partial upload of a concatenation is not a file.
pub(crate) async fn get(app: &AppState, id: &str, parts: &Parts) -> Result<Response, Problem> {
    match app.resumable.load_tus(id, parts).await {
        Ok(record) if !record.finished => {
            match app.resumable.offset(&record).await? {
                (_, Some(finished)) if finished.finished => {
                    download::serve(app, &download::find(app, id, parts).await?, &parts.headers).await
                }
                (offset, _) => Err(Problem::new(StatusCode::CONFLICT, "upload_incomplete", "the upload is not finished yet")
                    .with("offset", offset)),
            }
        }
        Err(problem) if problem.status() != StatusCode::NOT_FOUND => Err(problem),
        _ => download::serve(app, &download::find(app, id, parts).await?, &parts.headers).await,
    }
}

pub(crate) async fn terminate(app: &AppState, id: &str, parts: &Parts) -> Result<Response, Problem> {
    let record = app.resumable.load_tus(id, parts).await?;
    app.resumable.terminate(record).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
