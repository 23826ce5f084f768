//! The forwarding phase: the peer of the request's target
//! (`upstream_peer`, `fail_to_connect`) and the request the upstream
//! receives (`upstream_request_filter`).

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, HOST};
use http::uri::{PathAndQuery, Uri};
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::ErrorType;

use super::request::trusted_value;
use super::state::{is_tls, peer_ip, Ctx, Pylon, Target};
use crate::headers::{
    self, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PREFIX, X_FORWARDED_PROTO, X_REAL_IP,
    X_REQUEST_ID,
};
use crate::redirect;

impl Pylon {
    /// upstream_peer: the destination's address with the `/a/` timeouts,
    /// or a healthy endpoint of the route other than one that just failed
    /// to connect. Fails (502) when the route has no resolved endpoint.
    pub(super) fn peer(&self, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if let (Target::Destination(d), Some(destinations)) = (&ctx.target, &self.hostport) {
            let mut peer = Box::new(destinations.template.clone());
            peer._address = pingora::protocols::l4::socket::SocketAddr::Inet(d.addr);
            ctx.upstream_addr = Some(d.addr);
            return Ok(peer);
        }
        let route = self.route_of(ctx).ok_or_else(not_routed)?;
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

    /// fail_to_connect: counts the failure (and a connect timeout) and
    /// marks the error retryable while another endpoint of the route may be
    /// up, at most three attempts; a lone endpoint is not hammered again.
    pub(super) fn connect_failed(
        &self,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_failures += 1;
        ctx.failed_addr = peer._address.as_inet().copied();
        let route_metrics = self.metrics_of(ctx);
        route_metrics.connect_failures.inc();
        if matches!(
            e.etype(),
            ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout
        ) {
            route_metrics.timeouts.inc();
        }
        let endpoints = self
            .route_of(ctx)
            .map_or(0, |r| r.upstream.endpoint_count());
        if ctx.connect_failures < endpoints.min(3) {
            e.set_retry(true);
        }
        e
    }

    /// The upstream target (the route's base path in place of its prefix)
    /// and one `Content-Length`: Pingora refuses differing values but passes
    /// equal repeats (`5` twice, or `5, 5`); one is sent, as RFC 9110 §8.6
    /// allows, so no upstream can read the framing differently.
    pub(super) fn upstream_target(&self, req: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
        set_target(req, &ctx.upstream_target)?;
        if let Some(length) = single_content_length(req)? {
            req.insert_header(CONTENT_LENGTH, length)?;
        }
        Ok(())
    }

    /// `Host`: the route's upstream host unless `preserve_host`, or the
    /// destination's `host:port`. Fails only for a request with neither a
    /// route nor a destination, which `request_filter` never lets through.
    pub(super) fn upstream_host(&self, req: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
        let host = match &ctx.target {
            Target::Route(i) => {
                let r = self.routes.get(*i).ok_or_else(not_routed)?;
                (!r.cfg.preserve_host).then(|| r.cfg.host_header.clone())
            }
            Target::Destination(d) => Some(d.authority.clone()),
            Target::Local => return Err(not_routed()),
        };
        if let Some(h) = host {
            req.insert_header(HOST, h)?;
        }
        Ok(())
    }

    /// On a route that rewrites bodies: no `Accept-Encoding`, since bodies
    /// must arrive uncompressed to be rewritten (the original sent
    /// `Accept-Encoding: ""` for the same reason); `If-None-Match`
    /// validators lose the suffix Pylon added, or go when they do not carry
    /// it.
    pub(super) fn validators(&self, req: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
        let Some(r) = self.route_of(ctx).filter(|r| r.cfg.rewrite.is_some()) else {
            return Ok(());
        };
        req.remove_header("accept-encoding");
        let inm = req
            .headers
            .get("if-none-match")
            .and_then(|v| v.to_str().ok());
        if let Some(inm) = inm {
            match redirect::if_none_match_in(inm, &r.cfg.etag_suffix) {
                Some(v) => req.insert_header("if-none-match", v)?,
                None => {
                    req.remove_header("if-none-match");
                }
            }
        }
        Ok(())
    }

    /// The request id, `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto`
    /// and `X-Forwarded-Host` (the client's values, or a trusted proxy's),
    /// and `X-Forwarded-Prefix`: the public prefix of the route or
    /// destination, none for `/`.
    /// `req` is a fresh copy of the client's request, so what the client
    /// sent is read from it before it is overwritten.
    pub(super) fn forwarded(
        &self,
        session: &Session,
        req: &mut RequestHeader,
        ctx: &Ctx,
    ) -> Result<()> {
        req.insert_header(&*X_REQUEST_ID, ctx.request_id.clone())?;
        // The client's own forwarding headers count only from a trusted
        // proxy (`trusted_value`): for other clients they are not looked up.
        if let Some(peer) = peer_ip(session) {
            let incoming = trusted_value(req, ctx, X_FORWARDED_FOR.name());
            let xff =
                headers::forwarded_for(peer, incoming.map(HeaderValue::as_bytes), &self.trusted);
            req.insert_header(&*X_FORWARDED_FOR, xff)?;
        }
        if let Some(ip) = ctx.client_ip {
            req.insert_header(&*X_REAL_IP, headers::ip_value(ip))?;
        }
        let proto = headers::forwarded_proto(
            if is_tls(session) { "https" } else { "http" },
            ctx.peer_trusted,
            trusted_value(req, ctx, X_FORWARDED_PROTO.name()).map(HeaderValue::as_bytes),
        );
        // Static values: text would be checked and copied for every request.
        let proto = match proto {
            "https" => const { HeaderValue::from_static("https") },
            _ => const { HeaderValue::from_static("http") },
        };
        req.insert_header(&*X_FORWARDED_PROTO, proto)?;
        let forwarded_host = match trusted_value(req, ctx, X_FORWARDED_HOST.name()) {
            Some(h) => Some(h.clone()),
            None => ctx.authority.clone(),
        };
        match forwarded_host {
            Some(h) => req.insert_header(&*X_FORWARDED_HOST, h)?,
            None => {
                req.remove_header(X_FORWARDED_HOST.name());
            }
        }
        let prefix = match &ctx.target {
            Target::Route(i) => self.routes.get(*i).map(|r| r.cfg.prefix_header.clone()),
            Target::Destination(d) => Some(d.prefix.clone()),
            Target::Local => None,
        };
        match prefix {
            Some(p) if p.as_bytes() != b"/" => req.insert_header(&*X_FORWARDED_PREFIX, p)?,
            _ => {
                req.remove_header(X_FORWARDED_PREFIX.name());
            }
        }
        Ok(())
    }
}

/// A request forwarded without a target, which `request_filter` never
/// lets through.
fn not_routed() -> Box<Error> {
    Error::explain(ErrorType::InternalError, "request without a target")
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

/// Makes `target` the request's target. An origin-form target that `http`
/// takes as it is (valid UTF-8, no fragment) becomes the URI directly:
/// `set_raw_path` would run the same `PathAndQuery` parser on it, after a
/// UTF-8 check of its own and through `Uri`'s builder, which cost as much
/// again. Anything else (a target the parser refuses, alters or cannot
/// hold) goes through `set_raw_path`, with its checks and its errors.
fn set_target(req: &mut RequestHeader, target: &[u8]) -> Result<()> {
    if target.first() == Some(&b'/') {
        if let Ok(path) = PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(target)) {
            if path.as_str().len() == target.len() {
                req.set_uri(Uri::from(path));
                return Ok(());
            }
        }
    }
    req.set_raw_path(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct path must leave the request exactly as `set_raw_path`
    /// would, and fall back for every target it does not take whole.
    #[test]
    fn set_target_matches_set_raw_path() {
        let targets: &[&[u8]] = &[
            b"/",
            b"/api/small",
            b"/api/v1/jobs?x=1&y=%20",
            b"/base?",
            b"/a;b=c/d?q=\"{}\"",
            b"/frag#ment",
            b"/q?x#y",
            b"/caf\xc3\xa9?\xc3\xa9",
            b"/bad\xff?q",
            b"/q?\xff",
            b"/sp ace",
            b"/tab\t",
            b"/ctl\x01",
            b"*",
            b"",
        ];
        for target in targets {
            let mut direct = RequestHeader::build("GET", b"/old", None).unwrap();
            let mut parsed = direct.clone();
            let a = set_target(&mut direct, target);
            let b = parsed.set_raw_path(target);
            assert_eq!(a.is_ok(), b.is_ok(), "{target:?}");
            assert_eq!(direct.raw_path(), parsed.raw_path(), "{target:?}");
            assert_eq!(direct.uri, parsed.uri, "{target:?}");
        }
    }
}
