//! Forwarded headers and hop-by-hop handling, as pure functions over bytes.
//!
//! `X-Forwarded-*` from a client are believed only when the connection comes
//! from a configured trusted proxy; otherwise Pylon overwrites them, so a
//! client cannot choose the address that rate limits and access rules see.

use std::net::IpAddr;

use ipnet::IpNet;

pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 peers (dual-stack listeners) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The real client address: the TCP peer, or, when the peer is a trusted
/// proxy, the right-most `X-Forwarded-For` entry that is not itself trusted
/// (nginx's `real_ip_recursive on`).
pub fn real_client_ip(peer: IpAddr, xff: Option<&[u8]>, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let Some(xff) = xff.and_then(|v| std::str::from_utf8(v).ok()) else {
        return peer;
    };
    let mut last = peer;
    for entry in xff.rsplit(',') {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) => {
                let ip = canonical(ip);
                if !is_trusted(ip, trusted) {
                    return ip;
                }
                last = ip;
            }
            // Garbage in a trusted chain: stop at what we could verify.
            Err(_) => return last,
        }
    }
    last
}

/// The `X-Forwarded-For` value to send upstream: the trusted chain plus the
/// peer, or only the peer when the incoming header cannot be trusted.
pub fn forwarded_for(peer: IpAddr, incoming: Option<&[u8]>, trusted: &[IpNet]) -> String {
    let peer = canonical(peer);
    match incoming.and_then(|v| std::str::from_utf8(v).ok()) {
        Some(chain) if is_trusted(peer, trusted) && !chain.trim().is_empty() => {
            format!("{}, {peer}", chain.trim())
        }
        _ => peer.to_string(),
    }
}

/// The scheme the client used: the listener's, or a trusted proxy's claim.
pub fn forwarded_proto(
    listener_scheme: &'static str,
    peer_trusted: bool,
    incoming: Option<&[u8]>,
) -> &'static str {
    match incoming {
        Some(b"https") if peer_trusted => "https",
        Some(b"http") if peer_trusted => "http",
        _ => listener_scheme,
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// removed in both directions. `Transfer-Encoding` is left to Pingora, which
/// owns the framing.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Names a `Connection` header nominates as hop-by-hop, lower-cased.
pub fn connection_nominated(values: impl Iterator<Item = impl AsRef<[u8]>>) -> Vec<String> {
    let mut out = Vec::new();
    for v in values {
        let Ok(s) = std::str::from_utf8(v.as_ref()) else {
            continue;
        };
        for token in s.split(',') {
            let t = token.trim().to_ascii_lowercase();
            if !t.is_empty() && t != "close" && t != "keep-alive" && !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_address() {
        let peer: IpAddr = "203.0.113.7".parse().unwrap();
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(real_client_ip(peer, Some(b"1.2.3.4"), &trusted), peer);
        assert_eq!(
            forwarded_for(peer, Some(b"1.2.3.4"), &trusted),
            "203.0.113.7"
        );
        assert_eq!(forwarded_proto("http", false, Some(b"https")), "http");
    }

    #[test]
    fn trusted_chains_are_walked_from_the_right() {
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            real_client_ip(peer, Some(b"198.51.100.1, 10.9.9.9"), &trusted).to_string(),
            "198.51.100.1"
        );
        assert_eq!(
            real_client_ip(peer, Some(b"6.6.6.6, 198.51.100.1"), &trusted).to_string(),
            "198.51.100.1"
        );
        assert_eq!(
            real_client_ip(peer, Some(b"junk, 10.9.9.9"), &trusted).to_string(),
            "10.9.9.9"
        );
        assert_eq!(real_client_ip(peer, None, &trusted), peer);
        assert_eq!(
            forwarded_for(peer, Some(b"198.51.100.1"), &trusted),
            "198.51.100.1, 10.1.2.3"
        );
        assert_eq!(forwarded_proto("http", true, Some(b"https")), "https");
    }

    #[test]
    fn mapped_ipv6_is_ipv4() {
        let peer: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(is_trusted(peer, &nets(&["10.0.0.0/8"])));
        assert_eq!(forwarded_for(peer, None, &[]), "10.1.2.3");
    }

    #[test]
    fn connection_tokens() {
        let v =
            connection_nominated([&b"keep-alive, X-Foo"[..], &b"close,x-bar ,"[..]].into_iter());
        assert_eq!(v, vec!["x-foo", "x-bar"]);
    }
}
