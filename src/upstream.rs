//! Upstream endpoints of one route: address resolution (refreshed in the
//! background, never on the request path), TLS settings and timeouts, and
//! the peer handed to Pingora for each request. The one exception, `/a/`
//! destinations named by the client, is resolved per request within the
//! connect timeout (`resolve_destination`).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use log::{debug, info, warn};
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::utils::tls::{parse_x509, WrappedX509};

use crate::config::{ConfigError, HealthCheck as HealthCheckConfig, Route, Timeouts};

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
        set_timeouts(&mut template, &route.timeouts);
        let o = &mut template.options;
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
        // A lone endpoint is what every step below ends with, healthy or
        // not, avoided or not; asking the balancer for it cost more than
        // the rest of this hook.
        let backends = self.lb.backends().get_backend();
        let lone = match backends.len() {
            1 => backends.first().map(|b| b.addr.clone()),
            _ => None,
        };
        let addr = match lone {
            Some(addr) => addr,
            // Healthy and not the one that just failed; then any healthy one;
            // then, with every endpoint marked down, still try one, as nginx
            // does: a failing health check is a hint, a 502 without trying is final.
            None => {
                self.lb
                    .select_with(b"", 32, |b, healthy| healthy && not_avoided(b))
                    .or_else(|| self.lb.select(b"", 32))
                    .or_else(|| self.lb.select_with(b"", 32, |b, _| not_avoided(b)))
                    .or_else(|| self.lb.select_with(b"", 32, |_, _| true))?
                    .addr
            }
        };
        let mut peer = Box::new(self.template.clone());
        peer._address = addr;
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

fn set_timeouts(peer: &mut HttpPeer, t: &Timeouts) {
    let o = &mut peer.options;
    o.connection_timeout = Some(t.connect);
    o.total_connection_timeout = Some(t.connect);
    o.read_timeout = Some(t.read);
    o.write_timeout = Some(t.write);
    o.idle_timeout = Some(t.idle);
}

/// The peer of a `/a/<host>:<port>` destination but its address: plain
/// HTTP, with the timeouts a route gets when it sets none.
pub fn destination_template(t: &Timeouts) -> HttpPeer {
    let mut peer = HttpPeer::new(SocketAddr::from(([0, 0, 0, 0], 80)), false, String::new());
    set_timeouts(&mut peer, t);
    peer
}

/// The addresses of a `/a/<host>:<port>` destination. This is the one
/// resolution on the request path (a destination is the client's choice,
/// not known in advance), so it is bounded by `limit`, the connect timeout:
/// a resolver that does not answer costs the request no more than an
/// upstream that does not. Empty when the name did not resolve in time.
pub async fn resolve_destination(host: &str, port: u16, limit: Duration) -> Vec<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    resolve_within(limit, tokio::net::lookup_host((host, port))).await
}

async fn resolve_within<I: Iterator<Item = SocketAddr>>(
    limit: Duration,
    lookup: impl std::future::Future<Output = std::io::Result<I>>,
) -> Vec<SocketAddr> {
    match tokio::time::timeout(limit, lookup).await {
        Ok(Ok(found)) => found.collect(),
        Ok(Err(e)) => {
            debug!("destination not resolved: {e}");
            Vec::new()
        }
        Err(_) => {
            debug!("destination not resolved within {limit:?}");
            Vec::new()
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
            // Each loop ends with the service: a probe must not outlive the
            // server that reports it (nor keep an embedding test's runtime busy).
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let mut reported: Vec<SocketAddr> = Vec::new();
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        states = u.check_health() => report(&u.route, &states, &mut reported),
                    }
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn health_check_loops_stop_with_the_service() {
        let yaml = "pylon:\n  routes:\n    x:\n      prefix: /x\n      upstream: http://127.0.0.1:1\n      health_check: {interval: 20ms}\n";
        let cfg = crate::config::from_yaml(yaml, &BTreeMap::new()).expect("config");
        let upstream = Arc::new(Upstream::new(&cfg.routes[0]).expect("upstream"));
        upstream.refresh().await;
        let probes = Arc::new(AtomicUsize::new(0));
        let counted = probes.clone();
        let refresher = Refresher {
            upstreams: vec![upstream],
            interval: Duration::from_secs(3600),
            on_health: Arc::new(move |_, _, _| {
                counted.fetch_add(1, Ordering::SeqCst);
            }),
        };
        let (stop, watch) = tokio::sync::watch::channel(false);
        let service = tokio::spawn(async move { refresher.start(watch).await });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(probes.load(Ordering::SeqCst) > 0, "no probe ran");
        stop.send(true).expect("service listening");
        service.await.expect("service ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let at_stop = probes.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(probes.load(Ordering::SeqCst), at_stop, "probes went on");
        drop(stop);
    }

    #[tokio::test]
    async fn a_destination_resolver_that_never_answers_costs_the_limit_only() {
        let never = std::future::pending::<std::io::Result<std::vec::IntoIter<SocketAddr>>>();
        let bounded = resolve_within(Duration::from_millis(50), never);
        let found = tokio::time::timeout(Duration::from_secs(5), bounded).await;
        assert_eq!(found.ok(), Some(Vec::new()), "still waiting after 5 s");
    }

    #[test]
    fn destinations_get_the_timeouts_of_a_route_that_sets_none() {
        let yaml =
            "pylon:\n  routes:\n    x:\n      prefix: /x\n      upstream: http://127.0.0.1:1\n";
        let cfg = crate::config::from_yaml(yaml, &BTreeMap::new()).expect("config");
        let route = Upstream::new(&cfg.routes[0])
            .expect("upstream")
            .template
            .options;
        let dest = destination_template(&Timeouts::default()).options;
        assert_eq!(dest.connection_timeout, route.connection_timeout);
        assert_eq!(
            dest.total_connection_timeout,
            route.total_connection_timeout
        );
        assert_eq!(dest.read_timeout, route.read_timeout);
        assert_eq!(dest.write_timeout, route.write_timeout);
        assert_eq!(dest.idle_timeout, route.idle_timeout);
    }
}
