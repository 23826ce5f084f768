//! Requests refused before routing — by Pingora's parser or its method
//! check — are visible: one access-log line with the reason and one count
//! each, and no line on stderr, so a scan shows up in the log and the
//! metrics without flooding the error log.

mod common;

use common::{admin_get, series_value, try_request, Pylon, Upstream};

/// Heads Pingora refuses before Pylon's filters run, with the status and
/// the `refused=` reason each must be logged with.
const REFUSED: [(&str, u16, &str); 6] = [
    (
        "POST /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        400,
        "malformed",
    ),
    (
        "POST /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: 5x\r\n\r\nhello",
        400,
        "malformed",
    ),
    (
        "GET /rest-server/a HTTP/1.1\r\nHo st: pylon.test\r\n\r\n",
        400,
        "malformed",
    ),
    (
        "POST /rest-server/a HTTP/1.1\r\nHost: pylon.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        400,
        "malformed",
    ),
    (
        "POST /rest-server/a HTTP/1.0\r\nHost: pylon.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "malformed",
    ),
    (
        "CONNECT pylon.test:443 HTTP/1.1\r\nHost: pylon.test:443\r\n\r\n",
        405,
        "method",
    ),
];

/// Sum of `pylon_requests_total` over methods for `route` and `status`.
fn requests(text: &str, route: &str, status: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("pylon_requests_total{"))
        .filter(|l| {
            l.contains(&format!("route=\"{route}\"")) && l.contains(&format!("status=\"{status}\""))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn each_parser_refused_request_is_logged_and_counted_once() {
    let up = Upstream::start("rest");
    let p = Pylon::start(
        &format!("routes:\n  rest-server:\n    upstream: {}\n", up.uri()),
        &[] as &[(&str, &str)],
    );
    const ROUNDS: usize = 5;
    let before = admin_get(&p, "/metrics").text();
    let stderr_before = p.stderr_text().lines().count();
    for _ in 0..ROUNDS {
        for (raw, status, _) in REFUSED {
            let r = try_request(p.addr(), raw.as_bytes())
                .unwrap_or_else(|e| panic!("{raw:?}: no answer: {e}"));
            assert_eq!(r.status, status, "{raw:?}");
        }
    }
    assert_eq!(up.count(), 0, "a refused request reached the upstream");

    let n = |reason: &str| ROUNDS * REFUSED.iter().filter(|c| c.2 == reason).count();
    let lines = common::wait_until(
        "access-log lines of the refused requests",
        std::time::Duration::from_secs(10),
        || {
            let out = p.stdout_text();
            let lines: Vec<String> = out
                .lines()
                .filter(|l| l.contains(" refused="))
                .map(str::to_string)
                .collect();
            (lines.len() >= ROUNDS * REFUSED.len()).then_some(lines)
        },
    );
    assert_eq!(lines.len(), ROUNDS * REFUSED.len(), "{lines:#?}");
    for (reason, status) in [("malformed", 400), ("method", 405)] {
        let logged = lines
            .iter()
            .filter(|l| l.ends_with(&format!(" refused={reason}")))
            .filter(|l| l.contains(&format!("\" {status} 0 ")))
            .filter(|l| l.starts_with("127.0.0.1 "))
            .count();
        assert_eq!(logged, n(reason), "{reason}: {lines:#?}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"CONNECT pylon.test:443 HTTP/1.1\" 405")),
        "what is known of the request is logged: {lines:#?}"
    );

    let after = admin_get(&p, "/metrics").text();
    assert_eq!(
        requests(&after, "none", "4xx") - requests(&before, "none", "4xx"),
        (ROUNDS * REFUSED.len()) as f64,
        "pylon_requests_total{{route=\"none\",status=\"4xx\"}}"
    );
    for reason in ["malformed", "method"] {
        let count = |t: &str| {
            series_value(t, "pylon_requests_refused_total", &[("reason", reason)]).unwrap_or(0.0)
        };
        assert_eq!(
            count(&after) - count(&before),
            n(reason) as f64,
            "pylon_requests_refused_total{{reason=\"{reason}\"}}"
        );
    }
    let stderr = p.stderr_text();
    let new_lines: Vec<&str> = stderr.lines().skip(stderr_before).collect();
    assert!(
        new_lines.len() < ROUNDS,
        "refusals must not flood stderr: {new_lines:#?}"
    );
}
