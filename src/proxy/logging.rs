//! The end of every request: its access-log line and metrics, for the
//! requests Pylon's hooks saw (`logging`) and for those Pingora refused
//! before them (`request_refused`).

use std::time::{Duration, SystemTime};

use http::header::HeaderValue;
use log::debug;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;

use super::state::{Ctx, Pylon, Target};
use crate::access_log::{self, Entry};
use crate::config::AccessLogFormat;
use crate::connection_guard::ClockedStream;
use crate::metrics;

impl Pylon {
    /// logging: the connection's clock told the request is done, the
    /// request counted under its route (the status recorded is the one a
    /// cut-short response failed with), and its access-log line written.
    pub(super) fn log_request(&self, session: &mut Session, ctx: &Ctx) {
        if let Some(c) = ClockedStream::of(session.as_downstream().stream()) {
            c.request_done();
        }
        let req = session.req_header();
        let status = ctx
            .cut_short
            .unwrap_or_else(|| session.response_written().map_or(0, |r| r.status.as_u16()));
        let duration = ctx.started.elapsed();
        let bytes_sent = session.body_bytes_sent() as u64;
        self.metrics_of(ctx).record(
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
            host: ctx.authority.as_ref().map(HeaderValue::as_bytes),
            request_id: ctx.request_id.to_str().unwrap_or("-"),
            route: match &ctx.target {
                Target::Route(_) => self.route_of(ctx).map(|r| r.cfg.name.as_str()),
                Target::Destination(_) => Some(metrics::HOSTPORT),
                Target::Local => None,
            },
            upstream: ctx.upstream_addr,
            referer: req.headers.get("referer").map(|v| v.as_bytes()),
            user_agent: req.headers.get("user-agent").map(|v| v.as_bytes()),
            refused: ctx.refused,
        };
        access_log::write(self.access_log, &entry);
    }

    /// request_refused: a request Pingora refused before the hooks (a head
    /// that does not parse, CONNECT, a head cut short) gets one access-log
    /// line and one count, never a line on stderr: a scan must not flood
    /// the error log.
    pub(super) fn log_refused(
        &self,
        session: &ServerSession,
        e: Option<&Error>,
        status: Option<u16>,
    ) {
        let reason = metrics::refusal_index(e.map(|e| e.etype()), status);
        self.metrics.refused[reason].inc();
        // `req_header()` panics on a head that did not parse; the summary
        // starts with `-` exactly then.
        let head = session
            .as_http1()
            .filter(|s| !s.request_summary().starts_with("- "))
            .map(|s| s.req_header());
        let method = head.map_or("-", |h| h.method.as_str());
        self.metrics.unrouted().record(
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
        if self.access_log == AccessLogFormat::Off {
            return;
        }
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
                host: None,
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
}
