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
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::utils::tls::{parse_x509, WrappedX509};

use crate::config::{ConfigError, HealthCheck as HealthCheckConfig, Route};

pub struct Upstream {
    pub route: String,
    pub display: String,
    /// `None` when the route's endpoints are not probed.
    pub health_interval: Option<Duration>,
    lb: LoadBalancer<RoundRobin>,
    /// Everything but the address, built once; cloned per request.
    template: HttpPeer,
}

impl Upstream {
    pub fn new(route: &Route) -> Result<Self, ConfigError> {
        let uri = &route.upstream;
        let discovery = DnsDiscovery {
            endpoints: route
                .endpoints
                .iter()
                .map(|e| (e.host.clone(), e.port))
                .collect(),
        };
        let mut lb = LoadBalancer::from_backends(Backends::new(Box::new(discovery)));

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
        if let Some(hc) = &route.health_check {
            lb.set_health_check(health_check(hc, &template, &uri.authority));
        }
        let display = route
            .endpoints
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Upstream {
            route: route.name.clone(),
            display,
            health_interval: route.health_check.as_ref().map(|h| h.interval),
            lb,
            template,
        })
    }

    /// A peer for this request, or `None` when no address is known (name not
    /// resolved yet). `avoid` skips the address that just failed, if another
    /// exists.
    pub fn peer(&self, avoid: Option<&SocketAddr>) -> Option<Box<HttpPeer>> {
        let not_avoided = |b: &Backend| avoid.is_none_or(|a| b.addr.as_inet() != Some(a));
        // Healthy and not the one that just failed; then any healthy one;
        // then, with every endpoint marked down, still try one, as nginx
        // does: a failing health check is a hint, a 502 without trying is final.
        let backend = self
            .lb
            .select_with(b"", 32, |b, healthy| healthy && not_avoided(b))
            .or_else(|| self.lb.select(b"", 32))
            .or_else(|| self.lb.select_with(b"", 32, |b, _| not_avoided(b)))
            .or_else(|| self.lb.select_with(b"", 32, |_, _| true))?;
        let mut peer = Box::new(self.template.clone());
        peer._address = backend.addr;
        Some(peer)
    }

    pub fn endpoint_count(&self) -> usize {
        self.lb.backends().get_backend().len()
    }

    /// Every resolved endpoint address with its health-check state.
    pub fn endpoint_health(&self) -> Vec<(SocketAddr, bool)> {
        let backends = self.lb.backends();
        backends
            .get_backend()
            .iter()
            .filter_map(|b| Some((*b.addr.as_inet()?, backends.ready(b))))
            .collect()
    }

    /// Probes every endpoint once; logs each change of state once.
    pub async fn check_health(&self) -> Vec<(SocketAddr, bool)> {
        let before = self.endpoint_health();
        self.lb.backends().run_health_check(true).await;
        let after = self.endpoint_health();
        for (addr, up) in &after {
            let was = before.iter().find(|(a, _)| a == addr).map(|(_, u)| *u);
            // Endpoints start healthy; only a real change is news.
            if was.is_some_and(|w| w != *up) || (was.is_none() && !up) {
                let state = if *up { "up again" } else { "DOWN" };
                warn!("route {}: endpoint {addr} is {state}", self.route);
            }
        }
        after
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
    endpoints: Vec<(String, u16)>,
}

#[async_trait]
impl ServiceDiscovery for DnsDiscovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for (host, port) in &self.endpoints {
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                addrs.push(SocketAddr::new(ip, *port));
            } else {
                let found = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|e| {
                        pingora::Error::because(
                            pingora::ErrorType::ConnectNoRoute,
                            format!("DNS lookup of {host} failed"),
                            e,
                        )
                    })?;
                addrs.extend(found);
            }
        }
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
    /// Told each health-check result: (route, states, addresses reported
    /// before), so gauges of endpoints that went away can be removed.
    pub on_health: HealthReport,
}

pub type HealthReport =
    Arc<dyn Fn(&str, &[(SocketAddr, bool)], &mut Vec<SocketAddr>) + Send + Sync>;

#[async_trait]
impl BackgroundService for Refresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        for u in &self.upstreams {
            let Some(every) = u.health_interval else {
                continue;
            };
            let (u, report) = (u.clone(), self.on_health.clone());
            tokio::spawn(async move {
                let mut reported: Vec<SocketAddr> = Vec::new();
                loop {
                    let states = u.check_health().await;
                    report(&u.route, &states, &mut reported);
                    tokio::time::sleep(every).await;
                }
            });
        }
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

/// The probe for one route: a TCP connect, or `GET path` expecting a status
/// below 400, with the route's TLS settings and the check's timeout.
fn health_check(
    cfg: &HealthCheckConfig,
    template: &HttpPeer,
    host: &str,
) -> Box<dyn HealthCheck + Send + Sync> {
    let mut peer = template.clone();
    peer.options.connection_timeout = Some(cfg.timeout);
    peer.options.total_connection_timeout = Some(cfg.timeout);
    peer.options.read_timeout = Some(cfg.timeout);
    peer.options.write_timeout = Some(cfg.timeout);
    match &cfg.path {
        None => {
            // A plain connect: TLS would only add the handshake's cost.
            let mut tcp = TcpHealthCheck::new();
            tcp.peer_template.options.connection_timeout = Some(cfg.timeout);
            tcp.peer_template.options.total_connection_timeout = Some(cfg.timeout);
            tcp
        }
        Some(path) => {
            let mut http = HttpHealthCheck::new(host, template.is_tls());
            http.peer_template = peer;
            // The path was checked when the configuration was loaded.
            if let Err(e) = http.req.set_raw_path(path.as_bytes()) {
                warn!("health check path {path:?} refused: {e}");
            }
            http.validator = Some(Box::new(|resp| {
                if resp.status.as_u16() < 400 {
                    Ok(())
                } else {
                    Err(pingora::Error::explain(
                        pingora::ErrorType::HTTPStatus(resp.status.as_u16()),
                        "health check status",
                    ))
                }
            }));
            Box::new(http)
        }
    }
}
