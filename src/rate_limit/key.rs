use axum::extract::ConnectInfo;
use http::{HeaderMap, Request};
use std::{
    fmt::{Debug, Display},
    hash::Hash,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

/// Chooses the rate-limit key of a request. `None` means the client cannot be identified; the
/// request is refused rather than pooled with others.
pub trait KeyExtractor: Clone + Send + Sync + 'static {
    /// The key.
    type Key: Hash + Eq + Clone + Debug + Display + Send + Sync + 'static;

    /// The key of `req`.
    fn extract<B>(&self, req: &Request<B>) -> Option<Self::Key>;
}

/// Keys by client IP: the connection's peer address, or — only when that peer is a trusted
/// proxy — the nearest untrusted address in `Forwarded` / `X-Forwarded-For`.
#[derive(Clone, Debug, Default)]
pub struct PeerIp {
    trusted: Arc<[IpAddr]>,
}

impl PeerIp {
    /// Trusts forwarding headers from these proxies only.
    pub fn with_trusted_proxies(proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        Self { trusted: proxies.into_iter().map(canonical).collect() }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.contains(&canonical(ip))
    }

    /// The client address of a request from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return canonical(peer);
        }
        // Walk the chain from the nearest hop outwards; the first address not ours is the client.
        let chain = forwarded_chain(headers);
        chain.iter().rev().copied().find(|ip| !self.is_trusted(*ip)).or(chain.first().copied()).map_or(canonical(peer), canonical)
    }
}

impl KeyExtractor for PeerIp {
    type Key = IpAddr;

    fn extract<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let ConnectInfo(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>()?;
        Some(self.client_ip(peer.ip(), req.headers()))
    }
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Addresses from `Forwarded` (RFC 7239 `for=`) if present, else `X-Forwarded-For`, in order
/// from the original client to the nearest proxy. Unparseable entries (`unknown`, obfuscated
/// identifiers) end the chain there, so nothing before them is believed.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let forwarded: Vec<String> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"').to_owned())
            })
        })
        .collect();
    let entries: Vec<String> = if forwarded.is_empty() {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .collect()
    } else {
        forwarded
    };
    let parsed: Vec<Option<IpAddr>> = entries.iter().map(|e| parse_node(e)).collect();
    // Keep only the unbroken run of parseable addresses nearest to us.
    let start = parsed.iter().rposition(Option::is_none).map_or(0, |i| i + 1);
    parsed[start..].iter().map(|ip| ip.expect("checked")).collect()
}

fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    node.parse::<SocketAddr>().ok().map(|s| s.ip()).or_else(|| node.rsplit_once(':')?.0.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_key() {
        let keys = PeerIp::with_trusted_proxies([ip("10.0.0.1")]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(keys.client_ip(ip("192.0.2.9"), &h), ip("192.0.2.9"));
    }

    #[test]
    fn trusted_proxies_forward_the_nearest_untrusted_address() {
        let keys = PeerIp::with_trusted_proxies([ip("10.0.0.1"), ip("10.0.0.2")]);
        // The client claims 6.6.6.6; the real client is 1.2.3.4, appended by our first proxy.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.2")]);
        assert_eq!(keys.client_ip(ip("10.0.0.1"), &h), ip("1.2.3.4"));
        let h = headers(&[("forwarded", "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https")]);
        assert_eq!(keys.client_ip(ip("10.0.0.1"), &h), ip("2001:db8::1"));
        let h = headers(&[("forwarded", "for=unknown, for=1.2.3.4")]);
        assert_eq!(keys.client_ip(ip("10.0.0.1"), &h), ip("1.2.3.4"));
    }

    #[test]
    fn a_trusted_peer_without_headers_is_the_client() {
        let keys = PeerIp::with_trusted_proxies([ip("::ffff:10.0.0.1")]);
        assert_eq!(keys.client_ip(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
    }
}
