//! Hardening limits over real HTTP: rate-limit keys behind a proxy, active content in SVG.

use crate::common::*;
use intake::rate_limit::RateLimitLayer;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Rate-limit keys behind a proxy

/// The server trusts 127.0.0.1 (the test client) as its proxy: each request says, in the headers
/// that proxy would send, which client it forwards. One request per second per client.
#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_told_apart_by_what_the_proxy_appended() {
    let server = TestServer::memory(|u| {
        u.rate_limit(RateLimitLayer::per_second(1).burst(1).trusted_proxies(["127.0.0.1".parse().unwrap()]))
    })
    .await;
    let started = Instant::now();
    // (what, X-Forwarded-For lines, Forwarded, whether it gets its own quota)
    let cases: [(&str, &[&str], Option<&str>, bool); 7] = [
        ("a client", &["198.51.100.7"], Some("for=203.0.113.1"), true),
        ("the same client with another Forwarded", &["198.51.100.7"], Some("for=203.0.113.2"), false),
        ("the same client with a spoofed leftmost address", &["203.0.113.3, 198.51.100.7"], None, false),
        ("the same client's spoof on a line of its own", &["203.0.113.4", "198.51.100.7"], None, false),
        ("another client", &["198.51.100.8"], None, true),
        ("an IPv6 client", &["2001:db8:0:1::1"], None, true),
        ("another address in its /64", &["2001:db8:0:1:ffff::2"], None, false),
    ];
    let mut failures = Vec::new();
    for (what, lines, forwarded, own_quota) in cases {
        let mut req = server.client.post(server.url("/raw?name=a.txt")).body("x");
        for line in lines {
            req = req.header("x-forwarded-for", *line);
        }
        if let Some(f) = forwarded {
            req = req.header("forwarded", f);
        }
        let res = bounded(what, req.send()).await.unwrap();
        let expected = if own_quota { 201 } else { 429 };
        if res.status() != expected {
            failures.push(format!("{what}: expected {expected}, got {}", res.status()));
        }
    }
    // A quota refills within a second: only a run that fast proves anything about the 429s.
    if started.elapsed() < Duration::from_millis(900) {
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    } else {
        eprintln!("the machine was too slow to check rate limits ({:?}): {failures:?}", started.elapsed());
    }
}

// ---------------------------------------------------------------------------------------------
// Active content in SVG

/// An SVG whose first 100 KiB are harmless shapes, then `tail`, then the end of the document;
/// with an XML declaration first if `prolog`.
fn padded_svg(prolog: bool, tail: &str) -> Vec<u8> {
    let mut svg = String::from(if prolog { "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" } else { "" });
    svg.push_str(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" width=\"10\" height=\"10\">\n",
    );
    while svg.len() < 100 * 1024 {
        svg.push_str("  <rect x=\"1\" y=\"1\" width=\"2\" height=\"2\" fill=\"#c0ffee\"/>\n");
    }
    svg.push_str(tail);
    svg.push_str("\n</svg>\n");
    svg.into_bytes()
}

/// What an SVG upload must get: (what, the SVG's tail after 100 KiB, status, code).
const SVG_CASES: [(&str, &str, u16, Option<&str>); 7] = [
    ("a harmless SVG", "<circle cx=\"5\" cy=\"5\" r=\"4\"/>", 201, None),
    ("an onload handler", "<g onload=\"alert(document.domain)\"/>", 415, Some("active_content")),
    ("a script element", "<script>alert(1)</script>", 415, Some("active_content")),
    (
        "a foreignObject",
        "<foreignObject><div xmlns=\"http://www.w3.org/1999/xhtml\">hi</div></foreignObject>",
        415,
        Some("active_content"),
    ),
    (
        "an obfuscated javascript: link",
        "<a xlink:href=\" jav&#x09;ascript:alert(1)\"><text>x</text></a>",
        415,
        Some("active_content"),
    ),
    ("a use of another document", "<use href=\"https://evil.example/sprite.svg#x\"/>", 415, Some("active_content")),
    (
        "an animation to a javascript: URL",
        "<a><set attributeName=\"href\" to=\"javascript:alert(1)\"/></a>",
        415,
        Some("active_content"),
    ),
];

#[tokio::test]
async fn active_content_deep_in_a_raw_svg_is_refused_and_nothing_is_stored() {
    let mut failures = Vec::new();
    for ((what, tail, status, code), prolog) in SVG_CASES.into_iter().flat_map(|c| [(c, false), (c, true)]) {
        let what = format!("{what}{}", if prolog { " after an XML declaration" } else { "" });
        let what = what.as_str();
        let server = TestServer::default_disk().await;
        let req = server.client.post(server.url("/raw?name=logo.svg")).body(padded_svg(prolog, tail));
        let res = bounded(what, req.send()).await.unwrap();
        let got = res.status().as_u16();
        let body: serde_json::Value = bounded("body", res.json()).await.unwrap_or_default();
        if got != status || code.is_some_and(|c| body["code"] != c) {
            failures.push(format!("{what}: expected {status} {code:?}, got {got} {body}"));
        }
        if status == 201 {
            if body["files"][0]["content_type"] != "image/svg+xml" || server.object_ids().len() != 1 {
                failures.push(format!("{what}: not stored as one image/svg+xml: {body}"));
            }
        } else {
            server.wait_for_no_partials().await;
            if !server.list("objects").is_empty() || !server.partial_files().is_empty() {
                failures.push(format!("{what}: stored {:?}", server.list("objects")));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn active_content_deep_in_a_form_svg_is_refused_and_nothing_is_stored() {
    let mut failures = Vec::new();
    for ((what, tail, status, code), prolog) in SVG_CASES.into_iter().flat_map(|c| [(c, false), (c, true)]) {
        let what = format!("{what}{}", if prolog { " after an XML declaration" } else { "" });
        let what = what.as_str();
        let server = TestServer::default_disk().await;
        // A harmless file first: the whole form is refused, so it is not kept either.
        let form = Multipart::new()
            .file("notes", "notes.txt", "text/plain", b"harmless")
            .file("logo", "logo.svg", "image/svg+xml", &padded_svg(prolog, tail))
            .finish();
        let res = server.post_form(what, form).await;
        let got = res.status().as_u16();
        let body: serde_json::Value = bounded("body", res.json()).await.unwrap_or_default();
        if got != status || code.is_some_and(|c| body["code"] != c) {
            failures.push(format!("{what}: expected {status} {code:?}, got {got} {body}"));
        }
        if status == 201 {
            if server.object_ids().len() != 2 {
                failures.push(format!("{what}: both files are stored"));
            }
        } else {
            server.wait_for_no_partials().await;
            if !server.list("objects").is_empty() || !server.partial_files().is_empty() {
                failures.push(format!("{what}: stored {:?}", server.list("objects")));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn markup_past_the_scan_limit_is_413_and_other_images_are_not_limited() {
    let policy = intake::sniff::ContentPolicy::default().markup_scan_limit(64 * 1024);
    let server = TestServer::disk(|u| u.content_policy(policy)).await;
    let res =
        bounded("svg", server.client.post(server.url("/raw?name=big.svg")).body(padded_svg(false, "")).send()).await.unwrap();
    let json = assert_problem(res, 413, "markup_too_large").await;
    assert_eq!(json["limit"], 64 * 1024);
    server.assert_nothing_stored().await;
    // A PNG of the same size is not markup: the limit does not apply.
    let mut png = PNG.to_vec();
    png.resize(100 * 1024, 0);
    let res = bounded("png", server.client.post(server.url("/raw?name=big.png")).body(png).send()).await.unwrap();
    assert_eq!(assert_created(res).await["files"][0]["content_type"], "image/png");
}

/// Sends `data` as a tus upload in `piece`-byte PATCHes; the last answer.
async fn tus_upload(server: &TestServer, name: &str, data: &[u8], piece: usize) -> reqwest::Response {
    let res = server
        .client
        .post(server.url("/tus/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", data.len())
        .header("upload-metadata", format!("filename {}", base64_of(name.as_bytes())))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = server.absolute(&header(&res, "location").unwrap());
    let mut offset = 0;
    loop {
        let end = (offset + piece).min(data.len());
        let res = server
            .client
            .patch(&location)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset)
            .header("content-type", "application/offset+octet-stream")
            .body(data[offset..end].to_vec())
            .send()
            .await
            .unwrap();
        if end == data.len() || res.status() != 204 {
            return res;
        }
        offset = end;
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn active_content_deep_in_a_resumable_svg_is_refused_and_nothing_is_stored() {
    // Past the sniffing window only the whole file shows what an SVG does: a tus upload sent in
    // small PATCHes (or resumed after a refused one) and a chunked upload are scanned when their
    // last byte is in, and refused whole.
    let mut failures = Vec::new();
    for (what, tail, status, code) in SVG_CASES {
        let svg = padded_svg(false, tail);
        let server = TestServer::default_disk().await;
        let res = tus_upload(&server, "logo.svg", &svg, 16 * 1024).await;
        let got = res.status().as_u16();
        let expected = if status == 201 { 204 } else { status };
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        if got != expected || code.is_some_and(|c| body["code"] != c) {
            failures.push(format!("tus, {what}: expected {expected} {code:?}, got {got} {body}"));
        }
        if status != 201 && (!server.object_ids().is_empty() || !server.partial_files().is_empty()) {
            failures.push(format!("tus, {what}: stored {:?} {:?}", server.object_ids(), server.partial_files()));
        }

        let init = serde_json::json!({"filename": "logo.svg", "total_size": svg.len(), "chunk_size": 16 * 1024});
        let res = server.client.post(server.url("/chunked/init")).json(&init).send().await.unwrap();
        let id = res.json::<serde_json::Value>().await.unwrap()["upload_id"].as_str().unwrap().to_owned();
        for (n, chunk) in svg.chunks(16 * 1024).enumerate() {
            let url = server.url(&format!("/chunked/chunk?upload_id={id}&chunk={n}"));
            assert_eq!(server.client.post(url).body(chunk.to_vec()).send().await.unwrap().status(), 200);
        }
        let res = server.client.post(server.url(&format!("/chunked/complete?upload_id={id}"))).send().await.unwrap();
        let got = res.status().as_u16();
        let expected = if status == 201 { 200 } else { status };
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        if got != expected || code.is_some_and(|c| body["code"] != c) {
            failures.push(format!("chunked, {what}: expected {expected} {code:?}, got {got} {body}"));
        }
        let kept = if status == 201 { 2 } else { 0 };
        if server.object_ids().len() != kept {
            failures.push(format!("chunked, {what}: {} objects kept, expected {kept}", server.object_ids().len()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
