//! The daemon's heap: mimalloc as the allocator, and freed memory given
//! back to the system once the daemon goes quiet.
//!
//! mimalloc instead of glibc's malloc: the request path allocates and frees
//! many small objects on the serving threads, where glibc's malloc took
//! about 15% of the daemon's CPU under load; with mimalloc the CPU per
//! proxied request fell by about a fifth (bench/README.md). `main` starts
//! the daemon with mimalloc's immediate purging (`MIMALLOC_PURGE_DELAY=0`,
//! `MIMALLOC_ARENA_EAGER_COMMIT=0`), which keeps the idle daemon as small as
//! with glibc. Version 2 of mimalloc: it held less at idle here than 3.
//!
//! After a burst (a thousand concurrent streams), freed memory can stay
//! resident at the burst's high-water mark: mimalloc keeps freed pages in
//! the heap of the thread that allocated them, and glibc's malloc (still the
//! allocator of llama.cpp's C++ code) gives memory back only from the top of
//! a heap. [`release_free_memory`] is called from the metrics upkeep once a
//! few seconds pass with no request finishing, so a busy daemon never pays
//! for it: it collects its own thread's heap and trims glibc's, and asks
//! every serving thread to collect its own heap when it next goes idle
//! ([`collect_if_asked`], the runtime's park hook).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bumped by each release; a worker that has not collected since collects.
static RELEASES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COLLECTED: Cell<u64> = const { Cell::new(0) };
}

/// Releases free heap pages to the system, and asks the serving threads to do
/// the same with theirs.
pub fn release_free_memory() {
    RELEASES.fetch_add(1, Ordering::Relaxed);
    collect_if_asked();
    trim_c_heap();
}

/// The runtime's park hook: one relaxed load unless a release was asked
/// since this thread last collected.
pub fn collect_if_asked() {
    let asked = RELEASES.load(Ordering::Relaxed);
    if COLLECTED.replace(asked) != asked {
        collect_own_heap();
    }
}

#[allow(unsafe_code, reason = "one FFI call with no preconditions")]
fn collect_own_heap() {
    // SAFETY: mi_collect takes no pointers and no ownership; it works on the
    // calling thread's heap and mimalloc's shared state, which it locks.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "one FFI call with no preconditions")]
fn trim_c_heap() {
    // SAFETY: malloc_trim takes no pointers and no ownership; it locks each
    // arena itself, so it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_c_heap() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::mpsc;

    fn rss_anon_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Memory a worker freed stays with its heap while it is idle, and goes
    /// back to the system once a release is asked and the worker parks.
    #[test]
    fn memory_an_idle_worker_freed_goes_back_when_it_parks() {
        let before = rss_anon_kib();
        let (to_worker, from_main) = mpsc::channel::<()>();
        let (to_main, from_worker) = mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            // ~96 MiB in small chunks; one in 1,024 stays live, as a
            // connection's buffers outlive a burst.
            let mut chunks: Vec<Vec<u8>> = (0..24_576).map(|i| vec![(i % 251) as u8; 4096]).collect();
            let mut i = 0;
            chunks.retain(|_| {
                i += 1;
                i % 1024 == 0
            });
            to_main.send(()).unwrap();
            // Idle, as a parked worker, until the release; then what the
            // runtime's park hook does.
            from_main.recv().unwrap();
            super::collect_if_asked();
            to_main.send(()).unwrap();
            from_main.recv().unwrap();
            chunks.len()
        });
        from_worker.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let idle = rss_anon_kib();
        assert!(
            idle > before + 64 * 1024,
            "the idle worker's freed memory stays resident: {before} -> {idle} KiB"
        );
        super::release_free_memory();
        to_worker.send(()).unwrap();
        from_worker.recv().unwrap();
        let released = rss_anon_kib();
        assert!(
            released < before + 16 * 1024,
            "after the worker collected: {before} -> {idle} -> {released} KiB"
        );
        to_worker.send(()).unwrap();
        assert_eq!(worker.join().unwrap(), 24);
    }
}
