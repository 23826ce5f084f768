//! The one reply path: everything Pylon answers itself (refusals,
//! redirects, `/healthz`, 502/504) goes out through [`Pylon::respond`], and
//! what every response carries, Pylon's own and the upstream's, is added by
//! [`Pylon::every_response`].

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderName, CONTENT_LENGTH, CONTENT_TYPE, STRICT_TRANSPORT_SECURITY};
use log::{debug, warn};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, Session};
use pingora::{ErrorSource, ErrorType};

use super::state::{is_tls, Ctx, Pylon};
use crate::connection_guard::ClockedStream;
use crate::headers::X_REQUEST_ID;

/// A response Pylon answers itself: what a step hands back instead of
/// letting the request go on.
pub(super) struct Reply {
    status: u16,
    header: Option<(HeaderName, Cow<'static, str>)>,
    body: Cow<'static, str>,
}

impl Reply {
    /// A plain-text answer.
    pub(super) fn text(status: u16, body: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            status,
            header: None,
            body: body.into(),
        }
    }

    /// A bodiless redirect to `location`.
    pub(super) fn redirect(status: u16, location: String) -> Reply {
        Reply::text(status, "").with(http::header::LOCATION, location)
    }

    /// The same answer with one more header.
    pub(super) fn with(mut self, name: HeaderName, value: impl Into<Cow<'static, str>>) -> Reply {
        self.header = Some((name, value.into()));
        self
    }
}

impl Pylon {
    /// Writes `reply` and returns `Ok(true)` (request_filter's "answered").
    /// A request that still has an unread body gets `Connection: close`, so
    /// leftover bytes can never be read as a next request; the headers every
    /// response carries come from [`Pylon::every_response`], as for proxied
    /// ones.
    pub(super) async fn respond(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        reply: &Reply,
    ) -> Result<bool> {
        if !session.is_body_empty() {
            session.set_keepalive(None);
        }
        let body = reply.body.as_ref();
        let mut resp = ResponseHeader::build(reply.status, Some(5))?;
        resp.insert_header(CONTENT_TYPE, "text/plain; charset=utf-8")?;
        resp.insert_header(CONTENT_LENGTH, body.len().to_string())?;
        if let Some((name, value)) = &reply.header {
            resp.insert_header(name.clone(), value.as_ref())?;
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
    pub(super) fn every_response(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &Ctx,
    ) -> Result<()> {
        if !ctx.request_id.is_empty() {
            resp.insert_header(&*X_REQUEST_ID, ctx.request_id.clone())?;
        }
        if let Some(hsts) = self.hsts.as_ref().filter(|_| is_tls(session)) {
            resp.insert_header(STRICT_TRANSPORT_SECURITY, hsts.clone())?;
        }
        Ok(())
    }

    /// fail_to_proxy: a failure before the response head went out is
    /// answered ([`failure`]'s status, naming the route); one after it cuts
    /// the response short so that every client sees it is incomplete. Upstream
    /// failures are logged once here, with the route and the cause.
    pub(super) async fn failed(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Ctx,
    ) -> FailToProxy {
        let name = self.route_of(ctx).map(|r| r.cfg.name.as_str());
        let (code, what) = failure(e);
        if matches!(
            (e.etype(), e.esource()),
            (
                ErrorType::ReadTimedout | ErrorType::WriteTimedout,
                ErrorSource::Upstream
            )
        ) {
            // Connect timeouts were counted in fail_to_connect.
            self.metrics_of(ctx).timeouts.inc();
        }
        if code >= 500 {
            warn!(
                "route {}: {code} {what} ({}): {e}",
                name.unwrap_or("-"),
                ctx.upstream_addr
                    .map_or_else(|| "-".to_string(), |a| a.to_string())
            );
        }
        if code > 0 && session.response_written().is_none() {
            let body = match name {
                Some(name) => format!("{code} {what}: route {name}\n"),
                None => format!("{code} {what}\n"),
            };
            // Keep the client connection only if nothing of the request is left unread.
            session.set_keepalive(None);
            if let Err(err) = self.respond(session, ctx, &Reply::text(code, body)).await {
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
}

/// The status and reason of a failed request: 502/504 for the upstream,
/// 400 for a client error, the status a filter chose, or 0 when the client
/// went away and nothing can be answered.
fn failure(e: &Error) -> (u16, &'static str) {
    match (e.etype(), e.esource()) {
        (ErrorType::HTTPStatus(c), _) => (*c, "request refused"),
        (ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout, _) => {
            (504, "upstream connect timed out")
        }
        (ErrorType::ReadTimedout | ErrorType::WriteTimedout, ErrorSource::Upstream) => {
            (504, "upstream timed out")
        }
        (_, ErrorSource::Upstream) => (502, "upstream unavailable"),
        (ErrorType::ConnectRefused | ErrorType::ConnectNoRoute | ErrorType::ConnectError, _) => {
            (502, "upstream unavailable")
        }
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
    }
}
