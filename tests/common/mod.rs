//! Harness shared by the integration tests: the real `pylon` binary, real
//! upstream servers on 127.0.0.1 and a raw-socket HTTP client, all bounded
//! in time and cleaned up on drop.
//!
//! Each test binary uses a different subset, hence `allow(dead_code)`.
#![allow(dead_code)]

pub mod site;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Socket timeout of the test client and the upstreams. Generous, so a
/// loaded 2-core machine does not fail tests, yet a hang still ends.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Pylon may take from spawn to answering `/healthz`.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The variables of Pylon's standalone mode; none may leak in from the
/// environment the tests run in.
pub const URI_VARS: [&str; 8] = [
    "REST_SERVER_URI",
    "K8S_API_SERVER_URI",
    "WEBHDFS_URI",
    "PROMETHEUS_URI",
    "K8S_DASHBOARD_URI",
    "YARN_WEB_PORTAL_URI",
    "GRAFANA_URI",
    "PAI_WEB_PORTAL_URI",
];

pub const GIB: u64 = 1 << 30;

// ------------------------------------------------------------------ temp dir

/// A private directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "pylon-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago. Whoever binds it next may lose a race
/// with another process; [`Pylon::start`] retries for that reason.
///
/// Never the same port twice in one test process: the kernel may hand out a
/// just-closed ephemeral port again at once, and two of them in one
/// configuration (`listen` and `admin_listen`) make Pylon refuse it.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("cannot bind an ephemeral port on 127.0.0.1");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no ephemeral port on 127.0.0.1 that this test process has not used yet");
}

/// A port on 127.0.0.1 where connections are refused. Taken from the
/// privileged range, which the kernel never hands out as an ephemeral
/// port, so no socket of the test itself can land on it meanwhile.
pub fn closed_port() -> u16 {
    for port in [9, 1, 7, 13, 19, 37, 79, 99] {
        match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return port,
            _ => continue,
        }
    }
    panic!("every candidate low port on 127.0.0.1 accepts connections");
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(25));
    }
}

// -------------------------------------------------------- test data streams

/// One MiB of pseudo-random bytes; big bodies are this block repeated, so
/// neither side has to hold more than a block to produce or check them.
pub fn pattern_block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    })
}

/// Feeds `n` bytes of the repeated pattern to `sink`, in slices of at most
/// `chunk` bytes, stopping at the first error.
pub fn for_each_pattern_chunk(
    n: u64,
    chunk: usize,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let block = pattern_block();
    let mut offset: u64 = 0;
    while offset < n {
        let at = (offset % block.len() as u64) as usize;
        let len = (block.len() - at).min(chunk).min((n - offset) as usize);
        sink(&block[at..at + len])?;
        offset += len as u64;
    }
    Ok(())
}

/// An order-sensitive digest of a byte stream that does not depend on how
/// the stream was cut into pieces; cheap enough for a GiB.
#[derive(Clone, Debug)]
pub struct Digest {
    state: u64,
    carry: [u8; 8],
    carried: usize,
    len: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            state: 0xcbf2_9ce4_8422_2325,
            carry: [0; 8],
            carried: 0,
            len: 0,
        }
    }
}

impl Digest {
    fn mix(&mut self, w: u64) {
        self.state = (self.state ^ w)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.carried > 0 {
            let take = (8 - self.carried).min(data.len());
            self.carry[self.carried..self.carried + take].copy_from_slice(&data[..take]);
            self.carried += take;
            data = &data[take..];
            if self.carried < 8 {
                return;
            }
            self.mix(u64::from_le_bytes(self.carry));
            self.carried = 0;
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carried = rest.len();
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn finish(&self) -> u64 {
        let mut d = self.clone();
        let mut last = [0u8; 8];
        last[..d.carried].copy_from_slice(&d.carry[..d.carried]);
        d.mix(u64::from_le_bytes(last));
        d.mix(d.len);
        d.state
    }
}

/// The digest of `n` bytes of the repeated pattern.
pub fn pattern_digest(n: u64) -> u64 {
    let mut d = Digest::default();
    for_each_pattern_chunk(n, 1 << 20, |c| {
        d.update(c);
        Ok(())
    })
    .expect("hashing cannot fail");
    d.finish()
}

// ------------------------------------------------------------ buffered I/O

/// A stream with a read buffer, for HTTP/1.1 framing on both sides.
pub struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// A start line and the header fields, names as sent, in order.
pub type Head = (String, Vec<(String, String)>);

/// Upper bound of a request or response head.
const MAX_HEAD: usize = 256 * 1024;

fn bad_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl<S: Read + Write> Conn<S> {
    pub fn new(stream: S) -> Self {
        Conn {
            stream,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        }
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The stream and whatever was read from it but not consumed yet.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        let rest = self.buf[self.start..self.end].to_vec();
        (self.stream, rest)
    }

    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD {
                self.buf.resize(self.buf.len() * 2, 0);
            } else {
                return Err(bad_data("line too long"));
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// One line without its CRLF (or LF); `None` at a clean end of stream.
    pub fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(i) = avail[scanned..].iter().position(|&b| b == b'\n') {
                let i = scanned + i;
                let mut line = avail[..i].to_vec();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.start += i + 1;
                return Ok(Some(line));
            }
            scanned = avail.len();
            if self.fill()? == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// A start line and headers; `None` if the peer closed before sending any.
    pub fn read_head(&mut self) -> io::Result<Option<Head>> {
        let Some(first) = self.read_line()? else {
            return Ok(None);
        };
        let first = String::from_utf8(first).map_err(|_| bad_data("start line not UTF-8"))?;
        let mut headers = Vec::new();
        let mut size = first.len();
        loop {
            let line = self.read_line()?.ok_or(io::ErrorKind::UnexpectedEof)?;
            if line.is_empty() {
                break;
            }
            size += line.len();
            if size > MAX_HEAD {
                return Err(bad_data("head too large"));
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad_data(format!("header line without ':': {line:?}")))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        Ok(Some((first, headers)))
    }

    /// Exactly `n` body bytes, handed to `sink` as they arrive.
    pub fn read_exact_with(&mut self, n: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let mut left = n;
        while left > 0 {
            if self.start == self.end && self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended {left} bytes short of {n}"),
                ));
            }
            let take = ((self.end - self.start) as u64).min(left) as usize;
            sink(&self.buf[self.start..self.start + take]);
            self.start += take;
            left -= take as u64;
        }
        Ok(())
    }

    /// A chunked body (RFC 9112 §7.1), trailers discarded.
    pub fn read_chunked_with(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        loop {
            let line = self.read_line()?.ok_or(io::ErrorKind::UnexpectedEof)?;
            let text = String::from_utf8_lossy(&line);
            let size_text = text.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| bad_data(format!("bad chunk size line {text:?}")))?;
            if size == 0 {
                loop {
                    let t = self.read_line()?.ok_or(io::ErrorKind::UnexpectedEof)?;
                    if t.is_empty() {
                        return Ok(());
                    }
                }
            }
            self.read_exact_with(size, sink)?;
            let crlf = self.read_line()?.ok_or(io::ErrorKind::UnexpectedEof)?;
            if !crlf.is_empty() {
                return Err(bad_data("chunk not followed by CRLF"));
            }
        }
    }

    /// Everything up to the end of the stream.
    pub fn read_to_end_with(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        loop {
            if self.start == self.end && self.fill()? == 0 {
                return Ok(());
            }
            sink(&self.buf[self.start..self.end]);
            self.start = self.end;
        }
    }

    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)?;
        self.stream.flush()
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

// ----------------------------------------------------------------- upstream

/// One request as an upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target exactly as sent on the wire.
    pub target: String,
    /// In the order received, names as sent.
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_digest: u64,
    pub peer: SocketAddr,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of a header, to catch duplicates.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

struct Shared {
    name: String,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

/// A real HTTP/1.1 server on 127.0.0.1 that records what it receives.
///
/// Every answer is a small JSON body naming the upstream and the target it
/// saw. Path segments anywhere in the path select test behaviour:
/// `__status/NNN` answers that status, `__sleep/MS` waits first,
/// `__bytes/N` streams N pattern bytes, `__short/N` promises N bytes but
/// sends half and hangs up, `__eof/N` sends N bytes delimited by closing
/// the connection, `__pause/MS` stops reading the
/// request body for MS once 64 MiB are in, `__hop` adds hop-by-hop response
/// headers (`Connection: keep-alive, X-Secret`, `X-Secret`, `Keep-Alive`,
/// `Proxy-Connection`), and a path ending in `__ws` is a WebSocket echo.
pub struct Upstream {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: bool,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        Self::spawn(name, None)
    }

    /// The same server behind TLS, with a certificate from `ca` for
    /// `localhost` and 127.0.0.1.
    pub fn start_tls(name: &str, ca: &TestCa) -> Upstream {
        Self::spawn(name, Some(ca.server_config.clone()))
    }

    fn spawn(name: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let is_tls = tls.is_some();
        let s = shared.clone();
        thread::Builder::new()
            .name(format!("upstream-{name}"))
            .spawn(move || {
                for stream in listener.incoming() {
                    if s.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let s = s.clone();
                    let tls = tls.clone();
                    let _ = thread::Builder::new()
                        .name(format!("upstream-{}-conn", s.name))
                        .spawn(move || accept_conn(stream, tls, &s));
                }
            })
            .expect("spawn upstream thread");
        Upstream {
            shared,
            addr,
            tls: is_tls,
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` (or `https://`), for a route's upstream.
    pub fn uri(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("seen lock").clone()
    }

    pub fn count(&self) -> usize {
        self.shared.seen.lock().expect("seen lock").len()
    }

    pub fn clear(&self) {
        self.shared.seen.lock().expect("seen lock").clear();
    }

    /// The most recent request; panics if there was none.
    pub fn last(&self) -> Seen {
        self.seen()
            .pop()
            .unwrap_or_else(|| panic!("upstream {} received no request", self.name()))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn accept_conn(stream: TcpStream, tls: Option<Arc<rustls::ServerConfig>>, s: &Shared) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(peer) = stream.peer_addr() else { return };
    match tls {
        None => serve_conn(Conn::new(stream), peer, s),
        Some(cfg) => {
            let Ok(server) = rustls::ServerConnection::new(cfg) else {
                return;
            };
            serve_conn(Conn::new(rustls::StreamOwned::new(server, stream)), peer, s);
        }
    }
}

/// The number after `marker/` in a path segment sequence, e.g. `__sleep/250`.
fn special(path: &str, marker: &str) -> Option<u64> {
    let mut segs = path.split('/');
    while let Some(seg) = segs.next() {
        if seg == marker {
            return segs.next().and_then(|n| n.parse().ok());
        }
    }
    None
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn serve_conn<S: Read + Write>(mut conn: Conn<S>, peer: SocketAddr, s: &Shared) {
    loop {
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        let (line, headers) = match conn.read_head() {
            Ok(Some(h)) => h,
            _ => return,
        };
        let mut parts = line.splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("").to_string();
        let path = target.split('?').next().unwrap_or("").to_string();

        if path.ends_with("/__ws") && has_token(&headers, "upgrade", "websocket") {
            s.seen.lock().expect("seen lock").push(Seen {
                method,
                target,
                headers: headers.clone(),
                body_len: 0,
                body_digest: Digest::default().finish(),
                peer,
            });
            websocket_echo(conn, &headers);
            return;
        }

        if has_token(&headers, "expect", "100-continue")
            && conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            return;
        }
        let mut digest = Digest::default();
        // A slow consumer: stops reading for a while once 64 MiB are in,
        // so the proxy in front has to hold back the client, not buffer.
        let mut pause = special(&path, "__pause").map(Duration::from_millis);
        let mut sink = |b: &[u8]| {
            digest.update(b);
            if digest.len() >= 64 << 20 {
                if let Some(d) = pause.take() {
                    thread::sleep(d);
                }
            }
        };
        let body = if has_token(&headers, "transfer-encoding", "chunked") {
            conn.read_chunked_with(&mut sink)
        } else {
            match find_header(&headers, "content-length").map(str::parse::<u64>) {
                None => Ok(()),
                Some(Ok(n)) => conn.read_exact_with(n, &mut sink),
                Some(Err(_)) => return,
            }
        };
        if body.is_err() {
            return;
        }
        let body_len = digest.len();
        s.seen.lock().expect("seen lock").push(Seen {
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
            body_len,
            body_digest: digest.finish(),
            peer,
        });

        if let Some(ms) = special(&path, "__sleep") {
            thread::sleep(Duration::from_millis(ms));
        }
        let status = special(&path, "__status").unwrap_or(200);
        let close = version == "HTTP/1.0" || has_token(&headers, "connection", "close");
        let head_only = method == "HEAD";
        let mut head = format!("HTTP/1.1 {status} Test\r\nX-Upstream: {}\r\n", s.name);
        if close {
            head.push_str("Connection: close\r\n");
        } else if path.split('/').any(|seg| seg == "__hop") {
            head.push_str(
                "Connection: keep-alive, X-Secret\r\nX-Secret: hop-only\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\n",
            );
        }

        if let Some(n) = special(&path, "__short") {
            // Promises n bytes, sends half, hangs up: a crashed upstream.
            head.push_str(&format!(
                "Content-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n"
            ));
            let _ = conn.write_all(head.as_bytes()).and_then(|_| {
                for_each_pattern_chunk(n / 2, 64 * 1024, |c| conn.get_mut().write_all(c))
            });
            let _ = conn.get_mut().flush();
            return;
        }
        if let Some(n) = special(&path, "__eof") {
            // No length and no chunking: the body ends where the connection does.
            head.push_str("Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n");
            let _ = conn.write_all(head.as_bytes()).and_then(|_| {
                for_each_pattern_chunk(n, 64 * 1024, |c| conn.get_mut().write_all(c))
            });
            let _ = conn.get_mut().flush();
            return;
        }
        let ok = if let Some(n) = special(&path, "__bytes") {
            head.push_str(&format!(
                "Content-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n"
            ));
            conn.write_all(head.as_bytes()).is_ok()
                && (head_only
                    || for_each_pattern_chunk(n, 256 * 1024, |c| conn.get_mut().write_all(c))
                        .and_then(|_| conn.get_mut().flush())
                        .is_ok())
        } else {
            let body = format!(
                "{{\"upstream\":\"{}\",\"method\":\"{}\",\"target\":\"{}\",\"body_bytes\":{body_len}}}\n",
                json_escape(&s.name),
                json_escape(&method),
                json_escape(&target)
            );
            let no_body = status == 204 || status == 304 || (100..200).contains(&status);
            if no_body {
                head.push_str("\r\n");
            } else {
                head.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                ));
            }
            let mut out = head.into_bytes();
            if !head_only && !no_body {
                out.extend_from_slice(body.as_bytes());
            }
            conn.write_all(&out).is_ok()
        };
        if !ok || close {
            return;
        }
    }
}

fn websocket_echo<S: Read + Write>(mut conn: Conn<S>, headers: &[(String, String)]) {
    let Some(key) = find_header(headers, "sec-websocket-key") else {
        let _ = conn.write_all(b"HTTP/1.1 400 No Key\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if conn.write_all(answer.as_bytes()).is_err() {
        return;
    }
    let (stream, rest) = conn.into_parts();
    let mut ws = tungstenite::WebSocket::from_partially_read(
        stream,
        rest,
        tungstenite::protocol::Role::Server,
        None,
    );
    // Pings and the closing handshake are answered inside read().
    while let Ok(msg) = ws.read() {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).is_err() {
            return;
        }
    }
}

// ----------------------------------------------------------------- test CA

/// A throw-away CA and a leaf for `localhost` / 127.0.0.1 signed by it.
/// A GET on Pylon's admin listener (`/metrics`, `/status`, …).
pub fn admin_get(p: &Pylon, path: &str) -> Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    request(p.admin_addr(), raw.as_bytes())
}

/// The value of one series in a text exposition, labels in any order.
pub fn series_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse().ok()).flatten()
        })
}

/// A TLS client configuration trusting the test CA in `ca_file` and
/// offering `alpn`.
pub fn tls_client_config(ca_file: &Path, alpn: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_file).expect("read CA file");
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.expect("CA certificate")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

/// A TLS client connection to Pylon's HTTPS listener at `addr`, as
/// `localhost`, trusting the test CA in `ca_file` and offering `alpn`;
/// the handshake is done when this returns.
pub fn tls_client(
    addr: SocketAddr,
    ca_file: &Path,
    alpn: &[u8],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = tls_client_config(ca_file, alpn);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let client = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to Pylon's TLS listener {addr}: {e}"));
    sock.set_nodelay(true).expect("nodelay");
    let mut tls = rustls::StreamOwned::new(client, sock);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("TLS handshake with Pylon");
    }
    tls
}

pub struct TestCa {
    pub ca_pem: String,
    /// The CA certificate as a PEM file, for `tls_ca_file`.
    pub ca_file: PathBuf,
    /// The leaf (localhost, 127.0.0.1) certificate and key as PEM files,
    /// for Pylon's own HTTPS listener.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    server_config: Arc<rustls::ServerConfig>,
    _dir: TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Pylon test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("leaf certificate");

        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key_der)
            .expect("server TLS config");

        let dir = TempDir::new("ca");
        let ca_file = dir.join("ca.pem");
        let ca_pem = ca_cert.pem();
        std::fs::write(&ca_file, &ca_pem).expect("write CA file");
        let cert_file = dir.join("leaf.pem");
        let key_file = dir.join("leaf-key.pem");
        std::fs::write(&cert_file, leaf.pem()).expect("write leaf certificate");
        std::fs::write(&key_file, leaf_key.serialize_pem()).expect("write leaf key");
        TestCa {
            ca_pem,
            ca_file,
            cert_file,
            key_file,
            server_config: Arc::new(server_config),
            _dir: dir,
        }
    }
}

// -------------------------------------------------------------------- pylon

pub fn pylon_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pylon")
}

/// The binary with none of the standalone-mode variables inherited.
pub fn pylon_command() -> Command {
    let mut cmd = Command::new(pylon_bin());
    for var in URI_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// A running `pylon` on 127.0.0.1 with its own config, pid file, upgrade
/// socket and log files; killed on drop.
pub struct Pylon {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    dir: TempDir,
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                format!("  {l}\n")
            }
        })
        .collect()
}

impl Pylon {
    /// Starts Pylon with `listen` on a free port plus `pylon_yaml` (the rest
    /// of the `pylon:` section, written unindented) and the given variables.
    pub fn start<V: AsRef<str>>(pylon_yaml: &str, env: &[(&str, V)]) -> Pylon {
        let mut last_err = String::new();
        // A port can be taken between choosing and binding it; try anew.
        for _ in 0..5 {
            match Self::try_start(pylon_yaml, env) {
                Ok(p) => return p,
                Err(e) if e.contains("cannot listen") => last_err = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last_err}");
    }

    pub fn try_start<V: AsRef<str>>(pylon_yaml: &str, env: &[(&str, V)]) -> Result<Pylon, String> {
        let dir = TempDir::new("pylon");
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Every instance gets its own admin port, so tests can run side by side.
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let admin_line = if pylon_yaml.contains("admin_listen") {
            String::new()
        } else {
            format!("  admin_listen: \"{admin}\"\n")
        };
        let config = dir.join("pylon.yaml");
        let text = format!(
            "version: 1\nthreads: 2\npid_file: {pid}\nupgrade_sock: {sock}\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\npylon:\n  listen: [\"{addr}\"]\n{admin_line}{rest}",
            pid = dir.join("pylon.pid").display(),
            sock = dir.join("upgrade.sock").display(),
            rest = indent(pylon_yaml),
        );
        std::fs::write(&config, &text).expect("write config");
        let stdout = File::create(dir.join("stdout.log")).expect("stdout log");
        let stderr = File::create(dir.join("stderr.log")).expect("stderr log");
        let mut cmd = pylon_command();
        cmd.arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v.as_ref());
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", pylon_bin()))?;
        let mut pylon = Pylon {
            child,
            addr,
            admin,
            config,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = pylon.child.try_wait() {
                return Err(format!(
                    "pylon exited before serving ({status}); config:\n{text}\nstderr:\n{}",
                    pylon.stderr_text()
                ));
            }
            if let Ok(r) = try_request_with_timeout(
                addr,
                b"GET /healthz HTTP/1.1\r\nHost: pylon.test\r\nConnection: close\r\n\r\n",
                Duration::from_secs(2),
            ) {
                if r.status == 200 {
                    return Ok(pylon);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pylon did not answer /healthz within {START_TIMEOUT:?}; stderr:\n{}",
                    pylon.stderr_text()
                ));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The admin listener (`/metrics`, `/status`), unless the test's own
    /// configuration set `admin_listen`.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Waits until stdout holds a line satisfying `pred`, and returns it.
    pub fn wait_for_stdout_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_until(what, Duration::from_secs(10), || {
            self.stdout_text()
                .lines()
                .find(|l| pred(l))
                .map(str::to_string)
        })
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status of pylon");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
    }

    /// Peak resident memory of the Pylon process so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM:")
    }

    /// Current resident memory (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS:")
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.addr, path)
    }

    pub fn request(&self, raw: &[u8]) -> Response {
        request(self.addr, raw)
    }
}

impl Drop for Pylon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let tail = |s: String| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            };
            eprintln!(
                "---- pylon stderr (tail) ----\n{}\n---- pylon stdout (tail) ----\n{}",
                tail(self.stderr_text()),
                tail(self.stdout_text())
            );
        }
    }
}

/// Any child process that must not outlive its test.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One upstream per standard service, reached through the eight variables
/// of standalone mode.
pub struct Cluster {
    pub rest: Upstream,
    pub k8s: Upstream,
    pub webhdfs: Upstream,
    pub prometheus: Upstream,
    pub dashboard: Upstream,
    pub yarn: Upstream,
    pub grafana: Upstream,
    pub portal: Upstream,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster {
            rest: Upstream::start("rest-server"),
            k8s: Upstream::start("kubernetes"),
            webhdfs: Upstream::start("webhdfs"),
            prometheus: Upstream::start("prometheus"),
            dashboard: Upstream::start("kubernetes-dashboard"),
            yarn: Upstream::start("yarn"),
            grafana: Upstream::start("grafana"),
            portal: Upstream::start("portal"),
        }
    }

    /// The variables as a deployment sets them; Prometheus runs with its
    /// `/prometheus` route prefix, so its root URL carries that path.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REST_SERVER_URI", self.rest.uri()),
            ("K8S_API_SERVER_URI", self.k8s.uri()),
            ("WEBHDFS_URI", self.webhdfs.uri()),
            (
                "PROMETHEUS_URI",
                format!("{}/prometheus", self.prometheus.uri()),
            ),
            ("K8S_DASHBOARD_URI", self.dashboard.uri()),
            ("YARN_WEB_PORTAL_URI", self.yarn.uri()),
            ("GRAFANA_URI", self.grafana.uri()),
            ("PAI_WEB_PORTAL_URI", self.portal.uri()),
        ]
    }

    pub fn all(&self) -> [&Upstream; 8] {
        [
            &self.rest,
            &self.k8s,
            &self.webhdfs,
            &self.prometheus,
            &self.dashboard,
            &self.yarn,
            &self.grafana,
            &self.portal,
        ]
    }

    pub fn total_requests(&self) -> usize {
        self.all().iter().map(|u| u.count()).sum()
    }

    /// Pylon in standalone mode: the `pylon:` section holds only `listen`.
    pub fn pylon(&self) -> Pylon {
        Pylon::start("", &self.env())
    }
}

// ------------------------------------------------------------------- client

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection that speaks raw bytes and parses what comes back.
pub struct Client {
    conn: Conn<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Self::try_connect(addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            conn: Conn::new(stream),
        })
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.conn.get_mut()
    }

    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        self.conn.write_all(raw)
    }

    pub fn shutdown_write(&mut self) {
        let _ = self.conn.get_mut().shutdown(Shutdown::Write);
    }

    /// The next response head and body, 1xx included; the body goes to
    /// `sink` as it arrives. `head_request` says the request was HEAD.
    pub fn read_response_with(
        &mut self,
        head_request: bool,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Response> {
        let (line, headers) = self
            .conn
            .read_head()?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(bad_data(format!("not an HTTP/1 status line: {line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_data(format!("bad status line {line:?}")))?;
        let no_body =
            head_request || (100..200).contains(&status) || status == 204 || status == 304;
        if !no_body {
            if has_token(&headers, "transfer-encoding", "chunked") {
                self.conn.read_chunked_with(sink)?;
            } else if let Some(len) = find_header(&headers, "content-length") {
                let n = len
                    .parse()
                    .map_err(|_| bad_data(format!("bad Content-Length {len:?}")))?;
                self.conn.read_exact_with(n, sink)?;
            } else {
                self.conn.read_to_end_with(sink)?;
            }
        }
        Ok(Response {
            status,
            headers,
            body: Vec::new(),
        })
    }

    /// The next response, 1xx included, with its body collected.
    pub fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let mut body = Vec::new();
        let mut r = self.read_response_with(head_request, &mut |b| body.extend_from_slice(b))?;
        r.body = body;
        Ok(r)
    }

    /// The final response: interim 1xx responses (but 101) are skipped.
    pub fn read_final_response(&mut self, head_request: bool) -> io::Result<Response> {
        loop {
            let r = self.read_response(head_request)?;
            if r.status == 101 || !(100..200).contains(&r.status) {
                return Ok(r);
            }
        }
    }
}

pub fn try_request_with_timeout(
    addr: SocketAddr,
    raw: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let mut c = Client::try_connect(addr, timeout)?;
    c.send(raw)?;
    c.read_final_response(raw.starts_with(b"HEAD "))
}

pub fn try_request(addr: SocketAddr, raw: &[u8]) -> io::Result<Response> {
    try_request_with_timeout(addr, raw, IO_TIMEOUT)
}

/// Sends `raw` on a new connection and returns the final response.
pub fn request(addr: SocketAddr, raw: &[u8]) -> Response {
    try_request(addr, raw).unwrap_or_else(|e| {
        panic!(
            "request {:?} to {addr} failed: {e}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )
    })
}

/// `GET path` with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: pylon.test\r\nConnection: close\r\n\r\n");
    request(addr, raw.as_bytes())
}

// ---------------------------------------------------------------- stand-ins

/// `cargo test` builds the examples next to the test binaries' directory.
pub fn stand_in_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir.join("examples").join("stand-in");
    assert!(
        path.exists(),
        "{} is missing: run the whole suite with `cargo test --release` (it builds the examples) or `cargo build --release --example stand-in` first",
        path.display()
    );
    path
}

/// Runs the `stand-in` example as its own process serving `names` on free
/// ports; returns it (killed on drop: a real upstream crash) and each
/// service's base URL.
pub fn start_stand_ins(names: &[&str]) -> (KillOnDrop, Vec<(String, String)>) {
    let mut cmd = Command::new(stand_in_exe());
    for name in names {
        cmd.arg(format!("{name}=0"));
    }
    let mut child = KillOnDrop(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run stand-in"),
    );
    let stdout = child.0.stdout.take().expect("stand-in stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        use std::io::BufRead;
        for line in io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // "stand-in: NAME on http://127.0.0.1:PORT", one line per service.
    let mut urls = Vec::new();
    for _ in names {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("stand-in did not report its services within 20 s");
        let (name, url) = line
            .strip_prefix("stand-in: ")
            .and_then(|l| l.split_once(" on "))
            .unwrap_or_else(|| panic!("unexpected stand-in line {line:?}"));
        urls.push((name.to_string(), url.to_string()));
    }
    (child, urls)
}

// ------------------------------------------------------- protocol matrix

/// The ways a client reaches Pylon: the request-dependent behaviour must be
/// the same over each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 on the plain listener.
    Http1,
    /// HTTP/1.1 over TLS (ALPN `http/1.1`).
    Https1,
    /// HTTP/2 over TLS (ALPN `h2`), as every browser speaks on HTTPS.
    Https2,
}

impl Proto {
    pub const ALL: [Proto; 3] = [Proto::Http1, Proto::Https1, Proto::Https2];

    pub fn scheme(self) -> &'static str {
        match self {
            Proto::Http1 => "http",
            Proto::Https1 | Proto::Https2 => "https",
        }
    }

    /// The protocol as the access log writes it.
    pub fn log_version(self) -> &'static str {
        match self {
            Proto::Https2 => "HTTP/2.0",
            _ => "HTTP/1.1",
        }
    }
}

/// One request made by curl over `proto` to `addr` (the plain listener for
/// [`Proto::Http1`], a TLS listener otherwise; any certificate accepted)
/// under the host name `name`, which curl resolves to `addr`: the request
/// carries `Host: name:port` over HTTP/1.1 and `:authority: name:port` (no
/// `Host`) over HTTP/2. `headers` are extra `Name: value` lines; `body`,
/// when given, is sent with its `Content-Length`. Fails the test when curl
/// cannot complete the exchange or speaks another protocol than `proto`.
pub fn curl_via(
    proto: Proto,
    addr: SocketAddr,
    name: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&[u8]>,
) -> Response {
    let port = addr.port();
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "20",
        "--path-as-is",
        "-D",
        "-",
        "-o",
        "-",
    ])
    .arg("--resolve")
    .arg(format!("{name}:{port}:{}", addr.ip()))
    .args(["-X", method, "-H", "Expect:"]);
    match proto {
        Proto::Http1 => cmd.arg("--http1.1"),
        Proto::Https1 => cmd.args(["-k", "--http1.1"]),
        Proto::Https2 => cmd.args(["-k", "--http2"]),
    };
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        cmd.arg("--data-binary")
            .arg(String::from_utf8_lossy(b).as_ref());
    }
    cmd.arg(format!("{}://{name}:{port}{path}", proto.scheme()));
    let out = cmd
        .output()
        .expect("curl not found: install the Debian package curl (tests/install-deps.sh does)");
    assert!(
        out.status.success(),
        "curl {proto:?} {method} {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    let mut pos = 0;
    loop {
        let end = raw[pos..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| pos + i)
            .unwrap_or_else(|| panic!("{proto:?} {path}: no response head in {raw:?}"));
        let head = String::from_utf8_lossy(&raw[pos..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let want = match proto {
            Proto::Https2 => "HTTP/2 ",
            _ => "HTTP/1.1 ",
        };
        assert!(
            status_line.starts_with(want),
            "{proto:?} {path}: curl spoke {status_line:?}"
        );
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{proto:?} {path}: status line {status_line:?}"));
        pos = end + 4;
        if (100..200).contains(&status) {
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        return Response {
            status,
            headers,
            body: raw[pos..].to_vec(),
        };
    }
}

/// Reads a request head from a test upstream's socket one byte at a time (so
/// nothing after it is consumed), with a 20 s limit; `None` when the peer
/// closes or stalls first.
pub fn read_request_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// Headless Chromium with a fresh profile in `profile`, set to print the
/// DOM of the page named by the next argument once it has loaded.
#[allow(dead_code)]
pub fn headless_chromium(profile: &Path) -> Command {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect(
            "chromium not found: install the Debian package chromium (tests/install-deps.sh does)",
        );
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--timeout=15000",
        "--dump-dom",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}
