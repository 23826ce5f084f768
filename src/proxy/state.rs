//! What the hooks share: [`Pylon`], built once at start-up and read by
//! every request, and [`Ctx`], the state of one request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use ipnet::IpNet;
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora_limits::rate::Rate;

use crate::config::{self, AccessLogFormat, Config, HostPort, Limits, Tls};
use crate::lifecycle::{InFlight, Lifecycle};
use crate::link_signing::Signer;
use crate::metrics::{self, Metrics, RouteMetrics};
use crate::redirect::Redirects;
use crate::rewrite::Streamer;
use crate::routing::Router;
use crate::upstream::{self, Upstream};

/// A configured route, built once at start-up with everything a request
/// on it uses: its configuration (with its `Host` and prefix header values
/// built), upstream, rate counter and metrics series.
pub(super) struct Route {
    pub(super) cfg: config::Route,
    /// Its number in the router's and the redirect table's order.
    pub(super) index: usize,
    pub(super) upstream: Arc<Upstream>,
    /// Requests per client address in the current second, when limited.
    pub(super) rate: Option<Rate>,
    pub(super) metrics: RouteMetrics,
}

/// The host:port destinations (`hostport` section): the policy they are
/// checked against, the peer settings they are reached with and their
/// metrics series.
pub(super) struct Destinations {
    pub(super) policy: HostPort,
    /// Timeouts of `/a/` destinations: those of an unconfigured route.
    pub(super) template: HttpPeer,
    pub(super) metrics: RouteMetrics,
    /// Signs the host:port links Pylon makes and checks those it gets;
    /// `None` without `signing_key_file`.
    pub(super) signer: Option<Arc<Signer>>,
}

pub struct Pylon {
    pub(super) routes: Vec<Route>,
    pub(super) router: Router,
    pub(super) trusted: Vec<IpNet>,
    pub(super) keepalive_secs: u64,
    pub(super) access_log: AccessLogFormat,
    pub(super) metrics: Arc<Metrics>,
    pub(super) tls: Option<Tls>,
    pub(super) limits: Limits,
    pub(super) server_names: Vec<String>,
    pub(super) redirects: Redirects,
    pub(super) hostport: Option<Destinations>,
    /// Pylon's own listening addresses, never a `/a/` destination.
    pub(super) own_addrs: Vec<SocketAddr>,
    pub(super) lifecycle: Arc<Lifecycle>,
    /// `Strict-Transport-Security` for HTTPS responses, when configured.
    pub(super) hsts: Option<HeaderValue>,
}

impl Pylon {
    /// `upstreams` are the routes' upstreams, in the order of `cfg.routes`;
    /// `metrics` has a series for each route and for [`metrics::HOSTPORT`]
    /// when destinations are configured.
    pub fn new(
        cfg: &Config,
        upstreams: &[Arc<Upstream>],
        metrics: Arc<Metrics>,
        lifecycle: Arc<Lifecycle>,
    ) -> Self {
        let series = |name: &str| {
            metrics
                .series(name)
                .unwrap_or_else(|| metrics.unrouted().clone())
        };
        let routes: Vec<Route> = cfg
            .routes
            .iter()
            .zip(upstreams)
            .enumerate()
            .map(|(index, (r, u))| Route {
                cfg: r.clone(),
                index,
                upstream: u.clone(),
                rate: r.rate_limit.map(|_| Rate::new(Duration::from_secs(1))),
                metrics: series(&r.name),
            })
            .collect();
        let hostport = cfg.hostport.as_ref().map(|h| Destinations {
            policy: h.clone(),
            template: upstream::destination_template(&h.timeouts),
            metrics: series(metrics::HOSTPORT),
            signer: Signer::from_config(h, unix_now()).map(Arc::new),
        });
        Pylon {
            router: Router::new(routes.iter().map(|r| r.cfg.prefix.as_str())),
            redirects: Redirects::new(
                routes
                    .iter()
                    .map(|r| (r.cfg.prefix.as_str(), &r.cfg.upstream)),
            ),
            routes,
            trusted: cfg.trusted_proxies.clone(),
            keepalive_secs: cfg.keepalive_timeout.as_secs(),
            access_log: cfg.access_log,
            tls: cfg.tls.clone(),
            limits: cfg.limits,
            server_names: cfg.server_names.clone(),
            hostport,
            own_addrs: cfg
                .listen
                .iter()
                .chain(&cfg.admin_listen)
                .chain(cfg.tls.iter().flat_map(|t| &t.listen))
                .copied()
                .collect(),
            lifecycle,
            // Digits after a fixed prefix: always a valid header value.
            hsts: cfg
                .tls
                .as_ref()
                .filter(|t| t.hsts_seconds > 0)
                .and_then(|t| HeaderValue::from_str(&format!("max-age={}", t.hsts_seconds)).ok()),
            metrics,
        }
    }

    /// The configured route the request goes to, if any.
    pub(super) fn route_of(&self, ctx: &Ctx) -> Option<&Route> {
        match ctx.target {
            Target::Route(i) => self.routes.get(i),
            _ => None,
        }
    }

    /// The metrics series the request is counted in: its route's, the
    /// destinations', or that of requests answered before routing.
    pub(super) fn metrics_of(&self, ctx: &Ctx) -> &RouteMetrics {
        let series = match &ctx.target {
            Target::Route(i) => self.routes.get(*i).map(|r| &r.metrics),
            Target::Destination(_) => self.hostport.as_ref().map(|h| &h.metrics),
            Target::Local => None,
        };
        series.unwrap_or_else(|| self.metrics.unrouted())
    }
}

/// What a request goes to, once `request_filter` has chosen.
pub(super) enum Target {
    /// Nothing upstream: Pylon answers itself (or has not routed yet).
    Local,
    /// A configured route: its place in [`Pylon::routes`].
    Route(usize),
    /// A `/a/<host>:<port>/…` destination, checked and resolved.
    Destination(Destination),
}

/// A `/a/<host>:<port>/…` destination, checked and resolved.
pub(super) struct Destination {
    pub(super) addr: SocketAddr,
    /// `host:port` as the client wrote it: the upstream's `Host`.
    pub(super) authority: HeaderValue,
    /// `/a/host:port`, sent as `X-Forwarded-Prefix`.
    pub(super) prefix: HeaderValue,
}

pub struct Ctx {
    pub(super) request_id: HeaderValue,
    /// The host the client addressed (`:authority` or `Host`), as sent.
    pub(super) authority: Option<HeaderValue>,
    pub(super) target: Target,
    /// Rewrites this response's body, when its route has rules and its type
    /// matches.
    pub(super) rewriter: Option<Streamer>,
    /// The body is replaced by nothing (the WebHDFS 307 pyhdfs asserts on).
    pub(super) drop_body: bool,
    _in_flight: InFlight,
    pub(super) started: Instant,
    /// Path and query as the upstream will receive them.
    pub(super) upstream_target: Vec<u8>,
    pub(super) client_ip: Option<IpAddr>,
    /// The TCP peer is a configured trusted proxy.
    pub(super) peer_trusted: bool,
    pub(super) connect_failures: usize,
    /// The status of a failure after the response head went out: what
    /// the access log and metrics record instead of that head's status.
    pub(super) cut_short: Option<u16>,
    pub(super) failed_addr: Option<SocketAddr>,
    pub(super) upstream_addr: Option<SocketAddr>,
    pub(super) request_body_bytes: u64,
    /// Why a host:port request got 403 (a `HOSTPORT_REFUSALS` reason), for
    /// the access log.
    pub(super) refused: Option<&'static str>,
}

impl Ctx {
    pub(super) fn new(lifecycle: &Lifecycle) -> Ctx {
        Ctx {
            request_id: HeaderValue::from_static(""),
            authority: None,
            target: Target::Local,
            rewriter: None,
            drop_body: false,
            _in_flight: lifecycle.enter(),
            started: Instant::now(),
            upstream_target: Vec::new(),
            client_ip: None,
            peer_trusted: false,
            connect_failures: 0,
            cut_short: None,
            failed_addr: None,
            upstream_addr: None,
            request_body_bytes: 0,
            refused: None,
        }
    }
}

/// Seconds since the Unix epoch: the clock of link expiries.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

pub(super) fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}
