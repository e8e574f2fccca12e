//! [`FillGate`]: whether a cache writes what it fetched into near, and what
//! it does when such a write fails.
//!
//! A write into near fails for a reason that outlasts it (a full disk, a
//! broken file), so one failure pauses filling: fetched data is still
//! returned, only not kept. Near is recovered (its database reopened, see
//! [`crate::ChunkStore::recover`]) so that what it holds is served again.
//! After a pause (first [`FIRST_PAUSE`], doubling up to [`MAX_PAUSE`] while
//! the retries keep failing) one fill is tried again; a success ends the
//! pause. Each condition is logged once when it starts and once when it
//! ends; failures while paused are counted, and logged at most once per
//! [`LOG_INTERVAL`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{info, warn};

use super::stats::CacheStats;
use crate::Error;

/// The first pause in filling after a failed write.
pub const FIRST_PAUSE: Duration = Duration::from_secs(5);
/// The longest pause, reached by doubling while retries fail.
pub const MAX_PAUSE: Duration = Duration::from_secs(300);
/// At most one warning per this long about failures of one kind.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The fill state shared by the clones of a cache service.
pub(crate) struct FillGate {
    stats: Arc<CacheStats>,
    /// A parking_lot (sync) lock, held only to read or change the state.
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    /// While filling is paused: until when.
    paused_until: Option<Instant>,
    /// The pause the next failure starts.
    next_pause: Option<Duration>,
    /// When a near read failure was last logged, and how many since.
    read_log: Option<Instant>,
    reads_unlogged: u64,
    /// When a fill failure during a pause was last logged.
    fill_log: Option<Instant>,
}

/// What the caller of [`FillGate::failed`] must do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// This failure started a pause: recover near now.
    Recover,
    /// Filling was already paused (another fill failed at the same time).
    Nothing,
}

impl FillGate {
    pub(crate) fn new(stats: Arc<CacheStats>) -> Self {
        Self {
            stats,
            state: Mutex::default(),
        }
    }

    /// Whether a fetched item may be written into near now. While paused,
    /// no (and the skip is counted); once the pause is over, yes (a retry).
    pub(crate) fn may_fill(&self) -> bool {
        let state = self.state.lock();
        match state.paused_until {
            Some(until) if Instant::now() < until => {
                drop(state);
                self.stats.fill_skipped();
                false
            }
            _ => true,
        }
    }

    /// A write of `what` into near failed with `error`.
    pub(crate) fn failed(&self, what: &str, error: &Error) -> AfterFailure {
        self.stats.fill_failed();
        let now = Instant::now();
        let mut state = self.state.lock();
        if state.paused_until.is_some_and(|until| now < until) {
            // Another fill failed while this pause began; say so rarely.
            if state.fill_log.is_none_or(|t| now - t >= LOG_INTERVAL) {
                state.fill_log = Some(now);
                warn!(what, %error, "the local cache still cannot be written");
            }
            return AfterFailure::Nothing;
        }
        let pause = state.next_pause.unwrap_or(FIRST_PAUSE);
        let retry = state.paused_until.is_some();
        state.paused_until = Some(now + pause);
        state.next_pause = Some((pause * 2).min(MAX_PAUSE));
        state.fill_log = Some(now);
        drop(state);
        self.stats.set_paused(true);
        warn!(
            what,
            %error,
            pause_secs = pause.as_secs(),
            "{}; serving what is cached, and trying to fill again later",
            if retry {
                "the local cache still cannot be written"
            } else {
                "the local cache cannot be written (disk full?)"
            }
        );
        AfterFailure::Recover
    }

    /// A write into near succeeded: end a pause, if there was one.
    pub(crate) fn succeeded(&self) {
        let mut state = self.state.lock();
        if state.paused_until.take().is_some() {
            state.next_pause = None;
            drop(state);
            self.stats.set_paused(false);
            info!("the local cache can be written again; filling it");
        }
    }

    /// Near was recovered (reopened) after a failure.
    pub(crate) fn recovered(&self, disk_full: bool) {
        self.stats.recovered();
        info!(disk_full, "reopened the local cache after a failed write");
    }

    /// A read from near failed with `error` (the caller goes to far).
    /// Logged at most once per [`LOG_INTERVAL`], with the count since.
    pub(crate) fn read_failed(&self, what: &str, error: &Error) {
        let now = Instant::now();
        let mut state = self.state.lock();
        state.reads_unlogged += 1;
        if state.read_log.is_none_or(|t| now - t >= LOG_INTERVAL) {
            state.read_log = Some(now);
            let failures = std::mem::take(&mut state.reads_unlogged);
            drop(state);
            warn!(
                what,
                %error,
                failures,
                "reading the local cache failed; fetching from the remote"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_pauses_and_a_success_resumes() {
        let stats = Arc::new(CacheStats::default());
        let gate = FillGate::new(stats.clone());
        assert!(gate.may_fill());
        let e = Error::storage_msg("disk full");
        assert_eq!(gate.failed("chunk", &e), AfterFailure::Recover);
        assert_eq!(gate.failed("chunk", &e), AfterFailure::Nothing);
        assert!(!gate.may_fill());
        let s = stats.snapshot();
        assert_eq!(
            (s.fill_failures, s.fills_skipped, s.filling_paused),
            (2, 1, 1)
        );
        gate.succeeded();
        assert!(gate.may_fill());
        assert_eq!(stats.snapshot().filling_paused, 0);
    }

    #[test]
    fn pauses_double_up_to_the_limit() {
        let gate = FillGate::new(Arc::default());
        let e = Error::storage_msg("x");
        for _ in 0..20 {
            // End the pause by hand, as if its time had passed.
            gate.state.lock().paused_until = Some(Instant::now() - Duration::from_secs(1));
            assert_eq!(gate.failed("chunk", &e), AfterFailure::Recover);
        }
        assert_eq!(gate.state.lock().next_pause, Some(MAX_PAUSE));
    }
}
