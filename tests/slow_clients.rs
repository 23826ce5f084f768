//! Clients that are slow on purpose: a request head or body dribbled in,
//! and more connections than `limits.max_connections`. Each is cut off on
//! time, counted in `/metrics`, and does not cost anyone else their
//! request; honest but slow situations (an idle keep-alive connection, an
//! upstream slow to take an upload) are left alone.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{admin_get, series_value, wait_until, Pylon, Upstream};

fn config(up: &Upstream, limits: &str) -> String {
    format!(
        "limits:\n{limits}routes:\n  rest-server:\n    upstream: {}\n",
        up.uri()
    )
}

/// The value of a series in Pylon's `/metrics`.
fn metric(p: &Pylon, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = admin_get(p, "/metrics").text();
    series_value(&text, name, labels)
        .unwrap_or_else(|| panic!("{name} {labels:?} not in /metrics:\n{text}"))
}

/// Reads until the peer closes; returns what arrived and when it closed.
fn until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Instant) {
    s.set_read_timeout(Some(limit)).expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, Instant::now()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (got, Instant::now())
            }
            Err(e) => panic!("connection still open after {limit:?}: {e}"),
        }
    }
}

#[test]
fn a_dribbled_request_head_is_cut_off_at_header_timeout() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &config(&up, "  header_timeout: 2s\n"),
        &[] as &[(&str, &str)],
    );
    let mut s = TcpStream::connect(p.addr()).expect("connect");
    let started = Instant::now();
    s.write_all(b"GET /rest-server/slow HTTP/1.1\r\nHost: h\r\nX-A: ")
        .expect("head start");
    // One byte every 300 ms: each read succeeds, so a per-read timeout
    // would never fire.
    let writer = {
        let mut w = s.try_clone().expect("clone");
        thread::spawn(move || {
            while w.write_all(b"a").is_ok() {
                thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let (_, closed) = until_closed(&mut s, Duration::from_secs(10));
    let took = closed - started;
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "closed after {took:?}, header_timeout is 2 s"
    );
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    assert_eq!(up.count(), 0, "the unfinished request was not forwarded");
    assert_eq!(
        metric(&p, "pylon_slow_clients_total", &[("part", "head")]),
        1.0
    );
    assert_eq!(p.get("/rest-server/after").status, 200);
}

#[test]
fn a_connection_that_never_sends_anything_is_closed_too() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &config(&up, "  header_timeout: 1s\n"),
        &[] as &[(&str, &str)],
    );
    let mut s = TcpStream::connect(p.addr()).expect("connect");
    let started = Instant::now();
    let (got, closed) = until_closed(&mut s, Duration::from_secs(10));
    assert!(got.is_empty());
    let took = closed - started;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
}

#[test]
fn idle_keepalive_is_governed_by_keepalive_timeout_not_header_timeout() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &config(&up, "  header_timeout: 1s\n"),
        &[] as &[(&str, &str)],
    );
    let mut c = common::Conn::new(TcpStream::connect(p.addr()).expect("connect"));
    for i in 0..2 {
        c.write_all(format!("GET /rest-server/k{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .expect("request");
        let (status, headers) = c.read_head().expect("read").expect("a response");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let len: u64 = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .expect("content-length");
        c.read_exact_with(len, &mut |_| {}).expect("body");
        // Idle for longer than header_timeout between requests.
        thread::sleep(Duration::from_millis(2500));
    }
    assert_eq!(up.count(), 2);
}

#[test]
fn a_body_slower_than_the_minimum_rate_is_cut_off() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &config(
            &up,
            "  body_timeout: 2s\n  body_min_rate: 1k\n  header_timeout: 5s\n",
        ),
        &[] as &[(&str, &str)],
    );
    let mut s = TcpStream::connect(p.addr()).expect("connect");
    s.write_all(b"POST /rest-server/upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n")
        .expect("head");
    let started = Instant::now();
    // 100 B every 200 ms = 500 B/s, half the minimum: the budget of
    // 2 s + t/2 runs out after about 4 s.
    let writer = {
        let mut w = s.try_clone().expect("clone");
        thread::spawn(move || {
            let chunk = [b'x'; 100];
            while w.write_all(&chunk).is_ok() {
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let (got, closed) = until_closed(&mut s, Duration::from_secs(20));
    let took = closed - started;
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    assert!(
        took >= Duration::from_millis(3500) && took < Duration::from_secs(7),
        "closed after {took:?}"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 400"),
        "unexpected answer: {text}"
    );
    assert_eq!(
        metric(&p, "pylon_slow_clients_total", &[("part", "body")]),
        1.0
    );
    // The upstream records only requests whose body completed.
    assert_eq!(up.count(), 0, "the truncated body was not completed");
    assert_eq!(p.get("/rest-server/after").status, 200);
}

/// While the upstream stops reading an upload, Pylon stops reading the
/// client: that wait is not the client's, and the upload completes.
#[test]
fn an_upstream_slow_to_take_an_upload_does_not_count_against_the_client() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &config(&up, "  body_timeout: 1s\n  body_min_rate: 1m\n"),
        &[] as &[(&str, &str)],
    );
    let len: u64 = 160 << 20;
    let mut c = common::Conn::new(TcpStream::connect(p.addr()).expect("connect"));
    c.write_all(
        format!(
            "PUT /rest-server/__pause/3000 HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("head");
    let started = Instant::now();
    common::for_each_pattern_chunk(len, 64 << 10, |chunk| c.write_all(chunk)).expect("upload body");
    let (status, _) = c.read_head().expect("read").expect("a response");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(started.elapsed() >= Duration::from_millis(2900));
    assert_eq!(up.last().body_len, len);
    assert_eq!(
        metric(&p, "pylon_slow_clients_total", &[("part", "body")]),
        0.0
    );
}

#[test]
fn connections_beyond_max_connections_are_closed_unread_and_counted() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &config(&up, "  max_connections: 20\n"),
        &[] as &[(&str, &str)],
    );
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(p.addr()).expect("connect"))
        .collect();
    // Pylon has taken all of them once each has been served a request.
    for s in &mut held {
        s.write_all(b"GET /rest-server/held HTTP/1.1\r\nHost: h\r\n\r\n")
            .expect("request");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).expect("response");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    let mut extra = TcpStream::connect(p.addr()).expect("the kernel still accepts");
    let _ = extra.write_all(b"GET /rest-server/extra HTTP/1.1\r\nHost: h\r\n\r\n");
    let (got, _) = until_closed(&mut extra, Duration::from_secs(5));
    assert!(got.is_empty(), "the extra connection was answered: {got:?}");
    assert_eq!(metric(&p, "pylon_connections_refused_total", &[]), 1.0);

    // A freed slot is usable again.
    drop(held.pop());
    let again = b"GET /rest-server/again HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    wait_until("a slot to free", Duration::from_secs(5), || {
        common::try_request(p.addr(), again)
            .ok()
            .filter(|r| r.status == 200)
    });
    assert_eq!(
        up.seen()
            .iter()
            .filter(|s| s.path().ends_with("extra"))
            .count(),
        0
    );
}

/// The HTTPS listener has the same clock as the plain one (the original's
/// HTTPS server silently had other limits); HTTP/2 connections, whose
/// requests share the connection, are not cut at the head deadline.
#[test]
fn https_heads_have_the_same_deadline_and_http2_is_not_clocked() {
    let up = Upstream::start("rest");
    let ca = common::TestCa::new();
    let port = common::free_port();
    let p = Pylon::start(
        &format!(
            "tls:\n  listen: [\"127.0.0.1:{port}\"]\n  cert: {}\n  key: {}\n{}",
            ca.cert_file.display(),
            ca.key_file.display(),
            config(&up, "  header_timeout: 1s\n")
        ),
        &[] as &[(&str, &str)],
    );
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();

    let mut h1 = common::tls_client(addr, &ca.ca_file, b"http/1.1");
    let started = Instant::now();
    h1.write_all(b"GET /rest-server/slow HTTP/1.1\r\nHost: h\r\n")
        .expect("partial head");
    h1.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    let closed = loop {
        match h1.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break false,
            // A close without close_notify is still a close.
            Err(_) => break true,
        }
    };
    let took = started.elapsed();
    assert!(closed, "the HTTPS connection outlived header_timeout");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert_eq!(
        metric(&p, "pylon_slow_clients_total", &[("part", "head")]),
        1.0
    );

    // An HTTP/2 connection that has sent only its preface stays open past
    // header_timeout: HTTP/2 has its own settings and idle handling.
    let mut h2 = common::tls_client(addr, &ca.ca_file, b"h2");
    assert_eq!(h2.conn.alpn_protocol(), Some(&b"h2"[..]));
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .expect("h2 preface");
    thread::sleep(Duration::from_millis(2500));
    // Pylon's SETTINGS and its ACK of ours are readable; no GOAWAY or close.
    h2.sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut got = Vec::new();
    loop {
        match h2.read(&mut buf) {
            Ok(0) => panic!("Pylon closed an idle HTTP/2 connection after header_timeout"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    // Frame types in what arrived: 4 = SETTINGS, 7 = GOAWAY.
    let mut at = 0;
    let mut types = Vec::new();
    while at + 9 <= got.len() {
        let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
        types.push(got[at + 3]);
        at += 9 + len;
    }
    assert!(types.contains(&4), "no SETTINGS from Pylon: {types:?}");
    assert!(!types.contains(&7), "GOAWAY from Pylon: {types:?}");
    assert_eq!(
        metric(&p, "pylon_slow_clients_total", &[("part", "head")]),
        1.0
    );
}

/// With `Expect: 100-continue` the client waits for the upstream's go-ahead
/// before sending the body; that wait is not the client's slowness. Here
/// the upstream takes 2.5 s to say `100 Continue` against a 1 s body budget.
#[test]
fn waiting_for_100_continue_does_not_count_against_the_client() {
    use std::net::TcpListener;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let up_addr = listener.local_addr().expect("upstream address");
    let upstream = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut c = common::Conn::new(s.try_clone().expect("clone"));
        let (line, headers) = c.read_head().expect("head").expect("a request");
        assert!(line.starts_with("PUT /slow-ok "), "{line}");
        assert!(headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("expect") && v == "100-continue"));
        thread::sleep(Duration::from_millis(2500));
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").expect("100");
        let mut body = Vec::new();
        c.read_exact_with(5, &mut |b| body.extend_from_slice(b))
            .expect("body");
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .expect("answer");
        body
    });
    let p = Pylon::start(
        &format!(
            "limits:\n  body_timeout: 1s\n  body_min_rate: 0\nroutes:\n  rest-server:\n    upstream: http://{up_addr}\n    health_check:\n      enabled: false\n"
        ),
        &[] as &[(&str, &str)],
    );
    let mut c = common::Conn::new(TcpStream::connect(p.addr()).expect("connect"));
    c.write_all(
        b"PUT /rest-server/slow-ok HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .expect("head");
    let (line, _) = c.read_head().expect("read").expect("100 Continue");
    assert!(line.starts_with("HTTP/1.1 100"), "{line}");
    c.write_all(b"hello").expect("body");
    let (line, _) = c.read_head().expect("read").expect("final answer");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    assert_eq!(upstream.join().expect("upstream"), b"hello");
    assert_eq!(
        metric(&p, "pylon_slow_clients_total", &[("part", "body")]),
        0.0
    );
}
