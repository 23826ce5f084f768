//! Upstream endpoints of one route: address resolution (refreshed in the
//! background, never on the request path), TLS settings and timeouts, and
//! the peer handed to Pingora for each request.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use log::{info, warn};
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::utils::tls::{parse_x509, WrappedX509};

use crate::config::{ConfigError, Route};

pub struct Upstream {
    pub route: String,
    pub display: String,
    lb: LoadBalancer<RoundRobin>,
    /// Everything but the address, built once; cloned per request.
    template: HttpPeer,
}

impl Upstream {
    pub fn new(route: &Route) -> Result<Self, ConfigError> {
        let uri = &route.upstream;
        let discovery = DnsDiscovery {
            host: uri.host.clone(),
            port: uri.port,
        };
        let lb = LoadBalancer::from_backends(Backends::new(Box::new(discovery)));

        let placeholder = SocketAddr::from(([0, 0, 0, 0], uri.port));
        let sni = if uri.tls {
            route.tls_sni.clone().unwrap_or_else(|| uri.host.clone())
        } else {
            String::new()
        };
        let mut template = HttpPeer::new(placeholder, uri.tls, sni);
        // Pingora pools connections by address, SNI and verify flags but not
        // by CA: without this, a connection verified against one route's CA
        // would be reused by a route that does not trust it.
        template.group_key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            route.name.hash(&mut h);
            h.finish()
        };
        let o = &mut template.options;
        o.connection_timeout = Some(route.connect_timeout);
        o.total_connection_timeout = Some(route.connect_timeout);
        o.read_timeout = Some(route.read_timeout);
        o.write_timeout = Some(route.write_timeout);
        o.idle_timeout = Some(route.idle_timeout);
        o.verify_cert = route.tls_verify;
        o.verify_hostname = route.tls_verify;
        if let Some(path) = &route.tls_ca_file {
            o.ca = Some(load_ca(path).map_err(|reason| {
                ConfigError::new(
                    format!("pylon.routes.{}.tls_ca_file", route.name),
                    path,
                    reason,
                )
            })?);
        }
        Ok(Upstream {
            route: route.name.clone(),
            display: uri.to_string(),
            lb,
            template,
        })
    }

    /// A peer for this request, or `None` when no address is known (name not
    /// resolved yet). `avoid` skips the address that just failed, if another
    /// exists.
    pub fn peer(&self, avoid: Option<&SocketAddr>) -> Option<Box<HttpPeer>> {
        let pick = |b: &Backend, healthy: bool| {
            healthy && avoid.is_none_or(|a| b.addr.as_inet() != Some(a))
        };
        let backend = self
            .lb
            .select_with(b"", 32, pick)
            .or_else(|| self.lb.select(b"", 32))?;
        let mut peer = Box::new(self.template.clone());
        peer._address = backend.addr;
        Some(peer)
    }

    pub fn endpoint_count(&self) -> usize {
        self.lb.backends().get_backend().len()
    }

    /// Resolves now; logs the outcome. Called at start and then periodically.
    pub async fn refresh(&self) {
        let before = self.lb.backends().get_backend();
        match self.lb.update().await {
            Ok(()) => {
                let after = self.lb.backends().get_backend();
                if after != before {
                    let list: Vec<String> = after.iter().map(|b| b.addr.to_string()).collect();
                    info!(
                        "route {}: upstream {} resolved to [{}]",
                        self.route,
                        self.display,
                        list.join(", ")
                    );
                }
            }
            Err(e) => warn!(
                "route {}: cannot resolve upstream {} (keeping {} known address(es)): {e}",
                self.route,
                self.display,
                before.len()
            ),
        }
    }
}

fn load_ca(path: &str) -> Result<Arc<[WrappedX509]>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut certs = Vec::new();
    for item in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = item.map_err(|e| format!("not a PEM certificate file: {e}"))?;
        certs.push(WrappedX509::new(der.to_vec(), parse_x509));
    }
    if certs.is_empty() {
        return Err("no PEM certificate found in the file".into());
    }
    Ok(certs.into())
}

/// Resolves the upstream host through the system resolver. Every address a
/// name has becomes an endpoint, balanced round-robin.
struct DnsDiscovery {
    host: String,
    port: u16,
}

#[async_trait]
impl ServiceDiscovery for DnsDiscovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let addrs: Vec<SocketAddr> = if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            vec![SocketAddr::new(ip, self.port)]
        } else {
            tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| {
                    pingora::Error::because(
                        pingora::ErrorType::ConnectNoRoute,
                        "DNS lookup failed",
                        e,
                    )
                })?
                .collect()
        };
        if addrs.is_empty() {
            return Err(pingora::Error::explain(
                pingora::ErrorType::ConnectNoRoute,
                "name has no addresses",
            ));
        }
        let set = addrs
            .into_iter()
            .map(|a| Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(a),
                weight: 1,
                ext: Default::default(),
            })
            .collect();
        Ok((set, HashMap::new()))
    }
}

/// Re-resolves every upstream periodically, so Kubernetes service IPs that
/// change are followed without a restart.
pub struct Refresher {
    pub upstreams: Vec<Arc<Upstream>>,
    pub interval: Duration,
}

#[async_trait]
impl BackgroundService for Refresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
            for u in &self.upstreams {
                u.refresh().await;
            }
        }
    }
}
