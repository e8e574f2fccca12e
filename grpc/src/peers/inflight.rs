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

use std::collections::HashMap;
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

/// The chunks on their way into a mount and the peers waiting for them.
/// Cheap to clone; clones share the list.
#[derive(Clone)]
pub struct InFlight(Arc<Inner>);

struct Inner {
    slots: Mutex<HashMap<B3Digest, Slot>>,
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
            .field("chunks", &self.0.slots.lock().len())
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
        if let Some(slot) = self.0.slots.lock().remove(digest) {
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

    /// Watch `digest`: `Some` if it is being fetched now, or if `linger`
    /// (then it is awaited until this mount's reader brings it in); `None`
    /// otherwise. Check the cache again after this, before waiting: a
    /// chunk that arrived just before is there, not here.
    pub(crate) fn watch(&self, digest: &B3Digest, linger: bool) -> Option<Watch> {
        let mut slots = self.0.slots.lock();
        let (rx, fetching) = match slots.get(digest) {
            Some(slot) => (slot.tx.subscribe(), slot.fetching > 0),
            None if linger => {
                let (tx, rx) = watch::channel(None);
                slots.insert(*digest, Slot { tx, fetching: 0 });
                (rx, false)
            }
            None => return None,
        };
        Some(Watch {
            list: self.clone(),
            digest: *digest,
            rx,
            fetching,
        })
    }

    /// How many chunks are watched or fetched now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.slots.lock().len()
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
        if let Some(slot) = slots.get(&self.digest) {
            // Nobody fetches it and this was the last waiter.
            if slot.fetching == 0 && slot.tx.receiver_count() <= 1 {
                slots.remove(&self.digest);
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
            let Some(slot) = slots.get_mut(&d) else {
                continue;
            };
            slot.fetching = slot.fetching.saturating_sub(1);
            if slot.fetching == 0
                && let Some(slot) = slots.remove(&d)
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

    #[tokio::test]
    async fn a_waiter_gets_a_fetched_chunk_and_the_list_empties() {
        let list = InFlight::default();
        let d = digest(1);
        assert!(list.watch(&d, false).is_none(), "nothing fetched yet");
        let mut fetching = list.start(&[d]);
        let w = list.watch(&d, false).expect("being fetched");
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
        let w = list.watch(&d, false).expect("being fetched");
        drop(fetching);
        // A day-long limit: the test would hang if the give-up were lost.
        assert_eq!(w.wait(Duration::from_secs(86_400)).await, None);
        assert_eq!(list.len(), 0);
    }

    #[tokio::test]
    async fn a_lingering_waiter_gets_the_chunk_once_the_mount_fetches_it() {
        let list = InFlight::default();
        let d = digest(3);
        let w = list.watch(&d, true).expect("lingering");
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
        let w = list.watch(&d, true).expect("lingering");
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
