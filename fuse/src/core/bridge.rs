//! The one boundary between the transports' threads and async work.
//!
//! fuser calls the filesystem on its own threads, the virtio-fs backend on
//! its queue thread. Every operation is an async function of
//! [`crate::core::ops`]; [`Bridge::run`] polls it once on the calling thread
//! (inside the runtime's context) and, if it is already done (everything it
//! needed was in memory), replies at once. Otherwise the future and the
//! reply (fuser's `Reply*`) move into a task on the tokio runtime, which
//! replies when the future finishes, so a slow fetch blocks no other
//! operation and no FUSE thread ever waits. A semaphore bounds the tasks
//! working at once. Each call to a service inside an operation has the
//! mount's timeout (`deadline`), so a hung remote turns into EIO after it;
//! the bridge adds a backstop over the whole operation, counted from when it
//! got its permit, [`BACKSTOP_FACTOR`] times the timeout: an operation that
//! makes several calls, or waits behind other readers on a busy machine,
//! is not cut off for its local queueing, and still none hangs. Nothing here
//! calls `block_on`.
//!
//! A transport that answers on the thread that asked (virtio-fs: a request
//! is a descriptor chain in guest memory, answered in place) uses
//! [`Bridge::call`], the same path with a channel as the reply: its thread
//! waits on the channel (never on the runtime), within the same deadline.
//!
//! Errors become errno here, through [`FsError::errno`], and failures that
//! are not ordinary answers are logged once.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::core::Errno;
use crate::core::error::FsError;
use crate::core::stats::{self, MountStats};

/// How many timeouts a whole operation may take, from when it got its
/// permit, before the bridge gives up on it.
pub(crate) const BACKSTOP_FACTOR: u32 = 6;

/// Runs operations for the FUSE callbacks.
pub(crate) struct Bridge {
    handle: Handle,
    /// Bounds operations in flight on the runtime.
    permits: Arc<Semaphore>,
    /// The backstop over one operation.
    backstop: Duration,
    stats: Arc<MountStats>,
}

impl Bridge {
    /// A bridge onto `handle`'s runtime, with at most `max_in_flight`
    /// operations working at once; `timeout` is the deadline of one call to
    /// a service (the backstop is [`BACKSTOP_FACTOR`] times that).
    pub(crate) fn new(
        handle: Handle,
        max_in_flight: usize,
        timeout: Duration,
        stats: Arc<MountStats>,
    ) -> Self {
        Self {
            handle,
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
            backstop: timeout.saturating_mul(BACKSTOP_FACTOR),
            stats,
        }
    }

    /// Run `op` and hand its result to `respond` together with `reply`.
    /// `what` names the operation in logs.
    pub(crate) fn run<T, R, F>(
        &self,
        what: &'static str,
        op: F,
        reply: R,
        respond: impl FnOnce(R, Result<T, Errno>) + Send + 'static,
    ) where
        F: Future<Output = Result<T, FsError>> + Send + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        let mut op = Box::pin(op);
        let first = {
            // Inside the runtime's context, so that timers and spawns made
            // during this first poll find their runtime.
            let _entered = self.handle.enter();
            let mut cx = Context::from_waker(Waker::noop());
            op.as_mut().poll(&mut cx)
        };
        if let Poll::Ready(res) = first {
            respond(reply, finish(&self.stats, what, res));
            return;
        }
        stats::add(&self.stats.ops_waited, 1);
        match what {
            "open" => stats::add(&self.stats.opens_waited, 1),
            "read" => stats::add(&self.stats.reads_waited, 1),
            _ => {}
        }
        // Not done: whatever it waits on was registered with a no-op waker,
        // but a spawned task is always polled at least once, which
        // registers the task's real waker.
        let permits = Arc::clone(&self.permits);
        let stats = Arc::clone(&self.stats);
        let backstop = self.backstop;
        self.handle.spawn(async move {
            // The semaphore is never closed; should it be, run anyway.
            let _permit = permits.acquire_owned().await.ok();
            let res = match tokio::time::timeout(backstop, pin!(op)).await {
                Ok(res) => res,
                Err(_) => {
                    stats::add(&stats.timeouts, 1);
                    Err(FsError::Timeout {
                        what,
                        after: backstop,
                    })
                }
            };
            respond(reply, finish(&stats, what, res));
        });
    }
}

impl Bridge {
    /// Run `op` and wait for its result on this thread, which must not be
    /// one of the runtime's (a transport's own thread). The wait is bounded
    /// by the backstop that [`Bridge::run`] gives every task.
    pub(crate) fn call<T, F>(&self, what: &'static str, op: F) -> Result<T, Errno>
    where
        F: Future<Output = Result<T, FsError>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.run(what, op, tx, |tx, r| {
            // The caller waits until this send, or gave up (then nobody
            // listens, and the result has nowhere to go).
            let _ = tx.send(r);
        });
        // `run` always answers: inline, or from the task by its deadline.
        // A runtime shutting down drops the task and with it the sender.
        rx.recv().unwrap_or(Err(libc::EIO))
    }
}

fn finish<T>(stats: &MountStats, what: &'static str, res: Result<T, FsError>) -> Result<T, Errno> {
    res.map_err(|e| {
        if !e.is_expected() {
            stats::add(&stats.errors, 1);
            tracing::warn!(op = what, error = %e, "storefs: operation failed");
        }
        e.errno()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn bridge(rt: &tokio::runtime::Runtime, timeout: Duration) -> Bridge {
        Bridge::new(
            rt.handle().clone(),
            4,
            timeout,
            Arc::new(MountStats::default()),
        )
    }

    #[test]
    fn ready_operations_answer_on_the_calling_thread() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let b = bridge(&rt, Duration::from_secs(5));
        let (tx, rx) = mpsc::channel();
        let caller = std::thread::current().id();
        b.run("t", async { Ok(7) }, tx, move |tx, r| {
            tx.send((r, std::thread::current().id())).unwrap()
        });
        let (r, thread) = rx.try_recv().expect("answered before run returned");
        assert_eq!(r, Ok(7));
        assert_eq!(thread, caller);
    }

    #[test]
    fn pending_operations_finish_on_the_runtime() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let b = bridge(&rt, Duration::from_secs(5));
        let (tx, rx) = mpsc::channel();
        b.run(
            "t",
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, FsError>("late")
            },
            tx,
            |tx, r| tx.send(r).unwrap(),
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Ok("late"));
    }

    #[test]
    fn hung_operations_become_eio_at_the_backstop() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let b = bridge(&rt, Duration::from_millis(100));
        let (tx, rx) = mpsc::channel();
        let started = std::time::Instant::now();
        b.run(
            "hang",
            futures::future::pending::<Result<(), FsError>>(),
            tx,
            |tx, r| tx.send(r).unwrap(),
        );
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Err(libc::EIO)
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(b.stats.snapshot().timeouts, 1);
    }

    #[test]
    fn waiting_for_a_permit_is_not_counted_against_the_backstop() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        // One permit; backstop 6 × 20 ms = 120 ms. Five operations of 80 ms
        // each go first, so the last one waits about 400 ms for its permit.
        let stats = Arc::new(MountStats::default());
        let b = Bridge::new(rt.handle().clone(), 1, Duration::from_millis(20), stats);
        let (tx, rx) = mpsc::channel();
        for _ in 0..5 {
            b.run(
                "busy",
                async {
                    tokio::time::sleep(Duration::from_millis(80)).await;
                    Ok::<_, FsError>("busy")
                },
                tx.clone(),
                |tx, r| tx.send(r).unwrap(),
            );
        }
        let queued = async {
            tokio::task::yield_now().await;
            Ok::<_, FsError>("queued")
        };
        b.run("queued", queued, tx, |tx, r| tx.send(r).unwrap());
        let got: Vec<_> = (0..6)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(
            got.iter().filter(|r| **r == Ok("busy")).count(),
            5,
            "{got:?}"
        );
        assert!(got.contains(&Ok("queued")), "{got:?}");
        assert_eq!(b.stats.snapshot().timeouts, 0);
    }

    #[test]
    fn blocking_calls_get_ready_and_pending_answers_and_time_out() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let b = bridge(&rt, Duration::from_millis(200));
        assert_eq!(b.call("ready", async { Ok(1) }), Ok(1));
        assert_eq!(
            b.call("late", async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok::<_, FsError>(2)
            }),
            Ok(2)
        );
        assert_eq!(
            b.call("missing", async { Err::<(), _>(FsError::NotFound) }),
            Err(libc::ENOENT)
        );
        assert_eq!(
            b.call("hang", futures::future::pending::<Result<(), FsError>>()),
            Err(libc::EIO)
        );
    }
}
