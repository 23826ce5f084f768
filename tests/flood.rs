//! A connection flood against the shipped limits: `limits.max_connections`
//! client connections, half idle after one keep-alive request and half
//! stalled in the middle of a request head, must fit in the memory limit of
//! `deploy/kubernetes/daemonset.yaml` with a margin, leave room for a normal
//! client, and give the memory back once they close.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{admin_get, series_value, Client, Pylon, Upstream};

/// RSS with the flood open must stay below this share of the memory limit.
const MARGIN: f64 = 0.75;

fn repo_file(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// `max_connections:` of the shipped conf/pylon.yaml.
fn shipped_max_connections() -> usize {
    repo_file("conf/pylon.yaml")
        .lines()
        .find_map(|l| l.trim().strip_prefix("max_connections:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("max_connections in conf/pylon.yaml")
}

/// The container's memory limit in the DaemonSet, in KiB.
fn daemonset_memory_limit_kib() -> u64 {
    let text = repo_file("deploy/kubernetes/daemonset.yaml");
    let mut in_limits = false;
    for line in text.lines() {
        let t = line.trim();
        if t == "limits:" {
            in_limits = true;
        } else if in_limits {
            if let Some(v) = t.strip_prefix("memory:") {
                let mi: u64 = v
                    .trim()
                    .strip_suffix("Mi")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("memory limit {v:?} is not in Mi"));
                return mi * 1024;
            }
        }
    }
    panic!("no resources.limits.memory in deploy/kubernetes/daemonset.yaml");
}

/// Raises this process's open-file limit to its hard limit (Pylon, started
/// from here, inherits it) and returns the new soft limit.
fn raise_fd_limit() -> u64 {
    #[repr(C)]
    struct Rlimit {
        cur: u64,
        max: u64,
    }
    extern "C" {
        fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
        fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
    }
    const RLIMIT_NOFILE: i32 = 7;
    let mut r = Rlimit { cur: 0, max: 0 };
    // SAFETY: plain libc calls on a local struct of the C layout.
    unsafe {
        assert_eq!(getrlimit(RLIMIT_NOFILE, &mut r), 0);
        r.cur = r.max;
        assert_eq!(setrlimit(RLIMIT_NOFILE, &r), 0);
    }
    r.cur
}

fn get_on(c: &mut Client) {
    c.send(b"GET /rest-server/flood HTTP/1.1\r\nHost: pylon.test\r\n\r\n")
        .unwrap();
    let r = c
        .read_final_response(false)
        .expect("answer on a flood connection");
    assert_eq!(r.status, 200);
}

#[test]
fn max_connections_fit_in_the_memory_limit_and_the_memory_comes_back() {
    let max = shipped_max_connections();
    let limit_kib = daemonset_memory_limit_kib();
    let fds = raise_fd_limit();
    assert!(
        fds as usize > max + 200,
        "open-file hard limit {fds} is too low for {max} connections"
    );
    let up = Upstream::start("rest-server");
    // The shipped limits (no `limits:` here), the REST server route only.
    let p = Pylon::start("access_log: off\n", &[("REST_SERVER_URI", up.uri())]);
    for _ in 0..20 {
        assert_eq!(p.get("/rest-server/warm-up").status, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    let idle_kib = p.rss_kib();

    // One slot is left for the normal client below.
    let flood = max - 1;
    let started = Instant::now();
    let mut idle = Vec::with_capacity(flood / 2);
    for _ in 0..flood / 2 {
        let mut c = Client::connect(p.addr());
        get_on(&mut c);
        idle.push(c);
    }
    // Stalled heads last: header_timeout (10 s) runs from their accept.
    let mut heads = Vec::with_capacity(flood - flood / 2);
    for _ in flood / 2..flood {
        let mut s = TcpStream::connect(p.addr()).expect("connect");
        s.write_all(b"GET /rest-server/slow HTTP/1.1\r\nHost: pylon.test\r\nX-Slow: ")
            .unwrap();
        heads.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let flood_kib = p.rss_kib();
    let refused = series_value(
        &admin_get(&p, "/metrics").text(),
        "pylon_connections_refused_total",
        &[],
    );
    assert_eq!(refused, Some(0.0), "flood connections were refused");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the flood took {:?}: stalled heads may have timed out",
        started.elapsed()
    );

    // A normal client, in the last slot.
    let normal = p.get("/rest-server/normal");
    assert_eq!(normal.status, 200, "a normal client was not served");
    // And on one of the idle keep-alive connections.
    get_on(&mut idle[0]);

    let per_conn = (flood_kib.saturating_sub(idle_kib)) as f64 / flood as f64;
    eprintln!(
        "flood: {flood} connections: idle {idle_kib} KiB, with them {flood_kib} KiB \
         ({per_conn:.1} KiB each), limit {limit_kib} KiB"
    );
    assert!(
        (flood_kib as f64) < limit_kib as f64 * MARGIN,
        "RSS {flood_kib} KiB with {flood} connections is above {MARGIN} of the \
         DaemonSet's memory limit ({limit_kib} KiB)"
    );

    drop(idle);
    drop(heads);
    let closed = Instant::now();
    let mut after_kib = p.rss_kib();
    while after_kib > 2 * idle_kib && closed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        after_kib = p.rss_kib();
    }
    eprintln!(
        "flood: {after_kib} KiB {:?} after the connections closed",
        closed.elapsed()
    );
    assert!(
        after_kib <= 2 * idle_kib,
        "RSS {after_kib} KiB 5 s after the flood closed; idle was {idle_kib} KiB"
    );
    assert_eq!(p.get("/rest-server/after").status, 200);
}
