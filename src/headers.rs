//! Forwarded headers and hop-by-hop handling, as pure functions over bytes.
//!
//! `X-Forwarded-*` from a client are believed only when the connection comes
//! from a configured trusted proxy; otherwise Pylon overwrites them, so a
//! client cannot choose the address that rate limits and access rules see.

use std::net::IpAddr;
use std::sync::LazyLock;

use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use pingora::http::CasedHeaderName;

/// `name` written as `case`: parsed once, so inserting it parses nothing,
/// and written in the case the header has always had on the wire (Pingora
/// titles only a dozen standard names and writes others in lower case).
fn cased(name: &'static str, case: &'static str) -> CasedHeaderName {
    // Both are constants below, spelling the same name (a test builds each).
    CasedHeaderName::new(HeaderName::from_static(name), case)
        .unwrap_or_else(|e| panic!("header name {case}: {e}"))
}

/// Pylon's request id, on the upstream request and on every response.
pub static X_REQUEST_ID: LazyLock<CasedHeaderName> =
    LazyLock::new(|| cased("x-request-id", "x-request-id"));
pub static X_FORWARDED_FOR: LazyLock<CasedHeaderName> =
    LazyLock::new(|| cased("x-forwarded-for", "X-Forwarded-For"));
pub static X_REAL_IP: LazyLock<CasedHeaderName> = LazyLock::new(|| cased("x-real-ip", "X-Real-IP"));
pub static X_FORWARDED_PROTO: LazyLock<CasedHeaderName> =
    LazyLock::new(|| cased("x-forwarded-proto", "X-Forwarded-Proto"));
pub static X_FORWARDED_HOST: LazyLock<CasedHeaderName> =
    LazyLock::new(|| cased("x-forwarded-host", "X-Forwarded-Host"));
pub static X_FORWARDED_PREFIX: LazyLock<CasedHeaderName> =
    LazyLock::new(|| cased("x-forwarded-prefix", "X-Forwarded-Prefix"));

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
pub fn forwarded_for(peer: IpAddr, incoming: Option<&[u8]>, trusted: &[IpNet]) -> HeaderValue {
    let peer = canonical(peer);
    match incoming.and_then(|v| std::str::from_utf8(v).ok()) {
        Some(chain) if is_trusted(peer, trusted) && !chain.trim().is_empty() => {
            // The chain is text of a header value, so this is one too.
            HeaderValue::try_from(format!("{}, {peer}", chain.trim()))
                .unwrap_or_else(|_| ip_value(peer))
        }
        _ => ip_value(peer),
    }
}

/// An address as a header value, formatted on the stack: one allocation
/// (the value's own) instead of a `String` and then a copy of it. IPv4,
/// by far the most common, is written digit by digit: `Display` takes
/// the formatting machinery's general path, about 1,100 instructions an
/// address, several times the value's own cost.
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    use std::io::Write as _;
    let mut buf = [0u8; 48];
    let mut w = &mut buf[..];
    // 48 bytes hold any IPv4 or IPv6 text form (at most 45).
    match ip {
        IpAddr::V4(v4) => {
            for (i, n) in v4.octets().into_iter().enumerate() {
                let digits = [b'0' + n / 100, b'0' + n / 10 % 10, b'0' + n % 10];
                let skip = match n {
                    100.. => 0,
                    10.. => 1,
                    _ => 2,
                };
                let dot: &[u8] = if i == 0 { b"" } else { b"." };
                let _ = w.write_all(dot);
                let _ = w.write_all(digits.get(skip..).unwrap_or(&digits));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(w, "{v6}");
        }
    }
    let len = 48 - w.len();
    HeaderValue::from_bytes(buf.get(..len).unwrap_or_default())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
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

/// The number behind a request id: unique within this process (a counter)
/// and unlikely to repeat across processes (a random per-process key mixes
/// it).
fn request_id_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static KEY: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let key = *KEY.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    // splitmix64 of a distinct input per request: a bijection, so no repeats.
    let mut z = key.wrapping_add(
        NEXT.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A request id for `X-Request-Id`: 16 hex digits, built as a header value
/// without an intermediate `String`; clones of it (upstream request,
/// response) share its bytes.
pub fn new_request_id_value() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let id = request_id_u64();
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((id >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(&out))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Whether a client's `X-Request-Id` may be passed on: short, printable,
/// no spaces, so it cannot break a log line or a header.
pub fn acceptable_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic())
}

/// Where a plain-HTTP request is sent on HTTPS: the client's host name
/// (its port dropped), the public HTTPS port, the same path and query.
/// `None` when the Host is missing or not a plain host name or address, so
/// a crafted Host can never shape the redirect.
pub fn https_location(
    host: Option<&[u8]>,
    https_port: u16,
    path: &str,
    query: Option<&[u8]>,
) -> Option<String> {
    let host = std::str::from_utf8(host?).ok()?;
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.split(':').next()?
    };
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    if !ok {
        return None;
    }
    let mut out = format!("https://{name}");
    if https_port != 443 {
        out.push_str(&format!(":{https_port}"));
    }
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(std::str::from_utf8(q).ok()?);
    }
    Some(out)
}

/// Whether a `Host` value (port ignored, case-insensitive) is one of
/// `names`; any host is when `names` is empty.
pub fn host_allowed(host: Option<&[u8]>, names: &[String]) -> bool {
    if names.is_empty() {
        return true;
    }
    let Some(host) = host.and_then(|h| std::str::from_utf8(h).ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().map(|a| format!("[{a}]")),
        None => host.split(':').next().map(str::to_string),
    };
    name.is_some_and(|n| names.iter().any(|allowed| allowed.eq_ignore_ascii_case(&n)))
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// removed in both directions. `Transfer-Encoding` is left to Pingora, which
/// owns the framing.
pub static HOP_BY_HOP: [HeaderName; 6] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
];

/// Names a `Connection` header nominates as hop-by-hop, lower-cased.
pub fn connection_nominated(values: impl Iterator<Item = impl AsRef<[u8]>>) -> Vec<String> {
    let mut out = Vec::new();
    for v in values {
        let v = v.as_ref();
        // The usual value whole, before any splitting and trimming: it
        // nominates nothing.
        if v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close") {
            continue;
        }
        let Ok(s) = std::str::from_utf8(v) else {
            continue;
        };
        for token in s.split(',') {
            let t = token.trim();
            // Checked before lower-casing: `keep-alive`, the usual token,
            // needs no copy.
            if t.is_empty()
                || t.eq_ignore_ascii_case("close")
                || t.eq_ignore_ascii_case("keep-alive")
            {
                continue;
            }
            let t = t.to_ascii_lowercase();
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_header_names_keep_their_wire_case() {
        let names = [
            (&X_REQUEST_ID, "x-request-id"),
            (&X_FORWARDED_FOR, "X-Forwarded-For"),
            (&X_REAL_IP, "X-Real-IP"),
            (&X_FORWARDED_PROTO, "X-Forwarded-Proto"),
            (&X_FORWARDED_HOST, "X-Forwarded-Host"),
            (&X_FORWARDED_PREFIX, "X-Forwarded-Prefix"),
        ];
        for (name, case) in names {
            assert_eq!(name.as_slice(), case.as_bytes());
            assert_eq!(name.name().as_str(), case.to_ascii_lowercase());
        }
    }

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
    fn https_redirect_targets() {
        assert_eq!(
            https_location(Some(b"pylon.example:80"), 8443, "/a/b", Some(b"x=1")).as_deref(),
            Some("https://pylon.example:8443/a/b?x=1")
        );
        assert_eq!(
            https_location(Some(b"10.0.0.1"), 443, "/", None).as_deref(),
            Some("https://10.0.0.1/")
        );
        assert_eq!(
            https_location(Some(b"[::1]:80"), 443, "/", None).as_deref(),
            Some("https://[::1]/")
        );
        assert_eq!(https_location(Some(b"evil.com/x"), 443, "/", None), None);
        assert_eq!(https_location(Some(b"a\r\nb"), 443, "/", None), None);
        assert_eq!(https_location(None, 443, "/", None), None);
    }

    #[test]
    fn server_names() {
        let names = vec!["pylon.example".to_string(), "10.0.3.9".to_string()];
        assert!(host_allowed(Some(b"Pylon.Example:8080"), &names));
        assert!(host_allowed(Some(b"10.0.3.9"), &names));
        assert!(!host_allowed(Some(b"evil.example"), &names));
        assert!(!host_allowed(None, &names));
        assert!(host_allowed(Some(b"anything"), &[]));
    }

    #[test]
    fn request_ids() {
        let v = new_request_id_value();
        assert_eq!(v.len(), 16);
        assert!(v.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(v, new_request_id_value());
        assert_eq!(ip_value("10.0.0.1".parse().unwrap()), "10.0.0.1");
        let long: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        assert_eq!(ip_value(long), long.to_string().as_str());
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "1.20.100.9",
            "10.0.3.99",
            "192.168.200.255",
            "::1",
        ] {
            assert_eq!(ip_value(text.parse().unwrap()), text);
        }
        for n in 0..=u8::MAX {
            let ip = IpAddr::from([n, n / 3, 255 - n, n / 10]);
            assert_eq!(ip_value(ip), ip.to_string().as_str());
        }
        assert!(acceptable_request_id(b"abc-123"));
        assert!(!acceptable_request_id(b"a b"));
        assert!(!acceptable_request_id(b""));
        assert!(!acceptable_request_id(&[b'a'; 129]));
    }

    #[test]
    fn connection_tokens() {
        let v =
            connection_nominated([&b"keep-alive, X-Foo"[..], &b"close,x-bar ,"[..]].into_iter());
        assert_eq!(v, vec!["x-foo", "x-bar"]);
        let v = connection_nominated([&b"Keep-Alive, CLOSE, X-Foo, x-foo"[..]].into_iter());
        assert_eq!(v, vec!["x-foo"]);
    }
}
