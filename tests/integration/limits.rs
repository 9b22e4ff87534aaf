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
