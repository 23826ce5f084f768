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

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ffi::c_void;
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

// mimalloc's C API (libmimalloc-sys, linked through the `mimalloc` crate).
extern "C" {
    /// Frees the calling thread's empty pages and returns them to the system.
    fn mi_collect(force: bool);
    fn mi_malloc(size: usize) -> *mut c_void;
    fn mi_zalloc(size: usize) -> *mut c_void;
    fn mi_realloc(p: *mut c_void, newsize: usize) -> *mut c_void;
    fn mi_free(p: *mut c_void);
    fn mi_malloc_aligned(size: usize, alignment: usize) -> *mut c_void;
    fn mi_zalloc_aligned(size: usize, alignment: usize) -> *mut c_void;
    fn mi_realloc_aligned(p: *mut c_void, newsize: usize, alignment: usize) -> *mut c_void;
}

// The `mimalloc` crate builds and links the C library (with `no_thp`);
// Pylon calls the library itself, below.
use mimalloc as _;

/// Every block mimalloc hands out is aligned to a machine word: block sizes
/// are whole words and pages start aligned. It does not promise 16 (a
/// 24-byte block is 8-aligned), so larger alignments take the aligned API.
const MALLOC_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc as the global allocator, through its plain entry points.
///
/// The `mimalloc` crate's own `MiMalloc` passes every allocation to
/// `mi_malloc_aligned`, whose fast path stops at 1 KiB: above that, even
/// with the alignment `malloc` gives anyway, it takes the aligned generic
/// path, about 185 instructions against about 75. Pylon makes some 18 such
/// allocations per proxied request (buffers, boxed futures, the session).
/// As the standard library's `System` does with `malloc`, this asks for an
/// explicit alignment only when `mi_malloc`'s own is not enough.
pub struct Mimalloc;

fn plain(align: usize) -> bool {
    align <= MALLOC_ALIGN
}

// SAFETY: every path returns mimalloc memory of at least `layout.size()`
// bytes aligned to `layout.align()` (word-aligned from mi_malloc, which
// `plain` requires to be enough), or null; `mi_free` and `mi_realloc*`
// accept a block from any of these entry points.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align()) {
            mi_malloc(layout.size()).cast()
        } else {
            mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align()) {
            mi_zalloc(layout.size()).cast()
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi_free(ptr.cast());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(layout.align()) {
            mi_realloc(ptr.cast(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_has_the_alignment_and_contents_asked_for() {
        let a = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 24, 40, 1000, 1500, 5000, 70_000] {
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: non-zero sizes; each block is freed once with the
                // layout it has at that moment.
                unsafe {
                    let p = a.alloc_zeroed(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "zalloc {size} B aligned {align}");
                    assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                    p.write_bytes(0xa5, size);
                    let grown = size * 3 + 5;
                    let q = a.realloc(p, layout, grown);
                    assert_eq!(
                        q as usize % align,
                        0,
                        "realloc to {grown} B aligned {align}"
                    );
                    assert!(std::slice::from_raw_parts(q, size)
                        .iter()
                        .all(|&b| b == 0xa5));
                    a.dealloc(q, Layout::from_size_align(grown, align).expect("layout"));
                    let r = a.alloc(layout);
                    assert_eq!(r as usize % align, 0, "malloc {size} B aligned {align}");
                    a.dealloc(r, layout);
                }
            }
        }
    }
}
