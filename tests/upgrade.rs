//! Zero-downtime upgrade under keep-alive load: busy clients and
//! browser-like clients that sit idle between requests, no client retries.
//! Every request must succeed across repeated binary upgrades, and every old
//! process must be gone soon after its SIGQUIT.
//!
//! Bounded: a fixed number of upgrades a fixed time apart; the clients stop
//! by themselves. `PYLON_UPGRADES` changes the count for a longer soak.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BUSY_CLIENTS: usize = 64;
const IDLE_CLIENTS: usize = 40;
const IDLE_MAX_MS: u64 = 500;
const UPGRADE_EVERY: Duration = Duration::from_secs(3);
const OLD_GONE_WITHIN: Duration = Duration::from_secs(35);

/// A minimal keep-alive upstream that names itself in every answer.
fn start_upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => return,
                });
                let mut writer = stream;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                    name.len()
                );
                loop {
                    let mut line = String::new();
                    // Request headers only: the load is all GETs.
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    if writer.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

struct Setup {
    dir: PathBuf,
    port: u16,
}

impl Setup {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pylon-upgrade-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Setup {
            dir,
            port: free_port(),
        }
    }

    fn write_config(&self, name: &str, portal: SocketAddr) -> PathBuf {
        let path = self.dir.join(name);
        let text = format!(
            "version: 1\nthreads: 2\npid_file: {dir}/pylon.pid\nupgrade_sock: {dir}/upgrade.sock\n\
             grace_period_seconds: 25\ngraceful_shutdown_timeout_seconds: 2\n\
             pylon:\n  listen: [\"127.0.0.1:{port}\"]\n  access_log: off\n  routes:\n    portal:\n      upstream: http://{portal}\n",
            dir = self.dir.display(),
            port = self.port,
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn spawn(&self, config: &Path, upgrade: bool) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pylon"));
        if upgrade {
            cmd.arg("-u");
        }
        cmd.arg("-c").arg(config);
        cmd.env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        cmd.spawn().expect("spawn pylon")
    }
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .is_ok()
            {
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("pylon did not become ready on port {port}");
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    non_2xx: AtomicU64,
    reconnects: AtomicU64,
    bodies: Mutex<Vec<String>>,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() < 20 {
            e.push(what);
        }
    }
}

/// One request on a keep-alive connection: (status, body, server closes?).
fn exchange(reader: &mut BufReader<TcpStream>) -> std::io::Result<(u16, String, bool)> {
    reader
        .get_mut()
        .write_all(b"GET /load HTTP/1.1\r\nHost: pylon.test\r\nUser-Agent: load\r\n\r\n")?;
    let mut status_line = String::new();
    if reader.read_line(&mut status_line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed before response",
        ));
    }
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut length, mut close) = (0usize, false);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed in headers",
            ));
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        } else if lower.starts_with("connection:") && lower.contains("close") {
            close = true;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned(), close))
}

fn client(port: u16, idle: bool, seed: u64, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut rng = seed | 1;
    let mut conn: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = s.set_nodelay(true);
                    tally.reconnects.fetch_add(1, Ordering::Relaxed);
                    conn = Some(BufReader::new(s));
                }
                Err(e) => {
                    tally.fail(format!("connect: {e}"));
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let Some(reader) = conn.as_mut() else {
            continue;
        };
        match exchange(reader) {
            Ok((status, body, close)) => {
                if (200..300).contains(&status) {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                    let mut seen = tally.bodies.lock().unwrap_or_else(|p| p.into_inner());
                    if !seen.contains(&body) {
                        seen.push(body);
                    }
                } else {
                    tally.non_2xx.fetch_add(1, Ordering::Relaxed);
                    tally.fail(format!("status {status}"));
                }
                if close {
                    conn = None;
                }
            }
            Err(e) => {
                tally.fail(format!("request: {e}"));
                conn = None;
            }
        }
        if idle {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            thread::sleep(Duration::from_millis(rng % (IDLE_MAX_MS + 1)));
        }
    }
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .split(") ")
            .nth(1)
            .is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .map(|s| s.success());
    assert_eq!(ok.ok(), Some(true), "kill {sig} {pid}");
}

/// Runs `upgrades` binary upgrades under load; `configs` are used in turn,
/// so alternating two configs is a reload with a config change.
fn upgrade_under_load(
    tag: &str,
    configs: &[PathBuf],
    upgrades: usize,
    setup: &Setup,
) -> Arc<Tally> {
    let mut current = setup.spawn(&configs[0], false);
    wait_ready(setup.port);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for i in 0..BUSY_CLIENTS + IDLE_CLIENTS {
        let (stop, tally) = (stop.clone(), tally.clone());
        let port = setup.port;
        clients.push(thread::spawn(move || {
            client(
                port,
                i >= BUSY_CLIENTS,
                0x9e37_79b9 * (i as u64 + 1),
                stop,
                tally,
            )
        }));
    }

    // Each old process is watched from its SIGQUIT on, so the time it took
    // to exit is measured, not when we got round to looking.
    let mut watchers = Vec::new();
    for n in 0..upgrades {
        thread::sleep(UPGRADE_EVERY);
        let next = setup.spawn(&configs[(n + 1) % configs.len()], true);
        // The new process waits for the sockets on upgrade_sock; give it a
        // moment to bind it before the old one is asked to send.
        thread::sleep(Duration::from_millis(500));
        signal(current.id(), "-QUIT");
        let mut child = std::mem::replace(&mut current, next);
        watchers.push(thread::spawn(move || {
            let quit_at = Instant::now();
            let pid = child.id();
            while alive(pid) && quit_at.elapsed() < OLD_GONE_WITHIN {
                thread::sleep(Duration::from_millis(50));
            }
            let gone = !alive(pid);
            let _ = child.kill();
            let _ = child.wait();
            (pid, gone, quit_at.elapsed())
        }));
    }
    thread::sleep(UPGRADE_EVERY);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    for w in watchers {
        let (pid, gone, after) = w.join().expect("watcher thread");
        eprintln!(
            "[{tag}] old process {pid} {} {:.1}s after SIGQUIT",
            if gone { "exited" } else { "STILL RUNNING" },
            after.as_secs_f64()
        );
        assert!(
            gone,
            "[{tag}] old process {pid} still running {after:?} after SIGQUIT"
        );
    }
    let _ = current.kill();
    let _ = current.wait();

    let (ok, failed, non2xx, reconnects) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.non_2xx.load(Ordering::Relaxed),
        tally.reconnects.load(Ordering::Relaxed),
    );
    eprintln!("[{tag}] {upgrades} upgrades: {ok} ok, {failed} failed ({non2xx} non-2xx), {reconnects} connections");
    let errors = tally
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(
        failed, 0,
        "[{tag}] failed requests; first errors: {errors:?}"
    );
    assert!(ok > 1000, "[{tag}] load too small to mean anything: {ok}");
    tally
}

fn upgrade_count() -> usize {
    std::env::var("PYLON_UPGRADES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

#[test]
fn upgrades_lose_no_request() {
    let setup = Setup::new("plain");
    let config = setup.write_config("pylon.yaml", start_upstream("portal-a"));
    upgrade_under_load("plain", &[config], upgrade_count(), &setup);
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[test]
fn reload_with_changed_config_loses_no_request() {
    let setup = Setup::new("reload");
    let a = setup.write_config("a.yaml", start_upstream("portal-a"));
    let b = setup.write_config("b.yaml", start_upstream("portal-b"));
    let tally = upgrade_under_load("reload", &[a, b], 4, &setup);
    // Both configurations served: the change took effect on each reload.
    let bodies = tally
        .bodies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(
        bodies.contains(&"portal-a".to_string()) && bodies.contains(&"portal-b".to_string()),
        "{bodies:?}"
    );
    let _ = std::fs::remove_dir_all(&setup.dir);
}
