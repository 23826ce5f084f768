//! An upstream that answers as a test scripts it: a handler turns each
//! request (recorded with its body) into a status, headers and a body that
//! can be sent whole, dribbled a byte per write, chunked a byte per chunk,
//! or streamed from a repeated unit. Keep-alive, `HTTP/1.0` and
//! `Connection: close`, `100 Continue` before an expected body, chunked and
//! sized request bodies, as a real origin would.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::{find_header, has_token, Conn, IO_TIMEOUT};

/// One request as a fixture received it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// How a fixture puts a body on the wire.
#[derive(Debug, Clone)]
pub enum Body {
    /// In one write, with `Content-Length`.
    Whole(Vec<u8>),
    /// With `Content-Length`, one byte per write and a pause after each, so
    /// that Pylon reads it in the smallest pieces TCP can deliver.
    OneBytePerWrite(Vec<u8>),
    /// Chunked, one byte per chunk and one chunk per write.
    OneBytePerChunk(Vec<u8>),
    /// `head`, `unit` `count` times, `tail`, with `Content-Length`; streamed
    /// from a small buffer, never held whole.
    Repeated {
        head: Vec<u8>,
        unit: Vec<u8>,
        count: usize,
        tail: Vec<u8>,
    },
}

impl Body {
    pub fn len(&self) -> usize {
        match self {
            Body::Whole(b) | Body::OneBytePerWrite(b) | Body::OneBytePerChunk(b) => b.len(),
            Body::Repeated {
                head,
                unit,
                count,
                tail,
            } => head.len() + unit.len() * count + tail.len(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Whole(Vec::new()),
        }
    }

    pub fn typed(content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::new(200)
            .with("Content-Type", content_type)
            .body(Body::Whole(body.into()))
    }

    pub fn html(body: impl Into<Vec<u8>>) -> Reply {
        Reply::typed("text/html; charset=utf-8", body)
    }

    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply::new(status)
            .with("Location", location)
            .with("Content-Type", "text/html; charset=utf-8")
            .body(Body::Whole(
                format!("<a href=\"{location}\">moved</a>\n").into_bytes(),
            ))
    }

    pub fn with(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: Body) -> Reply {
        self.body = body;
        self
    }

    pub fn status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }
}

pub type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

/// An HTTP/1.1 server on a loopback address that records every request
/// and answers with what its handler returns. It sends `100 Continue`
/// before reading a body that was announced with `Expect`, as Hadoop's
/// datanode does.
pub struct Site {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Req>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

/// Long enough for each dribbled byte to leave in its own segment and be
/// read on its own, short enough that a 2 KB page takes well under a second.
const DRIBBLE_PAUSE: Duration = Duration::from_micros(200);

impl Site {
    pub fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Site {
        Site::start_on(Ipv4Addr::LOCALHOST, handler)
    }

    pub fn start_on(ip: Ipv4Addr, handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Site {
        let listener = TcpListener::bind((ip, 0)).expect("bind fixture");
        let addr = listener.local_addr().expect("fixture address");
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, c, st) = (seen.clone(), connections.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::Relaxed);
                let (h, s) = (handler.clone(), s.clone());
                thread::spawn(move || serve(stream, &*h, &s));
            }
        });
        Site {
            addr,
            seen,
            connections,
            stop,
        }
    }

    /// Fixed answers by exact path; anything else is a 404.
    pub fn pages(pages: Vec<(&'static str, Reply)>) -> Site {
        Site::start(move |req| {
            pages
                .iter()
                .find(|(p, _)| *p == req.path())
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| Reply::typed("text/plain", "no such page\n").status(404))
        })
    }

    /// A service that only has to exist: its URI appears in pages.
    pub fn idle() -> Site {
        Site::start(|_| Reply::typed("text/plain", "ok\n"))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn seen(&self) -> Vec<Req> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// Forgets what was received so far.
    pub fn clear(&self) {
        self.seen.lock().expect("seen lock").clear();
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("seen lock").len()
    }

    pub fn last(&self) -> Req {
        self.seen()
            .pop()
            .unwrap_or_else(|| panic!("fixture {} received no request", self.addr))
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        404 => "Not Found",
        _ => "Site",
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Req>>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(stream);
    loop {
        let Ok(Some((line, headers))) = conn.read_head() else {
            return;
        };
        let mut parts = line.splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("").to_string();
        if has_token(&headers, "expect", "100-continue")
            && conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            return;
        }
        let mut body = Vec::new();
        let read = if has_token(&headers, "transfer-encoding", "chunked") {
            conn.read_chunked_with(&mut |b| body.extend_from_slice(b))
        } else {
            match find_header(&headers, "content-length").map(str::parse::<u64>) {
                None => Ok(()),
                Some(Ok(n)) => conn.read_exact_with(n, &mut |b| body.extend_from_slice(b)),
                Some(Err(_)) => return,
            }
        };
        if read.is_err() {
            return;
        }
        let close = version == "HTTP/1.0" || has_token(&headers, "connection", "close");
        let req = Req {
            method,
            target,
            headers,
            body,
        };
        seen.lock().expect("seen lock").push(req.clone());
        let reply = handler(&req);
        if write_reply(conn.get_mut(), &req, reply, close).is_err() || close {
            return;
        }
    }
}

fn write_reply(out: &mut TcpStream, req: &Req, reply: Reply, close: bool) -> std::io::Result<()> {
    let bodiless = reply.status == 204 || reply.status == 304 || reply.status < 200;
    let head_only = req.method == "HEAD";
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    if !bodiless {
        match &reply.body {
            Body::OneBytePerChunk(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
            b => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
        }
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if bodiless || head_only {
        return out.flush();
    }
    match reply.body {
        Body::Whole(b) => out.write_all(&b)?,
        Body::OneBytePerWrite(b) => {
            for byte in b {
                out.write_all(&[byte])?;
                out.flush()?;
                thread::sleep(DRIBBLE_PAUSE);
            }
        }
        Body::OneBytePerChunk(b) => {
            for byte in b {
                let mut chunk = b"1\r\n".to_vec();
                chunk.push(byte);
                chunk.extend_from_slice(b"\r\n");
                out.write_all(&chunk)?;
                out.flush()?;
                thread::sleep(DRIBBLE_PAUSE);
            }
            out.write_all(b"0\r\n\r\n")?;
        }
        Body::Repeated {
            head,
            unit,
            count,
            tail,
        } => {
            out.write_all(&head)?;
            let per_buf = (64 * 1024 / unit.len()).max(1);
            let buf = unit.repeat(per_buf);
            let mut left = count;
            while left > 0 {
                let n = left.min(per_buf);
                out.write_all(&buf[..n * unit.len()])?;
                left -= n;
            }
            out.write_all(&tail)?;
        }
    }
    out.flush()
}
