//! The same Pylon whichever protocol a client speaks: every behaviour that
//! depends on the request (its host above all) checked with identical
//! assertions over plain HTTP/1.1, HTTP/1.1 over TLS and HTTP/2 over TLS,
//! with curl as the client; and a headless Chromium loading the portal over
//! HTTPS, which negotiates HTTP/2 as every browser does.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{curl_via, free_port, Proto, Pylon, Response, TempDir, TestCa, Upstream};

/// The name clients use for Pylon; `server_names` admits only it.
const NAME: &str = "pylon.test";

/// A web server standing in for the portal and the WebHDFS namenode: each
/// connection gets one answer chosen by path, then is closed.
///
/// - `/index.html`: a page embedding the REST server's internal URI and the
///   word `foo` (a `rewrite:` rule's pattern), with `ETag: "v1"`;
/// - `/moved`: a 302 whose `Location` and `Refresh` name this server;
/// - `/webhdfs/…`: a WebHDFS 307 to a "datanode" (`datanode`);
/// - anything else: 200 `ok`.
struct Fixture {
    addr: SocketAddr,
}

impl Fixture {
    fn start(rest: SocketAddr, datanode: SocketAddr) -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fixture");
        let addr = listener.local_addr().expect("fixture address");
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || answer(stream, addr, rest, datanode));
            }
        });
        Fixture { addr }
    }
}

fn answer(mut s: TcpStream, me: SocketAddr, rest: SocketAddr, datanode: SocketAddr) {
    let Some(head) = common::read_request_head(&mut s) else {
        return;
    };
    let head = String::from_utf8_lossy(&head);
    let target = head.split(' ').nth(1).unwrap_or("/").to_string();
    let (status, extra, body) = if target == "/index.html" {
        (
            "200 OK",
            "Content-Type: text/html\r\nETag: \"v1\"\r\n".to_string(),
            format!("<html><body><a id=\"rest\" href=\"http://{rest}/api/v1\">jobs</a> <p id=\"w\">foo</p></body></html>"),
        )
    } else if target == "/moved" {
        (
            "302 Found",
            format!("Location: http://{me}/elsewhere?a=1\r\nRefresh: 0; url=http://{me}/x\r\n"),
            String::new(),
        )
    } else if let Some(rest_of) = target.strip_prefix("/webhdfs/") {
        (
            "307 Temporary Redirect",
            format!("Location: http://{datanode}/webhdfs/{rest_of}\r\nContent-Type: application/json\r\n"),
            "{}".to_string(),
        )
    } else {
        (
            "200 OK",
            "Content-Type: text/plain\r\n".to_string(),
            "ok".to_string(),
        )
    };
    let out = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(out.as_bytes());
}

struct Rig {
    p: Pylon,
    tls: SocketAddr,
    rest: Upstream,
    /// A WebHDFS datanode, reached through `/a/`.
    dn: Upstream,
    fixture: Fixture,
    _ca: TestCa,
}

impl Rig {
    fn start() -> Rig {
        let ca = TestCa::new();
        let rest = Upstream::start("rest");
        let dn = Upstream::start("datanode");
        let fixture = Fixture::start(rest.addr(), dn.addr());
        let tls_port = free_port();
        let yaml = format!(
            "tls:\n  listen: [\"127.0.0.1:{tls_port}\"]\n  cert: {cert}\n  key: {key}\n\
             server_names: [\"{NAME}\"]\n\
             limits:\n  max_uri_length: 1k\n  max_header_count: 40\n\
             hostport:\n  allow: [\"127.0.0.1/32\"]\n  allow_loopback: true\n\
             routes:\n\
             \x20 portal:\n    upstream: {portal}\n    rewrite:\n      - {{pattern: foo, replacement: 'bar at {{scheme}}://{{host}}'}}\n\
             \x20 rest-server:\n    upstream: {rest}\n    max_body_size: 10\n\
             \x20 grafana:\n    upstream: {rest}\n\
             \x20 yarn:\n    upstream: {rest}\n    deny: [\"127.0.0.0/8\"]\n\
             \x20 prometheus:\n    upstream: {rest}\n    rate_limit: 1\n",
            cert = ca.cert_file.display(),
            key = ca.key_file.display(),
            portal = format_args!("http://{}", fixture.addr),
            rest = rest.uri(),
        );
        let p = Pylon::start(
            &yaml,
            &[("WEBHDFS_URI", format!("http://{}", fixture.addr))],
        );
        Rig {
            p,
            tls: ([127, 0, 0, 1], tls_port).into(),
            rest,
            dn,
            fixture,
            _ca: ca,
        }
    }

    fn addr(&self, proto: Proto) -> SocketAddr {
        match proto {
            Proto::Http1 => self.p.addr(),
            _ => self.tls,
        }
    }

    /// `scheme://pylon.test:port`, the public origin over `proto`.
    fn public(&self, proto: Proto) -> String {
        format!("{}://{NAME}:{}", proto.scheme(), self.addr(proto).port())
    }

    fn get(&self, proto: Proto, path: &str) -> Response {
        curl_via(proto, self.addr(proto), NAME, "GET", path, &[], None)
    }
}

/// Every request-dependent behaviour, with the same assertions for each
/// protocol.
fn check(rig: &Rig, proto: Proto) {
    let public = rig.public(proto);
    let ctx = |what: &str| format!("{proto:?}: {what}");

    // The portal page: internal URIs replaced, `rewrite:` rules applied
    // with `{scheme}://{host}`, the ETag suffixed.
    let r = rig.get(proto, "/index.html");
    assert_eq!(r.status, 200, "{}", ctx("portal page"));
    assert_eq!(
        r.text(),
        format!("<html><body><a id=\"rest\" href=\"/rest-server/api/v1\">jobs</a> <p id=\"w\">bar at {public}</p></body></html>"),
        "{}",
        ctx("portal page rewritten")
    );
    let etag = r.header("ETag").unwrap_or_default().to_string();
    assert!(
        etag.starts_with("\"v1|") && etag.len() > 6,
        "{}: {etag:?}",
        ctx("ETag suffix")
    );
    let id = r.header("X-Request-Id").unwrap_or_default();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}: {id:?}",
        ctx("request id")
    );

    // Location and Refresh pointing at the upstream become public URLs.
    let r = rig.get(proto, "/moved");
    assert_eq!(r.status, 302, "{}", ctx("redirect"));
    assert_eq!(
        r.header("Location"),
        Some(format!("{public}/elsewhere?a=1").as_str()),
        "{}",
        ctx("Location")
    );
    assert_eq!(
        r.header("Refresh"),
        Some(format!("0; url={public}/x").as_str()),
        "{}",
        ctx("Refresh")
    );

    // Add-slash is relative; a foreign host name is misdirected.
    let r = rig.get(proto, "/grafana?x=1");
    assert_eq!(
        (r.status, r.header("Location")),
        (301, Some("/grafana/?x=1")),
        "{}",
        ctx("add-slash")
    );
    let r = curl_via(
        proto,
        rig.addr(proto),
        "other.test",
        "GET",
        "/grafana/",
        &[],
        None,
    );
    assert_eq!(r.status, 421, "{}", ctx("unknown host"));

    // Access rules, limits.
    assert_eq!(rig.get(proto, "/yarn/x").status, 403, "{}", ctx("deny"));
    let statuses: Vec<u16> = (0..4)
        .map(|_| rig.get(proto, "/prometheus/x").status)
        .collect();
    assert!(
        statuses.contains(&429) && statuses.iter().all(|s| [200, 429].contains(s)),
        "{}: {statuses:?}",
        ctx("rate limit")
    );
    let long = format!("/rest-server/{}", "a".repeat(1100));
    assert_eq!(rig.get(proto, &long).status, 414, "{}", ctx("long target"));
    let many: Vec<String> = (0..45).map(|i| format!("X-H{i}: v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let r = curl_via(
        proto,
        rig.addr(proto),
        NAME,
        "GET",
        "/rest-server/x",
        &many,
        None,
    );
    assert_eq!(r.status, 431, "{}", ctx("header count"));
    rig.rest.clear();
    let status = post_too_large(rig, proto);
    assert_eq!(status, 413, "{}", ctx("body limit"));
    assert_eq!(rig.rest.count(), 0, "{}", ctx("413 reached the upstream"));

    // Forwarded headers and the request id reach the upstream.
    let r = rig.get(proto, "/rest-server/api/v1/jobs?x=1");
    assert_eq!(r.status, 200, "{}", ctx("proxied"));
    let seen = rig.rest.last();
    assert_eq!(seen.target, "/api/v1/jobs?x=1");
    let authority = public.split_once("://").map_or("", |(_, a)| a);
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(authority),
        "{}",
        ctx("X-Forwarded-Host")
    );
    assert_eq!(
        seen.header("x-forwarded-proto"),
        Some(proto.scheme()),
        "{}",
        ctx("X-Forwarded-Proto")
    );
    assert_eq!(
        seen.header("x-request-id"),
        r.header("X-Request-Id"),
        "{}",
        ctx("one request id end to end")
    );
    let id = r.header("X-Request-Id").unwrap_or_default().to_string();
    let line = rig
        .p
        .wait_for_stdout_line("access log line", |l| l.contains(&id));
    assert!(
        line.contains(&format!(
            "\"GET /rest-server/api/v1/jobs?x=1 {}\" 200 ",
            proto.log_version()
        )) && line.contains("route=rest-server")
            && line.contains(&format!("upstream={}", rig.rest.addr())),
        "{}: {line}",
        ctx("access log")
    );
    assert!(
        line.contains(&format!(" host={authority} route=")),
        "{}: {line}",
        ctx("the access log names the host routed on")
    );

    // WebHDFS: the namenode's 307 goes through /a/ on the public origin,
    // and following it over the same protocol reaches the datanode.
    let r = rig.get(proto, "/webhdfs/api/v1/tmp/f?op=OPEN");
    assert_eq!(r.status, 307, "{}", ctx("WebHDFS redirect"));
    let dn = rig.dn.addr();
    let want = format!("{public}/a/{dn}/webhdfs/v1/tmp/f?op=OPEN");
    assert_eq!(
        r.header("Location"),
        Some(want.as_str()),
        "{}",
        ctx("WebHDFS Location")
    );
    let next = want.strip_prefix(&public).unwrap_or_default();
    let r = rig.get(proto, next);
    assert_eq!(r.status, 200, "{}", ctx("/a/ followed"));
    let id = r.header("X-Request-Id").unwrap_or_default().to_string();
    let line = rig
        .p
        .wait_for_stdout_line("access log line of /a/", |l| l.contains(&id));
    assert!(
        line.contains(&format!(" route=hostport upstream={dn} ")),
        "{}: {line}",
        ctx("/a/ named in the access log")
    );
    assert_eq!(rig.dn.last().target, "/webhdfs/v1/tmp/f?op=OPEN");
}

/// The status of a POST whose 100-byte body exceeds the route's limit.
///
/// Over HTTP/2 Pylon answers 413 before reading the body and the stream
/// ends with `RST_STREAM(NO_ERROR)` (RFC 9113 §8.1, as nginx does); curl
/// 7.88 reports that as error 92 when it arrives before its upload ends,
/// so nghttp, which reads the response first, is the client there.
fn post_too_large(rig: &Rig, proto: Proto) -> u16 {
    let body = [b'x'; 100];
    if proto != Proto::Https2 {
        let addr = rig.addr(proto);
        return curl_via(
            proto,
            addr,
            NAME,
            "POST",
            "/rest-server/upload",
            &[],
            Some(&body),
        )
        .status;
    }
    let dir = TempDir::new("h2-post");
    let file = dir.join("body");
    std::fs::write(&file, body).expect("write body");
    let out = Command::new("nghttp")
        .args(["-v", "-t", "20", "-d"])
        .arg(&file)
        .arg(format!("-H:authority: {NAME}:{}", rig.tls.port()))
        .arg(format!("https://{}/rest-server/upload", rig.tls))
        .output()
        .expect("nghttp not found: install the Debian package nghttp2-client (tests/install-deps.sh does)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split_once(":status: ").map(|(_, s)| s.trim().to_string()))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("nghttp: no status in {text}"))
}

#[test]
fn request_dependent_behaviour_is_the_same_over_every_protocol() {
    let rig = Rig::start();
    let _ = rig.fixture.addr;
    for proto in Proto::ALL {
        check(&rig, proto);
    }
    // The /a/ traffic has its own series and its own row on /status.
    let metrics = common::admin_get(&rig.p, "/metrics").text();
    assert_eq!(
        common::series_value(
            &metrics,
            "pylon_requests_total",
            &[("route", "hostport"), ("method", "GET"), ("status", "2xx")]
        ),
        Some(3.0),
        "{metrics}"
    );
    let status = common::admin_get(&rig.p, "/status?format=json").text();
    assert!(
        status.contains("{\"name\":\"hostport\",\"prefix\":\"/a"),
        "{status}"
    );
}

/// What a browser sees: headless Chromium loads the portal over HTTPS
/// (negotiating HTTP/2) and its DOM holds no internal URI.
#[test]
fn chromium_renders_the_portal_with_every_internal_uri_replaced() {
    let rig = Rig::start();
    let dir = TempDir::new("chromium");
    let url = format!("{}/index.html", rig.public(Proto::Https2));
    let out = common::headless_chromium(dir.path())
        .arg("--ignore-certificate-errors")
        .arg(format!("--host-resolver-rules=MAP {NAME} 127.0.0.1"))
        .arg(&url)
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    let rest = rig.rest.addr().to_string();
    assert!(
        dom.contains("href=\"/rest-server/api/v1\"")
            && dom.contains(&format!("bar at {}", rig.public(Proto::Https2))),
        "DOM: {dom}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dom.contains(&rest), "internal URI left: {dom}");
    assert!(!dom.contains("foo"), "rule not applied: {dom}");
    let line = rig
        .p
        .wait_for_stdout_line("Chromium's request", |l| l.contains("GET /index.html"));
    assert!(line.contains("HTTP/2.0\" 200"), "not over HTTP/2: {line}");
}

/// `pylon -t` names every listener, the HTTPS ones included.
#[test]
fn the_check_lists_the_tls_listeners() {
    let rig = Rig::start();
    let out = common::pylon_command()
        .arg("-t")
        .arg("-c")
        .arg(rig.p.config_path())
        .output()
        .expect("run pylon -t");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("listen: {}\n", rig.p.addr()))
            && text.contains(&format!("tls: {}\n", rig.tls)),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client that abandons its TLS or HTTP/2 handshake (browsers do on
/// ordinary visits) is a `debug` line, not an `error` one.
#[test]
fn abandoned_handshakes_are_logged_at_debug() {
    let ca = TestCa::new();
    let port = free_port();
    let p = Pylon::start(
        &format!(
            "tls:\n  listen: [\"127.0.0.1:{port}\"]\n  cert: {}\n  key: {}\n",
            ca.cert_file.display(),
            ca.key_file.display()
        ),
        &[("RUST_LOG", "info,pingora_core=debug")],
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // No ClientHello at all, then a TLS session (ALPN h2) without a preface.
    drop(TcpStream::connect(addr).expect("connect"));
    drop(common::tls_client(addr, &ca.ca_file, b"h2"));
    let handshake_lines = |level: &str| -> Vec<String> {
        p.stderr_text()
            .lines()
            .filter(|l| l.contains(level) && l.contains("andshake"))
            .map(str::to_string)
            .collect()
    };
    common::wait_until("the demoted lines", Duration::from_secs(10), || {
        let debug = handshake_lines(" DEBUG ");
        (debug
            .iter()
            .any(|l| l.contains("Downstream handshake error"))
            && debug.iter().any(|l| l.contains("H2 handshake error")))
        .then_some(())
    });
    assert_eq!(handshake_lines(" ERROR "), Vec::<String>::new());
}
