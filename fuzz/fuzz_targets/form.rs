//! `multipart/form-data` through the real form handler: the router on an `InMemory` store,
//! driven with `oneshot` in a current-thread runtime made once per process, with small form
//! limits so that every limit is within reach of short inputs.
//!
//! Input: the first byte sets how the body arrives (low 7 bits: the size of each chunk, 0 for one
//! chunk; high bit: whether `Content-Length` is sent); up to the first `\n` is the `Content-Type`
//! value (left out when it is not a valid header value); the rest is the body. A form without
//! `\n` is all body, with `Content-Type: multipart/form-data; boundary=XyZ`.
//!
//! Every answer is `201` or a 4xx `application/problem+json` with a code. A refused form leaves
//! nothing in the store; an accepted one stores exactly the files it lists, each with the size
//! and SHA-256 it reports, under a sanitised name.
#![no_main]

use axum::{Router, body::Body, extract::ConnectInfo};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use intake::{
    FormLimits, UploadId, Uploads,
    hash::HashAlgorithm,
    rate_limit::RateLimitLayer,
    storage::InMemory,
};
use intake_fuzz::{assert_safe_name, header_value};
use libfuzzer_sys::fuzz_target;
use std::{convert::Infallible, net::SocketAddr, sync::LazyLock};
use tokio::runtime::Runtime;
use tower::ServiceExt;

struct Harness {
    runtime: Runtime,
    store: InMemory,
    app: Router,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let _entered = runtime.enter();
    let store = InMemory::new();
    let limits =
        FormLimits { max_parts: 8, max_files: 3, max_field_size: 256, max_part_header_size: 512, max_file_size: Some(2048) };
    let app = Uploads::new(store.clone())
        .rate_limit(RateLimitLayer::disabled())
        .max_form_body(6 * 1024)
        .form_limits(limits)
        .into_router();
    drop(_entered);
    Harness { runtime, store, app }
});

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&how, rest)) = data.split_first() else { return };
    let (content_type, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (header_value(&rest[..i]), &rest[i + 1..]),
        None => (Some(header_value(b"multipart/form-data; boundary=XyZ").expect("valid")), rest),
    };
    let chunk = match usize::from(how & 0x7f) {
        0 => body.len().max(1),
        n => n,
    };
    let chunks: Vec<Result<Vec<u8>, Infallible>> = body.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
    let mut req = Request::post("/form");
    if let Some(content_type) = content_type {
        req = req.header(header::CONTENT_TYPE, content_type);
    }
    if how & 0x80 != 0 {
        req = req.header(header::CONTENT_LENGTH, body.len());
    }
    let mut req = req.body(Body::from_stream(futures_util::stream::iter(chunks))).expect("a request");
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))));

    let Harness { runtime, store, app } = &*HARNESS;
    runtime.block_on(async {
        let res = app.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let problem_json = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v == "application/problem+json");
        let bytes = res.into_body().collect().await.expect("a response body").to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON answer");
        if status != StatusCode::CREATED {
            assert!(status.is_client_error(), "{status} for a client's form: {json}");
            assert!(problem_json, "{status} without a problem: {json}");
            assert!(json["code"].as_str().is_some_and(|c| !c.is_empty()), "no code: {json}");
            assert_eq!((store.objects(), store.pending_uploads()), (0, 0), "a refused form left data: {json}");
            return;
        }
        let files = json["files"].as_array().expect("files");
        assert!(!files.is_empty());
        assert_eq!((store.objects(), store.pending_uploads()), (files.len(), 0), "{json}");
        for file in files {
            let id = file["id"].as_str().and_then(UploadId::parse).expect("an upload id");
            if let Some(name) = file["name"].as_str() {
                assert_safe_name(name);
            }
            // Read back and deleted through the router, which keeps its catalog in step.
            let get = Request::get(format!("/files/{id}")).body(Body::empty()).expect("a request");
            let res = app.clone().oneshot(get).await.expect("infallible");
            assert_eq!(res.status(), StatusCode::OK, "a listed file is stored: {json}");
            let stored = res.into_body().collect().await.expect("the file").to_bytes();
            assert_eq!(file["size"].as_u64(), Some(stored.len() as u64), "{json}");
            assert!(stored.len() <= 2048, "max_file_size exceeded: {json}");
            let mut sha = HashAlgorithm::Sha256.hasher();
            sha.update(&stored);
            assert_eq!(file["sha256"].as_str(), Some(hex(&sha.finalize()).as_str()), "{json}");
            let delete = Request::delete(format!("/files/{id}")).body(Body::empty()).expect("a request");
            assert_eq!(app.clone().oneshot(delete).await.expect("infallible").status(), StatusCode::NO_CONTENT);
        }
        assert_eq!(store.objects(), 0);
    });
});
