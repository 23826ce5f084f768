//! One route as written → a checked [`Route`], and the rewrite rules
//! compiled once every route is known.

use http::HeaderValue;

use super::check::*;
use super::schema::*;
use super::*;

pub(super) fn check_route(
    name: &str,
    spec: RawRoute,
    standard: Option<&StandardRoute>,
    env: &dyn Env,
) -> Result<Option<Route>, ConfigError> {
    let key = |field: &str| format!("pylon.routes.{name}.{field}");
    check_route_name(name)?;
    let prefix = route_prefix(&key, spec.prefix.as_deref(), standard)?;
    if spec.enabled == Some(false) {
        return Ok(None);
    }
    let Some((endpoints, source)) = route_endpoints(&key, &spec, standard, env)? else {
        return Ok(None);
    };
    // Every endpoint shares the first one's scheme, base path and `Host`.
    let upstream = endpoints[0].clone();
    if let Some(ca) = &spec.tls_ca_file {
        check_ca_file(&key, ca, upstream.tls)?;
    }
    let rules = spec.rewrite.clone().unwrap_or_default();
    // Checked here so the error names the rule; compiled again with the
    // portal's derived rules once every route is known.
    RuleSet::new(&rules)
        .map_err(|e| ConfigError::new(e.key(&key("rewrite")), &e.value, &e.reason))?;
    let rewrite_types = match &spec.rewrite_types {
        Some(types) => ContentTypes::parse(types),
        None => ContentTypes::default(),
    };
    Ok(Some(Route {
        name: name.to_string(),
        host_header: header_value(&key("upstream"), &upstream.authority)?,
        prefix_header: header_value(&key("prefix"), &prefix)?,
        portal: prefix == "/",
        prefix,
        upstream,
        endpoints,
        health_check: check_health_check(&key, spec.health_check.clone())?,
        allow: cidrs(&key("allow"), spec.allow.as_deref())?,
        deny: cidrs(&key("deny"), spec.deny.as_deref())?,
        rate_limit: spec.rate_limit.filter(|n| *n > 0),
        rewrite: None,
        rewrite_types,
        etag_suffix: String::new(),
        proxy_redirect: spec.proxy_redirect.unwrap_or(true),
        webhdfs_redirect: standard.is_some_and(|s| s.webhdfs_api),
        rule_specs: rules,
        portal_rewrite: spec.portal_rewrite.unwrap_or(true),
        upstream_source: source,
        add_slash: spec
            .add_slash
            .unwrap_or(standard.is_some_and(|s| s.add_slash)),
        preserve_host: spec.preserve_host.unwrap_or(false),
        timeouts: route_timeouts(&key, &spec)?,
        max_body_size: route_max_body(&key, spec.max_body_size.as_ref())?,
        tls_verify: spec.tls_verify.unwrap_or(true),
        tls_ca_file: spec.tls_ca_file,
        tls_sni: spec.tls_sni,
    }))
}

fn check_route_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(ConfigError::new(
            format!("pylon.routes.{name}"),
            name,
            "route names use letters, digits, '-' and '_' only",
        )),
    }
}

fn route_prefix(
    key: &dyn Fn(&str) -> String,
    written: Option<&str>,
    standard: Option<&StandardRoute>,
) -> Result<String, ConfigError> {
    match (written, standard) {
        (Some(p), _) => normalise_prefix(p).ok_or_else(|| {
            ConfigError::new(
                key("prefix"),
                p,
                "must start with '/' and contain no '?', '#', '%', '.' or '..' segments, or empty segments",
            )
        }),
        (None, Some(s)) => Ok(s.prefix.to_string()),
        (None, None) => Err(ConfigError::new(
            key("prefix"),
            "",
            "required for a route that is not a standard service",
        )),
    }
}

/// The route's endpoints and where they came from (`file` or the
/// variable); `None` when no upstream is set (an inactive route).
fn route_endpoints(
    key: &dyn Fn(&str) -> String,
    spec: &RawRoute,
    standard: Option<&StandardRoute>,
    env: &dyn Env,
) -> Result<Option<(Vec<UpstreamUri>, String)>, ConfigError> {
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
    if endpoints.is_empty() {
        let written = from_env.as_ref().map_or("", |(_, v)| v.as_str());
        return Err(ConfigError::new(
            &source,
            written,
            "lists no URI, only separators; unset it to make the route inactive",
        ));
    }
    Ok(Some((endpoints, source)))
}

fn check_health_check(
    key: &dyn Fn(&str) -> String,
    raw: Option<RawHealthCheck>,
) -> Result<Option<HealthCheck>, ConfigError> {
    let raw = match raw {
        Some(RawHealthCheck {
            enabled: Some(false),
            ..
        }) => return Ok(None),
        raw => raw.unwrap_or_default(),
    };
    let interval = opt_duration(&key("health_check.interval"), &raw.interval)?
        .unwrap_or(DEFAULT_HEALTH_INTERVAL);
    let timeout =
        opt_duration(&key("health_check.timeout"), &raw.timeout)?.unwrap_or(DEFAULT_HEALTH_TIMEOUT);
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
    Ok(Some(HealthCheck {
        interval,
        timeout,
        path: raw.path,
    }))
}

fn route_timeouts(key: &dyn Fn(&str) -> String, spec: &RawRoute) -> Result<Timeouts, ConfigError> {
    let d = Timeouts::default();
    Ok(Timeouts {
        connect: positive_duration(&key("connect_timeout"), &spec.connect_timeout, d.connect)?,
        read: opt_duration(&key("read_timeout"), &spec.read_timeout)?.unwrap_or(d.read),
        write: opt_duration(&key("write_timeout"), &spec.write_timeout)?.unwrap_or(d.write),
        idle: opt_duration(&key("idle_timeout"), &spec.idle_timeout)?.unwrap_or(d.idle),
    })
}

/// `None` means unlimited (also for `0`).
fn route_max_body(
    key: &dyn Fn(&str) -> String,
    written: Option<&Scalar>,
) -> Result<Option<u64>, ConfigError> {
    let Some(s) = written else {
        return Ok(None);
    };
    match parse_size(&s.text()) {
        Some(n) => Ok((n > 0).then_some(n)),
        None => Err(ConfigError::new(
            key("max_body_size"),
            s.text(),
            "expected a byte count such as 1048576, 512k, 256m or 4g (0 = unlimited)",
        )),
    }
}

fn check_ca_file(key: &dyn Fn(&str) -> String, ca: &str, tls: bool) -> Result<(), ConfigError> {
    if !tls {
        return Err(ConfigError::new(
            key("tls_ca_file"),
            ca,
            "only applies to an https:// upstream",
        ));
    }
    std::fs::metadata(ca)
        .map(|_| ())
        .map_err(|e| ConfigError::new(key("tls_ca_file"), ca, format!("cannot read: {e}")))
}

/// A header value sent on every request of the route, built once here so
/// that a value no header can carry is a refused file, not a 500 per request.
fn header_value(key: &str, text: &str) -> Result<HeaderValue, ConfigError> {
    HeaderValue::from_str(text)
        .map_err(|_| ConfigError::new(key, text, "cannot be sent as a header value"))
}

/// The portal's derived rules (every other upstream URI → its prefix, the
/// original's hand-kept sub_filter list), then each route's own rules,
/// compiled once; and the ETag suffix that identifies them.
pub(super) fn compile_rewrites(routes: &mut [Route]) -> Result<(), ConfigError> {
    let mut derived: Vec<(String, String)> = Vec::new();
    for r in routes.iter().filter(|r| !r.portal) {
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
        if r.portal && r.portal_rewrite {
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
