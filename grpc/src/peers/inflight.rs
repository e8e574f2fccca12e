//! [`InFlight`]: the chunks a mount is fetching from its service right
//! now, so that its peer server can hand them to a peer that asks for one
//! meanwhile, instead of the peer fetching it from the service too.
//!
//! Only fetches from the service are listed, never reads among peers: a
//! peer server that waits here waits on the service alone, so peers never
//! wait on each other in a circle.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use storefs_castore::B3Digest;
use tokio::sync::oneshot;

/// One chunk on its way from the service: its bytes, or `None` if the
/// fetch failed or was given up.
type Arrival = Shared<BoxFuture<'static, Option<Bytes>>>;

/// The chunks being fetched from the service. Cheap to clone; clones share
/// the list.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<HashMap<B3Digest, Arrival>>>);

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").finish_non_exhaustive()
    }
}

impl InFlight {
    /// List `digests` as being fetched; the guard delivers them
    /// ([`Fetching::deliver`]) and takes them off the list when dropped.
    pub(crate) fn start(&self, digests: &[B3Digest]) -> Fetching {
        let mut senders = Vec::with_capacity(digests.len());
        let mut map = self.0.lock();
        for d in digests {
            if map.contains_key(d) {
                continue;
            }
            let (tx, rx) = oneshot::channel::<Bytes>();
            map.insert(*d, rx.map(Result::ok).boxed().shared());
            senders.push((*d, tx));
        }
        Fetching {
            list: self.clone(),
            senders,
        }
    }

    /// Wait, at most `limit`, for `digest` if it is being fetched; `None`
    /// if it is not, or does not arrive in time.
    pub(crate) async fn wait(&self, digest: &B3Digest, limit: Duration) -> Option<Bytes> {
        let arrival = self.0.lock().get(digest).cloned()?;
        tokio::time::timeout(limit, arrival).await.ok().flatten()
    }
}

/// Chunks listed in [`InFlight`] by one fetch.
pub(crate) struct Fetching {
    list: InFlight,
    senders: Vec<(B3Digest, oneshot::Sender<Bytes>)>,
}

impl Fetching {
    /// Hand `data` to whoever waits for `digest`.
    pub(crate) fn deliver(&mut self, digest: &B3Digest, data: &Bytes) {
        if let Some(i) = self.senders.iter().position(|(d, _)| d == digest) {
            let (d, tx) = self.senders.swap_remove(i);
            let _ = tx.send(data.clone());
            self.list.0.lock().remove(&d);
        }
    }
}

impl Drop for Fetching {
    fn drop(&mut self) {
        let mut map = self.list.0.lock();
        for (d, _) in self.senders.drain(..) {
            map.remove(&d);
        }
    }
}
