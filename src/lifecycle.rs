//! Draining: how an instance leaves without failing a request.
//!
//! Pingora, on shutdown, drops every keep-alive connection that is waiting
//! for its next request. A client that sends on such a connection at that
//! moment sees a reset: that is how a plain upgrade fails requests of
//! browser-like clients. Pylon therefore announces its departure first:
//!
//! 1. On SIGQUIT (upgrade) or SIGTERM (stop) the instance starts *draining*:
//!    every response carries `Connection: close` while requests are still
//!    served normally; on SIGTERM `/healthz` also answers 503 (on upgrade it
//!    does not: the new process keeps serving the same socket).
//! 2. Only after a notice period (Pingora's fixed 5 s after handing the
//!    sockets over on upgrade; `shutdown_notice` on SIGTERM) does Pingora
//!    stop accepting and drop connections still idle; by then every active
//!    client has been told to reconnect, and reconnects land on the new
//!    process (upgrade) or on another instance (the balancer saw the 503).
//! 3. The process exits as soon as no request is in flight and no client
//!    connection is open, instead of sleeping through the whole grace
//!    period. Open connections count because an HTTP/2 connection may hold
//!    streams the client sent before it saw Pingora's GOAWAY that are not
//!    yet requests in flight: exiting then failed them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use log::info;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

static DRAINING: AtomicBool = AtomicBool::new(false);
/// Set on SIGTERM only: on an upgrade the listening socket keeps being
/// served by the new process, so the instance is not going away.
static LEAVING: AtomicBool = AtomicBool::new(false);
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static OPEN_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// Pingora sleeps this long between handing the sockets to the new process
/// and stopping the old one (`CLOSE_TIMEOUT`, not configurable).
const UPGRADE_NOTICE: Duration = Duration::from_secs(5);

pub fn is_draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// Whether `/healthz` should fail so that balancers move traffic away.
pub fn is_leaving() -> bool {
    LEAVING.load(Ordering::Relaxed)
}

/// Held for the life of one request; the count decides when to exit.
pub struct InFlight(());

impl InFlight {
    pub fn enter() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Release);
    }
}

/// Held for the life of one client connection on the proxy's listeners.
pub struct OpenConnection(());

impl OpenConnection {
    pub fn enter() -> Self {
        OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        OpenConnection(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::Release);
    }
}

fn start_draining(why: &str, notice: Duration) {
    DRAINING.store(true, Ordering::Relaxed);
    info!("{why}: draining; keep-alive clients are told to reconnect for {notice:?}, then listeners close");
    let _ = std::thread::Builder::new()
        .name("pylon-exit".into())
        .spawn(move || {
            // Past the notice Pingora has stopped accepting; a little slack lets
            // requests read just before that register as in flight.
            std::thread::sleep(notice + Duration::from_millis(500));
            // A connection accepted just before the listeners closed counts
            // only once its TLS handshake is done: exit after a quiet second,
            // not at the first quiet instant.
            let mut quiet = 0;
            loop {
                let idle = IN_FLIGHT.load(Ordering::Acquire) == 0
                    && OPEN_CONNECTIONS.load(Ordering::Acquire) == 0;
                quiet = if idle { quiet + 1 } else { 0 };
                if quiet >= 10 {
                    info!("drained: no request in flight, no connection open, exiting");
                    std::process::exit(0);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
}

/// Replaces Pingora's signal handling to put the notice period in front of
/// its shutdown. SIGINT still stops at once, also during the notice.
pub struct Signals {
    pub shutdown_notice: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => {
                start_draining("SIGQUIT (upgrade)", UPGRADE_NOTICE);
                ShutdownSignal::GracefulUpgrade
            }
            _ = term.recv() => {
                LEAVING.store(true, Ordering::Relaxed);
                start_draining("SIGTERM", self.shutdown_notice);
                tokio::select! {
                    _ = tokio::time::sleep(self.shutdown_notice) => ShutdownSignal::GracefulTerminate,
                    _ = int.recv() => ShutdownSignal::FastShutdown,
                }
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}
