//! Stand-in services for trying Pylon without a cluster.
//!
//! ```text
//! cargo run --release --example stand-in -- rest-server=9186 portal=9286 …
//! ```
//!
//! Each `NAME=PORT` serves a fake service on 127.0.0.1:PORT (port 0 picks a
//! free one; the line printed at start says which). Every request is
//! answered with a short page naming the service and echoing the method,
//! path, query and the `Host` and `X-Forwarded-*` headers it received, so a
//! person can see where Pylon sent a request and what it told the service.
//! JSON is answered to API paths (`/api/`, `/v1/`) and to clients that
//! accept `application/json`; HTML to everyone else.
//!
//! Standard library only, so it builds anywhere Pylon builds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

/// Request headers echoed back: the ones a proxy is expected to set.
const ECHOED: &[&str] = &[
    "host",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
];

/// Bounds what one request may make the stand-in buffer; bodies are
/// discarded, never kept.
const MAX_HEAD_BYTES: usize = 64 * 1024;

fn usage() -> ExitCode {
    eprintln!(
        "usage: stand-in NAME=PORT [NAME=PORT …]   e.g. stand-in rest-server=9186 portal=9286"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        return usage();
    }
    let mut services = Vec::new();
    for arg in &args {
        let Some((name, port)) = arg.split_once('=') else {
            eprintln!("stand-in: {arg:?} is not NAME=PORT");
            return usage();
        };
        let Ok(port) = port.parse::<u16>() else {
            eprintln!("stand-in: {port:?} in {arg:?} is not a port");
            return usage();
        };
        if name.is_empty() {
            eprintln!("stand-in: {arg:?} has no name");
            return usage();
        }
        let listener = match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("stand-in: {name}: cannot listen on 127.0.0.1:{port}: {e}");
                return ExitCode::from(1);
            }
        };
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        println!("stand-in: {name} on http://{addr}");
        services.push((name.to_string(), listener));
    }
    let _ = std::io::stdout().flush();

    let handles: Vec<_> = services
        .into_iter()
        .map(|(name, listener)| {
            thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let name = name.clone();
                    thread::spawn(move || serve(&name, stream));
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    ExitCode::SUCCESS
}

struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn serve(name: &str, stream: TcpStream) {
    // A forgotten browser tab must not pin a thread forever.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = write_half;
    loop {
        let req = match read_head(&mut reader) {
            Some(r) => r,
            None => return,
        };
        if !discard_body(&mut reader, &req) {
            return;
        }
        let close = req.version == "HTTP/1.0"
            || req
                .header("connection")
                .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
        let (content_type, body) = page(name, &req);
        let head_only = req.method == "HEAD";
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nX-Stand-In: {name}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(body.as_bytes());
        }
        if writer.write_all(&out).is_err() || close {
            return;
        }
    }
}

fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut total = 0;
    let mut line = String::new();
    // Tolerate the empty line some clients send after a body.
    loop {
        line.clear();
        total += reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
        if !line.trim().is_empty() {
            break;
        }
        if total > MAX_HEAD_BYTES {
            return None;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let version = parts.next().unwrap_or("HTTP/1.0").to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        total += reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
        if total > MAX_HEAD_BYTES {
            return None;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    Some(Request {
        method,
        target,
        version,
        headers,
    })
}

/// Reads and drops the request body, so the connection can be reused.
fn discard_body(reader: &mut BufReader<TcpStream>, req: &Request) -> bool {
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut line = String::new();
        loop {
            if !next_line(reader, &mut line) {
                return false;
            }
            let size_text = line.trim().split(';').next().unwrap_or("");
            let Ok(size) = u64::from_str_radix(size_text, 16) else {
                return false;
            };
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    if !next_line(reader, &mut line) {
                        return false;
                    }
                    if line.trim().is_empty() {
                        return true;
                    }
                }
            }
            if !skip(reader, size + 2) {
                return false;
            }
        }
    }
    match req.header("content-length").map(|v| v.parse::<u64>()) {
        None => true,
        Some(Ok(n)) => skip(reader, n),
        Some(Err(_)) => false,
    }
}

/// Replaces `line` with the next line; false at end of stream or on error.
fn next_line(reader: &mut BufReader<TcpStream>, line: &mut String) -> bool {
    line.clear();
    reader.read_line(line).is_ok_and(|n| n > 0)
}

fn skip(reader: &mut BufReader<TcpStream>, n: u64) -> bool {
    std::io::copy(&mut reader.by_ref().take(n), &mut std::io::sink())
        .is_ok_and(|copied| copied == n)
}

fn page(name: &str, req: &Request) -> (&'static str, String) {
    let (path, query) = match req.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.target.as_str(), None),
    };
    let wants_json = path.contains("/api/")
        || path.contains("/v1/")
        || req
            .header("accept")
            .is_some_and(|a| a.contains("application/json"));
    let echoed: Vec<(&str, Option<&str>)> = ECHOED.iter().map(|h| (*h, req.header(h))).collect();
    if wants_json {
        let mut out = format!(
            "{{\"service\":{},\"method\":{},\"path\":{},\"query\":{}",
            json_str(name),
            json_str(&req.method),
            json_str(path),
            query.map_or_else(|| "null".to_string(), json_str)
        );
        out.push_str(",\"headers\":{");
        let mut first = true;
        for (h, v) in &echoed {
            if let Some(v) = v {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&format!("{}:{}", json_str(h), json_str(v)));
            }
        }
        out.push_str("}}\n");
        return ("application/json", out);
    }
    let mut rows = String::new();
    for (h, v) in &echoed {
        rows.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>\n",
            html(h),
            v.map_or_else(|| "<i>(not sent)</i>".to_string(), html)
        ));
    }
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{n} (stand-in)</title></head>\n<body>\n<h1>{n}</h1>\n<p>This stand-in for <b>{n}</b> received <code>{m} {p}</code>{q}.</p>\n<table>\n{rows}</table>\n</body></html>\n",
        n = html(name),
        m = html(&req.method),
        p = html(path),
        q = query.map_or_else(String::new, |q| format!(
            " with query <code>{}</code>",
            html(q)
        )),
    );
    ("text/html; charset=utf-8", body)
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
