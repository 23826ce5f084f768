//! The request phase: the steps of `request_filter`, in the order
//! [`Pylon::admit`] runs them, and the body limit of `request_body_filter`.
//! Each step returns `Ok` to let the request go on or the [`Reply`] Pylon
//! answers with instead.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, HOST, RETRY_AFTER};
use log::debug;
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::ErrorType;

use super::reply::Reply;
use super::state::{peer_ip, Ctx, Pylon, Route, Target};
use crate::authority;
use crate::config::Limits;
use crate::connection_guard::ClockedStream;
use crate::headers::{self, X_FORWARDED_FOR, X_REQUEST_ID};
use crate::path::{self, Target as Normalised};
use crate::routing;
use crate::transfer_coding;

impl Pylon {
    /// What every request gets before any step can answer it: the head
    /// clock stopped (and the body's started), pipelining, keep-alive
    /// bounded, the client address and the request id. Never answers.
    pub(super) fn begin(&self, session: &mut Session, ctx: &mut Ctx) {
        // Pipelined requests (RFC 9112 §9.3.2) are answered one after the
        // other: bytes read past this request's end stay for the next one
        // instead of closing the connection. A request whose body is left
        // unread still closes (`respond`, `fail_to_proxy`).
        session.set_pipelining_enabled(true);
        // The head is in: stop its clock, and start the body's if one follows.
        let body_follows = !session.is_body_empty();
        if let Some(c) = ClockedStream::of(session.as_downstream().stream()) {
            // Only a body waits for `100 Continue`: no lookup without one.
            let expects_continue = body_follows
                && session
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
        // What the client says of itself counts only from a trusted proxy,
        // so the other clients' headers are not even looked up.
        if let Some(peer) = peer_ip(session) {
            ctx.peer_trusted = headers::is_trusted(peer, &self.trusted);
            let xff = trusted_value(req, ctx, X_FORWARDED_FOR.name()).map(HeaderValue::as_bytes);
            ctx.client_ip = Some(headers::real_client_ip(peer, xff, &self.trusted));
        }
        // Kept from a trusted proxy, so one id follows a request end to end.
        ctx.request_id = match trusted_value(req, ctx, X_REQUEST_ID.name()) {
            Some(v) if headers::acceptable_request_id(v.as_bytes()) => v.clone(),
            _ => headers::new_request_id_value(),
        };
    }

    /// The steps of `request_filter` after [`Pylon::begin`], in order. `Ok`
    /// when the request is to be forwarded, with its target (route or
    /// destination) and upstream target in `ctx`; otherwise the answer.
    pub(super) async fn admit(
        &self,
        req: &RequestHeader,
        tls: bool,
        ctx: &mut Ctx,
    ) -> Result<(), Reply> {
        limits(req, &self.limits)?;
        ctx.authority = request_authority(req).map_err(|r| Reply::text(400, r.message()))?;
        let target = normalised(req)?;
        self.healthz(&target)?;
        let host = ctx.authority.as_ref().map(HeaderValue::as_bytes);
        self.host(host)?;
        self.https_redirect(tls, host, &target)?;
        if self.destination(&target, ctx).await? {
            return Ok(());
        }
        let (route, rest) = self.route(&target)?;
        ctx.target = Target::Route(route.index);
        access(route, ctx)?;
        add_slash(route, rest, target.query)?;
        body_limit(route, req)?;
        ctx.upstream_target =
            routing::upstream_target(&route.cfg.upstream.base_path, rest, target.query);
        Ok(())
    }

    /// `/healthz` is answered here, before the host check, so that probes
    /// may use any address: 200 while ready, 503 once leaving, so a balancer
    /// moves traffic away before this instance closes anything.
    fn healthz(&self, target: &Normalised) -> Result<(), Reply> {
        if target.path != "/healthz" {
            return Ok(());
        }
        Err(match self.lifecycle.is_leaving() {
            false => Reply::text(200, "Pylon ready."),
            true => Reply::text(503, "Pylon draining."),
        })
    }

    /// 421 unless the request names this instance (`server_names`), since
    /// redirects and pages are built from its host.
    fn host(&self, host: Option<&[u8]>) -> Result<(), Reply> {
        match headers::host_allowed(host, &self.server_names) {
            true => Ok(()),
            false => Err(Reply::text(421, "Misdirected request: unknown host.\n")),
        }
    }

    /// With `tls.redirect_http`, a plain-HTTP request gets a 307 to the
    /// same target on the public HTTPS port (400 when its host cannot be
    /// written into one). 307 keeps the method and body (the original's 301
    /// turned POSTs into GETs).
    fn https_redirect(
        &self,
        tls: bool,
        host: Option<&[u8]>,
        target: &Normalised,
    ) -> Result<(), Reply> {
        let Some(https) = self.tls.as_ref().filter(|t| t.redirect_http && !tls) else {
            return Ok(());
        };
        Err(
            match headers::https_location(host, https.public_port, &target.path, target.query) {
                Some(location) => Reply::redirect(307, location),
                None => Reply::text(400, "Bad request: invalid Host.\n"),
            },
        )
    }

    /// The route whose prefix is the longest match of the path, and the rest
    /// of the path after that prefix; 404 when none matches.
    fn route<'t>(&self, target: &'t Normalised) -> Result<(&Route, &'t str), Reply> {
        self.router
            .find(&target.path)
            .and_then(|m| Some((self.routes.get(m.route)?, target.path.get(m.rest_start..)?)))
            .ok_or_else(|| Reply::text(404, "No route for this path.\n"))
    }

    /// request_body_filter: stops the body clock at the end of the body and
    /// fails the request with 413 once the body read so far outgrows the
    /// route's `max_body_size` (a chunked body declares no length).
    pub(super) fn body_size(
        &self,
        session: &mut Session,
        body: Option<&Bytes>,
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
            let limit = self.route_of(ctx).and_then(|r| r.cfg.max_body_size);
            if limit.is_some_and(|l| ctx.request_body_bytes > l) {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body exceeds the route's max_body_size",
                ));
            }
        }
        Ok(())
    }
}

/// The request's `name` header when the peer is a trusted proxy, `None`
/// without a lookup otherwise.
pub(super) fn trusted_value<'r>(
    req: &'r RequestHeader,
    ctx: &Ctx,
    name: &http::HeaderName,
) -> Option<&'r HeaderValue> {
    match ctx.peer_trusted {
        true => req.headers.get(name),
        false => None,
    }
}

/// 400 for a long method, 414 or 431 when the request head exceeds the
/// configured limits, 400/501 for a transfer coding Pylon cannot forward
/// faithfully (see `transfer_coding.rs`).
fn limits(req: &RequestHeader, limits: &Limits) -> Result<(), Reply> {
    if let Some((code, why)) = over_limits(req, limits) {
        return Err(Reply::text(code, why));
    }
    let codings = req.headers.get_all(http::header::TRANSFER_ENCODING).iter();
    transfer_coding::check(codings.map(HeaderValue::as_bytes))
        .map_err(|(code, why)| Reply::text(code, why))
}

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

/// The request's authority ([`authority::of_request`]) as a header value:
/// the client's own `Host` bytes for HTTP/1.x, a copy of `:authority` for
/// HTTP/2. A refusal (missing, repeated or conflicting host) is a 400.
fn request_authority(
    req: &RequestHeader,
) -> std::result::Result<Option<HeaderValue>, authority::Refusal> {
    let uri_authority = req.uri.authority().map(|a| a.as_str().as_bytes());
    // One lookup of `Host` serves the check and the value.
    let hosts = req.headers.get_all(HOST);
    let named = authority::of_request(
        req.version,
        uri_authority,
        hosts.iter().map(HeaderValue::as_bytes),
    )?;
    Ok(match (named, req.uri.authority()) {
        (None, _) => None,
        (Some(_), Some(a)) => HeaderValue::from_str(a.as_str()).ok(),
        (Some(_), None) => hosts.iter().next().cloned(),
    })
}

/// The normalised path and the query (`path.rs`); 400 when the target
/// cannot be normalised.
fn normalised(req: &RequestHeader) -> Result<Normalised<'_>, Reply> {
    path::normalise(req.raw_path()).map_err(|e| {
        debug!("400 for {:?}: {e}", String::from_utf8_lossy(req.raw_path()));
        Reply::text(400, format!("Bad request: {e}.\n"))
    })
}

/// The route's access rules for the client address: 403 when denied or
/// not allowed, 429 (with `Retry-After`) over the route's rate limit.
fn access(route: &Route, ctx: &Ctx) -> Result<(), Reply> {
    let Some(ip) = ctx.client_ip else {
        return Ok(());
    };
    let listed = |nets: &[ipnet::IpNet]| nets.iter().any(|n| n.contains(&ip));
    if listed(&route.cfg.deny) || (!route.cfg.allow.is_empty() && !listed(&route.cfg.allow)) {
        return Err(Reply::text(403, "Forbidden.\n"));
    }
    if let (Some(rate), Some(limit)) = (&route.rate, route.cfg.rate_limit) {
        if rate.observe(&ip, 1) > limit as isize {
            return Err(Reply::text(429, "Too many requests.\n").with(RETRY_AFTER, "1"));
        }
    }
    Ok(())
}

/// With `add_slash`, the bare prefix (`/grafana`) gets a 301 to
/// `prefix/`. Relative, so the redirect never depends on a client-chosen
/// Host; the slash goes before the query (the original put it after).
fn add_slash(route: &Route, rest: &str, query: Option<&[u8]>) -> Result<(), Reply> {
    if !rest.is_empty() || !route.cfg.add_slash {
        return Ok(());
    }
    let mut location = format!("{}/", route.cfg.prefix);
    if let Some(q) = query {
        location.push('?');
        location.push_str(&String::from_utf8_lossy(q));
    }
    Err(Reply::redirect(301, location))
}

/// 413 when the declared `Content-Length` exceeds the route's
/// `max_body_size` (a body without one is counted in `body_size`).
fn body_limit(route: &Route, req: &RequestHeader) -> Result<(), Reply> {
    let Some(limit) = route.cfg.max_body_size else {
        return Ok(());
    };
    let declared = req
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared.is_some_and(|n| n > limit) {
        true => Err(Reply::text(413, "Request body too large for this route.\n")),
        false => Ok(()),
    }
}
