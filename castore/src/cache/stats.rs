//! [`CacheStats`]: what a [`crate::CachedBlobService`] served from near,
//! what it had to fetch from far, and how filling near went.
//!
//! Counters are relaxed atomics: read for reporting only, never to decide.
//! Beside them, the far side's health (its last success and failure) and
//! the slowest of the recent fetches from far, for `storefs status`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::B3Digest;

/// How many recent fetches from far [`CacheStats::slowest_fetches`]
/// chooses from.
pub const RECENT_FETCHES: usize = 256;

/// Live counters of one cache. Shared (`Arc`) by the service and whoever
/// reports on it; read them with [`CacheStats::snapshot`].
#[derive(Debug, Default)]
pub struct CacheStats {
    near_lookups: AtomicU64,
    near_chunks: AtomicU64,
    near_bytes: AtomicU64,
    far_chunks: AtomicU64,
    far_bytes: AtomicU64,
    fill_failures: AtomicU64,
    fills_skipped: AtomicU64,
    filling_paused: AtomicU64,
    near_recoveries: AtomicU64,
    far_in_flight: AtomicU64,
    far_errors: AtomicU64,
    far_last_ok: AtomicU64,
    far_last_error: AtomicU64,
    /// The last [`RECENT_FETCHES`] fetches from far. A parking_lot (sync)
    /// lock, held only to push or copy.
    recent: Mutex<VecDeque<FarFetch>>,
}

/// One fetch from far (one request: a chunk, or a batch of chunks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FarFetch {
    /// The chunk asked for (the first of a batch).
    pub digest: B3Digest,
    /// Chunks the request asked for.
    pub chunks: u64,
    /// Bytes it returned.
    pub bytes: u64,
    /// How long it took.
    pub took: Duration,
    /// When it ended, in seconds since the Unix epoch.
    pub at_unix: u64,
    /// Whether it failed.
    pub failed: bool,
}

/// Seconds since the Unix epoch now (0 if the clock is before it).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The counters of a [`CacheStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStatsSnapshot {
    /// Chunks looked up in near (found or not): once per chunk asked for,
    /// again only for a chunk a fill may have written meanwhile.
    pub near_lookups: u64,
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
    /// Requests to far in progress now.
    pub far_in_flight: u64,
    /// Requests to far that failed (an error, not an absent chunk).
    pub far_errors: u64,
    /// When a request to far last succeeded (Unix seconds; 0: never).
    pub far_last_ok: u64,
    /// When a request to far last failed (Unix seconds; 0: never).
    pub far_last_error: u64,
}

impl CacheStats {
    /// The counters now.
    pub fn snapshot(&self) -> CacheStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStatsSnapshot {
            near_lookups: get(&self.near_lookups),
            near_chunks: get(&self.near_chunks),
            near_bytes: get(&self.near_bytes),
            far_chunks: get(&self.far_chunks),
            far_bytes: get(&self.far_bytes),
            fill_failures: get(&self.fill_failures),
            fills_skipped: get(&self.fills_skipped),
            filling_paused: get(&self.filling_paused),
            near_recoveries: get(&self.near_recoveries),
            far_in_flight: get(&self.far_in_flight),
            far_errors: get(&self.far_errors),
            far_last_ok: get(&self.far_last_ok),
            far_last_error: get(&self.far_last_error),
        }
    }

    /// The `n` slowest of the last [`RECENT_FETCHES`] fetches from far,
    /// slowest first.
    pub fn slowest_fetches(&self, n: usize) -> Vec<FarFetch> {
        let mut all: Vec<FarFetch> = self.recent.lock().iter().copied().collect();
        all.sort_by_key(|f| std::cmp::Reverse(f.took));
        all.truncate(n);
        all
    }

    /// A request to far is starting; its end is noted when the returned
    /// guard is finished or dropped (dropped unfinished: counted as failed).
    pub(crate) fn far_request(&self, digest: B3Digest, chunks: u64) -> FarRequest<'_> {
        self.far_in_flight.fetch_add(1, Ordering::Relaxed);
        FarRequest {
            stats: self,
            digest,
            chunks,
            start: std::time::Instant::now(),
            done: false,
        }
    }

    fn far_done(&self, fetch: FarFetch) {
        self.far_in_flight.fetch_sub(1, Ordering::Relaxed);
        if fetch.failed {
            self.far_errors.fetch_add(1, Ordering::Relaxed);
            self.far_last_error.store(fetch.at_unix, Ordering::Relaxed);
        } else {
            self.far_last_ok.store(fetch.at_unix, Ordering::Relaxed);
        }
        let mut recent = self.recent.lock();
        if recent.len() >= RECENT_FETCHES {
            recent.pop_front();
        }
        recent.push_back(fetch);
    }

    pub(crate) fn near_lookups(&self, chunks: usize) {
        self.near_lookups
            .fetch_add(chunks as u64, Ordering::Relaxed);
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

/// A request to far in progress (see [`CacheStats::far_request`]).
pub(crate) struct FarRequest<'a> {
    stats: &'a CacheStats,
    digest: B3Digest,
    chunks: u64,
    start: std::time::Instant,
    done: bool,
}

impl FarRequest<'_> {
    /// The request ended: `bytes` returned, or it failed.
    pub(crate) fn finish(mut self, bytes: u64, failed: bool) {
        self.note(bytes, failed);
    }

    fn note(&mut self, bytes: u64, failed: bool) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.stats.far_done(FarFetch {
            digest: self.digest,
            chunks: self.chunks,
            bytes,
            took: self.start.elapsed(),
            at_unix: unix_now(),
            failed,
        });
    }
}

impl Drop for FarRequest<'_> {
    fn drop(&mut self) {
        // Dropped before it finished: the caller gave up (a timeout).
        self.note(0, true);
    }
}
