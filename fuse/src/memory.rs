//! Keeping the mount's memory bounded under load.
//!
//! With glibc's defaults a process gets up to eight malloc arenas per core,
//! one per thread that meets contention, and each keeps what it freed: 64
//! concurrent readers spread chunk buffers over dozens of threads (FUSE,
//! tokio workers, the blocking pool running redb) and the mount's resident
//! memory grew to 155–270 MB though what it holds at once is bounded. The
//! mmap threshold also rises by itself as large blocks are freed, after
//! which chunk buffers (16–256 KiB) come from the arenas and stay there.
//!
//! [`bound_malloc`] fixes both at mount start: few arenas, and a fixed mmap
//! threshold (64 KiB, the average chunk) so that chunk buffers go back to
//! the kernel when freed instead of fragmenting the arenas.

/// Most malloc arenas the mount uses.
pub const MALLOC_ARENAS: i32 = 2;

/// Allocations this large or larger are mmap-ed (and returned on free).
pub const MMAP_THRESHOLD: i32 = 64 * 1024;

/// Set the malloc tunables above (glibc only; elsewhere nothing to do).
/// Call it once, early; an environment that already sets them
/// (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`) wins.
pub fn bound_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only changes allocator tunables; it is safe
            // to call at any time from any thread, and takes plain ints.
            #[allow(unsafe_code)]
            let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) };
            if ok != 1 {
                tracing::debug!("mallopt(M_ARENA_MAX) refused");
            }
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: as above.
            #[allow(unsafe_code)]
            let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
            if ok != 1 {
                tracing::debug!("mallopt(M_MMAP_THRESHOLD) refused");
            }
        }
    }
}
