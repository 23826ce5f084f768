//! `pylon`: the command. Parses the flags, then hands the configuration
//! file to the library (`pylon::app`), which checks it completely before
//! anything listens.

use std::process::ExitCode;

use clap::Parser;
use log::info;
use pingora::server::RunArgs;
use pylon::app;
use pylon::cli::{self, Cli};

#[global_allocator]
static ALLOCATOR: pylon::allocator::Mimalloc = pylon::allocator::Mimalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.help {
        print!("{}", cli::HELP);
        return ExitCode::SUCCESS;
    }
    if cli.version {
        print!("{}", cli::version());
        return ExitCode::SUCCESS;
    }
    // Pingora's load balancer logs every health change with a full peer
    // dump; Pylon logs one line per change itself (upstream.rs).
    let logger = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,pingora_load_balancing=error"),
    )
    .build();
    log::set_max_level(logger.filter());
    // Abandoned client handshakes go to debug (log_demote.rs).
    let _ = log::set_boxed_logger(Box::new(pylon::log_demote::Demote(logger)));
    let path = cli.conf.clone();

    let loaded = match app::load(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pylon: configuration refused: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.test {
        app::print_check(&loaded, &path);
        return ExitCode::SUCCESS;
    }
    if cli.test_print {
        app::print_effective(&loaded, &path);
        return ExitCode::SUCCESS;
    }
    let ready = match cli.upgrade {
        true => Ok(()),
        false => app::check_listeners_free(&loaded),
    };
    if let Err(e) = ready.and_then(|()| app::resolve_upstreams(&loaded)) {
        eprintln!("pylon: {e}");
        return ExitCode::from(1);
    }
    for line in app::describe(&loaded).lines() {
        info!("{line}");
    }
    pylon::allocator::enable();
    let (server, lifecycle) = match app::build(loaded, cli.pingora_opt()) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("pylon: {e}");
            return ExitCode::from(2);
        }
    };
    // Pylon leaves as soon as its last request is done instead of sleeping
    // through Pingora's whole grace period (lifecycle.rs).
    let drained = lifecycle.clone();
    let _ = std::thread::Builder::new()
        .name("pylon-exit".into())
        .spawn(move || {
            drained.wait_until_drained();
            info!("drained: no request in flight, no connection open, exiting");
            std::process::exit(0);
        });
    info!("pylon {} serving", env!("CARGO_PKG_VERSION"));
    server.run(RunArgs {
        shutdown_signal: Box::new(lifecycle.signals()),
    });
    info!("stopped");
    ExitCode::SUCCESS
}
