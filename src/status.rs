//! The status page: one HTML page readable at a glance (no scripts; it
//! reloads itself every few seconds) and the same facts as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use crate::metrics::RouteWindow;

pub struct Endpoint {
    pub address: String,
    pub up: bool,
}

pub struct RouteStatus<'a> {
    pub name: &'a str,
    pub prefix: &'a str,
    pub upstream: String,
    /// `false` when the route has no active health check.
    pub checked: bool,
    pub endpoints: Vec<Endpoint>,
    pub window: Option<RouteWindow>,
}

pub struct Status<'a> {
    pub version: &'a str,
    pub config_hash: &'a str,
    pub uptime: Duration,
    pub draining: bool,
    pub routes: Vec<RouteStatus<'a>>,
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |s| format!("{:.1} ms", s * 1000.0))
}

fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

/// The route's overall state: every endpoint up, some, or none.
fn health(r: &RouteStatus) -> (&'static str, &'static str) {
    let up = r.endpoints.iter().filter(|e| e.up).count();
    match (r.checked, up, r.endpoints.len()) {
        (_, _, 0) => ("unresolved", "down"),
        (false, _, _) => ("not checked", "unknown"),
        (true, u, n) if u == n => ("up", "up"),
        (true, 0, _) => ("down", "down"),
        _ => ("degraded", "degraded"),
    }
}

pub fn html(s: &Status) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"5\"><title>Pylon status</title>\n<style>\
body{{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}}\
h1{{font-size:1.4em;margin:0 0 .2em}}.meta{{color:#666;margin-bottom:1.2em}}\
table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;padding:.45em .8em;border-bottom:1px solid #ddd;vertical-align:top}}\
th{{background:#f4f4f4;font-weight:600}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}\
.up{{color:#0a7d2c;font-weight:600}}.down{{color:#c0261c;font-weight:600}}.degraded{{color:#b36b00;font-weight:600}}.unknown{{color:#666}}\
.ep{{display:block;font-family:ui-monospace,monospace;font-size:.92em}}.draining{{background:#fff3cd;padding:.5em;margin-bottom:1em}}\
</style></head><body>\n<h1>Pylon</h1>\n<div class=\"meta\">version {} · config {} · up {} · last minute, refreshed every 5 s</div>\n",
        esc(s.version),
        esc(s.config_hash),
        uptime(s.uptime)
    );
    if s.draining {
        out.push_str(
            "<div class=\"draining\">This instance is draining and will stop shortly.</div>\n",
        );
    }
    out.push_str(
        "<table>\n<tr><th>route</th><th>prefix</th><th>upstream</th><th>health</th>\
<th>endpoints</th><th>req/s</th><th>errors</th><th>p50</th><th>p99</th></tr>\n",
    );
    for r in &s.routes {
        let (label, class) = health(r);
        let w = r.window.as_ref();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{label}</td><td>",
            esc(r.name),
            esc(r.prefix),
            esc(&r.upstream)
        );
        for e in &r.endpoints {
            let (state, cls) = match (r.checked, e.up) {
                (false, _) => ("?", "unknown"),
                (true, true) => ("up", "up"),
                (true, false) => ("down", "down"),
            };
            let _ = write!(
                out,
                "<span class=\"ep\">{} <span class=\"{cls}\">{state}</span></span>",
                esc(&e.address)
            );
        }
        let _ = writeln!(
            out,
            "</td><td class=\"n\">{:.1}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            w.map_or(0.0, |w| w.requests_per_second),
            w.and_then(|w| w.error_ratio).map_or_else(|| "–".into(), |e| format!("{:.1}%", e * 100.0)),
            ms(w.and_then(|w| w.p50_seconds)),
            ms(w.and_then(|w| w.p99_seconds)),
        );
    }
    out.push_str("</table>\n<p class=\"meta\">Also as <a href=\"/status?format=json\">JSON</a> and <a href=\"/metrics\">Prometheus metrics</a>.</p>\n</body></html>\n");
    out
}

fn json_str(out: &mut String, s: &str) {
    crate::access_log::push_json_str(out, s.as_bytes());
}

fn json_num(out: &mut String, v: Option<f64>) {
    match v {
        Some(v) if v.is_finite() => {
            let _ = write!(out, "{v}");
        }
        _ => out.push_str("null"),
    }
}

pub fn json(s: &Status) -> String {
    let mut out = String::with_capacity(2048);
    out.push_str("{\"version\":");
    json_str(&mut out, s.version);
    out.push_str(",\"config_hash\":");
    json_str(&mut out, s.config_hash);
    let _ = write!(
        out,
        ",\"uptime_seconds\":{},\"draining\":{},\"routes\":[",
        s.uptime.as_secs(),
        s.draining
    );
    for (i, r) in s.routes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json_str(&mut out, r.name);
        out.push_str(",\"prefix\":");
        json_str(&mut out, r.prefix);
        out.push_str(",\"upstream\":");
        json_str(&mut out, &r.upstream);
        out.push_str(",\"health\":");
        json_str(&mut out, health(r).0);
        out.push_str(",\"endpoints\":[");
        for (j, e) in r.endpoints.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"address\":");
            json_str(&mut out, &e.address);
            let _ = write!(
                out,
                ",\"up\":{}}}",
                if r.checked {
                    e.up.to_string()
                } else {
                    "null".into()
                }
            );
        }
        let w = r.window.as_ref();
        out.push_str("],\"requests_per_second\":");
        json_num(&mut out, Some(w.map_or(0.0, |w| w.requests_per_second)));
        out.push_str(",\"error_ratio\":");
        json_num(&mut out, w.and_then(|w| w.error_ratio));
        out.push_str(",\"p50_seconds\":");
        json_num(&mut out, w.and_then(|w| w.p50_seconds));
        out.push_str(",\"p99_seconds\":");
        json_num(&mut out, w.and_then(|w| w.p99_seconds));
        out.push('}');
    }
    out.push_str("]}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status<'static> {
        Status {
            version: "1.2.3",
            config_hash: "abc",
            uptime: Duration::from_secs(3725),
            draining: false,
            routes: vec![
                RouteStatus {
                    name: "grafana",
                    prefix: "/grafana",
                    upstream: "http://10.0.0.1:3000".into(),
                    checked: true,
                    endpoints: vec![
                        Endpoint {
                            address: "10.0.0.1:3000".into(),
                            up: true,
                        },
                        Endpoint {
                            address: "10.0.0.2:3000".into(),
                            up: false,
                        },
                    ],
                    window: Some(RouteWindow {
                        route: "grafana".into(),
                        requests_per_second: 12.5,
                        error_ratio: Some(0.02),
                        p50_seconds: Some(0.0012),
                        p99_seconds: Some(0.0456),
                    }),
                },
                RouteStatus {
                    name: "x<y",
                    prefix: "/x",
                    upstream: "http://h:1".into(),
                    checked: false,
                    endpoints: vec![],
                    window: None,
                },
            ],
        }
    }

    #[test]
    fn html_shows_every_route_and_state_escaped() {
        let page = html(&sample());
        assert!(page.contains("<td>grafana</td>"));
        assert!(page.contains(">degraded<"));
        assert!(page.contains("10.0.0.2:3000 <span class=\"down\">down</span>"));
        assert!(page.contains("x&lt;y"));
        assert!(page.contains("12.5") && page.contains("2.0%") && page.contains("45.6 ms"));
        assert!(page.contains("up 1h 2m"));
        assert!(!page.contains("<script"));
    }

    #[test]
    fn json_form() {
        let j = json(&sample());
        assert!(j.starts_with("{\"version\":\"1.2.3\",\"config_hash\":\"abc\",\"uptime_seconds\":3725,\"draining\":false,"));
        assert!(j.contains("\"health\":\"degraded\""));
        assert!(j.contains("{\"address\":\"10.0.0.2:3000\",\"up\":false}"));
        assert!(j.contains("\"name\":\"x<y\",\"prefix\":\"/x\",\"upstream\":\"http://h:1\",\"health\":\"unresolved\",\"endpoints\":[],\"requests_per_second\":0,\"error_ratio\":null"));
    }
}
