//! [`CacheStats`]: what a [`crate::CachedBlobService`] served from near,
//! what it had to fetch from far, and how filling near went.
//!
//! Counters are relaxed atomics: read for reporting only, never to decide.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one cache. Shared (`Arc`) by the service and whoever
/// reports on it; read them with [`CacheStats::snapshot`].
#[derive(Debug, Default)]
pub struct CacheStats {
    near_chunks: AtomicU64,
    near_bytes: AtomicU64,
    far_chunks: AtomicU64,
    far_bytes: AtomicU64,
    fill_failures: AtomicU64,
    fills_skipped: AtomicU64,
    filling_paused: AtomicU64,
    near_recoveries: AtomicU64,
}

/// The counters of a [`CacheStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStatsSnapshot {
    /// Chunks served from near (cache hits).
    pub near_chunks: u64,
    /// Bytes of those chunks.
    pub near_bytes: u64,
    /// Chunks received from far (cache misses that far answered).
    pub far_chunks: u64,
    /// Bytes of those chunks: the only bytes that crossed to the remote.
    pub far_bytes: u64,
    /// Writes into near that failed (a full disk, an I/O error).
    pub fill_failures: u64,
    /// Fetched chunks not written into near because filling was paused
    /// after a failure.
    pub fills_skipped: u64,
    /// 1 while filling is paused after a failure, else 0.
    pub filling_paused: u64,
    /// Times near was recovered (its database reopened) after a failure.
    pub near_recoveries: u64,
}

impl CacheStats {
    /// The counters now.
    pub fn snapshot(&self) -> CacheStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStatsSnapshot {
            near_chunks: get(&self.near_chunks),
            near_bytes: get(&self.near_bytes),
            far_chunks: get(&self.far_chunks),
            far_bytes: get(&self.far_bytes),
            fill_failures: get(&self.fill_failures),
            fills_skipped: get(&self.fills_skipped),
            filling_paused: get(&self.filling_paused),
            near_recoveries: get(&self.near_recoveries),
        }
    }

    pub(crate) fn near_hit(&self, bytes: usize) {
        self.near_chunks.fetch_add(1, Ordering::Relaxed);
        self.near_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn far_fetch(&self, bytes: usize) {
        self.far_chunks.fetch_add(1, Ordering::Relaxed);
        self.far_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn fill_failed(&self) {
        self.fill_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fill_skipped(&self) {
        self.fills_skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.filling_paused
            .store(u64::from(paused), Ordering::Relaxed);
    }

    pub(crate) fn recovered(&self) {
        self.near_recoveries.fetch_add(1, Ordering::Relaxed);
    }
}
