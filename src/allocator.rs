//! Memory back to the system after a burst of connections.
//!
//! mimalloc keeps the pages a closed connection freed and gives them back
//! only when the thread that owns them allocates, frees or collects again.
//! After a flood of connections closes, the worker threads go quiet and the
//! pages stay in RSS: 4,088 closed connections left 175 MiB where an idle
//! Pylon holds 15. Purging at every free instead (mimalloc's
//! `purge_delay=0`) cost 1 MiB responses 46 % more CPU.
//!
//! So once connections have stopped closing for [`QUIET`], each worker
//! thread on which some closed collects once: a timer per burst, not per
//! connection, and nothing on the path of a request.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Connections must have stopped closing this long before the collection.
pub const QUIET: Duration = Duration::from_millis(500);
/// Attempts to reach every thread that needs a collection.
const ROUNDS: u32 = 20;

static ENABLED: AtomicBool = AtomicBool::new(false);
static PENDING: AtomicBool = AtomicBool::new(false);
/// Milliseconds from `epoch()` to the last close.
static LAST_CLOSE: AtomicU64 = AtomicU64::new(0);
/// Threads with `DIRTY` set.
static DIRTY_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// A connection closed on this thread since it last collected.
    static DIRTY: Cell<bool> = const { Cell::new(false) };
}

extern "C" {
    // mimalloc's C API (libmimalloc-sys, linked through the `mimalloc`
    // crate): frees the calling thread's empty pages and returns them to the
    // system.
    fn mi_collect(force: bool);
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Called once by the binary, whose global allocator is mimalloc.
pub fn enable() {
    epoch();
    ENABLED.store(true, Relaxed);
}

/// A client connection ended (called on a worker thread).
pub fn connection_closed() {
    if !ENABLED.load(Relaxed) {
        return;
    }
    if !DIRTY.replace(true) {
        DIRTY_THREADS.fetch_add(1, Relaxed);
    }
    LAST_CLOSE.store(now_ms(), Relaxed);
    if PENDING.swap(true, Relaxed) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        PENDING.store(false, Relaxed);
        return;
    };
    runtime.clone().spawn(async move {
        let quiet = u64::try_from(QUIET.as_millis()).unwrap_or(u64::MAX);
        loop {
            tokio::time::sleep(QUIET).await;
            if now_ms().saturating_sub(LAST_CLOSE.load(Relaxed)) >= quiet {
                break;
            }
        }
        // A close from here on starts the next timer.
        PENDING.store(false, Relaxed);
        // mimalloc collects per thread, and tokio places no task on a given
        // worker: small tasks until each dirty thread has run one (idle
        // workers steal from a busy one).
        let workers = runtime.metrics().num_workers().max(1);
        for _ in 0..ROUNDS {
            if DIRTY_THREADS.load(Relaxed) == 0 {
                break;
            }
            for _ in 0..workers * 2 {
                runtime.spawn(async { collect_here() });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

fn collect_here() {
    if DIRTY.replace(false) {
        DIRTY_THREADS.fetch_sub(1, Relaxed);
        // SAFETY: no arguments and no state shared with Rust; mimalloc is
        // the global allocator whenever `enable` was called.
        unsafe { mi_collect(true) };
    }
}
