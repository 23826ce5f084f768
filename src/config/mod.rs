//! The `pylon:` section of the configuration file: schema, environment
//! overlay and validation into a checked [`Config`].
//!
//! Every error names the position in the file, the full key path (or the
//! environment variable), the value and the reason, so an operator can fix
//! a refused file without reading code. Pingora's own server settings live
//! at the top level of the same file: Pingora's `ServerConf` reads them,
//! and this module refuses top-level keys that are neither Pingora's nor
//! `pylon:`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use std::sync::Arc;

use crate::rewrite::{ContentTypes, RuleSet, RuleSpec};
use crate::upstream_uri::UpstreamUri;

mod check;
mod env;
mod locate;
mod print;
mod read;
mod route;
mod schema;
mod signing;
mod standard;

#[cfg(any(test, fuzzing))]
pub(crate) use check::normalise_prefix;
#[cfg(test)]
use check::{parse_duration, parse_size};
pub use env::{Env, ProcessEnv};
pub use locate::Position;
use pingora::server::configuration::ServerConf;
pub use print::effective_yaml;
pub use signing::Signing;
pub use standard::{StandardRoute, STANDARD_ROUTES};

use check::check;

/// A configuration problem, always tied to the key or variable that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The full key path (`pylon.routes.grafana.upstream[1]`), an
    /// environment variable's name, or empty for a YAML syntax error.
    pub key: String,
    pub value: String,
    pub reason: String,
    /// Where in the file: the value's position, or for a missing key its
    /// nearest written ancestor's. `None` for an environment variable.
    pub at: Option<Position>,
}

impl ConfigError {
    pub fn new(
        key: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            key: key.into(),
            value: value.into(),
            reason: one_line(reason.into()),
            at: None,
        }
    }

    /// `FILE:LINE:COLUMN: KEY = "VALUE": REASON`, the line an operator
    /// reads (editors jump to `FILE:LINE:COLUMN`).
    pub fn in_file(&self, file: &str) -> String {
        match self.at {
            Some(at) => format!("{file}:{at}: {self}"),
            None => format!("{file}: {self}"),
        }
    }
}

/// Every refusal is one line (log lines, `pylon-reload`'s report). The
/// regex crate's errors are drawn over several lines with a caret under the
/// pattern; its last line says what is wrong.
fn one_line(reason: String) -> String {
    if !reason.contains('\n') {
        return reason;
    }
    let last = reason.lines().last().unwrap_or_default().trim();
    match last.strip_prefix("error: ") {
        Some(what) if reason.starts_with("regex parse error") => {
            format!("not a valid regular expression: {what}")
        }
        _ => reason.lines().map(str::trim).collect::<Vec<_>>().join(" "),
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.reason)
        } else if self.value.is_empty() {
            write!(f, "{}: {}", self.key, self.reason)
        } else {
            write!(f, "{} = {:?}: {}", self.key, self.value, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
// The original raised every timeout to 60 minutes so that Kubernetes watches
// and multi-GiB WebHDFS transfers survive; the per-operation read/write
// timeouts keep that, while a dead upstream is still noticed at connect.
const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(65);
const DEFAULT_SHUTDOWN_NOTICE: Duration = Duration::from_secs(5);

// ------------------------------------------------------------ checked model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Off,
    Combined,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub trusted_proxies: Vec<IpNet>,
    pub resolve_interval: Duration,
    pub keepalive_timeout: Duration,
    /// After SIGTERM: how long to keep serving with `Connection: close` and a
    /// failing `/healthz` before the listeners close.
    pub shutdown_notice: Duration,
    pub access_log: AccessLogFormat,
    /// Where `/metrics`, `/status` and `/healthz` are served; `None` = off.
    pub admin_listen: Option<SocketAddr>,
    /// Host names (or addresses) clients may use, lower case; empty: any.
    /// Redirects and rewritten pages are built from the client's Host, so
    /// this keeps Pylon from emitting links to a host an attacker chose.
    pub server_names: Vec<String>,
    pub tls: Option<Tls>,
    pub limits: Limits,
    /// The `/a/<host>:<port>/…` route; `None` (off) unless destinations are
    /// allowed.
    pub hostport: Option<HostPort>,
    /// Active routes only: a route without an upstream is not here.
    pub routes: Vec<Route>,
    /// Routes that exist by name but have no upstream, for `pylon -t`.
    pub inactive: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    /// Normalised: starts with `/`, no trailing `/` unless it is `/` itself.
    pub prefix: String,
    /// The portal: the `/` route, which every other path falls to and whose
    /// pages name the other routes' upstreams.
    pub portal: bool,
    /// The upstream's `host[:port]` and the prefix, as the `Host` and
    /// `X-Forwarded-Prefix` values sent with every request.
    pub host_header: http::HeaderValue,
    pub prefix_header: http::HeaderValue,
    /// The first endpoint: its scheme, authority and base path are the
    /// route's (all endpoints share scheme and base path).
    pub upstream: UpstreamUri,
    /// Every endpoint, the first included.
    pub endpoints: Vec<UpstreamUri>,
    /// Active probing of the endpoints; `None` when disabled.
    pub health_check: Option<HealthCheck>,
    /// Client addresses let in (empty: everyone), then those kept out.
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    /// Requests per second per client address; `None` = unlimited.
    pub rate_limit: Option<u64>,
    /// Body rules (the portal's derived ones first); `None` = no rewriting.
    pub rewrite: Option<Arc<RuleSet>>,
    pub rewrite_types: ContentTypes,
    /// Suffix for ETags of rewritten responses: changes with the rules, so
    /// browsers never keep a body rewritten by old rules (original #468).
    pub etag_suffix: String,
    /// Rewrite Location/Content-Location/Refresh that point at upstreams.
    pub proxy_redirect: bool,
    /// Turn an upstream's 307 to an unknown `http://host:port/…` (a WebHDFS
    /// datanode) into a 307 through `/a/` with an empty body.
    pub webhdfs_redirect: bool,
    /// The route's own rules as written (before the portal's derived ones).
    pub rule_specs: Vec<RuleSpec>,
    /// On the `/` route: replace every other upstream URI by its prefix.
    pub portal_rewrite: bool,
    /// Where the upstream came from, for `pylon -t` (`file` or the variable).
    pub upstream_source: String,
    pub add_slash: bool,
    pub preserve_host: bool,
    pub timeouts: Timeouts,
    /// `None` means unlimited, as the original after users hit 413 on uploads.
    pub max_body_size: Option<u64>,
    pub tls_verify: bool,
    pub tls_ca_file: Option<String>,
    pub tls_sni: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub listen: Vec<SocketAddr>,
    pub cert: String,
    pub key: String,
    pub http2: bool,
    /// Answer plain-HTTP requests (but `/healthz`) with a 307 to HTTPS.
    pub redirect_http: bool,
    /// The HTTPS port clients use, for redirects (behind NAT it may differ
    /// from the listener's).
    pub public_port: u16,
    /// `Strict-Transport-Security` max-age on HTTPS responses; 0 = none.
    pub hsts_seconds: u64,
}

/// How long Pylon waits on an upstream: one set per route, and the
/// defaults for `/a/` destinations, which no route configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connect; also bounds resolving an `/a/` host name.
    pub connect: Duration,
    /// Per read; also the idle limit of an upgraded connection.
    pub read: Duration,
    pub write: Duration,
    /// How long an idle pooled connection is kept.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            read: DEFAULT_IO_TIMEOUT,
            write: DEFAULT_IO_TIMEOUT,
            idle: DEFAULT_POOL_IDLE_TIMEOUT,
        }
    }
}

/// Where `/a/<host>:<port>/…` may forward: checked on the resolved address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Paths whose next segment may name a destination: `/a/<host>:<port>/…`.
    /// `/a` takes only destinations; under the others a segment that is not
    /// `host:port` falls through to the normal routes (`/yarn/cluster`).
    pub prefixes: Vec<String>,
    pub allow: Vec<IpNet>,
    /// Empty: any port.
    pub ports: Vec<u16>,
    /// Loopback, link-local, unspecified addresses and Pylon's own ports are
    /// refused unless this is set (tests on one machine need it).
    pub allow_loopback: bool,
    /// Those of a route that sets none.
    pub timeouts: Timeouts,
    /// Signed links (`signing_key_file`); `None`: links are neither signed
    /// nor checked.
    pub signing: Option<Signing>,
}

/// Request-head limits, as strict as nginx's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request target (nginx: a request line fits in 8 KiB).
    pub max_uri_length: usize,
    pub max_header_count: usize,
    /// Sum of header names and values (nginx: 4 buffers of 8 KiB).
    pub max_header_bytes: usize,
    /// Whole request head, from the accept or the first byte of a later
    /// request (nginx `client_header_timeout` 60 s, HAProxy's usual
    /// `timeout http-request` 10 s).
    pub header_timeout: Duration,
    /// Waiting for body bytes, on top of what `body_min_rate` earns.
    pub body_timeout: Duration,
    /// Bytes per second; each `body_min_rate` bytes buy a second more.
    pub body_min_rate: u64,
    /// Open client connections per instance; more are closed unread.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_uri_length: 8 << 10,
            max_header_count: 100,
            max_header_bytes: 32 << 10,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            body_min_rate: 500,
            max_connections: 4096,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub interval: Duration,
    pub timeout: Duration,
    /// `GET` this path and expect a 2xx/3xx; a TCP connect when `None`.
    pub path: Option<String>,
}

const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9191);

/// Parses the whole configuration file text and checks its `pylon:` section.
#[cfg(test)]
pub fn from_yaml(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
    load(text, env).map(|(_, config)| config)
}

/// The whole file: Pingora's server settings, read by Pingora's own
/// `ServerConf`, and `pylon:` checked. Every error carries its position.
pub fn load(text: &str, env: &dyn Env) -> Result<(ServerConf, Config), ConfigError> {
    read::read(text)
        .and_then(|(server, raw)| Ok((server, check(raw.pylon.unwrap_or_default(), env)?)))
        .map_err(|mut e| {
            if e.at.is_none() && !e.key.is_empty() {
                e.at = locate::locate(text, &e.key);
            }
            e
        })
}

/// A short stable identifier of a configuration file's text (FNV-1a, 64
/// bit): shown in metrics and on the status page to tell which file runs.
pub fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().expect("address")).collect()
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ALL_EIGHT: &[(&str, &str)] = &[
        ("REST_SERVER_URI", "http://10.0.3.9:9186"),
        ("K8S_API_SERVER_URI", "https://10.0.3.9:6443"),
        ("WEBHDFS_URI", "http://10.0.3.9:5070"),
        ("PROMETHEUS_URI", "http://10.0.3.9:9091/prometheus"),
        ("K8S_DASHBOARD_URI", "http://10.0.3.9:9090"),
        ("YARN_WEB_PORTAL_URI", "http://10.0.3.9:8088"),
        ("GRAFANA_URI", "http://10.0.3.9:3000"),
        ("PAI_WEB_PORTAL_URI", "http://10.0.3.9:9286"),
    ];

    #[test]
    fn standalone_mode_serves_the_standard_table_from_env() {
        let c = from_yaml("pylon:\n  listen: [\"127.0.0.1:8080\"]\n", &env(ALL_EIGHT)).unwrap();
        let names: Vec<_> = c.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names.len(), 10);
        assert!(c.inactive.is_empty());
        let api = c.routes.iter().find(|r| r.name == "webhdfs-api").unwrap();
        assert_eq!(api.upstream.base_path, "/webhdfs");
        let prom = c.routes.iter().find(|r| r.name == "prometheus").unwrap();
        assert_eq!(prom.upstream.base_path, "/prometheus");
        assert!(
            c.routes
                .iter()
                .find(|r| r.name == "kubernetes")
                .unwrap()
                .upstream
                .tls
        );
        assert!(
            c.routes
                .iter()
                .find(|r| r.name == "grafana")
                .unwrap()
                .add_slash
        );
    }

    #[test]
    fn unset_routes_are_inactive_and_env_beats_file() {
        let text = "pylon:\n  routes:\n    rest-server:\n      upstream: http://127.0.0.1:1\n    grafana:\n      upstream: http://127.0.0.1:2\n";
        let c = from_yaml(text, &env(&[("GRAFANA_URI", "http://127.0.0.1:3/")])).unwrap();
        assert_eq!(c.listen, addrs(&["0.0.0.0:80"]));
        let g = c.routes.iter().find(|r| r.name == "grafana").unwrap();
        assert_eq!(g.upstream.port, 3);
        assert_eq!(g.upstream_source, "GRAFANA_URI");
        assert!(c.inactive.contains(&"portal".to_string()));
        assert_eq!(c.routes.len(), 2);
    }

    #[test]
    fn client_limits_parse_and_bad_ones_name_the_key() {
        let c = from_yaml(
            "pylon:\n  limits:\n    header_timeout: 5s\n    body_timeout: 1m\n    body_min_rate: 1k\n    max_connections: 100\n",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.limits.header_timeout, Duration::from_secs(5));
        assert_eq!(c.limits.body_timeout, Duration::from_secs(60));
        assert_eq!(c.limits.body_min_rate, 1024);
        assert_eq!(c.limits.max_connections, 100);
        let d = from_yaml("", &env(&[])).unwrap().limits;
        assert_eq!(d, Limits::default());
        for (yaml, key) in [
            ("header_timeout: 0", "pylon.limits.header_timeout"),
            ("body_timeout: soon", "pylon.limits.body_timeout"),
            ("body_min_rate: fast", "pylon.limits.body_min_rate"),
            ("max_connections: 0", "pylon.limits.max_connections"),
        ] {
            let e = from_yaml(&format!("pylon:\n  limits:\n    {yaml}\n"), &env(&[])).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
        // A rate of 0 turns the rate off; it is not an error.
        let c = from_yaml("pylon:\n  limits:\n    body_min_rate: 0\n", &env(&[])).unwrap();
        assert_eq!(c.limits.body_min_rate, 0);
    }

    #[test]
    fn env_var_of_only_commas_is_refused() {
        for value in [",", " , ,"] {
            let e = from_yaml("", &env(&[("GRAFANA_URI", value)])).unwrap_err();
            assert_eq!(e.key, "GRAFANA_URI");
            assert_eq!(e.value, value);
        }
    }

    #[test]
    fn bad_env_var_names_the_variable() {
        let e = from_yaml("", &env(&[("REST_SERVER_URI", "not a url")])).unwrap_err();
        assert_eq!(e.key, "REST_SERVER_URI");
        assert_eq!(e.value, "not a url");
    }

    #[test]
    fn errors_name_the_key() {
        let e = from_yaml("pylon:\n  listen: [\"nowhere\"]\n", &env(&[])).unwrap_err();
        assert_eq!(e.key, "pylon.listen[0]");
        let e = from_yaml(
            "pylon:\n  routes:\n    x:\n      prefix: /x\n      upstream: http://a:1\n      read_timeout: soon\n",
            &env(&[]),
        )
        .unwrap_err();
        assert_eq!(e.key, "pylon.routes.x.read_timeout");
        let e = from_yaml(
            "pylon:\n  routes:\n    x:\n      upstream: http://a:1\n",
            &env(&[]),
        )
        .unwrap_err();
        assert_eq!(e.key, "pylon.routes.x.prefix");
        let e = from_yaml("pylon:\n  bogus: 1\n", &env(&[])).unwrap_err();
        assert_eq!(e.key, "pylon.bogus");
        assert!(e.reason.starts_with("unknown key"), "{e}");
        let e = from_yaml(
            "pylon:\n  routes:\n    x:\n      prefix: /grafana\n      upstream: http://a:1\n    grafana:\n      upstream: http://b:1\n",
            &env(&[]),
        )
        .unwrap_err();
        assert!(e.reason.contains("already used"), "{e}");
    }

    #[test]
    fn server_port_and_custom_routes() {
        let text = "pylon:\n  server-port: 8086\n  routes:\n    tool:\n      prefix: /tool/\n      upstream: http://10.0.0.5:8080/base/\n      max_body_size: 256m\n      read_timeout: 5m\n";
        let c = from_yaml(text, &env(&[])).unwrap();
        assert_eq!(c.listen, addrs(&["0.0.0.0:8086"]));
        let t = &c.routes[0];
        assert_eq!(t.prefix, "/tool");
        assert_eq!(t.upstream.base_path, "/base");
        assert_eq!(t.max_body_size, Some(256 << 20));
        assert_eq!(t.timeouts.read, Duration::from_secs(300));
    }

    #[test]
    fn several_endpoints_and_health_checks() {
        let text = "pylon:\n  admin_listen: off\n  routes:\n    tool:\n      prefix: /t\n      upstream: [\"http://10.0.0.1:80/b\", \"http://10.0.0.2:81/b\"]\n      health_check:\n        interval: 2s\n        path: /healthz\n";
        let c = from_yaml(text, &env(&[])).unwrap();
        assert_eq!(c.admin_listen, None);
        let t = &c.routes[0];
        assert_eq!(t.endpoints.len(), 2);
        assert_eq!(t.upstream.authority, "10.0.0.1");
        let hc = t.health_check.as_ref().unwrap();
        assert_eq!(
            (hc.interval, hc.path.as_deref()),
            (Duration::from_secs(2), Some("/healthz"))
        );

        let c = from_yaml("", &env(&[("GRAFANA_URI", "http://a:1/, http://b:2")])).unwrap();
        assert_eq!(c.routes[0].endpoints.len(), 2);
        assert_eq!(c.admin_listen, addrs(&["127.0.0.1:9191"]).first().copied());

        let e = from_yaml(
            "pylon:\n  routes:\n    t:\n      prefix: /t\n      upstream: [\"http://a:1\", \"https://b:2\"]\n",
            &env(&[]),
        )
        .unwrap_err();
        assert_eq!(e.key, "pylon.routes.t.upstream[1]");
        let e = from_yaml("", &env(&[("GRAFANA_URI", "ftp://x/")])).unwrap_err();
        assert_eq!(e.value, "ftp://x/", "the value as the operator wrote it");
        let e = from_yaml(
            "pylon:\n  listen: [\"127.0.0.1:1\"]\n  admin_listen: 127.0.0.1:1\n",
            &env(&[]),
        )
        .unwrap_err();
        assert_eq!(e.key, "pylon.admin_listen");
    }

    #[test]
    fn prefixes_and_units() {
        assert_eq!(normalise_prefix("/").as_deref(), Some("/"));
        assert_eq!(normalise_prefix("/a/b/").as_deref(), Some("/a/b"));
        assert_eq!(normalise_prefix("a"), None);
        assert_eq!(normalise_prefix("/a/../b"), None);
        assert_eq!(normalise_prefix("/a//b"), None);
        assert_eq!(normalise_prefix("/a%2Fb"), None);
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), None);
        assert_eq!(parse_size("4g"), Some(4 << 30));
        assert_eq!(parse_size("12x"), None);
    }

    /// The whole model of the shipped file, field by field: what each key
    /// of `conf/pylon.yaml` must become. Long because it is that table.
    #[test]
    fn the_shipped_file_becomes_this_model() {
        let text = include_str!("../../conf/pylon.yaml");
        let got = from_yaml(text, &env(&[])).expect("the shipped file is valid");
        let route = |name: &str, prefix: &str, uri: &str, add_slash: bool, rules: Vec<RuleSpec>| {
            let upstream = UpstreamUri::parse(uri).expect("URI");
            let rewrite_types = ContentTypes::default();
            Route {
                name: name.to_string(),
                prefix: prefix.to_string(),
                portal: prefix == "/",
                host_header: http::HeaderValue::from_str(&upstream.authority).expect("host"),
                prefix_header: http::HeaderValue::from_str(prefix).expect("prefix"),
                endpoints: vec![upstream.clone()],
                upstream,
                health_check: Some(HealthCheck {
                    interval: Duration::from_secs(5),
                    timeout: Duration::from_secs(1),
                    path: None,
                }),
                allow: vec![],
                deny: vec![],
                rate_limit: None,
                rewrite: None,
                etag_suffix: String::new(),
                proxy_redirect: true,
                webhdfs_redirect: matches!(name, "webhdfs-api" | "webhdfs-alias"),
                rule_specs: rules,
                portal_rewrite: true,
                upstream_source: "file".to_string(),
                add_slash,
                preserve_host: false,
                timeouts: Timeouts {
                    connect: Duration::from_secs(10),
                    read: Duration::from_secs(3600),
                    write: Duration::from_secs(3600),
                    idle: Duration::from_secs(30),
                },
                max_body_size: None,
                tls_verify: true,
                tls_ca_file: None,
                tls_sni: None,
                rewrite_types,
            }
        };
        let lit = |p: &str, r: &str| RuleSpec::literal(p, r);
        let re = |p: &str, r: &str| RuleSpec::regex(p, r);
        let mut routes = vec![
            route(
                "rest-server",
                "/rest-server",
                "http://127.0.0.1:9186",
                false,
                vec![],
            ),
            route(
                "kubernetes",
                "/kubernetes",
                "https://127.0.0.1:6443",
                false,
                vec![],
            ),
            route(
                "webhdfs-api",
                "/webhdfs/api",
                "http://127.0.0.1:5070/webhdfs",
                false,
                vec![],
            ),
            route(
                "webhdfs-alias",
                "/webhdfs/webhdfs",
                "http://127.0.0.1:5070/webhdfs",
                false,
                vec![],
            ),
            route(
                "webhdfs",
                "/webhdfs",
                "http://127.0.0.1:5070",
                true,
                vec![lit("\"/webhdfs/v1", "\"{prefix}/api/v1")],
            ),
            route(
                "prometheus",
                "/prometheus",
                "http://127.0.0.1:9091/prometheus",
                false,
                vec![],
            ),
            route(
                "kubernetes-dashboard",
                "/kubernetes-dashboard",
                "http://127.0.0.1:9090",
                true,
                vec![],
            ),
            route(
                "yarn",
                "/yarn",
                "http://127.0.0.1:8088",
                true,
                vec![
                    lit("8088/proxy/application", "8088/cluster/app/application"),
                    lit(
                        "<html>",
                        "<head><base href=\"{scheme}://{host}/yarn/\"></head><html>",
                    ),
                    lit(" src=\"/static", " src=\"static"),
                    re("href=(['\"])/", "href=$1"),
                    re(
                        "href='http://([^/]*):8042'",
                        "href='{scheme}://{host}/yarn/$1:8042{sign}/node'",
                    ),
                    re(
                        "href='http://([^/]*):8042/([^']*)'",
                        "href='{scheme}://{host}/yarn/$1:8042{sign}/$2'",
                    ),
                    re(
                        "href='http://([^/]*):8088/([^']*)'",
                        "href='{scheme}://{host}/yarn/$1:8088{sign}/$2'",
                    ),
                    re(
                        "href=\"/([^/]*):8042\"",
                        "href=\"{scheme}://{host}/yarn/$1:8042{sign}/node\"",
                    ),
                    re(
                        "href=\"http://([^/]*):8042\"",
                        "href=\"{scheme}://{host}/yarn/$1:8042{sign}/node\"",
                    ),
                    re(
                        "href=\"http://([^/]*):8042/([^\"]*)\"",
                        "href=\"{scheme}://{host}/yarn/$1:8042{sign}/$2\"",
                    ),
                    re(
                        "href=\"http://([^/]*):8088\"",
                        "href=\"{scheme}://{host}/yarn/$1:8088{sign}/cluster\"",
                    ),
                    re(
                        "href=\"http://([^/]*):8088/([^\"]*)\"",
                        "href=\"{scheme}://{host}/yarn/$1:8088{sign}/$2\"",
                    ),
                    re(
                        "url=http://([^/]*):8188/([^\"]*)\">",
                        "url={scheme}://{host}/yarn/$1:8188{sign}/$2\">",
                    ),
                ],
            ),
            route(
                "grafana",
                "/grafana",
                "http://127.0.0.1:3000",
                true,
                vec![
                    lit("<base href=\"/\" />", "<base href=\"/grafana/\" />"),
                    lit("\"url\":\"/", "\"url\":\"./"),
                    lit("appSubUrl+\"/\"", "appSubUrl+\"/grafana/\""),
                ],
            ),
            route("portal", "/", "http://127.0.0.1:9286", false, vec![]),
        ];
        // The portal first rewrites every other upstream to its prefix,
        // longest URI first (ties in file order).
        let portal_rules = [
            ("http://127.0.0.1:9091/prometheus", "/prometheus"),
            ("http://127.0.0.1:5070/webhdfs", "/webhdfs/api"),
            ("https://127.0.0.1:6443", "/kubernetes"),
            ("http://127.0.0.1:9186", "/rest-server"),
            ("http://127.0.0.1:5070", "/webhdfs"),
            ("http://127.0.0.1:9090", "/kubernetes-dashboard"),
            ("http://127.0.0.1:8088", "/yarn"),
            ("http://127.0.0.1:3000", "/grafana"),
        ];
        for r in &mut routes {
            let mut specs: Vec<RuleSpec> = Vec::new();
            if r.portal {
                specs.extend(portal_rules.iter().map(|(p, to)| lit(p, to)));
            }
            specs.extend(r.rule_specs.iter().cloned());
            if !specs.is_empty() {
                r.rewrite = Some(Arc::new(RuleSet::new(&specs).expect("rules")));
                r.etag_suffix = crate::redirect::config_suffix(
                    format!("{specs:?}{:?}", r.rewrite_types).as_bytes(),
                );
            }
        }
        let want = Config {
            listen: addrs(&["0.0.0.0:80"]),
            trusted_proxies: vec![],
            resolve_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(65),
            shutdown_notice: Duration::from_secs(5),
            access_log: AccessLogFormat::Combined,
            admin_listen: addrs(&["127.0.0.1:9191"]).first().copied(),
            server_names: vec![],
            tls: None,
            limits: Limits::default(),
            hostport: Some(HostPort {
                prefixes: vec!["/a".into(), "/yarn".into(), "/log-manager".into()],
                allow: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
                    .iter()
                    .map(|n| n.parse().expect("CIDR"))
                    .collect(),
                ports: vec![5075, 50075, 9864, 8042, 8188, 19888, 8088],
                allow_loopback: false,
                timeouts: Timeouts::default(),
                signing: None,
            }),
            routes,
            inactive: vec![],
        };
        for (g, w) in got.routes.iter().zip(&want.routes) {
            assert_eq!(g, w, "route {}", w.name);
        }
        assert_eq!(got, want);
    }
}
