//! HTTPS termination (HTTP/1.1 and HTTP/2), the HTTP→HTTPS redirect, HSTS,
//! a certificate renewed by an upgrade, request-head limits, per-route
//! access rules and rate limits, against the real binary.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use common::{free_port, pylon_command, wait_until, Pylon, TestCa, Upstream};

/// curl with the test CA; returns (status, http_version, stdout).
fn curl(ca: &Path, url: &str, extra: &[&str]) -> (u16, String, String) {
    let out: Output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(extra)
        .args(["-o", "-", "-w", "\n%{http_code} %{http_version}"])
        .arg(url)
        .output()
        .expect("curl not found: install the Debian package curl (tests/install-deps.sh does)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut it = tail.split(' ');
    let status = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = it.next().unwrap_or("").to_string();
    (
        status,
        version,
        format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

fn tls_section(ca: &TestCa, port: u16, extra: &str) -> String {
    format!(
        "tls:\n  listen: [\"127.0.0.1:{port}\"]\n  cert: {}\n  key: {}\n{extra}",
        ca.cert_file.display(),
        ca.key_file.display()
    )
}

#[test]
fn https_serves_http1_and_http2_with_forwarded_proto() {
    let ca = TestCa::new();
    let up = Upstream::start("rest");
    let port = free_port();
    let p = Pylon::start(
        &format!(
            "{}routes:\n  rest-server:\n    upstream: {}\n",
            tls_section(&ca, port, "  hsts: 3600\n"),
            up.uri()
        ),
        &[] as &[(&str, &str)],
    );
    let url = format!("https://localhost:{port}/rest-server/api/v1/jobs?x=1");
    let (status, version, out) = curl(&ca.ca_file, &url, &["--http1.1", "-D", "/dev/stderr"]);
    assert_eq!((status, version.as_str()), (200, "1.1"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=3600"),
        "{out}"
    );
    let seen = up.last();
    assert_eq!(seen.target, "/api/v1/jobs?x=1");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));

    let (status, version, out) = curl(&ca.ca_file, &url, &["--http2"]);
    assert_eq!((status, version.as_str()), (200, "2"), "{out}");
    assert_eq!(up.last().header("x-forwarded-proto"), Some("https"));

    // The plain listener still works and gets no HSTS.
    let r = p.get("/rest-server/plain");
    assert_eq!(r.status, 200);
    assert!(r.header("Strict-Transport-Security").is_none());
    assert_eq!(up.last().header("x-forwarded-proto"), Some("http"));
}

#[test]
fn pylons_own_answers_over_https_carry_hsts_and_one_request_id() {
    let ca = TestCa::new();
    let up = Upstream::start("grafana");
    let port = free_port();
    let _p = Pylon::start(
        &format!(
            "{}routes:\n  grafana:\n    upstream: {}\n",
            tls_section(&ca, port, "  hsts: 3600\n"),
            up.uri()
        ),
        &[] as &[(&str, &str)],
    );
    // 301 (add-slash), 404 (no route), 400 (bad path), 200 (proxied).
    for (path, code) in [
        ("/grafana", 301),
        ("/nowhere", 404),
        ("/grafana/%00", 400),
        ("/grafana/", 200),
    ] {
        let url = format!("https://localhost:{port}{path}");
        let (status, _, out) = curl(&ca.ca_file, &url, &["--http1.1", "-D", "/dev/stderr"]);
        assert_eq!(status, code, "{path}: {out}");
        let lower = out.to_ascii_lowercase();
        assert!(
            lower.contains("strict-transport-security: max-age=3600"),
            "{path}: no HSTS in {out}"
        );
        assert_eq!(
            lower.matches("\nx-request-id:").count(),
            1,
            "{path}: one X-Request-Id in {out}"
        );
    }
}

#[test]
fn plain_http_is_redirected_with_307_to_the_public_https_port_but_healthz() {
    let ca = TestCa::new();
    let up = Upstream::start("rest");
    let port = free_port();
    let p = Pylon::start(
        &format!(
            "{}routes:\n  rest-server:\n    upstream: {}\n",
            tls_section(&ca, port, "  redirect_http: true\n  public_port: 8443\n"),
            up.uri()
        ),
        &[] as &[(&str, &str)],
    );
    let r = p.request(
        b"POST /rest-server/api/v1/jobs?a=1 HTTP/1.1\r\nHost: pylon.example:80\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 307, "307 keeps the method and body");
    assert_eq!(
        r.header("Location"),
        Some("https://pylon.example:8443/rest-server/api/v1/jobs?a=1")
    );
    assert_eq!(up.count(), 0, "nothing proxied over plain HTTP");
    assert_eq!(
        p.get("/healthz").status,
        200,
        "probes keep working on plain HTTP"
    );
    let r = p.request(b"GET / HTTP/1.1\r\nHost: evil.example/x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400, "a malformed Host never shapes the redirect");

    let (status, _, out) = curl(
        &ca.ca_file,
        &format!("https://localhost:{port}/rest-server/x"),
        &[],
    );
    assert_eq!(status, 200, "{out}");
}

#[test]
fn a_certificate_renewed_on_disk_is_served_after_an_upgrade() {
    let old_ca = TestCa::new();
    let new_ca = TestCa::new();
    let up = Upstream::start("rest");
    let dir = common::TempDir::new("tls-reload");
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::copy(&old_ca.cert_file, &cert).expect("copy cert");
    std::fs::copy(&old_ca.key_file, &key).expect("copy key");
    let (port, tls_port, admin) = (free_port(), free_port(), free_port());
    let config = dir.join("pylon.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nthreads: 1\npid_file: {d}/pylon.pid\nupgrade_sock: {d}/upgrade.sock\ngrace_period_seconds: 1\n\
             pylon:\n  listen: [\"127.0.0.1:{port}\"]\n  admin_listen: 127.0.0.1:{admin}\n\
             tls:\n    listen: [\"127.0.0.1:{tls_port}\"]\n    cert: {c}\n    key: {k}\n\
             routes:\n    rest-server:\n      upstream: {u}\n",
            d = dir.path().display(),
            c = cert.display(),
            k = key.display(),
            u = up.uri()
        )
        .replace("\ntls:", "\n  tls:")
        .replace("\nroutes:", "\n  routes:"),
    )
    .expect("write config");
    let spawn = |upgrade: bool| {
        let mut cmd = pylon_command();
        if upgrade {
            cmd.arg("-u");
        }
        common::KillOnDrop(cmd.arg("-c").arg(&config).spawn().expect("spawn pylon"))
    };
    let url = format!("https://localhost:{tls_port}/rest-server/x");
    let mut old = spawn(false);
    wait_until(
        "HTTPS with the old certificate",
        Duration::from_secs(15),
        || (curl(&old_ca.ca_file, &url, &[]).0 == 200).then_some(()),
    );

    std::fs::copy(&new_ca.cert_file, &cert).expect("renew cert");
    std::fs::copy(&new_ca.key_file, &key).expect("renew key");
    let _new = spawn(true);
    thread::sleep(Duration::from_millis(500));
    let ok = Command::new("kill")
        .args(["-QUIT", &old.0.id().to_string()])
        .status();
    assert!(ok.is_ok_and(|s| s.success()));
    wait_until(
        "HTTPS with the renewed certificate",
        Duration::from_secs(20),
        || (curl(&new_ca.ca_file, &url, &[]).0 == 200).then_some(()),
    );
    let _ = old.0.wait();
    let (status, _, _) = curl(&old_ca.ca_file, &url, &[]);
    assert_eq!(status, 0, "the old certificate is no longer served");
}

#[test]
fn bad_tls_files_are_refused_by_the_check() {
    let ca = TestCa::new();
    let dir = common::TempDir::new("tls-bad");
    let config = dir.join("pylon.yaml");
    std::fs::write(
        &config,
        format!(
            "pylon:\n  listen: [\"127.0.0.1:1\"]\n  tls:\n    cert: {}\n    key: {}\n",
            ca.cert_file.display(),
            ca.cert_file.display()
        ),
    )
    .expect("write config");
    let out = pylon_command()
        .arg("-t")
        .arg("-c")
        .arg(&config)
        .output()
        .expect("run pylon -t");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pylon.tls.key") && stderr.contains("no PEM private key"),
        "{stderr}"
    );
}

#[test]
fn oversized_request_heads_get_414_and_431() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &format!("routes:\n  rest-server:\n    upstream: {}\n", up.uri()),
        &[] as &[(&str, &str)],
    );
    let long = format!(
        "GET /rest-server/{} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(p.request(long.as_bytes()).status, 414);
    let mut many = String::from("GET /rest-server/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n");
    for i in 0..120 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(p.request(many.as_bytes()).status, 431);
    let big = format!(
        "GET /rest-server/x HTTP/1.1\r\nHost: h\r\nCookie: {}\r\nX-More: {}\r\nConnection: close\r\n\r\n",
        "c".repeat(20_000),
        "m".repeat(20_000)
    );
    assert_eq!(p.request(big.as_bytes()).status, 431);
    assert_eq!(up.count(), 0, "nothing oversized reached the upstream");
    // Within the limits everything passes.
    let fine = format!(
        "GET /rest-server/{} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        "a".repeat(7000)
    );
    assert_eq!(p.request(fine.as_bytes()).status, 200);
}

#[test]
fn access_rules_use_the_real_client_address() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &format!(
            "routes:\n  rest-server:\n    upstream: {u}\n    deny: [\"127.0.0.1\"]\n  grafana:\n    upstream: {u}\n    allow: [\"10.0.0.0/8\"]\n  yarn:\n    upstream: {u}\n    allow: [\"127.0.0.0/8\"]\n",
            u = up.uri()
        ),
        &[] as &[(&str, &str)],
    );
    assert_eq!(p.get("/rest-server/x").status, 403);
    assert_eq!(p.get("/grafana/x").status, 403);
    assert_eq!(p.get("/yarn/x").status, 200);
    // A claimed address from an untrusted client changes nothing.
    let r = p.request(b"GET /grafana/x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.1.2.3\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 403);
    assert_eq!(up.count(), 1, "only the allowed request was proxied");

    // Behind a trusted balancer the rule applies to the client it names.
    let behind = Pylon::start(
        &format!(
            "trusted_proxies: [\"127.0.0.1/32\"]\nroutes:\n  grafana:\n    upstream: {}\n    allow: [\"10.0.0.0/8\"]\n",
            up.uri()
        ),
        &[] as &[(&str, &str)],
    );
    let ok = behind.request(b"GET /grafana/x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.1.2.3\r\nConnection: close\r\n\r\n");
    assert_eq!(ok.status, 200);
    let no = behind.request(b"GET /grafana/x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.7\r\nConnection: close\r\n\r\n");
    assert_eq!(no.status, 403);
}

#[test]
fn rate_limits_answer_429_with_retry_after_and_recover() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &format!(
            "routes:\n  rest-server:\n    upstream: {}\n    rate_limit: 5\n",
            up.uri()
        ),
        &[] as &[(&str, &str)],
    );
    let statuses: Vec<u16> = (0..20).map(|_| p.get("/rest-server/x").status).collect();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited >= 10, "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 5,
        "{statuses:?}"
    );
    let r = p.get("/rest-server/x");
    if r.status == 429 {
        assert_eq!(r.header("Retry-After"), Some("1"));
    }
    thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        p.get("/rest-server/x").status,
        200,
        "the limit is per second"
    );
    // Other routes are not limited.
    let other = Pylon::start(
        &format!("routes:\n  grafana:\n    upstream: {}\n", up.uri()),
        &[] as &[(&str, &str)],
    );
    assert!((0..30).all(|_| other.get("/grafana/x").status == 200));
}

/// Slowloris: 1,000 connections dribbling a request head do not keep a
/// normal client waiting; each costs Pylon a parked task, not a worker.
#[test]
fn a_thousand_slow_clients_do_not_block_a_normal_one() {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::Instant;

    let up = Upstream::start("rest");
    let p = Pylon::start(
        &format!("routes:\n  rest-server:\n    upstream: {}\n", up.uri()),
        &[] as &[(&str, &str)],
    );
    let mut slow = Vec::with_capacity(1000);
    for i in 0..1000 {
        let mut s = TcpStream::connect(p.addr()).expect("slow client connect");
        s.write_all(format!("GET /rest-server/slow{i} HTTP/1.1\r\nHost: h\r\nX-A: ").as_bytes())
            .expect("slow client head");
        slow.push(s);
    }
    for round in 0..3 {
        // Every slow client sends one more byte, keeping its head open.
        for s in &mut slow {
            let _ = s.write_all(b"a");
        }
        let started = Instant::now();
        let r = p.get("/rest-server/normal");
        let took = started.elapsed();
        assert_eq!(r.status, 200);
        assert!(
            took < Duration::from_secs(1),
            "round {round}: a normal request took {took:?}"
        );
        thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(up.count(), 3, "no slow request was completed and forwarded");
    drop(slow);
    assert_eq!(p.get("/healthz").status, 200);
}

/// With `server_names`, a Host the operator did not name gets 421 before
/// anything is proxied or rewritten; probes keep working by address.
#[test]
fn unknown_hosts_are_misdirected() {
    let up = Upstream::start("grafana");
    let p = Pylon::start(
        &format!(
            "server_names: [\"pylon.example\", \"127.0.0.1\"]\nroutes:\n  grafana:\n    upstream: {}\n",
            up.uri()
        ),
        &[] as &[(&str, &str)],
    );
    let ok = p.request(
        b"GET /grafana/x HTTP/1.1\r\nHost: Pylon.Example:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(ok.status, 200);
    let evil =
        p.request(b"GET /grafana HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
    assert_eq!(
        evil.status, 421,
        "no redirect is built from an unknown Host"
    );
    assert!(evil.header("Location").is_none());
    let none = p.request(b"GET /grafana/x HTTP/1.0\r\n\r\n");
    assert_eq!(none.status, 421);
    let probe = p.request(b"GET /healthz HTTP/1.1\r\nHost: 10.9.9.9\r\nConnection: close\r\n\r\n");
    assert_eq!(probe.status, 200);
    assert_eq!(up.count(), 1);
}
