//! An upstream's URI as an operator writes it: `scheme://host[:port][/base]`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUri {
    pub tls: bool,
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Empty, or `/seg[/seg…]` without a trailing `/`.
    pub base_path: String,
    /// `host:port` as it goes into the `Host` header (brackets kept for IPv6,
    /// default port omitted).
    pub authority: String,
}

impl UpstreamUri {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            return Err("expected an http:// or https:// URI, e.g. http://10.0.3.9:9186".into());
        };
        let (hostport, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err("an upstream URI takes no query or fragment".into());
        }
        if hostport.contains('@') {
            return Err("credentials in an upstream URI are not supported".into());
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let end = v6.find(']').ok_or("unclosed '[' in IPv6 address")?;
            let host = &v6[..end];
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
            let port = match &v6[end + 1..] {
                "" => default_port,
                p => parse_port(p.strip_prefix(':').ok_or("expected ':' after ']'")?)?,
            };
            (host.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), parse_port(p)?),
                None => (hostport.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err("missing host".into());
        }
        if !host.contains(':')
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(format!("{host:?} is not a valid host name"));
        }
        let mut base_path = path.trim_end_matches('/').to_string();
        if base_path
            .split('/')
            .skip(1)
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err("the base path must not contain empty, '.' or '..' segments".into());
        }
        if base_path == "/" {
            base_path.clear();
        }
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let authority = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        Ok(UpstreamUri {
            tls,
            host,
            port,
            base_path,
            authority,
        })
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port (1-65535)")),
        Ok(n) => Ok(n),
    }
}

impl std::fmt::Display for UpstreamUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{host}:{}{}", self.port, self.base_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_operators_write() {
        let u = UpstreamUri::parse("http://10.0.3.9:9186").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.base_path.as_str()),
            (false, "10.0.3.9", 9186, "")
        );
        assert_eq!(u.authority, "10.0.3.9:9186");
        let u = UpstreamUri::parse("https://master.cluster.local/").unwrap();
        assert_eq!(
            (u.port, u.authority.as_str()),
            (443, "master.cluster.local")
        );
        let u = UpstreamUri::parse("http://10.0.3.9:9091/prometheus/").unwrap();
        assert_eq!(u.base_path, "/prometheus");
        let u = UpstreamUri::parse("http://[::1]:8080/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority.as_str()),
            ("::1", "[::1]:8080")
        );
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        for bad in [
            "not a url",
            "ftp://x",
            "http://",
            "http://h:0",
            "http://h:99999",
            "http://h:80/a?b",
            "http://u@h",
            "http://h/a/../b",
            "http://bad host/",
            "http://[::1",
        ] {
            assert!(UpstreamUri::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
