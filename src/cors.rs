//! CORS for browsers that upload from another origin: a tower-http [`CorsLayer`] that allows
//! and exposes exactly the headers tus clients (tus-js-client, Uppy), IETF-draft clients and the
//! chunked API need.
//!
//! Put it around the whole app (it answers preflight requests itself, before rate limiting, so
//! a browser's `OPTIONS` preflight never counts against a client's quota):
//! ```
//! use http::HeaderValue;
//! let app: axum::Router = axum::Router::new()
//!     .nest("/upload", intake::Uploads::new(intake::storage::InMemory::new()).into_router())
//!     .layer(intake::cors::cors_layer([HeaderValue::from_static("https://app.example.com")]));
//! # let _ = app;
//! ```
//! A tus `OPTIONS` request without `Access-Control-Request-Method` is not a preflight and still
//! reaches the tus handler.

use http::{HeaderName, HeaderValue, Method};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Request headers the upload protocols use.
pub const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "content-disposition",
    "content-digest",
    "repr-digest",
    "content-md5",
    "x-requested-with",
    "x-http-method-override",
    "tus-resumable",
    "upload-length",
    "upload-defer-length",
    "upload-metadata",
    "upload-offset",
    "upload-concat",
    "upload-checksum",
    "upload-complete",
    "upload-draft-interop-version",
];

/// Response headers clients must be able to read.
pub const EXPOSED_HEADERS: &[&str] = &[
    "location",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
    "upload-offset",
    "upload-length",
    "upload-defer-length",
    "upload-metadata",
    "upload-concat",
    "upload-expires",
    "upload-complete",
    "upload-limit",
    "upload-draft-interop-version",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
    "etag",
    "content-range",
    "content-disposition",
];

/// A [`CorsLayer`] for the upload routes, allowing these origins (exact matches).
pub fn cors_layer(origins: impl IntoIterator<Item = HeaderValue>) -> CorsLayer {
    let names = |list: &[&'static str]| list.iter().map(|h| HeaderName::from_static(h)).collect::<Vec<_>>();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers(names(ALLOWED_HEADERS))
        .expose_headers(names(EXPOSED_HEADERS))
        .max_age(Duration::from_secs(24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, body::Body, routing::post};
    use http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn preflight_allows_tus_headers_for_listed_origins_only() {
        let app = Router::new()
            .route("/tus/{id}", post(|| async { "" }))
            .layer(cors_layer([HeaderValue::from_static("https://app.example")]));
        let preflight = |origin: &'static str| {
            Request::options("/tus/x")
                .header("origin", origin)
                .header("access-control-request-method", "PATCH")
                .header("access-control-request-headers", "tus-resumable,upload-offset,content-type")
                .body(Body::empty())
                .unwrap()
        };
        let res = app.clone().oneshot(preflight("https://app.example")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example");
        let allowed = h["access-control-allow-headers"].to_str().unwrap();
        assert!(allowed.contains("upload-offset") && allowed.contains("tus-resumable"), "{allowed}");
        assert!(h["access-control-allow-methods"].to_str().unwrap().contains("PATCH"));
        let res = app.oneshot(preflight("https://evil.example")).await.unwrap();
        assert!(res.headers().get("access-control-allow-origin").is_none());
    }
}
