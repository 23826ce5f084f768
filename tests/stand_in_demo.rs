//! The demo set-up: the `stand-in` example plays the cluster's services and
//! Pylon routes to them, as a person trying Pylon would run it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{KillOnDrop, Pylon};

/// `cargo test` builds the examples next to the test binaries' directory.
fn stand_in_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir.join("examples").join("stand-in");
    assert!(
        path.exists(),
        "{} is missing: run the whole suite with `cargo test --release` (it builds the examples) or `cargo build --release --example stand-in` first",
        path.display()
    );
    path
}

const SERVICES: [(&str, &str); 8] = [
    ("rest-server", "REST_SERVER_URI"),
    ("kubernetes", "K8S_API_SERVER_URI"),
    ("webhdfs", "WEBHDFS_URI"),
    ("prometheus", "PROMETHEUS_URI"),
    ("kubernetes-dashboard", "K8S_DASHBOARD_URI"),
    ("yarn", "YARN_WEB_PORTAL_URI"),
    ("grafana", "GRAFANA_URI"),
    ("portal", "PAI_WEB_PORTAL_URI"),
];

#[test]
fn stand_ins_behind_pylon_show_where_requests_went() {
    let mut cmd = Command::new(stand_in_exe());
    for (name, _) in SERVICES {
        cmd.arg(format!("{name}=0"));
    }
    let mut child = KillOnDrop(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run stand-in"),
    );
    let stdout = child.0.stdout.take().expect("stand-in stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // "stand-in: NAME on http://127.0.0.1:PORT", one line per service.
    let mut env = Vec::new();
    for _ in SERVICES {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("stand-in did not report its services within 20 s");
        let (name, url) = line
            .strip_prefix("stand-in: ")
            .and_then(|l| l.split_once(" on "))
            .unwrap_or_else(|| panic!("unexpected stand-in line {line:?}"));
        let var = SERVICES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("unknown service in {line:?}"))
            .1;
        let url = if name == "prometheus" {
            format!("{url}/prometheus")
        } else {
            url.to_string()
        };
        env.push((var, url));
    }
    let p = Pylon::start("", &env);

    let r = p.get("/rest-server/api/v1/jobs?username=alice");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let json = r.text();
    for part in [
        "\"service\":\"rest-server\"",
        "\"method\":\"GET\"",
        "\"path\":\"/api/v1/jobs\"",
        "\"query\":\"username=alice\"",
        "\"x-forwarded-prefix\":\"/rest-server\"",
        "\"x-forwarded-for\":\"127.0.0.1\"",
        "\"x-forwarded-host\":\"pylon.test\"",
        "\"x-forwarded-proto\":\"http\"",
    ] {
        assert!(json.contains(part), "{part} not in {json}");
    }

    let r = p.get("/webhdfs/api/v1/?op=LISTSTATUS");
    assert!(r.text().contains("\"service\":\"webhdfs\""), "{}", r.text());
    assert!(
        r.text().contains("\"path\":\"/webhdfs/v1/\""),
        "{}",
        r.text()
    );

    let r = p.get("/grafana/");
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        r.headers
    );
    let html = r.text();
    assert!(html.contains("<h1>grafana</h1>"), "{html}");
    assert!(html.contains("<code>GET /</code>"), "{html}");
    assert!(
        html.contains("/grafana"),
        "X-Forwarded-Prefix not shown: {html}"
    );

    let r = p.get("/");
    assert!(r.text().contains("<h1>portal</h1>"), "{}", r.text());
    let r = p.get("/prometheus/api/v1/query?query=up");
    assert!(
        r.text().contains("\"path\":\"/prometheus/api/v1/query\""),
        "{}",
        r.text()
    );
}
