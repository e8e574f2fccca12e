//! [`Remotes`]: the replicas of one store, each with its health and its
//! figures, and [`Remotes::call`], which runs a request on the first one
//! that answers.
//!
//! A replica that fails in a way that says it is down or broken
//! (unreachable, a broken connection, no answer in time, an internal
//! error) is *shunned*: skipped while others are healthy, for a pause that
//! starts at [`ClientConfig::shun_initial`] and doubles with each failure
//! in a row up to [`ClientConfig::shun_max`]. Once the pause is over the
//! next request tries it again (the probe); an answer makes it healthy
//! again. When every replica is shunned, they are still tried, soonest
//! back first, so that a store that comes back is used at once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use storefs_castore::{Error, Result};

use crate::client::{ClientConfig, GrpcServices};
use crate::shunning::Shunning;

/// One replica: its clients, its health, its figures.
pub(crate) struct Remote {
    /// `grpc://…`, for figures and messages.
    pub(crate) name: Arc<str>,
    /// The clients of this replica (retrying nothing themselves).
    pub(crate) services: GrpcServices,
    /// Whether it is skipped now (while others are healthy).
    health: Mutex<Shunning>,
    requests: AtomicU64,
    failures: AtomicU64,
    bytes: AtomicU64,
}

/// A replica's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteFigures {
    /// The replica's URL.
    pub endpoint: String,
    /// Requests sent to it (a batch of chunks counts once).
    pub requests: u64,
    /// Requests that failed there and were tried elsewhere (or failed).
    pub failures: u64,
    /// Bytes of chunks received from it.
    pub bytes: u64,
    /// Failures in a row since its last answer.
    pub consecutive_failures: u32,
    /// Whether it is being skipped now.
    pub shunned: bool,
    /// Milliseconds until it is tried again (0 when healthy).
    pub shunned_for_ms: u64,
}

impl RemoteFigures {
    /// `"healthy"` or `"shunned"`.
    pub fn state(&self) -> &'static str {
        if self.shunned { "shunned" } else { "healthy" }
    }
}

impl Remote {
    pub(crate) fn new(name: Arc<str>, services: GrpcServices) -> Self {
        Self {
            name,
            services,
            health: Mutex::default(),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Count `n` bytes of chunks received.
    pub(crate) fn received(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn answered(&self) {
        if self.health.lock().answered() {
            tracing::info!(endpoint = %self.name, "replica answers again");
        }
    }

    /// A failure: counted; with `shun`, the replica is skipped for a while.
    fn failed(&self, config: &ClientConfig, error: &Error, shun: bool) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if !shun {
            return;
        }
        let (pause, started) = self
            .health
            .lock()
            .failed(config.shun_initial, config.shun_max);
        if started {
            tracing::warn!(endpoint = %self.name, error = %storefs_castore::Report(error), ?pause, "replica failed; using the others");
        }
    }

    /// When the replica may be used again (`None`: now).
    fn back_at(&self, now: Instant) -> Option<Instant> {
        self.health.lock().back_at(now)
    }

    fn figures(&self, now: Instant) -> RemoteFigures {
        let h = self.health.lock();
        RemoteFigures {
            endpoint: self.name.to_string(),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            consecutive_failures: h.consecutive_failures(),
            shunned: h.back_at(now).is_some(),
            shunned_for_ms: h.paused_for_ms(now),
        }
    }
}

/// What to do after a request failed on one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The answer stands (a refused request, refused credentials): another
    /// replica would say the same.
    Final,
    /// Try the next replica, but this one is up: it sent data that failed
    /// its check, or its store reported the data lost. Not asked again.
    Next,
    /// Try the next replica; this one is broken or slow (no answer in
    /// time, an internal error): skip it a while. Not asked again by this
    /// request (a timeout already took its share of the deadline).
    Shun,
    /// Try the next replica; this one cannot be reached (refused, the
    /// connection broke): skip it a while, and after a round where all
    /// failed so, wait and go round again (it may be restarting).
    Unreachable,
}

impl Verdict {
    /// Whether the request goes on to the next replica.
    pub(crate) fn next(self) -> bool {
        self != Verdict::Final
    }

    /// Whether the replica is skipped for a while.
    fn shuns(self) -> bool {
        matches!(self, Verdict::Shun | Verdict::Unreachable)
    }
}

/// How a request's failure on one replica is handled. The gRPC status is
/// read from the error's context, where this crate's clients write its
/// canonical name (`status::from_status`: "ENDPOINT OP: CODE: message").
pub(crate) fn verdict(e: &Error) -> Verdict {
    match e {
        Error::Timeout { .. } => Verdict::Shun,
        Error::Remote { context, .. } => {
            let code = |c: &str| context.contains(&format!(": {c}: "));
            if code("DATA_LOSS") {
                Verdict::Next
            } else if code("UNAVAILABLE") || code("UNKNOWN") {
                Verdict::Unreachable
            } else {
                Verdict::Shun
            }
        }
        Error::Integrity { .. } | Error::InvalidDirectory { .. } => Verdict::Next,
        _ => Verdict::Final,
    }
}

/// The replicas of one store, in the order given (the first healthy one
/// serves; list them in different orders on different clients to spread
/// the load).
pub(crate) struct Remotes {
    pub(crate) list: Vec<Arc<Remote>>,
    pub(crate) config: Arc<ClientConfig>,
}

impl Remotes {
    /// The order to try the replicas in now: the healthy ones as given,
    /// then the shunned ones, soonest back first.
    pub(crate) fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let mut healthy = Vec::with_capacity(self.list.len());
        let mut shunned = Vec::new();
        for (i, r) in self.list.iter().enumerate() {
            match r.back_at(now) {
                None => healthy.push(i),
                Some(t) => shunned.push((t, i)),
            }
        }
        shunned.sort();
        healthy.extend(shunned.into_iter().map(|(_, i)| i));
        healthy
    }

    /// The figures of each replica, in the order given.
    pub(crate) fn figures(&self) -> Vec<RemoteFigures> {
        let now = Instant::now();
        self.list.iter().map(|r| r.figures(now)).collect()
    }

    /// Run `attempt` on the replicas in [`Remotes::order`] until one
    /// answers; after a round where all failed and one could not be reached
    /// ([`Verdict::Unreachable`]), wait (doubling from `initial_backoff`)
    /// and go round again, `retries` times. An answer that stands
    /// ([`Verdict::Final`]) is returned at once.
    ///
    /// You must only use this for requests that may run twice (reads,
    /// writes of content-addressed data, a path info written last).
    pub(crate) async fn call<T, F, Fut>(&self, op: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut(Arc<Remote>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut backoff = self.config.initial_backoff;
        let mut last: Option<Error> = None;
        for round in 0..=self.config.retries {
            if round > 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.max_backoff);
            }
            let mut again = false;
            for i in self.order() {
                let remote = &self.list[i];
                match self.attempt(remote, &mut attempt).await {
                    Ok(v) => return Ok(v),
                    Err((e, Verdict::Final)) => return Err(e),
                    Err((e, v)) => {
                        tracing::debug!(endpoint = %remote.name, op, error = %storefs_castore::Report(&e), "trying the next replica");
                        again |= v == Verdict::Unreachable;
                        last = Some(e);
                    }
                }
            }
            if !again {
                break;
            }
        }
        Err(last.unwrap_or_else(|| Error::remote_msg(format!("{op}: no replica to ask"))))
    }

    /// One attempt on `remote`, its outcome recorded.
    async fn attempt<T, F, Fut>(
        &self,
        remote: &Arc<Remote>,
        attempt: &mut F,
    ) -> Result<T, (Error, Verdict)>
    where
        F: FnMut(Arc<Remote>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        remote.requests.fetch_add(1, Ordering::Relaxed);
        match attempt(Arc::clone(remote)).await {
            Ok(v) => {
                remote.answered();
                Ok(v)
            }
            Err(e) => {
                let v = verdict(&e);
                match v {
                    Verdict::Final => remote.answered(),
                    v => remote.failed(&self.config, &e, v.shuns()),
                }
                Err((e, v))
            }
        }
    }

    /// Record one request to `remote` made outside [`Remotes::call`]
    /// (a batch whose entries fail over one by one): `Ok` if it answered,
    /// else the worst failure among its entries.
    pub(crate) fn record(&self, remote: &Remote, failure: Option<&Error>) {
        remote.requests.fetch_add(1, Ordering::Relaxed);
        match failure {
            None => remote.answered(),
            Some(e) => match verdict(e) {
                Verdict::Final => remote.answered(),
                v => remote.failed(&self.config, e, v.shuns()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&Error::timeout("x", None)), Verdict::Shun);
        assert_eq!(
            verdict(&Error::remote_msg("grpc://a:1 Read: INTERNAL: redb")),
            Verdict::Shun
        );
        assert_eq!(
            verdict(&Error::remote_msg("grpc://a:1 Read: UNAVAILABLE: down")),
            Verdict::Unreachable
        );
        assert_eq!(
            verdict(&Error::remote_msg("grpc://a:1 Read: DATA_LOSS: bad")),
            Verdict::Next
        );
        assert_eq!(
            verdict(&Error::InvalidRequest("too big".into())),
            Verdict::Final
        );
    }
}
