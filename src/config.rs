//! The `pylon:` section of the configuration file: schema, environment
//! overlay and validation into a checked [`Config`].
//!
//! Every error names the key (or environment variable), the value and the
//! reason, so an operator can fix a refused file without reading code.
//! Pingora's own server settings live at the top level of the same file and
//! are parsed by Pingora; this module only reads `pylon:`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use std::sync::Arc;

use crate::rewrite::{self, RuleSet, RuleSpec};
use crate::upstream_uri::UpstreamUri;

/// A configuration problem, always tied to the key or variable that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub reason: String,
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
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.key, self.reason)
        } else {
            write!(f, "{} = {:?}: {}", self.key, self.value, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// One of the services the original Pylon knew by name. Their prefixes and
/// environment variables are part of Pylon's interface, so they are code.
pub struct StandardRoute {
    pub name: &'static str,
    pub prefix: &'static str,
    pub env: &'static str,
    /// Appended to the environment variable's value (the service root) to
    /// form this route's upstream: the WebHDFS API lives under `/webhdfs`.
    pub env_path: &'static str,
    pub add_slash: bool,
}

pub const STANDARD_ROUTES: &[StandardRoute] = &[
    StandardRoute {
        name: "rest-server",
        prefix: "/rest-server",
        env: "REST_SERVER_URI",
        env_path: "",
        add_slash: false,
    },
    StandardRoute {
        name: "kubernetes",
        prefix: "/kubernetes",
        env: "K8S_API_SERVER_URI",
        env_path: "",
        add_slash: false,
    },
    StandardRoute {
        name: "webhdfs-api",
        prefix: "/webhdfs/api",
        env: "WEBHDFS_URI",
        env_path: "/webhdfs",
        add_slash: false,
    },
    StandardRoute {
        // pyhdfs and HdfsCLI hard-code `/webhdfs/v1` under the namenode URL.
        name: "webhdfs-alias",
        prefix: "/webhdfs/webhdfs",
        env: "WEBHDFS_URI",
        env_path: "/webhdfs",
        add_slash: false,
    },
    StandardRoute {
        name: "webhdfs",
        prefix: "/webhdfs",
        env: "WEBHDFS_URI",
        env_path: "",
        add_slash: true,
    },
    StandardRoute {
        name: "prometheus",
        prefix: "/prometheus",
        env: "PROMETHEUS_URI",
        env_path: "",
        add_slash: false,
    },
    StandardRoute {
        name: "kubernetes-dashboard",
        prefix: "/kubernetes-dashboard",
        env: "K8S_DASHBOARD_URI",
        env_path: "",
        add_slash: true,
    },
    StandardRoute {
        name: "yarn",
        prefix: "/yarn",
        env: "YARN_WEB_PORTAL_URI",
        env_path: "",
        add_slash: true,
    },
    StandardRoute {
        name: "grafana",
        prefix: "/grafana",
        env: "GRAFANA_URI",
        env_path: "",
        add_slash: true,
    },
    StandardRoute {
        name: "portal",
        prefix: "/",
        env: "PAI_WEB_PORTAL_URI",
        env_path: "",
        add_slash: false,
    },
];

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
// The original raised every timeout to 60 minutes so that Kubernetes watches
// and multi-GiB WebHDFS transfers survive; the per-operation read/write
// timeouts keep that, while a dead upstream is still noticed at connect.
const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(65);
const DEFAULT_SHUTDOWN_NOTICE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- raw schema

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPylon {
    listen: Option<Vec<String>>,
    #[serde(rename = "server-port", alias = "server_port")]
    server_port: Option<u16>,
    trusted_proxies: Option<Vec<String>>,
    resolve_interval: Option<Scalar>,
    keepalive_timeout: Option<Scalar>,
    shutdown_notice: Option<Scalar>,
    access_log: Option<String>,
    admin_listen: Option<String>,
    server_names: Option<Vec<String>>,
    tls: Option<RawTls>,
    limits: Option<RawLimits>,
    hostport: Option<RawHostPort>,
    routes: Option<BTreeMap<String, RawRoute>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: Option<String>,
    upstream: Option<UpstreamSpec>,
    upstream_env: Option<String>,
    health_check: Option<RawHealthCheck>,
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
    rate_limit: Option<u64>,
    rewrite: Option<Vec<RuleSpec>>,
    rewrite_types: Option<Vec<String>>,
    proxy_redirect: Option<bool>,
    portal_rewrite: Option<bool>,
    enabled: Option<bool>,
    add_slash: Option<bool>,
    preserve_host: Option<bool>,
    connect_timeout: Option<Scalar>,
    read_timeout: Option<Scalar>,
    write_timeout: Option<Scalar>,
    idle_timeout: Option<Scalar>,
    max_body_size: Option<Scalar>,
    tls_verify: Option<bool>,
    tls_ca_file: Option<String>,
    tls_sni: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    listen: Option<Vec<String>>,
    cert: Option<String>,
    key: Option<String>,
    http2: Option<bool>,
    redirect_http: Option<bool>,
    public_port: Option<u16>,
    hsts: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostPort {
    prefixes: Option<Vec<String>>,
    allow: Option<Vec<String>>,
    ports: Option<Vec<u16>>,
    allow_loopback: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_uri_length: Option<Scalar>,
    max_header_count: Option<u64>,
    max_header_bytes: Option<Scalar>,
    header_timeout: Option<Scalar>,
    body_timeout: Option<Scalar>,
    body_min_rate: Option<Scalar>,
    max_connections: Option<u64>,
}

/// One upstream URI, or several endpoints of the same service.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum UpstreamSpec {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthCheck {
    enabled: Option<bool>,
    interval: Option<Scalar>,
    timeout: Option<Scalar>,
    path: Option<String>,
}

/// A YAML scalar that may be written as a number or a string (`30`, `"30s"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(u64),
    Str(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }
}

// ------------------------------------------------------------ checked model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Off,
    Combined,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub resolve_interval: Duration,
    pub keepalive_timeout: Duration,
    /// After SIGTERM: how long to keep serving with `Connection: close` and a
    /// failing `/healthz` before the listeners close.
    pub shutdown_notice: Duration,
    pub access_log: AccessLogFormat,
    /// Where `/metrics`, `/status` and `/healthz` are served; `None` = off.
    pub admin_listen: Option<String>,
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

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Normalised: starts with `/`, no trailing `/` unless it is `/` itself.
    pub prefix: String,
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
    pub rewrite_types: Vec<String>,
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
    pub listen: Vec<String>,
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
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9191";

/// Read access to the environment, so validation can be tested without
/// touching the process environment.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

/// Parses the whole configuration file text and checks its `pylon:` section.
pub fn from_yaml(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text)
        .map_err(|e| ConfigError::new("(file)", "", format!("not valid YAML: {e}")))?;
    let section = match &doc {
        serde_yaml::Value::Mapping(m) => m.get("pylon").cloned(),
        serde_yaml::Value::Null => None,
        _ => {
            return Err(ConfigError::new(
                "(file)",
                "",
                "the top level must be a mapping of settings",
            ))
        }
    };
    let raw: RawPylon = match section {
        None | Some(serde_yaml::Value::Null) => RawPylon::default(),
        Some(v) => {
            serde_yaml::from_value(v).map_err(|e| ConfigError::new("pylon", "", e.to_string()))?
        }
    };
    check(raw, env)
}

fn check(raw: RawPylon, env: &dyn Env) -> Result<Config, ConfigError> {
    let listen = match (raw.listen, raw.server_port) {
        (Some(list), _) => {
            if list.is_empty() {
                return Err(ConfigError::new(
                    "pylon.listen",
                    "[]",
                    "needs at least one address",
                ));
            }
            for (i, addr) in list.iter().enumerate() {
                addr.parse::<std::net::SocketAddr>().map_err(|_| {
                    ConfigError::new(
                        format!("pylon.listen[{i}]"),
                        addr,
                        "expected IP:PORT, e.g. 0.0.0.0:80 or [::]:80",
                    )
                })?;
            }
            list
        }
        (None, Some(0)) => {
            return Err(ConfigError::new(
                "pylon.server-port",
                "0",
                "port must be 1-65535",
            ))
        }
        (None, Some(port)) => vec![format!("0.0.0.0:{port}")],
        (None, None) => vec!["0.0.0.0:80".to_string()],
    };

    let mut trusted_proxies = Vec::new();
    for (i, cidr) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
        trusted_proxies.push(parse_cidr(cidr).ok_or_else(|| {
            ConfigError::new(
                format!("pylon.trusted_proxies[{i}]"),
                cidr,
                "expected an IP address or CIDR, e.g. 10.1.0.0/16",
            )
        })?);
    }

    let resolve_interval = opt_duration("pylon.resolve_interval", &raw.resolve_interval)?
        .unwrap_or(DEFAULT_RESOLVE_INTERVAL);
    if resolve_interval.is_zero() {
        return Err(ConfigError::new(
            "pylon.resolve_interval",
            "0",
            "must be positive",
        ));
    }
    let keepalive_timeout = opt_duration("pylon.keepalive_timeout", &raw.keepalive_timeout)?
        .unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT);
    let shutdown_notice = opt_duration("pylon.shutdown_notice", &raw.shutdown_notice)?
        .unwrap_or(DEFAULT_SHUTDOWN_NOTICE);

    let access_log = match raw.access_log.as_deref() {
        None | Some("combined") => AccessLogFormat::Combined,
        Some("json") => AccessLogFormat::Json,
        Some("off") => AccessLogFormat::Off,
        Some(other) => {
            return Err(ConfigError::new(
                "pylon.access_log",
                other,
                "expected one of: combined, json, off",
            ))
        }
    };

    let admin_listen = match raw.admin_listen.as_deref().map(str::trim) {
        None => Some(DEFAULT_ADMIN_LISTEN.to_string()),
        Some("off") | Some("") => None,
        Some(addr) => {
            addr.parse::<std::net::SocketAddr>().map_err(|_| {
                ConfigError::new(
                    "pylon.admin_listen",
                    addr,
                    "expected IP:PORT (e.g. 127.0.0.1:9191) or off",
                )
            })?;
            if listen.iter().any(|l| l == addr) {
                return Err(ConfigError::new(
                    "pylon.admin_listen",
                    addr,
                    "must differ from the public listeners: admin pages are never public",
                ));
            }
            Some(addr.to_string())
        }
    };

    let mut server_names = Vec::new();
    for (i, n) in raw.server_names.unwrap_or_default().iter().enumerate() {
        let name = n.trim().to_ascii_lowercase();
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !ok {
            return Err(ConfigError::new(
                format!("pylon.server_names[{i}]"),
                n,
                "expected a host name or address without port",
            ));
        }
        server_names.push(name);
    }
    let tls = match raw.tls {
        None => None,
        Some(t) => Some(check_tls(t, &listen)?),
    };
    let limits = match raw.limits {
        None => Limits::default(),
        Some(l) => {
            let d = Limits::default();
            let size =
                |key: &str, v: &Option<Scalar>, default: usize| -> Result<usize, ConfigError> {
                    match v {
                        None => Ok(default),
                        Some(s) => parse_size(&s.text())
                            .filter(|n| *n > 0)
                            .map(|n| n as usize)
                            .ok_or_else(|| {
                                ConfigError::new(
                                    key,
                                    s.text(),
                                    "expected a positive byte count such as 8k",
                                )
                            }),
                    }
                };
            Limits {
                max_uri_length: size(
                    "pylon.limits.max_uri_length",
                    &l.max_uri_length,
                    d.max_uri_length,
                )?,
                max_header_count: match l.max_header_count {
                    None => d.max_header_count,
                    Some(0) => {
                        return Err(ConfigError::new(
                            "pylon.limits.max_header_count",
                            "0",
                            "must be positive",
                        ))
                    }
                    Some(n) => n as usize,
                },
                max_header_bytes: size(
                    "pylon.limits.max_header_bytes",
                    &l.max_header_bytes,
                    d.max_header_bytes,
                )?,
                header_timeout: positive_duration(
                    "pylon.limits.header_timeout",
                    &l.header_timeout,
                    d.header_timeout,
                )?,
                body_timeout: positive_duration(
                    "pylon.limits.body_timeout",
                    &l.body_timeout,
                    d.body_timeout,
                )?,
                body_min_rate: match &l.body_min_rate {
                    None => d.body_min_rate,
                    Some(s) => parse_size(&s.text()).ok_or_else(|| {
                        ConfigError::new(
                            "pylon.limits.body_min_rate",
                            s.text(),
                            "expected bytes per second such as 500 or 1k (0: no rate)",
                        )
                    })?,
                },
                max_connections: match l.max_connections {
                    None => d.max_connections,
                    Some(0) => {
                        return Err(ConfigError::new(
                            "pylon.limits.max_connections",
                            "0",
                            "must be positive",
                        ))
                    }
                    Some(n) => n as usize,
                },
            }
        }
    };

    let hostport = match raw.hostport {
        None => None,
        Some(h) => {
            let mut allow = Vec::new();
            for (i, c) in h.allow.unwrap_or_default().iter().enumerate() {
                allow.push(parse_cidr(c).ok_or_else(|| {
                    ConfigError::new(
                        format!("pylon.hostport.allow[{i}]"),
                        c,
                        "expected an IP address or CIDR",
                    )
                })?);
            }
            let ports = h.ports.unwrap_or_default();
            if ports.contains(&0) {
                return Err(ConfigError::new(
                    "pylon.hostport.ports",
                    "0",
                    "ports are 1-65535",
                ));
            }
            let mut prefixes = Vec::new();
            for (i, p) in h
                .prefixes
                .unwrap_or_else(|| vec!["/a".into(), "/yarn".into(), "/log-manager".into()])
                .iter()
                .enumerate()
            {
                let key = format!("pylon.hostport.prefixes[{i}]");
                match normalise_prefix(p) {
                    Some(n) if n != "/" => prefixes.push(n),
                    _ => return Err(ConfigError::new(key, p, "must be a path prefix such as /a")),
                }
            }
            (!allow.is_empty()).then_some(HostPort {
                prefixes,
                allow,
                ports,
                allow_loopback: h.allow_loopback.unwrap_or(false),
                timeouts: Timeouts::default(),
            })
        }
    };

    // Standard routes always exist by name; the file may tune or add to them.
    let mut raw_routes = raw.routes.unwrap_or_default();
    let mut names: Vec<String> = STANDARD_ROUTES.iter().map(|s| s.name.to_string()).collect();
    for name in raw_routes.keys() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }

    let mut routes: Vec<Route> = Vec::new();
    let mut inactive = Vec::new();
    for name in names {
        let spec = raw_routes.remove(&name).unwrap_or_default();
        let standard = STANDARD_ROUTES.iter().find(|s| s.name == name);
        match check_route(&name, spec, standard, env)? {
            Some(route) => {
                if let Some(other) = routes.iter().find(|r| r.prefix == route.prefix) {
                    return Err(ConfigError::new(
                        format!("pylon.routes.{name}.prefix"),
                        &route.prefix,
                        format!("already used by route {}", other.name),
                    ));
                }
                routes.push(route);
            }
            None => inactive.push(name),
        }
    }

    compile_rewrites(&mut routes)?;

    Ok(Config {
        listen,
        trusted_proxies,
        resolve_interval,
        keepalive_timeout,
        shutdown_notice,
        access_log,
        admin_listen,
        server_names,
        tls,
        limits,
        hostport,
        routes,
        inactive,
    })
}

fn check_route(
    name: &str,
    spec: RawRoute,
    standard: Option<&StandardRoute>,
    env: &dyn Env,
) -> Result<Option<Route>, ConfigError> {
    let key = |field: &str| format!("pylon.routes.{name}.{field}");

    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ConfigError::new(
            format!("pylon.routes.{name}"),
            name,
            "route names use letters, digits, '-' and '_' only",
        ));
    }

    let prefix = match (&spec.prefix, standard) {
        (Some(p), _) => normalise_prefix(p).ok_or_else(|| {
            ConfigError::new(
                key("prefix"),
                p,
                "must start with '/' and contain no '?', '#', '%', '.' or '..' segments, or empty segments",
            )
        })?,
        (None, Some(s)) => s.prefix.to_string(),
        (None, None) => {
            return Err(ConfigError::new(key("prefix"), "", "required for a route that is not a standard service"))
        }
    };

    if spec.enabled == Some(false) {
        return Ok(None);
    }

    // The environment overrides the file, as in the original's standalone mode.
    let env_name = spec
        .upstream_env
        .clone()
        .or_else(|| standard.map(|s| s.env.to_string()));
    let from_env = env_name.as_deref().and_then(|var| {
        env.get(var)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (var, v))
    });
    // (text as written, text to parse, key for errors)
    let mut texts: Vec<(String, String, String)> = Vec::new();
    let source = match (from_env.as_ref(), &spec.upstream) {
        (Some((var, value)), _) => {
            // A variable may list several endpoints, comma-separated.
            let suffix = standard
                .filter(|_| spec.upstream_env.is_none())
                .map_or("", |s| s.env_path);
            for one in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                let full = format!("{}{}", one.trim_end_matches('/'), suffix);
                texts.push((one.to_string(), full, var.to_string()));
            }
            var.to_string()
        }
        (None, Some(UpstreamSpec::One(u))) if !u.trim().is_empty() => {
            texts.push((u.clone(), u.trim().to_string(), key("upstream")));
            "file".to_string()
        }
        (None, Some(UpstreamSpec::Many(list))) if !list.is_empty() => {
            for (i, u) in list.iter().enumerate() {
                texts.push((
                    u.clone(),
                    u.trim().to_string(),
                    format!("{}[{i}]", key("upstream")),
                ));
            }
            "file".to_string()
        }
        _ => return Ok(None),
    };
    let mut endpoints: Vec<UpstreamUri> = Vec::with_capacity(texts.len());
    for (written, full, err_key) in &texts {
        let uri = UpstreamUri::parse(full)
            .map_err(|reason| ConfigError::new(err_key, written, reason))?;
        if let Some(first) = endpoints.first() {
            if uri.tls != first.tls || uri.base_path != first.base_path {
                return Err(ConfigError::new(
                    err_key,
                    written,
                    "all endpoints of a route need the same scheme and base path",
                ));
            }
        }
        endpoints.push(uri);
    }
    // Only an environment variable can get here empty (`GRAFANA_URI=","`):
    // the file's forms were checked for emptiness above.
    let Some(upstream) = endpoints.first().cloned() else {
        let written = from_env.as_ref().map_or("", |(_, v)| v.as_str());
        return Err(ConfigError::new(
            &source,
            written,
            "lists no URI, only separators; unset it to make the route inactive",
        ));
    };

    let health_check = match spec.health_check {
        Some(RawHealthCheck {
            enabled: Some(false),
            ..
        }) => None,
        raw => {
            let raw = raw.unwrap_or_default();
            let interval = opt_duration(&key("health_check.interval"), &raw.interval)?
                .unwrap_or(DEFAULT_HEALTH_INTERVAL);
            let timeout = opt_duration(&key("health_check.timeout"), &raw.timeout)?
                .unwrap_or(DEFAULT_HEALTH_TIMEOUT);
            if interval.is_zero() || timeout.is_zero() {
                return Err(ConfigError::new(
                    key("health_check"),
                    "0",
                    "interval and timeout must be positive",
                ));
            }
            if let Some(p) = &raw.path {
                if !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(ConfigError::new(
                        key("health_check.path"),
                        p,
                        "must be a path starting with '/'",
                    ));
                }
            }
            Some(HealthCheck {
                interval,
                timeout,
                path: raw.path,
            })
        }
    };

    let connect_timeout = opt_duration(&key("connect_timeout"), &spec.connect_timeout)?
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    if connect_timeout.is_zero() {
        return Err(ConfigError::new(
            key("connect_timeout"),
            "0",
            "must be positive",
        ));
    }
    let timeouts = Timeouts {
        connect: connect_timeout,
        read: opt_duration(&key("read_timeout"), &spec.read_timeout)?.unwrap_or(DEFAULT_IO_TIMEOUT),
        write: opt_duration(&key("write_timeout"), &spec.write_timeout)?
            .unwrap_or(DEFAULT_IO_TIMEOUT),
        idle: opt_duration(&key("idle_timeout"), &spec.idle_timeout)?
            .unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT),
    };
    let max_body_size = match &spec.max_body_size {
        None => None,
        Some(s) => match parse_size(&s.text()) {
            Some(0) => None,
            Some(n) => Some(n),
            None => {
                return Err(ConfigError::new(
                    key("max_body_size"),
                    s.text(),
                    "expected a byte count such as 1048576, 512k, 256m or 4g (0 = unlimited)",
                ))
            }
        },
    };

    if let Some(ca) = &spec.tls_ca_file {
        if !upstream.tls {
            return Err(ConfigError::new(
                key("tls_ca_file"),
                ca,
                "only applies to an https:// upstream",
            ));
        }
        if let Err(e) = std::fs::metadata(ca) {
            return Err(ConfigError::new(
                key("tls_ca_file"),
                ca,
                format!("cannot read: {e}"),
            ));
        }
    }

    let cidrs = |field: &str, list: &Option<Vec<String>>| -> Result<Vec<IpNet>, ConfigError> {
        list.iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| {
                parse_cidr(c).ok_or_else(|| {
                    ConfigError::new(
                        format!("{}[{i}]", key(field)),
                        c,
                        "expected an IP address or CIDR",
                    )
                })
            })
            .collect()
    };
    let allow = cidrs("allow", &spec.allow)?;
    let deny = cidrs("deny", &spec.deny)?;
    let rules = spec.rewrite.clone().unwrap_or_default();
    // Checked here so the error names the rule; compiled again with the
    // portal's derived rules once every route is known.
    RuleSet::new(&rules)
        .map_err(|e| ConfigError::new(e.key(&key("rewrite")), &e.value, &e.reason))?;
    let rewrite_types = spec
        .rewrite_types
        .clone()
        .unwrap_or_else(rewrite::default_types);

    Ok(Some(Route {
        name: name.to_string(),
        prefix,
        upstream,
        endpoints,
        health_check,
        allow,
        deny,
        rate_limit: spec.rate_limit.filter(|n| *n > 0),
        rewrite: None,
        rewrite_types,
        etag_suffix: String::new(),
        proxy_redirect: spec.proxy_redirect.unwrap_or(true),
        webhdfs_redirect: matches!(name, "webhdfs-api" | "webhdfs-alias"),
        rule_specs: rules,
        portal_rewrite: spec.portal_rewrite.unwrap_or(true),
        upstream_source: source,
        add_slash: spec
            .add_slash
            .unwrap_or(standard.is_some_and(|s| s.add_slash)),
        preserve_host: spec.preserve_host.unwrap_or(false),
        timeouts,
        max_body_size,
        tls_verify: spec.tls_verify.unwrap_or(true),
        tls_ca_file: spec.tls_ca_file,
        tls_sni: spec.tls_sni,
    }))
}

/// The portal's derived rules (every other upstream URI → its prefix, the
/// original's hand-kept sub_filter list), then each route's own rules,
/// compiled once; and the ETag suffix that identifies them.
fn compile_rewrites(routes: &mut [Route]) -> Result<(), ConfigError> {
    let mut derived: Vec<(String, String)> = Vec::new();
    for r in routes.iter().filter(|r| r.prefix != "/") {
        for e in &r.endpoints {
            let scheme = if e.tls { "https" } else { "http" };
            let pattern = format!("{scheme}://{}{}", e.authority, e.base_path);
            if !derived.iter().any(|(p, _)| *p == pattern) {
                derived.push((pattern, r.prefix.clone()));
            }
        }
    }
    // Longest first: a URI with a base path before the bare authority.
    derived.sort_by_key(|(pattern, _)| std::cmp::Reverse(pattern.len()));
    for r in routes.iter_mut() {
        let mut specs: Vec<RuleSpec> = Vec::new();
        if r.prefix == "/" && r.portal_rewrite {
            specs.extend(
                derived
                    .iter()
                    .map(|(p, to)| RuleSpec::literal(p.clone(), to.clone())),
            );
        }
        specs.extend(r.rule_specs.iter().cloned());
        if specs.is_empty() {
            continue;
        }
        let set = RuleSet::new(&specs).map_err(|e| {
            ConfigError::new(
                format!("pylon.routes.{}.rewrite", r.name),
                &e.value,
                &e.reason,
            )
        })?;
        r.etag_suffix =
            crate::redirect::config_suffix(format!("{specs:?}{:?}", r.rewrite_types).as_bytes());
        r.rewrite = Some(Arc::new(set));
    }
    Ok(())
}

fn check_tls(t: RawTls, plain: &[String]) -> Result<Tls, ConfigError> {
    let listen = t.listen.unwrap_or_else(|| vec!["0.0.0.0:443".to_string()]);
    for (i, addr) in listen.iter().enumerate() {
        let key = format!("pylon.tls.listen[{i}]");
        addr.parse::<std::net::SocketAddr>()
            .map_err(|_| ConfigError::new(&key, addr, "expected IP:PORT, e.g. 0.0.0.0:443"))?;
        if plain.contains(addr) {
            return Err(ConfigError::new(key, addr, "already a plain-HTTP listener"));
        }
    }
    let cert = t.cert.ok_or_else(|| {
        ConfigError::new("pylon.tls.cert", "", "required: PEM certificate chain file")
    })?;
    let key = t
        .key
        .ok_or_else(|| ConfigError::new("pylon.tls.key", "", "required: PEM private key file"))?;
    // Pingora panics at start on an unreadable pair; refuse it here instead.
    let pem = std::fs::read(&cert)
        .map_err(|e| ConfigError::new("pylon.tls.cert", &cert, format!("cannot read: {e}")))?;
    if !rustls_pemfile::certs(&mut pem.as_slice()).any(|c| c.is_ok()) {
        return Err(ConfigError::new(
            "pylon.tls.cert",
            &cert,
            "no PEM certificate in the file",
        ));
    }
    let pem = std::fs::read(&key)
        .map_err(|e| ConfigError::new("pylon.tls.key", &key, format!("cannot read: {e}")))?;
    if !matches!(
        rustls_pemfile::private_key(&mut pem.as_slice()),
        Ok(Some(_))
    ) {
        return Err(ConfigError::new(
            "pylon.tls.key",
            &key,
            "no PEM private key in the file",
        ));
    }
    let public_port = match t.public_port {
        Some(0) => {
            return Err(ConfigError::new(
                "pylon.tls.public_port",
                "0",
                "port must be 1-65535",
            ))
        }
        Some(p) => p,
        None => listen
            .first()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map_or(443, |a| a.port()),
    };
    let hsts_seconds = match &t.hsts {
        None => 0,
        Some(s) => parse_duration(&s.text())
            .map(|d| d.as_secs())
            .ok_or_else(|| {
                ConfigError::new(
                    "pylon.tls.hsts",
                    s.text(),
                    "expected seconds (31536000) or a duration such as 8760h",
                )
            })?,
    };
    Ok(Tls {
        listen,
        cert,
        key,
        http2: t.http2.unwrap_or(true),
        redirect_http: t.redirect_http.unwrap_or(false),
        public_port,
        hsts_seconds,
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

/// `/grafana/` → `/grafana`; `/` stays `/`. Rejects anything the path
/// normaliser would change, so a prefix can never match a path that would
/// have been normalised away from it.
pub fn normalise_prefix(p: &str) -> Option<String> {
    if !p.starts_with('/') {
        return None;
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Some("/".to_string());
    }
    for seg in trimmed[1..].split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return None;
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b))
        {
            return None;
        }
    }
    Some(trimmed.to_string())
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn positive_duration(
    key: &str,
    v: &Option<Scalar>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match opt_duration(key, v)? {
        None => Ok(default),
        Some(d) if d.is_zero() => Err(ConfigError::new(key, "0", "must be positive")),
        Some(d) => Ok(d),
    }
}

fn opt_duration(key: &str, v: &Option<Scalar>) -> Result<Option<Duration>, ConfigError> {
    match v {
        None => Ok(None),
        Some(s) => parse_duration(&s.text()).map(Some).ok_or_else(|| {
            ConfigError::new(
                key,
                s.text(),
                "expected a duration such as 30 (seconds), 500ms, 10s, 5m or 1h",
            )
        }),
    }
}

/// `30` (seconds), `500ms`, `10s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "" | "s" => n.checked_mul(1000)?,
        "ms" => n,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// `1048576`, `512k`, `256m`, `4g` (binary multiples, either case).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.listen, vec!["0.0.0.0:80"]);
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
        assert!(e.reason.contains("bogus"), "{e}");
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
        assert_eq!(c.listen, vec!["0.0.0.0:8086"]);
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
        assert_eq!(c.admin_listen.as_deref(), Some("127.0.0.1:9191"));

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
}
