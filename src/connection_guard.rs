//! The door in front of the HTTP proxy: at most `max_connections` clients
//! at a time, and a clock on each connection so a client that sends its
//! request head or body too slowly is cut off (see `client_deadlines`).
//!
//! Pingora hands every accepted (and TLS-terminated) connection to a
//! `ServerApp`; [`Guarded`] is that app. It wraps the connection in a
//! [`ClockedStream`] and passes it on to Pingora's HTTP proxy. The proxy
//! tells the stream where a request stands through [`ClockedStream::of`].

use std::fmt;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::client_deadlines::{Clock, Late, Policy};

/// Counters the guard keeps; handles into the metrics registry.
#[derive(Clone)]
pub struct GuardCounters {
    pub refused: IntCounter,
    pub slow_head: IntCounter,
    pub slow_body: IntCounter,
}

pub struct Guarded<A> {
    inner: Arc<A>,
    max_connections: usize,
    open: AtomicUsize,
    policy: Policy,
    counters: GuardCounters,
}

impl<A> Guarded<A> {
    pub fn new(inner: A, max_connections: usize, policy: Policy, counters: GuardCounters) -> Self {
        Guarded {
            inner: Arc::new(inner),
            max_connections,
            open: AtomicUsize::new(0),
            policy,
            counters,
        }
    }
}

/// Gives the slot back however the connection ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
        crate::allocator::connection_closed();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.open.fetch_add(1, Relaxed) >= self.max_connections {
            self.open.fetch_sub(1, Relaxed);
            self.counters.refused.inc();
            log::debug!("connection refused: {} open", self.max_connections);
            // Dropping the stream closes it; nothing was read.
            return None;
        }
        let _slot = Slot(&self.open);
        let _open = crate::lifecycle::OpenConnection::enter();
        // HTTP/2 multiplexes requests on one connection, so one clock per
        // connection means nothing there; the h2 layer has its own limits.
        let stream: Stream = if stream.selected_alpn_proto() == Some(ALPN::H2) {
            stream
        } else {
            Box::new(ClockedStream::new(
                stream,
                self.policy,
                self.counters.clone(),
            ))
        };
        // Pingora's HTTP app serves every request of the connection before
        // it returns, and returns the stream only for other protocols.
        self.inner.process_new(stream, shutdown).await
    }

    /// Pingora calls this once every listener of the service has stopped
    /// accepting.
    async fn cleanup(&self) {
        crate::lifecycle::listeners_closed();
        self.inner.cleanup().await
    }
}

const NO_NEWS: u8 = 0;
const HEAD_THEN_BODY: u8 = 1;
const HEAD_ONLY: u8 = 2;
const BODY_DONE: u8 = 3;
const REQUEST_DONE: u8 = 4;
const HEAD_THEN_BODY_AFTER_CONTINUE: u8 = 5;

/// A client connection with a [`Clock`]. The proxy and the reads run in
/// the same task, one after the other; the proxy leaves news in an atomic
/// (the stream is shared by reference) and the next read applies it.
pub struct ClockedStream {
    inner: Stream,
    clock: Clock,
    news: AtomicU8,
    timer: Option<Pin<Box<Sleep>>>,
    counters: GuardCounters,
    /// Set by [`ClockedStream::abort`]: the connection ends with a reset.
    aborted: AtomicBool,
}

impl ClockedStream {
    fn new(inner: Stream, policy: Policy, counters: GuardCounters) -> Self {
        ClockedStream {
            inner,
            clock: Clock::accepted(policy, Instant::now().into_std()),
            news: AtomicU8::new(NO_NEWS),
            timer: None,
            counters,
            aborted: AtomicBool::new(false),
        }
    }

    /// Ends the connection with a TCP reset instead of a FIN, for a
    /// response cut short: a close-delimited body (HTTP/1.0) ended by a FIN
    /// looks complete to the client, a reset never does.
    pub fn abort(&self) {
        use std::os::fd::BorrowedFd;
        self.aborted.store(true, Relaxed);
        // A socket's unique id is its file descriptor (TLS streams pass on
        // the id of the TCP stream under them).
        let fd = self.inner.id();
        // SAFETY: `fd` is the socket of `self.inner`, which `self` owns and
        // keeps open for the duration of this call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Err(e) = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO)) {
            log::debug!("cannot reset {:?}: {e}", self.inner);
        }
    }

    /// The clocked stream under a session, if the connection has one.
    pub fn of(stream: Option<&Stream>) -> Option<&ClockedStream> {
        stream?.as_any().downcast_ref::<ClockedStream>()
    }

    pub fn head_done(&self, body_follows: bool, expects_continue: bool) {
        self.news.store(
            match (body_follows, expects_continue) {
                (false, _) => HEAD_ONLY,
                (true, false) => HEAD_THEN_BODY,
                (true, true) => HEAD_THEN_BODY_AFTER_CONTINUE,
            },
            Relaxed,
        );
    }

    pub fn body_done(&self) {
        let merged = match self.news.load(Relaxed) {
            HEAD_THEN_BODY | HEAD_THEN_BODY_AFTER_CONTINUE | HEAD_ONLY => HEAD_ONLY,
            REQUEST_DONE => REQUEST_DONE,
            _ => BODY_DONE,
        };
        self.news.store(merged, Relaxed);
    }

    pub fn request_done(&self) {
        self.news.store(REQUEST_DONE, Relaxed);
    }

    fn apply_news(&mut self) {
        match self.news.swap(NO_NEWS, Relaxed) {
            HEAD_THEN_BODY => self.clock.head_done(true, false),
            HEAD_THEN_BODY_AFTER_CONTINUE => self.clock.head_done(true, true),
            HEAD_ONLY => self.clock.head_done(false, false),
            BODY_DONE => self.clock.body_done(),
            REQUEST_DONE => self.clock.request_done(),
            _ => {}
        }
    }

    fn late(&self, late: Late) -> io::Error {
        match late {
            Late::Head => self.counters.slow_head.inc(),
            Late::Body => self.counters.slow_body.inc(),
        }
        log::debug!("closing {:?}: {late}", self.inner);
        io::Error::new(io::ErrorKind::TimedOut, late.to_string())
    }
}

impl AsyncRead for ClockedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.apply_news();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    if let Err(late) = this.clock.data(Instant::now().into_std(), n) {
                        return Poll::Ready(Err(this.late(late)));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let now = Instant::now();
                match this.clock.waiting(now.into_std()) {
                    Err(late) => Poll::Ready(Err(this.late(late))),
                    Ok(None) => Poll::Pending,
                    Ok(Some(due)) => {
                        let due = Instant::from_std(due);
                        let timer = this
                            .timer
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                        if timer.deadline() != due {
                            timer.as_mut().reset(due);
                        }
                        match timer.as_mut().poll(cx) {
                            Poll::Ready(()) => {
                                match this.clock.waiting(Instant::now().into_std()) {
                                    Err(late) => Poll::Ready(Err(this.late(late))),
                                    // Woken a moment early: the next poll re-arms.
                                    Ok(_) => {
                                        cx.waker().wake_by_ref();
                                        Poll::Pending
                                    }
                                }
                            }
                            Poll::Pending => Poll::Pending,
                        }
                    }
                }
            }
        }
    }
}

impl AsyncWrite for ClockedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // An aborted connection must not send the FIN (see `abort`).
        if self.aborted.load(Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for ClockedStream {
    async fn shutdown(&mut self) {
        if self.aborted.load(Relaxed) {
            return;
        }
        self.inner.shutdown().await
    }
}

impl UniqueID for ClockedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for ClockedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora_core::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for ClockedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for ClockedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for ClockedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for ClockedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl fmt::Debug for ClockedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}
