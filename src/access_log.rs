//! Access log lines: nginx-style `combined` (plus Pylon's fields) or JSON
//! lines, one per request, written to stdout.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::AccessLogFormat;

pub struct Entry<'a> {
    pub time: SystemTime,
    pub client: Option<IpAddr>,
    pub method: &'a str,
    pub target: &'a [u8],
    pub version: http::Version,
    /// 0 when nothing was sent (client went away).
    pub status: u16,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration: Duration,
    /// The authority the request named (`:authority` or `Host`, as
    /// `authority.rs` reads it), which Pylon checked and routed on.
    pub host: Option<&'a [u8]>,
    pub route: Option<&'a str>,
    pub upstream: Option<SocketAddr>,
    /// Empty when the request never got as far as Pylon's filters.
    pub request_id: &'a str,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    /// Why a request was refused before it could be routed (a
    /// [`crate::metrics::REFUSALS`] reason); `None` for every other request.
    pub refused: Option<&'a str>,
}

pub fn write(format: AccessLogFormat, e: &Entry) {
    thread_local! {
        // One line buffer per worker thread, reused for every request.
        static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    LINE.with(|line| {
        let Ok(mut out) = line.try_borrow_mut() else {
            return;
        };
        out.clear();
        match format {
            AccessLogFormat::Off => return,
            AccessLogFormat::Combined => combined_into(&mut out, e),
            AccessLogFormat::Json => json_into(&mut out, e),
        }
        // One write per line; a closed stdout must not take requests down.
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
        // A very long target must not keep its buffer for ever.
        if out.capacity() > 16 << 10 {
            *out = String::new();
        }
    });
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// UTC civil time from a Unix timestamp (Howard Hinnant's days-from-civil,
/// inverted), so logging needs no date crate.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        d.subsec_millis(),
    )
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

/// Escapes what would break a quoted field or the line: `"`, `\`, controls
/// and non-ASCII as `\xHH`, as nginx does.
fn push_escaped(out: &mut String, raw: &[u8]) {
    for &b in raw {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

/// `[25/Nov/2026:09:48:39 +0000]`'s date part, formatted once per second
/// per thread (nginx caches its log time the same way).
fn push_clf_time(out: &mut String, t: SystemTime) {
    thread_local! {
        static CACHE: std::cell::Cell<(u64, [u8; 26])> = const { std::cell::Cell::new((u64::MAX, [0; 26])) };
    }
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (cached, mut text) = CACHE.get();
    if cached != secs {
        let (y, mo, d, h, mi, s, _) = civil(t);
        let mut w = String::with_capacity(26);
        let _ = write!(
            w,
            "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} +0000",
            MONTHS[(mo - 1) as usize]
        );
        if w.len() != 26 {
            // A year outside 0..=9999 does not fit the cache; write it as is.
            out.push_str(&w);
            return;
        }
        text.copy_from_slice(w.as_bytes());
        CACHE.set((secs, text));
    }
    out.push_str(std::str::from_utf8(&text).unwrap_or("-"));
}

fn combined_into(out: &mut String, e: &Entry) {
    out.reserve(200 + e.target.len());
    match e.client {
        Some(c) => {
            let _ = write!(out, "{c}");
        }
        None => out.push('-'),
    }
    out.push_str(" - - [");
    push_clf_time(out, e.time);
    out.push_str("] \"");
    out.push_str(e.method);
    out.push(' ');
    push_escaped(out, e.target);
    out.push(' ');
    out.push_str(version(e.version));
    out.push_str("\" ");
    push_u64(out, u64::from(e.status));
    out.push(' ');
    push_u64(out, e.bytes_sent);
    out.push_str(" \"");
    push_escaped(out, e.referer.unwrap_or(b"-"));
    out.push_str("\" \"");
    push_escaped(out, e.user_agent.unwrap_or(b"-"));
    out.push_str("\" rt=");
    // Milliseconds, rounded, as integers: the `0.123` that `{:.3}` gave,
    // without float formatting on every request.
    let ms = (e.duration.as_micros() + 500) / 1000;
    push_u64(out, (ms / 1000) as u64);
    out.push('.');
    let frac = (ms % 1000) as u64;
    if frac < 100 {
        out.push('0');
    }
    if frac < 10 {
        out.push('0');
    }
    push_u64(out, frac);
    out.push_str(" host=");
    push_escaped(out, e.host.unwrap_or(b"-"));
    out.push_str(" route=");
    out.push_str(e.route.unwrap_or("-"));
    out.push_str(" upstream=");
    match e.upstream {
        Some(a) => {
            let _ = write!(out, "{a}");
        }
        None => out.push('-'),
    }
    out.push_str(" rid=");
    out.push_str(if e.request_id.is_empty() {
        "-"
    } else {
        e.request_id
    });
    if let Some(why) = e.refused {
        out.push_str(" refused=");
        out.push_str(why);
    }
    out.push('\n');
}

fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or("0"));
}

/// Appends `raw` as a JSON string (lossy UTF-8), quotes included.
pub(crate) fn push_json_str(out: &mut String, raw: &[u8]) {
    out.push('"');
    for ch in String::from_utf8_lossy(raw).chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_into(out: &mut String, e: &Entry) {
    let (y, mo, d, h, mi, s, ms) = civil(e.time);
    out.reserve(300 + e.target.len());
    let _ = write!(
        out,
        "{{\"time\":\"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z\",\"client\":"
    );
    match e.client {
        Some(c) => {
            let _ = write!(out, "\"{c}\"");
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"method\":");
    push_json_str(out, e.method.as_bytes());
    out.push_str(",\"path\":");
    push_json_str(out, e.target);
    let _ = write!(
        out,
        ",\"protocol\":\"{}\",\"status\":{},\"bytes_sent\":{},\"bytes_received\":{},\"duration_ms\":{:.3},\"host\":",
        version(e.version),
        e.status,
        e.bytes_sent,
        e.bytes_received,
        e.duration.as_secs_f64() * 1000.0
    );
    match e.host {
        Some(h) => push_json_str(out, h),
        None => out.push_str("null"),
    }
    out.push_str(",\"route\":");
    match e.route {
        Some(r) => push_json_str(out, r.as_bytes()),
        None => out.push_str("null"),
    }
    out.push_str(",\"upstream\":");
    match e.upstream {
        Some(a) => {
            let _ = write!(out, "\"{a}\"");
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"request_id\":");
    if e.request_id.is_empty() {
        out.push_str("null");
    } else {
        push_json_str(out, e.request_id.as_bytes());
    }
    out.push_str(",\"referer\":");
    match e.referer {
        Some(r) => push_json_str(out, r),
        None => out.push_str("null"),
    }
    out.push_str(",\"user_agent\":");
    match e.user_agent {
        Some(r) => push_json_str(out, r),
        None => out.push_str("null"),
    }
    if let Some(why) = e.refused {
        out.push_str(",\"refused\":");
        push_json_str(out, why.as_bytes());
    }
    out.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combined(e: &Entry) -> String {
        let mut out = String::new();
        combined_into(&mut out, e);
        out
    }

    fn json(e: &Entry) -> String {
        let mut out = String::new();
        json_into(&mut out, e);
        out
    }

    fn entry() -> Entry<'static> {
        Entry {
            time: UNIX_EPOCH + Duration::from_millis(1_764_052_774_250),
            client: Some("203.0.113.9".parse().unwrap()),
            method: "GET",
            target: b"/rest-server/api/v1/jobs?x=\"1\"",
            version: http::Version::HTTP_11,
            status: 200,
            bytes_sent: 42,
            bytes_received: 0,
            duration: Duration::from_micros(1500),
            host: Some(b"pylon.example.com"),
            route: Some("rest-server"),
            upstream: Some("10.0.3.9:9186".parse().unwrap()),
            request_id: "0123456789abcdef",
            referer: None,
            user_agent: Some(b"curl/8"),
            refused: None,
        }
    }

    #[test]
    fn refused_requests_name_the_reason() {
        let mut e = entry();
        e.refused = Some("malformed");
        assert!(combined(&e).ends_with(" rid=0123456789abcdef refused=malformed\n"));
        assert!(json(&e).ends_with(",\"user_agent\":\"curl/8\",\"refused\":\"malformed\"}\n"));
    }

    #[test]
    fn combined_line() {
        assert_eq!(
            combined(&entry()),
            "203.0.113.9 - - [25/Nov/2025:06:39:34 +0000] \"GET /rest-server/api/v1/jobs?x=\\x221\\x22 HTTP/1.1\" 200 42 \"-\" \"curl/8\" rt=0.002 host=pylon.example.com route=rest-server upstream=10.0.3.9:9186 rid=0123456789abcdef\n"
        );
    }

    #[test]
    fn cached_time_and_durations_stay_exact() {
        // The date is cached per second: the next second and the next day
        // must show up, and durations must read as `{:.3}` would.
        let mut e = entry();
        for (at_ms, date) in [
            (1_764_052_774_250u64, "[25/Nov/2025:06:39:34 +0000]"),
            (1_764_052_774_999, "[25/Nov/2025:06:39:34 +0000]"),
            (1_764_052_775_000, "[25/Nov/2025:06:39:35 +0000]"),
            (1_764_115_200_000, "[26/Nov/2025:00:00:00 +0000]"),
        ] {
            e.time = UNIX_EPOCH + Duration::from_millis(at_ms);
            assert!(combined(&e).contains(date), "{}", combined(&e));
        }
        for (micros, rt) in [
            (0u64, "rt=0.000 "),
            (499, "rt=0.000 "),
            (1_500, "rt=0.002 "),
            (999_600, "rt=1.000 "),
            (12_345_000, "rt=12.345 "),
            (3_600_000_000, "rt=3600.000 "),
        ] {
            e.duration = Duration::from_micros(micros);
            assert!(combined(&e).contains(rt), "{micros} us: {}", combined(&e));
        }
        e.client = None;
        e.upstream = None;
        e.host = None;
        assert!(combined(&e).starts_with("- - - ["));
        assert!(combined(&e).contains(" upstream=- "));
        assert!(combined(&e).contains(" host=- route="));
        assert!(json(&e).contains(",\"host\":null,\"route\":"));
    }

    #[test]
    fn json_line() {
        let line = json(&entry());
        assert!(line.starts_with("{\"time\":\"2025-11-25T06:39:34.250Z\",\"client\":\"203.0.113.9\",\"method\":\"GET\",\"path\":\"/rest-server/api/v1/jobs?x=\\\"1\\\"\""), "{line}");
        assert!(
            line.contains(",\"duration_ms\":1.500,\"host\":\"pylon.example.com\",\"route\":"),
            "{line}"
        );
        assert!(line.ends_with(",\"route\":\"rest-server\",\"upstream\":\"10.0.3.9:9186\",\"request_id\":\"0123456789abcdef\",\"referer\":null,\"user_agent\":\"curl/8\"}\n"), "{line}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(UNIX_EPOCH).0, 1970);
        let leap = civil(UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
        assert_eq!((leap.0, leap.1, leap.2), (2000, 2, 29));
    }
}
