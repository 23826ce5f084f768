//! Response-header rewriting: redirects that point at an upstream become
//! public URLs (the original's `proxy_redirect`), WebHDFS datanode
//! redirects go back through Pylon's `/a/` route, and ETags carry a hash of
//! the rewrite configuration so that a changed configuration is never
//! answered with a 304 for a body rewritten the old way.
//!
//! Every value produced here is visible ASCII: an input holding a control
//! character (CR and LF included) or a non-ASCII byte is never rewritten.

use crate::upstream_uri::UpstreamUri;

/// A public `host[:port]` that can be put into a URL, a header or a page as
/// is: a DNS name or IPv4 address (letters, digits, `-`, `.`, `_`, `~`) or
/// a bracketed IPv6 literal, and an optional decimal port. Anything else
/// (`/`, `@`, quotes, spaces…) would let a client's `Host` header reshape
/// the URL or the markup it lands in.
pub fn valid_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 300 {
        return false;
    }
    let (name, port) = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) => {
                if addr.is_empty()
                    || !addr
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                {
                    return false;
                }
                (None, rest)
            }
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, _)) => (Some(name), &host[name.len()..]),
            None => (Some(host), ""),
        },
    };
    if let Some(name) = name {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return false;
        }
    }
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Neither a control character (CR, LF, NUL…) nor a non-ASCII byte: what
/// may be copied from an input into a header value.
fn clean(value: &str) -> bool {
    value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The scheme and host the client used to reach Pylon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin {
    scheme: &'static str,
    host: Option<String>,
}

impl PublicOrigin {
    /// `scheme` is the public scheme (anything but `https` counts as
    /// `http`); `host` the request's `Host`. A missing or unusable host
    /// makes rewritten redirects path-absolute (`/grafana/x`), which
    /// browsers resolve against the address they used.
    pub fn new(scheme: &str, host: Option<&str>) -> PublicOrigin {
        PublicOrigin {
            scheme: if scheme.eq_ignore_ascii_case("https") {
                "https"
            } else {
                "http"
            },
            host: host.filter(|h| valid_host(h)).map(str::to_string),
        }
    }

    /// `path` (which starts with `/`) as an absolute URL when the host is
    /// known, for clients that refuse relative redirects (Hadoop's
    /// WebHDFS client, for one).
    pub fn absolute(&self, path: &str) -> String {
        match &self.host {
            Some(h) => format!("{}://{h}{path}", self.scheme),
            None => path.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
struct Upstream {
    /// Public prefix without a trailing `/`: empty for the `/` route.
    prefix: String,
    tls: bool,
    /// Lower case, without IPv6 brackets.
    host: String,
    port: u16,
    base_path: String,
}

/// The route table seen from the responses' side: which upstream URL maps
/// to which public prefix.
#[derive(Debug, Clone, Default)]
pub struct Redirects {
    routes: Vec<Upstream>,
}

/// A URL split into what the route matching needs; `path` is never empty.
struct Parsed<'a> {
    tls: bool,
    host: String,
    port: u16,
    path: &'a str,
    /// `?query` and/or `#fragment`, verbatim.
    tail: &'a str,
    relative: bool,
}

impl Redirects {
    /// Routes in the order given to [`crate::routing::Router::new`], so that
    /// a [`crate::routing::Match::route`] indexes them. Prefixes are as
    /// [`crate::config::normalise_prefix`] returns them.
    pub fn new<'a>(routes: impl IntoIterator<Item = (&'a str, &'a UpstreamUri)>) -> Redirects {
        Redirects {
            routes: routes
                .into_iter()
                .map(|(prefix, u)| Upstream {
                    prefix: prefix.trim_end_matches('/').to_string(),
                    tls: u.tls,
                    host: u.host.to_ascii_lowercase(),
                    port: u.port,
                    base_path: u.base_path.trim_end_matches('/').to_string(),
                })
                .collect(),
        }
    }

    /// Rewrites a `Location` or `Content-Location` value sent by the
    /// upstream of route `route`; `None` leaves the header as it is.
    ///
    /// - An absolute URL (or `//host/…`) whose scheme, host and port are
    ///   those of a route's upstream, and whose path is under that
    ///   upstream's base path, becomes `public scheme://host` + the route's
    ///   prefix + the rest of the path; query and fragment are kept. When
    ///   several routes share the upstream, the longest base path wins,
    ///   then the current route, then the first in the table.
    /// - A path-absolute `/x` means `/x` on the current route's upstream and
    ///   is mapped the same way, but stays path-absolute: from `/grafana`
    ///   (base path empty), `/login` becomes `/grafana/login`. A path that
    ///   already starts with the current route's prefix is taken to be
    ///   public already (an upstream that knows where it is published, such
    ///   as Grafana with a sub-path `root_url`) and left alone.
    /// - Relative paths (`x/y`, `../y`), `?q` and `#f` resolve correctly on
    ///   the client as they are, and so does anything pointing elsewhere.
    pub fn location(&self, value: &str, public: &PublicOrigin, route: usize) -> Option<String> {
        let value = value.trim_matches(' ');
        if !clean(value) {
            return None;
        }
        let current = self.routes.get(route)?;
        let url = parse_url(value, current)?;
        if url.relative && !current.prefix.is_empty() && under(url.path, &current.prefix) {
            return None;
        }
        let target = self.best_route(&url, route)?;
        let rest = &url.path[target.base_path.len()..];
        let mut path = String::with_capacity(target.prefix.len() + rest.len() + url.tail.len());
        path.push_str(&target.prefix);
        path.push_str(rest);
        if path.is_empty() {
            path.push('/');
        }
        path.push_str(url.tail);
        let out = if url.relative {
            path
        } else {
            public.absolute(&path)
        };
        (out != value && clean(&out)).then_some(out)
    }

    /// Rewrites the URL part of a `Refresh` value (`5; url=http://…`,
    /// quotes and the `url=` keyword optional), leaving the rest verbatim.
    pub fn refresh(&self, value: &str, public: &PublicOrigin, route: usize) -> Option<String> {
        if !clean(value) {
            return None;
        }
        let (start, end) = refresh_url(value)?;
        let url = self.location(&value[start..end], public, route)?;
        Some(format!("{}{url}{}", &value[..start], &value[end..]))
    }

    fn best_route(&self, url: &Parsed<'_>, current: usize) -> Option<&Upstream> {
        let mut best: Option<(usize, &Upstream)> = None;
        for (i, r) in self.routes.iter().enumerate() {
            if r.tls != url.tls
                || r.port != url.port
                || r.host != url.host
                || !under(url.path, &r.base_path)
            {
                continue;
            }
            let better = match best {
                None => true,
                Some((bi, b)) => {
                    r.base_path.len() > b.base_path.len()
                        || (r.base_path.len() == b.base_path.len() && i == current && bi != current)
                }
            };
            if better {
                best = Some((i, r));
            }
        }
        best.map(|(_, r)| r)
    }
}

/// Whether `path` is `base` or below it on a segment boundary.
fn under(path: &str, base: &str) -> bool {
    base.is_empty()
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `host[:port]` with the port defaulted; `None` for userinfo, an empty
/// host or a bad port.
fn parse_authority(auth: &str, tls: bool) -> Option<(String, u16)> {
    if auth.contains('@') {
        return None;
    }
    let (host, port) = if let Some(v6) = auth.strip_prefix('[') {
        let (h, rest) = v6.split_once(']')?;
        (h, rest)
    } else {
        match auth.rfind(':') {
            Some(i) => (&auth[..i], &auth[i..]),
            None => (auth, ""),
        }
    };
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => {
            if tls {
                443
            } else {
                80
            }
        }
        Some("") => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        _ => return None,
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

fn parse_url<'a>(value: &'a str, current: &Upstream) -> Option<Parsed<'a>> {
    let (tls, after_scheme, relative) = if let Some(r) = strip_prefix_ignore_case(value, "http://")
    {
        (false, r, false)
    } else if let Some(r) = strip_prefix_ignore_case(value, "https://") {
        (true, r, false)
    } else if let Some(r) = value.strip_prefix("//") {
        (current.tls, r, false)
    } else if value.starts_with('/') {
        let split = value.find(['?', '#']).unwrap_or(value.len());
        return Some(Parsed {
            tls: current.tls,
            host: current.host.clone(),
            port: current.port,
            path: &value[..split],
            tail: &value[split..],
            relative: true,
        });
    } else {
        return None;
    };
    let auth_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let (host, port) = parse_authority(&after_scheme[..auth_end], tls)?;
    let rest = &after_scheme[auth_end..];
    let split = rest.find(['?', '#']).unwrap_or(rest.len());
    // An empty path means `/` (RFC 9110 §4.2.3).
    let path = if split == 0 { "/" } else { &rest[..split] };
    Some(Parsed {
        tls,
        host,
        port,
        path,
        tail: &rest[split..],
        relative,
    })
}

/// Byte range of the URL inside a `Refresh` value: after `delay`, `;` or
/// `,`, optional `url=` (any case, spaces around `=`) and an optional quote.
pub(crate) fn refresh_url(value: &str) -> Option<(usize, usize)> {
    let b = value.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        i
    };
    let mut i = skip_ws(0);
    let digits_start = i;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    i = skip_ws(i);
    if i >= b.len() || !(b[i] == b';' || b[i] == b',') {
        return None;
    }
    i = skip_ws(i + 1);
    if b.len() >= i + 3 && b[i..i + 3].eq_ignore_ascii_case(b"url") {
        let j = skip_ws(i + 3);
        if j < b.len() && b[j] == b'=' {
            i = skip_ws(j + 1);
        }
    }
    let mut end = b.len();
    if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
        let quote = b[i];
        i += 1;
        end = b[i..]
            .iter()
            .position(|&c| c == quote)
            .map_or(b.len(), |p| i + p);
    } else {
        while end > i && b[end - 1] == b' ' {
            end -= 1;
        }
    }
    (end > i).then_some((i, end))
}

/// A WebHDFS namenode's redirect to a datanode, `http://HOST:PORT/PATH?Q`,
/// as a path through Pylon's `/a/` route: `/a/HOST:PORT/PATH?Q`. The port
/// must be explicit, as the original's `^http://([^/]+):(\d+)/(.*)$`
/// required. Pair it with [`PublicOrigin::absolute`]: Hadoop's own client
/// does not follow relative redirects.
pub fn datanode_redirect(location: &str) -> Option<String> {
    let location = location.trim_matches(' ');
    if !clean(location) {
        return None;
    }
    let rest = strip_prefix_ignore_case(location, "http://")?;
    let auth_end = rest.find('/')?;
    let auth = &rest[..auth_end];
    let (host, port) = if let Some(v6) = auth.strip_prefix('[') {
        let (h, p) = v6.split_once(']')?;
        (h, p.strip_prefix(':')?)
    } else {
        auth.rsplit_once(':')?
    };
    let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    if !port_ok || host.is_empty() || auth.contains(['@', '?', '#']) || !valid_host(auth) {
        return None;
    }
    Some(format!("/a/{auth}{}", &rest[auth_end..]))
}

/// Whether `s` can sit inside an entity tag's quotes (RFC 9110 §8.8.3).
fn etagc(s: &str) -> bool {
    s.bytes().all(|b| b == 0x21 || (0x23..0x7f).contains(&b))
}

/// Splits `W/"opaque"` or `"opaque"` into the weak marker and the opaque
/// part; `None` when it is not one entity tag.
fn split_etag(tag: &str) -> Option<(&str, &str)> {
    let (weak, quoted) = match tag.strip_prefix("W/") {
        Some(q) => ("W/", q),
        None => ("", tag),
    };
    let opaque = quoted.strip_prefix('"')?.strip_suffix('"')?;
    etagc(opaque).then_some((weak, opaque))
}

/// The upstream's `ETag` with the configuration's suffix: `"abc"` →
/// `"abc|SUFFIX"`, `W/"abc"` → `W/"abc|SUFFIX"`. A value that is not an
/// entity tag is returned unchanged: a client echoing it back lacks the
/// suffix, so [`if_none_match_in`] drops it and the upstream answers 200.
pub fn etag_out(etag: &str, suffix: &str) -> String {
    let trimmed = etag.trim_matches(' ');
    match split_etag(trimmed) {
        Some((weak, opaque)) if etagc(suffix) && clean(etag) => {
            format!("{weak}\"{opaque}|{suffix}\"")
        }
        _ => etag.to_string(),
    }
}

/// The client's `If-None-Match` as the upstream must see it: every entity
/// tag with the current suffix removed. `None` (drop the header) when any
/// tag lacks the suffix, i.e. was issued under another configuration, or
/// the value cannot be parsed: the upstream then answers with a full body
/// that is rewritten with the current rules. `*` is kept.
pub fn if_none_match_in(value: &str, suffix: &str) -> Option<String> {
    let value = value.trim_matches(' ');
    if !clean(value) {
        return None;
    }
    if value == "*" {
        return Some("*".to_string());
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            break;
        }
        let quote_start = if rest.starts_with("W/\"") {
            2
        } else if rest.starts_with('"') {
            0
        } else {
            return None;
        };
        let close = rest[quote_start + 1..].find('"')? + quote_start + 1;
        let (weak, opaque) = split_etag(&rest[..=close])?;
        let original = opaque.strip_suffix(suffix)?.strip_suffix('|')?;
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(weak);
        out.push('"');
        out.push_str(original);
        out.push('"');
        rest = &rest[close + 1..];
        if !(rest.is_empty() || rest.starts_with([' ', ','])) {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A short stable hash (FNV-1a 64, 16 hex digits) of the rewrite
/// configuration, for [`etag_out`]. Stable across builds and platforms, so
/// several Pylon instances with one configuration issue the same ETags.
pub fn config_suffix(text: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in text {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (Vec<(String, UpstreamUri)>, Redirects) {
        let routes: Vec<(String, UpstreamUri)> = [
            ("/rest-server", "http://10.0.3.9:9186"),
            ("/webhdfs/api", "http://10.0.3.9:5070/webhdfs"),
            ("/webhdfs/webhdfs", "http://10.0.3.9:5070/webhdfs"),
            ("/webhdfs", "http://10.0.3.9:5070"),
            ("/prometheus", "http://10.0.3.9:9091/prometheus"),
            ("/grafana", "http://Grafana.cluster:3000"),
            ("/kubernetes", "https://10.0.3.9:6443"),
            ("/", "http://10.0.3.9:9286"),
        ]
        .iter()
        .map(|(p, u)| (p.to_string(), UpstreamUri::parse(u).unwrap()))
        .collect();
        let r = Redirects::new(routes.iter().map(|(p, u)| (p.as_str(), u)));
        (routes, r)
    }

    const REST: usize = 0;
    const HDFS_API: usize = 1;
    const HDFS_ALIAS: usize = 2;
    const PROM: usize = 4;
    const GRAFANA: usize = 5;
    const PORTAL: usize = 7;

    fn public() -> PublicOrigin {
        PublicOrigin::new("https", Some("pylon.example.com"))
    }

    fn loc(value: &str, route: usize) -> Option<String> {
        table().1.location(value, &public(), route)
    }

    #[test]
    fn absolute_upstream_urls_become_public() {
        // The REST server's job-creation Location (the original's only
        // proxy_redirect), now with the public scheme.
        assert_eq!(
            loc("http://10.0.3.9:9186/api/v2/jobs/alice~job1?x=1#f", REST).as_deref(),
            Some("https://pylon.example.com/rest-server/api/v2/jobs/alice~job1?x=1#f")
        );
        assert_eq!(
            loc("http://10.0.3.9:9091/prometheus/graph", PROM).as_deref(),
            Some("https://pylon.example.com/prometheus/graph")
        );
        // Host case, explicit default port, empty path.
        assert_eq!(
            loc("HTTP://grafana.CLUSTER:3000", GRAFANA).as_deref(),
            Some("https://pylon.example.com/grafana/")
        );
        assert_eq!(
            loc("https://10.0.3.9:6443/api?watch=1", REST).as_deref(),
            Some("https://pylon.example.com/kubernetes/api?watch=1")
        );
        assert_eq!(
            loc("https://10.0.3.9/api", REST),
            None,
            "port 443 is not the upstream's 6443"
        );
        // Network-path reference: the current upstream's scheme.
        assert_eq!(
            loc("//10.0.3.9:9186/api/v1", REST).as_deref(),
            Some("https://pylon.example.com/rest-server/api/v1")
        );
        // Portal: prefix `/`.
        assert_eq!(
            loc("http://10.0.3.9:9286/home.html", PORTAL).as_deref(),
            Some("https://pylon.example.com/home.html")
        );
    }

    #[test]
    fn shared_upstreams_pick_the_longest_base_then_the_current_route() {
        assert_eq!(
            loc(
                "http://10.0.3.9:5070/webhdfs/v1/tmp?op=LISTSTATUS",
                HDFS_API
            )
            .as_deref(),
            Some("https://pylon.example.com/webhdfs/api/v1/tmp?op=LISTSTATUS")
        );
        assert_eq!(
            loc("http://10.0.3.9:5070/webhdfs/v1/tmp", HDFS_ALIAS).as_deref(),
            Some("https://pylon.example.com/webhdfs/webhdfs/v1/tmp")
        );
        assert_eq!(
            loc("http://10.0.3.9:5070/webhdfs/v1/tmp", REST).as_deref(),
            Some("https://pylon.example.com/webhdfs/api/v1/tmp"),
            "first in the table"
        );
        assert_eq!(
            loc("http://10.0.3.9:5070/explorer.html", HDFS_API).as_deref(),
            Some("https://pylon.example.com/webhdfs/explorer.html")
        );
        assert_eq!(
            loc("http://10.0.3.9:5070/webhdfsx", HDFS_API).as_deref(),
            Some("https://pylon.example.com/webhdfs/webhdfsx"),
            "base paths match whole segments"
        );
    }

    #[test]
    fn relative_redirects_stay_relative_and_gain_the_prefix() {
        assert_eq!(loc("/login", GRAFANA).as_deref(), Some("/grafana/login"));
        assert_eq!(
            loc("/?orgId=1", GRAFANA).as_deref(),
            Some("/grafana/?orgId=1")
        );
        // Already public: an upstream that knows its sub-path.
        assert_eq!(loc("/grafana/login", GRAFANA), None);
        assert_eq!(loc("/grafana", GRAFANA), None);
        // Prometheus serves under its own prefix: nothing to add.
        assert_eq!(loc("/prometheus/graph", PROM), None);
        // Outside the base path of the current route, but on the same
        // upstream: the route that serves that path.
        assert_eq!(
            loc("/webhdfs/v1/x", HDFS_API).as_deref(),
            Some("/webhdfs/api/v1/x")
        );
        assert_eq!(
            loc("/explorer.html", HDFS_API).as_deref(),
            Some("/webhdfs/explorer.html")
        );
        // No route serves `/graph` on Prometheus' upstream.
        assert_eq!(loc("/graph", PROM), None);
        assert_eq!(loc("/x", PORTAL), None, "the `/` route changes nothing");
        // A `/` route with a base path: upstream paths lose it.
        let portal = UpstreamUri::parse("http://10.0.3.9:9286/portal").unwrap();
        let r = Redirects::new([("/", &portal)]);
        assert_eq!(
            r.location("/portal/home", &public(), 0).as_deref(),
            Some("/home")
        );
        assert_eq!(r.location("/portal", &public(), 0).as_deref(), Some("/"));
        assert_eq!(r.location("/other", &public(), 0), None);
        for unchanged in [
            "login",
            "../x",
            "?page=2",
            "#top",
            "mailto:a@b",
            "http://elsewhere/x",
        ] {
            assert_eq!(loc(unchanged, GRAFANA), None, "{unchanged}");
        }
    }

    #[test]
    fn unusable_hosts_and_dangerous_bytes() {
        let (_, r) = table();
        let no_host = PublicOrigin::new("http", Some("evil.example/x"));
        assert_eq!(
            r.location("http://10.0.3.9:9186/api", &no_host, REST)
                .as_deref(),
            Some("/rest-server/api")
        );
        let none = PublicOrigin::new("http", None);
        assert_eq!(none.absolute("/a"), "/a");
        for bad in [
            "http://10.0.3.9:9186/api\r\nSet-Cookie: x=1",
            "/login\n",
            "http://10.0.3.9:9186/caf\u{e9}",
            "http://user@10.0.3.9:9186/api",
            "http://10.0.3.9:9186x/api",
        ] {
            assert_eq!(loc(bad, REST), None, "{bad:?}");
        }
        assert_eq!(r.location("/x", &public(), 99), None, "unknown route");
        assert!(valid_host("a.b-c_d~e:8080"));
        assert!(valid_host("[fe80::1]:443"));
        assert!(valid_host("10.0.0.1"));
        for bad in [
            "", ":80", "a:", "a:123456", "a b", "a/b", "a@b", "[::1", "[]", "a\"b", "[::1]x",
        ] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn refresh_urls() {
        let (_, r) = table();
        let p = public();
        assert_eq!(
            r.refresh("5; url=http://10.0.3.9:9186/api/v1", &p, REST)
                .as_deref(),
            Some("5; url=https://pylon.example.com/rest-server/api/v1")
        );
        assert_eq!(
            r.refresh("0;URL = '/login?x=1' ", &p, GRAFANA).as_deref(),
            Some("0;URL = '/grafana/login?x=1' ")
        );
        assert_eq!(
            r.refresh("1, \"http://grafana.cluster:3000/d\"", &p, GRAFANA)
                .as_deref(),
            Some("1, \"https://pylon.example.com/grafana/d\"")
        );
        assert_eq!(
            r.refresh("3;/login", &p, GRAFANA).as_deref(),
            Some("3;/grafana/login")
        );
        for unchanged in [
            "5",
            "5;",
            "url=/x",
            "x; url=/login",
            "5; url=http://other/x",
        ] {
            assert_eq!(r.refresh(unchanged, &p, GRAFANA), None, "{unchanged}");
        }
    }

    #[test]
    fn datanode_redirects_go_through_a() {
        assert_eq!(
            datanode_redirect("http://10.0.4.17:50075/webhdfs/v1/tmp/f?op=CREATE&namenoderpcaddress=nn:9000&overwrite=false").as_deref(),
            Some("/a/10.0.4.17:50075/webhdfs/v1/tmp/f?op=CREATE&namenoderpcaddress=nn:9000&overwrite=false")
        );
        assert_eq!(
            datanode_redirect("http://dn-3.cluster:9864/").as_deref(),
            Some("/a/dn-3.cluster:9864/")
        );
        assert_eq!(
            datanode_redirect("http://[fe80::1]:9864/webhdfs/v1/x").as_deref(),
            Some("/a/[fe80::1]:9864/webhdfs/v1/x")
        );
        for bad in [
            "http://dn:9864",
            "http://dn/webhdfs",
            "http://dn:/x",
            "https://dn:9864/x",
            "http://u@dn:9864/x",
            "http://dn:98a/x",
            "http://dn:9864/x\r\nX: y",
            "/webhdfs/v1/x",
        ] {
            assert_eq!(datanode_redirect(bad), None, "{bad:?}");
        }
        assert_eq!(
            public().absolute(&datanode_redirect("http://dn:1/x").unwrap()),
            "https://pylon.example.com/a/dn:1/x"
        );
    }

    #[test]
    fn etags_carry_the_configuration() {
        let s = config_suffix(b"rewrite: []");
        assert_eq!(s.len(), 16);
        assert_eq!(etag_out("\"abc\"", &s), format!("\"abc|{s}\""));
        assert_eq!(etag_out("W/\"abc\"", "S"), "W/\"abc|S\"");
        assert_eq!(etag_out("\"\"", "S"), "\"|S\"");
        for not_a_tag in ["abc", "\"abc", "w/\"abc\"", "\"a\"b\"", "\"a\r\n\""] {
            assert_eq!(etag_out(not_a_tag, "S"), not_a_tag);
        }
        assert_eq!(
            if_none_match_in("\"abc|S\"", "S").as_deref(),
            Some("\"abc\"")
        );
        assert_eq!(
            if_none_match_in("W/\"a|S\", \"b,c|S\",\"d|S\"", "S").as_deref(),
            Some("W/\"a\", \"b,c\", \"d\"")
        );
        assert_eq!(if_none_match_in(" * ", "S").as_deref(), Some("*"));
        for dropped in [
            "\"abc\"",
            "\"abc|OLD\"",
            "\"a|S\", \"b\"",
            "\"abcS\"",
            "abc",
            "",
            "\"a|S\"x",
            "\"a|S",
            "\"a|S\"\r\n",
        ] {
            assert_eq!(if_none_match_in(dropped, "S"), None, "{dropped:?}");
        }
        for tag in ["\"x\"", "W/\"y\"", "\"\""] {
            assert_eq!(
                if_none_match_in(&etag_out(tag, &s), &s).as_deref(),
                Some(tag)
            );
        }
    }

    #[test]
    fn config_suffix_is_fnv1a() {
        assert_eq!(config_suffix(b""), "cbf29ce484222325");
        assert_eq!(config_suffix(b"a"), "af63dc4c8601ec8c");
        assert_ne!(config_suffix(b"rules: 1"), config_suffix(b"rules: 2"));
    }
}
