//! `pylon`: start-up. Reads one configuration file (Pingora's server
//! settings plus the `pylon:` section), validates it completely before
//! anything listens, then hands the routes to Pingora's server.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use log::info;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::RunArgs;
use pingora::services::background::background_service;

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::services::listening::Service;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pylon::admin::{Admin, AdminRoute, Sampler};
use pylon::client_deadlines::Policy;
use pylon::config::{self, Config, ProcessEnv};
use pylon::connection_guard::{GuardCounters, Guarded};
use pylon::metrics::Metrics;
use pylon::upstream::{HealthReport, Refresher, Upstream};
use pylon::{lifecycle, proxy};
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_CONFIG: &str = "/etc/pylon/pylon.yaml";
/// Pingora waits this long after SIGTERM/SIGQUIT before stopping; its own
/// default (300 s) outlives every orchestrator's kill timeout.
/// Pylon exits as soon as its last request is done, so this is only what a
/// long stream (a download, a WebSocket) gets to finish.
const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 25;

struct Loaded {
    server: ServerConf,
    pylon: Config,
    upstreams: Vec<Arc<Upstream>>,
    /// Identifies the loaded file in metrics and on the status page.
    config_hash: String,
}

fn load(path: &str) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let pylon = config::from_yaml(&text, &ProcessEnv).map_err(|e| format!("{path}: {e}"))?;
    let mut server =
        ServerConf::from_yaml(&text).map_err(|e| format!("{path}: server settings: {e}"))?;
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

fn describe(loaded: &Loaded) -> String {
    let mut out = format!(
        "listen: {}\n{}admin: {}\nroutes:\n",
        loaded.pylon.listen.join(", "),
        match &loaded.pylon.tls {
            Some(t) => format!("tls: {}\n", t.listen.join(", ")),
            None => String::new(),
        },
        loaded.pylon.admin_listen.as_deref().unwrap_or("off")
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
fn check_listeners_free(listen: &[String]) -> Result<(), String> {
    for addr in listen {
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

fn main() -> ExitCode {
    // Pingora's load balancer logs every health change with a full peer
    // dump; Pylon logs one line per change itself (upstream.rs).
    let logger = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,pingora_load_balancing=error"),
    )
    .build();
    log::set_max_level(logger.filter());
    // Abandoned client handshakes go to debug (log_demote.rs).
    let _ = log::set_boxed_logger(Box::new(pylon::log_demote::Demote(logger)));
    let mut opt = Opt::parse_args();
    let path = opt
        .conf
        .take()
        .unwrap_or_else(|| DEFAULT_CONFIG.to_string());

    let loaded = match load(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pylon: configuration refused: {e}");
            return ExitCode::from(2);
        }
    };
    if opt.test {
        // `pylon -t | head` must not panic on a closed pipe.
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}pylon: configuration {path} is valid",
            describe(&loaded)
        );
        return ExitCode::SUCCESS;
    }
    if !opt.upgrade {
        let all: Vec<String> = loaded
            .pylon
            .listen
            .iter()
            .chain(&loaded.pylon.admin_listen)
            .chain(loaded.pylon.tls.iter().flat_map(|t| &t.listen))
            .cloned()
            .collect();
        if let Err(e) = check_listeners_free(&all) {
            eprintln!("pylon: {e}");
            return ExitCode::from(1);
        }
    }

    // Resolve every upstream once before serving, so the first requests do
    // not fail while the background refresher starts.
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(async {
            for u in &loaded.upstreams {
                u.refresh().await;
            }
        }),
        Err(e) => {
            eprintln!("pylon: cannot start resolver runtime: {e}");
            return ExitCode::from(1);
        }
    }
    for line in describe(&loaded).lines() {
        info!("{line}");
    }

    let Loaded {
        server: server_conf,
        pylon,
        upstreams,
        config_hash,
    } = loaded;
    pylon::allocator::enable();
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    server.bootstrap();

    let version = env!("CARGO_PKG_VERSION");
    let ports = pylon
        .listen
        .iter()
        .chain(pylon.tls.iter().flat_map(|t| &t.listen))
        .filter_map(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.port())
        .collect();
    let mut names: Vec<&str> = pylon.routes.iter().map(|r| r.name.as_str()).collect();
    if pylon.hostport.is_some() {
        names.push(pylon::metrics::HOSTPORT);
    }
    let metrics = Arc::new(Metrics::new(&names, ports, version, &config_hash));

    let limits = &pylon.limits;
    let guarded = Guarded::new(
        pingora::proxy::http_proxy(
            &server.configuration,
            proxy::Pylon::new(&pylon, &upstreams, metrics.clone()),
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
        proxy.add_listener(ListenerConfig::tcp(addr.as_str()).l4_buffer(CLIENT_BUFFERS));
    }
    if let Some(tls) = &pylon.tls {
        for addr in &tls.listen {
            // The files were read and checked at load; a new process of an
            // upgrade or reload reads them again, so a renewed certificate
            // takes effect with `pylon-reload`.
            let mut settings = match TlsSettings::intermediate(&tls.cert, &tls.key) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("pylon: TLS listener {addr}: {e}");
                    return ExitCode::from(2);
                }
            };
            if tls.http2 {
                settings.enable_h2();
            }
            proxy.add_listener(
                ListenerConfig::tcp(addr.as_str())
                    .tls(settings)
                    .l4_buffer(CLIENT_BUFFERS),
            );
        }
    }
    server.add_service(proxy);

    if let Some(addr) = &pylon.admin_listen {
        let admin = Admin {
            metrics: metrics.clone(),
            routes: pylon
                .routes
                .iter()
                .zip(&upstreams)
                .map(|(r, u)| AdminRoute {
                    name: r.name.clone(),
                    prefix: r.prefix.clone(),
                    upstream: u.clone(),
                })
                .collect(),
            hostport: pylon.hostport.as_ref().map(|h| h.prefixes.join(",")),
            version,
            config_hash,
        };
        let mut service = Service::new("admin".to_string(), admin);
        service.add_tcp(addr);
        server.add_service(service);
        server.add_service(background_service(
            "status sampler",
            Sampler {
                metrics: metrics.clone(),
                every: Duration::from_secs(5),
            },
        ));
    }

    let gauges = metrics.clone();
    let on_health: HealthReport = Arc::new(move |route, states, reported| {
        for (addr, up) in states {
            gauges
                .upstream_up
                .with_label_values(&[route, &addr.to_string()])
                .set(i64::from(*up));
        }
        // Endpoints that DNS no longer returns stop being reported.
        for gone in reported
            .iter()
            .filter(|a| !states.iter().any(|(s, _)| s == *a))
        {
            let _ = gauges
                .upstream_up
                .remove_label_values(&[route, &gone.to_string()]);
        }
        *reported = states.iter().map(|(a, _)| *a).collect();
    });
    server.add_service(background_service(
        "upstream resolver",
        Refresher {
            upstreams,
            interval: pylon.resolve_interval,
            on_health,
        },
    ));
    info!("pylon {version} serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(lifecycle::Signals {
            shutdown_notice: pylon.shutdown_notice,
        }),
    });
    info!("stopped");
    ExitCode::SUCCESS
}
