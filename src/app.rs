//! Assembly: a checked configuration becomes Pingora's `Server` with the
//! proxy, admin and background services. The `pylon` command (main.rs)
//! only parses flags and calls this.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use pingora_core::protocols::l4::stream::L4BufferSettings;

use crate::admin::{Admin, AdminRoute, Sampler};
use crate::client_deadlines::Policy;
use crate::config::{self, Config, ProcessEnv};
use crate::connection_guard::{GuardCounters, Guarded};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::proxy;
use crate::upstream::{HealthReport, Refresher, Upstream};

/// Pingora waits this long after SIGTERM/SIGQUIT before stopping; its own
/// default (300 s) outlives every orchestrator's kill timeout.
/// Pylon exits as soon as its last request is done, so this is only what a
/// long stream (a download, a WebSocket) gets to finish.
const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 25;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A configuration file, read and checked, with its upstreams built.
pub struct Loaded {
    server: ServerConf,
    pylon: Config,
    upstreams: Vec<Arc<Upstream>>,
    /// Identifies the loaded file in metrics and on the status page.
    config_hash: String,
}

/// Reads and checks the file at `path`; the error names key and value.
pub fn load(path: &str) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let (mut server, pylon) = config::load(&text, &ProcessEnv).map_err(|e| e.in_file(path))?;
    if server.grace_period_seconds.is_none() {
        server.grace_period_seconds = Some(DEFAULT_GRACE_PERIOD_SECONDS);
    }
    let upstreams = pylon
        .routes
        .iter()
        .map(|r| Upstream::new(r).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(Loaded {
        server,
        pylon,
        upstreams,
        config_hash: config::fingerprint(&text),
    })
}

/// What `pylon -t` prints: listeners and the route table.
pub fn describe(loaded: &Loaded) -> String {
    let mut out = format!(
        "listen: {}\n{}admin: {}\nroutes:\n",
        join(&loaded.pylon.listen),
        match &loaded.pylon.tls {
            Some(t) => format!("tls: {}\n", join(&t.listen)),
            None => String::new(),
        },
        loaded
            .pylon
            .admin_listen
            .map_or_else(|| "off".to_string(), |a| a.to_string())
    );
    let mut routes: Vec<_> = loaded.pylon.routes.iter().collect();
    routes.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    for r in routes {
        out.push_str(&format!(
            "  {:<22} {:<22} -> {} (from {})\n",
            r.name, r.prefix, r.upstream, r.upstream_source
        ));
    }
    if let Some(h) = &loaded.pylon.hostport {
        let allow: Vec<String> = h.allow.iter().map(|n| n.to_string()).collect();
        out.push_str(&format!(
            "  {:<22} {:<22} -> <host>:<port> in [{}]{}\n",
            "hostport",
            h.prefixes.join(","),
            allow.join(", "),
            if h.ports.is_empty() {
                String::new()
            } else {
                format!(" ports {:?}", h.ports)
            }
        ));
        if let Some(s) = &h.signing {
            out.push_str(&format!(
                "  {:<22} {} (key {}{}); links live {}s, redirects {}s\n",
                "hostport signing",
                if s.require {
                    "required"
                } else {
                    "links signed, unsigned requests still let through"
                },
                s.key_file,
                s.previous
                    .as_ref()
                    .map_or_else(String::new, |(f, _)| format!(
                        ", previous key {f} for {}s",
                        s.previous_grace.as_secs()
                    )),
                s.link_expiry.as_secs(),
                s.redirect_expiry.as_secs(),
            ));
        }
    }
    if !loaded.pylon.inactive.is_empty() {
        out.push_str(&format!(
            "inactive (no upstream set): {}\n",
            loaded.pylon.inactive.join(", ")
        ));
    }
    out
}

/// Pingora binds in a service task and keeps running when that fails
/// (pingora#667); checking first turns a taken port into a clear exit.
pub fn check_listeners_free(loaded: &Loaded) -> Result<(), String> {
    for addr in all_listeners(&loaded.pylon) {
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    }
    Ok(())
}

/// Client sockets are read without Pingora's 64 KiB read buffer: request
/// heads go straight into the session's own 4 KiB head buffer and bodies
/// into its body buffer, so the extra buffer only cost memory. With it,
/// 1,000 idle keep-alive clients held 113 MiB; without, 51 MiB, at the same
/// CPU per request (bench/, 100 B keep-alive). Writes keep Pingora's
/// default small coalescing buffer.
const CLIENT_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(0),
    write: None,
};

fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every address Pylon listens on: public, HTTPS and admin.
fn all_listeners(c: &Config) -> impl Iterator<Item = SocketAddr> + '_ {
    c.listen
        .iter()
        .chain(&c.admin_listen)
        .chain(c.tls.iter().flat_map(|t| &t.listen))
        .copied()
}

/// Prints `pylon -t`'s report; `pylon -t | head` must not panic on a
/// closed pipe.
pub fn print_check(loaded: &Loaded, path: &str) {
    let _ = writeln!(
        std::io::stdout().lock(),
        "{}pylon: configuration {path} is valid",
        describe(loaded)
    );
}

/// Prints `pylon -T`'s report: the effective configuration on stdout, so
/// it can be saved and fed back to `pylon -t`, and the verdict on stderr.
pub fn print_effective(loaded: &Loaded, path: &str) {
    let _ = write!(
        std::io::stdout().lock(),
        "{}",
        config::effective_yaml(&loaded.server, &loaded.pylon)
    );
    eprintln!("pylon: configuration {path} is valid");
}

/// Resolves every upstream once before serving, so the first requests do
/// not fail while the background refresher starts.
pub fn resolve_upstreams(loaded: &Loaded) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start resolver runtime: {e}"))?;
    rt.block_on(async {
        for u in &loaded.upstreams {
            u.refresh().await;
        }
    });
    Ok(())
}

/// The server with every service of `loaded` added, and the lifecycle
/// handle its signal watcher and proxy share. Errors are start-up failures
/// (exit 2: a TLS pair Pingora cannot use).
pub fn build(loaded: Loaded, opt: Opt) -> Result<(Server, Arc<Lifecycle>), String> {
    let Loaded {
        server: server_conf,
        pylon,
        upstreams,
        config_hash,
    } = loaded;
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    server.bootstrap();
    let lifecycle = Arc::new(Lifecycle::new(pylon.shutdown_notice));

    let ports = pylon
        .listen
        .iter()
        .chain(pylon.tls.iter().flat_map(|t| &t.listen))
        .map(SocketAddr::port)
        .collect();
    // One row per route, then one for `/a/<host>:<port>` destinations
    // (proxy::Pylon::new hands each route and the destinations their series).
    let mut names: Vec<&str> = pylon.routes.iter().map(|r| r.name.as_str()).collect();
    if pylon.hostport.is_some() {
        names.push(crate::metrics::HOSTPORT);
    }
    let metrics = Arc::new(Metrics::new(&names, ports, VERSION, &config_hash));

    let proxy = proxy_service(&server, &pylon, &upstreams, &metrics, &lifecycle)?;
    server.add_service(proxy);
    if let Some(addr) = pylon.admin_listen {
        add_admin(
            &mut server,
            addr,
            &pylon,
            &upstreams,
            &metrics,
            config_hash,
            &lifecycle,
        );
    }
    server.add_service(background_service(
        "upstream resolver",
        Refresher {
            upstreams,
            interval: pylon.resolve_interval,
            on_health: health_gauges(metrics),
        },
    ));
    Ok((server, lifecycle))
}

/// The public listeners: Pingora's HTTP proxy running Pylon, behind the
/// connection guard.
fn proxy_service(
    server: &Server,
    pylon: &Config,
    upstreams: &[Arc<Upstream>],
    metrics: &Arc<Metrics>,
    lifecycle: &Arc<Lifecycle>,
) -> Result<Service<Guarded<pingora::proxy::HttpProxy<proxy::Pylon>>>, String> {
    let limits = &pylon.limits;
    let guarded = Guarded::new(
        pingora::proxy::http_proxy(
            &server.configuration,
            proxy::Pylon::new(pylon, upstreams, metrics.clone(), lifecycle.clone()),
        ),
        limits.max_connections,
        Policy {
            header_timeout: limits.header_timeout,
            body_timeout: limits.body_timeout,
            body_min_rate: limits.body_min_rate,
        },
        GuardCounters {
            refused: metrics.connections_refused.clone(),
            slow_head: metrics.slow_clients.with_label_values(&["head"]),
            slow_body: metrics.slow_clients.with_label_values(&["body"]),
        },
    );
    let mut proxy = Service::new("pylon".to_string(), guarded);
    for addr in &pylon.listen {
        proxy.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(CLIENT_BUFFERS));
    }
    if let Some(tls) = &pylon.tls {
        for addr in &tls.listen {
            // The files were read and checked at load; a new process of an
            // upgrade or reload reads them again, so a renewed certificate
            // takes effect with `pylon-reload`.
            let mut settings = TlsSettings::intermediate(&tls.cert, &tls.key)
                .map_err(|e| format!("TLS listener {addr}: {e}"))?;
            if tls.http2 {
                settings.enable_h2();
            }
            proxy.add_listener(
                ListenerConfig::tcp(addr.to_string())
                    .tls(settings)
                    .l4_buffer(CLIENT_BUFFERS),
            );
        }
    }
    Ok(proxy)
}

fn add_admin(
    server: &mut Server,
    addr: SocketAddr,
    pylon: &Config,
    upstreams: &[Arc<Upstream>],
    metrics: &Arc<Metrics>,
    config_hash: String,
    lifecycle: &Arc<Lifecycle>,
) {
    let admin = Admin {
        metrics: metrics.clone(),
        routes: pylon
            .routes
            .iter()
            .zip(upstreams)
            .map(|(r, u)| AdminRoute {
                name: r.name.clone(),
                prefix: r.prefix.clone(),
                upstream: u.clone(),
            })
            .collect(),
        hostport: pylon.hostport.as_ref().map(|h| h.prefixes.join(",")),
        version: VERSION,
        config_hash,
        lifecycle: lifecycle.clone(),
    };
    let mut service = Service::new("admin".to_string(), admin);
    service.add_tcp(&addr.to_string());
    server.add_service(service);
    server.add_service(background_service(
        "status sampler",
        Sampler {
            metrics: metrics.clone(),
            every: Duration::from_secs(5),
        },
    ));
}

/// Keeps `pylon_upstream_up` in step with the health checks.
fn health_gauges(metrics: Arc<Metrics>) -> HealthReport {
    Arc::new(move |route, states, reported| {
        for (addr, up) in states {
            metrics
                .upstream_up
                .with_label_values(&[route, &addr.to_string()])
                .set(i64::from(*up));
        }
        // Endpoints that DNS no longer returns stop being reported.
        for gone in reported
            .iter()
            .filter(|a| !states.iter().any(|(s, _)| s == *a))
        {
            let _ = metrics
                .upstream_up
                .remove_label_values(&[route, &gone.to_string()]);
        }
        *reported = states.iter().map(|(a, _)| *a).collect();
    })
}
