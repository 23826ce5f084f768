//! Signed host:port links through the real binary: WebHDFS through a
//! signed `/a/` redirect with `Expect: 100-continue`, refusals (unsigned,
//! tampered, expired, other host, other prefix, a rotated-out key after its
//! grace) that reach no upstream, key rotation under load, `pylon -t` on
//! bad keys, and a headless Chromium following a YARN page's signed node
//! links and the relative links of the node's own page.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::site::{Reply, Site};
use common::{
    admin_get, pylon_command, request, series_value, Client, KillOnDrop, Pylon, Response, TempDir,
};

const HOST: &str = "pylon.example.org:8080";
const PUBLIC: &str = "http://pylon.example.org:8080";
const TOKEN_LEN: usize = 48;

// ------------------------------------------------------------------ fixture

fn reply(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    Reply::typed(content_type, body).status(status)
}

/// A namenode that sends CREATE and OPEN to `datanode`.
fn namenode(datanode: SocketAddr) -> Site {
    Site::start(move |req| {
        let location = format!("http://{datanode}{}?{}", req.path(), req.query());
        reply(307, "application/json", "{}").with("Location", &location)
    })
}

/// Path and contents of the files a datanode holds.
type Files = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A datanode that keeps what is written and returns it.
fn datanode_on(ip: Ipv4Addr) -> Site {
    let files: Files = Arc::default();
    Site::start_on(ip, move |req| {
        let mut files = files.lock().expect("files");
        if req.method == "PUT" {
            files.push((req.path().to_string(), req.body.clone()));
            return reply(201, "text/plain", "");
        }
        match files.iter().rev().find(|(p, _)| p == req.path()) {
            Some((_, data)) => reply(200, "application/octet-stream", data.clone()),
            None => reply(404, "text/plain", "no such file\n"),
        }
    })
}

// ------------------------------------------------------------------ client

fn send(addr: SocketAddr, method: &str, target: &str) -> Response {
    let raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    request(addr, raw.as_bytes())
}

fn get(addr: SocketAddr, target: &str) -> Response {
    send(addr, "GET", target)
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The path of a Location that points at Pylon.
fn follow(r: &Response) -> String {
    let loc = r
        .header("Location")
        .unwrap_or_else(|| panic!("no Location: {} {}", r.status, text(r)));
    loc.strip_prefix(PUBLIC)
        .unwrap_or_else(|| panic!("Location {loc:?} does not point at {PUBLIC}"))
        .to_string()
}

/// The token of a signed `PREFIX/host:port~TOKEN/…` path.
fn token_of(path: &str) -> &str {
    let at = path.find('~').unwrap_or_else(|| panic!("unsigned: {path}"));
    &path[at + 1..at + 1 + TOKEN_LEN]
}

/// A WebHDFS client after the redirect: `Expect: 100-continue`, the body
/// once the datanode said so.
fn put_expecting_continue(addr: SocketAddr, target: &str, data: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        data.len()
    );
    c.send(head.as_bytes()).expect("send head");
    let interim = c.read_response(false).expect("interim response");
    if interim.status != 100 {
        return interim;
    }
    std::io::Write::write_all(c.stream(), data).expect("send body");
    c.read_final_response(false).expect("final response")
}

fn key_file(dir: &TempDir, name: &str, key: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{key}\n")).expect("write key");
    path
}

const KEY1: &str = "first-key-Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0";
const KEY2: &str = "second-key-c2Vjb25kIGtleSBmb3Igcm90YXRpb24gdGVzdHM";

fn hostport(extra: &str) -> String {
    format!("hostport:\n  allow: [\"127.0.0.1/32\"]\n  allow_loopback: true\n{extra}")
}

fn refused(p: &Pylon, reason: &str) -> f64 {
    let metrics = admin_get(p, "/metrics").text();
    series_value(
        &metrics,
        "pylon_hostport_refused_total",
        &[("reason", reason)],
    )
    .unwrap_or_else(|| panic!("no pylon_hostport_refused_total{{reason={reason}}}: {metrics}"))
}

// ------------------------------------------------------------------- tests

#[test]
fn webhdfs_create_and_open_go_through_a_signed_redirect() {
    let dir = TempDir::new("signed-webhdfs");
    let key = key_file(&dir, "hostport.key", KEY1);
    let dn = datanode_on(Ipv4Addr::LOCALHOST);
    let nn = namenode(dn.addr());
    let p = Pylon::start(
        &hostport(&format!("  signing_key_file: {}\n", key.display())),
        &[("WEBHDFS_URI", nn.uri())],
    );
    let data = &common::pattern_block()[..200 * 1024];

    let r = send(p.addr(), "PUT", "/webhdfs/api/v1/tmp/f?op=CREATE");
    assert_eq!(r.status, 307, "{}", text(&r));
    let to = follow(&r);
    let signed_prefix = format!("/a/{}~", dn.addr());
    assert!(to.starts_with(&signed_prefix), "{to}");
    let token = token_of(&to);
    assert_eq!(
        to,
        format!("/a/{}~{token}/webhdfs/v1/tmp/f?op=CREATE", dn.addr())
    );

    let r = put_expecting_continue(p.addr(), &to, data);
    assert_eq!(r.status, 201, "{}", text(&r));
    let s = dn.last();
    assert_eq!(
        s.target, "/webhdfs/v1/tmp/f?op=CREATE",
        "token not forwarded"
    );
    assert!(s.body == data, "datanode got {} bytes", s.body.len());
    assert_eq!(s.header("Host"), Some(dn.addr().to_string().as_str()));
    assert_eq!(
        s.header("X-Forwarded-Prefix"),
        Some(format!("/a/{}", dn.addr()).as_str())
    );
    assert!(
        s.headers.iter().all(|(_, v)| !v.contains(token)),
        "{:?}",
        s.headers
    );

    let r = get(p.addr(), "/webhdfs/api/v1/tmp/f?op=OPEN");
    assert_eq!(r.status, 307);
    let r = get(p.addr(), &follow(&r));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(r.body == data, "OPEN returned {} bytes", r.body.len());

    // The same redirect without its token: refused before the datanode.
    let before = dn.count();
    let unsigned = to.replacen(&format!("~{token}"), "", 1);
    let r = put_expecting_continue(p.addr(), &unsigned, data);
    assert_eq!(r.status, 403, "{}", text(&r));
    assert_eq!(dn.count(), before, "the datanode saw an unsigned request");
}

#[test]
fn unsigned_forged_expired_and_misdirected_links_get_403_and_reach_nothing() {
    let dir = TempDir::new("signed-refusals");
    let key = key_file(&dir, "hostport.key", KEY1);
    let dn = datanode_on(Ipv4Addr::LOCALHOST);
    let other = datanode_on(Ipv4Addr::LOCALHOST);
    // 127.0.0.2 is loopback too, but outside hostport.allow.
    let outside = datanode_on(Ipv4Addr::new(127, 0, 0, 2));
    let (dn_addr, outside_addr) = (dn.addr(), outside.addr());
    let nn = Site::start(move |req| {
        let to = if req.path().contains("/outside") {
            outside_addr
        } else {
            dn_addr
        };
        let location = format!("http://{to}{}?{}", req.path(), req.query());
        Reply::new(307).with("Location", &location)
    });
    let p = Pylon::start(
        &hostport(&format!(
            "  signing_key_file: {}\n  redirect_expiry: 2s\n",
            key.display()
        )),
        &[("WEBHDFS_URI", nn.uri())],
    );
    let r = get(p.addr(), "/webhdfs/api/v1/f?op=OPEN");
    let signed = follow(&r);
    let token = token_of(&signed).to_string();
    let rest = "/webhdfs/v1/f?op=OPEN";
    assert_eq!(signed, format!("/a/{}~{token}{rest}", dn.addr()));
    let r = get(p.addr(), &signed);
    assert_eq!(r.status, 404, "the datanode answered: {}", text(&r));
    let seen = dn.count();

    let mut tampered = token.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ASCII");
    let cases = [
        ("unsigned", format!("/a/{}{rest}", dn.addr())),
        ("unsigned", format!("/yarn/{}/node", dn.addr())),
        (
            "bad_signature",
            format!("/a/{}~{tampered}{rest}", dn.addr()),
        ),
        (
            "bad_signature",
            format!("/a/{}~{}{rest}", dn.addr(), &token[1..]),
        ),
        (
            "bad_signature",
            format!("/a/{}~{token}{rest}", other.addr()),
        ),
        (
            "bad_signature",
            format!("/yarn/{}~{token}{rest}", dn.addr()),
        ),
        (
            "bad_signature",
            format!("/log-manager/{}~{token}{rest}", dn.addr()),
        ),
    ];
    for (reason, path) in &cases {
        let r = get(p.addr(), path);
        assert_eq!(r.status, 403, "{path}: {}", text(&r));
        let line = p.wait_for_stdout_line("the refusal's log line", |l| {
            l.contains(&format!("GET {path} ")) && l.contains(" 403 ")
        });
        assert!(line.ends_with(&format!(" refused={reason}")), "{line}");
    }
    // A signed link to a destination hostport.allow does not admit.
    let r = get(p.addr(), "/webhdfs/api/v1/outside?op=OPEN");
    let to_outside = follow(&r);
    assert!(to_outside.contains('~'), "{to_outside}");
    let r = get(p.addr(), &to_outside);
    assert_eq!(r.status, 403, "{}", text(&r));

    // A genuine link once its time is up.
    thread::sleep(Duration::from_millis(3100));
    let r = get(p.addr(), &signed);
    assert_eq!(r.status, 403, "expired: {}", text(&r));
    let line = p.wait_for_stdout_line("the expiry's log line", |l| {
        l.contains(&format!("GET {signed} ")) && l.contains(" refused=expired")
    });
    assert!(line.contains(" 403 "), "{line}");

    assert_eq!(refused(&p, "unsigned"), 2.0);
    assert_eq!(refused(&p, "bad_signature"), 5.0);
    assert_eq!(refused(&p, "expired"), 1.0);
    assert_eq!(refused(&p, "not_allowed"), 1.0);
    assert_eq!(dn.count(), seen, "the datanode saw a refused request");
    assert_eq!(other.count(), 0);
    assert_eq!(outside.count(), 0);
    assert!(
        !p.stdout_text().contains(KEY1) && !p.stderr_text().contains(KEY1),
        "the key was logged"
    );
    let metrics = admin_get(&p, "/metrics").text();
    let status = admin_get(&p, "/status?format=json").text();
    assert!(!metrics.contains(KEY1) && !status.contains(KEY1));
}

#[test]
fn a_rotated_out_key_is_accepted_during_its_grace_only() {
    let dir = TempDir::new("signed-grace");
    let k1 = key_file(&dir, "k1", KEY1);
    let k2 = key_file(&dir, "k2", KEY2);
    let dn = datanode_on(Ipv4Addr::LOCALHOST);
    let nn = namenode(dn.addr());
    let env = [("WEBHDFS_URI", nn.uri())];
    let old = Pylon::start(
        &hostport(&format!("  signing_key_file: {}\n", k1.display())),
        &env,
    );
    let old_link = follow(&get(old.addr(), "/webhdfs/api/v1/f?op=OPEN"));
    drop(old);

    let new = Pylon::start(
        &hostport(&format!(
            "  signing_key_file: {}\n  previous_signing_key_file: {}\n  previous_key_grace: 3s\n",
            k2.display(),
            k1.display()
        )),
        &env,
    );
    let started = Instant::now();
    let r = get(new.addr(), &old_link);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "too slow to test"
    );
    assert_eq!(r.status, 404, "the old key during its grace: {}", text(&r));
    let new_link = follow(&get(new.addr(), "/webhdfs/api/v1/f?op=OPEN"));
    assert_ne!(token_of(&new_link), token_of(&old_link));
    let seen = dn.count();
    thread::sleep(Duration::from_secs(4).saturating_sub(started.elapsed()));
    let r = get(new.addr(), &old_link);
    assert_eq!(r.status, 403, "replayed after the grace: {}", text(&r));
    assert_eq!(dn.count(), seen);
    assert_eq!(get(new.addr(), &new_link).status, 404, "the current key");
    let seen = dn.count();

    // Without the previous key, old links are refused at once.
    let strict = Pylon::start(
        &hostport(&format!("  signing_key_file: {}\n", k2.display())),
        &env,
    );
    assert_eq!(get(strict.addr(), &old_link).status, 403);
    assert_eq!(dn.count(), seen);

    // require_signature: false signs but still lets unsigned links through.
    let lax = Pylon::start(
        &hostport(&format!(
            "  signing_key_file: {}\n  require_signature: false\n",
            k2.display()
        )),
        &env,
    );
    let r = get(lax.addr(), &format!("/a/{}/x", dn.addr()));
    assert_eq!(r.status, 404, "{}", text(&r));
    assert!(follow(&get(lax.addr(), "/webhdfs/api/v1/f?op=OPEN")).contains('~'));
}

#[test]
fn key_rotation_under_load_loses_no_request() {
    let dir = TempDir::new("signed-rotation");
    let k1 = key_file(&dir, "k1", KEY1);
    let k2 = key_file(&dir, "k2", KEY2);
    let dn = datanode_on(Ipv4Addr::LOCALHOST);
    let nn = namenode(dn.addr());
    let p = Pylon::start(
        &hostport(&format!("  signing_key_file: {}\n", k1.display())),
        &[("WEBHDFS_URI", nn.uri())],
    );
    let addr = p.addr();
    assert_eq!(
        put_expecting_continue(
            addr,
            &follow(&send(addr, "PUT", "/webhdfs/api/v1/f?op=CREATE")),
            b"data"
        )
        .status,
        201
    );
    let old_link = follow(&get(addr, "/webhdfs/api/v1/f?op=OPEN"));

    // Each round: the namenode's signed redirect, then the datanode.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, errors) = (stop.clone(), ok.clone(), errors.clone());
            thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let r = get(addr, "/webhdfs/api/v1/f?op=OPEN");
                    let r = if r.status == 307 {
                        get(addr, &follow(&r))
                    } else {
                        r
                    };
                    if r.status == 200 && r.body == b"data" {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors
                            .lock()
                            .expect("errors")
                            .push(format!("{} {}", r.status, text(&r)));
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(1));

    // Two reloads (a new process takes the listening sockets over, as
    // deploy/pylon-reload does): first the new key is only accepted, then
    // it signs and the old one is only accepted. A process of either step
    // accepts what one of the other step signs, so no instance refuses a
    // link another minted while they overlap.
    let config = p.config_path().to_path_buf();
    let original = std::fs::read_to_string(&config).expect("read config");
    let with_keys = |sign: &Path, accept: &Path| {
        let rotated = original.replace(
            &format!("signing_key_file: {}", k1.display()),
            &format!(
                "signing_key_file: {}\n    previous_signing_key_file: {}",
                sign.display(),
                accept.display()
            ),
        );
        assert_ne!(rotated, original);
        rotated
    };
    let before = ok.load(Ordering::Relaxed);
    let mut current = p.pid();
    let mut processes = Vec::new();
    for text in [with_keys(&k1, &k2), with_keys(&k2, &k1)] {
        std::fs::write(&config, text).expect("write config");
        let next = KillOnDrop(
            pylon_command()
                .arg("-u")
                .arg("-c")
                .arg(&config)
                .env("WEBHDFS_URI", nn.uri())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the new pylon"),
        );
        // The new process binds upgrade_sock before the old one sends.
        thread::sleep(Duration::from_millis(500));
        let quit = Command::new("kill")
            .args(["-QUIT", &current.to_string()])
            .status()
            .expect("kill");
        assert!(quit.success());
        common::wait_until("the old process to exit", Duration::from_secs(15), || {
            (!Path::new(&format!("/proc/{current}")).exists()
                || std::fs::read_to_string(format!("/proc/{current}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")))
            .then_some(())
        });
        current = next.0.id();
        processes.push(next);
        thread::sleep(Duration::from_millis(500));
    }
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let errors = errors.lock().expect("errors").clone();
    let total = ok.load(Ordering::Relaxed);
    eprintln!(
        "rotation: {before} rounds before, {total} in all, {} failed",
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "{} failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(
        total > before && before > 20,
        "load too small: {before} then {total}"
    );

    // Old links are still good (the previous key), new ones are signed
    // with the new key.
    let r = get(addr, &old_link);
    assert_eq!(r.status, 200, "a link of the old key: {}", text(&r));
    let new_link = follow(&get(addr, "/webhdfs/api/v1/f?op=OPEN"));
    assert_ne!(token_of(&new_link), token_of(&old_link));
    assert_eq!(get(addr, &new_link).status, 200);
    drop(processes);
}

#[test]
fn pylon_t_refuses_bad_keys_by_name_and_never_prints_one() {
    let dir = TempDir::new("signed-check");
    let good = key_file(&dir, "good", KEY1);
    let short = key_file(&dir, "short", "sixteen-bytes!!!");
    let missing = dir.join("missing");
    let check = |extra: String| {
        let config = dir.join("pylon.yaml");
        std::fs::write(
            &config,
            format!("pylon:\n  listen: [\"127.0.0.1:1\"]\n  hostport:\n    allow: [\"10.0.0.0/8\"]\n{extra}"),
        )
        .expect("write config");
        let out = pylon_command()
            .arg("-t")
            .arg("-c")
            .arg(&config)
            .output()
            .expect("run pylon -t");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(KEY1) && !all.contains("sixteen"), "{all}");
        (out.status.success(), all)
    };
    let (ok, out) = check(format!("    signing_key_file: {}\n", good.display()));
    assert!(ok, "{out}");
    assert!(out.contains("hostport signing"), "{out}");
    for (extra, want) in [
        (
            format!("    signing_key_file: {}\n", missing.display()),
            "pylon.hostport.signing_key_file",
        ),
        (
            format!("    signing_key_file: {}\n", short.display()),
            "the key has 16 bytes",
        ),
        (
            format!(
                "    signing_key_file: {}\n    previous_signing_key_file: {}\n",
                good.display(),
                missing.display()
            ),
            "pylon.hostport.previous_signing_key_file",
        ),
    ] {
        let (ok, out) = check(extra);
        assert!(!ok, "accepted: {out}");
        assert!(out.contains(want), "{out}");
    }
}

/// A YARN page whose node links are signed by a body rule with `{sign}`;
/// headless Chromium opens one, and the node's page loads its script,
/// stylesheet, image and an XHR by relative URLs, all through the signed
/// prefix.
#[test]
fn chromium_follows_signed_node_links_and_their_relative_links() {
    let dir = TempDir::new("signed-chromium");
    let key = key_file(&dir, "hostport.key", KEY1);
    let node_page = r#"<html><head><link rel="stylesheet" href="../../../static/yarn.css"><script src="./static/app.js"></script></head><body><a href="../../../logs/stdout">log</a><img src="../../../static/logo.png"></body></html>"#;
    let app_js = "var x=new XMLHttpRequest();x.open('GET','stdout?n=10',false);x.send();\
        document.addEventListener('DOMContentLoaded',function(){document.body.setAttribute('data-log',x.status+':'+x.responseText);document.body.setAttribute('data-next',document.links[0].href);});";
    let nm = Site::start(move |req| match req.path() {
        "/node/containerlogs/c1/alice" => reply(200, "text/html", node_page),
        "/node/containerlogs/c1/static/app.js" => reply(200, "application/javascript", app_js),
        "/node/containerlogs/c1/stdout" => reply(200, "text/plain", "hello log"),
        "/static/yarn.css" => reply(200, "text/css", "body{color:black}"),
        "/static/logo.png" => reply(200, "image/png", b"\x89PNG\r\n\x1a\n".to_vec()),
        "/logs/stdout" => reply(200, "text/plain", "full log"),
        _ => reply(404, "text/plain", "no such page"),
    });
    let nm_addr = nm.addr();
    let rm = Site::start(move |_| {
        reply(
            200,
            "text/html",
            format!(
                "<html><body><a id='n1' href='http://{nm_addr}/node/containerlogs/c1/alice'>node1</a></body></html>"
            ),
        )
    });
    let p = Pylon::start(
        &format!(
            "{}routes:\n  yarn:\n    rewrite:\n      - {{pattern: 'href=''http://([^/'']*)/([^'']*)''', replacement: 'href=''{{scheme}}://{{host}}/yarn/$1{{sign}}/$2''', regex: true}}\n",
            hostport(&format!("  signing_key_file: {}\n", key.display()))
        ),
        &[("YARN_WEB_PORTAL_URI", rm.uri())],
    );
    let base = format!("http://{}", p.addr());

    let dom = chromium_dom(&dir, &format!("{base}/yarn/cluster/nodes"));
    let start = dom
        .find(&format!("{base}/yarn/{nm_addr}~"))
        .unwrap_or_else(|| panic!("no signed node link in the DOM: {dom}"));
    let link = &dom[start..start + dom[start..].find('"').expect("end of href")];
    assert!(link.ends_with("/node/containerlogs/c1/alice"), "{link}");

    let dom = chromium_dom(&dir, link);
    assert!(dom.contains("data-log=\"200:hello log\""), "DOM: {dom}");
    let signed_prefix = &link[..link.find("/node/").expect("node path")];
    let next = format!("{signed_prefix}/logs/stdout");
    assert!(dom.contains(&format!("data-next=\"{next}\"")), "DOM: {dom}");
    let r = get(p.addr(), next.strip_prefix(&base).expect("through Pylon"));
    assert_eq!((r.status, text(&r).as_str()), (200, "full log"));

    let seen: Vec<String> = nm.seen().iter().map(|r| r.target.clone()).collect();
    for want in [
        "/node/containerlogs/c1/alice",
        "/node/containerlogs/c1/static/app.js",
        "/node/containerlogs/c1/stdout?n=10",
        "/static/yarn.css",
        "/static/logo.png",
    ] {
        assert!(
            seen.iter().any(|t| t == want),
            "{want} not requested: {seen:?}"
        );
    }
    assert!(seen.iter().all(|t| !t.contains('~')), "{seen:?}");
    // Every request of the browser through the signed prefix succeeded.
    let through = format!("\"GET /yarn/{nm_addr}");
    let log = common::wait_until("6 access-log lines", Duration::from_secs(10), || {
        let log = p.stdout_text();
        (log.lines().filter(|l| l.contains(&through)).count() >= 6).then_some(log)
    });
    for l in log.lines().filter(|l| l.contains(&through)) {
        assert!(l.contains(" 200 "), "{l}");
    }
}

fn chromium_dom(dir: &TempDir, url: &str) -> String {
    let profile = dir.join(&format!("profile-{}", url.len()));
    let out = common::headless_chromium(&profile)
        .arg(url)
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
