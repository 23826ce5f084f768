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

use crate::config::{AccessLogFormat, Config, HostPort, Limits, Route, Tls};
use crate::lifecycle::{InFlight, Lifecycle};
use crate::metrics::Metrics;
use crate::redirect::Redirects;
use crate::rewrite::Streamer;
use crate::routing::Router;
use crate::upstream::{self, Upstream};

pub(super) struct ActiveRoute {
    pub(super) cfg: Route,
    pub(super) upstream: Arc<Upstream>,
    /// Requests per client address in the current second, when limited.
    pub(super) rate: Option<Rate>,
}

pub struct Pylon {
    pub(super) routes: Vec<ActiveRoute>,
    pub(super) router: Router,
    pub(super) trusted: Vec<IpNet>,
    pub(super) keepalive_secs: u64,
    pub(super) access_log: AccessLogFormat,
    pub(super) metrics: Arc<Metrics>,
    pub(super) tls: Option<Tls>,
    pub(super) limits: Limits,
    pub(super) server_names: Vec<String>,
    pub(super) redirects: Redirects,
    pub(super) hostport: Option<HostPort>,
    /// Pylon's own listening addresses, never a `/a/` destination.
    pub(super) own_addrs: Vec<SocketAddr>,
    /// Timeouts of `/a/` destinations: those of an unconfigured route.
    pub(super) hostport_template: HttpPeer,
    pub(super) lifecycle: Arc<Lifecycle>,
    /// `Strict-Transport-Security` for HTTPS responses, when configured.
    pub(super) hsts: Option<HeaderValue>,
}

impl Pylon {
    pub fn new(
        cfg: &Config,
        upstreams: &[Arc<Upstream>],
        metrics: Arc<Metrics>,
        lifecycle: Arc<Lifecycle>,
    ) -> Self {
        let routes: Vec<ActiveRoute> = cfg
            .routes
            .iter()
            .zip(upstreams)
            .map(|(r, u)| ActiveRoute {
                cfg: r.clone(),
                upstream: u.clone(),
                rate: r.rate_limit.map(|_| Rate::new(Duration::from_secs(1))),
            })
            .collect();
        let router = Router::new(routes.iter().map(|r| r.cfg.prefix.as_str()));
        Pylon {
            routes,
            router,
            trusted: cfg.trusted_proxies.clone(),
            keepalive_secs: cfg.keepalive_timeout.as_secs(),
            access_log: cfg.access_log,
            metrics,
            tls: cfg.tls.clone(),
            limits: cfg.limits,
            server_names: cfg.server_names.clone(),
            redirects: Redirects::new(cfg.routes.iter().map(|r| (r.prefix.as_str(), &r.upstream))),
            hostport: cfg.hostport.clone(),
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
            hostport_template: upstream::destination_template(
                &cfg.hostport
                    .as_ref()
                    .map(|h| h.timeouts)
                    .unwrap_or_default(),
            ),
        }
    }

    /// The metrics slot of the request: its route, the `/a/` destinations'
    /// own slot just after the routes (see [`crate::metrics::HOSTPORT`]),
    /// or none.
    pub(super) fn metrics_route(&self, ctx: &Ctx) -> Option<usize> {
        ctx.route
            .or_else(|| ctx.dynamic.as_ref().map(|_| self.routes.len()))
    }

    /// The configured route the request was routed to, if any.
    pub(super) fn route_of(&self, ctx: &Ctx) -> Option<&ActiveRoute> {
        ctx.route.and_then(|i| self.routes.get(i))
    }
}

/// A `/a/<host>:<port>/…` destination, checked and resolved.
pub(super) struct Dynamic {
    pub(super) addr: SocketAddr,
    /// `host:port` as the client wrote it: the upstream's `Host`.
    pub(super) authority: String,
    /// `/a/host:port`, sent as `X-Forwarded-Prefix`.
    pub(super) prefix: String,
}

pub struct Ctx {
    pub(super) request_id: HeaderValue,
    /// The host the client addressed (`:authority` or `Host`), as sent.
    pub(super) authority: Option<HeaderValue>,
    pub(super) dynamic: Option<Dynamic>,
    /// Rewrites this response's body, when its route has rules and its type
    /// matches.
    pub(super) rewriter: Option<Streamer>,
    /// The body is replaced by nothing (the WebHDFS 307 pyhdfs asserts on).
    pub(super) drop_body: bool,
    _in_flight: InFlight,
    pub(super) started: Instant,
    pub(super) route: Option<usize>,
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
}

impl Ctx {
    pub(super) fn new(lifecycle: &Lifecycle) -> Ctx {
        Ctx {
            request_id: HeaderValue::from_static(""),
            authority: None,
            dynamic: None,
            rewriter: None,
            drop_body: false,
            _in_flight: lifecycle.enter(),
            started: Instant::now(),
            route: None,
            upstream_target: Vec::new(),
            client_ip: None,
            peer_trusted: false,
            connect_failures: 0,
            cut_short: None,
            failed_addr: None,
            upstream_addr: None,
            request_body_bytes: 0,
        }
    }
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
