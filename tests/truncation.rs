//! An upstream that dies in the middle of a response: every client must
//! see an error — a reset for HTTP/1.0 (whose body ends with the
//! connection), an incomplete chunked or length-delimited body for
//! HTTP/1.1, a reset stream for HTTP/2 — and the access log must record
//! the failure, not the 200 whose head had already gone out.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{free_port, Pylon, TestCa};

/// Answers every request with the head of a 200 HTML page, 4 KiB of its
/// body, then closes the connection: chunked for `/…/chunked`, otherwise
/// with a `Content-Length` ten times what it sends.
fn dying_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            thread::spawn(move || answer(s));
        }
    });
    addr
}

fn answer(mut s: TcpStream) {
    let Some(head) = common::read_request_head(&mut s) else {
        return;
    };
    let chunked = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .is_some_and(|t| t.ends_with("/chunked"));
    let part = "<p>foo</p>\n".repeat(372); // 4092 bytes
    let out = if chunked {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{part}\r\n",
            part.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{part}",
            part.len() * 10
        )
    };
    let _ = s.write_all(out.as_bytes());
    // Let Pylon forward what came so far, then die.
    thread::sleep(Duration::from_millis(200));
}

/// curl's exit code and the bytes it received.
fn curl(args: &[&str], url: &str) -> (i32, usize) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "20", "-o", "-"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl not found: install the Debian package curl (tests/install-deps.sh does)");
    (out.status.code().unwrap_or(-1), out.stdout.len())
}

#[test]
fn every_client_sees_a_response_cut_short() {
    let ca = TestCa::new();
    let up = dying_upstream();
    let tls_port = free_port();
    let p = Pylon::start(
        &format!(
            "tls:\n  listen: [\"127.0.0.1:{tls_port}\"]\n  cert: {}\n  key: {}\n\
             routes:\n\
             \x20 page:\n    prefix: /page\n    upstream: http://{up}\n    rewrite:\n      - {{pattern: foo, replacement: bar}}\n\
             \x20 raw:\n    prefix: /raw\n    upstream: http://{up}\n",
            ca.cert_file.display(),
            ca.key_file.display()
        ),
        &[] as &[(&str, &str)],
    );
    let plain = format!("http://127.0.0.1:{}", p.addr().port());
    let tls = format!("https://127.0.0.1:{tls_port}");
    let cases: [(&str, &[&str], String); 6] = [
        (
            "HTTP/1.0, rewritten, close-delimited",
            &["--http1.0"],
            format!("{plain}/page/a"),
        ),
        (
            "HTTP/1.1, rewritten, chunked",
            &["--http1.1"],
            format!("{plain}/page/b"),
        ),
        (
            "HTTP/1.1, Content-Length passed through",
            &["--http1.1"],
            format!("{plain}/raw/c"),
        ),
        (
            "HTTP/1.1, chunked passed through",
            &["--http1.1"],
            format!("{plain}/raw/d/chunked"),
        ),
        (
            "HTTP/1.1 over TLS, rewritten",
            &["--http1.1"],
            format!("{tls}/page/e"),
        ),
        ("HTTP/2, rewritten", &["--http2"], format!("{tls}/page/f")),
    ];
    let mut failures = Vec::new();
    for (name, args, url) in &cases {
        let (code, got) = curl(args, url);
        eprintln!("{name}: curl exit {code}, {got} bytes");
        if code == 0 {
            failures.push(format!(
                "{name}: curl saw a complete response ({got} bytes)"
            ));
        }
        if got == 0 {
            failures.push(format!("{name}: nothing arrived before the failure"));
        }
        let path = url.split_once("127.0.0.1:").map_or("", |(_, r)| r);
        let path = &path[path.find('/').unwrap_or(0)..];
        let line = p.wait_for_stdout_line(name, |l| l.contains(&format!(" {path} ")));
        if !line.contains("\" 502 ") {
            failures.push(format!("{name}: access log {line}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
