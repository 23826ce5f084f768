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
//!    A connection accepted just before that but still waiting for its
//!    first request is the exception: its client has most likely sent the
//!    request already and would not retry it on a fresh connection, so it
//!    gets two seconds to arrive (`vendor/patches/0302-*`).
//! 3. The process exits once its listeners are closed, no request is in
//!    flight and no client connection is open, instead of sleeping through
//!    the whole grace period. Open connections count because an HTTP/2 connection may hold
//!    streams the client sent before it saw Pingora's GOAWAY that are not
//!    yet requests in flight: exiting then failed them. The binary waits on
//!    [`Lifecycle::wait_until_drained`] and exits (the library never does).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use log::info;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

/// Client connections open on the proxy's listeners. Global because the
/// connection guard, which counts them, is built before any handle exists
/// and is shared with other work; the request count is in [`Lifecycle`].
static OPEN_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// Set once Pingora has closed the proxy's listeners (it calls the proxy
/// app's cleanup when every accept loop has ended). Global for the same
/// reason as [`OPEN_CONNECTIONS`].
static LISTENERS_CLOSED: AtomicBool = AtomicBool::new(false);

/// Called from the proxy app's cleanup: no connection arrives any more.
pub(crate) fn listeners_closed() {
    LISTENERS_CLOSED.store(true, Ordering::Release);
}

/// Pingora sleeps this long between handing the sockets to the new process
/// and stopping the old one (`CLOSE_TIMEOUT`, not configurable).
const UPGRADE_NOTICE: Duration = Duration::from_secs(5);

/// How long past its notice an instance waits for its listeners to close
/// before it counts them as closed.
const NOTICE_SLACK: Duration = Duration::from_secs(30);

/// The state of one instance's departure, shared by the signal watcher, the
/// proxy, the admin pages and whoever waits to exit.
pub struct Lifecycle {
    draining: AtomicBool,
    /// Set on SIGTERM only: on an upgrade the listening socket keeps being
    /// served by the new process, so the instance is not going away.
    leaving: AtomicBool,
    /// The notice of the departure under way, in milliseconds.
    notice_ms: AtomicU64,
    shutdown_notice: Duration,
    /// Cloned into every request: the strong count less this one is the
    /// number in flight, at one atomic operation per request each way.
    requests: Arc<()>,
}

impl Lifecycle {
    pub fn new(shutdown_notice: Duration) -> Self {
        Lifecycle {
            draining: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            notice_ms: AtomicU64::new(0),
            shutdown_notice,
            requests: Arc::new(()),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether `/healthz` should fail so that balancers move traffic away.
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Relaxed)
    }

    /// Held for the life of one request; the count decides when to exit.
    pub fn enter(&self) -> InFlight {
        InFlight(self.requests.clone())
    }

    fn in_flight(&self) -> usize {
        Arc::strong_count(&self.requests) - 1
    }

    fn start_draining(&self, why: &str, notice: Duration) {
        self.notice_ms
            .store(notice.as_millis() as u64, Ordering::Relaxed);
        self.draining.store(true, Ordering::Release);
        info!("{why}: draining; keep-alive clients are told to reconnect for {notice:?}, then listeners close");
    }

    /// Blocks until a departure has started, its notice has passed and no
    /// request is in flight: the moment the process may exit without
    /// failing a request. For a thread of its own.
    pub fn wait_until_drained(&self) {
        while !self.draining.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(100));
        }
        // The notice runs from the signal, but on an upgrade Pingora starts
        // it only once the sockets are handed over, which can take a while:
        // wait for the listeners to be closed, not for the notice alone.
        // The bound is a safety net should cleanup never be reported.
        let notice = Duration::from_millis(self.notice_ms.load(Ordering::Relaxed));
        let since = std::time::Instant::now();
        while !LISTENERS_CLOSED.load(Ordering::Acquire) && since.elapsed() < notice + NOTICE_SLACK {
            std::thread::sleep(Duration::from_millis(50));
        }
        // A connection accepted just before the listeners closed counts
        // only once its TLS handshake is done: exit after a quiet second,
        // not at the first quiet instant.
        let mut quiet = 0;
        while quiet < 10 {
            let idle = self.in_flight() == 0 && OPEN_CONNECTIONS.load(Ordering::Acquire) == 0;
            quiet = if idle { quiet + 1 } else { 0 };
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Pingora's shutdown signal watcher for this instance.
    pub fn signals(self: &Arc<Self>) -> Signals {
        Signals {
            lifecycle: self.clone(),
        }
    }
}

/// One request in flight.
pub struct InFlight(#[allow(dead_code)] Arc<()>);

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

/// Replaces Pingora's signal handling to put the notice period in front of
/// its shutdown. SIGINT still stops at once, also during the notice.
pub struct Signals {
    lifecycle: Arc<Lifecycle>,
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
        let life = &self.lifecycle;
        tokio::select! {
            _ = quit.recv() => {
                life.start_draining("SIGQUIT (upgrade)", UPGRADE_NOTICE);
                ShutdownSignal::GracefulUpgrade
            }
            _ = term.recv() => {
                life.leaving.store(true, Ordering::Relaxed);
                life.start_draining("SIGTERM", life.shutdown_notice);
                tokio::select! {
                    _ = tokio::time::sleep(life.shutdown_notice) => ShutdownSignal::GracefulTerminate,
                    _ = int.recv() => ShutdownSignal::FastShutdown,
                }
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}
