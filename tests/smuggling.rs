//! Request smuggling, desync, open-proxy and path-confusion regressions,
//! through the real binary over raw TCP.
//!
//! Every case checks what the upstreams actually received (nothing, or
//! exactly one well-formed request with the expected target, headers and
//! body), not only what the client saw. The upstreams here are stricter
//! than any real server: a byte that a lenient server might read
//! differently (a bare LF, a second length, a folded line, a control byte)
//! is recorded as malformed instead of being guessed at, so a test sees
//! what Pylon put on the wire, not one server's reading of it. The harness'
//! shared `Upstream` is not used for that reason: it tolerates bare LF and
//! silently drops what it cannot parse, which cannot tell "nothing arrived"
//! from "garbage arrived".
//!
//! The same checks cover HTTP/2 on the HTTPS listener, where a request
//! is turned into HTTP/1.1 for the upstream.
//!
//! Run with `--nocapture` to see one line per case with what happened.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::Pylon;

/// Longest wait for Pylon's first answer to a case; a case that hangs this
/// long is reported as hung, which no case accepts.
const HANG: Duration = Duration::from_secs(5);
/// Quiet time after an answer before the sentinel request goes out.
const SETTLE: Duration = Duration::from_millis(150);
/// The host every case sends, and X-Forwarded-Host must repeat.
const HOST: &str = "pylon.test";
/// The request hidden inside bodies; its target names no real resource, so
/// any request line containing it at an origin is a smuggled request.
const HIDDEN: &str = "GET /kubernetes/smuggled HTTP/1.1\r\nHost: pylon.test\r\n\r\n";

// ------------------------------------------------------------ byte helpers

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn shown(bytes: &[u8]) -> String {
    const MAX: usize = 240;
    let cut = &bytes[..bytes.len().min(MAX)];
    let more = if bytes.len() > MAX {
        format!("…(+{} bytes)", bytes.len() - MAX)
    } else {
        String::new()
    };
    format!("\"{}\"{more}", cut.escape_ascii())
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Every LF is preceded by CR and every CR followed by LF. A CR as the very
/// last byte may still be waiting for its LF.
fn check_line_endings(bytes: &[u8]) -> Result<(), String> {
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            return Err(format!("bare LF at byte {i}"));
        }
        if b == b'\r' && i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
            return Err(format!("bare CR at byte {i}"));
        }
    }
    Ok(())
}

/// One `name: value` line (RFC 9112 §5): a token, a colon with no space
/// before it, and a value of visible characters, spaces, tabs and obs-text.
fn parse_field(line: &[u8]) -> Result<(String, Vec<u8>), String> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| format!("field line without colon: {}", shown(line)))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(format!("bad field name: {}", shown(line)));
    }
    let value = trim_ows(&line[colon + 1..]);
    if let Some(b) = value
        .iter()
        .find(|&&b| b != b'\t' && (b < 0x20 || b == 0x7f))
    {
        return Err(format!(
            "control byte {b:#04x} in field value: {}",
            shown(line)
        ));
    }
    Ok((String::from_utf8_lossy(name).into_owned(), value.to_vec()))
}

/// Strips optional whitespace, which is SP and HTAB only (RFC 9110 §5.6.3).
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

type Fields = Vec<(String, Vec<u8>)>;

fn field<'a>(fields: &'a Fields, name: &str) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// A start line and fields from a complete head (without the blank line).
fn parse_head(head: &[u8]) -> Result<(Vec<u8>, Fields), String> {
    check_line_endings(head)?;
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = lines.next().unwrap_or_default().to_vec();
    let fields = lines.map(parse_field).collect::<Result<Fields, String>>()?;
    Ok((start, fields))
}

/// The body framing a message declares, refusing everything RFC 9112 §6
/// calls ambiguous: both framings, several lengths, a length that is not
/// plain digits, a transfer coding other than exactly `chunked`.
fn framing(fields: &Fields) -> Result<Option<Framing>, String> {
    let te = field(fields, "transfer-encoding");
    let cl = field(fields, "content-length");
    match (te.as_slice(), cl.as_slice()) {
        ([], []) => Ok(None),
        ([te], []) if te.eq_ignore_ascii_case(b"chunked") => Ok(Some(Framing::Chunked)),
        ([], [cl]) if !cl.is_empty() && cl.len() < 19 && cl.iter().all(u8::is_ascii_digit) => {
            Ok(Some(Framing::Length(
                std::str::from_utf8(cl).unwrap().parse().unwrap(),
            )))
        }
        _ => Err(format!(
            "ambiguous framing: Transfer-Encoding {:?}, Content-Length {:?}",
            te.iter()
                .map(|v| v.escape_ascii().to_string())
                .collect::<Vec<_>>(),
            cl.iter()
                .map(|v| v.escape_ascii().to_string())
                .collect::<Vec<_>>()
        )),
    }
}

enum Framing {
    Length(u64),
    Chunked,
}

/// A chunked body starting at `at` (RFC 9112 §7.1), strictly: hex sizes of
/// at most 16 digits, extensions of visible characters only, CRLF after
/// every line and every chunk, trailer fields well formed. The decoded body
/// and the offset after it, or `None` if more bytes are needed.
fn parse_chunked(buf: &[u8], mut at: usize) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            check_line_endings(&buf[at..])?;
            return Ok(None);
        };
        let line = &buf[at..at + eol];
        check_line_endings(line)?;
        let (size, ext) = match line.iter().position(|&b| b == b';') {
            Some(i) => (&line[..i], &line[i..]),
            None => (line, &b""[..]),
        };
        if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!("bad chunk size line {}", shown(line)));
        }
        if ext.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
            return Err(format!("control byte in chunk extension {}", shown(line)));
        }
        let size = u64::from_str_radix(std::str::from_utf8(size).unwrap(), 16).unwrap() as usize;
        at += eol + 2;
        if size == 0 {
            loop {
                let Some(eol) = find(&buf[at..], b"\r\n") else {
                    check_line_endings(&buf[at..])?;
                    return Ok(None);
                };
                let line = &buf[at..at + eol];
                at += eol + 2;
                if line.is_empty() {
                    return Ok(Some((body, at)));
                }
                check_line_endings(line)?;
                parse_field(line)?;
            }
        }
        if buf.len() < at.saturating_add(size).saturating_add(2) {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size;
        if &buf[at..at + 2] != b"\r\n" {
            return Err(format!(
                "chunk data not followed by CRLF: {}",
                shown(&buf[at..])
            ));
        }
        at += 2;
    }
}

// ------------------------------------------------------------------ origin

/// One request as an origin received it.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    target: String,
    fields: Fields,
    body: Vec<u8>,
}

impl Got {
    fn all(&self, name: &str) -> Vec<String> {
        field(&self.fields, name)
            .into_iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    fn one(&self, name: &str) -> Option<String> {
        match self.all(name).as_slice() {
            [v] => Some(v.clone()),
            _ => None,
        }
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    fn brief(&self) -> String {
        let cut = |t: &str| {
            if t.len() > 120 {
                let head: String = t.chars().take(120).collect();
                format!("{head}…({} bytes)", t.len())
            } else {
                t.to_string()
            }
        };
        format!(
            "{} {} ({} body bytes)",
            cut(&self.method),
            cut(&self.target),
            self.body.len()
        )
    }
}

/// The start of a request that never completed.
#[derive(Debug, Clone)]
struct Partial {
    /// The X-Request-Id Pylon gave it, if the head got that far.
    id: Option<String>,
    text: String,
}

impl Partial {
    fn new(bytes: &[u8], still_open: bool) -> Partial {
        let head = &bytes[..find(bytes, b"\r\n\r\n").unwrap_or(bytes.len())];
        let id = head
            .split(|&b| b == b'\n')
            .filter_map(|l| parse_field(l.strip_suffix(b"\r").unwrap_or(l)).ok())
            .find(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned());
        let open = if still_open { "(still open) " } else { "" };
        Partial {
            id,
            text: format!("{open}{}", shown(bytes)),
        }
    }
}

/// What an origin was sent during one case.
#[derive(Debug, Clone, Default)]
struct Seen {
    requests: Vec<Got>,
    /// Requests whose connection ended (or was still open at the end of the
    /// case) before they were complete.
    partial: Vec<Partial>,
    malformed: Vec<String>,
}

impl Seen {
    fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.partial.is_empty() && self.malformed.is_empty()
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self.requests.iter().map(Got::brief).collect();
        parts.extend(self.partial.iter().map(|p| format!("partial {}", p.text)));
        parts.extend(self.malformed.iter().map(|m| format!("MALFORMED {m}")));
        parts.join("; ")
    }
}

#[derive(Default)]
struct OriginState {
    seen: Mutex<Seen>,
    /// Bytes of a request still being received, per connection, with the
    /// generation in which its first byte arrived.
    in_flight: Mutex<BTreeMap<u64, (u64, Vec<u8>)>>,
    /// Bumped by `clear`: what began before belongs to an earlier case.
    generation: AtomicU64,
    last_activity: Mutex<Option<Instant>>,
    stop: AtomicBool,
}

impl OriginState {
    fn touch(&self) {
        *self.last_activity.lock().unwrap() = Some(Instant::now());
    }

    fn record(&self, started: u64, f: impl FnOnce(&mut Seen)) {
        if started == self.generation.load(Ordering::SeqCst) {
            f(&mut self.seen.lock().unwrap());
        }
    }
}

/// An HTTP/1.1 server on 127.0.0.1 that parses strictly, records every
/// request and answers `200` naming itself and what it received.
struct Origin {
    name: &'static str,
    addr: SocketAddr,
    state: Arc<OriginState>,
}

impl Origin {
    fn start(name: &'static str) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().expect("origin address");
        let state = Arc::new(OriginState::default());
        let s = state.clone();
        thread::Builder::new()
            .name(format!("origin-{name}"))
            .spawn(move || {
                let ids = AtomicU64::new(0);
                for stream in listener.incoming() {
                    if s.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let s = s.clone();
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    let _ = thread::Builder::new()
                        .name(format!("origin-{name}-{id}"))
                        .spawn(move || serve(stream, id, name, &s));
                }
            })
            .expect("spawn origin");
        Origin { name, addr, state }
    }

    fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn clear(&self) {
        let mut seen = self.state.seen.lock().unwrap();
        self.state.generation.fetch_add(1, Ordering::SeqCst);
        *seen = Seen::default();
    }

    /// A request is being received, or bytes arrived within the last 100 ms.
    fn busy(&self) -> bool {
        !self.state.in_flight.lock().unwrap().is_empty()
            || self
                .state
                .last_activity
                .lock()
                .unwrap()
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
    }

    /// Everything since the last `clear`, unfinished requests included.
    fn seen(&self) -> Seen {
        let mut seen = self.state.seen.lock().unwrap().clone();
        let now = self.state.generation.load(Ordering::SeqCst);
        for (started, bytes) in self.state.in_flight.lock().unwrap().values() {
            if *started == now {
                seen.partial.push(Partial::new(bytes, true));
            }
        }
        seen
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn parse_request(buf: &[u8]) -> Result<Option<(Got, usize)>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        check_line_endings(buf)?;
        return Ok(None);
    };
    let (start, fields) = parse_head(&buf[..head_end])?;
    let parts: Vec<&[u8]> = start.split(|&b| b == b' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return Err(format!("bad request line {}", shown(&start)));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(format!("bad method in {}", shown(&start)));
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(format!("bad request target in {}", shown(&start)));
    }
    if *version != b"HTTP/1.1" {
        return Err(format!("not HTTP/1.1: {}", shown(&start)));
    }
    if field(&fields, "host").len() != 1 {
        return Err("not exactly one Host".to_string());
    }
    let at = head_end + 4;
    let (body, end) = match framing(&fields)? {
        None => (Vec::new(), at),
        Some(Framing::Length(n)) => {
            let end = at + n as usize;
            if buf.len() < end {
                return Ok(None);
            }
            (buf[at..end].to_vec(), end)
        }
        Some(Framing::Chunked) => match parse_chunked(buf, at)? {
            Some(done) => done,
            None => return Ok(None),
        },
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(Some((
        Got {
            method: text(method),
            target: text(target),
            fields,
            body,
        },
        end,
    )))
}

fn serve(mut stream: TcpStream, id: u64, name: &str, s: &OriginState) {
    let _ = stream.set_read_timeout(Some(common::IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(common::IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    s.touch();
    let mut buf = Vec::new();
    // The generation in which the request now in `buf` began.
    let mut started = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    let in_flight = |buf: &Vec<u8>, started: u64| {
        let mut map = s.in_flight.lock().unwrap();
        if buf.is_empty() {
            map.remove(&id);
        } else {
            map.insert(id, (started, buf[..buf.len().min(4096)].to_vec()));
        }
    };
    loop {
        let n = stream.read(&mut chunk).unwrap_or(0);
        s.touch();
        if n == 0 {
            if !buf.is_empty() {
                s.record(started, |seen| seen.partial.push(Partial::new(&buf, false)));
            }
            in_flight(&Vec::new(), started);
            return;
        }
        if buf.is_empty() {
            started = s.generation.load(Ordering::SeqCst);
        }
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match parse_request(&buf) {
                Ok(None) => {
                    in_flight(&buf, started);
                    break;
                }
                Err(e) => {
                    s.record(started, |seen| {
                        seen.malformed.push(format!("{e}; bytes {}", shown(&buf)))
                    });
                    in_flight(&Vec::new(), started);
                    return;
                }
                Ok(Some((got, used))) => {
                    buf.drain(..used);
                    let close = got
                        .all("connection")
                        .iter()
                        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
                    let body = format!("{name} {} {} {}\n", got.method, got.target, got.body.len());
                    // Recorded before answering: once the client has the
                    // answer, the record is there to check.
                    s.record(started, |seen| seen.requests.push(got));
                    if !buf.is_empty() {
                        started = s.generation.load(Ordering::SeqCst);
                    }
                    in_flight(&buf, started);
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nX-Origin: {name}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
                        body.len(),
                        if close { "Connection: close\r\n" } else { "" }
                    );
                    if stream.write_all(answer.as_bytes()).is_err() || close {
                        in_flight(&Vec::new(), started);
                        return;
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------ client

/// One response as the client received it.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    fields: Fields,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        field(&self.fields, name)
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn brief(&self) -> String {
        let from = self
            .header("x-origin")
            .unwrap_or_else(|| "pylon".to_string());
        format!("{} from {from}", self.status)
    }
}

/// A response head Pylon sent, checked as strictly as requests: a bare CR
/// or LF in it, or a field line that is not `token: value`, is exactly
/// what a header injection looks like, so it fails the test.
fn parse_reply(buf: &[u8], closed: bool) -> Result<Option<(Reply, usize)>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        check_line_endings(buf).map_err(|e| format!("response head: {e}: {}", shown(buf)))?;
        return Ok(None);
    };
    let (start, fields) = parse_head(&buf[..head_end])
        .map_err(|e| format!("response head: {e}: {}", shown(&buf[..head_end])))?;
    let start = String::from_utf8_lossy(&start).into_owned();
    let status: u16 = start
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| start.strip_prefix("HTTP/1.0 "))
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {start:?}"))?;
    let at = head_end + 4;
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    let (body, end) = match framing(&fields)? {
        _ if no_body => (Vec::new(), at),
        Some(Framing::Length(n)) => {
            let end = at + n as usize;
            if buf.len() < end {
                return Ok(None);
            }
            (buf[at..end].to_vec(), end)
        }
        Some(Framing::Chunked) => match parse_chunked(buf, at)? {
            Some(done) => done,
            None => return Ok(None),
        },
        None if closed => (buf[at..].to_vec(), buf.len()),
        None => return Ok(None),
    };
    Ok(Some((
        Reply {
            status,
            fields,
            body,
        },
        end,
    )))
}

/// What happened on one client connection.
#[derive(Debug, Default)]
struct Talk {
    /// Final responses (and 101), in order; interim 1xx are dropped.
    replies: Vec<Reply>,
    closed: bool,
    /// No answer and no close within [`HANG`].
    hung: bool,
    /// Pylon stopped reading before the whole request was sent.
    write_failed: bool,
    /// The connection was still usable afterwards: the sentinel was answered.
    kept_open: bool,
}

impl Talk {
    fn describe(&self) -> String {
        let mut s: Vec<String> = self.replies.iter().map(Reply::brief).collect();
        if self.write_failed {
            s.push("write refused".to_string());
        }
        if self.hung {
            s.push(format!("HUNG (nothing within {HANG:?})"));
        } else if self.kept_open {
            s.push("kept open".to_string());
        } else if self.closed {
            s.push("closed".to_string());
        }
        s.join(", ")
    }
}

/// A raw client connection to Pylon.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    talk: Talk,
}

impl Wire {
    fn open(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to Pylon at {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_write_timeout(Some(HANG)).unwrap();
        Wire {
            stream,
            buf: Vec::new(),
            talk: Talk::default(),
        }
    }

    /// Sends what it can; Pylon closing mid-way is an outcome, not an error.
    fn send(&mut self, bytes: &[u8]) {
        if self.talk.closed || self.talk.write_failed {
            return;
        }
        if self.stream.write_all(bytes).is_err() {
            self.talk.write_failed = true;
        }
    }

    /// Reads once, waiting at most `wait`; false if nothing arrived.
    fn read_some(&mut self, wait: Duration) -> bool {
        if self.talk.closed {
            return false;
        }
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.talk.closed = true,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.parse();
                return true;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.talk.closed = true,
        }
        self.parse();
        false
    }

    fn parse(&mut self) {
        loop {
            match parse_reply(&self.buf, self.talk.closed) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    if reply.status == 101 || reply.status >= 200 {
                        self.talk.replies.push(reply);
                    }
                }
                Ok(None) => return,
                Err(e) => panic!("Pylon sent a malformed response: {e}"),
            }
        }
    }

    /// Reads until `n` replies are in, the connection closes, or `limit`.
    fn wait_replies(&mut self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.talk.replies.len() < n && !self.talk.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.read_some(left.min(Duration::from_millis(200)));
        }
        self.talk.replies.len() >= n
    }

    /// Collects everything the case produces. Once Pylon has answered and
    /// gone quiet, a `GET /healthz` goes out on the same connection: Pylon
    /// handles one connection's requests in order, so by the time that is
    /// answered, whatever it made of the earlier bytes has happened.
    fn finish(mut self) -> Talk {
        if !self.wait_replies(1, HANG) && !self.talk.closed {
            self.talk.hung = true;
            return self.talk;
        }
        while !self.talk.closed && self.read_some(SETTLE) {}
        if self.talk.closed {
            return self.talk;
        }
        let before = self.talk.replies.len();
        self.send(b"GET /healthz HTTP/1.1\r\nHost: sentinel\r\nConnection: close\r\n\r\n");
        let deadline = Instant::now() + HANG;
        while !self.talk.closed && Instant::now() < deadline {
            self.read_some(Duration::from_millis(200));
        }
        if !self.talk.closed {
            self.talk.hung = true;
        }
        if self.talk.replies.len() > before
            && self
                .talk
                .replies
                .last()
                .is_some_and(|r| r.status == 200 && r.body == b"Pylon ready.")
        {
            self.talk.replies.pop();
            self.talk.kept_open = true;
        }
        self.talk
    }
}

fn talk(addr: SocketAddr, raw: &[u8]) -> Talk {
    let mut w = Wire::open(addr);
    w.send(raw);
    w.finish()
}

// --------------------------------------------------------------------- rig

/// Pylon with three routes on strict origins and an `evil` origin that no
/// route points to. No portal, so unknown paths get 404.
struct Rig {
    pylon: Pylon,
    origins: Vec<(Origin, &'static str)>,
}

impl Rig {
    fn start() -> Rig {
        Rig::with("")
    }

    /// `extra` goes into the `pylon:` section before `routes:`.
    fn with(extra: &str) -> Rig {
        let origins = vec![
            (Origin::start("rest-server"), "/rest-server"),
            (Origin::start("kubernetes"), "/kubernetes"),
            (Origin::start("grafana"), "/grafana"),
            (Origin::start("evil"), ""),
        ];
        let mut yaml = format!("{extra}routes:\n");
        for (o, prefix) in &origins {
            if prefix.is_empty() {
                continue;
            }
            // Probes would only add empty connections; off keeps the logs
            // to what clients caused.
            write!(
                yaml,
                "  {}:\n    upstream: {}\n    health_check:\n      enabled: false\n",
                o.name,
                o.uri()
            )
            .unwrap();
            if o.name == "kubernetes" {
                yaml.push_str("    max_body_size: 1k\n");
            }
        }
        let pylon = Pylon::start(&yaml, &[] as &[(&str, &str)]);
        Rig { pylon, origins }
    }

    fn addr(&self) -> SocketAddr {
        self.pylon.addr()
    }

    fn origin(&self, name: &str) -> &Origin {
        &self
            .origins
            .iter()
            .find(|(o, _)| o.name == name)
            .unwrap_or_else(|| panic!("no origin {name}"))
            .0
    }

    fn prefix(&self, name: &str) -> &'static str {
        self.origins.iter().find(|(o, _)| o.name == name).unwrap().1
    }

    /// Starts a case: once the last one's traffic has died down, forget it.
    fn clear(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.origins.iter().any(|(o, _)| o.busy()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        for (o, _) in &self.origins {
            o.clear();
        }
    }

    /// What each origin received during the case `t` reports on.
    fn seen(&self, t: &Talk) -> Vec<(&'static str, Seen)> {
        let origins: Vec<&Origin> = self.origins.iter().map(|(o, _)| o).collect();
        settled(&origins, t)
    }

    /// Pylon is still there and still answering.
    fn assert_alive(&self) {
        let t = talk(
            self.addr(),
            b"GET /healthz HTTP/1.1\r\nHost: pylon.test\r\nConnection: close\r\n\r\n",
        );
        assert!(
            t.replies.first().is_some_and(|r| r.status == 200),
            "Pylon no longer answers /healthz: {}\nstderr:\n{}",
            t.describe(),
            self.pylon.stderr_text()
        );
    }
}

/// What `origins` received during the case `t` reports on, once nothing is
/// arriving any more. Pylon may write a request head upstream just after it
/// has refused the body to the client, on a connection of its own, so an
/// unfinished request counts for this case only if it carries a request id
/// the client saw in this case (Pylon puts the id in its error answers too),
/// or if the client got no answer at all, when nothing else can tie it to
/// the case.
fn settled(origins: &[&Origin], t: &Talk) -> Vec<(&'static str, Seen)> {
    thread::sleep(Duration::from_millis(50));
    let deadline = Instant::now() + Duration::from_secs(2);
    while origins.iter().any(|o| o.busy()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let ids: Vec<String> = t
        .replies
        .iter()
        .filter_map(|r| r.header("x-request-id"))
        .collect();
    origins
        .iter()
        .map(|o| {
            let mut seen = o.seen();
            seen.partial
                .retain(|p| ids.is_empty() || p.id.as_ref().is_none_or(|id| ids.contains(id)));
            (o.name, seen)
        })
        .collect()
}

fn describe_seen(seen: &[(&'static str, Seen)]) -> String {
    let s: Vec<String> = seen
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(n, s)| format!("{n} got [{}]", s.describe()))
        .collect();
    if s.is_empty() {
        "no origin got anything".to_string()
    } else {
        s.join("; ")
    }
}

/// Checks that hold whatever the case: nothing at `evil`, nothing malformed
/// anywhere, the hidden request nowhere, no injected response header.
fn universal(seen: &[(&'static str, Seen)], t: &Talk) -> Result<(), String> {
    for (name, s) in seen {
        if *name == "evil" && !s.is_empty() {
            return Err(format!(
                "the unconfigured host got traffic: {}",
                s.describe()
            ));
        }
        if !s.malformed.is_empty() {
            return Err(format!(
                "{name} was sent a malformed request: {:?}",
                s.malformed
            ));
        }
        if let Some(g) = s.requests.iter().find(|g| g.target.contains("smuggled")) {
            return Err(format!("smuggled request reached {name}: {}", g.brief()));
        }
    }
    if t.hung {
        return Err("Pylon neither answered nor closed".to_string());
    }
    for r in &t.replies {
        if r.header("set-cookie").is_some() {
            return Err(format!("injected Set-Cookie in a response: {:?}", r.fields));
        }
    }
    Ok(())
}

/// The headers Pylon must set on every request it forwards: its own view
/// of the client, never the client's claims, and no hop-by-hop fields.
fn check_forwarded(
    g: &Got,
    origin: &Origin,
    prefix: &str,
    client_host: Option<&str>,
    upgrade: bool,
) -> Result<(), String> {
    let expect = |name: &str, want: Option<&str>| -> Result<(), String> {
        let got = g.all(name);
        let ok = match want {
            Some(w) => got.len() == 1 && got[0] == w,
            None => got.is_empty(),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{name}: upstream got {got:?}, expected {want:?}"))
        }
    };
    expect("host", Some(&origin.addr.to_string()))?;
    expect("x-forwarded-for", Some("127.0.0.1"))?;
    expect("x-real-ip", Some("127.0.0.1"))?;
    expect("x-forwarded-proto", Some("http"))?;
    expect("x-forwarded-host", client_host)?;
    expect("x-forwarded-prefix", (!prefix.is_empty()).then_some(prefix))?;
    if g.one("x-request-id").is_none_or(|id| id.is_empty()) {
        return Err(format!("x-request-id: {:?}", g.all("x-request-id")));
    }
    for hop in [
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "http2-settings",
    ] {
        expect(hop, None)?;
    }
    expect("connection", upgrade.then_some("Upgrade"))?;
    expect("upgrade", upgrade.then_some("websocket"))?;
    Ok(())
}

// ------------------------------------------------------------------- cases

/// An acceptable result of a case.
#[derive(Clone)]
enum Want {
    /// A 4xx from Pylon, or a closed connection; not one byte upstream.
    Refused,
    /// As `Refused`, except that the head (and some body) may already be
    /// upstream when Pylon finds the body malformed: Pylon streams bodies,
    /// so it can only abort that request, never complete it.
    Aborted,
    /// This status from Pylon, and not one byte upstream.
    Status(u16),
    /// As `Aborted`, with exactly this answer from Pylon: the body was
    /// found bad as soon as it was read, not after a timeout.
    AbortedWith(u16),
    /// Exactly one request, at this origin, with this method, target and
    /// body, carrying Pylon's forwarded headers; the client gets its answer.
    Forwarded {
        to: &'static str,
        method: &'static str,
        target: &'static str,
        body: Vec<u8>,
    },
}

struct Case {
    name: String,
    raw: Vec<u8>,
    wants: Vec<Want>,
    client_host: Option<String>,
}

fn case(name: impl Into<String>, raw: impl AsRef<[u8]>) -> Case {
    Case {
        name: name.into(),
        raw: raw.as_ref().to_vec(),
        wants: Vec::new(),
        client_host: Some(HOST.to_string()),
    }
}

impl Case {
    fn refused(mut self) -> Case {
        self.wants.push(Want::Refused);
        self
    }

    fn status(mut self, code: u16) -> Case {
        self.wants.push(Want::Status(code));
        self
    }

    fn aborted_with(mut self, code: u16) -> Case {
        self.wants.push(Want::AbortedWith(code));
        self
    }

    fn aborted(mut self) -> Case {
        self.wants.push(Want::Aborted);
        self
    }

    fn forwarded(
        mut self,
        to: &'static str,
        method: &'static str,
        target: &'static str,
        body: impl AsRef<[u8]>,
    ) -> Case {
        self.wants.push(Want::Forwarded {
            to,
            method,
            target,
            body: body.as_ref().to_vec(),
        });
        self
    }

    fn host(mut self, host: Option<&str>) -> Case {
        self.client_host = host.map(str::to_string);
        self
    }
}

fn outcome_fits(
    rig: &Rig,
    c: &Case,
    want: &Want,
    seen: &[(&str, Seen)],
    t: &Talk,
) -> Result<(), String> {
    let requests: Vec<(&str, &Got)> = seen
        .iter()
        .flat_map(|(n, s)| s.requests.iter().map(move |g| (*n, g)))
        .collect();
    let partial = seen.iter().any(|(_, s)| !s.partial.is_empty());
    let all_4xx = t.replies.iter().all(|r| (400..500).contains(&r.status));
    match want {
        Want::Refused | Want::Aborted => {
            if !requests.is_empty() {
                return Err("a request reached an origin".to_string());
            }
            if partial && matches!(want, Want::Refused) {
                return Err("part of the request reached an origin".to_string());
            }
            if t.replies.is_empty() && !t.closed {
                return Err("no answer and the connection stayed open".to_string());
            }
            if !all_4xx {
                return Err("answered with a non-4xx status".to_string());
            }
            Ok(())
        }
        Want::AbortedWith(code) => {
            outcome_fits(rig, c, &Want::Aborted, seen, t)?;
            match t.replies.as_slice() {
                [r] if r.status == *code => Ok(()),
                _ => Err(format!("expected exactly one {code}")),
            }
        }
        Want::Status(code) => {
            if !requests.is_empty() || partial {
                return Err("a request reached an origin".to_string());
            }
            match t.replies.as_slice() {
                [r] if r.status == *code => Ok(()),
                _ => Err(format!("expected exactly one {code}")),
            }
        }
        Want::Forwarded {
            to,
            method,
            target,
            body,
        } => {
            let [(name, g)] = requests.as_slice() else {
                return Err(format!("{} requests reached origins", requests.len()));
            };
            if name != to || g.method != *method || g.target != *target || g.body != *body {
                return Err(format!(
                    "expected {to} to get {method} {target} with body {}",
                    shown(body)
                ));
            }
            if partial {
                return Err("a partial request reached an origin as well".to_string());
            }
            check_forwarded(
                g,
                rig.origin(to),
                rig.prefix(to),
                c.client_host.as_deref(),
                false,
            )?;
            let Some(first) = t.replies.first() else {
                return Err("the client got no answer".to_string());
            };
            if first.status != 200 || first.header("x-origin").as_deref() != Some(*to) {
                return Err(format!("the client got {}", first.brief()));
            }
            if !t.replies[1..]
                .iter()
                .all(|r| (400..500).contains(&r.status))
            {
                return Err("more answers than requests".to_string());
            }
            Ok(())
        }
    }
}

/// Runs each case on a fresh connection and fails with every case that
/// matched none of its acceptable outcomes.
fn run_cases(rig: &Rig, group: &str, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in &cases {
        assert!(!c.wants.is_empty(), "case {} accepts nothing", c.name);
        rig.clear();
        let t = talk(rig.addr(), &c.raw);
        let seen = rig.seen(&t);
        let observed = format!("client: {}; {}", t.describe(), describe_seen(&seen));
        eprintln!("{group} | {:<44} | {observed}", c.name);
        let verdict = universal(&seen, &t).and_then(|()| {
            let mut why = Vec::new();
            for w in &c.wants {
                match outcome_fits(rig, c, w, &seen, &t) {
                    Ok(()) => return Ok(()),
                    Err(e) => why.push(e),
                }
            }
            Err(why.join(" / "))
        });
        if let Err(e) = verdict {
            failures.push(format!(
                "{}: {e}\n    sent {}\n    {observed}",
                c.name,
                shown(&c.raw)
            ));
        }
    }
    rig.assert_alive();
    assert!(
        failures.is_empty(),
        "{} of {} {group} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn post(headers: &str, body: &str) -> String {
    format!("POST /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\n{headers}\r\n{body}")
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

// ---------------------------------------------------------- body framing

#[test]
fn content_length_with_transfer_encoding_never_desyncs() {
    let rig = Rig::start();
    // The hidden request follows a terminating chunk: read by length it is
    // body, read as chunked it is the next request on the connection.
    let cl_te_body = format!("0\r\n\r\n{HIDDEN}");
    let te_cl_body = format!("{}0\r\n\r\n", chunk(HIDDEN));
    let cases = vec![
        // RFC 9112 §6.3: chunked wins, and the connection must close after.
        case(
            "CL.TE: Content-Length covers the hidden request",
            post(
                &format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    cl_te_body.len()
                ),
                &cl_te_body,
            ),
        )
        .refused()
        .forwarded("rest-server", "POST", "/a", ""),
        case(
            "CL.TE: short Content-Length",
            post(
                "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                &cl_te_body,
            ),
        )
        .refused()
        .forwarded("rest-server", "POST", "/a", ""),
        case(
            "TE.CL: chunk holds the hidden request",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                &te_cl_body,
            ),
        )
        .refused()
        .forwarded("rest-server", "POST", "/a", HIDDEN),
        case(
            "TE.CL: Content-Length first, zero",
            post(
                "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
                &te_cl_body,
            ),
        )
        .refused()
        .forwarded("rest-server", "POST", "/a", HIDDEN),
        case(
            "CL.TE with an unusable Transfer-Encoding",
            post(
                &format!(
                    "Content-Length: {}\r\nTransfer-Encoding: xchunked\r\n",
                    cl_te_body.len()
                ),
                &cl_te_body,
            ),
        )
        .refused(),
        case(
            "CL + TE: chunked, identity",
            post(
                &format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked, identity\r\n",
                    cl_te_body.len()
                ),
                &cl_te_body,
            ),
        )
        .refused(),
    ];
    run_cases(&rig, "CL+TE", cases);
}

#[test]
fn malformed_content_length_is_refused() {
    let rig = Rig::start();
    // After the 5 body bytes comes the hidden request, so any reading of
    // a bad length but "refuse" lets it through or eats into it.
    let with_cl = |name: &str, cl: &str| {
        case(
            format!("Content-Length {cl:?} ({name})"),
            post(
                &format!("Content-Length: {cl}\r\n"),
                &format!("hello{HIDDEN}"),
            ),
        )
    };
    // Valid spellings, as controls: nothing follows the body.
    let valid_cl = |name: &str, cl: &str| {
        case(
            format!("Content-Length {cl:?} ({name})"),
            post(&format!("Content-Length: {cl}\r\n"), "hello"),
        )
        .forwarded("rest-server", "POST", "/a", "hello")
    };
    let cases = vec![
        with_cl(
            "differing duplicates, two lines",
            "5\r\nContent-Length: 5000",
        )
        .refused(),
        with_cl("differing duplicates, one line", "5, 50").refused(),
        with_cl(
            "differing duplicates, smaller second",
            "50\r\nContent-Length: 5",
        )
        .refused(),
        // HAProxy CVE-2023-40225 forwarded an empty length.
        with_cl("empty", "").refused(),
        with_cl("plus sign", "+5").refused(),
        with_cl("hex", "0x5").refused(),
        with_cl("underscore", "0_5").refused(),
        with_cl("negative", "-5").refused(),
        with_cl("decimal point", "5.0").refused(),
        with_cl("space inside", "5 0").refused(),
        with_cl("u64 overflow", "18446744073709551621").refused(),
        with_cl("huge", "99999999999999999999999999").refused(),
        with_cl("vertical tab", "\x0b5").refused(),
        with_cl("letters", "five").refused(),
        valid_cl("leading zeros", "00005"),
        valid_cl("surrounding whitespace", " \t5 "),
    ];
    run_cases(&rig, "Content-Length", cases);
}

/// RFC 9110 §8.6: a proxy may collapse `5, 5` or two identical lines into
/// one length, or refuse; it must not forward a value that is not plain
/// digits. An upstream that reads such a value differently from Pylon
/// (`55`, the first of two, a refusal after reading the body) can lose
/// track of where the next request on the pooled connection starts.
#[test]
fn identical_duplicate_content_length_reaches_the_upstream_once() {
    let rig = Rig::start();
    let cases = vec![
        case(
            "two identical Content-Length lines",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
        )
        .refused()
        .forwarded("rest-server", "POST", "/a", "hello"),
        case(
            "Content-Length: 5, 5",
            post("Content-Length: 5, 5\r\n", "hello"),
        )
        .refused()
        .forwarded("rest-server", "POST", "/a", "hello"),
    ];
    run_cases(&rig, "duplicate CL", cases);
}

#[test]
fn obfuscated_transfer_encoding_is_refused_or_read_as_chunked() {
    let rig = Rig::start();
    let body = format!("{}0\r\n\r\n", chunk("hello"));
    // The whole body is the hidden request, chunked: a server that does not
    // see `chunked` reads no body and then the chunk as garbage.
    let hidden = format!("{}0\r\n\r\n", chunk(HIDDEN));
    let te = |name: &str, header: &str, b: &str| {
        case(
            format!("{name}: {}", header.escape_debug()),
            post(header, b),
        )
    };
    let cases = vec![
        te("chunked not last", "Transfer-Encoding: chunked, identity\r\n", &body).refused(),
        te("unknown coding", "Transfer-Encoding: xchunked\r\n", &body).refused(),
        te("unknown coding", "Transfer-Encoding: chunked1\r\n", &body).refused(),
        te("quoted", "Transfer-Encoding: \"chunked\"\r\n", &body).refused(),
        te(
            "two lines, chunked first",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            &body,
        )
        .refused(),
        te("space before colon", "Transfer-Encoding : chunked\r\n", &hidden).refused(),
        te("tab before colon", "Transfer-Encoding\t: chunked\r\n", &hidden).refused(),
        te("vertical tab before value", "Transfer-Encoding:\x0bchunked\r\n", &hidden).refused(),
        te("NUL in name", "Transfer\0Encoding: chunked\r\n", &hidden).refused(),
        // RFC 9112 §2.2: whitespace before the first field line is rejected
        // or the line ignored; ignoring it leaves no body and the chunk as
        // an unparseable next request.
        case(
            "whitespace-prefixed first field line",
            format!(
                "POST /rest-server/a HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: pylon.test\r\n\r\n{hidden}"
            ),
        )
        .refused()
        .forwarded("rest-server", "POST", "/a", ""),
        te("leading whitespace in value", "Transfer-Encoding:  \tchunked\r\n", &body)
            .refused()
            .forwarded("rest-server", "POST", "/a", "hello"),
        te("trailing whitespace in value", "Transfer-Encoding: chunked \t\r\n", &body)
            .refused()
            .forwarded("rest-server", "POST", "/a", "hello"),
        te("capitalised", "Transfer-Encoding: Chunked\r\n", &body)
            .refused()
            .forwarded("rest-server", "POST", "/a", "hello"),
        te("upper case", "TRANSFER-ENCODING: CHUNKED\r\n", &body)
            .refused()
            .forwarded("rest-server", "POST", "/a", "hello"),
        // RFC 9112 §6.1, §7: Pingora decodes only chunked and would forward
        // the body without the other codings; refused as nginx does.
        te("identity before chunked", "Transfer-Encoding: identity, chunked\r\n", &body)
            .status(501),
        te("gzip before chunked", "Transfer-Encoding: gzip, chunked\r\n", &body).status(501),
        te(
            "gzip and chunked on two lines",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            &body,
        )
        .status(501),
        te("chunked twice", "Transfer-Encoding: chunked, chunked\r\n", &body).status(400),
        te(
            "chunked on two lines",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            &body,
        )
        .status(400),
        te("chunked with a parameter", "Transfer-Encoding: chunked;q=1\r\n", &body).refused(),
        // RFC 9112 §6.1: HTTP/1.0 with Transfer-Encoding is faulty framing.
        case(
            "Transfer-Encoding on HTTP/1.0",
            format!("POST /rest-server/a HTTP/1.0\r\nHost: pylon.test\r\nTransfer-Encoding: chunked\r\n\r\n{hidden}"),
        )
        .refused(),
    ];
    run_cases(&rig, "Transfer-Encoding", cases);
}

#[test]
fn malformed_chunk_sizes_never_end_a_body_early() {
    let rig = Rig::start();
    let te = "Transfer-Encoding: chunked\r\n";
    // After each odd size line comes data that a lenient parser could read
    // as the end of the body followed by the hidden request.
    let sized = |name: &str, size_line: &str| {
        case(
            format!("chunk size {:?} ({name})", size_line),
            post(
                te,
                &format!("{size_line}\r\n0\r\n\r\n{HIDDEN}\r\n0\r\n\r\n"),
            ),
        )
    };
    let cases = vec![
        sized("plus sign", "+5").aborted(),
        sized("0x prefix", "0x5").aborted(),
        sized("minus sign", "-5").aborted(),
        sized("underscore", "0_5").aborted(),
        sized("17 digits", "00000000000000005").aborted(),
        sized("wraps u64 to 5", "10000000000000005").aborted(),
        sized("leading space", " 5").aborted(),
        sized("not hex", "g").aborted(),
        case(
            "16 digits, the longest valid size",
            post(te, &format!("000000000000000{:x}\r\nhello\r\n0\r\n\r\n", 5)),
        )
        .forwarded("rest-server", "POST", "/a", "hello"),
        case(
            "upper-case hex",
            post(te, &format!("{:X}\r\n{}\r\n0\r\n\r\n", 26, "a".repeat(26))),
        )
        .forwarded("rest-server", "POST", "/a", "a".repeat(26)),
        case(
            "chunk longer than its size",
            post(te, &format!("5\r\nhello{HIDDEN}\r\n0\r\n\r\n")),
        )
        .aborted(),
        // The data looks like the end of the body and a next request; only
        // the size says where the chunk ends.
        case(
            "chunk data that looks like a last chunk and a request",
            post(
                te,
                &format!("{}0\r\n\r\n", chunk(&format!("hello\r\n0\r\n\r\n{HIDDEN}"))),
            ),
        )
        .forwarded(
            "rest-server",
            "POST",
            "/a",
            format!("hello\r\n0\r\n\r\n{HIDDEN}"),
        ),
    ];
    run_cases(&rig, "chunk size", cases);
}

/// RFC 9112 §7.1: `chunk-size = 1*HEXDIG`. httparse (Pingora's chunk
/// parser) reads a size line with no digits as size 0, the last chunk,
/// where a strict parser answers 400. Pylon does not refuse it, but it
/// cannot be used to smuggle: the body is re-framed, so the upstream gets
/// exactly one well-formed request with the body that came before the line,
/// and Pylon closes the connection instead of parsing what follows it.
#[test]
fn chunk_size_lines_without_digits_end_the_body_and_the_connection() {
    let rig = Rig::start();
    let te = "Transfer-Encoding: chunked\r\n";
    let cases = vec![
        case(
            "size line \";ext=1\"",
            post(te, &format!(";ext=1\r\n0\r\n\r\n{HIDDEN}\r\n0\r\n\r\n")),
        )
        .aborted()
        .forwarded("rest-server", "POST", "/a", ""),
        case("empty size line", post(te, &format!("\r\n\r\n{HIDDEN}")))
            .aborted()
            .forwarded("rest-server", "POST", "/a", ""),
        case(
            "empty size line after a chunk",
            post(te, &format!("5\r\nhello\r\n\r\n\r\n{HIDDEN}")),
        )
        .aborted()
        .forwarded("rest-server", "POST", "/a", "hello"),
    ];
    run_cases(&rig, "chunk size", cases);
}

/// httparse lets a chunk extension run up to the next CRLF, bare LF
/// included, so `5;x\nhello\r\n` would be one size line to Pylon, where a
/// parser that ends lines at LF sees the chunk `hello` (an HTTP Garden
/// finding for several servers; a front proxy such as `deploy/haproxy`
/// could read the body differently). Pylon refuses any chunk-size line that
/// holds a CR or LF before its final CRLF (vendor patch 0301): the request
/// is aborted upstream, never completed. Nothing after the LF is ever
/// parsed as a request.
#[test]
fn bare_lf_in_a_chunk_extension_never_completes_a_request() {
    let rig = Rig::with("limits:\n  body_timeout: 1s\n  body_min_rate: 0\n");
    let te = "Transfer-Encoding: chunked\r\n";
    let cases = vec![
        case(
            "bare LF ends an extension",
            post(te, "5;x\nhello\r\n0\r\n\r\n"),
        )
        .aborted_with(400),
        case(
            "bare LF after an empty extension",
            post(te, &format!("3;\nabc\r\n0\r\n\r\n{HIDDEN}")),
        )
        .aborted_with(400),
    ];
    run_cases(&rig, "chunk extension LF", cases);
}

#[test]
fn chunk_extensions_and_trailers_are_not_forwarded_raw() {
    let rig = Rig::start();
    let te = "Transfer-Encoding: chunked\r\n";
    let cases = vec![
        case(
            "extension with quoted ';' and final-chunk extension",
            post(te, "5;name=\"v;x\"\r\nhello\r\n0;last\r\n\r\n"),
        )
        .forwarded("rest-server", "POST", "/a", "hello"),
        case(
            "bare extension names",
            post(te, "5;a;b;c\r\nhello\r\n0\r\n\r\n"),
        )
        .forwarded("rest-server", "POST", "/a", "hello"),
        case(
            "whitespace before ';'",
            post(te, "5 ;a=1\r\nhello\r\n0\r\n\r\n"),
        )
        .refused()
        .aborted()
        .forwarded("rest-server", "POST", "/a", "hello"),
        case(
            "CR inside an extension",
            post(te, &format!("5;a\rb\r\nhello\r\n0\r\n\r\n{HIDDEN}")),
        )
        .aborted(),
        case(
            "NUL inside an extension",
            post(te, "5;a\0b\r\nhello\r\n0\r\n\r\n"),
        )
        .aborted()
        .forwarded("rest-server", "POST", "/a", "hello"),
        case(
            "64 KiB extension",
            post(
                te,
                &format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(64 << 10)),
            ),
        )
        .aborted()
        .forwarded("rest-server", "POST", "/a", "hello"),
        case(
            "trailer holding a request line",
            post(
                te,
                "5\r\nhello\r\n0\r\nX-Trailer: GET /kubernetes/smuggled HTTP/1.1\r\n\r\n",
            ),
        )
        .forwarded("rest-server", "POST", "/a", "hello"),
        case(
            "trailer field that is not a field",
            post(te, &format!("5\r\nhello\r\n0\r\n{HIDDEN}")),
        )
        .aborted()
        .forwarded("rest-server", "POST", "/a", "hello"),
    ];
    run_cases(&rig, "chunk extension", cases);
}

#[test]
fn bare_lf_line_endings_are_refused_or_normalised() {
    let rig = Rig::start();
    let te = "Transfer-Encoding: chunked\r\n";
    let cases = vec![
        case(
            "request head entirely in bare LF",
            "GET /rest-server/a HTTP/1.1\nHost: pylon.test\nX-A: 1\n\n",
        )
        .refused()
        .forwarded("rest-server", "GET", "/a", ""),
        case(
            "bare LF between fields, chunked body",
            format!(
                "POST /rest-server/a HTTP/1.1\r\nHost: pylon.test\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
                chunk("hello")
            ),
        )
        .refused()
        .forwarded("rest-server", "POST", "/a", "hello"),
        case(
            "bare LF ends the head before a length body",
            "POST /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: 5\n\nhello",
        )
        .refused()
        .forwarded("rest-server", "POST", "/a", "hello"),
        case(
            "bare CR as a line ending",
            format!("POST /rest-server/a HTTP/1.1\r\nHost: pylon.test\rContent-Length: 5\r\n\r\nhello{HIDDEN}"),
        )
        .refused(),
        case(
            "bare LF after a chunk size",
            post(te, &format!("5\nhello\r\n0\r\n\r\n{HIDDEN}")),
        )
        .aborted(),
        case(
            "bare LF after chunk data",
            post(te, &format!("5\r\nhello\n0\r\n\r\n{HIDDEN}")),
        )
        .aborted()
        .forwarded("rest-server", "POST", "/a", "hello"),
        case(
            "chunk lines all bare LF",
            post(te, &format!("5\nhello\n0\n\n{HIDDEN}")),
        )
        .aborted(),
        case(
            "bare LF in the last chunk",
            post(te, &format!("5\r\nhello\r\n0\n\r\n{HIDDEN}")),
        )
        .aborted(),
    ];
    run_cases(&rig, "bare LF", cases);
}

#[test]
fn folded_and_control_bytes_in_headers_are_refused() {
    let rig = Rig::start();
    let get = |name: &str, fields: &str| {
        case(
            name.to_string(),
            format!("GET /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\n{fields}\r\n"),
        )
    };
    let cases = vec![
        // RFC 9112 §5.2: reject, or replace the fold with SP.
        get("obs-fold of an ordinary field", "X-A: 1\r\n 2\r\n")
            .refused()
            .forwarded("rest-server", "GET", "/a", ""),
        get("obs-fold with a tab", "X-A: 1\r\n\t2\r\n")
            .refused()
            .forwarded("rest-server", "GET", "/a", ""),
        case(
            "obs-fold continuing Content-Length",
            post(
                "Content-Length: 1\r\n 0\r\n",
                &format!("helloworld{HIDDEN}"),
            ),
        )
        .refused(),
        case(
            "obs-fold carrying Transfer-Encoding",
            post(
                "X-A: 1\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                &format!("hello{HIDDEN}"),
            ),
        )
        .refused()
        .forwarded("rest-server", "POST", "/a", "hello"),
        get("NUL in a value", "X-A: a\0b\r\n")
            .refused()
            .forwarded("rest-server", "GET", "/a", ""),
        get("CR in a value", "X-A: a\rb\r\n")
            .refused()
            .forwarded("rest-server", "GET", "/a", ""),
        get(
            "CR then a field in a value",
            "X-A: a\rTransfer-Encoding: chunked\r\n",
        )
        .refused()
        .forwarded("rest-server", "GET", "/a", ""),
        get("escape byte in a value", "X-A: a\x1bb\r\n")
            .refused()
            .forwarded("rest-server", "GET", "/a", ""),
        get("DEL in a value", "X-A: a\x7fb\r\n")
            .refused()
            .forwarded("rest-server", "GET", "/a", ""),
        get("NUL in a name", "X-\0A: a\r\n").refused(),
        get("space in a name", "X A: a\r\n").refused(),
        get("empty name", ": a\r\n").refused(),
        get("line without colon", "X-A a\r\n").refused(),
        case(
            "NUL in the request target",
            "GET /rest-server/a\0b HTTP/1.1\r\nHost: pylon.test\r\n\r\n",
        )
        .refused(),
        // RFC 9112 §2.2 allows refusing a bare CR or replacing it; Pingora
        // percent-encodes it, which is what a client sending `%0D` gets.
        case(
            "CR in the request line",
            "GET /rest-server/a\rb HTTP/1.1\r\nHost: pylon.test\r\n\r\n",
        )
        .refused()
        .forwarded("rest-server", "GET", "/a%0Db", ""),
        case(
            "two spaces in the request line",
            "GET  /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\n\r\n",
        )
        .refused()
        .forwarded("rest-server", "GET", "/a", ""),
    ];
    run_cases(&rig, "header bytes", cases);
}

#[test]
fn http_1_0_bodies_without_a_length_are_not_forwarded() {
    let rig = Rig::start();
    // RFC 9112 §6.3: a request with neither length nor chunking has no
    // body; Pingora before 0.8 forwarded such bytes as a close-delimited
    // body (CVE-2026-2835).
    let cases = vec![
        case(
            "HTTP/1.0 POST, no length, hidden request after",
            format!("POST /rest-server/a HTTP/1.0\r\nHost: pylon.test\r\n\r\n{HIDDEN}"),
        )
        .refused()
        .forwarded("rest-server", "POST", "/a", ""),
        case(
            "HTTP/1.0 POST, no length, plain bytes after",
            "POST /rest-server/a HTTP/1.0\r\nHost: pylon.test\r\n\r\nname=value&x=1",
        )
        .refused()
        .forwarded("rest-server", "POST", "/a", ""),
        case(
            "HTTP/1.0 POST with Content-Length (control)",
            "POST /rest-server/a HTTP/1.0\r\nHost: pylon.test\r\nContent-Length: 5\r\n\r\nhello",
        )
        .forwarded("rest-server", "POST", "/a", "hello"),
        case(
            "HTTP/1.0 without Host",
            format!("POST /rest-server/a HTTP/1.0\r\n\r\n{HIDDEN}"),
        )
        .host(None)
        .refused()
        .forwarded("rest-server", "POST", "/a", ""),
    ];
    // A close-delimited reading would wait for the client to close, with
    // neither an answer nor a request upstream: that shows up as a hang.
    run_cases(&rig, "HTTP/1.0", cases);
}

// ------------------------------------------------------------- upgrades

/// CVE-2026-2833: Pingora forwarded the bytes after an `Upgrade` request
/// as a raw tunnel before the upstream had agreed with a 101. Here the
/// upstream answers 200, so what follows is HTTP again and must go through
/// Pylon's routing like any pipelined request, or nowhere.
#[test]
fn websocket_upgrade_answered_with_200_is_not_a_tunnel() {
    let rig = Rig::start();
    let upgrade = "GET /rest-server/ws HTTP/1.1\r\nHost: pylon.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let upgrade_post = "POST /rest-server/ws HTTP/1.1\r\nHost: pylon.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\nhello";
    // Routed by Pylon this is `/after` at kubernetes; tunnelled raw it
    // would reach rest-server as `/kubernetes/after`.
    let after = "GET /kubernetes/after HTTP/1.1\r\nHost: pylon.test\r\n\r\n";
    // A masked WebSocket text frame "hello": not HTTP at all.
    let frame: &[u8] = &[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let variants: Vec<(&str, &str, &str, Vec<u8>, bool)> = vec![
        (
            "GET, request after, same write",
            upgrade,
            "",
            after.into(),
            false,
        ),
        (
            "GET, request after the 200",
            upgrade,
            "",
            after.into(),
            true,
        ),
        (
            "GET, frame after, same write",
            upgrade,
            "",
            frame.to_vec(),
            false,
        ),
        (
            "GET, frame after the 200",
            upgrade,
            "",
            frame.to_vec(),
            true,
        ),
        (
            "POST with body, request after",
            upgrade_post,
            "hello",
            after.into(),
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (name, head, body, rest, wait) in variants {
        rig.clear();
        let mut w = Wire::open(rig.addr());
        if wait {
            w.send(head.as_bytes());
            w.wait_replies(1, HANG);
            w.send(&rest);
        } else {
            let mut all = head.as_bytes().to_vec();
            all.extend_from_slice(&rest);
            w.send(&all);
        }
        let t = w.finish();
        let seen = rig.seen(&t);
        let observed = format!("client: {}; {}", t.describe(), describe_seen(&seen));
        eprintln!("Upgrade | {name:<44} | {observed}");
        let check = || -> Result<(), String> {
            universal(&seen, &t)?;
            let of = |n: &str| seen.iter().find(|(o, _)| *o == n).unwrap().1.clone();
            let rest_seen = of("rest-server");
            let [g] = rest_seen.requests.as_slice() else {
                return Err("rest-server did not get exactly the upgrade request".to_string());
            };
            if g.path() != "/ws" || g.body != body.as_bytes() || !rest_seen.partial.is_empty() {
                return Err(format!("rest-server got {}", rest_seen.describe()));
            }
            check_forwarded(
                g,
                rig.origin("rest-server"),
                "/rest-server",
                Some(HOST),
                true,
            )?;
            let first = t
                .replies
                .first()
                .ok_or("no answer to the upgrade request")?;
            if first.status != 200 || first.header("x-origin").as_deref() != Some("rest-server") {
                return Err(format!("upgrade answered {}", first.brief()));
            }
            // What follows is either handled as its own request or dropped.
            let k8s = of("kubernetes");
            match k8s.requests.as_slice() {
                [] => {}
                [g] if g.target == "/after" => {
                    check_forwarded(
                        g,
                        rig.origin("kubernetes"),
                        "/kubernetes",
                        Some(HOST),
                        false,
                    )?;
                    if !t.replies[1..]
                        .iter()
                        .any(|r| r.header("x-origin").as_deref() == Some("kubernetes"))
                    {
                        return Err("kubernetes answered but the client never saw it".to_string());
                    }
                }
                _ => return Err(format!("kubernetes got {}", k8s.describe())),
            }
            if t.replies[1..].iter().any(|r| {
                !(400..500).contains(&r.status)
                    && r.header("x-origin").as_deref() != Some("kubernetes")
            }) {
                return Err("an unexpected second answer".to_string());
            }
            Ok(())
        };
        if let Err(e) = check() {
            failures.push(format!("{name}: {e}; {observed}"));
        }
    }
    rig.assert_alive();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// h2c smuggling: a backend that honours `Upgrade: h2c` switches to HTTP/2
/// and then takes requests on a connection Pylon no longer understands.
#[test]
fn h2c_upgrade_is_not_forwarded() {
    let rig = Rig::start();
    let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let variants = [
        (
            "Upgrade: h2c with HTTP2-Settings, preface after",
            format!("GET /rest-server/h2c HTTP/1.1\r\nHost: pylon.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n{preface}"),
            "",
        ),
        (
            "Upgrade: h2c, Connection lists only Upgrade",
            "GET /rest-server/h2c HTTP/1.1\r\nHost: pylon.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade\r\n\r\n".to_string(),
            "",
        ),
        (
            "Upgrade: h2c without Connection",
            "GET /rest-server/h2c HTTP/1.1\r\nHost: pylon.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n".to_string(),
            "",
        ),
        (
            "POST with body and Upgrade: h2c",
            "POST /rest-server/h2c HTTP/1.1\r\nHost: pylon.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\nContent-Length: 5\r\n\r\nhello".to_string(),
            "hello",
        ),
        (
            "Upgrade: h2c, websocket",
            "GET /rest-server/h2c HTTP/1.1\r\nHost: pylon.test\r\nUpgrade: h2c, websocket\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n".to_string(),
            "",
        ),
    ];
    let mut failures = Vec::new();
    for (name, raw, body) in variants {
        rig.clear();
        let t = talk(rig.addr(), raw.as_bytes());
        let seen = rig.seen(&t);
        let observed = format!("client: {}; {}", t.describe(), describe_seen(&seen));
        eprintln!("h2c | {name:<44} | {observed}");
        let check = || -> Result<(), String> {
            universal(&seen, &t)?;
            let requests: Vec<(&str, &Got)> = seen
                .iter()
                .flat_map(|(n, s)| s.requests.iter().map(move |g| (*n, g)))
                .collect();
            let [("rest-server", g)] = requests.as_slice() else {
                return Err("not exactly one request at rest-server".to_string());
            };
            if g.path() != "/h2c" || g.body != body.as_bytes() {
                return Err(format!("rest-server got {}", g.brief()));
            }
            if seen.iter().any(|(_, s)| !s.partial.is_empty()) {
                return Err("bytes after the request reached an origin".to_string());
            }
            check_forwarded(
                g,
                rig.origin("rest-server"),
                "/rest-server",
                Some(HOST),
                false,
            )?;
            match t.replies.first() {
                Some(r) if r.status == 200 => {}
                other => return Err(format!("client got {:?}", other.map(Reply::brief))),
            }
            if t.replies.iter().any(|r| r.status == 101) {
                return Err("Pylon answered 101".to_string());
            }
            Ok(())
        };
        if let Err(e) = check() {
            failures.push(format!("{name}: {e}; {observed}"));
        }
    }
    // Prior-knowledge HTTP/2 on the plain port: the preface is not an
    // HTTP/1.1 request, and nothing after it may be tunnelled.
    let mut prior = preface.as_bytes().to_vec();
    prior.extend(h2::frame(h2::SETTINGS, 0, 0, &[]));
    prior.extend(h2::frame(
        h2::HEADERS,
        h2::END_HEADERS | h2::END_STREAM,
        1,
        &h2::block(&[
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", b"pylon.test"),
            (b":path", b"/rest-server/h2c"),
        ]),
    ));
    run_cases(
        &rig,
        "h2c",
        vec![case("prior-knowledge HTTP/2 on the plain port", prior).refused()],
    );
    rig.assert_alive();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ----------------------------------------------------------- open proxy

/// Pylon is not a forward proxy: no spelling of a target or Host makes it
/// connect anywhere but a configured upstream (the OpenPAI original had
/// `/a/<host>:<port>/…` routes that did exactly that).
#[test]
fn absolute_form_connect_and_foreign_hosts_reach_no_other_host() {
    let rig = Rig::start();
    let evil = rig.origin("evil").addr.to_string();
    let raw = |s: &str| s.replace("EVIL", &evil);
    let cases = vec![
        case(
            "absolute-form to an unconfigured host",
            raw("GET http://EVIL/ HTTP/1.1\r\nHost: EVIL\r\n\r\n"),
        )
        .refused(),
        case(
            "absolute-form with a routed path",
            raw("GET http://EVIL/rest-server/a HTTP/1.1\r\nHost: EVIL\r\n\r\n"),
        )
        .refused(),
        case(
            "absolute-form, Host names Pylon",
            raw("GET http://EVIL/rest-server/a HTTP/1.1\r\nHost: pylon.test\r\n\r\n"),
        )
        .refused(),
        case(
            "absolute-form, upper-case scheme",
            raw("GET HTTP://EVIL/ HTTP/1.1\r\nHost: EVIL\r\n\r\n"),
        )
        .refused(),
        case(
            "absolute-form https",
            raw("GET https://EVIL/ HTTP/1.1\r\nHost: EVIL\r\n\r\n"),
        )
        .refused(),
        case(
            "absolute-form with userinfo",
            raw("GET http://pylon.test@EVIL/ HTTP/1.1\r\nHost: EVIL\r\n\r\n"),
        )
        .refused(),
        case(
            "absolute-form, no Host",
            raw("GET http://EVIL/ HTTP/1.1\r\n\r\n"),
        )
        .refused(),
        case(
            "CONNECT to an unconfigured host, tunnel bytes after",
            raw("CONNECT EVIL HTTP/1.1\r\nHost: EVIL\r\n\r\nGET / HTTP/1.1\r\nHost: EVIL\r\n\r\n"),
        )
        .refused(),
        case(
            "CONNECT with a routed path",
            "CONNECT /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\n\r\n",
        )
        .refused(),
        case("CONNECT on HTTP/1.0", raw("CONNECT EVIL HTTP/1.0\r\n\r\n")).refused(),
        case(
            "OPTIONS *",
            "OPTIONS * HTTP/1.1\r\nHost: pylon.test\r\n\r\n",
        )
        .refused(),
        case(
            "authority-form on GET",
            raw("GET EVIL HTTP/1.1\r\nHost: pylon.test\r\n\r\n"),
        )
        .refused(),
        case(
            "protocol-relative target",
            raw("GET //EVIL/ HTTP/1.1\r\nHost: pylon.test\r\n\r\n"),
        )
        .refused(),
        case(
            "target starting with @",
            raw("GET @EVIL/ HTTP/1.1\r\nHost: pylon.test\r\n\r\n"),
        )
        .refused(),
        case(
            "original's /a/<host>:<port>/ open-proxy route",
            raw("GET /a/EVIL/x HTTP/1.1\r\nHost: pylon.test\r\n\r\n"),
        )
        .refused(),
        case(
            "original's /log-manager/<host>:<port>/ route",
            raw("GET /log-manager/EVIL/x HTTP/1.1\r\nHost: pylon.test\r\n\r\n"),
        )
        .refused(),
        case(
            "original's /yarn/<host>:<port>/ route (yarn not configured)",
            raw("GET /yarn/EVIL/x HTTP/1.1\r\nHost: pylon.test\r\n\r\n"),
        )
        .refused(),
        case(
            "Host names the unconfigured host",
            raw("GET /rest-server/a HTTP/1.1\r\nHost: EVIL\r\n\r\n"),
        )
        .host(Some(&evil))
        .forwarded("rest-server", "GET", "/a", ""),
        case(
            "X-Forwarded-Host names the unconfigured host",
            raw(
                "GET /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\nX-Forwarded-Host: EVIL\r\n\r\n",
            ),
        )
        .forwarded("rest-server", "GET", "/a", ""),
        case(
            "two Host fields",
            raw("GET /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\nHost: EVIL\r\n\r\n"),
        )
        .refused(),
    ];
    run_cases(&rig, "open proxy", cases);
}

// ------------------------------------------------------ early responses

/// CVE-2025-4366 shape: Pylon answers some requests itself without reading
/// their body. If it then kept the connection, the unread body would be
/// parsed as the next request. Each case hides a request in such a body and
/// pipelines a real follow-up after it.
#[test]
fn early_answers_never_turn_a_body_into_a_request() {
    let rig = Rig::start();
    let follow = "GET /rest-server/follow HTTP/1.1\r\nHost: pylon.test\r\n\r\n";
    let hidden_chunked = format!("{}0\r\n\r\n", chunk(HIDDEN));
    let big = format!("{HIDDEN}{}", "x".repeat(2048 - HIDDEN.len()));
    // (name, request head without the blank line, body, status, body after the answer)
    let variants: Vec<(&str, String, String, u16, bool)> = vec![
        (
            "/healthz, Content-Length body",
            format!("GET /healthz HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: {}", HIDDEN.len()),
            HIDDEN.to_string(),
            200,
            false,
        ),
        (
            "/healthz, chunked body",
            "POST /healthz HTTP/1.1\r\nHost: pylon.test\r\nTransfer-Encoding: chunked".to_string(),
            hidden_chunked.clone(),
            200,
            false,
        ),
        (
            "/healthz, body sent after the answer",
            format!("POST /healthz HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: {}", HIDDEN.len()),
            HIDDEN.to_string(),
            200,
            true,
        ),
        (
            "/healthz, Expect: 100-continue",
            format!("POST /healthz HTTP/1.1\r\nHost: pylon.test\r\nExpect: 100-continue\r\nContent-Length: {}", HIDDEN.len()),
            HIDDEN.to_string(),
            200,
            true,
        ),
        (
            "/grafana 301, Content-Length body",
            format!("POST /grafana HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: {}", HIDDEN.len()),
            HIDDEN.to_string(),
            301,
            false,
        ),
        (
            "/grafana 301, chunked body",
            "POST /grafana HTTP/1.1\r\nHost: pylon.test\r\nTransfer-Encoding: chunked".to_string(),
            hidden_chunked.clone(),
            301,
            false,
        ),
        (
            "/grafana 301, body sent after the answer",
            format!("POST /grafana HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: {}", HIDDEN.len()),
            HIDDEN.to_string(),
            301,
            true,
        ),
        (
            "/../x 400, Content-Length body",
            format!("POST /../x HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: {}", HIDDEN.len()),
            HIDDEN.to_string(),
            400,
            false,
        ),
        (
            "/../x 400, body sent after the answer",
            format!("POST /../x HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: {}", HIDDEN.len()),
            HIDDEN.to_string(),
            400,
            true,
        ),
        (
            "404, Content-Length body",
            format!("POST /nowhere HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: {}", HIDDEN.len()),
            HIDDEN.to_string(),
            404,
            false,
        ),
        (
            "404, chunked body",
            "POST /nowhere HTTP/1.1\r\nHost: pylon.test\r\nTransfer-Encoding: chunked".to_string(),
            hidden_chunked.clone(),
            404,
            false,
        ),
        (
            "413 over max_body_size, body sent after the answer",
            "POST /kubernetes/upload HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: 2048".to_string(),
            big.clone(),
            413,
            true,
        ),
        (
            "413 over max_body_size, same write",
            "POST /kubernetes/upload HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: 2048".to_string(),
            big,
            413,
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (name, head, body, status, after) in variants {
        rig.clear();
        let mut w = Wire::open(rig.addr());
        let head = format!("{head}\r\n\r\n");
        if after {
            w.send(head.as_bytes());
            w.wait_replies(1, HANG);
            w.send(format!("{body}{follow}").as_bytes());
        } else {
            w.send(format!("{head}{body}{follow}").as_bytes());
        }
        let t = w.finish();
        let seen = rig.seen(&t);
        let observed = format!("client: {}; {}", t.describe(), describe_seen(&seen));
        eprintln!("early answer | {name:<44} | {observed}");
        let check = || -> Result<(), String> {
            universal(&seen, &t)?;
            let first = t.replies.first().ok_or("no answer")?;
            if first.status != status || first.header("x-origin").is_some() {
                return Err(format!(
                    "first answer {}, expected {status} from Pylon",
                    first.brief()
                ));
            }
            let requests: Vec<(&str, &Got)> = seen
                .iter()
                .flat_map(|(n, s)| s.requests.iter().map(move |g| (*n, g)))
                .collect();
            let followed = match requests.as_slice() {
                [] => false,
                [("rest-server", g)] if g.target == "/follow" && g.body.is_empty() => {
                    check_forwarded(
                        g,
                        rig.origin("rest-server"),
                        "/rest-server",
                        Some(HOST),
                        false,
                    )?;
                    true
                }
                _ => return Err("origins got more than the follow-up".to_string()),
            };
            if seen.iter().any(|(_, s)| !s.partial.is_empty()) {
                return Err("part of a request reached an origin".to_string());
            }
            match &t.replies[1..] {
                [] if !followed => Ok(()),
                [r] if followed
                    && r.status == 200
                    && r.header("x-origin").as_deref() == Some("rest-server")
                    && r.text().contains(" /follow ") =>
                {
                    Ok(())
                }
                rest => Err(format!(
                    "answers after the first: {:?}",
                    rest.iter().map(Reply::brief).collect::<Vec<_>>()
                )),
            }
        };
        if let Err(e) = check() {
            failures.push(format!("{name}: {e}; {observed}"));
        }
    }
    rig.assert_alive();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ------------------------------------------------------ forwarded headers

/// A client naming Pylon's own headers in `Connection` must not get them
/// stripped after Pylon set them: the upstream would then trust whatever
/// the client sent, or nothing.
#[test]
fn connection_cannot_strip_pylons_forwarded_headers() {
    let rig = Rig::start();
    let get = |conn: &str| {
        case(
            format!("Connection: {conn}"),
            format!(
                "GET /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\nConnection: {conn}\r\nX-Forwarded-For: 203.0.113.66\r\nX-Real-IP: 203.0.113.66\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Prefix: /evil\r\nX-Request-Id: client-chosen\r\n\r\n"
            ),
        )
        .refused()
        .forwarded("rest-server", "GET", "/a", "")
    };
    let cases = vec![
        get("X-Forwarded-For, X-Real-IP"),
        get("X-Real-IP"),
        get("X-Real-IP, X-Forwarded-Prefix, X-Request-Id"),
        get("close, X-Forwarded-Host"),
        get("keep-alive, X-Forwarded-Proto"),
        get("x-forwarded-for"),
        get("Host"),
        get("\"X-Forwarded-For\""),
        get("X-Forwarded-For;q=1"),
        get("Upgrade, X-Real-IP"),
    ];
    run_cases(&rig, "hop-by-hop", cases);
}

// ------------------------------------------------------ header injection

/// Nothing a client sends may become a header line of Pylon's response.
/// Request ids are echoed only from a trusted proxy, so this runs with the
/// client trusted, where the id is copied into the response.
#[test]
fn request_ids_and_redirects_never_inject_response_headers() {
    let trusting = Rig::with("trusted_proxies: [\"127.0.0.1/32\"]\n");
    let untrusting = Rig::start();
    let ids: Vec<(&str, &[u8])> = vec![
        ("percent-encoded CRLF", b"a%0d%0aSet-Cookie:x=1"),
        (
            "percent-encoded CRLF, upper case",
            b"a%0D%0ASet-Cookie:%20x=1",
        ),
        ("raw CR", b"a\rSet-Cookie: x=1"),
        ("raw LF", b"a\nSet-Cookie: x=1"),
        ("raw CRLF then a field", b"a\r\nSet-Cookie: x=1"),
        ("obs-fold", b"a\r\n Set-Cookie: x=1"),
        ("NUL", b"a\0Set-Cookie: x=1"),
        ("NEL (0x85)", b"a\x85Set-Cookie: x=1"),
        (
            "UTF-8 U+010D U+010A",
            "a\u{10d}\u{10a}Set-Cookie: x=1".as_bytes(),
        ),
        ("spaces", b"a Set-Cookie: x=1"),
        ("long", &[b'a'; 4096]),
    ];
    let targets = [
        "/rest-server/a",
        "/healthz",
        "/grafana",
        "/nowhere",
        "/../x",
    ];
    let mut failures = Vec::new();
    let mut run = |rig: &Rig, trusted: bool, name: String, raw: Vec<u8>, sent_id: Option<&[u8]>| {
        rig.clear();
        let t = talk(rig.addr(), &raw);
        let seen = rig.seen(&t);
        let observed = format!("client: {}; {}", t.describe(), describe_seen(&seen));
        eprintln!("injection | {name:<44} | {observed}");
        let check = || -> Result<(), String> {
            universal(&seen, &t)?;
            for r in &t.replies {
                for (n, v) in &r.fields {
                    if n.eq_ignore_ascii_case("set-cookie")
                        || v.iter().any(|&b| b < 0x20 && b != b'\t')
                    {
                        return Err(format!("response field {n}: {}", shown(v)));
                    }
                }
                let Some(id) = r.header("x-request-id") else {
                    // Pingora's own 400 for a head it cannot parse has none.
                    if r.status == 400 {
                        continue;
                    }
                    return Err(format!("{} without X-Request-Id", r.brief()));
                };
                let fresh = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
                // A bare LF ends the field early; what precedes it is the id.
                let echoed = trusted
                    && sent_id.is_some_and(|s| {
                        let end = s.iter().position(|&b| b == b'\r' || b == b'\n');
                        s[..end.unwrap_or(s.len())].trim_ascii() == id.as_bytes()
                    });
                if !fresh && !echoed {
                    return Err(format!(
                        "X-Request-Id {id:?} is neither fresh nor the one sent"
                    ));
                }
                if echoed && !id.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(format!("echoed X-Request-Id {id:?} is not plain text"));
                }
            }
            Ok(())
        };
        if let Err(e) = check() {
            failures.push(format!("{name}: {e}; sent {}; {observed}", shown(&raw)));
        }
    };
    for (rig, trusted) in [(&trusting, true), (&untrusting, false)] {
        for (what, id) in &ids {
            for target in targets {
                let mut raw =
                    format!("GET {target} HTTP/1.1\r\nHost: pylon.test\r\nX-Request-Id: ")
                        .into_bytes();
                raw.extend_from_slice(id);
                raw.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
                let who = if trusted { "trusted" } else { "untrusted" };
                run(
                    rig,
                    trusted,
                    format!("{who} id {what} on {target}"),
                    raw,
                    Some(id),
                );
            }
        }
        // The 301 copies the query into Location.
        for (what, query) in [
            ("encoded CRLF", &b"%0d%0aSet-Cookie:x=1"[..]),
            ("raw CR", b"a\rSet-Cookie:x=1"),
            ("raw LF", b"a\nSet-Cookie:x=1"),
            (
                "UTF-8 U+010D U+010A",
                "a\u{10d}\u{10a}Set-Cookie:x=1".as_bytes(),
            ),
            ("NUL", b"a\0b"),
        ] {
            let mut raw = b"GET /grafana?".to_vec();
            raw.extend_from_slice(query);
            raw.extend_from_slice(b" HTTP/1.1\r\nHost: pylon.test\r\nConnection: close\r\n\r\n");
            run(rig, trusted, format!("301 query {what}"), raw, None);
        }
        for path in [
            "/x%0d%0aSet-Cookie:x=1",
            "/grafana%0d%0aSet-Cookie:x=1",
            "/x%0aLocation:%20/evil",
        ] {
            let raw =
                format!("GET {path} HTTP/1.1\r\nHost: pylon.test\r\nConnection: close\r\n\r\n");
            run(rig, trusted, format!("path {path}"), raw.into_bytes(), None);
        }
    }
    trusting.assert_alive();
    untrusting.assert_alive();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// -------------------------------------------------------------- extremes

#[test]
fn oversized_request_heads_are_refused_and_survived() {
    let rig = Rig::start();
    let get = |name: &str, target: &str, fields: &str| {
        case(
            name.to_string(),
            format!("GET {target} HTTP/1.1\r\nHost: pylon.test\r\n{fields}\r\n"),
        )
        .refused()
    };
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("X-Filler-{i}: v\r\n"))
            .collect::<String>()
    };
    let cases = vec![
        get(
            "100 KiB path",
            &format!("/rest-server/{}", "a".repeat(100 << 10)),
            "",
        ),
        get(
            "100 KiB query",
            &format!("/rest-server/a?q={}", "a".repeat(100 << 10)),
            "",
        ),
        get(
            "1 MiB path",
            &format!("/rest-server/{}", "a".repeat(1 << 20)),
            "",
        ),
        get("200 headers", "/rest-server/a", &many(200)),
        get("300 headers", "/rest-server/a", &many(300)),
        get("10000 headers", "/rest-server/a", &many(10_000)),
        get(
            "one 2 MiB header",
            "/rest-server/a",
            &format!("X-Big: {}\r\n", "a".repeat(2 << 20)),
        ),
        get(
            "one 64 KiB header",
            "/rest-server/a",
            &format!("X-Big: {}\r\n", "a".repeat(64 << 10)),
        ),
        get(
            "64 KiB header name",
            "/rest-server/a",
            &format!("X-{}: v\r\n", "n".repeat(64 << 10)),
        ),
        get(
            "40 headers of 1 KiB",
            "/rest-server/a",
            &(0..40)
                .map(|i| format!("X-F{i}: {}\r\n", "v".repeat(1024)))
                .collect::<String>(),
        ),
    ];
    run_cases(&rig, "size", cases);
}

/// `pylon.limits` bounds the target and the header section, but the
/// method is part of the request line too; nginx refuses a request line
/// over 8k whatever makes it long.
#[test]
fn oversized_methods_are_refused() {
    let rig = Rig::start();
    let cases = vec![case(
        "100 KiB method",
        "GET /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\n\r\n",
    )
    .map_raw(long_method(100 << 10))
    .refused()];
    run_cases(&rig, "size", cases);
}

/// Replaces `GET` with a method of `n` letters.
fn long_method(n: usize) -> impl FnOnce(Vec<u8>) -> Vec<u8> {
    move |raw| {
        let mut m = "A".repeat(n).into_bytes();
        m.extend_from_slice(&raw[3..]);
        m
    }
}

impl Case {
    fn map_raw(mut self, f: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Case {
        self.raw = f(self.raw);
        self
    }
}

// ---------------------------------------------------------- path confusion

/// Each standard route: name, public prefix, origin, upstream base path (the
/// WebHDFS API routes add `/webhdfs`, Prometheus runs under `/prometheus`).
const ROUTES: [(&str, &str, &str, &str); 10] = [
    ("rest-server", "/rest-server", "rest-server", ""),
    ("kubernetes", "/kubernetes", "kubernetes", ""),
    ("webhdfs-api", "/webhdfs/api", "webhdfs", "/webhdfs"),
    ("webhdfs-alias", "/webhdfs/webhdfs", "webhdfs", "/webhdfs"),
    ("webhdfs", "/webhdfs", "webhdfs", ""),
    ("prometheus", "/prometheus", "prometheus", "/prometheus"),
    (
        "kubernetes-dashboard",
        "/kubernetes-dashboard",
        "kubernetes-dashboard",
        "",
    ),
    ("yarn", "/yarn", "yarn", ""),
    ("grafana", "/grafana", "grafana", ""),
    ("portal", "/", "portal", ""),
];

/// (class, request target). Targets are sent byte for byte.
const PATHS: &[(&str, &str)] = &[
    ("`..`", "/grafana/../kubernetes/api"),
    ("`..`", "/grafana/x/../../kubernetes/api"),
    ("`..`", "/grafana/./../kubernetes/api"),
    ("`..`", "/kubernetes/api/../../grafana/"),
    ("`..`", "/kubernetes-dashboard/../kubernetes/api"),
    ("`..`", "/webhdfs/api/../../kubernetes/api"),
    ("`..`", "/rest-server/.."),
    ("`..`", "/../kubernetes/api"),
    ("`..`", "/grafana/../../kubernetes/api"),
    ("`..`", "/grafana/..?x=/../kubernetes"),
    ("`%2e%2e`", "/grafana/%2e%2e/kubernetes/api"),
    ("`%2e%2e`", "/grafana/%2E%2E/kubernetes/api"),
    ("`%2e%2e`", "/grafana/.%2e/kubernetes/api"),
    ("`%2e%2e`", "/grafana/%2e./kubernetes/api"),
    ("`%2e%2e`", "/grafana/%2e/../kubernetes/api"),
    ("`%2e%2e`", "/%2e%2e/kubernetes/api"),
    ("`%2e%2e`", "/grafana/%252e%252e/kubernetes/api"),
    ("`%2e%2e`", "/grafana/%c0%ae%c0%ae/kubernetes/api"),
    ("`%2e%2e`", "/grafana/%u002e%u002e/kubernetes/api"),
    ("`%2f`", "/grafana/..%2fkubernetes/api"),
    ("`%2f`", "/grafana/..%2Fkubernetes/api"),
    ("`%2f`", "/kubernetes%2fapi"),
    ("`%2f`", "/grafana%2f..%2fkubernetes/api"),
    ("`%2f`", "/%2fkubernetes/api"),
    ("`%2f`", "/grafana/%2e%2e%2fkubernetes/api"),
    ("`%5c`", "/grafana/%5c../kubernetes"),
    ("`%5c`", "/grafana/..%5ckubernetes/api"),
    ("`%5c`", "/grafana/%5C..%5Ckubernetes/api"),
    ("`%5c`", "/grafana\\..\\kubernetes/api"),
    ("`%5c`", "/grafana/..\\kubernetes/api"),
    ("`;`", "/grafana/..;/kubernetes/api"),
    ("`;`", "/grafana/.;/kubernetes/api"),
    ("`;`", "/grafana/..;x=1/kubernetes/api"),
    ("`;`", "/grafana/%2e%2e;/kubernetes/api"),
    ("`;`", "/grafana;x/../kubernetes/api"),
    ("`;`", "/kubernetes;/api"),
    ("`;`", "/kubernetes/api;jsessionid=1"),
    ("`%00`", "/grafana/%00/../kubernetes/api"),
    ("`%00`", "/kubernetes%00/api"),
    ("`%00`", "/grafana%00.json"),
    ("`%00`", "/grafana/%2500"),
    ("`//`", "//kubernetes/api"),
    ("`//`", "///rest-server//api"),
    ("`//`", "/grafana//../kubernetes/api"),
    ("`//`", "/kubernetes//api"),
    ("`//`", "//evil.example/x"),
    ("case", "/Kubernetes/api"),
    ("case", "/GRAFANA/"),
    ("case", "/grafana/%2E%2E/KUBERNETES/api"),
    ("case", "/kubernetes/API"),
    ("case", "/%6bubernetes/api"),
    ("case", "/%6Bubernetes/api"),
    ("encoded `?`", "/grafana%3f/x"),
    ("encoded `?`", "/grafana%3F/../kubernetes/api"),
    ("encoded `?`", "/kubernetes/api%3f?x=1"),
    ("encoded `?`", "/grafana/%3f/../../kubernetes/api"),
    ("encoded `#`", "/grafana%23/x"),
    ("encoded `#`", "/kubernetes/api%23/../x"),
    ("encoded `#`", "/grafana/#/../kubernetes/api"),
    ("prefix edge", "/kubernetes-dashboardx/"),
    ("prefix edge", "/kubernetes"),
    ("prefix edge", "/grafana"),
    ("prefix edge", "/webhdfs/api/v1/?op=LISTSTATUS"),
    ("prefix edge", "/webhdfs/api/../webhdfs/v1/x"),
    (
        "prefix edge",
        "/prometheus/../prometheus/api/v1/query?query=up",
    ),
];

struct Row {
    class: &'static str,
    target: &'static str,
    status: u16,
    route: Option<&'static str>,
    upstream: Option<String>,
}

fn cell(s: &str) -> String {
    format!("`{}`", s.replace('|', "\\|"))
}

fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "# Path confusion\n\
         \n\
         What Pylon does with request targets that try to be routed as one\n\
         service and read by the upstream as another. Pylon normalises the path\n\
         once, routes on the result, and sends the upstream exactly that string\n\
         (see *Path normalisation* in the README). Every row was sent over a raw\n\
         socket to the real binary in standalone mode, with one recording upstream\n\
         per service; *route* is the route whose upstream received the request,\n\
         *upstream received* the request target it saw.\n\
         \n\
         For every row the test also checks that no upstream received a `.` or\n\
         `..` segment, an empty segment (`//`), a raw `\\` or an escaped unreserved\n\
         character; that at most one upstream received anything; and that it was\n\
         the upstream of the longest route prefix matching the normalised path.\n\
         \n\
         This file is generated and checked by `tests/smuggling.rs`; after a\n\
         deliberate change, regenerate it with\n\
         `PYLON_WRITE_DOCS=1 cargo test --release --test smuggling path_confusion`.\n\
         \n\
         | class | request target | status | route | upstream received |\n\
         |---|---|---|---|---|\n",
    );
    for r in rows {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.class,
            cell(r.target),
            r.status,
            r.route.unwrap_or("—"),
            r.upstream.as_deref().map_or_else(|| "—".to_string(), cell)
        )
        .unwrap();
    }
    out
}

/// The longest route prefix matching `path` on a segment boundary.
fn expected_route(path: &str) -> &'static str {
    ROUTES
        .iter()
        .filter(|(_, prefix, _, _)| {
            *prefix == "/"
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .max_by_key(|(_, prefix, _, _)| prefix.len())
        .map(|(name, ..)| *name)
        .unwrap()
}

/// What must hold of a path an upstream received.
fn check_upstream_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("not absolute".into());
    }
    if path.contains("//") {
        return Err("empty segment".into());
    }
    if path.contains('\\') {
        return Err("raw backslash".into());
    }
    for seg in path.split('/') {
        let before_params = seg.split(';').next().unwrap_or_default();
        if before_params == "." || before_params == ".." {
            return Err(format!("dot-segment {seg:?}"));
        }
    }
    let bytes = path.as_bytes();
    for (i, _) in path.match_indices('%') {
        let esc = bytes.get(i + 1..i + 3).ok_or("truncated escape")?;
        let v = u8::from_str_radix(std::str::from_utf8(esc).map_err(|e| e.to_string())?, 16)
            .map_err(|_| format!("bad escape at {i}"))?;
        if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
            return Err(format!(
                "escaped unreserved character %{}",
                esc.escape_ascii()
            ));
        }
        if esc.iter().any(u8::is_ascii_lowercase) {
            return Err("lower-case escape".into());
        }
    }
    Ok(())
}

#[test]
fn path_confusion_table() {
    let origins: Vec<Origin> = [
        "rest-server",
        "kubernetes",
        "webhdfs",
        "prometheus",
        "kubernetes-dashboard",
        "yarn",
        "grafana",
        "portal",
    ]
    .into_iter()
    .map(Origin::start)
    .collect();
    let by = |n: &str| origins.iter().find(|o| o.name == n).unwrap();
    let env = [
        ("REST_SERVER_URI", by("rest-server").uri()),
        ("K8S_API_SERVER_URI", by("kubernetes").uri()),
        ("WEBHDFS_URI", by("webhdfs").uri()),
        (
            "PROMETHEUS_URI",
            format!("{}/prometheus", by("prometheus").uri()),
        ),
        ("K8S_DASHBOARD_URI", by("kubernetes-dashboard").uri()),
        ("YARN_WEB_PORTAL_URI", by("yarn").uri()),
        ("GRAFANA_URI", by("grafana").uri()),
        ("PAI_WEB_PORTAL_URI", by("portal").uri()),
    ];
    let pylon = Pylon::start("", &env);
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let quiet = || {
        let deadline = Instant::now() + Duration::from_secs(2);
        while origins.iter().any(Origin::busy) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    };
    for &(class, target) in PATHS {
        quiet();
        for o in &origins {
            o.clear();
        }
        let raw = format!("GET {target} HTTP/1.1\r\nHost: pylon.test\r\nConnection: close\r\n\r\n");
        let t = talk(pylon.addr(), raw.as_bytes());
        let all: Vec<&Origin> = origins.iter().collect();
        let got: Vec<(&str, Seen)> = settled(&all, &t)
            .into_iter()
            .filter(|(_, s)| !s.is_empty())
            .collect();
        let status = t.replies.first().map_or(0, |r| r.status);
        let check = || -> Result<Row, String> {
            let mut row = Row {
                class,
                target,
                status,
                route: None,
                upstream: None,
            };
            match got.as_slice() {
                [] => {
                    if status == 200 || status == 0 {
                        return Err(format!("status {status} but no upstream got it"));
                    }
                    Ok(row)
                }
                [(origin, s)]
                    if s.requests.len() == 1 && s.partial.is_empty() && s.malformed.is_empty() =>
                {
                    let g = &s.requests[0];
                    let prefix = g.one("x-forwarded-prefix");
                    let &(route, pub_prefix, route_origin, base) = ROUTES
                        .iter()
                        .find(|(_, p, ..)| {
                            prefix.as_deref() == Some(*p) || (prefix.is_none() && *p == "/")
                        })
                        .ok_or_else(|| format!("X-Forwarded-Prefix {prefix:?} names no route"))?;
                    if route_origin != *origin {
                        return Err(format!("route {route} answered by the {origin} upstream"));
                    }
                    if status != 200 || t.replies[0].header("x-origin").as_deref() != Some(origin) {
                        return Err(format!("client got {status}, not the upstream's answer"));
                    }
                    let path = g.path();
                    check_upstream_path(path)?;
                    let rest = path
                        .strip_prefix(base)
                        .ok_or_else(|| format!("{path} lacks the base path {base}"))?;
                    let normalised = if pub_prefix == "/" {
                        rest.to_string()
                    } else {
                        format!("{pub_prefix}{rest}")
                    };
                    let want = expected_route(&normalised);
                    if want != route {
                        return Err(format!(
                            "{normalised} belongs to route {want}, went to {route}"
                        ));
                    }
                    let sent_query = target.split_once('?').map(|(_, q)| q);
                    let got_query = g.target.split_once('?').map(|(_, q)| q);
                    if sent_query != got_query {
                        return Err(format!("query {sent_query:?} arrived as {got_query:?}"));
                    }
                    row.route = Some(route);
                    row.upstream = Some(g.target.clone());
                    Ok(row)
                }
                _ => Err(format!("upstreams got {}", describe_seen(&got))),
            }
        };
        match check() {
            Ok(row) => {
                eprintln!(
                    "path | {target:<48} | {status} {} {}",
                    row.route.unwrap_or("-"),
                    row.upstream.as_deref().unwrap_or("-")
                );
                rows.push(row);
            }
            Err(e) => failures.push(format!("{target}: {e}; client: {}", t.describe())),
        }
    }
    assert!(
        failures.is_empty(),
        "path invariants broken:\n{}",
        failures.join("\n")
    );

    let text = render(&rows);
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/path-confusion.md");
    if std::env::var("PYLON_WRITE_DOCS").as_deref() == Ok("1") {
        std::fs::write(&file, &text).expect("write docs/path-confusion.md");
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == text,
        "{} is not what Pylon does now; regenerate it with PYLON_WRITE_DOCS=1 cargo test --release --test smuggling path_confusion and review the diff. Current table:\n{text}",
        file.display()
    );
}

// ------------------------------------------------------- HTTP/2 downgrade

/// A minimal HTTP/2 client over TLS: enough framing and HPACK to send
/// exactly the bytes a test wants (an h2 library would refuse to send most
/// of them) and to tell how Pylon answered each stream.
mod h2 {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::path::Path;
    use std::time::{Duration, Instant};

    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn integer(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut n: usize) {
        let max = (1usize << prefix_bits) - 1;
        if n < max {
            out.push(first | n as u8);
            return;
        }
        out.push(first | max as u8);
        n -= max;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }

    /// Header fields as HPACK literals without indexing or Huffman coding,
    /// so every byte of a name or value goes on the wire as given.
    pub fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0x00);
            integer(&mut out, 0, 7, name.len());
            out.extend_from_slice(name);
            integer(&mut out, 0, 7, value.len());
            out.extend_from_slice(value);
        }
        out
    }

    /// How Pylon ended a stream.
    #[derive(Debug, Default, Clone)]
    pub struct Outcome {
        pub status: Option<u16>,
        /// The status could not be read (HPACK state this client lacks).
        pub status_unknown: bool,
        pub body: Vec<u8>,
        pub reset: Option<u32>,
        pub goaway: Option<u32>,
        pub closed: bool,
        pub ended: bool,
    }

    impl Outcome {
        pub fn describe(&self) -> String {
            let mut s = Vec::new();
            match (self.status, self.status_unknown) {
                (Some(st), _) => s.push(format!("{st}")),
                (None, true) => s.push("answered (status not decoded)".to_string()),
                _ => {}
            }
            if let Some(e) = self.reset {
                s.push(format!("RST_STREAM {e:#x}"));
            }
            if let Some(e) = self.goaway {
                s.push(format!("GOAWAY {e:#x}"));
            }
            if self.closed {
                s.push("closed".to_string());
            }
            if s.is_empty() {
                s.push("HUNG".to_string());
            }
            s.join(", ")
        }

        /// Pylon refused the stream: reset, GOAWAY, close, or a 4xx.
        pub fn refused(&self) -> bool {
            self.reset.is_some()
                || self.goaway.is_some()
                || (self.closed && self.status.is_none())
                || self.status.is_some_and(|s| (400..500).contains(&s))
        }
    }

    /// RFC 7541 Appendix B codes of the ten digits, enough for a status.
    const DIGITS: [(u32, u8); 10] = [
        (0b00000, 5),
        (0b00001, 5),
        (0b00010, 5),
        (0b011001, 6),
        (0b011010, 6),
        (0b011011, 6),
        (0b011100, 6),
        (0b011101, 6),
        (0b011110, 6),
        (0b011111, 6),
    ];

    fn huffman_digits(bytes: &[u8]) -> Option<String> {
        let mut out = String::new();
        let (mut acc, mut bits) = (0u32, 0u8);
        let mut input = bytes
            .iter()
            .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1));
        loop {
            let found = DIGITS
                .iter()
                .position(|&(code, len)| bits == len && acc == code);
            if let Some(d) = found {
                out.push((b'0' + d as u8) as char);
                acc = 0;
                bits = 0;
                continue;
            }
            match input.next() {
                Some(bit) => {
                    acc = acc << 1 | u32::from(bit);
                    bits += 1;
                    if bits > 7 {
                        return None;
                    }
                }
                // What is left must be the all-ones padding.
                None => return (acc == (1 << bits) - 1).then_some(out),
            }
        }
    }

    /// `:status` from the start of a response header block: the static
    /// table entries, or a literal with the `:status` name.
    fn status(block: &[u8]) -> Option<u16> {
        let mut i = 0;
        while block.get(i).is_some_and(|b| b & 0xe0 == 0x20) {
            i += 1; // dynamic table size update (small values only)
        }
        let b = *block.get(i)?;
        const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
        if b & 0x80 != 0 {
            let idx = (b & 0x7f) as usize;
            return (8..=14).contains(&idx).then(|| STATIC[idx - 8]);
        }
        let idx = if b & 0xc0 == 0x40 { b & 0x3f } else { b & 0x0f };
        if !(8..=14).contains(&idx) {
            return None;
        }
        let len_byte = *block.get(i + 1)?;
        let len = (len_byte & 0x7f) as usize;
        let value = block.get(i + 2..i + 2 + len)?;
        let text = if len_byte & 0x80 != 0 {
            huffman_digits(value)?
        } else {
            String::from_utf8(value.to_vec()).ok()?
        };
        text.parse().ok()
    }

    pub struct Conn {
        tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
        buf: Vec<u8>,
        pub closed: bool,
        pub goaway: Option<u32>,
    }

    impl Conn {
        /// TLS to `addr` as `localhost`, ALPN h2, then the client preface.
        pub fn open(addr: SocketAddr, ca_file: &Path) -> Conn {
            let mut tls = crate::common::tls_client(addr, ca_file, b"h2");
            tls.sock
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            tls.sock
                .set_write_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .expect("TLS handshake with Pylon");
            assert_eq!(
                tls.conn.alpn_protocol(),
                Some(&b"h2"[..]),
                "Pylon did not offer HTTP/2 through ALPN"
            );
            tls.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
            Conn {
                tls,
                buf: Vec::new(),
                closed: false,
                goaway: None,
            }
        }

        /// Writes raw frames; a connection Pylon already closed is an outcome.
        pub fn send(&mut self, bytes: &[u8]) {
            if self
                .tls
                .write_all(bytes)
                .and_then(|()| self.tls.flush())
                .is_err()
            {
                self.closed = true;
            }
        }

        fn next_frame(&mut self, deadline: Instant) -> Option<(u8, u8, u32, Vec<u8>)> {
            loop {
                if self.buf.len() >= 9 {
                    let len = (self.buf[0] as usize) << 16
                        | (self.buf[1] as usize) << 8
                        | self.buf[2] as usize;
                    if self.buf.len() >= 9 + len {
                        let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                        let stream = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                        return Some((f[3], f[4], stream, f[9..].to_vec()));
                    }
                }
                if self.closed || Instant::now() > deadline {
                    return None;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = self
                    .tls
                    .sock
                    .set_read_timeout(Some(left.max(Duration::from_millis(10))));
                let mut chunk = [0u8; 16 * 1024];
                match self.tls.read(&mut chunk) {
                    Ok(0) => self.closed = true,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => self.closed = true,
                }
            }
        }

        /// Reads until `stream` ends (or the connection does, or `limit`).
        pub fn outcome(&mut self, stream: u32, limit: Duration) -> Outcome {
            let deadline = Instant::now() + limit;
            let mut out = Outcome::default();
            let mut headers_seen = false;
            while !out.ended {
                let Some((kind, flags, id, payload)) = self.next_frame(deadline) else {
                    break;
                };
                match kind {
                    SETTINGS if flags & 1 == 0 => self.send(&frame(SETTINGS, 1, 0, &[])),
                    GOAWAY if payload.len() >= 8 => {
                        let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                        self.goaway = Some(code);
                        out.goaway = Some(code);
                        let last =
                            u32::from_be_bytes(payload[..4].try_into().unwrap()) & 0x7fff_ffff;
                        if last < stream {
                            out.ended = true;
                        }
                    }
                    HEADERS if id == stream => {
                        if !headers_seen {
                            // PADDED and PRIORITY are never set by Pylon's encoder.
                            out.status = status(&payload);
                            out.status_unknown = out.status.is_none();
                            headers_seen = true;
                        }
                        out.ended |= flags & END_STREAM != 0;
                    }
                    DATA if id == stream => {
                        out.body.extend_from_slice(&payload);
                        out.ended |= flags & END_STREAM != 0;
                    }
                    RST_STREAM if id == stream && payload.len() >= 4 => {
                        out.reset = Some(u32::from_be_bytes(payload[..4].try_into().unwrap()));
                        out.ended = true;
                    }
                    _ => {}
                }
            }
            out.closed = self.closed;
            out
        }
    }
}

/// Pylon with an HTTPS listener offering HTTP/2, on the usual strict origins.
struct H2Rig {
    rig: Rig,
    ca: common::TestCa,
    tls: SocketAddr,
}

impl H2Rig {
    fn start() -> H2Rig {
        let ca = common::TestCa::new();
        let port = common::free_port();
        let rig = Rig::with(&format!(
            "tls:\n  listen: [\"127.0.0.1:{port}\"]\n  cert: {}\n  key: {}\n",
            ca.cert_file.display(),
            ca.key_file.display()
        ));
        H2Rig {
            rig,
            ca,
            tls: ([127, 0, 0, 1], port).into(),
        }
    }

    fn open(&self) -> h2::Conn {
        h2::Conn::open(self.tls, &self.ca.ca_file)
    }
}

/// One HEADERS frame (and optional DATA) on stream 1 of a new connection.
struct H2Case {
    name: &'static str,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    data: Option<Vec<u8>>,
    /// The request the origin may get, as (target, body); `None`: nothing.
    may_forward: Option<(&'static str, Vec<u8>)>,
    /// The stream must be refused (reset, GOAWAY, close or 4xx).
    must_refuse: bool,
}

fn h2_request(method: &str, path: &str, extra: &[(&str, &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut f: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b":method".to_vec(), method.as_bytes().to_vec()),
        (b":scheme".to_vec(), b"https".to_vec()),
        (b":authority".to_vec(), HOST.as_bytes().to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
    ];
    f.extend(
        extra
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec())),
    );
    f
}

/// RFC 9113 §8.2.2 and §8.1.1: connection-specific fields and a length
/// that does not match the DATA make an HTTP/2 request malformed. Turned
/// into HTTP/1.1 upstream without those checks, they become the classic
/// h2 → h1 desyncs: a `Transfer-Encoding` or short `Content-Length` that
/// the upstream frames differently from Pylon, or CRLF in a value that the
/// h1 serialisation turns into new header lines.
#[test]
fn http2_requests_are_not_smuggled_into_http1() {
    let h = H2Rig::start();
    let rig = &h.rig;
    let smuggle = format!("0\r\n\r\n{HIDDEN}");
    let cases = vec![
        H2Case {
            name: "control: GET",
            fields: h2_request("GET", "/rest-server/h2", &[]),
            data: None,
            may_forward: Some(("/h2", Vec::new())),
            must_refuse: false,
        },
        H2Case {
            name: "control: POST with matching content-length",
            fields: h2_request("POST", "/rest-server/h2", &[("content-length", b"5")]),
            data: Some(b"hello".to_vec()),
            may_forward: Some(("/h2", b"hello".to_vec())),
            must_refuse: false,
        },
        H2Case {
            name: "content-length shorter than DATA",
            fields: h2_request("POST", "/rest-server/h2", &[("content-length", b"5")]),
            data: Some(format!("hello{HIDDEN}").into_bytes()),
            may_forward: None,
            must_refuse: true,
        },
        H2Case {
            name: "content-length longer than DATA",
            fields: h2_request("POST", "/rest-server/h2", &[("content-length", b"500")]),
            data: Some(b"hello".to_vec()),
            may_forward: None,
            must_refuse: true,
        },
        H2Case {
            name: "transfer-encoding: chunked in h2",
            fields: h2_request(
                "POST",
                "/rest-server/h2",
                &[("transfer-encoding", b"chunked")],
            ),
            data: Some(smuggle.clone().into_bytes()),
            may_forward: Some(("/h2", smuggle.clone().into_bytes())),
            must_refuse: false,
        },
        H2Case {
            name: "connection: keep-alive in h2",
            fields: h2_request("GET", "/rest-server/h2", &[("connection", b"keep-alive")]),
            data: None,
            may_forward: Some(("/h2", Vec::new())),
            must_refuse: false,
        },
        H2Case {
            name: "upgrade: h2c in h2",
            fields: h2_request("GET", "/rest-server/h2", &[("upgrade", b"h2c")]),
            data: None,
            may_forward: Some(("/h2", Vec::new())),
            must_refuse: false,
        },
        H2Case {
            name: "CRLF and a field in a value",
            fields: h2_request(
                "GET",
                "/rest-server/h2",
                &[("x-a", b"a\r\nTransfer-Encoding: chunked")],
            ),
            data: None,
            may_forward: None,
            must_refuse: true,
        },
        H2Case {
            name: "bare LF in a value",
            fields: h2_request("GET", "/rest-server/h2", &[("x-a", b"a\nx-injected: 1")]),
            data: None,
            may_forward: None,
            must_refuse: true,
        },
        H2Case {
            name: "NUL in a value",
            fields: h2_request("GET", "/rest-server/h2", &[("x-a", b"a\0b")]),
            data: None,
            may_forward: None,
            must_refuse: true,
        },
        H2Case {
            name: "CRLF in a name",
            fields: h2_request("GET", "/rest-server/h2", &[("x-a\r\nx-injected", b"1")]),
            data: None,
            may_forward: None,
            must_refuse: true,
        },
        H2Case {
            name: "request line and a request in :path",
            fields: h2_request(
                "GET",
                &format!("/rest-server/h2 HTTP/1.1\r\nHost: pylon.test\r\n\r\n{HIDDEN}"),
                &[],
            ),
            data: None,
            may_forward: None,
            must_refuse: true,
        },
        H2Case {
            name: "space in :path",
            fields: h2_request("GET", "/rest-server/h2 x", &[]),
            data: None,
            may_forward: Some(("/h2%20x", Vec::new())),
            must_refuse: false,
        },
        H2Case {
            name: "request in :method",
            fields: h2_request(
                "GET /kubernetes/smuggled HTTP/1.1\r\nHost: pylon.test\r\n\r\nGET",
                "/rest-server/h2",
                &[],
            ),
            data: None,
            may_forward: None,
            must_refuse: true,
        },
        H2Case {
            name: "absolute URL in :path",
            fields: h2_request("GET", &format!("http://{}/", rig.origin("evil").addr), &[]),
            data: None,
            may_forward: None,
            must_refuse: true,
        },
        H2Case {
            name: ":authority of an unconfigured host",
            fields: {
                let evil = rig.origin("evil").addr.to_string();
                let mut f = h2_request("GET", "/rest-server/h2", &[]);
                f[2].1 = evil.into_bytes();
                f
            },
            data: None,
            may_forward: Some(("/h2", Vec::new())),
            must_refuse: false,
        },
        H2Case {
            name: "upper-case field name",
            fields: h2_request("GET", "/rest-server/h2", &[("X-Upper", b"1")]),
            data: None,
            may_forward: None,
            must_refuse: true,
        },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        rig.clear();
        let mut conn = h.open();
        let fields: Vec<(&[u8], &[u8])> = c
            .fields
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        let end = if c.data.is_none() { h2::END_STREAM } else { 0 };
        conn.send(&h2::frame(
            h2::HEADERS,
            h2::END_HEADERS | end,
            1,
            &h2::block(&fields),
        ));
        if let Some(d) = &c.data {
            conn.send(&h2::frame(h2::DATA, h2::END_STREAM, 1, d));
        }
        let out = conn.outcome(1, HANG);
        // An empty Talk: the stream's answer is judged from `out`.
        let t = Talk {
            closed: true,
            ..Talk::default()
        };
        let seen = rig.seen(&t);
        let observed = format!("client: {}; {}", out.describe(), describe_seen(&seen));
        eprintln!("h2 | {:<44} | {observed}", c.name);
        let check = || -> Result<(), String> {
            universal(&seen, &t)?;
            let requests: Vec<(&str, &Got)> = seen
                .iter()
                .flat_map(|(n, s)| s.requests.iter().map(move |g| (*n, g)))
                .collect();
            match (requests.as_slice(), &c.may_forward) {
                ([], _) => {
                    if !out.refused() {
                        return Err("nothing forwarded, yet the stream was not refused".into());
                    }
                }
                ([("rest-server", g)], Some((target, body)))
                    if g.target == *target && g.body == *body =>
                {
                    if c.must_refuse {
                        return Err("forwarded a request that must be refused".into());
                    }
                    if out.status != Some(200) && !out.status_unknown {
                        return Err("the client did not get the upstream's answer".into());
                    }
                    for hop in ["connection", "keep-alive", "upgrade", "te", "x-injected"] {
                        if !g.all(hop).is_empty() {
                            return Err(format!("{hop} reached the upstream"));
                        }
                    }
                }
                _ => return Err("the origins got something else".into()),
            }
            if seen.iter().any(|(_, s)| !s.partial.is_empty()) && c.may_forward.is_some() {
                return Err("a partial request reached an origin".into());
            }
            Ok(())
        };
        if let Err(e) = check() {
            failures.push(format!("{}: {e}; {observed}", c.name));
        }
    }
    rig.assert_alive();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// CVE-2023-44487 (rapid reset) and the CONTINUATION flood: streams opened
/// and cancelled as fast as the client can write, and a header block that
/// never ends. Pylon must survive both, stop the connection rather than
/// work without bound, and never send an upstream anything malformed.
#[test]
fn http2_rapid_reset_and_continuation_flood_are_survived() {
    let h = H2Rig::start();
    let rig = &h.rig;

    rig.clear();
    let mut conn = h.open();
    let fields = h2_request("GET", "/rest-server/rr", &[]);
    let fields: Vec<(&[u8], &[u8])> = fields.iter().map(|(n, v)| (&n[..], &v[..])).collect();
    let block = h2::block(&fields);
    let streams: u32 = 2000;
    let mut burst = Vec::new();
    for i in 0..streams {
        let id = 2 * i + 1;
        burst.extend(h2::frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            id,
            &block,
        ));
        burst.extend(h2::frame(h2::RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let started = Instant::now();
    conn.send(&burst);
    let last = 2 * streams + 1;
    conn.send(&h2::frame(
        h2::HEADERS,
        h2::END_HEADERS | h2::END_STREAM,
        last,
        &block,
    ));
    let out = conn.outcome(last, Duration::from_secs(10));
    let t = Talk {
        closed: true,
        ..Talk::default()
    };
    let seen = rig.seen(&t);
    let forwarded: usize = seen.iter().map(|(_, s)| s.requests.len()).sum();
    eprintln!(
        "h2 | rapid reset, {streams} streams in {:?}        | last stream: {}; {forwarded} requests upstream",
        started.elapsed(),
        out.describe()
    );
    universal(&seen, &t).unwrap();
    assert!(
        seen.iter()
            .flat_map(|(_, s)| &s.requests)
            .all(|g| g.target == "/rr" && g.method == "GET"),
        "{}",
        describe_seen(&seen)
    );
    rig.assert_alive();

    // A header block continued forever, without END_HEADERS.
    rig.clear();
    let mut conn = h.open();
    let started = Instant::now();
    conn.send(&h2::frame(h2::HEADERS, 0, 1, &block));
    let filler = h2::block(&[(&b"x-filler"[..], &[b'a'; 4000][..])]);
    let mut sent = 0usize;
    while sent < 64 << 20 && !conn.closed && started.elapsed() < Duration::from_secs(10) {
        let mut batch = Vec::new();
        for _ in 0..64 {
            batch.extend(h2::frame(h2::CONTINUATION, 0, 1, &filler));
        }
        sent += batch.len();
        conn.send(&batch);
    }
    let out = conn.outcome(1, Duration::from_secs(5));
    let t = Talk {
        closed: true,
        ..Talk::default()
    };
    let seen = rig.seen(&t);
    eprintln!(
        "h2 | CONTINUATION flood: {} KiB sent in {:?}  | {}; {}",
        sent >> 10,
        started.elapsed(),
        out.describe(),
        describe_seen(&seen)
    );
    universal(&seen, &t).unwrap();
    assert!(
        seen.iter().all(|(_, s)| s.is_empty()),
        "an unfinished header block reached an origin: {}",
        describe_seen(&seen)
    );
    assert!(
        out.refused() || conn.closed,
        "Pylon took 64 MiB of CONTINUATION without stopping the connection: {}",
        out.describe()
    );
    rig.assert_alive();
}
