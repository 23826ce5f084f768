//! `pylon -T`: the configuration that runs, as a file `pylon -t` accepts:
//! every default written out, each value the environment supplied marked
//! with its variable, key files as their paths only.
//!
//! Printing is the inverse of `check`: a value is written in a form its
//! check reads back to the same model, so printing what was read from the
//! printout gives the same text. A new key is added here next to its check.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use pingora::server::configuration::ServerConf;

use super::*;

/// The whole file: Pingora's server settings, then `pylon:`.
pub fn effective_yaml(server: &ServerConf, c: &Config) -> String {
    let mut out = String::from(
        "# The effective configuration: defaults filled in, values from the\n\
         # environment marked with their variable. `pylon -t` accepts it.\n\n\
         # ---- server (Pingora) ----\n",
    );
    // ServerConf's own serialisation: the keys and forms Pingora reads.
    out.push_str(&serde_yaml::to_string(server).unwrap_or_default());
    out.push_str("\n# ---- pylon ----\npylon:\n");
    let p = &mut Out(out);
    p.line(1, "listen", &addrs(&c.listen));
    p.line(1, "trusted_proxies", &list(c.trusted_proxies.iter()));
    p.line(1, "resolve_interval", &duration(c.resolve_interval));
    p.line(1, "keepalive_timeout", &duration(c.keepalive_timeout));
    p.line(1, "shutdown_notice", &duration(c.shutdown_notice));
    let log = match c.access_log {
        AccessLogFormat::Off => "off",
        AccessLogFormat::Combined => "combined",
        AccessLogFormat::Json => "json",
    };
    p.line(1, "access_log", log);
    let admin = c
        .admin_listen
        .map_or("off".to_string(), |a| quote(&a.to_string()));
    p.line(1, "admin_listen", &admin);
    p.line(1, "server_names", &list(c.server_names.iter()));
    if let Some(t) = &c.tls {
        tls(p, t);
    }
    limits(p, &c.limits);
    if let Some(h) = &c.hostport {
        hostport(p, h);
    }
    p.key(1, "routes");
    for r in &c.routes {
        route(p, r);
    }
    // Only the standard ones: a route of the file's own that is off does not
    // run, so it is not printed, and reading the printout cannot know it.
    let inactive: Vec<&str> = c
        .inactive
        .iter()
        .map(String::as_str)
        .filter(|n| STANDARD_ROUTES.iter().any(|s| s.name == *n))
        .collect();
    if !inactive.is_empty() {
        p.comment(
            2,
            &format!("inactive (no upstream set): {}", inactive.join(", ")),
        );
    }
    p.0.clone()
}

fn tls(p: &mut Out, t: &Tls) {
    p.key(1, "tls");
    p.line(2, "listen", &addrs(&t.listen));
    // The files' paths only: their contents (the private key) are never shown.
    p.line(2, "cert", &quote(&t.cert));
    p.line(2, "key", &quote(&t.key));
    p.line(2, "http2", &t.http2.to_string());
    p.line(2, "redirect_http", &t.redirect_http.to_string());
    p.line(2, "public_port", &t.public_port.to_string());
    p.line(2, "hsts", &t.hsts_seconds.to_string());
}

fn limits(p: &mut Out, l: &Limits) {
    p.key(1, "limits");
    p.line(2, "max_uri_length", &size(l.max_uri_length as u64));
    p.line(2, "max_header_count", &l.max_header_count.to_string());
    p.line(2, "max_header_bytes", &size(l.max_header_bytes as u64));
    p.line(2, "header_timeout", &duration(l.header_timeout));
    p.line(2, "body_timeout", &duration(l.body_timeout));
    p.line(2, "body_min_rate", &size(l.body_min_rate));
    p.line(2, "max_connections", &l.max_connections.to_string());
}

fn hostport(p: &mut Out, h: &HostPort) {
    p.key(1, "hostport");
    p.line(2, "prefixes", &list(h.prefixes.iter()));
    p.line(2, "allow", &list(h.allow.iter()));
    let ports: Vec<String> = h.ports.iter().map(u16::to_string).collect();
    p.line(2, "ports", &format!("[{}]", ports.join(", ")));
    p.line(2, "allow_loopback", &h.allow_loopback.to_string());
    // Key files as paths only: the keys themselves are never printed.
    if let Some(s) = &h.signing {
        p.line(2, "signing_key_file", &quote(&s.key_file));
        if let Some((file, _)) = &s.previous {
            p.line(2, "previous_signing_key_file", &quote(file));
            p.line(2, "previous_key_grace", &duration(s.previous_grace));
        }
        p.line(2, "require_signature", &s.require.to_string());
        p.line(2, "redirect_expiry", &duration(s.redirect_expiry));
        p.line(2, "link_expiry", &duration(s.link_expiry));
    }
}

fn route(p: &mut Out, r: &Route) {
    p.key(2, &quote(&r.name));
    p.line(3, "prefix", &quote(&r.prefix));
    let uris: Vec<String> = r
        .endpoints
        .iter()
        .map(|e| {
            let scheme = if e.tls { "https" } else { "http" };
            format!("{scheme}://{}{}", e.authority, e.base_path)
        })
        .collect();
    let upstream = match uris.as_slice() {
        [one] => quote(one),
        many => list(many.iter()),
    };
    match r.upstream_source.as_str() {
        "file" => p.line(3, "upstream", &upstream),
        var => {
            p.line(3, "upstream", &format!("{upstream}  # from {var}"));
            // A variable of the route's own (not the standard one) must be
            // named again, or reading the printout would not consult it.
            let standard = STANDARD_ROUTES.iter().find(|s| s.name == r.name);
            if standard.is_none_or(|s| s.env != var) {
                p.line(3, "upstream_env", &quote(var));
            }
        }
    }
    match &r.health_check {
        None => p.line(3, "health_check", "{enabled: false}"),
        Some(h) => {
            let mut text = format!(
                "{{interval: {}, timeout: {}",
                duration(h.interval),
                duration(h.timeout)
            );
            if let Some(path) = &h.path {
                let _ = write!(text, ", path: {}", quote(path));
            }
            p.line(3, "health_check", &(text + "}"));
        }
    }
    p.line(3, "allow", &list(r.allow.iter()));
    p.line(3, "deny", &list(r.deny.iter()));
    p.line(3, "rate_limit", &r.rate_limit.unwrap_or(0).to_string());
    if r.rule_specs.is_empty() {
        p.line(3, "rewrite", "[]");
    } else {
        p.key(3, "rewrite");
        for rule in &r.rule_specs {
            let mut text = format!(
                "- {{pattern: {}, replacement: {}, regex: {}",
                quote(&rule.pattern),
                quote(&rule.replacement),
                rule.regex
            );
            if let Some(n) = rule.max_match {
                let _ = write!(text, ", max_match: {n}");
            }
            p.raw(4, &(text + "}"));
        }
    }
    p.line(3, "rewrite_types", &list(r.rewrite_types.written().iter()));
    p.line(3, "proxy_redirect", &r.proxy_redirect.to_string());
    p.line(3, "portal_rewrite", &r.portal_rewrite.to_string());
    p.line(3, "add_slash", &r.add_slash.to_string());
    p.line(3, "preserve_host", &r.preserve_host.to_string());
    p.line(3, "connect_timeout", &duration(r.timeouts.connect));
    p.line(3, "read_timeout", &duration(r.timeouts.read));
    p.line(3, "write_timeout", &duration(r.timeouts.write));
    p.line(3, "idle_timeout", &duration(r.timeouts.idle));
    p.line(3, "max_body_size", &size(r.max_body_size.unwrap_or(0)));
    p.line(3, "tls_verify", &r.tls_verify.to_string());
    if let Some(ca) = &r.tls_ca_file {
        p.line(3, "tls_ca_file", &quote(ca));
    }
    if let Some(sni) = &r.tls_sni {
        p.line(3, "tls_sni", &quote(sni));
    }
}

struct Out(String);

impl Out {
    fn indent(&mut self, level: usize) {
        self.0.push_str(&"  ".repeat(level));
    }
    fn key(&mut self, level: usize, key: &str) {
        self.indent(level);
        let _ = writeln!(self.0, "{key}:");
    }
    fn line(&mut self, level: usize, key: &str, value: &str) {
        self.indent(level);
        let _ = writeln!(self.0, "{key}: {value}");
    }
    fn raw(&mut self, level: usize, text: &str) {
        self.indent(level);
        let _ = writeln!(self.0, "{text}");
    }
    fn comment(&mut self, level: usize, text: &str) {
        self.indent(level);
        let _ = writeln!(self.0, "# {text}");
    }
}

/// A YAML double-quoted string: reads back as exactly `s`, whatever it
/// holds (quotes, `#`, `: `, a leading `*`, control characters).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| quote(&i.to_string())).collect();
    format!("[{}]", items.join(", "))
}

fn addrs(a: &[SocketAddr]) -> String {
    list(a.iter())
}

/// The largest unit that states `d` exactly, in the forms
/// `parse_duration` reads.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0".to_string(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// The largest binary unit that states `n` exactly (`parse_size`'s forms).
fn size(n: u64) -> String {
    match n {
        0 => "0".to_string(),
        n if n % (1 << 30) == 0 => format!("{}g", n >> 30),
        n if n % (1 << 20) == 0 => format!("{}m", n >> 20),
        n if n % (1 << 10) == 0 => format!("{}k", n >> 10),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn units_read_back_to_the_same_value() {
        for d in [1, 999, 1000, 60_000, 90_000, 3_600_000, 5_400_000] {
            let d = Duration::from_millis(d);
            assert_eq!(check::parse_duration(&duration(d)), Some(d));
        }
        for n in [1, 500, 1024, 8192, 1 << 20, 3 << 30, 1025] {
            assert_eq!(check::parse_size(&size(n)), Some(n));
        }
        assert_eq!(duration(Duration::from_secs(3600)), "1h");
        assert_eq!(size(32 << 10), "32k");
    }

    #[test]
    fn quoted_strings_read_back_unchanged() {
        for s in ["a\"b", "x: y # z", "*star", "\\d+\t", "href='/'", "ünï"] {
            let back: String = serde_yaml::from_str(&quote(s)).expect("YAML");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn the_printout_reads_back_to_the_same_model_and_text() {
        let text = include_str!("../../conf/pylon.yaml");
        let mut env: BTreeMap<String, String> = [(
            "GRAFANA_URI".to_string(),
            "http://10.0.3.9:3000, http://10.0.3.10:3000".to_string(),
        )]
        .into_iter()
        .collect();
        let text = text.replace(
            "  routes:\n",
            "  routes:\n    mine:\n      prefix: /mine\n      upstream_env: MINE_URI\n    \
             off:\n      prefix: /off\n      upstream: http://a:1\n      enabled: false\n",
        );
        let text = text.replacen(
            "upstream: https://127.0.0.1:6443\n",
            "upstream: https://127.0.0.1:6443\n      enabled: false\n",
            1,
        );
        env.insert("MINE_URI".to_string(), "http://10.0.3.9:1".to_string());
        let (server, first) = load(&text, &env).expect("shipped file");
        let printed = effective_yaml(&server, &first);
        assert!(printed.contains("# from GRAFANA_URI"), "{printed}");
        assert!(printed.contains("upstream_env: \"MINE_URI\""), "{printed}");
        assert!(
            !printed.contains("upstream_env: \"GRAFANA_URI\""),
            "{printed}"
        );
        let (server2, second) = load(&printed, &env).expect("printout accepted");
        // A route of the file's own that is off is not printed.
        assert_eq!(first.inactive, ["kubernetes", "off"]);
        assert_eq!(second.inactive, ["kubernetes"]);
        let mut first = first;
        first.inactive.retain(|n| n != "off");
        assert_eq!(second, first);
        assert_eq!(server2, server);
        assert_eq!(effective_yaml(&server2, &second), printed);
    }
}
