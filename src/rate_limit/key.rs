use axum::extract::ConnectInfo;
use http::{HeaderMap, HeaderName, Request, header::FORWARDED};
use std::{
    fmt::{self, Debug, Display},
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
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

/// Keys by client IP: the connection's peer address or — only when that peer is a trusted
/// proxy — the address the proxies recorded in one configured header (`X-Forwarded-For` by
/// default).
///
/// The header is read from the right, the end our own proxies append to: each trusted address
/// is a proxy of ours and is passed over, and the first address that is not trusted is the
/// client. Whatever lies left of it came from the client and is never believed, nor is any
/// other forwarding header (a `Forwarded` the client adds beside the proxy's
/// `X-Forwarded-For` changes nothing). An entry that is not an address (`unknown`, an
/// obfuscated `Forwarded` node, garbage) stops the walk: the key is then the nearest hop we
/// could identify. Several header lines count as one list, in order.
///
/// An IPv6 client gets a whole network in practice (a /64 is the usual smallest allocation), so
/// IPv6 addresses are keyed by their first 64 bits unless [`ipv6_prefix`](Self::ipv6_prefix)
/// says otherwise; IPv4-mapped IPv6 addresses count as IPv4, which is keyed whole.
#[derive(Clone, Debug)]
pub struct PeerIp {
    trusted: Arc<[IpRange]>,
    header: HeaderName,
    ipv6_prefix: u8,
}

impl Default for PeerIp {
    fn default() -> Self {
        Self { trusted: Arc::new([]), header: HeaderName::from_static("x-forwarded-for"), ipv6_prefix: 64 }
    }
}

impl PeerIp {
    /// Keys by peer address, trusting no proxy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the forwarding header from these proxies only.
    pub fn with_trusted_proxies(proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        Self::default().trust(proxies.into_iter().map(IpRange::from))
    }

    /// Also trusts these proxies: single addresses or networks (`"10.0.0.0/8".parse()`).
    pub fn trust(mut self, proxies: impl IntoIterator<Item = IpRange>) -> Self {
        self.trusted = self.trusted.iter().copied().chain(proxies).collect();
        self
    }

    /// The header trusted proxies record the client in (default `X-Forwarded-For`). `Forwarded`
    /// is read as RFC 7239 (its `for=` parameters); any other header (`X-Real-IP`,
    /// `CF-Connecting-IP`, ...) as a comma-separated list of addresses.
    pub fn forwarded_header(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }

    /// How many leading bits of an IPv6 client address make its key (default 64; 128 keys
    /// each address on its own).
    ///
    /// # Panics
    /// If `bits` is over 128.
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        assert!(bits <= 128, "an IPv6 prefix is at most 128 bits, not {bits}");
        self.ipv6_prefix = bits;
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|range| range.contains(ip))
    }

    /// The client address of a request from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.is_trusted(client) {
            return client;
        }
        for entry in forwarded_entries(headers, &self.header).into_iter().rev() {
            let Some(ip) = entry else { break };
            client = canonical(ip);
            if !self.is_trusted(client) {
                break;
            }
        }
        client
    }

    /// The rate-limit key of a request from `peer`: its [client address](Self::client_ip),
    /// reduced to its network for IPv6.
    pub fn key(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        match self.client_ip(peer, headers) {
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask::<u128>(self.ipv6_prefix))),
            v4 => v4,
        }
    }
}

impl KeyExtractor for PeerIp {
    type Key = IpAddr;

    fn extract<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let ConnectInfo(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>()?;
        Some(self.key(peer.ip(), req.headers()))
    }
}

/// A range of IP addresses: one address (`10.0.0.1`) or a network in CIDR notation
/// (`10.0.0.0/8`, `fd00::/8`). IPv4-mapped IPv6 ranges count as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// The addresses whose first `prefix` bits are those of `addr`; `None` when `prefix` is
    /// longer than the address (32 bits for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => (canonical(addr), prefix - 96),
            other => (other, prefix),
        };
        let network = match addr {
            IpAddr::V4(v4) if prefix <= 32 => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask::<u32>(prefix))),
            IpAddr::V6(v6) if prefix <= 128 => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask::<u128>(prefix))),
            _ => return None,
        };
        Some(Self { network, prefix })
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask::<u32>(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask::<u128>(self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

impl From<IpAddr> for IpRange {
    fn from(ip: IpAddr) -> Self {
        let ip = canonical(ip);
        Self { network: ip, prefix: if ip.is_ipv4() { 32 } else { 128 } }
    }
}

impl FromStr for IpRange {
    type Err = InvalidIpRange;

    fn from_str(s: &str) -> Result<Self, InvalidIpRange> {
        let invalid = || InvalidIpRange(s.to_owned());
        match s.split_once('/') {
            None => s.parse::<IpAddr>().map(Self::from).map_err(|_| invalid()),
            Some((addr, prefix)) => {
                let addr = addr.parse().map_err(|_| invalid())?;
                let prefix = prefix.parse().map_err(|_| invalid())?;
                Self::new(addr, prefix).ok_or_else(invalid)
            }
        }
    }
}

impl Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A string that is neither an IP address nor a network in CIDR notation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidIpRange(String);

impl Display for InvalidIpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not an IP address or a network such as 10.0.0.0/8", self.0)
    }
}

impl std::error::Error for InvalidIpRange {}

/// The first `bits` bits set.
fn mask<T: MaskBits>(bits: u8) -> T {
    T::mask(bits)
}

trait MaskBits {
    fn mask(bits: u8) -> Self;
}

impl MaskBits for u32 {
    fn mask(bits: u8) -> Self {
        u32::MAX.checked_shl(32 - u32::from(bits.min(32))).unwrap_or(0)
    }
}

impl MaskBits for u128 {
    fn mask(bits: u8) -> Self {
        u128::MAX.checked_shl(128 - u32::from(bits.min(128))).unwrap_or(0)
    }
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The entries of `header`, every line of it in order, from the original client to the nearest
/// proxy; `None` for an entry that is not an address. Empty list elements are no entries (RFC
/// 9110 §5.6.1).
fn forwarded_entries(headers: &HeaderMap, header: &HeaderName) -> Vec<Option<IpAddr>> {
    let mut entries = Vec::new();
    for line in headers.get_all(header) {
        let Ok(line) = line.to_str() else {
            entries.push(None);
            continue;
        };
        for element in line.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let node = if header == FORWARDED {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"'))
                })
            } else {
                Some(element)
            };
            entries.push(node.and_then(parse_node));
        }
    }
    entries
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

    /// One request: who sent it, with which headers, and the key it must get.
    struct Case {
        name: &'static str,
        peer: &'static str,
        headers: &'static [(&'static str, &'static str)],
        key: &'static str,
    }

    fn run(keys: &PeerIp, cases: &[Case]) {
        let failures: Vec<String> = cases
            .iter()
            .filter_map(|c| {
                let got = keys.key(ip(c.peer), &headers(c.headers));
                (got != ip(c.key)).then(|| format!("{}: expected {}, got {got}", c.name, c.key))
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The proxies in front of the server: 10.0.0.1 talks to it, 10.0.0.2 to 10.0.0.1.
    fn behind_two_proxies() -> PeerIp {
        PeerIp::with_trusted_proxies([ip("10.0.0.1"), ip("10.0.0.2")])
    }

    #[test]
    fn x_forwarded_for_is_read_from_the_right() {
        run(
            &behind_two_proxies(),
            &[
                Case { name: "one proxy", peer: "10.0.0.1", headers: &[("x-forwarded-for", "1.2.3.4")], key: "1.2.3.4" },
                Case {
                    name: "a spoofed leftmost address",
                    peer: "10.0.0.1",
                    headers: &[("x-forwarded-for", "6.6.6.6, 1.2.3.4")],
                    key: "1.2.3.4",
                },
                Case {
                    name: "spoofed addresses that name our proxies",
                    peer: "10.0.0.1",
                    headers: &[("x-forwarded-for", "6.6.6.6, 10.0.0.2, 1.2.3.4, 10.0.0.2")],
                    key: "1.2.3.4",
                },
                Case {
                    name: "the client's own header line, then the proxy's",
                    peer: "10.0.0.1",
                    headers: &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "1.2.3.4")],
                    key: "1.2.3.4",
                },
                Case {
                    name: "lines and commas mixed",
                    peer: "10.0.0.1",
                    headers: &[("x-forwarded-for", "6.6.6.6, 7.7.7.7"), ("x-forwarded-for", "1.2.3.4, 10.0.0.2")],
                    key: "1.2.3.4",
                },
                Case {
                    name: "garbage left of the client",
                    peer: "10.0.0.1",
                    headers: &[("x-forwarded-for", "not-an-ip, <script>, 1.2.3.4")],
                    key: "1.2.3.4",
                },
                Case {
                    name: "garbage written by our own proxy: the nearest hop we know",
                    peer: "10.0.0.1",
                    headers: &[("x-forwarded-for", "1.2.3.4, unknown, 10.0.0.2")],
                    key: "10.0.0.2",
                },
                Case {
                    name: "empty entries are skipped",
                    peer: "10.0.0.1",
                    headers: &[("x-forwarded-for", "1.2.3.4, ,")],
                    key: "1.2.3.4",
                },
                Case {
                    name: "ports and brackets",
                    peer: "10.0.0.1",
                    headers: &[("x-forwarded-for", "6.6.6.6, [2001:db8::1]:4711")],
                    key: "2001:db8::",
                },
                Case { name: "only our proxies", peer: "10.0.0.1", headers: &[("x-forwarded-for", "10.0.0.2")], key: "10.0.0.2" },
                Case { name: "no header", peer: "10.0.0.1", headers: &[], key: "10.0.0.1" },
                Case {
                    name: "an untrusted peer is the client, whatever it sends",
                    peer: "192.0.2.9",
                    headers: &[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")],
                    key: "192.0.2.9",
                },
            ],
        );
    }

    #[test]
    fn a_forwarded_header_from_the_client_changes_nothing() {
        run(
            &behind_two_proxies(),
            &[
                Case {
                    name: "Forwarded added by the client, X-Forwarded-For by the proxy",
                    peer: "10.0.0.1",
                    headers: &[("forwarded", "for=6.6.6.6"), ("x-forwarded-for", "1.2.3.4")],
                    key: "1.2.3.4",
                },
                Case {
                    name: "Forwarded naming a trusted proxy",
                    peer: "10.0.0.1",
                    headers: &[("forwarded", "for=10.0.0.2"), ("x-forwarded-for", "1.2.3.4")],
                    key: "1.2.3.4",
                },
            ],
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_bit_prefix() {
        run(
            &PeerIp::default(),
            &[
                Case { name: "one /64", peer: "2001:db8:1:2:aaaa::1", headers: &[], key: "2001:db8:1:2::" },
                Case { name: "the same /64", peer: "2001:db8:1:2:ffff:ffff:ffff:ffff", headers: &[], key: "2001:db8:1:2::" },
                Case { name: "the next /64", peer: "2001:db8:1:3::1", headers: &[], key: "2001:db8:1:3::" },
                Case { name: "IPv4-mapped is IPv4", peer: "::ffff:192.0.2.1", headers: &[], key: "192.0.2.1" },
                Case { name: "IPv4 is whole", peer: "192.0.2.1", headers: &[], key: "192.0.2.1" },
            ],
        );
        run(
            &behind_two_proxies(),
            &[Case {
                name: "a forwarded IPv6 client",
                peer: "10.0.0.1",
                headers: &[("x-forwarded-for", "2001:db8::1:2:3:4")],
                key: "2001:db8::",
            }],
        );
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_key() {
        let keys = PeerIp::with_trusted_proxies([ip("10.0.0.1")]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(keys.client_ip(ip("192.0.2.9"), &h), ip("192.0.2.9"));
    }

    #[test]
    fn a_configured_header_is_the_only_one_read() {
        let forwarded = behind_two_proxies().forwarded_header(FORWARDED);
        run(
            &forwarded,
            &[
                Case {
                    name: "Forwarded, spoofed on the left",
                    peer: "10.0.0.1",
                    headers: &[("forwarded", "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https")],
                    key: "2001:db8::",
                },
                Case {
                    name: "an X-Forwarded-For beside it is the client's",
                    peer: "10.0.0.1",
                    headers: &[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=1.2.3.4")],
                    key: "1.2.3.4",
                },
                Case {
                    name: "an obfuscated node written by our proxy",
                    peer: "10.0.0.1",
                    headers: &[("forwarded", "for=1.2.3.4, for=_hidden, for=10.0.0.2")],
                    key: "10.0.0.2",
                },
                Case {
                    name: "an element without for=",
                    peer: "10.0.0.1",
                    headers: &[("forwarded", "for=1.2.3.4, proto=https")],
                    key: "10.0.0.1",
                },
                Case { name: "For= in any case", peer: "10.0.0.1", headers: &[("forwarded", "FOR=1.2.3.4")], key: "1.2.3.4" },
            ],
        );
        let real_ip = behind_two_proxies().forwarded_header(HeaderName::from_static("x-real-ip"));
        run(
            &real_ip,
            &[
                Case { name: "X-Real-IP", peer: "10.0.0.1", headers: &[("x-real-ip", "1.2.3.4")], key: "1.2.3.4" },
                Case {
                    name: "X-Forwarded-For is not read",
                    peer: "10.0.0.1",
                    headers: &[("x-forwarded-for", "6.6.6.6"), ("x-real-ip", "1.2.3.4")],
                    key: "1.2.3.4",
                },
                Case { name: "nor Forwarded", peer: "10.0.0.1", headers: &[("forwarded", "for=6.6.6.6")], key: "10.0.0.1" },
            ],
        );
    }

    #[test]
    fn proxies_may_be_trusted_by_network() {
        let keys = PeerIp::new().trust(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        run(
            &keys,
            &[
                Case {
                    name: "a chain of proxies in the network",
                    peer: "10.1.2.3",
                    headers: &[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.200.0.1, 10.9.9.9")],
                    key: "1.2.3.4",
                },
                Case { name: "an IPv6 proxy", peer: "fd12::1", headers: &[("x-forwarded-for", "1.2.3.4")], key: "1.2.3.4" },
                Case {
                    name: "an IPv4-mapped peer",
                    peer: "::ffff:10.0.0.1",
                    headers: &[("x-forwarded-for", "1.2.3.4")],
                    key: "1.2.3.4",
                },
                Case {
                    name: "outside the network",
                    peer: "11.0.0.1",
                    headers: &[("x-forwarded-for", "1.2.3.4")],
                    key: "11.0.0.1",
                },
            ],
        );
    }

    #[test]
    fn the_ipv6_prefix_is_configurable() {
        let whole = PeerIp::new().ipv6_prefix(128);
        let wide = PeerIp::new().ipv6_prefix(48);
        let peer = ip("2001:db8:1:2:3:4:5:6");
        assert_eq!(whole.key(peer, &HeaderMap::new()), peer);
        assert_eq!(wide.key(peer, &HeaderMap::new()), ip("2001:db8:1::"));
        assert_eq!(PeerIp::new().ipv6_prefix(0).key(peer, &HeaderMap::new()), ip("::"));
        assert_eq!(wide.key(ip("192.0.2.1"), &HeaderMap::new()), ip("192.0.2.1"), "IPv4 is keyed whole");
        assert!(std::panic::catch_unwind(|| PeerIp::new().ipv6_prefix(129)).is_err());
    }

    #[test]
    fn ranges_parse() {
        let cases: [(&str, Option<&str>); 9] = [
            ("10.0.0.1", Some("10.0.0.1/32")),
            ("10.1.2.3/8", Some("10.0.0.0/8")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("2001:db8::1/32", Some("2001:db8::/32")),
            ("::ffff:10.0.0.0/104", Some("10.0.0.0/8")),
            ("::1", Some("::1/128")),
            ("10.0.0.0/33", None),
            ("10.0.0.0/", None),
            ("localhost", None),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<IpRange>().ok().map(|r| r.to_string()).as_deref(), expected, "{text}");
        }
        let any: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(ip("203.0.113.9")) && !any.contains(ip("2001:db8::1")));
    }

    #[test]
    fn a_trusted_peer_without_headers_is_the_client() {
        let keys = PeerIp::with_trusted_proxies([ip("::ffff:10.0.0.1")]);
        assert_eq!(keys.client_ip(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
    }
}
