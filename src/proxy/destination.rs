//! The host:port destination step: `/a/<host>:<port>/…` (and the other
//! `hostport.prefixes`) forwarded to a named node, only when the link is
//! signed by Pylon (with a signing key, `link_signing.rs`) and every address
//! the name resolves to is allowed (`hostport.rs`).

use std::net::SocketAddr;

use http::header::HeaderValue;

use log::debug;

use super::reply::Reply;
use super::state::{unix_now, Ctx, Destination, Pylon, Target};
use crate::config::HostPort;
use crate::hostport;
use crate::link_signing;
use crate::metrics;
use crate::path::Target as Normalised;
use crate::routing;
use crate::upstream;

/// A destination named in the path, checked for form but not resolved.
struct Named<'t> {
    host: &'t str,
    port: u16,
    /// `host:port` as the client wrote it (brackets kept for IPv6), without
    /// the signature, which is never sent on.
    segment: &'t str,
    /// The signature glued to the segment, if any.
    token: Option<&'t str>,
    /// The `hostport.prefixes` entry it came under.
    prefix: &'t str,
    /// The path to forward: what follows the destination, `/` if nothing.
    rest: &'t str,
}

impl Pylon {
    /// A host:port request refused with 403: counted under its reason (one
    /// of [`metrics::HOSTPORT_REFUSALS`]) and named in the access log.
    fn refuse(&self, ctx: &mut Ctx, reason: &'static str) -> Reply {
        if let Some(i) = metrics::HOSTPORT_REFUSALS.iter().position(|r| *r == reason) {
            if let Some(c) = self.metrics.hostport_refused.get(i) {
                c.inc();
            }
        }
        ctx.refused = Some(reason);
        let body = if reason == "not_allowed" {
            "Forbidden: destination not allowed.\n"
        } else {
            "Forbidden: this node link is not signed by Pylon, or has expired.\n"
        };
        Reply::text(403, body)
    }

    /// `Ok(true)` when the path names a host:port destination that may be
    /// forwarded to, with the destination and upstream target set in
    /// `ctx`; `Ok(false)` when it names none and routing goes on. 400 for a
    /// malformed `/a/…`, 403 for a link Pylon did not sign (when it signs),
    /// 502 when the host does not resolve in time, 403 when any of its
    /// addresses is not allowed.
    pub(super) async fn destination(
        &self,
        target: &Normalised<'_>,
        ctx: &mut Ctx,
    ) -> Result<bool, Reply> {
        let Some(destinations) = &self.hostport else {
            return Ok(false);
        };
        let Some(named) = named(&destinations.policy, &target.path)? else {
            return Ok(false);
        };
        if let Some(signer) = destinations.signer.as_ref().filter(|s| s.require) {
            // Before anything is resolved: an unsigned link costs no lookup.
            let checked = signer
                .keys
                .verify(named.prefix, named.segment, named.token, unix_now());
            if let Err(why) = checked {
                debug!(
                    "403 for {}/{}: {}",
                    named.prefix,
                    named.segment,
                    why.as_str()
                );
                return Err(self.refuse(ctx, why.as_str()));
            }
        }
        let addr = match self.resolve(&destinations.policy, &named).await {
            Ok(addr) => addr,
            Err(Some(reply)) => return Err(reply),
            Err(None) => return Err(self.refuse(ctx, "not_allowed")),
        };
        // `parse` let through only characters a header value may hold.
        let values = HeaderValue::from_str(named.segment).and_then(|authority| {
            let prefix = HeaderValue::try_from(format!("{}/{}", named.prefix, named.segment))?;
            Ok((authority, prefix))
        });
        let Ok((authority, prefix)) = values else {
            return Err(malformed());
        };
        ctx.upstream_target = routing::upstream_target("", named.rest, target.query);
        ctx.target = Target::Destination(Destination {
            addr,
            authority,
            prefix,
        });
        Ok(true)
    }

    /// The first address of the destination; 502 when the name does not
    /// resolve within the connect timeout, `None` (a 403) unless every
    /// address it has is allowed: the name is the client's to choose, the
    /// addresses are not.
    async fn resolve(
        &self,
        policy: &HostPort,
        named: &Named<'_>,
    ) -> Result<SocketAddr, Option<Reply>> {
        let addrs =
            upstream::resolve_destination(named.host, named.port, policy.timeouts.connect).await;
        let Some(first) = addrs.first().copied() else {
            return Err(Some(Reply::text(
                502,
                "502 upstream unavailable: cannot resolve the host\n",
            )));
        };
        if let Some(why) = addrs
            .iter()
            .find_map(|a| hostport::check(*a, policy, &self.own_addrs).err())
        {
            debug!("403 for /a/{}: {why}", named.segment);
            return Err(None);
        }
        Ok(first)
    }
}

/// The destination the path names under one of the policy's prefixes, or
/// `None` when it names none (the path is routed as usual). A malformed
/// destination under `/a` is a 400; under another prefix the path is
/// routed as usual.
fn named<'t>(policy: &'t HostPort, path: &'t str) -> Result<Option<Named<'t>>, Reply> {
    let found = policy.prefixes.iter().find_map(|p| {
        let after = path
            .strip_prefix(p.as_str())
            .filter(|r| r.starts_with('/'))?;
        let (segment, rest) = hostport::split(after)?;
        let (segment, token) = link_signing::split_token(segment);
        Some((p.as_str(), segment, token, rest, hostport::parse(segment)))
    });
    match found {
        Some((prefix, segment, token, rest, Some((host, port)))) => Ok(Some(Named {
            host,
            port,
            segment,
            token,
            prefix,
            rest,
        })),
        Some(("/a", _, _, _, None)) => Err(malformed()),
        _ => Ok(None),
    }
}

fn malformed() -> Reply {
    Reply::text(400, "Bad request: expected /a/<host>:<port>/<path>.\n")
}
