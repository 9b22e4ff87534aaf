//! The URLs the router hands out: tus and draft `Location`s, the partial uploads listed in a
//! final upload's `Upload-Concat`, the chunked API's `Location` and `url`, and every file's `url`
//! (and the `Location` of form and raw uploads).
//!
//! They are absolute by default, `http://127.0.0.1:3000/upload/tus/{id}`, because clients in the
//! wild assume so: the tus spec allows a relative `Location`, but tusd answers absolute ones, and
//! some clients (aiotus) refuse to join a relative one to the endpoint. Each URL is
//! `{origin}{prefix the router is nested under}/…`, the origin chosen by [`UrlBase`]:
//!
//! | [`UrlBase`] | origin |
//! |---|---|
//! | [`Public`](UrlBase::Public) ([`Uploads::public_url`](crate::Uploads::public_url)) | always the configured [`PublicUrl`]; nothing in a request changes it |
//! | [`FromRequest`](UrlBase::FromRequest) (default) | the request's own scheme and authority, or what a trusted proxy forwarded |
//! | [`Relative`](UrlBase::Relative) ([`Uploads::relative_urls`](crate::Uploads::relative_urls)) | none: server-relative URLs, `/upload/tus/{id}` |
//!
//! # Security
//!
//! A URL the server hands out is followed by the client with the file's bytes, so whoever
//! chooses its origin can send a client elsewhere. Hence:
//!
//! - **A configured public URL always wins.** Behind a proxy, or wherever the server cannot know
//!   the name clients use, configure [`Uploads::public_url`](crate::Uploads::public_url).
//! - **`Host` is believed only as the request's own authority**: the name the client itself
//!   connected to (the request target's authority when it has one, as in HTTP/2, else the one
//!   `Host` header). A client that lies in it only misleads itself. Served behind a shared cache
//!   that keys on something else than `Host`, configure a public URL.
//! - **`Forwarded` (`host=`, `proto=`) and `X-Forwarded-Host` / `X-Forwarded-Proto` are believed
//!   only from a trusted proxy** — when the connection's peer address (axum's
//!   `ConnectInfo<SocketAddr>`) is one of [`Uploads::trusted_proxies`](crate::Uploads::trusted_proxies)
//!   — like tusd behind a proxy. From anyone else they are ignored. `Forwarded` wins over
//!   `X-Forwarded-*`; of several `Forwarded` elements, the one added by the outermost trusted
//!   proxy in the chain of `for=` addresses is used; of several `X-Forwarded-*` values, the last
//!   (the one our proxy added). A trusted proxy must therefore set or remove both kinds of
//!   headers on every request it passes on (nginx passes a client's `Forwarded` through unless
//!   told `proxy_set_header Forwarded "";`).
//! - **Every authority is validated** before it goes into a URL: a host name of letters,
//!   digits, `-`, `.`, `_`, an IPv4 address or a bracketed IPv6 address, and an optional port
//!   from 1 to 65535. A `Host` with `/`, `@`, `\`, spaces, quotes, non-ASCII bytes, a second
//!   header line or a bad port, and a scheme other than `http` or `https`, never make a URL: the
//!   router answers a relative URL instead, so it never points a client anywhere the request did
//!   not already name.
//! - The scheme of a request nobody forwarded is `http` unless its target says `https` (HTTP/2):
//!   a server that terminates TLS itself should configure a public URL.
//!
//! # Examples
//!
//! ```
//! use intake::{Uploads, storage::InMemory, urls::PublicUrl};
//!
//! // Behind a proxy, at a known public address.
//! let uploads = Uploads::new(InMemory::new()).public_url("https://files.example.com".parse::<PublicUrl>()?);
//! # let _ = uploads;
//! // Or believe the proxy at 10.0.0.1 about the host and scheme clients used.
//! let uploads = Uploads::new(InMemory::new()).trusted_proxies(["10.0.0.1".parse()?]);
//! # let _ = uploads;
//! // Or hand out server-relative URLs, as before absolute URLs were the default.
//! let uploads = Uploads::new(InMemory::new()).relative_urls();
//! # let _ = uploads;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use axum::extract::{ConnectInfo, NestedPath};
use http::{HeaderMap, Uri, request::Parts};
use std::{
    borrow::Cow,
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
    sync::Arc,
};

/// Where the absolute URLs the router hands out start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlBase {
    /// The scheme and authority of each request, or those a trusted proxy forwarded (see the
    /// [module docs](self)); a relative URL when they are missing or invalid.
    #[default]
    FromRequest,
    /// Always this URL.
    Public(PublicUrl),
    /// Server-relative URLs: `/upload/tus/{id}`.
    Relative,
}

/// The URL clients reach the app at: `http` or `https`, a host, an optional port, and an
/// optional path prefix that a proxy adds in front of the app (`https://example.com/app`). The
/// router's URLs are this followed by the prefix the router is nested under.
///
/// ```
/// use intake::urls::PublicUrl;
/// let url: PublicUrl = "https://files.example.com/app/".parse().unwrap();
/// assert_eq!(url.as_str(), "https://files.example.com/app");
/// assert!("ftp://files.example.com".parse::<PublicUrl>().is_err());
/// assert!("https://user@files.example.com".parse::<PublicUrl>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PublicUrl(Arc<str>);

impl PublicUrl {
    /// The URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PublicUrl {
    type Err = InvalidPublicUrl;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidPublicUrl { input: s.to_owned(), reason };
        let uri: Uri = s.parse().map_err(|_| invalid("not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => "http",
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => "https",
            _ => return Err(invalid("the scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if !is_valid_authority(authority.as_str()) {
            return Err(invalid("the host must be a name or an IP address with an optional port, without user information"));
        }
        if uri.query().is_some() || s.contains('#') {
            return Err(invalid("a base URL has no query or fragment"));
        }
        Ok(Self(format!("{scheme}://{authority}{}", uri.path().trim_end_matches('/')).into()))
    }
}

/// Why a string is not a [`PublicUrl`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidPublicUrl {
    input: String,
    reason: &'static str,
}

impl fmt::Display for InvalidPublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a public base URL: {}", self.input, self.reason)
    }
}

impl std::error::Error for InvalidPublicUrl {}

/// What the handlers of one router need to build URLs; the router puts it into every request's
/// extensions, so the handlers' URL helpers need nothing but the request.
#[derive(Clone, Debug)]
pub(crate) struct UrlSettings {
    base: UrlBase,
    trusted: Arc<[IpAddr]>,
}

impl UrlSettings {
    pub(crate) fn new(base: UrlBase, trusted_proxies: &[IpAddr]) -> Self {
        Self { base, trusted: trusted_proxies.iter().copied().map(canonical).collect() }
    }

    /// `scheme://authority[/path]`, or `None` for relative URLs.
    fn origin<'a>(&'a self, parts: &'a Parts) -> Option<Cow<'a, str>> {
        match &self.base {
            UrlBase::Public(url) => Some(Cow::Borrowed(url.as_str())),
            UrlBase::Relative => None,
            UrlBase::FromRequest => request_origin(parts, &self.trusted).map(Cow::Owned),
        }
    }
}

/// `{origin}{nested prefix}`, without a trailing slash: what the router's URLs start with.
pub(crate) fn base(parts: &Parts) -> String {
    let prefix = parts.extensions.get::<NestedPath>().map_or("", NestedPath::as_str).trim_end_matches('/');
    let origin = parts.extensions.get::<UrlSettings>().and_then(|settings| settings.origin(parts));
    format!("{}{prefix}", origin.as_deref().unwrap_or(""))
}

/// A forwarding header that is not visible ASCII: none of it is believed, and no URL is built.
struct Unreadable;

/// The origin of a request: its own, or the one a trusted proxy forwarded; `None` when any part
/// of it is missing or not valid.
fn request_origin(parts: &Parts, trusted: &[IpAddr]) -> Option<String> {
    let from_proxy =
        parts.extensions.get::<ConnectInfo<SocketAddr>>().is_some_and(|peer| trusted.contains(&canonical(peer.0.ip())));
    let (mut proto, mut host) = (None, None);
    if from_proxy {
        let element = forwarded_element(&parts.headers, trusted).ok()?;
        host = element.host.or(last_value(&parts.headers, "x-forwarded-host").ok()?);
        proto = element.proto.or(last_value(&parts.headers, "x-forwarded-proto").ok()?);
    }
    let scheme = match proto {
        Some(proto) if proto.eq_ignore_ascii_case("http") => "http",
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        Some(_) => return None,
        None => match parts.uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        },
    };
    let authority = match host {
        Some(host) => host,
        None => own_authority(parts)?,
    };
    is_valid_authority(authority).then(|| format!("{scheme}://{authority}"))
}

/// The authority the client connected to: the request target's (absolute-form, HTTP/2), else the
/// single `Host` header.
fn own_authority(parts: &Parts) -> Option<&str> {
    if let Some(authority) = parts.uri.authority() {
        return Some(authority.as_str());
    }
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let host = hosts.next()?;
    if hosts.next().is_some() {
        return None;
    }
    host.to_str().ok()
}

/// The last of the comma-separated values of a header, all its lines together.
fn last_value<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Unreadable> {
    let mut last = None;
    for line in headers.get_all(name) {
        last = Some(line.to_str().map_err(|_| Unreadable)?);
    }
    Ok(last.map(|line| line.rsplit(',').next().unwrap_or_default().trim()))
}

/// What one `Forwarded` element says about the client's request.
#[derive(Debug, Default)]
struct ForwardedElement<'a> {
    host: Option<&'a str>,
    proto: Option<&'a str>,
}

/// The `Forwarded` element added by the outermost trusted proxy: walking from the last element
/// (added by our peer), an element whose `for=` is itself a trusted proxy was added after that
/// proxy's own element, the one before it.
fn forwarded_element<'a>(headers: &'a HeaderMap, trusted: &[IpAddr]) -> Result<ForwardedElement<'a>, Unreadable> {
    let mut elements = Vec::new();
    for line in headers.get_all(http::header::FORWARDED) {
        elements.extend(line.to_str().map_err(|_| Unreadable)?.split(',').map(pairs));
    }
    let Some(mut i) = elements.len().checked_sub(1) else { return Ok(ForwardedElement::default()) };
    while i > 0 && param(&elements[i], "for").and_then(node_ip).is_some_and(|ip| trusted.contains(&canonical(ip))) {
        i -= 1;
    }
    Ok(ForwardedElement { host: param(&elements[i], "host"), proto: param(&elements[i], "proto") })
}

/// The `name=value` pairs of one `Forwarded` element, quotes removed. (A quoted value holding
/// `,` or `;` is cut apart here, and the pieces, holding a quote, are no valid host.)
fn pairs(element: &str) -> Vec<(&str, &str)> {
    element
        .split(';')
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            let value = value.trim();
            Some((name.trim(), value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)))
        })
        .collect()
}

fn param<'a>(pairs: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
}

/// The address of a `for=` node: `1.2.3.4`, `1.2.3.4:80`, `[::1]`, `[::1]:80`.
fn node_ip(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    node.parse().ok().or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `host[:port]` with a host name of letters, digits, `-`, `.` and `_`, an IPv4 address or a
/// bracketed IPv6 address, and a port from 1 to 65535. Nothing else may go into a URL.
fn is_valid_authority(authority: &str) -> bool {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let Some((v6, after)) = bracketed.split_once(']') else { return false };
            let port = match after {
                "" => None,
                after => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            (v6.parse::<Ipv6Addr>().is_ok(), port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            let name_ok = !host.is_empty()
                && host.len() <= 253
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            (name_ok, port)
        }
    };
    host_ok && port.is_none_or(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0))
}

/// The URL under which this router's files download: `{origin}{nested prefix}/files`.
pub(crate) fn files_url(parts: &Parts) -> String {
    format!("{}/files", base(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    const PROXY: &str = "10.0.0.1";

    fn parts(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = Request::get("/tus/").body(()).unwrap();
        for (name, value) in headers {
            req.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 40000)));
        req.into_parts().0
    }

    fn origin(base: UrlBase, peer: &str, headers: &[(&str, &str)]) -> Option<String> {
        let settings = UrlSettings::new(base, &[PROXY.parse().unwrap(), "10.0.0.2".parse().unwrap()]);
        settings.origin(&parts(peer, headers)).map(Cow::into_owned)
    }

    /// A case: its name, the setting, the peer address, the request headers, the origin expected.
    type OriginCase = (&'static str, UrlBase, &'static str, &'static [(&'static str, &'static str)], Option<&'static str>);

    #[test]
    fn origins() {
        let public = UrlBase::Public("https://files.example.com/app/".parse().unwrap());
        #[rustfmt::skip]
        let cases: &[OriginCase] = &[
            ("the request's Host", UrlBase::FromRequest, "192.0.2.7", &[("host", "127.0.0.1:3000")], Some("http://127.0.0.1:3000")),
            ("a bracketed IPv6 Host", UrlBase::FromRequest, "192.0.2.7", &[("host", "[::1]:8080")], Some("http://[::1]:8080")),
            ("a host name without port", UrlBase::FromRequest, "192.0.2.7", &[("host", "uploads.example.com")], Some("http://uploads.example.com")),
            ("no Host: relative", UrlBase::FromRequest, "192.0.2.7", &[], None),
            ("two Host headers: relative", UrlBase::FromRequest, "192.0.2.7", &[("host", "a.example"), ("host", "b.example")], None),
            ("relative whatever the request says", UrlBase::Relative, "192.0.2.7", &[("host", "127.0.0.1:3000")], None),
            ("a public URL wins over Host", public.clone(), "192.0.2.7", &[("host", "evil.example")], Some("https://files.example.com/app")),
            ("a public URL wins over a trusted proxy", public, PROXY, &[("host", "backend"), ("x-forwarded-host", "other.example")], Some("https://files.example.com/app")),
            // Forwarding headers from anyone but a trusted proxy are ignored.
            ("X-Forwarded-Host from a client", UrlBase::FromRequest, "192.0.2.7", &[("host", "127.0.0.1:3000"), ("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "https")], Some("http://127.0.0.1:3000")),
            ("Forwarded from a client", UrlBase::FromRequest, "192.0.2.7", &[("host", "127.0.0.1:3000"), ("forwarded", "host=evil.example;proto=https")], Some("http://127.0.0.1:3000")),
            // From a trusted proxy they are believed.
            ("X-Forwarded-Host/Proto from the proxy", UrlBase::FromRequest, PROXY, &[("host", "backend:3000"), ("x-forwarded-host", "files.example.com"), ("x-forwarded-proto", "https")], Some("https://files.example.com")),
            ("IPv4-mapped proxy address", UrlBase::FromRequest, "::ffff:10.0.0.1", &[("host", "backend:3000"), ("x-forwarded-proto", "https")], Some("https://backend:3000")),
            ("only X-Forwarded-Proto", UrlBase::FromRequest, PROXY, &[("host", "files.example.com"), ("x-forwarded-proto", "HTTPS")], Some("https://files.example.com")),
            ("the last X-Forwarded-Host is our proxy's", UrlBase::FromRequest, PROXY, &[("host", "backend"), ("x-forwarded-host", "evil.example, files.example.com")], Some("http://files.example.com")),
            ("the last line too", UrlBase::FromRequest, PROXY, &[("host", "backend"), ("x-forwarded-host", "evil.example"), ("x-forwarded-host", "files.example.com")], Some("http://files.example.com")),
            ("Forwarded from the proxy", UrlBase::FromRequest, PROXY, &[("host", "backend"), ("forwarded", "for=192.0.2.7;host=files.example.com;proto=https")], Some("https://files.example.com")),
            ("Forwarded, quoted and with a port", UrlBase::FromRequest, PROXY, &[("host", "backend"), ("forwarded", "for=\"[2001:db8::7]:4711\";Host=\"files.example.com:8443\";Proto=https")], Some("https://files.example.com:8443")),
            ("Forwarded wins over X-Forwarded-*", UrlBase::FromRequest, PROXY, &[("host", "backend"), ("x-forwarded-host", "x.example"), ("forwarded", "host=files.example.com")], Some("http://files.example.com")),
            ("Forwarded without host: X-Forwarded-Host", UrlBase::FromRequest, PROXY, &[("host", "backend"), ("x-forwarded-host", "x.example"), ("forwarded", "for=192.0.2.7;proto=https")], Some("https://x.example")),
            // A client's own Forwarded element before the proxy's is skipped.
            ("the client's element is not the proxy's", UrlBase::FromRequest, PROXY, &[("host", "backend"), ("forwarded", "for=6.6.6.6;host=evil.example, for=192.0.2.7;host=files.example.com")], Some("http://files.example.com")),
            // Through two trusted proxies, the outer one's element names the public host.
            ("two trusted proxies", UrlBase::FromRequest, PROXY, &[("host", "backend"), ("forwarded", "for=6.6.6.6;host=evil.example, for=192.0.2.7;host=files.example.com;proto=https, for=10.0.0.2;host=inner.lan")], Some("https://files.example.com")),
            // Nothing invalid makes a URL.
            ("a Host with a path", UrlBase::FromRequest, "192.0.2.7", &[("host", "evil.example/x")], None),
            ("a Host with user information", UrlBase::FromRequest, "192.0.2.7", &[("host", "127.0.0.1:3000@evil.example")], None),
            ("a Host with a space", UrlBase::FromRequest, "192.0.2.7", &[("host", "evil.example x")], None),
            ("a Host with a backslash", UrlBase::FromRequest, "192.0.2.7", &[("host", "evil.example\\x")], None),
            ("a non-ASCII Host", UrlBase::FromRequest, "192.0.2.7", &[("host", "évil.example")], None),
            ("a port out of range", UrlBase::FromRequest, "192.0.2.7", &[("host", "127.0.0.1:65536")], None),
            ("port 0", UrlBase::FromRequest, "192.0.2.7", &[("host", "127.0.0.1:0")], None),
            ("an empty port", UrlBase::FromRequest, "192.0.2.7", &[("host", "127.0.0.1:")], None),
            ("two colons", UrlBase::FromRequest, "192.0.2.7", &[("host", "a:1:2")], None),
            ("not an IPv6 address", UrlBase::FromRequest, "192.0.2.7", &[("host", "[evil.example]")], None),
            ("text after the brackets", UrlBase::FromRequest, "192.0.2.7", &[("host", "[::1]evil")], None),
            ("an invalid forwarded host", UrlBase::FromRequest, PROXY, &[("host", "backend"), ("x-forwarded-host", "evil.example/x")], None),
            ("an invalid forwarded proto", UrlBase::FromRequest, PROXY, &[("host", "backend"), ("x-forwarded-proto", "javascript")], None),
            ("an invalid Forwarded host", UrlBase::FromRequest, PROXY, &[("host", "backend"), ("forwarded", "host=\"a@b\"")], None),
        ];
        let mut failures = Vec::new();
        for (name, base, peer, headers, expected) in cases {
            let got = origin(base.clone(), peer, headers);
            if got.as_deref() != *expected {
                failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a_request_without_a_peer_address_is_nobody_s_proxy() {
        let mut parts = parts(PROXY, &[("host", "backend"), ("x-forwarded-host", "files.example.com")]);
        parts.extensions.remove::<ConnectInfo<SocketAddr>>();
        let settings = UrlSettings::new(UrlBase::FromRequest, &[PROXY.parse().unwrap()]);
        assert_eq!(settings.origin(&parts).as_deref(), Some("http://backend"));
    }

    #[test]
    fn an_absolute_request_target_names_the_authority() {
        let req = Request::get("https://files.example.com:8443/tus/").header("host", "other.example").body(()).unwrap();
        let settings = UrlSettings::new(UrlBase::FromRequest, &[]);
        assert_eq!(settings.origin(&req.into_parts().0).as_deref(), Some("https://files.example.com:8443"));
    }

    #[test]
    fn public_urls() {
        #[rustfmt::skip]
        let cases: &[(&str, Result<&str, ()>)] = &[
            ("https://files.example.com", Ok("https://files.example.com")),
            ("https://files.example.com/", Ok("https://files.example.com")),
            ("HTTP://files.example.com:8080/app/", Ok("http://files.example.com:8080/app")),
            ("http://[::1]:3000", Ok("http://[::1]:3000")),
            ("files.example.com", Err(())),
            ("/upload", Err(())),
            ("ftp://files.example.com", Err(())),
            ("https://user:pw@files.example.com", Err(())),
            ("https://files.example.com:99999", Err(())),
            ("https://files.example.com/?a=b", Err(())),
            ("https://files.example.com/#x", Err(())),
            ("https://", Err(())),
        ];
        for (input, expected) in cases {
            let got = input.parse::<PublicUrl>();
            assert_eq!(got.as_ref().map(PublicUrl::as_str).map_err(|_| ()), *expected, "{input}");
        }
        assert!(
            "ftp://x".parse::<PublicUrl>().unwrap_err().to_string().contains("http or https"),
            "the error says what is wrong"
        );
    }
}
