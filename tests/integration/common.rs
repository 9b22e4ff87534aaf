//! The harness: a real server per test on 127.0.0.1:0, HTTP clients, and storage inspection.

#![allow(dead_code)]

use axum::Router;
use intake::{Uploads, hash::HashAlgorithm, storage::LocalDisk};
use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};
use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// The prefix the upload router is nested under unless a test says otherwise.
pub const PREFIX: &str = "/upload";

/// Longest a single network wait may take before the test fails (a hang is a failure; a slow
/// machine is not, so this is generous).
pub const NET_TIMEOUT: Duration = Duration::from_secs(20);

/// A PNG signature and the start of an IHDR chunk: enough for sniffing to recognise PNG.
pub const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

/// An ELF header: 0x7F 'E' 'L' 'F' followed by 60 more bytes.
pub fn elf() -> Vec<u8> {
    let mut v = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\x01\0\0\0".to_vec();
    v.resize(64, 0);
    v.extend_from_slice(&[0x90; 64]);
    v
}

/// A server under test. Dropping it stops the server (and removes its storage directory).
pub struct TestServer {
    pub addr: SocketAddr,
    pub prefix: String,
    /// The LocalDisk root, when the store is on disk.
    root: Option<PathBuf>,
    /// Kept alive for as long as the server runs.
    dir: Option<TempDir>,
    pub client: reqwest::Client,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A reqwest client that never goes through a proxy and never hangs forever.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().expect("reqwest client")
}

/// Serves `app` on 127.0.0.1:0 with `ConnectInfo<SocketAddr>` (the rate limiter keys on it).
pub async fn serve(app: Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.expect("server runs");
    });
    (addr, task)
}

impl TestServer {
    /// The upload router on a LocalDisk store in a fresh temporary directory, nested at
    /// [`PREFIX`], configured by `configure`.
    pub async fn disk(configure: impl FnOnce(Uploads) -> Uploads) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("store");
        let uploads = configure(Uploads::new(LocalDisk::new(&root)));
        let app = Router::new().nest(PREFIX, uploads.into_router());
        Self::with_app(app, PREFIX, Some(dir), Some(root)).await
    }

    /// The upload router with default settings on disk.
    pub async fn default_disk() -> Self {
        Self::disk(|u| u).await
    }

    /// The upload router on an in-memory store, nested at [`PREFIX`].
    pub async fn memory(configure: impl FnOnce(Uploads) -> Uploads) -> Self {
        let uploads = configure(Uploads::new(intake::storage::InMemory::new()));
        let app = Router::new().nest(PREFIX, uploads.into_router());
        Self::with_app(app, PREFIX, None, None).await
    }

    /// Any app, served for real.
    pub async fn with_app(app: Router, prefix: &str, dir: Option<TempDir>, root: Option<PathBuf>) -> Self {
        let (addr, task) = serve(app).await;
        Self { addr, prefix: prefix.to_owned(), root, dir, client: client(), task }
    }

    /// `http://127.0.0.1:port`
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A URL under the upload prefix: `url("/raw")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}{}", self.addr, self.prefix, path)
    }

    /// An absolute URL on this server for a server-relative one; a URL the server handed out
    /// (`Location`, `url` of a file), which is absolute, must be on this server and is kept.
    pub fn absolute(&self, url: &str) -> String {
        if url.starts_with("http://") {
            assert!(url.starts_with(&format!("{}/", self.origin())), "{url:?} is a URL on this server ({})", self.origin());
            return url.to_owned();
        }
        assert!(url.starts_with('/'), "expected a server-relative URL, got {url:?}");
        format!("http://{}{}", self.addr, url)
    }

    /// The temporary directory holding the store root (the root is `store/` inside it).
    pub fn temp_dir(&self) -> &Path {
        self.dir.as_ref().expect("a disk-backed server").path()
    }

    /// The LocalDisk root.
    pub fn root(&self) -> &Path {
        self.root.as_deref().expect("a disk-backed server")
    }

    /// File names directly under `root/{sub}`, sorted (empty when the directory does not exist).
    pub fn list(&self, sub: &str) -> Vec<String> {
        list_dir(&self.root().join(sub))
    }

    /// Uploads in progress: resumable ones under `uploads/` and one-shot ones as temporary files
    /// in `tmp/` (relative paths).
    pub fn partial_files(&self) -> Vec<String> {
        let mut found = files_under(&self.root().join("uploads"));
        found.extend(files_under(&self.root().join("tmp")).into_iter().map(|name| format!("tmp/{name}")));
        found
    }

    /// The ids of stored objects: the names of the files under `objects/` (at any depth: tenant
    /// prefixes are directories), sorted.
    pub fn object_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            files_under(&self.root().join("objects")).iter().map(|path| path.rsplit('/').next().unwrap().to_owned()).collect();
        ids.sort();
        ids
    }

    /// The bytes of a stored object, straight from disk, wherever its prefix put it.
    pub fn object_bytes(&self, id: &str) -> Vec<u8> {
        let path = files_under(&self.root().join("objects"))
            .into_iter()
            .find(|path| path.rsplit('/').next() == Some(id))
            .unwrap_or_else(|| panic!("no object file {id}"));
        std::fs::read(self.root().join("objects").join(path)).expect("object file")
    }

    /// Asserts that `objects/` holds one file per object, named by its server id, and nothing
    /// else (no descriptions beside them, nothing half-written).
    pub fn assert_objects_well_formed(&self) {
        for id in self.object_ids() {
            assert!(is_upload_id(&id), "object names are server ids: {id:?}");
        }
        assert_eq!(self.partial_files(), Vec::<String>::new(), "no upload is left in progress");
    }

    /// Waits (up to 5 s) until no upload is left in progress, then asserts that, and that no
    /// object was stored.
    pub async fn assert_nothing_stored(&self) {
        // A one-shot upload writes its object in place, and removes it when cut off.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !(self.partial_files().is_empty() && self.object_ids().is_empty()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(self.partial_files(), Vec::<String>::new(), "nothing is in progress");
        assert_eq!(files_under(&self.root().join("objects")), Vec::<String>::new(), "objects/ is empty");
    }

    /// Polls until `partial/` is empty (aborts run in spawned tasks), at most 5 s.
    pub async fn wait_for_no_partials(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.partial_files().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// POSTs a multipart body (built with [`Multipart`]) to `{prefix}/form`, bounded in time;
    /// `what` names the request in a timeout message.
    pub async fn post_form(&self, what: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        bounded(what, self.client.post(self.url("/form")).header("content-type", Multipart::content_type()).body(body).send())
            .await
            .unwrap()
    }

    /// Sends raw bytes on a fresh TCP connection and reads one response.
    pub async fn raw(&self, request: &[u8]) -> RawResponse {
        let mut conn = RawConn::connect(self.addr).await;
        conn.send(request).await;
        conn.response().await.expect("the server answered")
    }
}

pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read_dir {}: {e}", dir.display()),
    };
    names.sort();
    names
}

/// Every path under `dir`, recursively, relative to it.
/// The files under `dir` at any depth, as sorted `/`-separated relative paths (none when `dir`
/// does not exist).
pub fn files_under(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut files: Vec<String> =
        walk(dir).into_iter().filter(|path| dir.join(path).is_file()).map(|path| path.replace('\\', "/")).collect();
    files.sort();
    files
}

pub fn walk(dir: &Path) -> Vec<String> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.push(path.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if entry.file_type().unwrap().is_dir() {
                go(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out);
    out.sort();
    out
}

pub fn is_upload_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Fails the test if `fut` takes longer than [`NET_TIMEOUT`].
pub async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(NET_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {NET_TIMEOUT:?}: {what}"),
    }
}

/// Lowercase hex SHA-256 (with the crate's own hasher, which has known-answer unit tests; see
/// also [`sha256_known_answer`]).
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&sha256(data))
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    let mut h = HashAlgorithm::Sha256.hasher();
    h.update(data);
    h.finalize()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sha256_known_answer() {
    assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/// A `Content-Digest` value for `data`.
pub fn content_digest(data: &[u8]) -> String {
    intake::hash::header_value(HashAlgorithm::Sha256, &sha256(data))
}

/// Deterministic pseudo-random bytes (no magic numbers at the start).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"intake test data");
    while out.len() < len {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        out.extend_from_slice(&(x >> 24).to_le_bytes()[..4]);
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------------------------
// Responses

/// Asserts a problem response: status, `application/problem+json`, `code`. Returns the document.
pub async fn assert_problem(res: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    let got = res.status().as_u16();
    let content_type = header(&res, "content-type");
    let body = bounded("problem body", res.bytes()).await.expect("problem body");
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(got, status, "status (body: {text})");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "content type (body: {text})");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("problem JSON ({e}): {text}"));
    assert_eq!(json["code"], code, "problem code in {json}");
    assert_eq!(json["status"], status, "status member in {json}");
    json
}

/// Asserts `201 Created` with JSON; returns the document.
pub async fn assert_created(res: reqwest::Response) -> serde_json::Value {
    let status = res.status().as_u16();
    let content_type = header(&res, "content-type");
    let body = bounded("upload response body", res.bytes()).await.expect("response body");
    assert_eq!(status, 201, "status (body: {})", String::from_utf8_lossy(&body));
    assert_eq!(content_type.as_deref(), Some("application/json"));
    serde_json::from_slice(&body).expect("upload response JSON")
}

pub fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().expect("ASCII header").to_owned())
}

// ---------------------------------------------------------------------------------------------
// Raw TCP

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("JSON body ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts a problem response; returns the document.
    pub fn assert_problem(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status, status, "status (body: {})", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), Some("application/problem+json"));
        let json = self.json();
        assert_eq!(json["code"], code, "problem code in {json}");
        json
    }
}

/// A client connection on a plain socket, for requests no well-behaved client sends.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

/// What reading from a raw connection ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The server closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived within the wait.
    TimedOut,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = bounded("connect", TcpStream::connect(addr)).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Self { stream, buf: Vec::new(), eof: false }
    }

    /// Writes all of `bytes`; a server that already closed its side is not an error here (the
    /// response is what the test checks).
    pub async fn send(&mut self, bytes: &[u8]) {
        match bounded("write", self.stream.write_all(bytes)).await {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) => {}
            Err(e) => panic!("write: {e}"),
        }
    }

    /// Reads more bytes into the buffer; `Err` when the connection ended or `wait` passed.
    async fn fill(&mut self, wait: Duration) -> Result<(), ReadEnd> {
        if self.eof {
            return Err(ReadEnd::Closed);
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
            Err(_) => Err(ReadEnd::TimedOut),
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                Err(ReadEnd::Closed)
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// Reads one response (with a `Content-Length` body, or up to the end of the connection);
    /// `Err` if the connection closed or stayed silent for [`NET_TIMEOUT`] before a complete
    /// status line and headers arrived.
    pub async fn response(&mut self) -> Result<RawResponse, ReadEnd> {
        self.response_within(NET_TIMEOUT).await
    }

    pub async fn response_within(&mut self, wait: Duration) -> Result<RawResponse, ReadEnd> {
        let deadline = tokio::time::Instant::now() + wait;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.fill(left).await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> =
            lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
        let length: Option<usize> =
            headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse().expect("content-length"));
        let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
        let start = head_end + 4;
        let body = if let Some(len) = length {
            while self.buf.len() < start + len {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if self.fill(left).await.is_err() {
                    panic!("the response body ended early: {:?}", String::from_utf8_lossy(&self.buf));
                }
            }
            let body = self.buf[start..start + len].to_vec();
            self.buf.drain(..start + len);
            body
        } else if chunked {
            loop {
                if let Some((body, used)) = dechunk(&self.buf[start..]) {
                    self.buf.drain(..start + used);
                    break body;
                }
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if self.fill(left).await.is_err() {
                    panic!("the chunked response ended early");
                }
            }
        } else {
            while self.fill(deadline.saturating_duration_since(tokio::time::Instant::now())).await.is_ok() {}
            let body = self.buf[start..].to_vec();
            self.buf.clear();
            body
        };
        Ok(RawResponse { status, headers, body })
    }

    /// Waits up to `wait` for the connection to end; returns whatever arrived before.
    pub async fn read_to_end_within(&mut self, wait: Duration) -> (Vec<u8>, ReadEnd) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Err(end) = self.fill(left).await {
                return (std::mem::take(&mut self.buf), end);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a complete chunked body; `None` while incomplete.
fn dechunk(mut data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = data.len();
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).expect("chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            let end = find(data, b"\r\n")?;
            data = &data[end + 2..];
            return Some((out, total - data.len()));
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `POST {path}` with `headers` (each `Name: value`) and a `Content-Length` body, as bytes.
pub fn post_request(path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n", body.len());
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `POST {path}` with `Transfer-Encoding: chunked`, the body sent in chunks of `chunk` bytes.
pub fn post_chunked(path: &str, headers: &[&str], body: &[u8], chunk: usize) -> Vec<u8> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    for piece in body.chunks(chunk) {
        bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        bytes.extend_from_slice(piece);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    bytes
}

// ---------------------------------------------------------------------------------------------
// Multipart bodies built by hand (for parts no form library produces)

pub const BOUNDARY: &str = "intake-test-boundary-7MA4YWxkTrZu0gW";

/// A `multipart/form-data` body, part by part.
#[derive(Default)]
pub struct Multipart {
    body: Vec<u8>,
}

impl Multipart {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn content_type() -> String {
        format!("multipart/form-data; boundary={BOUNDARY}")
    }

    /// A part with these raw header lines and content.
    pub fn part(mut self, headers: &[&str], content: &[u8]) -> Self {
        self.body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        for h in headers {
            self.body.extend_from_slice(h.as_bytes());
            self.body.extend_from_slice(b"\r\n");
        }
        self.body.extend_from_slice(b"\r\n");
        self.body.extend_from_slice(content);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn text(self, name: &str, value: &str) -> Self {
        self.part(&[&format!("Content-Disposition: form-data; name=\"{name}\"")], value.as_bytes())
    }

    pub fn file(self, name: &str, filename: &str, content_type: &str, content: &[u8]) -> Self {
        self.part(
            &[
                &format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\""),
                &format!("Content-Type: {content_type}"),
            ],
            content,
        )
    }

    /// The body so far, without the closing boundary (a form cut off).
    pub fn unfinished(&self) -> Vec<u8> {
        self.body.clone()
    }

    /// The complete body.
    pub fn finish(mut self) -> Vec<u8> {
        self.body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        self.body
    }
}
