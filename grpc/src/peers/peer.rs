//! [`Peer`]: one peer of a mount, its client, its health and its figures.
//!
//! A peer that is down or slow (no answer within the budget, a broken
//! connection, an error) is skipped for a pause that starts at
//! [`PeerConfig::shun_initial`] and doubles with each failure in a row up
//! to [`PeerConfig::shun_max`]; one that sent bytes that failed their
//! check is skipped for [`PeerConfig::distrust`]. Once the pause is over,
//! the next read asks it again (the probe).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use storefs_castore::{B3Digest, Error, Report};

use super::set::PeerConfig;
use crate::client::GrpcBlobService;
use crate::shunning::Shunning;

/// One peer.
pub(crate) struct Peer {
    /// `grpc://…`, for figures and messages.
    pub(crate) name: Arc<str>,
    /// Its key in the fleet's split of chunks ([`super::set::rank_key`]).
    pub(crate) key: u64,
    /// Its chunk reads (no retries: a peer that fails is skipped).
    pub(crate) blob: GrpcBlobService,
    health: Mutex<Health>,
    /// Requests sent (a batch counts once).
    requests: AtomicU64,
    /// Chunks asked of it.
    asked: AtomicU64,
    /// Chunks it delivered (verified).
    chunks: AtomicU64,
    /// Bytes of those chunks.
    bytes: AtomicU64,
    /// Chunks it said it does not hold.
    misses: AtomicU64,
    /// Requests that failed (down, slow, broken).
    failures: AtomicU64,
    /// Chunks it sent that did not hash to their digest.
    verification_failures: AtomicU64,
}

/// Whether a peer is usable now.
#[derive(Debug, Default)]
struct Health {
    /// Its failures and the pause they earned.
    shunning: Shunning,
    /// Whether the pause is for bytes that failed their check.
    lied: bool,
}

/// One peer's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerFigures {
    /// The peer's URL.
    pub endpoint: String,
    /// `"healthy"`, `"shunned"` (down or slow) or `"distrusted"` (it sent
    /// bytes that failed their check).
    pub state: &'static str,
    /// Requests sent to it (a batch of chunks counts once).
    pub requests: u64,
    /// Chunks asked of it.
    pub chunks_asked: u64,
    /// Chunks it delivered, each verified.
    pub chunks: u64,
    /// Bytes of those chunks.
    pub bytes: u64,
    /// Chunks it said it does not hold.
    pub misses: u64,
    /// Requests that failed there (down, slow, broken connection).
    pub failures: u64,
    /// Chunks it sent that did not hash to their digest.
    pub verification_failures: u64,
    /// Milliseconds until it is asked again (0 when healthy).
    pub shunned_for_ms: u64,
}

impl Peer {
    pub(crate) fn new(name: Arc<str>, blob: GrpcBlobService) -> Self {
        Self {
            key: super::set::rank_key(&name),
            name,
            blob,
            health: Mutex::default(),
            requests: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            verification_failures: AtomicU64::new(0),
        }
    }

    /// A request of `n` chunks is sent.
    pub(crate) fn asking(&self, n: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.asked.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// It delivered a verified chunk of `len` bytes.
    pub(crate) fn delivered(&self, len: usize) {
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// It said it does not hold `n` of the chunks asked.
    pub(crate) fn missed(&self, n: usize) {
        self.misses.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// It answered: healthy again.
    pub(crate) fn answered(&self) {
        let mut h = self.health.lock();
        h.lied = false;
        if h.shunning.answered() {
            tracing::info!(peer = %self.name, "peer answers again");
        }
    }

    /// It is down, slow or broken: skip it for a while.
    pub(crate) fn failed(&self, config: &PeerConfig, error: &Error) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let (pause, started) = self
            .health
            .lock()
            .shunning
            .failed(config.shun_initial, config.shun_max);
        if started {
            tracing::warn!(peer = %self.name, error = %Report(error), ?pause, "peer failed; reading from the others and the service");
        }
    }

    /// It sent bytes for `digest` that do not hash to it: never used, and
    /// the peer is skipped for [`PeerConfig::distrust`].
    pub(crate) fn lied(&self, config: &PeerConfig, digest: &B3Digest, error: &Error) {
        self.verification_failures.fetch_add(1, Ordering::Relaxed);
        let mut h = self.health.lock();
        if !h.lied {
            tracing::warn!(peer = %self.name, chunk = %digest, error = %Report(error), pause = ?config.distrust, "peer sent a chunk that fails verification; shunning it");
        }
        h.lied = true;
        h.shunning.pause_for(config.distrust);
    }

    /// When it may be asked again (`None`: now).
    pub(crate) fn back_at(&self, now: Instant) -> Option<Instant> {
        self.health.lock().shunning.back_at(now)
    }

    /// How likely it is to hold a chunk, from what it delivered so far
    /// (an unasked peer counts as even).
    pub(crate) fn likeliness(&self) -> f64 {
        let chunks = self.chunks.load(Ordering::Relaxed) as f64;
        let asked = self.asked.load(Ordering::Relaxed) as f64;
        (chunks + 1.0) / (asked + 2.0)
    }

    pub(crate) fn figures(&self, now: Instant) -> PeerFigures {
        let h = self.health.lock();
        let state = match (h.shunning.back_at(now), h.lied) {
            (None, _) => "healthy",
            (Some(_), true) => "distrusted",
            (Some(_), false) => "shunned",
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PeerFigures {
            endpoint: self.name.to_string(),
            state,
            requests: load(&self.requests),
            chunks_asked: load(&self.asked),
            chunks: load(&self.chunks),
            bytes: load(&self.bytes),
            misses: load(&self.misses),
            failures: load(&self.failures),
            verification_failures: load(&self.verification_failures),
            shunned_for_ms: h.shunning.paused_for_ms(now),
        }
    }
}
