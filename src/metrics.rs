//! Prometheus metrics. Every per-route series is created at start-up and
//! its handle kept, so recording a request is a few atomic adds: no label
//! lookup, no lock, no allocation on the request path. Labels are route
//! names, method and status class: never paths or client addresses.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Metric as _};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
/// Seconds. Fine below 100 ms, where a proxy's own cost shows, and out to
/// the long requests (watches, uploads) the cluster sees.
pub const BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];
/// The route label of requests answered before routing (`/healthz`, 400, 404).
pub const NO_ROUTE: &str = "none";
/// The route label of `/a/<host>:<port>/…` requests (the `hostport`
/// section), whose slot follows the configured routes when it is enabled.
pub const HOSTPORT: &str = "hostport";
/// Why Pingora refused a request before Pylon's filters saw it: the label
/// of `pylon_requests_refused_total`. `malformed`: a head that does not
/// parse or frames its body ambiguously (400); `method`: CONNECT (405);
/// `timeout` and `incomplete`: the connection timed out or closed in the
/// middle of a head (nothing could be answered).
pub const REFUSALS: [&str; 4] = ["malformed", "method", "timeout", "incomplete"];

/// Why a host:port request got 403: the `reason` label of
/// `pylon_hostport_refused_total`, in [`Metrics::hostport_refused`] order.
pub const HOSTPORT_REFUSALS: [&str; 4] = ["unsigned", "bad_signature", "expired", "not_allowed"];

/// The [`REFUSALS`] index of a refusal: the Pingora error (if any) and the
/// status sent (if any).
pub fn refusal_index(error: Option<&pingora::ErrorType>, status: Option<u16>) -> usize {
    use pingora::ErrorType::{InvalidHTTPHeader, ReadTimedout};
    match (error, status) {
        (_, Some(405)) => 1,
        (Some(InvalidHTTPHeader), _) | (_, Some(_)) => 0,
        (Some(ReadTimedout), None) => 2,
        _ => 3,
    }
}

/// One route's series. A clone holds handles to the same counters: each
/// route keeps its own, so recording needs no look-up.
#[derive(Clone)]
pub struct RouteMetrics {
    requests: Vec<IntCounter>, // METHODS × CLASSES
    duration: Histogram,
    bytes_received: IntCounter,
    bytes_sent: IntCounter,
    pub connect_failures: IntCounter,
    pub timeouts: IntCounter,
    pub rewrites: IntCounter,
}

pub fn method_index(m: &str) -> usize {
    METHODS[..7].iter().position(|x| *x == m).unwrap_or(7)
}

pub fn class_index(status: u16) -> usize {
    match status {
        100..=599 => (status / 100 - 1) as usize,
        _ => 5,
    }
}

impl RouteMetrics {
    pub fn record(&self, method: usize, status: u16, duration: Duration, received: u64, sent: u64) {
        self.requests[method * CLASSES.len() + class_index(status)].inc();
        self.duration.observe(duration.as_secs_f64());
        self.bytes_received.inc_by(received);
        self.bytes_sent.inc_by(sent);
    }

    fn totals(&self) -> (u64, u64) {
        let mut all = 0;
        let mut errors = 0;
        for (i, c) in self.requests.iter().enumerate() {
            all += c.get();
            if i % CLASSES.len() == 4 {
                errors += c.get();
            }
        }
        (all, errors)
    }
}

pub struct Metrics {
    registry: Registry,
    /// In the order of `names`: the routes given to [`Metrics::new`], then
    /// [`NO_ROUTE`].
    routes: Vec<RouteMetrics>,
    no_route: RouteMetrics,
    names: Vec<String>,
    pub upstream_up: IntGaugeVec,
    connections: IntGauge,
    pub connections_refused: IntCounter,
    pub slow_clients: IntCounterVec,
    /// Per [`REFUSALS`] reason.
    pub refused: Vec<IntCounter>,
    /// Per [`HOSTPORT_REFUSALS`] reason.
    pub hostport_refused: Vec<IntCounter>,
    listen_ports: Vec<u16>,
    net_bytes: IntCounterVec,
    samples: Mutex<VecDeque<Sample>>,
    pub started: Instant,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only reachable through a programming error (a bad metric name or a
    // duplicate registration), never through input.
    r.unwrap_or_else(|e| panic!("metrics set-up: {e}"))
}

impl Metrics {
    // Long but flat: one registration per metric, in the order of the
    // README's table; splitting it would only scatter that list.
    pub fn new(
        route_names: &[&str],
        listen_ports: Vec<u16>,
        version: &str,
        config_hash: &str,
    ) -> Self {
        let registry = Registry::new();
        let requests = must(IntCounterVec::new(
            Opts::new(
                "pylon_requests_total",
                "Requests answered, by route, method and status class.",
            ),
            &["route", "method", "status"],
        ));
        let duration = must(prometheus::HistogramVec::new(
            HistogramOpts::new(
                "pylon_request_duration_seconds",
                "Time from request head to the end of the response.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        ));
        let counter =
            |name: &str, help: &str| must(IntCounterVec::new(Opts::new(name, help), &["route"]));
        let received = counter(
            "pylon_request_body_bytes_total",
            "Request body bytes received from clients.",
        );
        let sent = counter(
            "pylon_response_body_bytes_total",
            "Response body bytes sent to clients.",
        );
        let connect_failures = counter(
            "pylon_upstream_connect_failures_total",
            "Failed connection attempts to an upstream endpoint.",
        );
        let timeouts = counter(
            "pylon_upstream_timeouts_total",
            "Upstream connect or read timeouts.",
        );
        let rewrites = counter(
            "pylon_rewrites_total",
            "Responses whose headers or body Pylon rewrote.",
        );
        let upstream_up = must(IntGaugeVec::new(
            Opts::new(
                "pylon_upstream_up",
                "1 when the endpoint passes its health check.",
            ),
            &["route", "endpoint"],
        ));
        let connections = must(IntGauge::new(
            "pylon_downstream_connections",
            "Open client connections on Pylon's public listeners.",
        ));
        let connections_refused = must(IntCounter::new(
            "pylon_connections_refused_total",
            "Client connections closed unread because limits.max_connections were open.",
        ));
        let slow_clients = must(IntCounterVec::new(
            Opts::new(
                "pylon_slow_clients_total",
                "Client connections closed for sending the request head or body too slowly.",
            ),
            &["part"],
        ));
        for part in ["head", "body"] {
            slow_clients.with_label_values(&[part]);
        }
        let refused_vec = must(IntCounterVec::new(
            Opts::new(
                "pylon_requests_refused_total",
                "Requests refused before routing because their head could not be read, parsed or proxied, by reason.",
            ),
            &["reason"],
        ));
        let refused = REFUSALS
            .iter()
            .map(|r| refused_vec.with_label_values(&[r]))
            .collect();
        let hostport_refused_vec = must(IntCounterVec::new(
            Opts::new(
                "pylon_hostport_refused_total",
                "Host:port requests refused with 403: without a signature, with a bad or expired one, or to a destination hostport.allow/ports does not admit.",
            ),
            &["reason"],
        ));
        let hostport_refused = HOSTPORT_REFUSALS
            .iter()
            .map(|r| hostport_refused_vec.with_label_values(&[r]))
            .collect();
        let net_bytes = must(IntCounterVec::new(
            Opts::new(
                "pylon_network_bytes_total",
                "Bytes through the network interfaces of Pylon's network namespace.",
            ),
            &["device", "direction"],
        ));
        let build = must(IntGaugeVec::new(
            Opts::new(
                "pylon_build_info",
                "Always 1; the labels describe the running build.",
            ),
            &["version"],
        ));
        build.with_label_values(&[version]).set(1);
        let conf = must(IntGaugeVec::new(
            Opts::new(
                "pylon_config_info",
                "Always 1; the hash identifies the loaded configuration.",
            ),
            &["hash"],
        ));
        conf.with_label_values(&[config_hash]).set(1);

        let mut names: Vec<String> = route_names.iter().map(|s| s.to_string()).collect();
        names.push(NO_ROUTE.to_string());
        let series = |name: &str| {
            let mut per = Vec::with_capacity(METHODS.len() * CLASSES.len());
            for m in METHODS {
                for c in CLASSES {
                    per.push(requests.with_label_values(&[name, m, c]));
                }
            }
            RouteMetrics {
                requests: per,
                duration: duration.with_label_values(&[name]),
                bytes_received: received.with_label_values(&[name]),
                bytes_sent: sent.with_label_values(&[name]),
                connect_failures: connect_failures.with_label_values(&[name]),
                timeouts: timeouts.with_label_values(&[name]),
                rewrites: rewrites.with_label_values(&[name]),
            }
        };
        let no_route = series(NO_ROUTE);
        let mut routes: Vec<RouteMetrics> = route_names.iter().map(|n| series(n)).collect();
        routes.push(no_route.clone());

        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(requests),
            Box::new(duration),
            Box::new(received),
            Box::new(sent),
            Box::new(connect_failures),
            Box::new(timeouts),
            Box::new(rewrites),
            Box::new(upstream_up.clone()),
            Box::new(connections.clone()),
            Box::new(connections_refused.clone()),
            Box::new(slow_clients.clone()),
            Box::new(refused_vec),
            Box::new(hostport_refused_vec),
            Box::new(net_bytes.clone()),
            Box::new(build),
            Box::new(conf),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            must(registry.register(c));
        }
        Metrics {
            registry,
            routes,
            no_route,
            names,
            upstream_up,
            connections,
            connections_refused,
            slow_clients,
            refused,
            hostport_refused,
            listen_ports,
            net_bytes,
            samples: Mutex::new(VecDeque::new()),
            started: Instant::now(),
        }
    }

    /// The series of the route (or [`HOSTPORT`]) named `name` in
    /// [`Metrics::new`], for the route to keep.
    pub fn series(&self, name: &str) -> Option<RouteMetrics> {
        let i = self.names.iter().position(|n| n == name)?;
        self.routes.get(i).cloned()
    }

    /// The series of requests answered before routing ([`NO_ROUTE`]).
    pub fn unrouted(&self) -> &RouteMetrics {
        &self.no_route
    }

    /// The text exposition, with the gauges read from /proc refreshed first.
    pub fn render(&self) -> Vec<u8> {
        self.connections
            .set(count_connections(&self.listen_ports) as i64);
        for (dev, rx, tx) in read_net_dev() {
            for (dir, value) in [("receive", rx), ("transmit", tx)] {
                let c = self.net_bytes.with_label_values(&[&dev, dir]);
                // /proc holds the running total; the counter follows it.
                c.inc_by(value.saturating_sub(c.get()));
            }
        }
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::warn!("metrics encoding failed: {e}");
        }
        out
    }

    /// Takes a sample for the status page's one-minute window; called every
    /// few seconds by a background task, never on the request path.
    pub fn sample(&self) {
        let s = Sample {
            at: Instant::now(),
            routes: self
                .routes
                .iter()
                .map(|r| {
                    let (all, errors) = r.totals();
                    RouteSample {
                        requests: all,
                        errors,
                        buckets: bucket_counts(&r.duration),
                    }
                })
                .collect(),
        };
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push_back(s);
        while samples.len() > 2 && samples[1].at.elapsed() >= WINDOW {
            samples.pop_front();
        }
    }

    /// Per-route activity over the last minute (or since start-up).
    pub fn window(&self) -> Vec<RouteWindow> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(old), Some(new)) = (samples.front(), samples.back()) else {
            return Vec::new();
        };
        let secs = new.at.duration_since(old.at).as_secs_f64();
        self.names
            .iter()
            .zip(old.routes.iter().zip(&new.routes))
            .map(|(name, (o, n))| window_between(name, o, n, secs))
            .collect()
    }
}

const WINDOW: Duration = Duration::from_secs(60);

struct Sample {
    at: Instant,
    routes: Vec<RouteSample>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteSample {
    pub requests: u64,
    pub errors: u64,
    /// Cumulative counts per bucket of [`BUCKETS`], then +Inf.
    pub buckets: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteWindow {
    pub route: String,
    pub requests_per_second: f64,
    /// Share of 5xx answers, 0..1; `None` without requests.
    pub error_ratio: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
}

fn bucket_counts(h: &Histogram) -> Vec<u64> {
    let m = h.metric();
    let mut out: Vec<u64> = m
        .get_histogram()
        .get_bucket()
        .iter()
        .map(|b| b.cumulative_count())
        .collect();
    out.push(h.get_sample_count());
    out
}

pub fn window_between(name: &str, old: &RouteSample, new: &RouteSample, secs: f64) -> RouteWindow {
    let requests = new.requests.saturating_sub(old.requests);
    let errors = new.errors.saturating_sub(old.errors);
    let delta: Vec<u64> = new
        .buckets
        .iter()
        .zip(&old.buckets)
        .map(|(n, o)| n.saturating_sub(*o))
        .collect();
    RouteWindow {
        route: name.to_string(),
        requests_per_second: if secs > 0.0 {
            requests as f64 / secs
        } else {
            0.0
        },
        error_ratio: (requests > 0).then(|| errors as f64 / requests as f64),
        p50_seconds: quantile(&delta, 0.5),
        p99_seconds: quantile(&delta, 0.99),
    }
}

/// The q-quantile from cumulative bucket counts, interpolated linearly
/// inside the bucket, as Prometheus' `histogram_quantile` does.
pub fn quantile(cumulative: &[u64], q: f64) -> Option<f64> {
    let total = *cumulative.last()?;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let i = cumulative.iter().position(|&c| c as f64 >= rank)?;
    if i >= BUCKETS.len() {
        // In the +Inf bucket: the best known bound is the largest finite one.
        return Some(BUCKETS[BUCKETS.len() - 1]);
    }
    let (lower, below) = if i == 0 {
        (0.0, 0)
    } else {
        (BUCKETS[i - 1], cumulative[i - 1])
    };
    let in_bucket = (cumulative[i] - below) as f64;
    let frac = if in_bucket > 0.0 {
        (rank - below as f64) / in_bucket
    } else {
        1.0
    };
    Some(lower + (BUCKETS[i] - lower) * frac)
}

/// Established TCP connections owned by this process whose local port is
/// one of `ports`: read at scrape time, so counting costs requests nothing.
fn count_connections(ports: &[u16]) -> usize {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for entry in dir.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path()) {
                let t = target.to_string_lossy();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(inode.to_string());
                }
            }
        }
    }
    let mut n = 0;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "01" {
                continue;
            }
            let port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if port.is_some_and(|p| ports.contains(&p)) && inodes.contains(f[9]) {
                n += 1;
            }
        }
    }
    n
}

/// (device, received bytes, transmitted bytes) from /proc/self/net/dev.
fn read_net_dev() -> Vec<(String, u64, u64)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/net/dev") else {
        return Vec::new();
    };
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (dev, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            Some((dev.trim().to_string(), *f.first()?, *f.get(8)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        // 100 requests: 50 in (0, 0.5ms], 49 in (0.5ms, 1ms], 1 in (1ms, 2.5ms].
        let mut cum = vec![50, 99, 100];
        cum.resize(BUCKETS.len() + 1, 100);
        assert_eq!(quantile(&cum, 0.5), Some(0.0005));
        let p99 = quantile(&cum, 0.99).unwrap();
        assert!((p99 - 0.001).abs() < 1e-12, "{p99}");
        assert_eq!(quantile(&vec![0; BUCKETS.len() + 1], 0.5), None);
        let mut inf = vec![0; BUCKETS.len()];
        inf.push(3);
        assert_eq!(quantile(&inf, 0.5), Some(300.0));
    }

    #[test]
    fn windows_are_deltas() {
        let n = BUCKETS.len() + 1;
        let old = RouteSample {
            requests: 10,
            errors: 1,
            buckets: vec![10; n],
        };
        let mut b = vec![10; n];
        for v in b.iter_mut().skip(3) {
            *v = 30;
        }
        let new = RouteSample {
            requests: 30,
            errors: 6,
            buckets: b,
        };
        let w = window_between("r", &old, &new, 10.0);
        assert_eq!(w.requests_per_second, 2.0);
        assert_eq!(w.error_ratio, Some(0.25));
        assert!(w.p50_seconds.unwrap() > BUCKETS[2] && w.p50_seconds.unwrap() <= BUCKETS[3]);
    }

    #[test]
    fn recording_and_exposition() {
        let m = Metrics::new(&["grafana"], vec![], "0.0.0", "abc");
        m.series("grafana").unwrap().record(
            method_index("GET"),
            200,
            Duration::from_millis(3),
            0,
            10,
        );
        m.unrouted()
            .record(method_index("BREW"), 0, Duration::from_millis(1), 0, 0);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(
                "pylon_requests_total{method=\"GET\",route=\"grafana\",status=\"2xx\"} 1"
            ),
            "{text}"
        );
        assert!(text
            .contains("pylon_requests_total{method=\"other\",route=\"none\",status=\"none\"} 1"));
        assert!(text.contains("pylon_response_body_bytes_total{route=\"grafana\"} 10"));
        assert!(text.contains("pylon_config_info{hash=\"abc\"} 1"));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
