//! The response phase: what `response_filter` and `response_body_filter`
//! do to an upstream response before the client sees it.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use pingora::prelude::*;
use pingora::proxy::Session;

use super::state::{is_tls, unix_now, Ctx, Pylon, Route};
use crate::authority;
use crate::headers;
use crate::link_signing::{self, Signer};
use crate::redirect::{self, PublicOrigin};
use crate::rewrite::{Stamp, Streamer, Vars};

/// Not one of `http`'s constants; a name given as text is parsed at each
/// lookup.
const REFRESH: HeaderName = HeaderName::from_static("refresh");

impl Pylon {
    /// A 101: an upgraded connection (WebSocket: kubectl exec, notebooks)
    /// may sit idle far longer than an HTTP request; it gets the route's
    /// read timeout.
    pub(super) fn upgraded(&self, session: &mut Session, ctx: &Ctx) {
        if let Some(route) = self.route_of(ctx) {
            session.set_read_timeout(Some(route.cfg.timeouts.read));
        }
    }

    /// Redirect, body and ETag rewriting of a response of a configured
    /// route (none for a destination): the WebHDFS datanode 307 becomes an
    /// `/a/` link with an empty body, `Location`/`Content-Location`/`Refresh`
    /// pointing at upstreams become public, and bodies of the route's types
    /// get a rewriter with ETags marked as rewritten.
    pub(super) fn rewrite_response(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(route) = self.route_of(ctx) else {
            return Ok(());
        };
        let has_redirect = resp.headers.contains_key(LOCATION)
            || resp.headers.contains_key(http::header::CONTENT_LOCATION)
            || resp.headers.contains_key(REFRESH);
        if !has_redirect && route.cfg.rewrite.is_none() {
            // The common case: nothing to rewrite, nothing to allocate.
            return Ok(());
        }
        let scheme = if is_tls(session) { "https" } else { "http" };
        let host = authority::public(ctx.authority.as_ref().map(HeaderValue::as_bytes));
        let public = PublicOrigin::new(scheme, host);
        if self.datanode_redirect(resp, route, &public)? {
            ctx.drop_body = true;
            route.metrics.rewrites.inc();
            return Ok(());
        }
        let mut rewritten = route.cfg.proxy_redirect
            && has_redirect
            && self.public_redirects(resp, route, &public)?;
        if route.cfg.rewrite.is_some() {
            let vars =
                Vars::new(scheme, host.unwrap_or_default(), &route.cfg.prefix).map(|v| match self
                    .signer()
                {
                    Some(s) => v.signing(Stamp {
                        signer: s.clone(),
                        expires: link_signing::expiry(unix_now(), s.link_ttl),
                    }),
                    None => v,
                });
            rewritten |= body_rewriter(session, resp, &mut ctx.rewriter, route, vars)?;
        }
        if rewritten {
            route.metrics.rewrites.inc();
        }
        Ok(())
    }

    /// WebHDFS's 307 to a datanode (a `Location` no route covers) becomes a
    /// 307 to `/a/<datanode>/…` with an empty body, which pyhdfs asserts on.
    /// `Ok(true)` when it did: the body is then to be dropped.
    fn datanode_redirect(
        &self,
        resp: &mut ResponseHeader,
        route: &Route,
        public: &PublicOrigin,
    ) -> Result<bool> {
        if !route.cfg.webhdfs_redirect || resp.status.as_u16() != 307 || self.hostport.is_none() {
            return Ok(false);
        }
        let to_datanode = resp
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .filter(|loc| self.redirects.location(loc, public, route.index).is_none())
            .and_then(redirect::datanode_redirect);
        let Some(path) = to_datanode else {
            return Ok(false);
        };
        let path = self.sign(path, |s| s.redirect_ttl);
        resp.insert_header(LOCATION, public.absolute(&path))?;
        resp.remove_header(&http::header::TRANSFER_ENCODING);
        resp.insert_header(CONTENT_LENGTH, "0")?;
        Ok(true)
    }

    /// `Location`, `Content-Location` and `Refresh` that point at an
    /// upstream of the route (or another route's) rewritten to the public
    /// origin; `Ok(true)` when any was.
    fn public_redirects(
        &self,
        resp: &mut ResponseHeader,
        route: &Route,
        public: &PublicOrigin,
    ) -> Result<bool> {
        let mut rewritten = false;
        for name in [LOCATION, http::header::CONTENT_LOCATION] {
            let new = resp
                .headers
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| self.redirects.location(v, public, route.index));
            if let Some(v) = new {
                resp.insert_header(name, self.sign(v, |s| s.redirect_ttl))?;
                rewritten = true;
            }
        }
        let refresh = resp
            .headers
            .get(REFRESH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| self.redirects.refresh(v, public, route.index));
        if let Some(v) = refresh {
            // A page's refresh may wait: the page links' lifetime.
            resp.insert_header("refresh", self.sign_refresh(v))?;
            rewritten = true;
        }
        Ok(rewritten)
    }

    fn signer(&self) -> Option<&std::sync::Arc<Signer>> {
        self.hostport.as_ref().and_then(|h| h.signer.as_ref())
    }

    /// `url` with the token of the host:port link it names, when signing.
    fn sign(&self, url: String, ttl: impl Fn(&Signer) -> u32) -> String {
        match self.signer() {
            Some(s) => s
                .sign_url(&url, link_signing::expiry(unix_now(), ttl(s)))
                .unwrap_or(url),
            None => url,
        }
    }

    /// A `Refresh` value whose URL is signed like a page's links.
    fn sign_refresh(&self, value: String) -> String {
        let Some((start, end)) = self.signer().and(redirect::refresh_url(&value)) else {
            return value;
        };
        let url = self.sign(value[start..end].to_string(), |s| s.link_ttl);
        format!("{}{url}{}", &value[..start], &value[end..])
    }
}

/// The `Connection`-nominated and hop-by-hop headers of the upstream's
/// response removed: they describe the upstream connection, not the
/// client's.
pub(super) fn hop_by_hop(resp: &mut ResponseHeader) {
    // Which of them the response carries, from one pass over its names:
    // usually `Connection` alone, and a hashed lookup for each of the six
    // cost more than the pass.
    let present = resp.headers.keys().fold(0u8, |present, name| {
        match headers::HOP_BY_HOP.iter().position(|h| h == name) {
            Some(i) => present | 1 << i,
            None => present,
        }
    });
    if present == 0 {
        // No `Connection` either (it is one of them): nothing nominated.
        return;
    }
    let nominated = headers::connection_nominated(resp.headers.get_all(CONNECTION).iter());
    for name in &nominated {
        resp.remove_header(name.as_str());
    }
    // In the listed order, as before: a removal reorders the rest.
    for (i, name) in headers::HOP_BY_HOP.iter().enumerate() {
        if present & 1 << i != 0 {
            resp.remove_header(name);
        }
    }
}

/// On a route with rewrite rules: a 304's ETag gets the route's suffix (the
/// validator of a body this route would have rewritten); a body of one of
/// the route's types, not encoded, gets a streaming rewriter, its length
/// dropped and its ETag suffixed. `Ok(true)` when a rewriter was set.
fn body_rewriter(
    session: &mut Session,
    resp: &mut ResponseHeader,
    rewriter: &mut Option<Streamer>,
    route: &Route,
    vars: Option<Vars>,
) -> Result<bool> {
    let Some(rules) = &route.cfg.rewrite else {
        return Ok(false);
    };
    let status = resp.status.as_u16();
    if status == 304 {
        suffix_etag(resp, route)?;
    }
    let req = session.req_header();
    let has_body = req.method != http::Method::HEAD && !matches!(status, 100..=199 | 204 | 304);
    let content_type = resp.headers.get(CONTENT_TYPE).map(|v| v.as_bytes());
    let encoded = resp.headers.get(http::header::CONTENT_ENCODING).is_some();
    if !has_body || encoded || !route.cfg.rewrite_types.matches(content_type) {
        return Ok(false);
    }
    let Some(vars) = vars else {
        return Ok(false);
    };
    *rewriter = Some(rules.streamer(vars));
    // The length changes; headers go out before the body.
    resp.remove_header(&CONTENT_LENGTH);
    if req.version == http::Version::HTTP_10 {
        // An HTTP/1.0 client knows no chunked encoding: the body ends with
        // the connection.
        resp.remove_header(&http::header::TRANSFER_ENCODING);
        session.set_keepalive(None);
    } else {
        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    suffix_etag(resp, route)?;
    Ok(true)
}

/// The response's ETag with the route's suffix, which marks it as the
/// validator of a rewritten body.
fn suffix_etag(resp: &mut ResponseHeader, route: &Route) -> Result<()> {
    let etag = resp
        .headers
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok());
    if let Some(tagged) = etag.map(|e| redirect::etag_out(e, &route.cfg.etag_suffix)) {
        resp.insert_header(http::header::ETAG, tagged)?;
    }
    Ok(())
}

/// response_body_filter: the body dropped (the WebHDFS 307) or passed
/// through the response's rewriter, if it has one.
pub(super) fn rewrite_body(body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut Ctx) {
    if ctx.drop_body {
        *body = None;
    } else if let Some(r) = ctx.rewriter.as_mut() {
        r.filter(body, end_of_stream);
    }
}
