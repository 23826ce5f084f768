//! Load helpers for `bench/run.sh` that wrk cannot provide:
//!
//! ```text
//! loadgen rate   --addr A --path P --rate R --conns C --secs S [--warmup W]
//! loadgen upload --addr A --path P --bytes N
//! loadgen hold   --addr A --path P --conns N [--heads H]
//! ```
//!
//! `rate` is an open-loop generator in the style of wrk2: every connection
//! has its own fixed schedule and each latency is measured from the moment
//! the request was *due*, not from when it was sent, so a stall in the
//! server is charged to every request it delayed (no coordinated omission).
//! `upload` streams N bytes with a Content-Length and times the exchange.
//! `hold` opens N keep-alive connections, completes one request on each and
//! keeps them open until stdin closes, so the caller can read the server's
//! memory with those connections alive; with `--heads H`, H of the N send
//! only the start of a request head instead (a slow or stalled client).
//!
//! Results are one JSON object on stdout.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

extern "C" {
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
}
const PR_SET_TIMERSLACK: i32 = 29;

/// The default 50 µs timer slack would add up to 50 µs to every scheduled
/// send, which is the same order as the latency being measured.
fn tighten_timer_slack() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes plain integers and only affects
    // the calling thread.
    unsafe {
        prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
    }
}

struct Args(HashMap<String, String>);

impl Args {
    fn parse(raw: &[String]) -> Result<Args, String> {
        let mut map = HashMap::new();
        let mut it = raw.iter();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --flag, got {k:?}"))?;
            let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_string(), v.clone());
        }
        Ok(Args(map))
    }

    fn str(&self, k: &str) -> Result<String, String> {
        self.0.get(k).cloned().ok_or_else(|| format!("--{k} is required"))
    }

    fn num<T: std::str::FromStr>(&self, k: &str, default: Option<T>) -> Result<T, String> {
        match self.0.get(k) {
            Some(v) => v.parse().map_err(|_| format!("--{k}: not a number: {v:?}")),
            None => default.ok_or_else(|| format!("--{k} is required")),
        }
    }
}

fn connect(addr: &str) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(s)
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pylon-bench\r\n\r\n").into_bytes()
}

struct Response {
    status: u16,
    body_bytes: u64,
    keep_alive: bool,
}

/// An HTTP/1.1 response reader over a reusable buffer.
struct Reader {
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl Reader {
    fn new() -> Reader {
        Reader {
            buf: vec![0; 64 * 1024],
            pos: 0,
            len: 0,
        }
    }

    fn fill(&mut self, s: &mut TcpStream) -> io::Result<()> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.len == self.buf.len() {
            return Err(bad("response head larger than 64 KiB"));
        }
        let n = s.read(&mut self.buf[self.len..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.len += n;
        Ok(())
    }

    /// Returns the line (without CRLF) and consumes it.
    fn line(&mut self, s: &mut TcpStream) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = find(&self.buf[self.pos..self.len], b"\r\n") {
                let l = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 2;
                return Ok(l);
            }
            self.fill(s)?;
        }
    }

    fn skip(&mut self, s: &mut TcpStream, mut n: u64) -> io::Result<()> {
        loop {
            let have = (self.len - self.pos) as u64;
            if have >= n {
                self.pos += n as usize;
                return Ok(());
            }
            n -= have;
            self.pos = 0;
            self.len = 0;
            self.fill(s)?;
        }
    }

    fn response(&mut self, s: &mut TcpStream) -> io::Result<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf[self.pos..self.len], b"\r\n\r\n") {
                break self.pos + i + 4;
            }
            self.fill(s)?;
        };
        let head = std::str::from_utf8(&self.buf[self.pos..head_end])
            .map_err(|_| bad("response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.split(' ');
        let version = parts.next().unwrap_or("");
        let status: u16 = parts
            .next()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("no status code"))?;
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut keep_alive = version == "HTTP/1.1";
        for l in lines {
            let Some((name, value)) = l.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse().map_err(|_| bad("bad Content-Length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
        }
        self.pos = head_end;
        let body_bytes = if chunked {
            let mut total = 0u64;
            loop {
                let l = self.line(s)?;
                let l = std::str::from_utf8(&l).map_err(|_| bad("bad chunk size"))?;
                let hex = l.split(';').next().unwrap_or("").trim();
                let n = u64::from_str_radix(hex, 16).map_err(|_| bad("bad chunk size"))?;
                if n == 0 {
                    // Trailers, then the empty line.
                    while !self.line(s)?.is_empty() {}
                    break total;
                }
                self.skip(s, n)?;
                total += n;
                if !self.line(s)?.is_empty() {
                    return Err(bad("chunk not followed by CRLF"));
                }
            }
        } else if let Some(n) = length {
            self.skip(s, n)?;
            n
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            0
        } else {
            return Err(bad("close-delimited body: not supported"));
        };
        Ok(Response {
            status,
            body_bytes,
            keep_alive,
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

struct ThreadResult {
    latencies_ns: Vec<u64>,
    /// Answered requests including the warm-up, to divide CPU time by.
    answered: u64,
    errors: u64,
    bad_status: u64,
    reconnects: u64,
    late_sends: u64,
}

fn rate(args: &Args) -> Result<String, String> {
    let addr = args.str("addr")?;
    let path = args.str("path")?;
    let rate: f64 = args.num("rate", None)?;
    let conns: usize = args.num("conns", Some(16))?;
    let secs: f64 = args.num("secs", None)?;
    let warmup: f64 = args.num("warmup", Some(1.0))?;
    if rate <= 0.0 || conns == 0 || secs <= warmup {
        return Err("need --rate > 0, --conns > 0 and --secs > --warmup".into());
    }
    let request = Arc::new(get_request(&path));
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    // Connections are opened before the clock starts, so connect time is
    // not charged to the first requests.
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        streams.push(connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?);
    }
    let t0 = Instant::now() + Duration::from_millis(50);
    let measure_from = t0 + Duration::from_secs_f64(warmup);
    let end = t0 + Duration::from_secs_f64(secs);
    let handles: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut stream)| {
            let request = Arc::clone(&request);
            let addr = addr.clone();
            thread::spawn(move || {
                tighten_timer_slack();
                let mut r = ThreadResult {
                    latencies_ns: Vec::new(),
                    answered: 0,
                    errors: 0,
                    bad_status: 0,
                    reconnects: 0,
                    late_sends: 0,
                };
                let mut reader = Reader::new();
                let first = t0 + Duration::from_secs_f64(i as f64 / rate);
                let mut k: u32 = 0;
                loop {
                    let due = first + interval * k;
                    k += 1;
                    if due >= end {
                        break;
                    }
                    let now = Instant::now();
                    if now < due {
                        thread::sleep(due - now);
                    } else if now - due > Duration::from_millis(1) {
                        r.late_sends += 1;
                    }
                    let outcome = stream
                        .write_all(&request)
                        .and_then(|_| reader.response(&mut stream));
                    let done = Instant::now();
                    let reconnect = match outcome {
                        Ok(resp) => {
                            r.answered += 1;
                            if due >= measure_from {
                                r.latencies_ns.push((done - due).as_nanos() as u64);
                                if resp.status != 200 {
                                    r.bad_status += 1;
                                }
                            }
                            !resp.keep_alive
                        }
                        Err(_) => {
                            r.errors += 1;
                            true
                        }
                    };
                    if reconnect {
                        reader = Reader::new();
                        r.reconnects += 1;
                        match connect(&addr) {
                            Ok(s) => stream = s,
                            Err(_) => {
                                r.errors += 1;
                                thread::sleep(Duration::from_millis(10));
                                if let Ok(s) = connect(&addr) {
                                    stream = s;
                                } else {
                                    break;
                                }
                            }
                        }
                    }
                }
                r
            })
        })
        .collect();
    let mut all = Vec::new();
    let (mut errors, mut bad_status, mut reconnects, mut late, mut answered) = (0, 0, 0, 0, 0);
    for h in handles {
        let r = h.join().map_err(|_| "a connection thread panicked".to_string())?;
        all.extend(r.latencies_ns);
        errors += r.errors;
        bad_status += r.bad_status;
        reconnects += r.reconnects;
        late += r.late_sends;
        answered += r.answered;
    }
    all.sort_unstable();
    let n = all.len();
    let mean = if n > 0 {
        all.iter().sum::<u64>() as f64 / n as f64 / 1000.0
    } else {
        0.0
    };
    Ok(format!(
        "{{\"requests\": {n}, \"answered\": {answered}, \"rps\": {:.1}, \"errors\": {errors}, \"bad_status\": {bad_status}, \
         \"reconnects\": {reconnects}, \"late_sends\": {late}, \"mean_us\": {mean:.1}, \
         \"p50_us\": {:.1}, \"p90_us\": {:.1}, \"p99_us\": {:.1}, \"p999_us\": {:.1}, \"max_us\": {:.1}}}",
        n as f64 / (secs - warmup),
        percentile(&all, 50.0),
        percentile(&all, 90.0),
        percentile(&all, 99.0),
        percentile(&all, 99.9),
        percentile(&all, 100.0),
    ))
}

fn upload(args: &Args) -> Result<String, String> {
    let addr = args.str("addr")?;
    let path = args.str("path")?;
    let bytes: u64 = args.num("bytes", None)?;
    let started = Instant::now();
    let mut s = connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(600)))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pylon-bench\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {bytes}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n])
            .map_err(|e| format!("upload cut after {} bytes: {e}", bytes - left))?;
        left -= n as u64;
    }
    let sent = started.elapsed();
    let resp = Reader::new()
        .response(&mut s)
        .map_err(|e| format!("no response: {e}"))?;
    let total = started.elapsed();
    Ok(format!(
        "{{\"bytes\": {bytes}, \"status\": {}, \"send_secs\": {:.3}, \"secs\": {:.3}}}",
        resp.status,
        sent.as_secs_f64(),
        total.as_secs_f64()
    ))
}

fn hold(args: &Args) -> Result<String, String> {
    let addr = args.str("addr")?;
    let path = args.str("path")?;
    let conns: usize = args.num("conns", None)?;
    let heads: usize = args.num("heads", Some(0))?;
    let request = get_request(&path);
    let mut held = Vec::with_capacity(conns);
    let mut reader = Reader::new();
    let mut errors = 0u64;
    // Headers are not complete: the server must keep waiting.
    let head_start = &request[..request.len() - 2];
    for _ in 0..heads.min(conns) {
        match connect(&addr).and_then(|mut s| s.write_all(head_start).map(|()| s)) {
            Ok(s) => held.push(s),
            Err(_) => errors += 1,
        }
    }
    for _ in heads.min(conns)..conns {
        let outcome = connect(&addr).and_then(|mut s| {
            s.write_all(&request)?;
            let r = reader.response(&mut s)?;
            Ok((s, r))
        });
        match outcome {
            Ok((s, r)) if r.status == 200 && r.keep_alive && r.body_bytes > 0 => held.push(s),
            _ => errors += 1,
        }
        reader = Reader::new();
    }
    println!("{{\"held\": {}, \"errors\": {errors}}}", held.len());
    io::stdout().flush().map_err(|e| e.to_string())?;
    // The caller measures now; closing stdin releases the connections.
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    drop(held);
    Ok(String::new())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = argv.split_first() else {
        eprintln!("usage: loadgen rate|upload|hold --flag value ...");
        return ExitCode::from(2);
    };
    let result = Args::parse(rest).and_then(|a| match mode.as_str() {
        "rate" => rate(&a),
        "upload" => upload(&a),
        "hold" => hold(&a),
        m => Err(format!("unknown mode {m:?}")),
    });
    match result {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
