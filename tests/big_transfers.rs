//! WebHDFS-sized transfers: a 1 GiB upload and a 1 GiB download stream
//! through Pylon byte-exact while its resident memory stays small, also
//! when the receiving side stops reading for a while.
//!
//! The two tests take turns (a shared lock), so their timings and memory
//! peaks are each Pylon's alone.

mod common;

use std::io::Write;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::{for_each_pattern_chunk, pattern_digest, Client, Digest, Pylon, Upstream, GIB};

/// Peak resident memory Pylon may reach while moving a GiB.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// How long the receiving side stops reading, once, mid-transfer.
const PAUSE: Duration = Duration::from_secs(2);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn report(what: &str, p: &Pylon, rss_at_start: u64, took: Duration) -> u64 {
    let peak = p.peak_rss_kib();
    eprintln!(
        "{what}: 1 GiB in {:.2} s including a {} s receiver pause; pylon VmHWM {} KiB (after start {} KiB)",
        took.as_secs_f64(),
        PAUSE.as_secs(),
        peak,
        rss_at_start
    );
    peak
}

#[test]
fn one_gib_upload_streams_through_in_constant_memory() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let webhdfs = Upstream::start("webhdfs");
    let p = Pylon::start("", &[("WEBHDFS_URI", webhdfs.uri())]);
    let rss_at_start = p.peak_rss_kib();

    let mut client = Client::connect(p.addr());
    // The upstream stops reading for a while after 64 MiB: Pylon must stop
    // reading from the client instead of buffering what keeps coming.
    let pause_ms = PAUSE.as_millis();
    let head = format!(
        "PUT /webhdfs/api/v1/user/root/big/__pause/{pause_ms}?op=CREATE&overwrite=true HTTP/1.1\r\n\
         Host: pylon.test\r\nContent-Type: application/octet-stream\r\nContent-Length: {GIB}\r\n\r\n"
    );
    let started = Instant::now();
    client.send(head.as_bytes()).expect("send head");
    for_each_pattern_chunk(GIB, 256 * 1024, |chunk| client.stream().write_all(chunk))
        .expect("Pylon stopped taking the upload");
    let r = client
        .read_final_response(false)
        .expect("response to upload");
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{:?}", r.text());

    let s = webhdfs.last();
    assert_eq!(s.method, "PUT");
    assert_eq!(
        s.target,
        format!("/webhdfs/v1/user/root/big/__pause/{pause_ms}?op=CREATE&overwrite=true")
    );
    assert_eq!(s.body_len, GIB, "upstream received {} bytes", s.body_len);
    assert_eq!(s.body_digest, pattern_digest(GIB), "upload arrived altered");
    assert!(r.text().contains(&format!("\"body_bytes\":{GIB}")));

    let peak = report("upload", &p, rss_at_start, took);
    assert!(
        peak < RSS_LIMIT_KIB,
        "pylon peak RSS {peak} KiB during a 1 GiB upload (limit {RSS_LIMIT_KIB} KiB)"
    );
}

#[test]
fn one_gib_download_streams_through_in_constant_memory() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let webhdfs = Upstream::start("webhdfs");
    let p = Pylon::start("", &[("WEBHDFS_URI", webhdfs.uri())]);
    let rss_at_start = p.peak_rss_kib();

    let mut client = Client::connect(p.addr());
    let started = Instant::now();
    client
        .send(
            format!(
                "GET /webhdfs/api/v1/user/root/big/__bytes/{GIB}?op=OPEN HTTP/1.1\r\nHost: pylon.test\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("send request");
    let mut digest = Digest::default();
    let mut paused = false;
    let r = client
        .read_response_with(false, &mut |chunk| {
            digest.update(chunk);
            // A slow client: Pylon must stop reading from the upstream
            // instead of buffering what keeps coming.
            if !paused && digest.len() >= 64 << 20 {
                paused = true;
                thread::sleep(PAUSE);
            }
        })
        .expect("download through Pylon");
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some(GIB.to_string().as_str()));
    assert_eq!(digest.len(), GIB, "received {} bytes", digest.len());
    assert_eq!(
        digest.finish(),
        pattern_digest(GIB),
        "download arrived altered"
    );
    assert_eq!(
        webhdfs.last().target,
        format!("/webhdfs/v1/user/root/big/__bytes/{GIB}?op=OPEN")
    );

    // The connection is still usable afterwards.
    client
        .send(b"GET /webhdfs/api/v1/?op=LISTSTATUS HTTP/1.1\r\nHost: pylon.test\r\n\r\n")
        .expect("send follow-up");
    assert_eq!(
        client.read_final_response(false).expect("follow-up").status,
        200
    );

    let peak = report("download", &p, rss_at_start, took);
    assert!(
        peak < RSS_LIMIT_KIB,
        "pylon peak RSS {peak} KiB during a 1 GiB download (limit {RSS_LIMIT_KIB} KiB)"
    );
}
