//! The rate limiter's client address from `Forwarded` / `X-Forwarded-For`. The first byte picks
//! the peer (trusted or not, IPv4 or IPv6, IPv4-mapped); each further line is a header, its first
//! byte `F` for `Forwarded`, anything else `X-Forwarded-For`. An untrusted peer's headers are
//! ignored; a trusted peer's yield its own address or one the headers name.
#![no_main]

use http::HeaderMap;
use intake::rate_limit::PeerIp;
use intake_fuzz::{header_value, lines};
use libfuzzer_sys::fuzz_target;
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::LazyLock,
};

const PEERS: [IpAddr; 6] = [
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)),
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0209)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
];

static KEYS: LazyLock<PeerIp> = LazyLock::new(|| PeerIp::with_trusted_proxies([PEERS[0], "10.0.0.2".parse().unwrap(), PEERS[2]]));

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Every address that any piece of the header values spells, however loosely.
fn spelled(headers: &HeaderMap) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for value in headers.values().filter_map(|v| v.to_str().ok()) {
        for token in value.split(|c: char| matches!(c, ',' | ';' | '=' | '"' | '[' | ']') || c.is_whitespace()) {
            let candidates = [
                token.parse::<IpAddr>().ok(),
                token.parse::<SocketAddr>().ok().map(|s| s.ip()),
                token.rsplit_once(':').and_then(|(host, _)| host.parse().ok()),
            ];
            out.extend(candidates.into_iter().flatten().map(canonical));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let peer = PEERS[usize::from(pick) % PEERS.len()];
    let mut headers = HeaderMap::new();
    for line in lines(rest) {
        let Some((&kind, value)) = line.split_first() else { continue };
        let Some(value) = header_value(value) else { continue };
        headers.append(if kind == b'F' { "forwarded" } else { "x-forwarded-for" }, value);
    }
    let client = KEYS.client_ip(peer, &headers);
    assert_eq!(client, canonical(client), "an IPv4-mapped key {client}");
    if usize::from(pick) % PEERS.len() >= 3 {
        assert_eq!(client, canonical(peer), "an untrusted peer chose its key with {headers:?}");
    } else if client != canonical(peer) {
        assert!(spelled(&headers).contains(&client), "{client} is named nowhere in {headers:?}");
    }
});
