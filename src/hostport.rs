//! The `/a/<host>:<port>/…` route: the original's way to reach WebHDFS
//! datanodes and node managers through Pylon, and its open proxy. Here it
//! forwards only to resolved addresses the operator allowed, and never to
//! loopback, link-local (cloud metadata at 169.254.169.254), unspecified
//! addresses or Pylon's own listeners.

use std::net::{IpAddr, SocketAddr};

use crate::config::HostPort;

/// `<host>:<port>` as written in the path: a DNS name, IPv4, or `[IPv6]`.
pub fn parse(segment: &str) -> Option<(&str, u16)> {
    let (host, port) = match segment.strip_prefix('[') {
        Some(v6) => {
            let (h, rest) = v6.split_once(']')?;
            h.parse::<std::net::Ipv6Addr>().ok()?;
            (h, rest.strip_prefix(':')?)
        }
        None => segment.rsplit_once(':')?,
    };
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    name_ok.then_some((host, port))
}

/// Splits `/<host>:<port>/rest` (what follows `/a`) into the destination
/// and the path to forward (`/` when nothing follows).
pub fn split(after_prefix: &str) -> Option<(&str, &str)> {
    let rest = after_prefix.strip_prefix('/')?;
    match rest.find('/') {
        Some(i) => Some((&rest[..i], &rest[i..])),
        None => Some((rest, "/")),
    }
}

fn is_local_kind(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|m| is_local_kind(IpAddr::V4(m)))
        }
    }
}

/// Why a resolved destination is refused, or `Ok` to forward. `own` are
/// Pylon's listening addresses (public, TLS and admin).
pub fn check(dest: SocketAddr, policy: &HostPort, own: &[SocketAddr]) -> Result<(), &'static str> {
    let ip = match dest.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(dest.ip(), IpAddr::V4),
        v4 => v4,
    };
    let is_own = own.iter().any(|l| {
        l.port() == dest.port() && (l.ip().is_unspecified() || l.ip() == ip || ip.is_loopback())
    });
    if is_own {
        return Err("one of Pylon's own listeners");
    }
    if is_local_kind(ip) && !policy.allow_loopback {
        return Err("a loopback, link-local or unspecified address");
    }
    if !policy.allow.iter().any(|n| n.contains(&ip)) {
        return Err("an address outside pylon.hostport.allow");
    }
    if !policy.ports.is_empty() && !policy.ports.contains(&dest.port()) {
        return Err("a port outside pylon.hostport.ports");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], ports: &[u16], loopback: bool) -> HostPort {
        HostPort {
            prefixes: vec!["/a".into()],
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            ports: ports.to_vec(),
            allow_loopback: loopback,
            timeouts: Default::default(),
            signing: None,
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parsing() {
        assert_eq!(parse("node1:8042"), Some(("node1", 8042)));
        assert_eq!(parse("10.0.0.5:9864"), Some(("10.0.0.5", 9864)));
        assert_eq!(parse("[::1]:80"), Some(("::1", 80)));
        assert_eq!(parse("node1"), None);
        assert_eq!(parse("node1:0"), None);
        assert_eq!(parse("node1:99999"), None);
        assert_eq!(parse("a b:80"), None);
        assert_eq!(parse(":80"), None);
        assert_eq!(split("/node1:8042/logs/x"), Some(("node1:8042", "/logs/x")));
        assert_eq!(split("/node1:8042"), Some(("node1:8042", "/")));
    }

    #[test]
    fn refusals() {
        let p = policy(&["10.0.0.0/8"], &[], false);
        assert_eq!(check(sa("10.1.2.3:9864"), &p, &[]), Ok(()));
        assert!(check(sa("192.168.1.1:9864"), &p, &[]).is_err());
        assert!(check(
            sa("127.0.0.1:9864"),
            &policy(&["0.0.0.0/0"], &[], false),
            &[]
        )
        .is_err());
        assert!(check(
            sa("169.254.169.254:80"),
            &policy(&["0.0.0.0/0"], &[], false),
            &[]
        )
        .is_err());
        assert!(check(
            sa("[::ffff:127.0.0.1]:80"),
            &policy(&["0.0.0.0/0"], &[], false),
            &[]
        )
        .is_err());
        assert!(check(
            sa("10.1.2.3:22"),
            &policy(&["10.0.0.0/8"], &[9864], false),
            &[]
        )
        .is_err());
        // Pylon itself, even when loopback is allowed.
        let own = [sa("0.0.0.0:80")];
        let lo = policy(&["0.0.0.0/0"], &[], true);
        assert!(check(sa("127.0.0.1:80"), &lo, &own).is_err());
        assert!(check(sa("10.1.2.3:80"), &lo, &own).is_err());
        assert_eq!(check(sa("127.0.0.1:8080"), &lo, &own), Ok(()));
    }
}
