//! The Pingora glue: every step of a request, in order, with the status
//! each can answer with itself (through `Pylon::respond`, the one reply path
//! that adds the request id and HSTS to everything Pylon answers):
//!
//! ```text
//! request_filter
//!   head clocks, keep-alive      stop the head clock (connection_guard.rs)
//!   limits                       400 long method, 414 target, 431 headers
//!   transfer coding              400/501 (transfer_coding.rs)
//!   authority                    400 missing or conflicting Host (authority.rs)
//!   path                         400 not normalisable (path.rs)
//!   /healthz                     200 ready, 503 draining
//!   host                         421 not in server_names
//!   HTTPS redirect               307 to https://, 400 bad Host
//!   host:port destination        400 malformed /a/, 502 unresolved, 403 refused (hostport.rs)
//!   route                        404 no route (routing.rs)
//!   access                       403 allow/deny, 429 rate limit
//!   add-slash                    301 prefix → prefix/
//!   body limit                   413 declared Content-Length too large
//! upstream_peer                  route → endpoint (upstream.rs), or the destination
//! fail_to_connect                retry another endpoint of the route
//! upstream_request_filter        target, Host, X-Forwarded-*, request id, If-None-Match (headers.rs)
//! request_body_filter            413 when the body outgrows max_body_size
//! response_filter                request id, HSTS, hop-by-hop, 101 timeouts,
//!                                Location/Refresh, WebHDFS 307 → /a/, ETag, body rewriter (redirect.rs)
//! response_body_filter           streaming rewrite (rewrite.rs)
//! fail_to_proxy                  502/504 naming the route, 400 for client errors
//! request_refused                refused by Pingora before the hooks: log line and count
//! logging                        access log line (access_log.rs), metrics (metrics.rs)
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{
    HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, RETRY_AFTER,
    STRICT_TRANSPORT_SECURITY,
};
use ipnet::IpNet;
use log::{debug, warn};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};
use pingora_limits::rate::Rate;

use crate::access_log::{self, Entry};
use crate::authority;
use crate::config::{AccessLogFormat, Config, HostPort, Limits, Route, Tls};
use crate::connection_guard::ClockedStream;
use crate::headers;
use crate::hostport;
use crate::lifecycle::{InFlight, Lifecycle};
use crate::link_signing::{self, Signer};
use crate::metrics::{self, Metrics};
use crate::path;
use crate::redirect::{self, PublicOrigin, Redirects};
use crate::rewrite::{Stamp, Streamer, Vars};
use crate::routing::{self, Router};
use crate::transfer_coding;
use crate::upstream::{self, Upstream};

pub struct ActiveRoute {
    pub cfg: Route,
    pub upstream: Arc<Upstream>,
    /// Requests per client address in the current second, when limited.
    rate: Option<Rate>,
}

pub struct Pylon {
    routes: Vec<ActiveRoute>,
    router: Router,
    trusted: Vec<IpNet>,
    keepalive_secs: u64,
    access_log: AccessLogFormat,
    metrics: Arc<Metrics>,
    tls: Option<Tls>,
    limits: Limits,
    server_names: Vec<String>,
    redirects: Redirects,
    hostport: Option<HostPort>,
    /// Signs the host:port links Pylon makes and checks those it gets.
    signer: Option<Arc<Signer>>,
    /// Pylon's own listening addresses, never a `/a/` destination.
    own_addrs: Vec<SocketAddr>,
    /// Timeouts of `/a/` destinations: those of an unconfigured route.
    hostport_template: HttpPeer,
    lifecycle: Arc<Lifecycle>,
    /// `Strict-Transport-Security` for HTTPS responses, when configured.
    hsts: Option<HeaderValue>,
}

const X_REQUEST_ID: &str = "x-request-id";

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
            signer: cfg
                .hostport
                .as_ref()
                .and_then(|h| Signer::from_config(h, unix_now()))
                .map(Arc::new),
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
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn bad_value() -> Box<Error> {
    Error::explain(
        ErrorType::InternalError,
        "upstream Host is not a header value",
    )
}

/// A `/a/<host>:<port>/…` destination, checked and resolved.
struct Dynamic {
    addr: SocketAddr,
    /// `host:port` as the client wrote it: the upstream's `Host`.
    authority: String,
    /// `/a/host:port`, sent as `X-Forwarded-Prefix`.
    prefix: String,
}

pub struct Ctx {
    request_id: HeaderValue,
    /// The host the client addressed (`:authority` or `Host`), as sent.
    authority: Option<HeaderValue>,
    dynamic: Option<Dynamic>,
    /// Rewrites this response's body, when its route has rules and its type
    /// matches.
    rewriter: Option<Streamer>,
    /// The body is replaced by nothing (the WebHDFS 307 pyhdfs asserts on).
    drop_body: bool,
    _in_flight: InFlight,
    started: Instant,
    route: Option<usize>,
    /// Path and query as the upstream will receive them.
    upstream_target: Vec<u8>,
    client_ip: Option<IpAddr>,
    /// The TCP peer is a configured trusted proxy.
    peer_trusted: bool,
    connect_failures: usize,
    /// The status of a failure after the response head went out: what
    /// the access log and metrics record instead of that head's status.
    cut_short: Option<u16>,
    failed_addr: Option<SocketAddr>,
    upstream_addr: Option<SocketAddr>,
    request_body_bytes: u64,
    /// Why a host:port request got 403, for the access log.
    refused: Option<&'static str>,
}

fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// 414 or 431 when the request head exceeds the configured limits.
fn over_limits(req: &RequestHeader, limits: &Limits) -> Option<(u16, &'static str)> {
    // Methods are short words; a long one is an attack on a parser, not a
    // request (nginx's limit on the request line covers it the same way).
    if req.method.as_str().len() > 32 {
        return Some((400, "Bad request: method too long.\n"));
    }
    if req.raw_path().len() > limits.max_uri_length {
        return Some((414, "Request target too long.\n"));
    }
    if req.headers.len() > limits.max_header_count {
        return Some((431, "Too many request headers.\n"));
    }
    let bytes: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if bytes > limits.max_header_bytes {
        return Some((431, "Request headers too large.\n"));
    }
    None
}

/// `Some(value)` when the request repeats one Content-Length (two equal
/// lines, or `5, 5`) and should carry it once; an error when the repeats
/// differ; `None` in the usual case of at most one plain value.
fn single_content_length(req: &RequestHeader) -> Result<Option<Vec<u8>>> {
    let mut lines = req.headers.get_all(CONTENT_LENGTH).iter();
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    let more = lines.next().is_some();
    if !more && !first.as_bytes().contains(&b',') {
        return Ok(None);
    }
    let values: Vec<&[u8]> = req
        .headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    if values.windows(2).all(|w| w[0] == w[1]) {
        Ok(values.first().map(|v| v.to_vec()))
    } else {
        Err(Error::explain(
            ErrorType::HTTPStatus(400),
            "conflicting Content-Length values",
        ))
    }
}

/// The request's authority ([`authority::of_request`]) as a header value:
/// the client's own `Host` bytes for HTTP/1.x, a copy of `:authority` for
/// HTTP/2.
fn request_authority(
    req: &RequestHeader,
) -> std::result::Result<Option<HeaderValue>, authority::Refusal> {
    let uri_authority = req.uri.authority().map(|a| a.as_str().as_bytes());
    let hosts = req.headers.get_all(HOST).iter().map(HeaderValue::as_bytes);
    let named = authority::of_request(req.version, uri_authority, hosts)?;
    Ok(match (named, req.uri.authority()) {
        (None, _) => None,
        (Some(_), Some(a)) => HeaderValue::from_str(a.as_str()).ok(),
        (Some(_), None) => req.headers.get(HOST).cloned(),
    })
}

fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

impl Pylon {
    /// The one reply path for everything Pylon answers itself (refusals,
    /// redirects, `/healthz`, 502/504). A request that still has an unread
    /// body gets `Connection: close`, so leftover bytes can never be read as
    /// a next request; the headers every response carries come from
    /// [`Pylon::every_response`], as for proxied ones.
    async fn respond(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        status: u16,
        extra: &[(http::HeaderName, &str)],
        body: &str,
    ) -> Result<bool> {
        if !session.is_body_empty() {
            session.set_keepalive(None);
        }
        let mut resp = ResponseHeader::build(status, Some(4 + extra.len()))?;
        resp.insert_header(CONTENT_TYPE, "text/plain; charset=utf-8")?;
        resp.insert_header(CONTENT_LENGTH, body.len().to_string())?;
        for (name, value) in extra {
            resp.insert_header(name.clone(), *value)?;
        }
        self.every_response(session, &mut resp, ctx)?;
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(resp), head_only || body.is_empty())
            .await?;
        if !head_only && !body.is_empty() {
            session
                .write_response_body(Some(Bytes::copy_from_slice(body.as_bytes())), true)
                .await?;
        }
        Ok(true)
    }

    /// What every response to the client carries, Pylon's own
    /// ([`Pylon::respond`]) and the upstream's (`response_filter`): the
    /// request id and, over HTTPS, HSTS.
    fn every_response(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &Ctx,
    ) -> Result<()> {
        if !ctx.request_id.is_empty() {
            resp.insert_header(X_REQUEST_ID, ctx.request_id.clone())?;
        }
        if let Some(hsts) = self.hsts.as_ref().filter(|_| is_tls(session)) {
            resp.insert_header(STRICT_TRANSPORT_SECURITY, hsts.clone())?;
        }
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for Pylon {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            request_id: HeaderValue::from_static(""),
            authority: None,
            dynamic: None,
            rewriter: None,
            drop_body: false,
            _in_flight: self.lifecycle.enter(),
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
            refused: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Pipelined requests (RFC 9112 §9.3.2) are answered one after the
        // other: bytes read past this request's end stay for the next one
        // instead of closing the connection. A request whose body is left
        // unread still closes (`respond`, `fail_to_proxy`).
        session.set_pipelining_enabled(true);
        // The head is in: stop its clock, and start the body's if one follows.
        let body_follows = !session.is_body_empty();
        if let Some(c) = ClockedStream::of(session.as_downstream().stream()) {
            let expects_continue = session
                .req_header()
                .headers
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            c.head_done(body_follows, expects_continue);
        }
        // Pingora otherwise keeps idle HTTP/1.1 connections forever. While
        // draining, every response tells the client to reconnect elsewhere.
        let draining = self.lifecycle.is_draining();
        // Only bound keep-alive the client asked for (HTTP/1.0 without
        // `Connection: keep-alive` and `Connection: close` stay off).
        let wants_keepalive = session.get_keepalive().is_some();
        session.set_keepalive((wants_keepalive && !draining).then_some(self.keepalive_secs));

        let req = session.req_header();
        if let Some(peer) = peer_ip(session) {
            let xff = req.headers.get("x-forwarded-for").map(|v| v.as_bytes());
            ctx.peer_trusted = headers::is_trusted(peer, &self.trusted);
            ctx.client_ip = Some(headers::real_client_ip(peer, xff, &self.trusted));
        }
        // Kept from a trusted proxy, so one id follows a request end to end.
        ctx.request_id = match req.headers.get(X_REQUEST_ID) {
            Some(v) if ctx.peer_trusted && headers::acceptable_request_id(v.as_bytes()) => {
                v.clone()
            }
            _ => headers::new_request_id_value(),
        };
        if let Some((code, why)) = over_limits(req, &self.limits) {
            return self.respond(session, ctx, code, &[], why).await;
        }
        let codings = req.headers.get_all(http::header::TRANSFER_ENCODING).iter();
        if let Err((code, why)) = transfer_coding::check(codings.map(HeaderValue::as_bytes)) {
            return self.respond(session, ctx, code, &[], why).await;
        }
        ctx.authority = match request_authority(req) {
            Ok(a) => a,
            Err(r) => return self.respond(session, ctx, 400, &[], r.message()).await,
        };
        let target = match path::normalise(req.raw_path()) {
            Ok(t) => t,
            Err(e) => {
                debug!("400 for {:?}: {e}", String::from_utf8_lossy(req.raw_path()));
                return self
                    .respond(session, ctx, 400, &[], &format!("Bad request: {e}.\n"))
                    .await;
            }
        };

        if target.path == "/healthz" {
            // A balancer moves traffic away before this instance closes anything.
            return match self.lifecycle.is_leaving() {
                false => self.respond(session, ctx, 200, &[], "Pylon ready.").await,
                true => {
                    self.respond(session, ctx, 503, &[], "Pylon draining.")
                        .await
                }
            };
        }

        // Probes (/healthz, above) may use any address; everything else must
        // name this instance, since redirects and pages are built from Host.
        let host = ctx.authority.as_ref().map(HeaderValue::as_bytes);
        if !headers::host_allowed(host, &self.server_names) {
            return self
                .respond(
                    session,
                    ctx,
                    421,
                    &[],
                    "Misdirected request: unknown host.\n",
                )
                .await;
        }

        if let Some(tls) = self.tls.as_ref().filter(|t| t.redirect_http) {
            if !is_tls(session) {
                // 307 keeps the method and body (the original's 301 turned
                // POSTs into GETs); the port is the public HTTPS one.
                return match headers::https_location(
                    host,
                    tls.public_port,
                    &target.path,
                    target.query,
                ) {
                    Some(loc) => {
                        self.respond(session, ctx, 307, &[(LOCATION, &loc)], "")
                            .await
                    }
                    None => {
                        self.respond(session, ctx, 400, &[], "Bad request: invalid Host.\n")
                            .await
                    }
                };
            }
        }

        if let Some(policy) = &self.hostport {
            let found = policy.prefixes.iter().find_map(|p| {
                let after = target
                    .path
                    .strip_prefix(p.as_str())
                    .filter(|r| r.starts_with('/'))?;
                let (seg, rest) = hostport::split(after)?;
                // The token is never part of the destination nor sent on.
                let (seg, token) = link_signing::split_token(seg);
                Some((
                    p.as_str(),
                    hostport::parse(seg).map(|d| (d, seg, token, p.as_str(), rest)),
                ))
            });
            let dest = match found {
                Some((_, Some(d))) => Some(d),
                Some(("/a", None)) => {
                    return self
                        .respond(
                            session,
                            ctx,
                            400,
                            &[],
                            "Bad request: expected /a/<host>:<port>/<path>.\n",
                        )
                        .await;
                }
                _ => None,
            };
            if let Some((dest, seg, token, matched, rest)) = dest {
                ctx.route = None;
                if let Some(signer) = self.signer.as_ref().filter(|s| s.require) {
                    if let Err(why) = signer.keys.verify(matched, seg, token, unix_now()) {
                        debug!("403 for {matched}/{seg}: {}", why.as_str());
                        return self.refuse_hostport(session, ctx, why.as_str()).await;
                    }
                }
                // As written: brackets kept for IPv6.
                let ((host, port), authority) = (dest, seg.to_string());
                let addrs =
                    upstream::resolve_destination(host, port, policy.timeouts.connect).await;
                if addrs.is_empty() {
                    return self
                        .respond(
                            session,
                            ctx,
                            502,
                            &[],
                            "502 upstream unavailable: cannot resolve the host\n",
                        )
                        .await;
                }
                // Every address the name has must be allowed: the name is the
                // client's to choose, the addresses are not.
                if let Some(why) = addrs
                    .iter()
                    .find_map(|a| hostport::check(*a, policy, &self.own_addrs).err())
                {
                    debug!("403 for /a/{authority}: {why}");
                    return self.refuse_hostport(session, ctx, "not_allowed").await;
                }
                ctx.upstream_target = routing::upstream_target("", rest, target.query);
                let prefix = format!("{matched}/{seg}");
                ctx.dynamic = Some(Dynamic {
                    addr: addrs[0],
                    prefix,
                    authority,
                });
                return Ok(false);
            }
        }

        let Some(m) = self.router.find(&target.path) else {
            return self
                .respond(session, ctx, 404, &[], "No route for this path.\n")
                .await;
        };
        let route = &self.routes[m.route];
        let rest = &target.path[m.rest_start..];
        ctx.route = Some(m.route);

        if let Some(ip) = ctx.client_ip {
            let listed = |nets: &[ipnet::IpNet]| nets.iter().any(|n| n.contains(&ip));
            if listed(&route.cfg.deny) || (!route.cfg.allow.is_empty() && !listed(&route.cfg.allow))
            {
                return self.respond(session, ctx, 403, &[], "Forbidden.\n").await;
            }
            if let (Some(rate), Some(limit)) = (&route.rate, route.cfg.rate_limit) {
                if rate.observe(&ip, 1) > limit as isize {
                    return self
                        .respond(
                            session,
                            ctx,
                            429,
                            &[(RETRY_AFTER, "1")],
                            "Too many requests.\n",
                        )
                        .await;
                }
            }
        }

        if rest.is_empty() && route.cfg.add_slash {
            // Relative, so the redirect never depends on a client-chosen Host;
            // the slash goes before the query (the original put it after).
            let mut location = format!("{}/", route.cfg.prefix);
            if let Some(q) = target.query {
                location.push('?');
                location.push_str(&String::from_utf8_lossy(q));
            }
            return self
                .respond(session, ctx, 301, &[(LOCATION, &location)], "")
                .await;
        }

        if let Some(limit) = route.cfg.max_body_size {
            let declared = req
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                return self
                    .respond(
                        session,
                        ctx,
                        413,
                        &[],
                        "Request body too large for this route.\n",
                    )
                    .await;
            }
        }

        ctx.upstream_target =
            routing::upstream_target(&route.cfg.upstream.base_path, rest, target.query);
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if let Some(d) = &ctx.dynamic {
            let mut peer = Box::new(self.hostport_template.clone());
            peer._address = pingora::protocols::l4::socket::SocketAddr::Inet(d.addr);
            ctx.upstream_addr = Some(d.addr);
            return Ok(peer);
        }
        let route = ctx
            .route
            .and_then(|i| self.routes.get(i))
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let peer = route
            .upstream
            .peer(ctx.failed_addr.as_ref())
            .ok_or_else(|| {
                Error::explain(
                    ErrorType::ConnectNoRoute,
                    format!("route {}: upstream address not resolved", route.cfg.name),
                )
            })?;
        ctx.upstream_addr = peer._address.as_inet().copied();
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_failures += 1;
        ctx.failed_addr = peer._address.as_inet().copied();
        let route_metrics = self.metrics.route(self.metrics_route(ctx));
        route_metrics.connect_failures.inc();
        if matches!(
            e.etype(),
            ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout
        ) {
            route_metrics.timeouts.inc();
        }
        let endpoints = ctx
            .route
            .and_then(|i| self.routes.get(i))
            .map_or(0, |r| r.upstream.endpoint_count());
        // Another endpoint may be up; a lone endpoint is not hammered again.
        if ctx.connect_failures < endpoints.min(3) {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let route = ctx.route.and_then(|i| self.routes.get(i));
        // (Host to send, public prefix) of the route or the `/a/` destination.
        let (upstream_host, prefix) = match (route, &ctx.dynamic) {
            (Some(r), _) => (
                match r.cfg.preserve_host {
                    true => None,
                    false => Some(r.cfg.host_header.clone()),
                },
                Some(r.cfg.prefix_header.clone()),
            ),
            (None, Some(d)) => (
                Some(HeaderValue::from_str(&d.authority).map_err(|_| bad_value())?),
                HeaderValue::from_str(&d.prefix).ok(),
            ),
            (None, None) => return Err(Error::new(ErrorType::InternalError)),
        };
        req.set_raw_path(&ctx.upstream_target)?;
        // Pingora refuses differing Content-Length values but passes equal
        // repeats (`5` twice, or `5, 5`); send one, as RFC 9110 §8.6 allows,
        // so no upstream can read the framing differently.
        if let Some(length) = single_content_length(req)? {
            req.insert_header(CONTENT_LENGTH, length)?;
        }

        // `req` is a fresh copy of the client's request: read what the client
        // sent from it before overwriting.
        let client_host = ctx.authority.clone();
        if let Some(h) = upstream_host {
            req.insert_header(HOST, h)?;
        }
        if let Some(r) = route.filter(|r| r.cfg.rewrite.is_some()) {
            // Bodies must arrive uncompressed to be rewritten (the original
            // sent `Accept-Encoding: ""` for the same reason); validators
            // lose the suffix Pylon added, or go when they do not carry it.
            req.remove_header("accept-encoding");
            if let Some(inm) = req
                .headers
                .get("if-none-match")
                .and_then(|v| v.to_str().ok())
            {
                match redirect::if_none_match_in(inm, &r.cfg.etag_suffix) {
                    Some(v) => req.insert_header("if-none-match", v)?,
                    None => {
                        req.remove_header("if-none-match");
                    }
                }
            }
        }

        req.insert_header(X_REQUEST_ID, ctx.request_id.clone())?;
        let trusted = ctx.peer_trusted;
        if let Some(peer) = peer_ip(session) {
            let xff = headers::forwarded_for(
                peer,
                req.headers.get("x-forwarded-for").map(|v| v.as_bytes()),
                &self.trusted,
            );
            req.insert_header("X-Forwarded-For", xff)?;
        }
        if let Some(ip) = ctx.client_ip {
            req.insert_header("X-Real-IP", headers::ip_value(ip))?;
        }
        let proto = headers::forwarded_proto(
            if is_tls(session) { "https" } else { "http" },
            trusted,
            req.headers.get("x-forwarded-proto").map(|v| v.as_bytes()),
        );
        req.insert_header("X-Forwarded-Proto", proto)?;
        let forwarded_host = match req.headers.get("x-forwarded-host") {
            Some(h) if trusted => Some(h.clone()),
            _ => client_host,
        };
        match forwarded_host {
            Some(h) => req.insert_header("X-Forwarded-Host", h)?,
            None => {
                req.remove_header("X-Forwarded-Host");
            }
        }
        match prefix {
            Some(p) if p.as_bytes() != b"/" => req.insert_header("X-Forwarded-Prefix", p)?,
            _ => {
                req.remove_header("X-Forwarded-Prefix");
            }
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if end {
            if let Some(c) = ClockedStream::of(session.as_downstream().stream()) {
                c.body_done();
            }
        }
        if let Some(b) = body {
            ctx.request_body_bytes += b.len() as u64;
            let limit = ctx
                .route
                .and_then(|i| self.routes.get(i))
                .and_then(|r| r.cfg.max_body_size);
            if limit.is_some_and(|l| ctx.request_body_bytes > l) {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body exceeds the route's max_body_size",
                ));
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.every_response(session, resp, ctx)?;
        if resp.status.as_u16() == 101 {
            // An upgraded connection (WebSocket: kubectl exec, notebooks) may sit
            // idle far longer than an HTTP request; give it the route's timeout.
            if let Some(route) = ctx.route.and_then(|i| self.routes.get(i)) {
                session.set_read_timeout(Some(route.cfg.timeouts.read));
            }
            return Ok(());
        }
        let nominated = headers::connection_nominated(resp.headers.get_all("connection").iter());
        for name in &nominated {
            resp.remove_header(name.as_str());
        }
        for name in &headers::HOP_BY_HOP {
            resp.remove_header(name);
        }
        if let Some(i) = ctx.route {
            self.rewrite_response(session, resp, ctx, i)?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if ctx.drop_body {
            *body = None;
        } else if let Some(r) = ctx.rewriter.as_mut() {
            r.filter(body, end_of_stream);
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let route = ctx.route.and_then(|i| self.routes.get(i));
        let name = route.map_or("-", |r| r.cfg.name.as_str());
        let (code, what) = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(c), _) => (*c, "request refused"),
            (ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout, _) => {
                (504, "upstream connect timed out")
            }
            (ErrorType::ReadTimedout | ErrorType::WriteTimedout, ErrorSource::Upstream) => {
                // Connect timeouts were counted in fail_to_connect.
                self.metrics.route(self.metrics_route(ctx)).timeouts.inc();
                (504, "upstream timed out")
            }
            (_, ErrorSource::Upstream) => (502, "upstream unavailable"),
            (
                ErrorType::ConnectRefused | ErrorType::ConnectNoRoute | ErrorType::ConnectError,
                _,
            ) => (502, "upstream unavailable"),
            (
                ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError,
                _,
            ) => (502, "upstream TLS failed"),
            (
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
                ErrorSource::Downstream,
            ) => (0, ""),
            (_, ErrorSource::Downstream) => (400, "bad request"),
            _ => (500, "internal error"),
        };
        if code >= 500 {
            warn!(
                "route {name}: {code} {what} ({}): {e}",
                ctx.upstream_addr
                    .map_or_else(|| "-".to_string(), |a| a.to_string())
            );
        }
        if code > 0 && session.response_written().is_none() {
            let body = match route {
                Some(_) => format!("{code} {what}: route {name}\n"),
                None => format!("{code} {what}\n"),
            };
            // Keep the client connection only if nothing of the request is left unread.
            session.set_keepalive(None);
            if let Err(err) = self.respond(session, ctx, code, &[], &body).await {
                debug!("could not send {code}: {err}");
            }
        } else if code > 0 {
            // The response is cut short: every client must see that it is
            // incomplete, which a FIN does not tell an HTTP/1.0 client whose
            // body ends with the connection. HTTP/2 streams are reset.
            ctx.cut_short = Some(code);
            if let Some(c) = ClockedStream::of(session.as_downstream().stream()) {
                c.abort();
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn request_refused(
        &self,
        session: &pingora::protocols::http::ServerSession,
        e: Option<&Error>,
        status: Option<u16>,
    ) -> bool {
        // One access-log line and one count per refused request, never a
        // line on stderr: a scan must not flood the error log.
        let reason = metrics::refusal_index(e.map(|e| e.etype()), status);
        self.metrics.refused[reason].inc();
        let h1 = session.as_http1();
        // `req_header()` panics on a head that did not parse; the summary
        // starts with `-` exactly then.
        let head = h1
            .filter(|s| !s.request_summary().starts_with("- "))
            .map(|s| s.req_header());
        let method = head.map_or("-", |h| h.method.as_str());
        self.metrics.route(None).record(
            metrics::method_index(method),
            status.unwrap_or(0),
            Duration::ZERO,
            0,
            0,
        );
        debug!(
            "refused before routing ({}): {e:?}",
            metrics::REFUSALS[reason]
        );
        if self.access_log != AccessLogFormat::Off {
            let client = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            access_log::write(
                self.access_log,
                &Entry {
                    time: SystemTime::now(),
                    client,
                    method,
                    target: head.map_or(b"-", |h| h.raw_path()),
                    version: match head {
                        Some(h) => h.version,
                        None if session.is_http2() => http::Version::HTTP_2,
                        None => http::Version::HTTP_11,
                    },
                    status: status.unwrap_or(0),
                    bytes_sent: 0,
                    bytes_received: 0,
                    duration: Duration::ZERO,
                    request_id: "",
                    route: None,
                    upstream: None,
                    referer: head
                        .and_then(|h| h.headers.get("referer"))
                        .map(|v| v.as_bytes()),
                    user_agent: head
                        .and_then(|h| h.headers.get("user-agent"))
                        .map(|v| v.as_bytes()),
                    refused: Some(metrics::REFUSALS[reason]),
                },
            );
        }
        true
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _e: &Error) -> bool {
        // fail_to_proxy already logged one line with the route and cause.
        true
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        if let Some(c) = ClockedStream::of(session.as_downstream().stream()) {
            c.request_done();
        }
        let req = session.req_header();
        let status = ctx
            .cut_short
            .unwrap_or_else(|| session.response_written().map_or(0, |r| r.status.as_u16()));
        let duration = ctx.started.elapsed();
        let bytes_sent = session.body_bytes_sent() as u64;
        self.metrics.route(self.metrics_route(ctx)).record(
            metrics::method_index(req.method.as_str()),
            status,
            duration,
            ctx.request_body_bytes,
            bytes_sent,
        );
        if self.access_log == AccessLogFormat::Off {
            return;
        }
        let entry = Entry {
            time: SystemTime::now(),
            client: ctx.client_ip,
            method: req.method.as_str(),
            target: req.raw_path(),
            version: req.version,
            status,
            bytes_sent,
            bytes_received: ctx.request_body_bytes,
            duration,
            request_id: ctx.request_id.to_str().unwrap_or("-"),
            route: ctx
                .route
                .and_then(|i| self.routes.get(i))
                .map(|r| r.cfg.name.as_str())
                .or(ctx.dynamic.as_ref().map(|_| metrics::HOSTPORT)),
            upstream: ctx.upstream_addr,
            referer: req.headers.get("referer").map(|v| v.as_bytes()),
            user_agent: req.headers.get("user-agent").map(|v| v.as_bytes()),
            refused: ctx.refused,
        };
        access_log::write(self.access_log, &entry);
    }
}

impl Pylon {
    /// 403 for a host:port request, counted and logged with its reason
    /// (one of [`metrics::HOSTPORT_REFUSALS`]).
    async fn refuse_hostport(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        reason: &'static str,
    ) -> Result<bool> {
        if let Some(i) = metrics::HOSTPORT_REFUSALS.iter().position(|r| *r == reason) {
            self.metrics.hostport_refused[i].inc();
        }
        ctx.refused = Some(reason);
        let body = if reason == "not_allowed" {
            "Forbidden: destination not allowed.\n"
        } else {
            "Forbidden: this node link is not signed by Pylon, or has expired.\n"
        };
        self.respond(session, ctx, 403, &[], body).await
    }

    /// `url` with the token of the host:port link it names, when signing.
    fn sign(&self, url: String, ttl: impl Fn(&Signer) -> u32) -> String {
        match &self.signer {
            Some(s) => s
                .sign_url(&url, link_signing::expiry(unix_now(), ttl(s)))
                .unwrap_or(url),
            None => url,
        }
    }

    /// A `Refresh` value whose URL is signed like a page's links.
    fn sign_refresh(&self, value: String) -> String {
        let Some((start, end)) = self.signer.as_ref().and(redirect::refresh_url(&value)) else {
            return value;
        };
        let url = self.sign(value[start..end].to_string(), |s| s.link_ttl);
        format!("{}{url}{}", &value[..start], &value[end..])
    }

    /// The metrics slot of the request: its route, the `/a/` destinations'
    /// own slot just after the routes (see [`metrics::HOSTPORT`]), or none.
    fn metrics_route(&self, ctx: &Ctx) -> Option<usize> {
        ctx.route
            .or_else(|| ctx.dynamic.as_ref().map(|_| self.routes.len()))
    }

    /// Redirect, body and ETag rewriting of one upstream response of route
    /// `i` (response_filter).
    fn rewrite_response(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
        i: usize,
    ) -> Result<()> {
        let Some(route) = self.routes.get(i) else {
            return Ok(());
        };
        let has_redirect = resp.headers.contains_key(LOCATION)
            || resp.headers.contains_key(http::header::CONTENT_LOCATION)
            || resp.headers.contains_key("refresh");
        if !has_redirect && route.cfg.rewrite.is_none() {
            // The common case: nothing to rewrite, nothing to allocate.
            return Ok(());
        }
        let req = session.req_header();
        let scheme = if is_tls(session) { "https" } else { "http" };
        let host = authority::public(ctx.authority.as_ref().map(HeaderValue::as_bytes));
        let public = PublicOrigin::new(scheme, host);
        let status = resp.status.as_u16();

        if route.cfg.webhdfs_redirect && status == 307 {
            let to_datanode = resp
                .headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .filter(|loc| self.redirects.location(loc, &public, i).is_none())
                .and_then(redirect::datanode_redirect);
            if let Some(path) = to_datanode.filter(|_| self.hostport.is_some()) {
                // pyhdfs asserts that this 307 has an empty body.
                let path = self.sign(path, |s| s.redirect_ttl);
                resp.insert_header(LOCATION, public.absolute(&path))?;
                resp.remove_header(&http::header::TRANSFER_ENCODING);
                resp.insert_header(CONTENT_LENGTH, "0")?;
                ctx.drop_body = true;
                self.metrics.route(self.metrics_route(ctx)).rewrites.inc();
                return Ok(());
            }
        }

        let mut rewritten = false;
        if route.cfg.proxy_redirect && has_redirect {
            for name in [LOCATION, http::header::CONTENT_LOCATION] {
                let new = resp
                    .headers
                    .get(&name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| self.redirects.location(v, &public, i));
                if let Some(v) = new {
                    resp.insert_header(name, self.sign(v, |s| s.redirect_ttl))?;
                    rewritten = true;
                }
            }
            let refresh = resp
                .headers
                .get("refresh")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| self.redirects.refresh(v, &public, i));
            if let Some(v) = refresh {
                // A page's refresh may wait: the page links' lifetime.
                resp.insert_header("refresh", self.sign_refresh(v))?;
                rewritten = true;
            }
        }

        if route.cfg.rewrite.is_some() && status == 304 {
            // The validator of a body this route would have rewritten.
            let etag = resp
                .headers
                .get(http::header::ETAG)
                .and_then(|v| v.to_str().ok());
            if let Some(tagged) = etag.map(|e| redirect::etag_out(e, &route.cfg.etag_suffix)) {
                resp.insert_header(http::header::ETAG, tagged)?;
            }
        }
        if let Some(rules) = &route.cfg.rewrite {
            let has_body =
                req.method != http::Method::HEAD && !matches!(status, 100..=199 | 204 | 304);
            let content_type = resp.headers.get(CONTENT_TYPE).map(|v| v.as_bytes());
            let encoded = resp.headers.get(http::header::CONTENT_ENCODING).is_some();
            let vars =
                Vars::new(scheme, host.unwrap_or_default(), &route.cfg.prefix).map(|v| match &self
                    .signer
                {
                    Some(s) => v.signing(Stamp {
                        signer: s.clone(),
                        expires: link_signing::expiry(unix_now(), s.link_ttl),
                    }),
                    None => v,
                });
            if has_body && !encoded && route.cfg.rewrite_types.matches(content_type) {
                if let Some(vars) = vars {
                    ctx.rewriter = Some(rules.streamer(vars));
                    // The length changes; headers go out before the body.
                    resp.remove_header(&CONTENT_LENGTH);
                    if req.version == http::Version::HTTP_10 {
                        // An HTTP/1.0 client knows no chunked encoding: the
                        // body ends with the connection.
                        resp.remove_header(&http::header::TRANSFER_ENCODING);
                        session.set_keepalive(None);
                    } else {
                        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
                    }
                    let etag = resp
                        .headers
                        .get(http::header::ETAG)
                        .and_then(|v| v.to_str().ok());
                    if let Some(tagged) =
                        etag.map(|e| redirect::etag_out(e, &route.cfg.etag_suffix))
                    {
                        resp.insert_header(http::header::ETAG, tagged)?;
                    }
                    rewritten = true;
                }
            }
        }
        if rewritten {
            self.metrics.route(self.metrics_route(ctx)).rewrites.inc();
        }
        Ok(())
    }
}
