//! The URLs the router hands out: absolute by default (from the request's own `Host`), from a
//! configured public URL, from a trusted proxy's forwarding headers, or relative on request; and
//! never pointing anywhere a bad `Host` names.

use crate::common::*;
use serde_json::json;

const TUS: (&str, &str) = ("tus-resumable", "1.0.0");

/// What each protocol answers a new upload of `data` with: the tus and draft `Location`s, the
/// chunked API's `Location` and `url`, the raw `Location` and `url`, the form's `url`. Every URL
/// is followed, so a wrong one fails here too.
async fn handed_out(server: &TestServer, host: Option<&str>, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let data = b"hello, absolute world".to_vec();
    let with = |req: reqwest::RequestBuilder| {
        let req = match host {
            Some(host) => req.header("host", host),
            None => req,
        };
        extra.iter().fold(req, |req, (name, value)| req.header(*name, *value))
    };
    let mut urls = Vec::new();

    let res = bounded(
        "tus creation",
        with(server.client.post(server.url("/tus/")))
            .header(TUS.0, TUS.1)
            .header("upload-length", data.len())
            .header("content-type", "application/offset+octet-stream")
            .body(data.clone())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    urls.push(("tus Location", header(&res, "location").expect("tus Location")));

    let res = bounded(
        "draft creation",
        with(server.client.post(server.url("/tus/")))
            .header("upload-draft-interop-version", "8")
            .header("upload-complete", "?0")
            .body(data[..5].to_vec())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    urls.push(("draft Location", header(&res, "location").expect("draft Location")));

    let res = bounded(
        "chunked init",
        with(server.client.post(server.url("/chunked/init")))
            .json(&json!({"filename": "c.txt", "total_size": data.len(), "chunk_size": data.len()}))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    urls.push(("chunked Location", header(&res, "location").expect("chunked Location")));
    let id = bounded("init body", res.json::<serde_json::Value>()).await.unwrap()["id"].as_str().unwrap().to_owned();
    let res = bounded(
        "chunk",
        with(server.client.post(server.url(&format!("/chunked/chunk?upload_id={id}&chunk=0")))).body(data.clone()).send(),
    )
    .await
    .unwrap();
    assert!(res.status().is_success(), "chunk: {}", res.status());
    let res = bounded("complete", with(server.client.post(server.url(&format!("/chunked/complete?upload_id={id}")))).send())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    urls.push((
        "chunked url",
        bounded("complete body", res.json::<serde_json::Value>()).await.unwrap()["url"].as_str().unwrap().into(),
    ));

    let res = bounded("raw", with(server.client.post(server.url("/raw?name=r.txt"))).body(data.clone()).send()).await.unwrap();
    urls.push(("raw Location", header(&res, "location").expect("raw Location")));
    urls.push(("raw url", assert_created(res).await["files"][0]["url"].as_str().unwrap().into()));

    let form = Multipart::new().file("f", "f.txt", "text/plain", &data);
    let res = bounded(
        "form",
        with(server.client.post(server.url("/form")))
            .header("content-type", Multipart::content_type())
            .body(form.finish())
            .send(),
    )
    .await
    .unwrap();
    urls.push(("form url", assert_created(res).await["files"][0]["url"].as_str().unwrap().into()));
    urls
}

/// Follows a URL handed out by `server` (`base` replaced by the server's own address): it must
/// lead to what it names.
async fn follow(server: &TestServer, what: &str, url: &str, base: &str) {
    let real =
        url.strip_prefix(base).map(|rest| server.absolute(rest)).unwrap_or_else(|| panic!("{what} {url} starts with {base}"));
    let (req, expected) = if what.starts_with("draft") {
        // An unfinished draft upload: HEAD tells its offset.
        (server.client.head(&real).header("upload-draft-interop-version", "8"), 204)
    } else {
        (server.client.get(&real).header(TUS.0, TUS.1), 200)
    };
    let res = bounded(what, req.send()).await.unwrap();
    assert_eq!(res.status(), expected, "{what}: {real}");
}

#[tokio::test]
async fn urls_are_absolute_by_default() {
    let server = TestServer::memory(|u| u).await;
    let base = format!("{}{PREFIX}/", server.origin());
    for (what, url) in handed_out(&server, None, &[]).await {
        assert!(url.starts_with(&base), "{what}: {url} is absolute, under {base}");
        follow(&server, what, &url, &server.origin()).await;
    }
}

#[tokio::test]
async fn a_public_url_wins_over_host_and_forwarding_headers() {
    let public = "https://files.example.com/app";
    let server =
        TestServer::memory(|u| u.public_url(public.parse().unwrap()).trusted_proxies(["127.0.0.1".parse().unwrap()])).await;
    let claims = [("x-forwarded-host", "evil.example"), ("forwarded", "host=evil.example;proto=http")];
    for (what, url) in handed_out(&server, Some("evil.example"), &claims).await {
        assert!(url.starts_with(&format!("{public}{PREFIX}/")), "{what}: {url} is under the public URL");
        follow(&server, what, &url, public).await;
    }
}

#[tokio::test]
async fn relative_urls_on_request() {
    let server = TestServer::memory(|u| u.relative_urls()).await;
    for (what, url) in handed_out(&server, None, &[]).await {
        assert!(url.starts_with(&format!("{PREFIX}/")), "{what}: {url} is server-relative");
        follow(&server, what, &url, "").await;
    }
}

#[tokio::test]
async fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let forwarded = [("x-forwarded-host", "files.example.com:8443"), ("x-forwarded-proto", "https")];
    // The test client connects from 127.0.0.1: first it is the trusted proxy...
    let server = TestServer::memory(|u| u.trusted_proxies(["127.0.0.1".parse().unwrap()])).await;
    for (what, url) in handed_out(&server, None, &forwarded).await {
        assert!(
            url.starts_with(&format!("https://files.example.com:8443{PREFIX}/")),
            "{what}: {url} is what the proxy forwarded"
        );
        follow(&server, what, &url, "https://files.example.com:8443").await;
    }
    // ... then anybody.
    let server = TestServer::memory(|u| u.trusted_proxies(["10.0.0.1".parse().unwrap()])).await;
    for (what, url) in handed_out(&server, None, &forwarded).await {
        assert!(url.starts_with(&format!("{}{PREFIX}/", server.origin())), "{what}: {url} ignores what a client forwarded");
        follow(&server, what, &url, &server.origin()).await;
    }
}

#[tokio::test]
async fn a_host_that_is_no_authority_never_makes_a_url() {
    let server = TestServer::memory(|u| u).await;
    let hosts: &[&[u8]] = &[
        b"evil.example/x",
        b"127.0.0.1@evil.example",
        b"evil.example:99999",
        b"evil.example:0",
        b"evil.example x",
        b"evil.example\\x",
        b"\"evil.example\"",
        "évil.example".as_bytes(),
        b"",
    ];
    for host in hosts {
        let mut request = b"POST /upload/tus/ HTTP/1.1\r\nHost: ".to_vec();
        request.extend_from_slice(host);
        request
            .extend_from_slice(b"\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let res = server.raw(&request).await;
        let shown = String::from_utf8_lossy(host);
        assert_eq!(res.status, 201, "Host {shown:?}");
        let location = res.header("location").expect("Location");
        assert!(location.starts_with("/upload/tus/"), "Host {shown:?} gave {location:?}");
    }
    // Two Host headers: neither is believed.
    let res = server
        .raw(b"POST /upload/tus/ HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(res.status, 201);
    assert!(res.header("location").expect("Location").starts_with("/upload/tus/"), "{:?}", res.header("location"));
}
