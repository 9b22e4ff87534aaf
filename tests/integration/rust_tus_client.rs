//! A Rust tus client from crates.io against the router: `tus_client` 0.1.1, without its optional
//! reqwest 0.9 handler, driven through its `HttpHandler` trait by the reqwest this crate's tests
//! already use. (`tus_async_client` 0.2.1 was not taken: it depends on reqwest 0.11 with its
//! default TLS, a second HTTP stack with OpenSSL, 95 crates.)
//!
//! `tus_client` uses the `Location` it is given as is, so it needs absolute upload URLs. Its
//! `get_info` cannot read `Upload-Metadata` (it decodes the whole header as one base64 string), so
//! metadata is checked with a plain `HEAD`.

use crate::common::*;
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};
use tus_client::{
    Client, Error, TusExtension,
    http::{HttpHandler, HttpMethod, HttpRequest, HttpResponse},
};

/// Sends `tus_client`'s requests with reqwest, from a blocking thread; after `fail_after`
/// requests it behaves like a network that went away.
struct Reqwest {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    sent: AtomicUsize,
    fail_after: usize,
}

impl Reqwest {
    fn new(fail_after: usize) -> Self {
        Self { http: client(), runtime: tokio::runtime::Handle::current(), sent: AtomicUsize::new(0), fail_after }
    }
}

impl HttpHandler for Reqwest {
    fn handle_request(&self, req: HttpRequest) -> Result<HttpResponse, Error> {
        if self.sent.fetch_add(1, Ordering::SeqCst) >= self.fail_after {
            return Err(Error::HttpHandlerError("the network went away".into()));
        }
        let method = match req.method {
            HttpMethod::Head => reqwest::Method::HEAD,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Options => reqwest::Method::OPTIONS,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Delete => reqwest::Method::DELETE,
        };
        let mut builder = self.http.request(method, &req.url);
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = req.body {
            builder = builder.body(body.to_vec());
        }
        let res = self.runtime.block_on(builder.send()).map_err(|e| Error::HttpHandlerError(e.to_string()))?;
        let headers = res.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned())).collect();
        Ok(HttpResponse { headers, status_code: res.status().as_u16().into() })
    }
}

/// Runs blocking client code off the runtime (its handler blocks on the runtime's futures).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    bounded("tus_client", tokio::task::spawn_blocking(f)).await.expect("the client code does not panic")
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_client_crate_uploads_resumes_and_deletes() {
    let server = TestServer::default_disk().await;
    let endpoint = server.url("/tus/");
    let data = pseudo_random(1536 * 1024 + 11, 42);
    let path = write_file(server.temp_dir(), "rust.bin", &data);

    // Server discovery.
    let info = blocking({
        let endpoint = endpoint.clone();
        move || Client::new(Reqwest::new(usize::MAX)).get_server_info(&endpoint)
    })
    .await
    .expect("OPTIONS");
    assert_eq!(info.supported_versions, ["1.0.0"]);
    for extension in [
        TusExtension::Creation,
        TusExtension::Expiration,
        TusExtension::Checksum,
        TusExtension::Termination,
        TusExtension::Concatenation,
    ] {
        assert!(info.extensions.contains(&extension), "{extension:?} in {:?}", info.extensions);
    }
    assert_eq!(info.max_upload_size, Some(1 << 30));

    // Creation with metadata; the URL is absolute, as the client needs.
    let url = blocking({
        let (endpoint, path) = (endpoint.clone(), path.clone());
        move || {
            let metadata = HashMap::from([("filename".to_owned(), "rust ✓.bin".to_owned())]);
            Client::new(Reqwest::new(usize::MAX)).create_with_metadata(&endpoint, &path, metadata)
        }
    })
    .await
    .expect("creation");
    assert!(url.starts_with(&endpoint), "{url} is an absolute URL under {endpoint}");

    // The network goes away after three 256 KiB PATCHes (the first request is HEAD)...
    let cut = blocking({
        let (url, path) = (url.clone(), path.clone());
        move || Client::new(Reqwest::new(4)).upload_with_chunk_size(&url, &path, 256 * 1024)
    })
    .await;
    assert!(matches!(cut, Err(Error::HttpHandlerError(_))), "{cut:?}");
    let head = blocking({
        let url = url.clone();
        move || Client::new(Reqwest::new(usize::MAX)).get_info(&url)
    })
    .await
    .expect("HEAD");
    assert_eq!((head.bytes_uploaded, head.total_size), (3 * 256 * 1024, Some(data.len())));

    // ... and a new client resumes from the server's offset.
    blocking({
        let (url, path) = (url.clone(), path.clone());
        move || Client::new(Reqwest::new(usize::MAX)).upload_with_chunk_size(&url, &path, 256 * 1024)
    })
    .await
    .expect("the resumed upload");
    let head = bounded("HEAD", server.client.head(&url).header("tus-resumable", "1.0.0").send()).await.unwrap();
    assert_eq!(header(&head, "upload-offset"), Some(data.len().to_string()));
    let metadata = header(&head, "upload-metadata").expect("Upload-Metadata");
    assert_eq!(metadata, "filename cnVzdCDinJMuYmlu", "the metadata as the client sent it");
    let got = bounded("GET", server.client.get(&url).header("tus-resumable", "1.0.0").send()).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(sha256_hex(&got.bytes().await.unwrap()), sha256_hex(&data), "the stored bytes");

    // Termination of an unfinished upload.
    let small = write_file(server.temp_dir(), "small.bin", &data[..1000]);
    let gone = blocking({
        let endpoint = endpoint.clone();
        move || {
            let client = Client::new(Reqwest::new(usize::MAX));
            let url = client.create(&endpoint, &small)?;
            client.delete(&url)?;
            Ok::<_, Error>(client.get_info(&url))
        }
    })
    .await
    .expect("create and delete");
    assert!(matches!(gone, Err(Error::NotFoundError)), "{gone:?}");
}
