//! A real Prometheus behind Pylon, as in an OpenPAI cluster: Prometheus runs
//! with `--web.route-prefix=/prometheus`, `PROMETHEUS_URI` carries that
//! path, and the README's query URL answers with live data.
//!
//! Needs the Debian package `prometheus` (tests/install-deps.sh installs it).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, try_request_with_timeout, wait_until, KillOnDrop, Pylon, TempDir};

const PROMETHEUS: &str = "/usr/bin/prometheus";

struct Prometheus {
    port: u16,
    child: KillOnDrop,
    dir: TempDir,
}

impl Prometheus {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

/// Starts Prometheus scraping itself, and `pylon_admin` if given, every second.
fn start_prometheus(pylon_admin: Option<SocketAddr>) -> Prometheus {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} not found: install the Debian package `prometheus` (apt-get install prometheus; tests/install-deps.sh does this)"
    );
    let dir = TempDir::new("prometheus");
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    metrics_path: /prometheus/metrics\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n{pylon}",
            pylon = pylon_admin.map_or(String::new(), |a| format!(
                "  - job_name: pylon\n    static_configs:\n      - targets: [\"{a}\"]\n"
            ))
        ),
    )
    .expect("write prometheus.yml");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.route-prefix=/prometheus")
        .arg(format!(
            "--web.external-url=http://127.0.0.1:{port}/prometheus"
        ))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {PROMETHEUS}: {e}"));
    Prometheus {
        port,
        child: KillOnDrop(child),
        dir,
    }
}

/// Prometheus answering on its own port; another port if the first one was
/// taken between choosing and binding it.
fn ready_prometheus(pylon_admin: Option<SocketAddr>) -> Prometheus {
    for _ in 0..3 {
        let mut prom = start_prometheus(pylon_admin);
        let addr = ([127, 0, 0, 1], prom.port).into();
        let ready = wait_until(
            "Prometheus to answer /prometheus/-/ready",
            Duration::from_secs(30),
            || {
                if let Ok(Some(status)) = prom.child.0.try_wait() {
                    return Some(Err(status));
                }
                match try_request_with_timeout(
                    addr,
                    b"GET /prometheus/-/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                    Duration::from_secs(2),
                ) {
                    Ok(r) if r.status == 200 => Some(Ok(())),
                    _ => None,
                }
            },
        );
        match ready {
            Ok(()) => return prom,
            Err(status) if prom.log().contains("address already in use") => {
                eprintln!("prometheus lost its port ({status}); trying another");
            }
            Err(status) => panic!("prometheus exited ({status}):\n{}", prom.log()),
        }
    }
    panic!("prometheus could not get a free port in 3 tries");
}

#[test]
fn prometheus_queries_through_pylon_return_live_data() {
    let prom = ready_prometheus(None);
    let p = Pylon::start(
        "",
        &[(
            "PROMETHEUS_URI",
            format!("http://127.0.0.1:{}/prometheus", prom.port),
        )],
    );

    // The first scrape lands about a second after start.
    let body = wait_until(
        "a successful `up` query with a result through Pylon",
        Duration::from_secs(30),
        || {
            let r = p.get("/prometheus/api/v1/query?query=up");
            let text = r.text();
            (r.status == 200
                && text.contains("\"status\":\"success\"")
                && text.contains("\"result\":[{"))
            .then_some(text)
        },
    );
    assert!(body.contains("\"job\":\"prometheus\""), "{body}");
    assert!(
        body.contains(&format!("\"instance\":\"127.0.0.1:{}\"", prom.port)),
        "{body}"
    );
    assert!(body.contains(",\"1\"]"), "Prometheus is not up: {body}");

    // An encoded PromQL selector arrives intact.
    let r = p.get("/prometheus/api/v1/query?query=up%7Bjob%3D%22prometheus%22%7D");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"result\":[{"), "{}", r.text());
    let r = p.get("/prometheus/api/v1/query?query=up%7Bjob%3D%22nothing%22%7D");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"result\":[]"), "{}", r.text());

    // The rest of Prometheus under the same prefix.
    let r = p.get("/prometheus/-/ready");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = p.get("/prometheus/api/v1/status/buildinfo");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"version\""), "{}", r.text());
}

/// Prometheus scrapes Pylon's admin listener; a PromQL query over the
/// scraped series returns exactly the number of requests the test sent.
#[test]
fn prometheus_scrapes_pylon_and_counts_the_requests_sent() {
    let up = common::Upstream::start("rest");
    let p = Pylon::start(
        &format!("routes:\n  rest-server:\n    upstream: {}\n", up.uri()),
        &[] as &[(&str, &str)],
    );
    let prom = ready_prometheus(Some(p.admin_addr()));
    const SENT: usize = 23;
    for _ in 0..SENT {
        assert_eq!(p.get("/rest-server/api/v1/jobs").status, 200);
    }
    let query = "sum(pylon_requests_total{job=\"pylon\",route=\"rest-server\"})";
    let raw = format!(
        "GET /prometheus/api/v1/query?query={} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        query
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace('=', "%3D")
            .replace(',', "%2C")
    );
    let addr = ([127, 0, 0, 1], prom.port).into();
    let answer = wait_until(
        "Prometheus to report the requests sent through Pylon",
        Duration::from_secs(30),
        || {
            let r = try_request_with_timeout(addr, raw.as_bytes(), Duration::from_secs(5)).ok()?;
            let text = r.text();
            text.contains(&format!(",\"{SENT}\"]")).then_some(text)
        },
    );
    assert!(answer.contains("\"status\":\"success\""), "{answer}");
}
