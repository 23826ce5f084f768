//! `pylon -t -c FILE` and start-up refusals: the shipped configuration is
//! valid, and every broken one is refused with exit code 2 and a message
//! that names the key or variable at fault.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{pylon_command, KillOnDrop, TempDir};

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary to completion (bounded) and collects what it said.
fn run(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let dir = TempDir::new("check");
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let mut cmd = pylon_command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = KillOnDrop(cmd.spawn().expect("run pylon"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait for pylon") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "pylon {args:?} did not exit within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        code: status.code(),
        stdout: std::fs::read_to_string(out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(err_path).unwrap_or_default(),
    }
}

fn check_text(yaml: &str, env: &[(&str, &str)]) -> Outcome {
    let dir = TempDir::new("conf");
    let path = dir.join("pylon.yaml");
    std::fs::write(&path, yaml).expect("write config");
    run(&["-t", "-c", path.to_str().expect("UTF-8 temp path")], env)
}

fn assert_refused(o: &Outcome, needles: &[&str]) {
    assert_eq!(
        o.code,
        Some(2),
        "expected exit code 2; stdout {:?} stderr {:?}",
        o.stdout,
        o.stderr
    );
    for n in needles {
        assert!(o.stderr.contains(n), "{n:?} not in stderr {:?}", o.stderr);
    }
}

#[test]
fn help_is_pylons_own() {
    let o = run(&["--help"], &[]);
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    assert_eq!(run(&["-h"], &[]).stdout, o.stdout);
    for needle in [
        "reverse proxy",
        "Usage: pylon",
        "-c, --conf FILE",
        "default /etc/pylon/pylon.yaml",
        "-t, --test",
        "-T, --test-print",
        "-d, --daemon",
        "-u, --upgrade",
        "-V, --version",
        "SIGTERM",
        "SIGINT",
        "SIGQUIT",
        "GRAFANA_URI",
        "README.md",
    ] {
        assert!(
            o.stdout.contains(needle),
            "{needle:?} not in:\n{}",
            o.stdout
        );
    }
    assert!(!o.stdout.contains("pingora-based"), "{}", o.stdout);
    let bad = run(&["--no-such-flag"], &[]);
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("--no-such-flag"), "{}", bad.stderr);
}

#[test]
fn version_names_release_commit_compiler_and_pingora() {
    let o = run(&["-V"], &[]);
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    assert_eq!(run(&["--version"], &[]).stdout, o.stdout);
    let first = o.stdout.lines().next().unwrap_or_default();
    let want = format!("pylon {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(first.starts_with(&want), "{first}");
    let commit = first[want.len()..].trim_end_matches(')');
    let head = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        // The binary under test is built from this checkout's HEAD.
        Some(head) => assert_eq!(commit, head),
        None => assert_eq!(commit, "unknown"),
    }
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"))
        .expect("Cargo.lock");
    let pingora = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"pingora\"\n"))
        .and_then(|p| p.split("version = \"").nth(1))
        .and_then(|v| v.split('"').next())
        .expect("pingora in Cargo.lock");
    for needle in [
        "rustc 1.".to_string(),
        format!("Pingora {pingora} + "),
        "features: proxy, lb, rustls".to_string(),
    ] {
        assert!(
            o.stdout.contains(&needle),
            "{needle:?} not in:\n{}",
            o.stdout
        );
    }
}

#[test]
fn the_shipped_configuration_is_valid() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/pylon.yaml");
    let o = run(&["-t", "-c", conf.to_str().unwrap()], &[]);
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    for route in [
        "rest-server",
        "kubernetes",
        "webhdfs-api",
        "webhdfs-alias",
        "webhdfs",
        "prometheus",
        "kubernetes-dashboard",
        "yarn",
        "grafana",
        "portal",
    ] {
        assert!(
            o.stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(route)),
            "route {route} not listed:\n{}",
            o.stdout
        );
    }
    assert!(o.stdout.contains("is valid"), "{}", o.stdout);
}

#[test]
fn standalone_variables_are_listed_as_the_source() {
    let env = [
        ("REST_SERVER_URI", "http://10.0.3.9:9186"),
        ("K8S_API_SERVER_URI", "https://10.0.3.9:6443"),
        ("WEBHDFS_URI", "http://10.0.3.9:5070"),
        ("PROMETHEUS_URI", "http://10.0.3.9:9091/prometheus"),
        ("K8S_DASHBOARD_URI", "http://10.0.3.9:9090"),
        ("YARN_WEB_PORTAL_URI", "http://10.0.3.9:8088"),
        ("GRAFANA_URI", "http://10.0.3.9:3000"),
        ("PAI_WEB_PORTAL_URI", "http://10.0.3.9:9286"),
    ];
    let o = check_text("pylon:\n  listen: [\"127.0.0.1:8080\"]\n", &env);
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    for (route, from, upstream) in [
        ("rest-server", "REST_SERVER_URI", "http://10.0.3.9:9186"),
        ("webhdfs-api", "WEBHDFS_URI", "http://10.0.3.9:5070/webhdfs"),
        (
            "webhdfs-alias",
            "WEBHDFS_URI",
            "http://10.0.3.9:5070/webhdfs",
        ),
        (
            "prometheus",
            "PROMETHEUS_URI",
            "http://10.0.3.9:9091/prometheus",
        ),
        ("kubernetes", "K8S_API_SERVER_URI", "https://10.0.3.9:6443"),
        ("portal", "PAI_WEB_PORTAL_URI", "http://10.0.3.9:9286"),
    ] {
        let line = o
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(route))
            .unwrap_or_else(|| panic!("route {route} not listed:\n{}", o.stdout));
        assert!(line.contains(&format!("-> {upstream} ")), "{line}");
        assert!(line.contains(&format!("(from {from})")), "{line}");
    }
    assert!(!o.stdout.contains("inactive"), "{}", o.stdout);
}

#[test]
fn checking_does_not_bind_the_listen_address() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let o = check_text(
        &format!("pylon:\n  listen: [\"{addr}\"]\n"),
        &[("PAI_WEB_PORTAL_URI", "http://127.0.0.1:9286")],
    );
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    assert!(o.stdout.contains(&addr.to_string()), "{}", o.stdout);
}

#[test]
fn host_name_upstreams_are_accepted() {
    let o = check_text(
        "pylon:\n  listen: [\"127.0.0.1:8080\"]\n",
        &[("REST_SERVER_URI", "http://localhost:9186/")],
    );
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    assert!(o.stdout.contains("http://localhost:9186"), "{}", o.stdout);
}

#[test]
fn broken_yaml_is_refused() {
    let o = check_text("pylon:\n  listen: [\"127.0.0.1:80\"\n  routes: {\n", &[]);
    assert_refused(&o, &["YAML"]);
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let o = check_text("pylon:\n  listne: [\"127.0.0.1:80\"]\n", &[]);
    assert_refused(&o, &["listne"]);
    let o = check_text(
        "pylon:\n  routes:\n    grafana:\n      upstream: http://127.0.0.1:3000\n      colour: red\n",
        &[],
    );
    assert_refused(&o, &["colour"]);
}

#[test]
fn bad_values_are_refused_naming_key_and_value() {
    let o = check_text("", &[("REST_SERVER_URI", "not a url")]);
    assert_refused(&o, &["REST_SERVER_URI = \"not a url\""]);

    let o = check_text(
        "pylon:\n  routes:\n    grafana:\n      upstream: http://127.0.0.1:3000\n      read_timeout: soon\n",
        &[],
    );
    assert_refused(&o, &["pylon.routes.grafana.read_timeout = \"soon\""]);

    let o = check_text("pylon:\n  listen: [\"nowhere\"]\n", &[]);
    assert_refused(&o, &["pylon.listen[0] = \"nowhere\""]);

    let o = check_text("pylon:\n  trusted_proxies: [\"10.0.0.0/33\"]\n", &[]);
    assert_refused(&o, &["pylon.trusted_proxies[0] = \"10.0.0.0/33\""]);

    let o = check_text("pylon:\n  access_log: verbose\n", &[]);
    assert_refused(&o, &["pylon.access_log = \"verbose\""]);

    let o = check_text(
        "pylon:\n  routes:\n    kubernetes:\n      upstream: https://127.0.0.1:6443\n      tls_ca_file: /nonexistent/ca.crt\n",
        &[],
    );
    assert_refused(
        &o,
        &["pylon.routes.kubernetes.tls_ca_file = \"/nonexistent/ca.crt\""],
    );

    let o = check_text(
        "pylon:\n  routes:\n    mine:\n      prefix: /grafana\n      upstream: http://127.0.0.1:1\n    grafana:\n      upstream: http://127.0.0.1:2\n",
        &[],
    );
    assert_refused(&o, &["prefix", "/grafana"]);

    let o = check_text("threads: lots\n", &[]);
    assert_refused(&o, &["threads"]);
}

#[test]
fn a_variable_holding_only_commas_is_refused_not_a_crash() {
    let o = check_text("", &[("GRAFANA_URI", ",")]);
    assert_refused(&o, &["GRAFANA_URI = \",\"", "lists no URI"]);
    assert!(!o.stderr.contains("panicked"), "stderr {:?}", o.stderr);
}

#[test]
fn a_missing_file_is_refused() {
    let o = run(&["-t", "-c", "/nonexistent/pylon.yaml"], &[]);
    assert_refused(&o, &["/nonexistent/pylon.yaml"]);
}

#[test]
fn a_bad_configuration_stops_a_real_start_too() {
    let dir = TempDir::new("bad-start");
    let path = dir.join("pylon.yaml");
    std::fs::write(&path, "pylon:\n  listen: [\"127.0.0.1:0\"]\n").unwrap();
    let o = run(
        &["-c", path.to_str().unwrap()],
        &[("GRAFANA_URI", "ftp://127.0.0.1:21")],
    );
    assert_refused(&o, &["GRAFANA_URI = \"ftp://127.0.0.1:21\""]);
}

#[test]
fn a_taken_port_stops_start_up_with_a_clear_message() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let dir = TempDir::new("busy");
    let path = dir.join("pylon.yaml");
    std::fs::write(
        &path,
        format!(
            "pid_file: {}\nupgrade_sock: {}\npylon:\n  listen: [\"{addr}\"]\n",
            dir.join("pid").display(),
            dir.join("sock").display()
        ),
    )
    .unwrap();
    let o = run(
        &["-c", path.to_str().unwrap()],
        &[("PAI_WEB_PORTAL_URI", "http://127.0.0.1:9286")],
    );
    assert_eq!(o.code, Some(1), "stderr: {}", o.stderr);
    assert!(o.stderr.contains("cannot listen"), "{}", o.stderr);
    assert!(o.stderr.contains(&addr.to_string()), "{}", o.stderr);
}
