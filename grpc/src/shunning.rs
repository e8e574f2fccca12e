//! [`Shunning`]: when an endpoint that failed (a replica, a peer) is asked
//! again: after a pause that doubles with each failure in a row, up to a
//! cap, and ends with its next answer.

use std::time::{Duration, Instant};

/// One endpoint's failures in a row and the pause they earned.
#[derive(Debug, Default)]
pub(crate) struct Shunning {
    /// Failures in a row since its last answer.
    consecutive_failures: u32,
    /// Skipped until then.
    until: Option<Instant>,
}

impl Shunning {
    /// It answered: the pause ends. Whether it was paused.
    pub(crate) fn answered(&mut self) -> bool {
        let was = self.until.is_some();
        *self = Self::default();
        was
    }

    /// One more failure: a pause of `initial`, doubled for each earlier
    /// failure in a row, at most `max` (never shorter than what is left
    /// of the current one). Returns the pause and whether one started now.
    pub(crate) fn failed(&mut self, initial: Duration, max: Duration) -> (Duration, bool) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let pause = pause(initial, max, self.consecutive_failures);
        let started = self.until.is_none();
        self.pause_for(pause.max(self.remaining()));
        (pause, started)
    }

    /// Skip it for `pause` from now, whatever came before.
    pub(crate) fn pause_for(&mut self, pause: Duration) {
        self.until = Some(Instant::now() + pause);
    }

    /// When it may be asked again (`None`: now).
    pub(crate) fn back_at(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|&t| t > now)
    }

    /// Milliseconds until it is asked again (0: now).
    pub(crate) fn paused_for_ms(&self, now: Instant) -> u64 {
        self.back_at(now)
            .map(|t| u64::try_from((t - now).as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// Failures in a row since its last answer.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// What is left of the current pause.
    fn remaining(&self) -> Duration {
        self.until
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }
}

/// The pause after `failures` failures in a row.
fn pause(initial: Duration, max: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    initial.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(pause(i, m, 1), Duration::from_secs(1));
        assert_eq!(pause(i, m, 2), Duration::from_secs(2));
        assert_eq!(pause(i, m, 5), Duration::from_secs(16));
        assert_eq!(pause(i, m, 6), Duration::from_secs(30));
        assert_eq!(pause(i, m, u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn an_answer_ends_the_pause() {
        let mut s = Shunning::default();
        let now = Instant::now();
        assert_eq!(s.back_at(now), None);
        let (p, started) = s.failed(Duration::from_secs(60), Duration::from_secs(600));
        assert_eq!((p, started), (Duration::from_secs(60), true));
        assert!(s.back_at(Instant::now()).is_some());
        assert!(s.paused_for_ms(Instant::now()) > 0);
        let (p, started) = s.failed(Duration::from_secs(60), Duration::from_secs(600));
        assert_eq!(
            (p, started, s.consecutive_failures()),
            (Duration::from_secs(120), false, 2)
        );
        assert!(s.answered());
        assert_eq!(
            (s.back_at(Instant::now()), s.consecutive_failures()),
            (None, 0)
        );
        assert!(!s.answered());
    }
}
