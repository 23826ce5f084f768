//! The Pingora glue. Each hook of [`ProxyHttp`] below is a short list of
//! named steps; this chart lists every step in order, the status it can
//! answer with itself, and the file it lives in. A step either lets the
//! request go on or hands back a `Reply`, which goes out through the one
//! reply path ([`Pylon::respond`], `reply.rs`) that adds the request id and
//! HSTS and closes a connection whose request body is left unread.
//!
//! ```text
//! hook / step                 answers with                             file
//! request_filter
//!   begin                     (never) head clock, pipelining,          request.rs
//!                             keep-alive, client address, request id
//!   admit, in order:                                                   request.rs
//!     limits                  400 long method, 414 target,
//!                             431 headers, 400/501 transfer coding
//!     request_authority       400 missing, repeated or conflicting Host
//!     normalised              400 path not normalisable
//!     healthz                 200 ready, 503 draining
//!     host                    421 not in server_names
//!     https_redirect          307 to https://, 400 bad Host
//!     destination             400 malformed /a/, 502 unresolved,       destination.rs
//!                             403 not allowed
//!     route                   404 no route
//!     access                  403 allow/deny, 429 rate limit
//!     add_slash               301 prefix → prefix/
//!     body_limit              413 declared Content-Length too large
//! upstream_peer: peer         502 no resolved endpoint                 forward.rs
//! fail_to_connect:            retry another endpoint of the route      forward.rs
//!   connect_failed
//! upstream_request_filter                                              forward.rs
//!   upstream_target           400 conflicting Content-Length; target
//!   upstream_host             Host
//!   validators                Accept-Encoding, If-None-Match
//!   forwarded                 request id, X-Forwarded-*, X-Real-IP
//! request_body_filter:        413 body outgrows max_body_size          request.rs
//!   body_size
//! response_filter
//!   every_response            request id, HSTS                         reply.rs
//!   upgraded                  101: the route's read timeout            response.rs
//!   hop_by_hop                hop-by-hop headers removed               response.rs
//!   rewrite_response          WebHDFS 307 → /a/, Location/Refresh,     response.rs
//!                             ETag suffix, body rewriter
//! response_body_filter:       streaming rewrite (rewrite.rs)           response.rs
//!   rewrite_body
//! fail_to_proxy: failed       502/504 naming the route, 400            reply.rs
//! request_refused:            (Pingora answered) log line and count    logging.rs
//!   log_refused
//! logging: log_request        access-log line, metrics                 logging.rs
//! ```
//!
//! `state.rs` holds what the hooks share: [`Pylon`], built once at start-up,
//! and [`Ctx`], the state of one request.

mod destination;
mod forward;
mod logging;
mod reply;
mod request;
mod response;
mod state;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

pub use state::Pylon;
use state::{is_tls, Ctx};

/// Headers `upstream_request_filter` may add to the upstream request.
const UPSTREAM_HEADER_INSERTS: usize = 9;

#[async_trait]
impl ProxyHttp for Pylon {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(&self.lifecycle)
    }

    /// No downstream modules. Pingora's default adds a response compression
    /// module, disabled, which Pylon never enables (it passes the upstream's
    /// encoding through); every request would still build it, box it and
    /// run its header and body filters.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    /// Runs the steps of the request phase in order. `Ok(true)` when Pylon
    /// answered itself (the response is written), `Ok(false)` when the
    /// request goes on to `upstream_peer` with `ctx` naming its target.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.begin(session, ctx);
        match self.admit(session.req_header(), is_tls(session), ctx).await {
            Ok(()) => Ok(false),
            Err(reply) => self.respond(session, ctx, &reply).await,
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        self.peer(ctx)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.connect_failed(peer, ctx, e)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Room for the headers added below (at most `Content-Length`, `Host`,
        // `If-None-Match`, `X-Request-Id` and five `X-Forwarded-*`/`X-Real-IP`)
        // at once: the request is a clone with no spare room, and each map
        // would otherwise grow, rehashing, more than once.
        req.reserve(UPSTREAM_HEADER_INSERTS);
        self.upstream_target(req, ctx)?;
        self.upstream_host(req, ctx)?;
        self.validators(req, ctx)?;
        self.forwarded(session, req, ctx)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.body_size(session, body.as_ref(), end, ctx)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.every_response(session, resp, ctx)?;
        if resp.status.as_u16() == 101 {
            self.upgraded(session, ctx);
            return Ok(());
        }
        response::hop_by_hop(resp);
        self.rewrite_response(session, resp, ctx)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        response::rewrite_body(body, end_of_stream, ctx);
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        self.failed(session, e, ctx).await
    }

    fn request_refused(
        &self,
        session: &pingora::protocols::http::ServerSession,
        e: Option<&Error>,
        status: Option<u16>,
    ) -> bool {
        self.log_refused(session, e, status);
        true
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _e: &Error) -> bool {
        // fail_to_proxy already logged one line with the route and cause.
        true
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        self.log_request(session, ctx);
    }
}
