//! `pylon`: start-up. Reads one configuration file (Pingora's server
//! settings plus the `pylon:` section), validates it completely before
//! anything listens, then hands the routes to Pingora's server.


use std::process::ExitCode;
use std::sync::Arc;

use log::info;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::RunArgs;
use pingora::services::background::background_service;

use pylon::config::{self, Config, ProcessEnv};
use pylon::upstream::{Refresher, Upstream};
use pylon::{lifecycle, proxy};

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
    })
}

fn describe(loaded: &Loaded) -> String {
    let mut out = format!("listen: {}\nroutes:\n", loaded.pylon.listen.join(", "));
    let mut routes: Vec<_> = loaded.pylon.routes.iter().collect();
    routes.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    for r in routes {
        out.push_str(&format!(
            "  {:<22} {:<22} -> {} (from {})\n",
            r.name, r.prefix, r.upstream, r.upstream_source
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

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
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
        print!("{}", describe(&loaded));
        println!("pylon: configuration {path} is valid");
        return ExitCode::SUCCESS;
    }
    if !opt.upgrade {
        if let Err(e) = check_listeners_free(&loaded.pylon.listen) {
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
    } = loaded;
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    server.bootstrap();

    let mut proxy =
        http_proxy_service(&server.configuration, proxy::Pylon::new(&pylon, &upstreams));
    for addr in &pylon.listen {
        proxy.add_tcp(addr);
    }
    server.add_service(proxy);
    server.add_service(background_service(
        "upstream resolver",
        Refresher {
            upstreams,
            interval: pylon.resolve_interval,
        },
    ));
    info!("pylon {} serving", env!("CARGO_PKG_VERSION"));
    server.run(RunArgs {
        shutdown_signal: Box::new(lifecycle::Signals {
            shutdown_notice: pylon.shutdown_notice,
        }),
    });
    info!("stopped");
    ExitCode::SUCCESS
}
