//! `pylon:` as written → the checked model, one `check_*` per section.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::route::{check_route, compile_rewrites};
use super::schema::*;
use super::*;

pub(super) fn check(raw: RawPylon, env: &dyn Env) -> Result<Config, ConfigError> {
    let listen = check_listen(raw.listen, raw.server_port)?;
    let admin_listen = check_admin_listen(raw.admin_listen.as_deref(), &listen)?;
    let tls = raw.tls.map(|t| check_tls(t, &listen)).transpose()?;
    let (routes, inactive) = check_routes(raw.routes.unwrap_or_default(), env)?;
    Ok(Config {
        listen,
        trusted_proxies: cidrs("pylon.trusted_proxies", raw.trusted_proxies.as_deref())?,
        resolve_interval: positive_duration(
            "pylon.resolve_interval",
            &raw.resolve_interval,
            DEFAULT_RESOLVE_INTERVAL,
        )?,
        keepalive_timeout: opt_duration("pylon.keepalive_timeout", &raw.keepalive_timeout)?
            .unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT),
        shutdown_notice: opt_duration("pylon.shutdown_notice", &raw.shutdown_notice)?
            .unwrap_or(DEFAULT_SHUTDOWN_NOTICE),
        access_log: check_access_log(raw.access_log.as_deref())?,
        admin_listen,
        server_names: check_server_names(raw.server_names.unwrap_or_default())?,
        tls,
        limits: raw.limits.map_or(Ok(Limits::default()), check_limits)?,
        hostport: raw.hostport.map(check_hostport).transpose()?.flatten(),
        routes,
        inactive,
    })
}

/// An `IP:PORT` listener address.
fn socket_addr(key: String, text: &str, example: &str) -> Result<SocketAddr, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| ConfigError::new(key, text, format!("expected IP:PORT, e.g. {example}")))
}

fn check_listen(
    listen: Option<Vec<String>>,
    server_port: Option<u16>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    match (listen, server_port) {
        (Some(list), _) if list.is_empty() => Err(ConfigError::new(
            "pylon.listen",
            "[]",
            "needs at least one address",
        )),
        (Some(list), _) => list
            .iter()
            .enumerate()
            .map(|(i, a)| socket_addr(format!("pylon.listen[{i}]"), a, "0.0.0.0:80 or [::]:80"))
            .collect(),
        (None, Some(0)) => Err(ConfigError::new(
            "pylon.server-port",
            "0",
            "port must be 1-65535",
        )),
        (None, port) => Ok(vec![SocketAddr::from(([0, 0, 0, 0], port.unwrap_or(80)))]),
    }
}

fn check_admin_listen(
    text: Option<&str>,
    listen: &[SocketAddr],
) -> Result<Option<SocketAddr>, ConfigError> {
    let addr = match text.map(str::trim) {
        None => DEFAULT_ADMIN_LISTEN,
        Some("off") | Some("") => return Ok(None),
        Some(addr) => socket_addr("pylon.admin_listen".into(), addr, "127.0.0.1:9191 (or off)")?,
    };
    if listen.contains(&addr) {
        return Err(ConfigError::new(
            "pylon.admin_listen",
            addr.to_string(),
            "must differ from the public listeners: admin pages are never public",
        ));
    }
    Ok(Some(addr))
}

fn check_access_log(text: Option<&str>) -> Result<AccessLogFormat, ConfigError> {
    match text {
        None | Some("combined") => Ok(AccessLogFormat::Combined),
        Some("json") => Ok(AccessLogFormat::Json),
        Some("off") => Ok(AccessLogFormat::Off),
        Some(other) => Err(ConfigError::new(
            "pylon.access_log",
            other,
            "expected one of: combined, json, off",
        )),
    }
}

fn check_server_names(names: Vec<String>) -> Result<Vec<String>, ConfigError> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let name = n.trim().to_ascii_lowercase();
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
            ok.then_some(name).ok_or_else(|| {
                ConfigError::new(
                    format!("pylon.server_names[{i}]"),
                    n,
                    "expected a host name or address without port",
                )
            })
        })
        .collect()
}

fn check_limits(l: RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let size = |key: &str, v: &Option<Scalar>, default: usize| -> Result<usize, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => parse_size(&s.text())
                .filter(|n| *n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    ConfigError::new(key, s.text(), "expected a positive byte count such as 8k")
                }),
        }
    };
    let count = |key: &str, v: Option<u64>, default: usize| match v {
        None => Ok(default),
        Some(0) => Err(ConfigError::new(key, "0", "must be positive")),
        Some(n) => Ok(n as usize),
    };
    Ok(Limits {
        max_uri_length: size(
            "pylon.limits.max_uri_length",
            &l.max_uri_length,
            d.max_uri_length,
        )?,
        max_header_count: count(
            "pylon.limits.max_header_count",
            l.max_header_count,
            d.max_header_count,
        )?,
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
        max_connections: count(
            "pylon.limits.max_connections",
            l.max_connections,
            d.max_connections,
        )?,
    })
}

/// `None` (off) when no destination is allowed.
fn check_hostport(h: RawHostPort) -> Result<Option<HostPort>, ConfigError> {
    let allow = cidrs("pylon.hostport.allow", h.allow.as_deref())?;
    let signing = super::signing::check_signing(&h)?;
    let ports = h.ports.unwrap_or_default();
    if ports.contains(&0) {
        return Err(ConfigError::new(
            "pylon.hostport.ports",
            "0",
            "ports are 1-65535",
        ));
    }
    let prefixes = h
        .prefixes
        .unwrap_or_else(|| vec!["/a".into(), "/yarn".into(), "/log-manager".into()])
        .iter()
        .enumerate()
        .map(|(i, p)| match normalise_prefix(p) {
            Some(n) if n != "/" => Ok(n),
            _ => Err(ConfigError::new(
                format!("pylon.hostport.prefixes[{i}]"),
                p,
                "must be a path prefix such as /a",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((!allow.is_empty()).then_some(HostPort {
        prefixes,
        allow,
        ports,
        allow_loopback: h.allow_loopback.unwrap_or(false),
        timeouts: Timeouts::default(),
        signing,
    }))
}

/// Every route, active ones checked; the names of those without upstream.
fn check_routes(
    mut raw_routes: BTreeMap<String, RawRoute>,
    env: &dyn Env,
) -> Result<(Vec<Route>, Vec<String>), ConfigError> {
    // Standard routes always exist by name; the file may tune or add to them.
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
        let Some(route) = check_route(&name, spec, standard, env)? else {
            inactive.push(name);
            continue;
        };
        if let Some(other) = routes.iter().find(|r| r.prefix == route.prefix) {
            return Err(ConfigError::new(
                format!("pylon.routes.{name}.prefix"),
                &route.prefix,
                format!("already used by route {}", other.name),
            ));
        }
        routes.push(route);
    }
    compile_rewrites(&mut routes)?;
    Ok((routes, inactive))
}

/// A list of CIDRs (or single addresses) under `key`.
pub(super) fn cidrs(key: &str, list: Option<&[String]>) -> Result<Vec<IpNet>, ConfigError> {
    list.unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            parse_cidr(c).ok_or_else(|| {
                ConfigError::new(
                    format!("{key}[{i}]"),
                    c,
                    "expected an IP address or CIDR, e.g. 10.1.0.0/16",
                )
            })
        })
        .collect()
}

fn check_tls(t: RawTls, plain: &[SocketAddr]) -> Result<Tls, ConfigError> {
    let mut listen = Vec::new();
    for (i, text) in t
        .listen
        .unwrap_or_else(|| vec!["0.0.0.0:443".to_string()])
        .iter()
        .enumerate()
    {
        let key = format!("pylon.tls.listen[{i}]");
        let addr = socket_addr(key.clone(), text, "0.0.0.0:443")?;
        if plain.contains(&addr) {
            return Err(ConfigError::new(key, text, "already a plain-HTTP listener"));
        }
        listen.push(addr);
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
        None => listen.first().map_or(443, SocketAddr::port),
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

pub(super) fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

pub(super) fn positive_duration(
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

pub(super) fn opt_duration(key: &str, v: &Option<Scalar>) -> Result<Option<Duration>, ConfigError> {
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
