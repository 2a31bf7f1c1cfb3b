//! Giving freed heap memory back to the system once the daemon goes quiet.
//!
//! glibc's malloc returns memory to the kernel only from the top of a heap;
//! after a burst (a thousand concurrent streams), the freed chunks below
//! what is still in use stay resident, and the daemon's RSS stays at the
//! burst's high-water mark (bench/faults.sh measured +49 MiB after three
//! bursts of 1,000). `malloc_trim` releases the free pages anywhere in the
//! heaps. It is called from the metrics upkeep once a few seconds pass with
//! no request finishing, so a busy daemon never pays for it.

/// Releases free heap pages to the system (glibc); a no-op elsewhere.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "one FFI call with no preconditions")]
pub fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers and no ownership; it locks each
    // arena itself, so it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    fn rss_anon_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Freed memory below a live allocation stays resident until trimmed.
    #[test]
    fn freed_memory_below_a_live_allocation_goes_back_to_the_system() {
        let before = rss_anon_kib();
        // ~96 MiB in chunks below glibc's mmap threshold; every eighth stays
        // live, so the freed ones are holes between live chunks that the
        // heap cannot give back by shrinking its top, whichever arena this
        // thread uses and whatever free chunks it already held.
        let mut chunks: Vec<Vec<u8>> = (0..24_576).map(|i| vec![(i % 251) as u8; 4096]).collect();
        let mut i = 0;
        chunks.retain(|_| {
            i += 1;
            i % 8 == 0
        });
        let freed = rss_anon_kib();
        assert!(
            freed > before + 64 * 1024,
            "the freed chunks stay resident: {before} -> {freed} KiB"
        );
        super::release_free_memory();
        let trimmed = rss_anon_kib();
        assert!(trimmed + 48 * 1024 < freed, "after the trim: {freed} -> {trimmed} KiB");
        assert_eq!(chunks.len(), 3072);
    }
}
