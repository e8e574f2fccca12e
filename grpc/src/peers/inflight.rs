//! [`InFlight`]: the chunks on their way into a mount now, so that its
//! peer server can hand one to a peer that asks for it meanwhile, instead
//! of the peer fetching it from the service too.
//!
//! Two kinds of wait use it, both bounded by the caller:
//! - a peer asks for a chunk the mount is fetching from its service right
//!   now (for its own readers): the peer gets it when it arrives;
//! - a peer asks for a chunk this mount is the designated first fetcher of
//!   (see `set`'s split), while this mount's own reader is busy: the peer
//!   *lingers* until this mount's reader wants the chunk and has it.
//!
//! Neither starts a fetch. Only this mount's own reads put a chunk on its
//! way; a waiter only watches.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use storefs_castore::B3Digest;
use tokio::sync::watch;

/// What a watched chunk came to: `None` while it is awaited, `Some(None)`
/// when the fetch failed or was given up, `Some(Some(bytes))` when it
/// arrived.
type Outcome = Option<Option<Bytes>>;

/// One chunk someone waits for or this mount fetches.
struct Slot {
    tx: watch::Sender<Outcome>,
    /// Fetches of it from the service running now.
    fetching: usize,
}

/// The watched chunks, and the latest arrivals.
#[derive(Default)]
struct Slots {
    watched: HashMap<B3Digest, Slot>,
    /// Chunks that arrived lately, oldest first, at most [`RECENT_BYTES`].
    recent: HashMap<B3Digest, Bytes>,
    order: VecDeque<B3Digest>,
    recent_bytes: usize,
}

impl Slots {
    fn remember(&mut self, digest: &B3Digest, data: &Bytes) {
        if data.len() > RECENT_BYTES || self.recent.contains_key(digest) {
            return;
        }
        self.recent.insert(*digest, data.clone());
        self.order.push_back(*digest);
        self.recent_bytes += data.len();
        while self.recent_bytes > RECENT_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.recent.remove(&old) {
                self.recent_bytes -= b.len();
            }
        }
    }
}

/// What [`InFlight::watch`] found.
pub(crate) enum Seen {
    /// The chunk arrived a moment ago.
    Here(Bytes),
    /// It is on its way, or awaited: wait for it.
    Coming(Watch),
    /// Nobody brings it in.
    No,
}

/// The chunks on their way into a mount and the peers waiting for them.
/// Cheap to clone; clones share the list.
#[derive(Clone)]
pub struct InFlight(Arc<Inner>);

/// How many bytes of chunks that arrived lately [`InFlight`] keeps, for a
/// peer asking just after: a chunk reaches the mount's disk cache a
/// moment after its readers have it.
const RECENT_BYTES: usize = 8 << 20;

struct Inner {
    slots: Mutex<Slots>,
    /// When the list was made; `last_read` counts from it.
    epoch: Instant,
    /// Milliseconds after `epoch` at which this mount's own reader last
    /// missed its cache (plus one; 0: never).
    last_read: AtomicU64,
}

impl Default for InFlight {
    fn default() -> Self {
        Self(Arc::new(Inner {
            slots: Mutex::default(),
            epoch: Instant::now(),
            last_read: AtomicU64::new(0),
        }))
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("chunks", &self.0.slots.lock().watched.len())
            .finish_non_exhaustive()
    }
}

impl InFlight {
    /// List `digests` as being fetched from the service; the guard
    /// delivers them ([`Fetching::deliver`]) and gives up the rest when
    /// dropped.
    pub(crate) fn start(&self, digests: &[B3Digest]) -> Fetching {
        let mut slots = self.0.slots.lock();
        for d in digests {
            slots
                .watched
                .entry(*d)
                .or_insert_with(|| Slot {
                    tx: watch::channel(None).0,
                    fetching: 0,
                })
                .fetching += 1;
        }
        Fetching {
            list: self.clone(),
            digests: digests.to_vec(),
        }
    }

    /// `digest` has arrived (from the service or a peer, verified): hand
    /// it to whoever waits for it.
    pub(crate) fn arrived(&self, digest: &B3Digest, data: &Bytes) {
        let mut slots = self.0.slots.lock();
        slots.remember(digest, data);
        if let Some(slot) = slots.watched.remove(digest) {
            slot.tx.send_replace(Some(Some(data.clone())));
        }
    }

    /// This mount's own reader missed its cache just now.
    pub(crate) fn reading(&self) {
        let ms = self.0.epoch.elapsed().as_millis() as u64 + 1;
        self.0.last_read.fetch_max(ms, Ordering::Relaxed);
    }

    /// Whether this mount's own reader missed its cache within `window`.
    pub(crate) fn active(&self, window: Duration) -> bool {
        let last = self.0.last_read.load(Ordering::Relaxed);
        if last == 0 {
            return false;
        }
        let now = self.0.epoch.elapsed().as_millis() as u64 + 1;
        now.saturating_sub(last) <= window.as_millis() as u64
    }

    /// Watch `digest`: [`Seen::Here`] if it arrived a moment ago;
    /// [`Seen::Coming`] if it is being fetched now, or if `linger` (then it
    /// is awaited until this mount's reader brings it in); [`Seen::No`]
    /// otherwise.
    pub(crate) fn watch(&self, digest: &B3Digest, linger: bool) -> Seen {
        let mut slots = self.0.slots.lock();
        if let Some(data) = slots.recent.get(digest) {
            return Seen::Here(data.clone());
        }
        let (rx, fetching) = match slots.watched.get(digest) {
            Some(slot) => (slot.tx.subscribe(), slot.fetching > 0),
            None if linger => {
                let (tx, rx) = watch::channel(None);
                slots.watched.insert(*digest, Slot { tx, fetching: 0 });
                (rx, false)
            }
            None => return Seen::No,
        };
        Seen::Coming(Watch {
            list: self.clone(),
            digest: *digest,
            rx,
            fetching,
        })
    }

    /// How many chunks are watched or fetched now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.slots.lock().watched.len()
    }
}

/// A wait for one chunk ([`InFlight::watch`]).
pub(crate) struct Watch {
    list: InFlight,
    digest: B3Digest,
    rx: watch::Receiver<Outcome>,
    /// Whether a fetch of it from the service ran when the watch began.
    pub(crate) fetching: bool,
}

impl Watch {
    /// The chunk, if it arrives within `limit`.
    pub(crate) async fn wait(mut self, limit: Duration) -> Option<Bytes> {
        let got = tokio::time::timeout(limit, self.rx.wait_for(Option::is_some)).await;
        match got {
            Ok(Ok(outcome)) => outcome.clone().flatten(),
            _ => None,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut slots = self.list.0.slots.lock();
        if let Some(slot) = slots.watched.get(&self.digest) {
            // Nobody fetches it and this was the last waiter.
            if slot.fetching == 0 && slot.tx.receiver_count() <= 1 {
                slots.watched.remove(&self.digest);
            }
        }
    }
}

/// Chunks listed in [`InFlight`] by one fetch from the service.
pub(crate) struct Fetching {
    list: InFlight,
    digests: Vec<B3Digest>,
}

impl Fetching {
    /// Hand `data` to whoever waits for `digest`.
    pub(crate) fn deliver(&mut self, digest: &B3Digest, data: &Bytes) {
        if let Some(i) = self.digests.iter().position(|d| d == digest) {
            self.digests.swap_remove(i);
            self.list.arrived(digest, data);
        }
    }
}

impl Drop for Fetching {
    /// What was not delivered is given up: its waiters stop waiting once
    /// no other fetch of it runs.
    fn drop(&mut self) {
        let mut slots = self.list.0.slots.lock();
        for d in self.digests.drain(..) {
            let Some(slot) = slots.watched.get_mut(&d) else {
                continue;
            };
            slot.fetching = slot.fetching.saturating_sub(1);
            if slot.fetching == 0
                && let Some(slot) = slots.watched.remove(&d)
            {
                slot.tx.send_replace(Some(None));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: u8) -> B3Digest {
        B3Digest::of(&[i])
    }

    fn coming(seen: Seen) -> Watch {
        match seen {
            Seen::Coming(w) => w,
            _ => panic!("not a wait"),
        }
    }

    #[test]
    fn a_chunk_that_just_arrived_is_at_hand_and_old_ones_are_forgotten() {
        let list = InFlight::default();
        let big = Bytes::from(vec![7u8; RECENT_BYTES / 2 + 1]);
        list.arrived(&digest(5), &big);
        assert!(matches!(list.watch(&digest(5), false), Seen::Here(b) if b == big));
        list.arrived(&digest(6), &big);
        assert!(matches!(list.watch(&digest(5), false), Seen::No));
        assert!(matches!(list.watch(&digest(6), false), Seen::Here(_)));
    }

    #[tokio::test]
    async fn a_waiter_gets_a_fetched_chunk_and_the_list_empties() {
        let list = InFlight::default();
        let d = digest(1);
        assert!(
            matches!(list.watch(&d, false), Seen::No),
            "nothing fetched yet"
        );
        let mut fetching = list.start(&[d]);
        let w = coming(list.watch(&d, false));
        let waiter = tokio::spawn(w.wait(Duration::from_secs(30)));
        fetching.deliver(&d, &Bytes::from_static(b"x"));
        assert_eq!(waiter.await.unwrap(), Some(Bytes::from_static(b"x")));
        drop(fetching);
        assert_eq!(list.len(), 0);
    }

    #[tokio::test]
    async fn a_failed_fetch_ends_the_wait_at_once() {
        let list = InFlight::default();
        let d = digest(2);
        let fetching = list.start(&[d]);
        let w = coming(list.watch(&d, false));
        drop(fetching);
        // A day-long limit: the test would hang if the give-up were lost.
        assert_eq!(w.wait(Duration::from_secs(86_400)).await, None);
        assert_eq!(list.len(), 0);
    }

    #[tokio::test]
    async fn a_lingering_waiter_gets_the_chunk_once_the_mount_fetches_it() {
        let list = InFlight::default();
        let d = digest(3);
        let w = coming(list.watch(&d, true));
        let waiter = tokio::spawn(w.wait(Duration::from_secs(30)));
        // The mount's own reader wants it later and fetches it.
        let mut fetching = list.start(&[d]);
        fetching.deliver(&d, &Bytes::from_static(b"y"));
        assert_eq!(waiter.await.unwrap(), Some(Bytes::from_static(b"y")));
        drop(fetching);
        assert_eq!(list.len(), 0);
    }

    #[tokio::test]
    async fn a_lingering_waiter_that_times_out_leaves_nothing_behind() {
        let list = InFlight::default();
        let d = digest(4);
        let w = coming(list.watch(&d, true));
        assert_eq!(w.wait(Duration::from_millis(1)).await, None);
        assert_eq!(list.len(), 0);
    }

    #[test]
    fn activity_is_seen_within_its_window() {
        let list = InFlight::default();
        assert!(!list.active(Duration::from_secs(3600)));
        list.reading();
        assert!(list.active(Duration::from_secs(3600)));
    }
}
