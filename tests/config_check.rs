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

/// Every variable README documents, each naming a cluster address.
const ALL_EIGHT: [(&str, &str); 8] = [
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
fn standalone_variables_are_listed_as_the_source() {
    let env = ALL_EIGHT;
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

/// One refused file: what it holds, then what the error must name.
struct Broken {
    yaml: &'static str,
    /// `line:column` of the value (or the key, for an unknown key).
    at: &'static str,
    /// The full key path; empty for a YAML syntax error.
    key: &'static str,
    /// The rest of the message that must be there: the value, the
    /// reason or the suggested key.
    needle: &'static str,
}

const BROKEN: &[Broken] = &[
    // ---- YAML syntax
    Broken {
        yaml: "pylon:\n  listen: [\"127.0.0.1:80\"\n  routes: {\n",
        at: "3:3",
        key: "",
        needle: "not valid YAML: did not find expected ',' or ']'",
    },
    Broken {
        yaml: "pylon:\n  listen: x\n bad: 1\n",
        at: "3:2",
        key: "",
        needle: "not valid YAML",
    },
    Broken {
        // serde_yaml places a duplicate at the mapping that holds it.
        yaml: "threads: 1\nthreads: 2\n",
        at: "1:1",
        key: "",
        needle: "duplicate entry with key \"threads\"",
    },
    Broken {
        yaml: "- a\n- b\n",
        at: "1:1",
        key: "",
        needle: "the top level must be a mapping of settings",
    },
    // ---- unknown keys, at every level
    Broken {
        yaml: "version: 1\nthreds: 2\n",
        at: "2:1",
        key: "threds",
        needle: "unknown key; did you mean `threads`?",
    },
    Broken {
        yaml: "grace_period_secods: 5\n",
        at: "1:1",
        key: "grace_period_secods",
        needle: "did you mean `grace_period_seconds`?",
    },
    Broken {
        yaml: "colour: red\n",
        at: "1:1",
        key: "colour",
        needle: "unknown key; expected one of: version, daemon,",
    },
    Broken {
        yaml: "pylon:\n  listne: [\"127.0.0.1:80\"]\n",
        at: "2:3",
        key: "pylon.listne",
        needle: "did you mean `listen`?",
    },
    Broken {
        yaml: "pylon:\n  routes:\n    grafana:\n      upstream: http://127.0.0.1:3000\n      rewrit: []\n",
        at: "5:7",
        key: "pylon.routes.grafana.rewrit",
        needle: "did you mean `rewrite`?",
    },
    Broken {
        yaml: "pylon:\n  routes:\n    grafana:\n      health_check:\n        intervl: 5s\n",
        at: "5:9",
        key: "pylon.routes.grafana.health_check.intervl",
        needle: "did you mean `interval`?",
    },
    Broken {
        yaml: "pylon:\n  limits:\n    max_header_cont: 10\n",
        at: "3:5",
        key: "pylon.limits.max_header_cont",
        needle: "did you mean `max_header_count`?",
    },
    Broken {
        yaml: "pylon:\n  tls:\n    crt: /etc/pylon/cert.pem\n",
        at: "3:5",
        key: "pylon.tls.crt",
        needle: "did you mean `cert`?",
    },
    Broken {
        yaml: "pylon:\n  hostport:\n    alow: [\"10.0.0.0/8\"]\n",
        at: "3:5",
        key: "pylon.hostport.alow",
        needle: "did you mean `allow`?",
    },
    Broken {
        yaml: "pylon:\n  routes:\n    yarn:\n      rewrite:\n        - {pattern: a, replacment: b}\n",
        at: "5:24",
        key: "pylon.routes.yarn.rewrite[0].replacment",
        needle: "did you mean `replacement`?",
    },
    // ---- wrong types, at every level
    Broken {
        yaml: "threads: lots\n",
        at: "1:10",
        key: "threads",
        needle: "= \"lots\": wrong type: expected a whole number",
    },
    Broken {
        yaml: "daemon: maybe\n",
        at: "1:9",
        key: "daemon",
        needle: "= \"maybe\": wrong type: expected a boolean",
    },
    Broken {
        yaml: "pylon: 3\n",
        at: "1:8",
        key: "pylon",
        needle: "wrong type: expected a mapping of settings",
    },
    Broken {
        yaml: "pylon:\n  listen: 127.0.0.1:80\n",
        at: "2:11",
        key: "pylon.listen",
        needle: "wrong type: expected a sequence",
    },
    Broken {
        yaml: "pylon:\n  routes:\n    grafana:\n      upstream: 3000\n",
        at: "4:17",
        key: "pylon.routes.grafana.upstream",
        needle: "= \"3000\": wrong type: expected an http:// or https:// URI, or a list of them",
    },
    Broken {
        yaml: "pylon:\n  limits:\n    max_header_count: lots\n",
        at: "3:23",
        key: "pylon.limits.max_header_count",
        needle: "wrong type: expected a whole number",
    },
    Broken {
        yaml: "pylon:\n  routes:\n    grafana:\n      add_slash: sometimes\n",
        at: "4:18",
        key: "pylon.routes.grafana.add_slash",
        needle: "expected a boolean",
    },
    // ---- values: durations, sizes, CIDRs, URIs, regexes, addresses
    Broken {
        yaml: "pylon:\n  routes:\n    grafana:\n      upstream: http://127.0.0.1:3000\n      read_timeout: soon\n",
        at: "5:21",
        key: "pylon.routes.grafana.read_timeout",
        needle: "= \"soon\": expected a duration",
    },
    Broken {
        yaml: "pylon:\n  resolve_interval: 0\n",
        at: "2:21",
        key: "pylon.resolve_interval",
        needle: "must be positive",
    },
    Broken {
        yaml: "pylon:\n  limits:\n    max_header_bytes: 12x\n",
        at: "3:23",
        key: "pylon.limits.max_header_bytes",
        needle: "= \"12x\": expected a positive byte count",
    },
    Broken {
        yaml: "pylon:\n  routes:\n    grafana:\n      upstream: http://127.0.0.1:3000\n      max_body_size: 4t\n",
        at: "5:22",
        key: "pylon.routes.grafana.max_body_size",
        needle: "= \"4t\": expected a byte count",
    },
    Broken {
        yaml: "pylon:\n  trusted_proxies: [\"10.0.0.0/33\"]\n",
        at: "2:21",
        key: "pylon.trusted_proxies[0]",
        needle: "= \"10.0.0.0/33\": expected an IP address or CIDR",
    },
    Broken {
        yaml: "pylon:\n  routes:\n    grafana:\n      upstream: http://127.0.0.1:3000\n      allow:\n        - 10.0.0.0/8\n        - nope\n",
        at: "7:11",
        key: "pylon.routes.grafana.allow[1]",
        needle: "= \"nope\"",
    },
    Broken {
        yaml: "pylon:\n  routes:\n    grafana:\n      upstream: ftp://127.0.0.1:21\n",
        at: "4:17",
        key: "pylon.routes.grafana.upstream",
        needle: "= \"ftp://127.0.0.1:21\"",
    },
    Broken {
        yaml: "pylon:\n  routes:\n    t:\n      prefix: /t\n      upstream: [\"http://a:1\", \"https://b:2\"]\n",
        at: "5:32",
        key: "pylon.routes.t.upstream[1]",
        needle: "same scheme and base path",
    },
    Broken {
        yaml: "pylon:\n  routes:\n    yarn:\n      upstream: http://127.0.0.1:8088\n      rewrite:\n        - {pattern: '(', replacement: x, regex: true}\n",
        at: "6:21",
        key: "pylon.routes.yarn.rewrite[0].pattern",
        needle: "= \"(\": not a valid regular expression: unclosed group",
    },
    Broken {
        yaml: "pylon:\n  listen: [\"nowhere\"]\n",
        at: "2:12",
        key: "pylon.listen[0]",
        needle: "= \"nowhere\": expected IP:PORT",
    },
    Broken {
        yaml: "pylon:\n  routes:\n    mine:\n      prefix: a/b\n      upstream: http://127.0.0.1:1\n",
        at: "4:15",
        key: "pylon.routes.mine.prefix",
        needle: "must start with '/'",
    },
    Broken {
        yaml: "max_blocking_threads: 0\n",
        at: "1:23",
        key: "max_blocking_threads",
        needle: "must be greater than zero",
    },
    // ---- required keys: placed at the mapping that lacks them
    Broken {
        yaml: "pylon:\n  routes:\n    mine:\n      upstream: http://127.0.0.1:1\n",
        at: "4:7",
        key: "pylon.routes.mine.prefix",
        needle: "required for a route that is not a standard service",
    },
    Broken {
        yaml: "pylon:\n  tls:\n    key: /etc/pylon/key.pem\n",
        at: "3:5",
        key: "pylon.tls.cert",
        needle: "required",
    },
    Broken {
        yaml: "pylon:\n  routes:\n    yarn:\n      rewrite:\n        - {replacement: x}\n",
        at: "5:11",
        key: "pylon.routes.yarn.rewrite[0].pattern",
        needle: "required",
    },
];

#[test]
fn every_refusal_names_file_line_column_key_and_reason() {
    assert!(BROKEN.len() >= 25);
    let dir = TempDir::new("broken");
    let mut failures = Vec::new();
    for (i, b) in BROKEN.iter().enumerate() {
        let path = dir.join(&format!("broken-{i}.yaml"));
        std::fs::write(&path, b.yaml).expect("write config");
        let path = path.to_str().expect("UTF-8 temp path");
        let o = run(&["-t", "-c", path], &[]);
        let want = match b.key {
            "" => format!("pylon: configuration refused: {path}:{}: ", b.at),
            key => format!("pylon: configuration refused: {path}:{}: {key}", b.at),
        };
        let line = o.stderr.lines().last().unwrap_or_default();
        // The key is followed by its value or the reason, never by more path.
        let key_ends = line
            .strip_prefix(&want)
            .is_some_and(|rest| b.key.is_empty() || rest.starts_with([' ', ':']));
        if o.code != Some(2) || !key_ends || !line.contains(b.needle) {
            failures.push(format!(
                "{:?}\n  want {want}…{}\n  exit {:?}: {line}",
                b.yaml, b.needle, o.code
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn readme_run_section_lists_the_flags_help_lists() {
    let help = run(&["--help"], &[]).stdout;
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let run_section = readme
        .split("\n## Run\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Run section");
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('-'))
        .filter_map(|l| l.split("  ").next())
        .collect();
    assert!(flags.len() >= 7, "{help}");
    for flag in &flags {
        // README writes `-c, --conf FILE` where help has `-c, --conf FILE`.
        assert!(
            run_section.contains(&format!("| `-{flag}` |")),
            "README's Run table lacks -{flag}"
        );
    }
    let rows = run_section
        .lines()
        .filter(|l| l.starts_with("| `-"))
        .count();
    assert_eq!(rows, flags.len(), "README lists flags help does not");
    for signal in ["SIGTERM", "SIGINT", "SIGQUIT"] {
        assert!(help.contains(signal) && run_section.contains(&format!("| `{signal}` |")));
    }
}

/// `pylon -T` of a file, with the exit code and stderr checked.
fn print_effective(path: &str, env: &[(&str, &str)]) -> String {
    let o = run(&["-T", "-c", path], env);
    assert_eq!(o.code, Some(0), "stderr: {}", o.stderr);
    assert!(o.stderr.contains("is valid"), "{}", o.stderr);
    o.stdout
}

#[test]
fn test_print_round_trips_with_the_environment_overlay() {
    // Every variable README documents, several endpoints in one.
    let env = ALL_EIGHT.map(|(var, uri)| match var {
        "GRAFANA_URI" => (var, "http://10.0.3.9:3000, http://10.0.3.10:3000"),
        _ => (var, uri),
    });
    let ca = common::TestCa::new();
    let dir = TempDir::new("print");
    let first = dir.join("first.yaml");
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/pylon.yaml"))
            .expect("conf/pylon.yaml");
    let tls = format!(
        "  tls:\n    listen: [\"127.0.0.1:8443\"]\n    cert: {}\n    key: {}\n",
        ca.cert_file.display(),
        ca.key_file.display()
    );
    // Link signing with a key being rotated out: both printed as paths.
    let (key, previous) = (dir.join("hostport.key"), dir.join("previous.key"));
    std::fs::write(&key, "k".repeat(48)).expect("write key");
    std::fs::write(&previous, "p".repeat(48)).expect("write key");
    let signing = format!(
        "    signing_key_file: {}\n    previous_signing_key_file: {}\n",
        key.display(),
        previous.display()
    );
    std::fs::write(
        &first,
        shipped
            .replacen("pylon:\n", &format!("pylon:\n{tls}"), 1)
            .replacen(
                "    # signing_key_file: /etc/pylon/hostport.key\n",
                &signing,
                1,
            ),
    )
    .expect("write config");
    let printed = print_effective(first.to_str().unwrap(), &env);
    for line in [
        format!("\n    signing_key_file: \"{}\"\n", key.display()),
        format!(
            "\n    previous_signing_key_file: \"{}\"\n",
            previous.display()
        ),
        "\n    require_signature: true\n".to_string(),
    ] {
        assert!(printed.contains(&line), "{line:?} not in:\n{printed}");
    }
    assert!(
        !printed.contains("kkkk") && !printed.contains("pppp"),
        "{printed}"
    );

    for (route, var, upstream) in [
        (
            "webhdfs-api",
            "WEBHDFS_URI",
            "\"http://10.0.3.9:5070/webhdfs\"",
        ),
        (
            "grafana",
            "GRAFANA_URI",
            "[\"http://10.0.3.9:3000\", \"http://10.0.3.10:3000\"]",
        ),
        ("portal", "PAI_WEB_PORTAL_URI", "\"http://10.0.3.9:9286\""),
    ] {
        let block = printed
            .split(&format!("    \"{route}\":\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("route {route} not printed:\n{printed}"));
        let want = format!("      upstream: {upstream}  # from {var}\n");
        assert!(
            block.contains(&want),
            "{want:?} not in route {route}:\n{printed}"
        );
    }
    // Defaults are filled in; Pingora's too, with Pylon's grace period and
    // work_stealing.
    for line in [
        "\n    header_timeout: 10s\n",
        "\n      connect_timeout: 10s\n",
        "\n      read_timeout: 1h\n",
        "\n  admin_listen: \"127.0.0.1:9191\"\n",
        "\ngrace_period_seconds: 25\n",
        "\nwork_stealing: false\n",
        "\n    hsts: 0\n",
    ] {
        assert!(printed.contains(line), "{line:?} not in:\n{printed}");
    }
    // The key file by its path, never its contents.
    assert!(printed.contains(&format!("    key: \"{}\"\n", ca.key_file.display())));
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");

    let second = dir.join("second.yaml");
    std::fs::write(&second, &printed).expect("write printout");
    let o = run(&["-t", "-c", second.to_str().unwrap()], &env);
    assert_eq!(o.code, Some(0), "the printout is refused: {}", o.stderr);
    assert_eq!(print_effective(second.to_str().unwrap(), &env), printed);
    // Without the variables the printout's own URIs run: nothing is marked.
    let alone = print_effective(second.to_str().unwrap(), &[]);
    assert!(!alone.contains("# from "), "{alone}");
}
