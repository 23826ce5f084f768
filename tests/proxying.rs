//! What Pylon does to requests and responses on the way through: forwarded
//! headers, hop-by-hop headers, Host, errors of unreachable or slow
//! upstreams, request bodies, `Expect: 100-continue`, WebSocket upgrades,
//! HTTPS upstreams, host-name upstreams and the access log.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{request, try_request, Client, Cluster, Digest, Pylon, TestCa, Upstream, IO_TIMEOUT};

fn one_route(name: &str) -> (Upstream, Pylon) {
    let up = Upstream::start(name);
    let p = Pylon::start("", &[("REST_SERVER_URI", up.uri())]);
    (up, p)
}

#[test]
fn forwarded_headers_from_an_untrusted_client_are_replaced() {
    let c = Cluster::start();
    let p = c.pylon();
    let r = request(
        p.addr(),
        b"GET /rest-server/api/v1/jobs HTTP/1.1\r\n\
          Host: pylon.example:8080\r\n\
          X-Forwarded-For: 6.6.6.6\r\n\
          X-Real-IP: 6.6.6.6\r\n\
          X-Forwarded-Proto: https\r\n\
          X-Forwarded-Host: evil.example\r\n\
          X-Forwarded-Prefix: /evil\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let s = c.rest.last();
    let host = c.rest.addr().to_string();
    assert_eq!(s.header_all("Host"), [host.as_str()]);
    assert_eq!(s.header_all("X-Forwarded-For"), ["127.0.0.1"]);
    assert_eq!(s.header_all("X-Real-IP"), ["127.0.0.1"]);
    assert_eq!(s.header_all("X-Forwarded-Proto"), ["http"]);
    assert_eq!(s.header_all("X-Forwarded-Host"), ["pylon.example:8080"]);
    assert_eq!(s.header_all("X-Forwarded-Prefix"), ["/rest-server"]);

    // The portal sits at the root: it gets no prefix, not even a forged one.
    let r = request(
        p.addr(),
        b"GET /index.html HTTP/1.1\r\nHost: pylon.example\r\nX-Forwarded-Prefix: /evil\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let s = c.portal.last();
    assert_eq!(s.header_all("X-Forwarded-Prefix"), Vec::<&str>::new());
    assert_eq!(s.header_all("X-Forwarded-Host"), ["pylon.example"]);
    assert_eq!(s.header_all("Host"), [c.portal.addr().to_string().as_str()]);

    // Prefix of a nested route and of a route with a base path.
    assert_eq!(p.get("/webhdfs/api/v1/?op=LISTSTATUS").status, 200);
    assert_eq!(
        c.webhdfs.last().header_all("X-Forwarded-Prefix"),
        ["/webhdfs/api"]
    );
    assert_eq!(p.get("/prometheus/api/v1/query?query=up").status, 200);
    assert_eq!(
        c.prometheus.last().header_all("X-Forwarded-Prefix"),
        ["/prometheus"]
    );
}

#[test]
fn added_headers_are_sent_in_their_usual_case() {
    let (up, p) = one_route("rest-server");
    // The client's own spellings are replaced along with its values.
    let r = request(
        p.addr(),
        b"GET /rest-server/case HTTP/1.1\r\n\
          host: pylon.test\r\n\
          x-forwarded-for: 6.6.6.6\r\n\
          X-REAL-IP: 6.6.6.6\r\n\
          x-forwarded-proto: https\r\n\
          X-Request-Id: client-chosen\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let response_names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        response_names.contains(&"x-request-id"),
        "{response_names:?}"
    );
    let seen = up.last();
    let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
    for name in [
        "Host",
        "x-request-id",
        "X-Forwarded-For",
        "X-Real-IP",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "X-Forwarded-Prefix",
    ] {
        assert_eq!(
            names
                .iter()
                .filter(|n| n.eq_ignore_ascii_case(name))
                .collect::<Vec<_>>(),
            [&name],
            "{names:?}"
        );
    }
}

#[test]
fn forwarded_headers_from_a_trusted_proxy_are_kept_and_appended() {
    let up = Upstream::start("rest-server");
    let p = Pylon::start(
        "trusted_proxies: [\"127.0.0.1/32\"]",
        &[("REST_SERVER_URI", up.uri())],
    );
    let r = request(
        p.addr(),
        b"GET /rest-server/x HTTP/1.1\r\n\
          Host: pylon.internal\r\n\
          X-Forwarded-For: 6.6.6.6\r\n\
          X-Forwarded-Proto: https\r\n\
          X-Forwarded-Host: cluster.example.org\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let s = up.last();
    assert_eq!(s.header_all("X-Forwarded-For"), ["6.6.6.6, 127.0.0.1"]);
    assert_eq!(s.header_all("X-Real-IP"), ["6.6.6.6"]);
    assert_eq!(s.header_all("X-Forwarded-Proto"), ["https"]);
    assert_eq!(s.header_all("X-Forwarded-Host"), ["cluster.example.org"]);

    // A trusted peer that claims nothing is the client itself.
    let r = request(
        p.addr(),
        b"GET /rest-server/y HTTP/1.1\r\nHost: pylon.internal\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let s = up.last();
    assert_eq!(s.header_all("X-Forwarded-For"), ["127.0.0.1"]);
    assert_eq!(s.header_all("X-Real-IP"), ["127.0.0.1"]);
    assert_eq!(s.header_all("X-Forwarded-Proto"), ["http"]);
    assert_eq!(s.header_all("X-Forwarded-Host"), ["pylon.internal"]);
}

#[test]
fn hop_by_hop_request_headers_are_not_forwarded() {
    let (up, p) = one_route("rest-server");
    let r = request(
        p.addr(),
        b"GET /rest-server/api HTTP/1.1\r\n\
          Host: pylon.test\r\n\
          Connection: keep-alive, X-Foo\r\n\
          X-Foo: 1\r\n\
          Keep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\n\
          X-Kept: yes\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let s = up.last();
    assert_eq!(s.header_all("X-Kept"), ["yes"], "{:?}", s.headers);
    for name in ["X-Foo", "Keep-Alive", "Proxy-Connection"] {
        assert!(
            s.header(name).is_none(),
            "{name} was forwarded upstream: {:?}",
            s.headers
        );
    }
    for v in s.header_all("Connection") {
        assert!(
            !v.to_ascii_lowercase().contains("x-foo"),
            "Connection: {v} forwarded upstream"
        );
    }
}

#[test]
fn hop_by_hop_response_headers_are_not_returned() {
    let (up, p) = one_route("rest-server");
    let r = p.get("/rest-server/__hop");
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/__hop");
    assert_eq!(r.header("X-Upstream"), Some("rest-server"));
    for name in ["X-Secret", "Keep-Alive", "Proxy-Connection"] {
        assert!(
            r.header(name).is_none(),
            "{name} reached the client: {:?}",
            r.headers
        );
    }
    // Pylon's own keep-alive handling still works on that connection.
    let mut client = Client::connect(p.addr());
    for _ in 0..3 {
        client
            .send(b"GET /rest-server/__hop HTTP/1.1\r\nHost: pylon.test\r\n\r\n")
            .expect("send");
        let r = client.read_final_response(false).expect("response");
        assert_eq!(r.status, 200);
        assert!(r.header("X-Secret").is_none());
    }
}

#[test]
fn host_is_the_upstreams_unless_preserve_host() {
    let plain = Upstream::start("plain");
    let keep = Upstream::start("keep");
    let yaml = format!(
        "routes:\n  plain:\n    prefix: /plain\n    upstream: {}\n  keep:\n    prefix: /keep\n    upstream: {}\n    preserve_host: true\n",
        plain.uri(),
        keep.uri()
    );
    let p = Pylon::start(&yaml, &[] as &[(&str, &str)]);
    let ask = |path: &str| {
        let raw = format!(
            "GET {path} HTTP/1.1\r\nHost: cluster.example.org:8443\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(request(p.addr(), raw.as_bytes()).status, 200, "{path}");
    };
    ask("/plain/a");
    ask("/keep/a");
    assert_eq!(
        plain.last().header_all("Host"),
        [plain.addr().to_string().as_str()]
    );
    assert_eq!(keep.last().header_all("Host"), ["cluster.example.org:8443"]);
    assert_eq!(
        keep.last().header_all("X-Forwarded-Host"),
        ["cluster.example.org:8443"]
    );
}

#[test]
fn upstream_statuses_and_bodies_pass_through() {
    let (up, p) = one_route("rest-server");
    for status in [201u16, 204, 302, 404, 500, 503] {
        let r = p.get(&format!("/rest-server/api/__status/{status}"));
        assert_eq!(r.status, status);
        assert_eq!(
            r.header("X-Upstream"),
            Some("rest-server"),
            "{status} was not the upstream's answer: {:?}",
            r.text()
        );
        if status != 204 {
            assert!(
                r.text().contains("\"upstream\":\"rest-server\""),
                "{:?}",
                r.text()
            );
        }
    }
    assert_eq!(up.count(), 6);
}

#[test]
fn refused_upstream_is_502_naming_the_route() {
    let dead = common::closed_port();
    let p = Pylon::start(
        "",
        &[("REST_SERVER_URI", format!("http://127.0.0.1:{dead}"))],
    );
    let started = Instant::now();
    let r = p.get("/rest-server/api/v1/jobs");
    assert_eq!(r.status, 502, "{:?}", r.text());
    assert!(
        r.text().contains("rest-server"),
        "502 body does not name the route: {:?}",
        r.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused connection took {:?}",
        started.elapsed()
    );
    // The access log says which route failed.
    let line = p.wait_for_stdout_line("access log line of the 502", |l| {
        l.contains("/rest-server/api/v1/jobs")
    });
    assert!(line.contains(" 502 "), "{line}");
    assert!(line.contains("route=rest-server"), "{line}");
}

#[test]
fn slow_upstream_is_504_after_read_timeout() {
    let up = Upstream::start("rest-server");
    let yaml = format!(
        "routes:\n  rest-server:\n    upstream: {}\n    read_timeout: 1s\n",
        up.uri()
    );
    let p = Pylon::start(&yaml, &[] as &[(&str, &str)]);
    let started = Instant::now();
    let r = p.get("/rest-server/api/__sleep/3000");
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{:?}", r.text());
    assert!(
        r.text().contains("rest-server"),
        "504 body does not name the route: {:?}",
        r.text()
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
        "504 after {took:?}, expected about 1 s"
    );
    assert_eq!(up.last().target, "/api/__sleep/3000");
    // Fast requests on the same route still work.
    assert_eq!(p.get("/rest-server/api/__sleep/100").status, 200);
}

#[test]
fn request_bodies_are_forwarded_whole() {
    let (up, p) = one_route("rest-server");
    let body = b"{\"jobName\":\"test\",\"taskRoles\":{}}";
    let mut raw = format!(
        "POST /rest-server/api/v1/jobs HTTP/1.1\r\nHost: pylon.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let r = request(p.addr(), &raw);
    assert_eq!(r.status, 200);
    let s = up.last();
    assert_eq!(s.method, "POST");
    assert_eq!(s.body_len, body.len() as u64);
    let mut d = Digest::default();
    d.update(body);
    assert_eq!(s.body_digest, d.finish());

    // Chunked, as kubectl and browsers stream uploads.
    let r = request(
        p.addr(),
        b"PUT /rest-server/api/v1/upload HTTP/1.1\r\nHost: pylon.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let s = up.last();
    assert_eq!(s.method, "PUT");
    assert_eq!(s.body_len, 11);
    let mut d = Digest::default();
    d.update(b"hello world");
    assert_eq!(s.body_digest, d.finish());
}

#[test]
fn keep_alive_clients_reuse_their_connection_across_routes() {
    let c = Cluster::start();
    let p = c.pylon();
    let mut client = Client::connect(p.addr());
    let paths = [
        ("/rest-server/api/v1/jobs", "rest-server"),
        ("/kubernetes/api/v1/nodes", "kubernetes"),
        ("/grafana/", "grafana"),
        ("/", "portal"),
        ("/rest-server/api/v1/user", "rest-server"),
    ];
    for (path, name) in paths {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: pylon.test\r\n\r\n");
        client
            .send(raw.as_bytes())
            .expect("send on kept-alive connection");
        let r = client.read_final_response(false).expect("response");
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("X-Upstream"), Some(name), "{path}");
    }
}

#[test]
fn expect_100_continue_is_relayed_before_the_body() {
    let webhdfs = Upstream::start("webhdfs");
    let p = Pylon::start("", &[("WEBHDFS_URI", webhdfs.uri())]);
    let body = vec![b'x'; 100_000];
    let started = Instant::now();
    // A client that waits for 100 Continue (bounded) before sending.
    let mut client =
        Client::try_connect(p.addr(), Duration::from_secs(10)).expect("connect to pylon");
    client
        .send(
            format!(
                "PUT /webhdfs/api/v1/tmp/f?op=CREATE&overwrite=true HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .expect("send head");
    let interim = client
        .read_response(false)
        .expect("no 100 Continue within 10 s");
    assert_eq!(interim.status, 100, "expected 100 Continue first");
    client.send(&body).expect("send body");
    let r = client.read_final_response(false).expect("final response");
    assert_eq!(r.status, 200, "{:?}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let s = webhdfs.last();
    assert_eq!(s.target, "/webhdfs/v1/tmp/f?op=CREATE&overwrite=true");
    assert_eq!(s.body_len, body.len() as u64);
    assert_eq!(
        s.header("Expect"),
        Some("100-continue"),
        "the upstream did not see the expectation, so the 100 was not its own"
    );
}

#[test]
fn websocket_frames_are_echoed_through_the_kubernetes_route() {
    use tungstenite::Message;

    let k8s = Upstream::start("kubernetes");
    let p = Pylon::start("", &[("K8S_API_SERVER_URI", k8s.uri())]);
    let stream = TcpStream::connect_timeout(&p.addr(), IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let path = "/kubernetes/api/v1/namespaces/default/pods/x/exec/__ws?command=sh&stdin=true&stdout=true&tty=true";
    let url = format!("ws://{}{path}", p.addr());
    let (mut ws, resp) = match tungstenite::client::client(url.as_str(), stream) {
        Ok(ok) => ok,
        Err(e) => panic!("WebSocket handshake through Pylon failed: {e}"),
    };
    assert_eq!(resp.status().as_u16(), 101);

    ws.send(Message::text("hello from kubectl")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello from kubectl"));
    let binary: Vec<u8> = vec![0, 1, 2, 255, 254, b'\n', b'\r'];
    ws.send(Message::binary(binary.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(binary));
    // A frame larger than any socket buffer, to see it streamed both ways.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(big));

    ws.close(None).unwrap();
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("closing handshake failed: {e}"),
        }
        assert!(Instant::now() < deadline, "close not acknowledged");
    }

    let s = k8s.last();
    assert_eq!(
        s.target,
        "/api/v1/namespaces/default/pods/x/exec/__ws?command=sh&stdin=true&stdout=true&tty=true"
    );
    assert_eq!(
        s.header("Upgrade").map(str::to_ascii_lowercase).as_deref(),
        Some("websocket")
    );
}

/// Routes to one HTTPS upstream, differing only in how it is verified.
fn tls_routes(up: &Upstream, ca: &TestCa) -> String {
    let ca_file = ca.ca_file.display();
    let uri = up.uri();
    format!(
        "routes:
  with-ca:
    prefix: /with-ca
    upstream: {uri}
    tls_ca_file: {ca_file}
  no-ca:
    prefix: /no-ca
    upstream: {uri}
  no-verify:
    prefix: /no-verify
    upstream: {uri}
    tls_verify: false
  by-name:
    prefix: /by-name
    upstream: {uri}
    tls_ca_file: {ca_file}
    tls_sni: localhost
  wrong-name:
    prefix: /wrong-name
    upstream: {uri}
    tls_ca_file: {ca_file}
    tls_sni: other.example
"
    )
}

fn assert_tls_refused(p: &Pylon, up: &Upstream, route: &str) {
    let before = up.count();
    let r = p.get(&format!("/{route}/api/v1/nodes"));
    assert_eq!(
        r.status,
        502,
        "route {route} accepted a certificate it cannot verify: {:?}",
        r.text()
    );
    assert!(r.text().contains(route), "{:?}", r.text());
    assert_eq!(
        up.count(),
        before,
        "route {route} sent a request over an unverified TLS connection"
    );
}

#[test]
fn https_upstreams_are_verified_against_the_configured_ca() {
    let ca = TestCa::new();
    let up = Upstream::start_tls("secure", &ca);
    let p = Pylon::start(&tls_routes(&up, &ca), &[] as &[(&str, &str)]);

    // Refusals first, while no verified connection to this upstream exists.
    assert_tls_refused(&p, &up, "no-ca");
    assert_tls_refused(&p, &up, "wrong-name");

    for route in ["with-ca", "no-verify", "by-name"] {
        let r = p.get(&format!("/{route}/api/v1/nodes?watch=0"));
        assert_eq!(r.status, 200, "route {route}: {:?}", r.text());
        assert_eq!(r.header("X-Upstream"), Some("secure"));
        assert_eq!(up.last().target, "/api/v1/nodes?watch=0");
    }
    // Still refused with verified connections to the same address around.
    assert_tls_refused(&p, &up, "wrong-name");
}

/// Pingora pools upstream connections by address, SNI and the verify
/// flags, but not by CA: a connection that one route verified with its
/// own `tls_ca_file` must not serve a route that does not trust that CA.
#[test]
fn a_connection_verified_with_one_routes_ca_is_not_reused_by_another() {
    let ca = TestCa::new();
    let up = Upstream::start_tls("secure", &ca);
    let p = Pylon::start(&tls_routes(&up, &ca), &[] as &[(&str, &str)]);
    // The verified connection goes back to the pool just after the answer;
    // a few rounds make sure the next request has the chance to take it.
    for _ in 0..5 {
        assert_eq!(p.get("/with-ca/api").status, 200);
        assert_tls_refused(&p, &up, "no-ca");
    }
}

#[test]
fn upstream_host_names_are_resolved() {
    let up = Upstream::start("rest-server");
    let p = Pylon::start(
        "",
        &[("REST_SERVER_URI", format!("http://localhost:{}", up.port()))],
    );
    // localhost may also resolve to ::1, where nothing listens: every
    // request must still arrive, on new connections as on reused ones.
    for i in 0..8 {
        let r = p.get(&format!("/rest-server/n/{i}"));
        assert_eq!(r.status, 200, "request {i}: {:?}", r.text());
    }
    assert_eq!(up.count(), 8);
    assert_eq!(
        up.last().header_all("Host"),
        [format!("localhost:{}", up.port()).as_str()]
    );
}

#[test]
fn access_log_lines_go_to_stdout_in_the_chosen_format() {
    let up = Upstream::start("rest-server");
    let env = [("REST_SERVER_URI", up.uri())];
    let ask = |p: &Pylon| {
        let mut client = Client::connect(p.addr());
        client
            .send(b"GET /rest-server/api/v1/jobs?x=1 HTTP/1.1\r\nHost: pylon.test\r\nUser-Agent: itest/1\r\nReferer: http://portal/\r\n\r\n")
            .unwrap();
        assert_eq!(client.read_final_response(false).unwrap().status, 200);
        // Pingora logs a request before it reads the next one on the same
        // connection, so after this answer the first line has been written.
        client
            .send(b"GET /healthz HTTP/1.1\r\nHost: pylon.test\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(client.read_final_response(false).unwrap().status, 200);
    };

    let p = Pylon::start("access_log: combined", &env);
    ask(&p);
    let line = p.wait_for_stdout_line("combined access log line", |l| {
        l.contains("/rest-server/api/v1/jobs?x=1")
    });
    for part in [
        "127.0.0.1 - - [",
        "\"GET /rest-server/api/v1/jobs?x=1 HTTP/1.1\" 200 ",
        "\"http://portal/\" \"itest/1\"",
        "route=rest-server",
        &format!("upstream={}", up.addr()),
    ] {
        assert!(line.contains(part), "{part:?} not in {line:?}");
    }
    drop(p);

    let p = Pylon::start("access_log: json", &env);
    ask(&p);
    let line = p.wait_for_stdout_line("JSON access log line", |l| {
        l.contains("/rest-server/api/v1/jobs?x=1")
    });
    assert!(line.starts_with("{\"time\":\""), "{line}");
    assert!(line.ends_with('}'), "{line}");
    for part in [
        "\"client\":\"127.0.0.1\"",
        "\"method\":\"GET\"",
        "\"path\":\"/rest-server/api/v1/jobs?x=1\"",
        "\"status\":200",
        "\"route\":\"rest-server\"",
        &format!("\"upstream\":\"{}\"", up.addr()),
        "\"user_agent\":\"itest/1\"",
    ] {
        assert!(line.contains(part), "{part:?} not in {line:?}");
    }
    drop(p);

    let p = Pylon::start("access_log: off", &env);
    ask(&p);
    let out = p.stdout_text();
    assert!(
        !out.contains("/rest-server"),
        "access_log: off still logged: {out:?}"
    );
}

#[test]
fn head_requests_are_proxied_without_a_body() {
    let (up, p) = one_route("rest-server");
    let mut client = Client::connect(p.addr());
    client
        .send(b"HEAD /rest-server/files/__bytes/1000 HTTP/1.1\r\nHost: pylon.test\r\n\r\n")
        .unwrap();
    let r = client.read_final_response(true).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("1000"));
    assert_eq!(up.last().method, "HEAD");
    // No body bytes followed: the next response on the connection parses.
    client
        .send(b"GET /rest-server/after-head HTTP/1.1\r\nHost: pylon.test\r\n\r\n")
        .unwrap();
    let r = client.read_final_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("\"target\":\"/after-head\""),
        "{:?}",
        r.text()
    );
}

/// How a connection ends after a response: the peer closed it, or it was
/// still open after `wait`.
fn closed_within(client: &mut Client, wait: Duration) -> bool {
    use std::io::Read;
    client.stream().set_read_timeout(Some(wait)).unwrap();
    let mut rest = Vec::new();
    match client.stream().read_to_end(&mut rest) {
        Ok(_) => {
            assert!(rest.is_empty(), "bytes after the response: {rest:?}");
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        Err(_) => false,
    }
}

/// HTTP/1.0 is not persistent unless the client asks (RFC 9112 §9.3), and
/// an HTTP/1.0 client may well read the answer up to the close.
#[test]
fn http_1_0_clients_get_their_connection_closed() {
    let (up, p) = one_route("rest-server");
    for (what, raw) in [
        (
            "proxied",
            &b"GET /rest-server/api/v1/jobs HTTP/1.0\r\n\r\n"[..],
        ),
        ("answered by Pylon", &b"GET /healthz HTTP/1.0\r\n\r\n"[..]),
    ] {
        let mut client = Client::connect(p.addr());
        client.send(raw).unwrap();
        let r = client.read_final_response(false).unwrap();
        assert_eq!(r.status, 200, "{what}: {:?}", r.text());
        assert!(
            closed_within(&mut client, Duration::from_secs(5)),
            "{what}: HTTP/1.0 response (Connection: {:?}) left the connection open",
            r.header("Connection")
        );
    }
    assert_eq!(up.last().target, "/api/v1/jobs");

    // Asking for keep-alive in HTTP/1.0 keeps it.
    let mut client = Client::connect(p.addr());
    for _ in 0..2 {
        client
            .send(b"GET /rest-server/again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        assert_eq!(client.read_final_response(false).unwrap().status, 200);
    }
}

/// Pylon does not process pipelined requests concurrently; what it must
/// never do is answer out of order or answer the wrong request. Closing
/// after a response is allowed (the client retries what was unanswered).
#[test]
fn pipelined_requests_are_answered_in_order_or_left_for_a_retry() {
    let (up, p) = one_route("rest-server");
    let mut client = Client::connect(p.addr());
    client
        .send(
            b"GET /rest-server/one HTTP/1.1\r\nHost: pylon.test\r\n\r\n\
              GET /rest-server/two HTTP/1.1\r\nHost: pylon.test\r\n\r\n\
              GET /rest-server/three HTTP/1.1\r\nHost: pylon.test\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut answered = 0;
    for name in ["one", "two", "three"] {
        match client.read_final_response(false) {
            Ok(r) => {
                assert_eq!(r.status, 200);
                assert!(
                    r.text().contains(&format!("\"target\":\"/{name}\"")),
                    "answer out of order: {:?}",
                    r.text()
                );
                answered += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("broken connection after {answered} answers: {e}"),
        }
    }
    assert!(answered >= 1);
    // Whatever was not answered was not executed either.
    let targets: Vec<String> = up.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        ["/one", "/two", "/three"][..answered],
        "upstream requests do not match the answers"
    );
    eprintln!("pipelining: {answered} of 3 pipelined requests answered on one connection");
}

#[test]
fn bodies_over_max_body_size_are_refused_with_413() {
    let up = Upstream::start("rest-server");
    let yaml = format!(
        "routes:\n  rest-server:\n    upstream: {}\n    max_body_size: 1k\n",
        up.uri()
    );
    let p = Pylon::start(&yaml, &[] as &[(&str, &str)]);
    let mut raw = b"POST /rest-server/api HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n".to_vec();
    raw.extend_from_slice(&[b'a'; 1024]);
    assert_eq!(request(p.addr(), &raw).status, 200, "a body at the limit");
    assert_eq!(up.last().body_len, 1024);

    let mut raw = b"POST /rest-server/api HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: 1025\r\nConnection: close\r\n\r\n".to_vec();
    raw.extend_from_slice(&[b'a'; 1025]);
    let r = request(p.addr(), &raw);
    assert_eq!(r.status, 413, "{:?}", r.text());

    // Chunked: no length up front, so the limit applies as bytes arrive.
    let mut raw = b"POST /rest-server/chunked HTTP/1.1\r\nHost: pylon.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..4 {
        raw.extend_from_slice(b"200\r\n");
        raw.extend_from_slice(&[b'b'; 0x200]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let r = request(p.addr(), &raw);
    assert_eq!(r.status, 413, "{:?}", r.text());
    assert_eq!(
        up.count(),
        1,
        "an oversized body reached the upstream whole"
    );
}

#[test]
fn conflicting_body_framing_never_reaches_an_upstream_ambiguous() {
    let (up, p) = one_route("rest-server");
    // Content-Length and Transfer-Encoding together: a smuggling attempt.
    let r = try_request(
        p.addr(),
        b"POST /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /rest-server/smuggled HTTP/1.1\r\nHost: pylon.test\r\n\r\n",
    );
    if let Ok(r) = &r {
        assert!(r.status == 400 || r.status == 200, "{}", r.status);
    }
    for s in up.seen() {
        assert!(
            !(s.header("Content-Length").is_some() && s.header("Transfer-Encoding").is_some()),
            "upstream got both framings: {:?}",
            s.headers
        );
        assert_ne!(
            s.target, "/smuggled",
            "a smuggled request reached the upstream"
        );
    }
}

#[test]
fn a_truncated_upstream_response_is_not_passed_off_as_complete() {
    let (up, p) = one_route("rest-server");
    let n: u64 = 4 << 20;
    let mut client = Client::connect(p.addr());
    client
        .send(
            format!("GET /rest-server/f/__short/{n} HTTP/1.1\r\nHost: pylon.test\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut got = 0u64;
    let result = client.read_response_with(false, &mut |b| got += b.len() as u64);
    assert!(
        result.is_err(),
        "the client got a complete-looking response of {got} bytes from an upstream that sent {}",
        n / 2
    );
    assert!(got <= n / 2, "more bytes than the upstream sent: {got}");
    assert_eq!(up.count(), 1);
    // Pylon itself is fine.
    assert_eq!(p.get("/rest-server/ok").status, 200);
}

#[test]
fn a_close_delimited_upstream_body_arrives_whole() {
    let (_up, p) = one_route("rest-server");
    let n: u64 = 3 << 20;
    let mut client = Client::connect(p.addr());
    client
        .send(
            format!("GET /rest-server/f/__eof/{n} HTTP/1.1\r\nHost: pylon.test\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut d = Digest::default();
    let r = client
        .read_response_with(false, &mut |b| d.update(b))
        .expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(d.len(), n);
    assert_eq!(d.finish(), common::pattern_digest(n));
}

#[test]
fn upstream_connections_are_reused() {
    let (up, p) = one_route("rest-server");
    for i in 0..10 {
        assert_eq!(p.get(&format!("/rest-server/n/{i}")).status, 200);
    }
    let mut peers: Vec<_> = up.seen().iter().map(|s| s.peer).collect();
    peers.sort();
    peers.dedup();
    // One per worker thread at most, not one per request.
    assert!(
        peers.len() <= 2,
        "10 sequential requests used {} upstream connections",
        peers.len()
    );
}

#[test]
fn idle_client_connections_are_closed_after_keepalive_timeout() {
    let up = Upstream::start("rest-server");
    let p = Pylon::start("keepalive_timeout: 1s", &[("REST_SERVER_URI", up.uri())]);
    let mut client = Client::connect(p.addr());
    client
        .send(b"GET /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\n\r\n")
        .unwrap();
    assert_eq!(client.read_final_response(false).unwrap().status, 200);
    let idle = Instant::now();
    assert!(
        closed_within(&mut client, Duration::from_secs(10)),
        "idle keep-alive connection still open after 10 s"
    );
    assert!(
        idle.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before the 1 s keepalive_timeout",
        idle.elapsed()
    );
}

#[test]
fn concurrent_keep_alive_clients_all_reach_the_right_service() {
    let c = Cluster::start();
    let p = c.pylon();
    let addr = p.addr();
    let routes = [
        ("/rest-server/api/v1/jobs", "rest-server", "/api/v1/jobs"),
        ("/kubernetes/api/v1/pods", "kubernetes", "/api/v1/pods"),
        (
            "/webhdfs/api/v1/?op=LISTSTATUS",
            "webhdfs",
            "/webhdfs/v1/?op=LISTSTATUS",
        ),
        ("/grafana/api/health", "grafana", "/api/health"),
        ("/", "portal", "/"),
    ];
    let clients: Vec<_> = (0..32)
        .map(|t| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for i in 0..25 {
                    let (path, name, target) = routes[(t + i) % routes.len()];
                    client
                        .send(format!("GET {path} HTTP/1.1\r\nHost: pylon.test\r\n\r\n").as_bytes())
                        .unwrap();
                    let r = client.read_final_response(false).unwrap();
                    assert_eq!(r.status, 200, "{path}");
                    assert_eq!(r.header("X-Upstream"), Some(name), "{path}");
                    assert!(
                        r.text().contains(&format!("\"target\":\"{target}\"")),
                        "{path}: {:?}",
                        r.text()
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread failed");
    }
    assert_eq!(c.total_requests(), 32 * 25);
}

/// A pooled upstream connection is closed once it has been idle for the
/// route's `idle_timeout`, even when no further request comes for that
/// upstream (the pool's sweeper, not the next request, closes it).
#[test]
fn idle_upstream_connections_are_closed_after_idle_timeout() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let upstream = std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        // Connections that close before a whole request head (Pylon's
        // checks of the upstream) are skipped.
        let mut s = loop {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") && s.read_exact(&mut byte).is_ok() {
                head.push(byte[0]);
            }
            if head.ends_with(b"\r\n\r\n") {
                break s;
            }
        };
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .expect("response");
        let answered = Instant::now();
        // The next read ends when Pylon closes its pooled connection.
        let n = s.read(&mut byte).unwrap_or(0);
        (n, answered.elapsed())
    });
    let yaml = format!(
        "routes:\n  rest-server:\n    upstream: http://127.0.0.1:{port}\n    idle_timeout: 1s\n"
    );
    let p = Pylon::start(&yaml, &[] as &[(&str, &str)]);
    let r = p.get("/rest-server/api");
    assert_eq!(r.status, 200, "{r:?}");
    let (n, idle) = upstream.join().expect("upstream");
    assert_eq!(n, 0, "the upstream connection got data instead of a close");
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(5),
        "closed after {idle:?} idle, with idle_timeout 1s"
    );
}
