//! tus 1.0 and IETF resumable-upload draft protocol tests, the tusd way: tables of
//! request/response cases, one file per HTTP method, against the in-memory store.
//!
//! A table runs its cases in order against one router, so a case can use an upload an earlier
//! case created: `.capture("a")` keeps the `Location` of a response, and `{a}` in a later path,
//! header or expected header stands for it. Every case of a table runs even when one fails; the
//! table then fails naming each failing case, what was sent and what came back.
//!
//! The routers here disable the rate limit. A disabled limit needs no `ConnectInfo`, but the
//! resumable routes may be limited on their own (a limit that is not disabled answers `500
//! client_unidentified` without a peer address), so every request carries one: a test makes far
//! fewer requests than any default burst.

#![cfg(feature = "router")]

mod delete;
mod draft;
mod get;
mod head;
mod hooks;
mod metadata;
mod options;
mod patch;
mod post;

use axum::{Router, body::Body, extract::ConnectInfo};
use base64::Engine as _;
use http::{Method, Request};
use http_body_util::BodyExt;
use intake::{UploadId, Uploads, rate_limit::RateLimitLayer, storage::InMemory};
use sha2::Digest as _;
use std::{collections::HashMap, fmt::Write as _, net::SocketAddr};
use tower::ServiceExt;

/// Where the upload router is nested in every test app.
pub const PREFIX: &str = "/files";
/// The tus endpoint of the test apps.
pub const TUS: &str = "/files/tus/";
/// The body type of tus appends.
pub const OFFSET_STREAM: &str = "application/offset+octet-stream";
/// The body type of IETF draft appends.
pub const PARTIAL_UPLOAD: &str = "application/partial-upload";
/// An id of the right form that no upload has.
pub const UNKNOWN_ID: &str = "0123456789abcdef0123456789abcdef";
/// The first bytes of an x86-64 ELF executable.
pub const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// The upload settings of these tests: the in-memory store, no rate limit.
pub fn uploads(store: &InMemory) -> Uploads {
    Uploads::new(store.clone()).rate_limit(RateLimitLayer::disabled())
}

/// The router nested under [`PREFIX`].
pub fn app(uploads: Uploads) -> Router {
    Router::new().nest(PREFIX, uploads.into_router())
}

/// What a response header must be.
#[derive(Clone, Debug)]
pub enum Expect {
    /// Exactly this value (after `{var}` substitution).
    Is(String),
    /// Present, with a value that starts with this.
    StartsWith(String),
    /// Present, any value.
    Present,
    /// A comma-separated list with each of these items (and possibly others).
    Lists(Vec<&'static str>),
    /// A comma-separated list without this item.
    Omits(&'static str),
    /// Not sent.
    Absent,
}

/// One request and what its response must be.
#[derive(Clone, Debug, Default)]
pub struct Case {
    pub name: &'static str,
    pub method: Method,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub expect_status: u16,
    pub expect_headers: Vec<(&'static str, Expect)>,
    /// The `code` member of the `application/problem+json` body.
    pub expect_code: Option<&'static str>,
    /// Other members of the JSON body.
    pub expect_json: Vec<(&'static str, serde_json::Value)>,
    pub expect_body: Option<Vec<u8>>,
    /// Keeps the response's `Location` (or the `location` member of its problem) as this variable.
    pub capture: Option<&'static str>,
}

impl Case {
    pub fn new(name: &'static str, method: &str, path: impl Into<String>) -> Self {
        Self { name, method: method.parse().expect("a method"), path: path.into(), ..Self::default() }
    }

    /// `Tus-Resumable: 1.0.0`.
    pub fn tus(self) -> Self {
        self.header("tus-resumable", "1.0.0")
    }

    /// `Upload-Draft-Interop-Version: 8`.
    pub fn draft(self) -> Self {
        self.header("upload-draft-interop-version", "8")
    }

    /// Sets a request header, replacing one set before.
    pub fn header(self, name: &'static str, value: impl Into<String>) -> Self {
        let mut case = self.without(name);
        case.headers.push((name, value.into()));
        case
    }

    /// Leaves out a request header set before.
    pub fn without(mut self, name: &'static str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.expect_status = status;
        self
    }

    pub fn expect(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.expect_headers.push((name, Expect::Is(value.into())));
        self
    }

    pub fn starts_with(mut self, name: &'static str, prefix: impl Into<String>) -> Self {
        self.expect_headers.push((name, Expect::StartsWith(prefix.into())));
        self
    }

    pub fn present(mut self, name: &'static str) -> Self {
        self.expect_headers.push((name, Expect::Present));
        self
    }

    pub fn lists(mut self, name: &'static str, items: &[&'static str]) -> Self {
        self.expect_headers.push((name, Expect::Lists(items.to_vec())));
        self
    }

    pub fn omits(mut self, name: &'static str, item: &'static str) -> Self {
        self.expect_headers.push((name, Expect::Omits(item)));
        self
    }

    pub fn absent(mut self, name: &'static str) -> Self {
        self.expect_headers.push((name, Expect::Absent));
        self
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.expect_code = Some(code);
        self
    }

    pub fn json(mut self, key: &'static str, value: impl Into<serde_json::Value>) -> Self {
        self.expect_json.push((key, value.into()));
        self
    }

    pub fn expect_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.expect_body = Some(body.into());
        self
    }

    pub fn capture(mut self, var: &'static str) -> Self {
        self.capture = Some(var);
        self
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A router and the variables its tables captured.
pub struct Session {
    pub app: Router,
    pub vars: HashMap<String, String>,
}

impl Session {
    pub fn new(app: Router) -> Self {
        Self { app, vars: HashMap::new() }
    }

    /// A session on a router over `store` built by [`uploads`].
    pub fn memory(store: &InMemory) -> Self {
        Self::new(app(uploads(store)))
    }

    /// Replaces every `{var}` by its captured value.
    pub fn fill(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (name, value) in &self.vars {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }

    /// The URL captured as `var`.
    pub fn url(&self, var: &str) -> &str {
        self.vars.get(var).unwrap_or_else(|| panic!("no upload was captured as {var:?}"))
    }

    /// The id of the upload captured as `var`.
    pub fn id(&self, var: &str) -> UploadId {
        let url = self.url(var);
        UploadId::parse(url.rsplit('/').next().unwrap_or_default()).unwrap_or_else(|| panic!("{url} does not end with an id"))
    }

    /// Sends one case's request (paths, headers filled in; `Content-Length` added for a `POST` or
    /// `PATCH` that does not set it) and reads the whole response.
    pub async fn send(&mut self, case: &Case) -> Answer {
        let mut req = Request::builder().method(case.method.clone()).uri(self.fill(&case.path));
        for (name, value) in &case.headers {
            req = req.header(*name, self.fill(value));
        }
        let sets_length = case.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
        if !sets_length && (case.method == Method::POST || case.method == Method::PATCH) {
            req = req.header("content-length", case.body.len());
        }
        let mut req = req.body(Body::from(case.body.clone())).expect("a valid request");
        req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40000))));
        let res = self.app.clone().oneshot(req).await.expect("the router is infallible");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.expect("the response body reads").to_bytes().to_vec();
        let answer = Answer { status, headers, body };
        // A refused creation-with-upload names the upload it created in its problem document.
        let location = answer.header("location").map(str::to_owned).or_else(|| {
            let json: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
            json["location"].as_str().map(str::to_owned)
        });
        if let (Some(var), Some(location)) = (case.capture, location) {
            self.vars.insert(var.to_owned(), location);
        }
        answer
    }

    /// Runs a table in order; panics at the end naming every case that failed.
    pub async fn run(&mut self, cases: &[Case]) {
        let mut failures = Vec::new();
        for case in cases {
            if self.fill(&case.path).contains('{') {
                failures.push(format!("case {:?}: {} names an upload no earlier case captured", case.name, case.path));
                continue;
            }
            let answer = self.send(case).await;
            let problems = self.check(case, &answer);
            if !problems.is_empty() {
                failures.push(format!(
                    "case {:?}: {} {}\n  {}\n  got {} {:?}\n  body {}",
                    case.name,
                    case.method,
                    self.fill(&case.path),
                    problems.join("\n  "),
                    answer.status,
                    answer.headers,
                    String::from_utf8_lossy(&answer.body)
                ));
            }
        }
        assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    }

    fn check(&self, case: &Case, answer: &Answer) -> Vec<String> {
        let mut problems = Vec::new();
        if answer.status != case.expect_status {
            problems.push(format!("status: expected {}, got {}", case.expect_status, answer.status));
        }
        for (name, expect) in &case.expect_headers {
            let got = answer.header(name);
            let ok = match expect {
                Expect::Is(value) => got == Some(self.fill(value).as_str()),
                Expect::StartsWith(prefix) => got.is_some_and(|g| g.starts_with(&self.fill(prefix))),
                Expect::Present => got.is_some(),
                Expect::Lists(items) => got.is_some_and(|g| items.iter().all(|i| g.split(',').any(|x| x.trim() == *i))),
                Expect::Omits(item) => got.is_some_and(|g| g.split(',').all(|x| x.trim() != *item)),
                Expect::Absent => !answer.headers.contains_key(*name),
            };
            if !ok {
                problems.push(format!("header {name}: expected {expect:?}, got {got:?}"));
            }
        }
        if case.expect_code.is_some() || !case.expect_json.is_empty() {
            match serde_json::from_slice::<serde_json::Value>(&answer.body) {
                Ok(json) => {
                    if let Some(code) = case.expect_code {
                        if json["code"] != code {
                            problems.push(format!("code: expected {code:?}, got {}", json["code"]));
                        }
                        if answer.header("content-type") != Some("application/problem+json") {
                            problems
                                .push(format!("a problem is application/problem+json, not {:?}", answer.header("content-type")));
                        }
                    }
                    for (key, value) in &case.expect_json {
                        let value = match value {
                            serde_json::Value::String(s) => serde_json::Value::String(self.fill(s)),
                            other => other.clone(),
                        };
                        if json[key] != value {
                            problems.push(format!("json {key}: expected {value}, got {}", json[key]));
                        }
                    }
                }
                Err(e) => problems.push(format!("the body is not JSON ({e})")),
            }
        }
        if let Some(body) = &case.expect_body {
            if &answer.body != body {
                problems.push(format!("body: expected {:?}", String::from_utf8_lossy(body)));
            }
        }
        problems
    }
}

/// A tus creation of an upload of `length` bytes, kept as `var`.
pub fn create(name: &'static str, var: &'static str, length: u64) -> Case {
    Case::new(name, "POST", TUS).tus().header("upload-length", length.to_string()).status(201).capture(var)
}

/// A tus creation-with-upload of `body`, declaring `length`, kept as `var`.
pub fn create_with(name: &'static str, var: &'static str, length: u64, body: &[u8]) -> Case {
    create(name, var, length).header("content-type", OFFSET_STREAM).body(body).expect("upload-offset", body.len().to_string())
}

/// A tus append of `body` at `offset` to the upload kept as `var`.
pub fn patch(name: &'static str, var: &str, offset: u64, body: &[u8]) -> Case {
    Case::new(name, "PATCH", format!("{{{var}}}"))
        .tus()
        .header("content-type", OFFSET_STREAM)
        .header("upload-offset", offset.to_string())
        .body(body)
}

/// A tus `HEAD` of the upload kept as `var`.
pub fn head(name: &'static str, var: &str) -> Case {
    Case::new(name, "HEAD", format!("{{{var}}}")).tus()
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}
