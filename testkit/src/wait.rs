//! Pollers: wait until observable state says so, with a deadline that only
//! bounds a failing test (a passing one returns as soon as the state holds).

use std::time::{Duration, Instant};

/// How often the pollers look again.
const POLL: Duration = Duration::from_millis(20);

/// Poll `cond` until it holds; panic naming `what` once `limit` passes.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// Poll `cond` until it holds or `limit` passes; whether it held.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_for`] for async tests: yields to the runtime between looks, so
/// tasks on a current-thread runtime make progress.
pub async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        if !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
