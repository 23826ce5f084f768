//! The host:port destination step: `/a/<host>:<port>/…` (and the other
//! `hostport.prefixes`) forwarded to a named node, only when every address
//! the name resolves to is allowed (`hostport.rs`).

use std::net::SocketAddr;

use http::header::HeaderValue;

use log::debug;

use super::reply::Reply;
use super::state::{Ctx, Destination, Pylon, Target};
use crate::config::HostPort;
use crate::hostport;
use crate::path::Target as Normalised;
use crate::routing;
use crate::upstream;

/// A destination named in the path, checked for form but not resolved.
struct Named<'t> {
    host: &'t str,
    port: u16,
    /// `host:port` as the client wrote it (brackets kept for IPv6).
    segment: &'t str,
    /// The `hostport.prefixes` entry it came under.
    prefix: &'t str,
    /// The path to forward: what follows the destination, `/` if nothing.
    rest: &'t str,
}

impl Pylon {
    /// `Ok(true)` when the path names a host:port destination that may be
    /// forwarded to, with the destination and upstream target set in
    /// `ctx`; `Ok(false)` when it names none and routing goes on. 400 for a
    /// malformed `/a/…`, 502 when the host does not resolve in time, 403
    /// when any of its addresses is not allowed.
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
        let addr = self.resolve(&destinations.policy, &named).await?;
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
    /// resolve within the connect timeout, 403 unless every address it has
    /// is allowed: the name is the client's to choose, the addresses are not.
    async fn resolve(&self, policy: &HostPort, named: &Named<'_>) -> Result<SocketAddr, Reply> {
        let addrs =
            upstream::resolve_destination(named.host, named.port, policy.timeouts.connect).await;
        let Some(first) = addrs.first().copied() else {
            return Err(Reply::text(
                502,
                "502 upstream unavailable: cannot resolve the host\n",
            ));
        };
        if let Some(why) = addrs
            .iter()
            .find_map(|a| hostport::check(*a, policy, &self.own_addrs).err())
        {
            debug!("403 for /a/{}: {why}", named.segment);
            return Err(Reply::text(403, "Forbidden: destination not allowed.\n"));
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
        Some((p.as_str(), segment, rest, hostport::parse(segment)))
    });
    match found {
        Some((prefix, segment, rest, Some((host, port)))) => Ok(Some(Named {
            host,
            port,
            segment,
            prefix,
            rest,
        })),
        Some(("/a", _, _, None)) => Err(malformed()),
        _ => Ok(None),
    }
}

fn malformed() -> Reply {
    Reply::text(400, "Bad request: expected /a/<host>:<port>/<path>.\n")
}
