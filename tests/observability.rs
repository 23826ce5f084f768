//! Metrics, request ids, the access log, the status page and failover,
//! against the real binary: what an operator watching Pylon relies on.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    admin_get, closed_port, series_value, start_stand_ins, try_request_with_timeout, wait_until,
    Pylon, Upstream,
};

fn promtool() -> &'static str {
    ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("promtool not found: install the Debian package `prometheus` (tests/install-deps.sh does)")
}

#[test]
fn metrics_pass_promtool_and_count_what_was_sent() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &format!(
            "routes:\n  rest-server:\n    upstream: {}\n  grafana:\n    upstream: http://127.0.0.1:{}\n    health_check:\n      enabled: false\n",
            up.uri(),
            closed_port()
        ),
        &[] as &[(&str, &str)],
    );
    for _ in 0..7 {
        assert_eq!(p.get("/rest-server/api/v1/jobs").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(p.get("/grafana/x").status, 502);
    }
    assert_eq!(p.get("/grafana").status, 301);
    assert_eq!(p.get("/healthz").status, 200);

    let r = admin_get(&p, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let text = r.text();

    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool result");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let count = |route, status| {
        series_value(
            &text,
            "pylon_requests_total",
            &[("route", route), ("method", "GET"), ("status", status)],
        )
    };
    assert_eq!(count("rest-server", "2xx"), Some(7.0), "{text}");
    assert_eq!(count("grafana", "5xx"), Some(2.0));
    assert_eq!(count("grafana", "3xx"), Some(1.0));
    // The harness polled /healthz while Pylon started, so at least ours.
    assert!(
        count("none", "2xx").is_some_and(|n| n >= 1.0),
        "/healthz is counted without a route"
    );
    assert_eq!(
        series_value(
            &text,
            "pylon_upstream_connect_failures_total",
            &[("route", "grafana")]
        ),
        Some(2.0)
    );
    assert_eq!(
        series_value(
            &text,
            "pylon_request_duration_seconds_count",
            &[("route", "rest-server")]
        ),
        Some(7.0)
    );
    assert!(
        series_value(
            &text,
            "pylon_response_body_bytes_total",
            &[("route", "rest-server")]
        )
        .unwrap_or(0.0)
            > 0.0
    );
    // The client connection of this scrape's own requests has closed; the
    // gauge exists and reads what is open now.
    assert!(series_value(&text, "pylon_downstream_connections", &[]).is_some());
    assert!(
        series_value(
            &text,
            "pylon_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ) == Some(1.0)
    );
    assert!(series_value(&text, "process_resident_memory_bytes", &[]).unwrap_or(0.0) > 1e6);
    assert!(series_value(&text, "process_open_fds", &[]).unwrap_or(0.0) > 0.0);
    assert!(
        text.contains("pylon_network_bytes_total{device=\"lo\",direction=\"receive\"}"),
        "{text}"
    );

    // Never through the public port.
    assert_eq!(
        p.get("/metrics").status,
        404,
        "/metrics must not be a public route"
    );
}

#[test]
fn request_ids_reach_the_upstream_and_come_back() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &format!("routes:\n  rest-server:\n    upstream: {}\n", up.uri()),
        &[] as &[(&str, &str)],
    );

    // An untrusted client cannot choose the id that is logged.
    let r = p.request(b"GET /rest-server/a HTTP/1.1\r\nHost: h\r\nX-Request-Id: chosen-by-client\r\nConnection: close\r\n\r\n");
    let id = r
        .header("X-Request-Id")
        .expect("response carries an id")
        .to_string();
    assert_ne!(id, "chosen-by-client");
    assert_eq!(id.len(), 16);
    assert_eq!(up.last().header("x-request-id"), Some(id.as_str()));
    let line = p.wait_for_stdout_line("access log line with the id", |l| l.contains(&id));
    assert!(line.contains(&format!("rid={id}")), "{line}");

    // Pylon's own answers carry one too.
    let r = p.get("/healthz");
    assert!(r
        .header("X-Request-Id")
        .is_some_and(|v| v.len() == 16 && v != id));

    let trusting = Pylon::start(
        &format!(
            "trusted_proxies: [\"127.0.0.1/32\"]\nroutes:\n  rest-server:\n    upstream: {}\n",
            up.uri()
        ),
        &[] as &[(&str, &str)],
    );
    let r = trusting.request(b"GET /rest-server/b HTTP/1.1\r\nHost: h\r\nX-Request-Id: lb-42\r\nConnection: close\r\n\r\n");
    assert_eq!(
        r.header("X-Request-Id"),
        Some("lb-42"),
        "kept from a trusted proxy"
    );
    assert_eq!(up.last().header("x-request-id"), Some("lb-42"));
}

#[test]
fn access_log_lines_for_proxied_failed_and_redirected_requests() {
    let up = Upstream::start("grafana");
    let routes = format!(
        "routes:\n  grafana:\n    upstream: {}\n  rest-server:\n    upstream: http://127.0.0.1:{}\n    health_check:\n      enabled: false\n",
        up.uri(),
        closed_port()
    );
    for format in ["combined", "json"] {
        let p = Pylon::start(
            &format!("access_log: {format}\n{routes}"),
            &[] as &[(&str, &str)],
        );
        let ok = p.get("/grafana/d/x?orgId=1");
        let failed = p.get("/rest-server/api/v1/jobs");
        let moved = p.get("/grafana");
        assert_eq!((ok.status, failed.status, moved.status), (200, 502, 301));
        for (r, path, status, route, upstream) in [
            (&ok, "/grafana/d/x?orgId=1", 200, "grafana", Some(up.addr())),
            (
                &failed,
                "/rest-server/api/v1/jobs",
                502,
                "rest-server",
                None,
            ),
            (&moved, "/grafana", 301, "grafana", None),
        ] {
            let id = r.header("X-Request-Id").expect("id").to_string();
            let line = p.wait_for_stdout_line("access log line", |l| l.contains(&id));
            if format == "combined" {
                assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
                assert!(
                    line.contains(&format!("\"GET {path} HTTP/1.1\" {status} ")),
                    "{line}"
                );
                assert!(line.contains(&format!(" route={route} ")), "{line}");
                assert!(line.contains(" rt="), "{line}");
                if let Some(a) = upstream {
                    assert!(line.contains(&format!(" upstream={a} ")), "{line}");
                }
            } else {
                let v: serde_yaml::Value =
                    serde_yaml::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {e}: {line}"));
                assert_eq!(v["client"].as_str(), Some("127.0.0.1"));
                assert_eq!(v["method"].as_str(), Some("GET"));
                assert_eq!(v["path"].as_str(), Some(path));
                assert_eq!(v["status"].as_u64(), Some(status));
                assert_eq!(v["route"].as_str(), Some(route));
                assert_eq!(v["request_id"].as_str(), Some(id.as_str()));
                assert!(
                    v["duration_ms"].as_f64().is_some()
                        && v["time"].as_str().is_some_and(|t| t.ends_with('Z'))
                );
                assert!(v["bytes_sent"].as_u64().is_some());
                if let Some(a) = upstream {
                    assert_eq!(v["upstream"].as_str(), Some(a.to_string().as_str()));
                }
            }
        }
    }
}

#[test]
fn status_page_lists_every_route_and_its_state() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &format!(
            "routes:\n  rest-server:\n    upstream: {}\n    health_check:\n      interval: 200ms\n  grafana:\n    upstream: http://127.0.0.1:{}\n    health_check:\n      interval: 200ms\n  yarn:\n    upstream: {}\n    health_check:\n      enabled: false\n",
            up.uri(),
            closed_port(),
            up.uri()
        ),
        &[] as &[(&str, &str)],
    );
    for _ in 0..5 {
        p.get("/rest-server/x");
    }
    let json = wait_until(
        "grafana marked down on /status",
        Duration::from_secs(10),
        || {
            let r = admin_get(&p, "/status?format=json");
            let text = r.text();
            let down = text.contains("\"name\":\"grafana\",\"prefix\":\"/grafana\"")
                && text.contains("\"health\":\"down\"");
            down.then_some(text)
        },
    );
    let v: serde_yaml::Value = serde_yaml::from_str(&json).expect("status JSON");
    let routes = v["routes"].as_sequence().expect("routes");
    let state = |name: &str| {
        routes
            .iter()
            .find(|r| r["name"].as_str() == Some(name))
            .and_then(|r| r["health"].as_str())
            .map(str::to_string)
    };
    assert_eq!(state("rest-server").as_deref(), Some("up"));
    assert_eq!(state("grafana").as_deref(), Some("down"));
    assert_eq!(state("yarn").as_deref(), Some("not checked"));
    assert_eq!(routes.len(), 3, "{json}");
    assert_eq!(v["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));

    let html = admin_get(&p, "/status");
    assert_eq!(html.status, 200);
    assert_eq!(
        html.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let page = html.text();
    for needle in [
        "<td>rest-server</td>",
        "<td>grafana</td>",
        "<td>yarn</td>",
        "class=\"up\">up<",
        "class=\"down\">down<",
        "not checked",
    ] {
        assert!(
            page.contains(needle),
            "status page lacks {needle:?}:\n{page}"
        );
    }
    assert!(!page.contains("<script"), "no scripts on the status page");
}

/// A route with two endpoints, each its own process; one is killed during
/// load. Nothing fails once the health check has marked it down, and only a
/// bounded number of requests may fail before (connect failures retry on
/// the other endpoint).
#[test]
fn failover_when_an_endpoint_dies_under_load() {
    let (a, a_urls) = start_stand_ins(&["endpoint-a"]);
    let (b, b_urls) = start_stand_ins(&["endpoint-b"]);
    let p = Pylon::start(
        &format!(
            "routes:\n  rest-server:\n    upstream: [\"{}\", \"{}\"]\n    health_check:\n      interval: 300ms\n      timeout: 300ms\n",
            a_urls[0].1, b_urls[0].1
        ),
        &[] as &[(&str, &str)],
    );
    let a_addr: SocketAddr = a_urls[0]
        .1
        .trim_start_matches("http://")
        .parse()
        .expect("stand-in address");
    let addr = p.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let marked_down = Arc::new(AtomicBool::new(false));
    let (ok, failed_before, failed_after) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, marked_down, ok, before, after) =
                (stop.clone(), marked_down.clone(), ok.clone(), failed_before.clone(), failed_after.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Sampled before the request: a failure counts as "after"
                    // only if the endpoint was already marked down when sent.
                    let was_marked = marked_down.load(Ordering::Relaxed);
                    let r = try_request_with_timeout(
                        addr,
                        b"GET /rest-server/api/v1/jobs HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                        Duration::from_secs(5),
                    );
                    match r {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ if was_marked => after.fetch_add(1, Ordering::Relaxed),
                        _ => before.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();

    thread::sleep(Duration::from_secs(1));
    drop(a); // the process dies; its connections with it
    let killed = Instant::now();
    wait_until("endpoint-a marked down", Duration::from_secs(10), || {
        let text = admin_get(&p, "/status?format=json").text();
        text.contains(&format!("{{\"address\":\"{a_addr}\",\"up\":false}}"))
            .then_some(())
    });
    marked_down.store(true, Ordering::Relaxed);
    let detection = killed.elapsed();
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    drop(b);
    let (ok, before, after) = (
        ok.load(Ordering::Relaxed),
        failed_before.load(Ordering::Relaxed),
        failed_after.load(Ordering::Relaxed),
    );
    eprintln!("failover: {ok} ok, {before} failed before the endpoint was marked down ({detection:?}), {after} after");
    assert_eq!(
        after, 0,
        "requests failed after the dead endpoint was marked down"
    );
    assert!(
        before <= 4,
        "{before} requests failed before the health check noticed; retries should keep it near 0"
    );
    assert!(ok > 100, "too little load to mean anything: {ok}");
}
