//! [`PeerSet`]: the peers of one mount, the order they are asked in, and
//! the figures of where chunks came from.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use storefs_castore::{B3Digest, GrpcEndpoint, StoreUrl};

use super::inflight::InFlight;
use super::peer::{Peer, PeerFigures};
use crate::auth::Token;
use crate::client::{ClientConfig, ConnectError, GrpcBlobService, connect_endpoint};

/// How a mount reads from its peers.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Sent to every peer as `authorization: Bearer <token>`.
    pub token: Option<Token>,
    /// The budget of one read among the peers, connecting included: what
    /// the peers have not delivered by then is asked of the service. A
    /// read never waits on peers longer than this.
    pub timeout: Duration,
    /// How many peers one chunk is asked of at most (one after another,
    /// the likeliest first, within [`PeerConfig::timeout`]).
    pub ask: usize,
    /// How long a peer that failed is skipped after its first failure in a
    /// row; doubled after each further one.
    pub shun_initial: Duration,
    /// Cap on how long a failed peer is skipped.
    pub shun_max: Duration,
    /// How long a peer that sent bytes failing their check is skipped.
    pub distrust: Duration,
    /// This mount's own URL as its peers list it (from `--peer-listen`).
    /// With it, the fleet splits the chunks among its mounts
    /// ([`PeerSet::first_fetcher`]): each chunk has one mount that asks the service
    /// first, and the others ask that mount first. `None`: no split.
    pub name: Option<Arc<str>>,
    /// How recently this mount's own reader must have missed its cache
    /// for its peer server to keep a peer waiting for a chunk this mount
    /// owns in the split: an idle mount will not bring it in.
    pub active_window: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            token: None,
            timeout: Duration::from_secs(1),
            ask: 3,
            shun_initial: Duration::from_secs(1),
            shun_max: Duration::from_secs(30),
            distrust: Duration::from_secs(600),
            name: None,
            active_window: Duration::from_secs(2),
        }
    }
}

impl PeerConfig {
    /// How long this mount's peer server keeps a peer's read of a chunk
    /// waiting for this mount's own fetch of it: half the budget, so that
    /// an asker with the same budget has time left for the others.
    pub fn linger(&self) -> Duration {
        self.timeout / 2
    }
}

/// Which mount of the fleet asks the service first for a chunk.
pub(crate) enum Owner {
    /// This one.
    Me,
    /// This peer (asked first, and it waits a little for its own fetch).
    Peer(Arc<Peer>),
    /// No split: this mount has no name, or no peers.
    Nobody,
}

/// A 64-bit key for `name` in the split.
pub(crate) fn rank_key(name: &str) -> u64 {
    let h = blake3::hash(name.as_bytes());
    let mut k = [0u8; 8];
    k.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(k)
}

/// The rendezvous score of the mount with `key` for `digest`: the highest
/// score over the fleet owns the chunk. Every mount computes the same
/// owner from the same names, and a mount that leaves or joins moves only
/// its own share.
fn score(key: u64, digest: &B3Digest) -> u64 {
    let mut d = [0u8; 8];
    d.copy_from_slice(&digest.as_bytes()[..8]);
    // splitmix64's finaliser over the key mixed with the digest's first
    // bytes (already uniform: they are a hash).
    let mut z = (key ^ u64::from_le_bytes(d)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The peers of a mount. Cheap to clone; clones share the list and the
/// figures. The list may be replaced while reads run
/// ([`PeerSet::set_peers`]); a peer kept across a change keeps its
/// connection, health and figures.
#[derive(Clone)]
pub struct PeerSet(Arc<Inner>);

struct Inner {
    config: PeerConfig,
    /// The current list. A read takes a snapshot (the `Arc`), so a change
    /// never waits for reads.
    peers: RwLock<Arc<[Arc<Peer>]>>,
    /// Chunks and bytes the service delivered after the peers did not.
    service_chunks: AtomicU64,
    service_bytes: AtomicU64,
    /// Chunks and bytes from peers, including peers since dropped from
    /// the list.
    peer_chunks: AtomicU64,
    peer_bytes: AtomicU64,
    /// Chunks from peers that failed verification, likewise.
    verification_failures: AtomicU64,
    /// The chunks being fetched from the service now.
    in_flight: InFlight,
    /// [`rank_key`] of [`PeerConfig::name`].
    key: Option<u64>,
    /// How often peers had the chunks this mount owns.
    own: parking_lot::Mutex<OwnAsks>,
}

/// Chunks this mount owns that it asked of peers, and how many they had.
#[derive(Debug, Default)]
struct OwnAsks {
    asked: u64,
    found: u64,
    /// Batches of such chunks so far, for the probe.
    batches: u64,
}

/// How many chunks this mount owns must have been asked of peers before
/// their share delivered decides whether to go on asking.
const OWN_ASKS_KNOWN: u64 = 64;

/// While peers hardly ever have the chunks this mount owns, one batch of
/// them in this many is still asked of a peer.
const OWN_PROBE: u64 = 16;

/// Where a mount's chunks came from, at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeersFigures {
    /// Each peer in the current list, in the order given.
    pub peers: Vec<PeerFigures>,
    /// Chunks from all peers (verified), since the mount started.
    pub peer_chunks: u64,
    /// Bytes of those chunks.
    pub peer_bytes: u64,
    /// Chunks the service delivered (what no peer had).
    pub service_chunks: u64,
    /// Bytes of those chunks.
    pub service_bytes: u64,
    /// Chunks peers sent that failed verification (never used).
    pub verification_failures: u64,
}

impl PeerSet {
    /// A set with no peers yet.
    pub fn new(config: PeerConfig) -> Self {
        Self(Arc::new(Inner {
            peers: RwLock::new(Arc::from(Vec::new())),
            service_chunks: AtomicU64::new(0),
            service_bytes: AtomicU64::new(0),
            peer_chunks: AtomicU64::new(0),
            peer_bytes: AtomicU64::new(0),
            verification_failures: AtomicU64::new(0),
            in_flight: InFlight::default(),
            key: config.name.as_deref().map(rank_key),
            own: parking_lot::Mutex::default(),
            config,
        }))
    }

    /// How reads use the peers.
    pub fn config(&self) -> &PeerConfig {
        &self.0.config
    }

    /// The chunks being fetched from the service now: give it to
    /// [`super::peer_services`], so that a peer asking for one of them
    /// gets it when it arrives.
    pub fn in_flight(&self) -> &InFlight {
        &self.0.in_flight
    }

    /// Make `endpoints` the peers, in this order. A peer already known
    /// keeps its connection, health and figures; the others are dropped.
    ///
    /// You must call it inside a tokio runtime. Nothing is sent until a
    /// read asks a peer.
    pub fn set_peers(&self, endpoints: &[GrpcEndpoint]) -> Result<(), ConnectError> {
        let old = self.snapshot();
        let c = &self.0.config;
        let client = ClientConfig {
            token: c.token.clone(),
            connect_timeout: c.timeout,
            call_timeout: c.timeout,
            idle_timeout: c.timeout,
            retries: 0,
            ..ClientConfig::default()
        };
        let mut list = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let name = StoreUrl::Grpc {
                endpoint: e.clone(),
            }
            .to_string();
            if let Some(p) = old.iter().find(|p| *p.name == *name) {
                list.push(Arc::clone(p));
                continue;
            }
            let blob: GrpcBlobService = connect_endpoint(e, client.clone())?.grpc_blob;
            list.push(Arc::new(Peer::new(name.into(), blob)));
        }
        let names: Vec<&str> = list.iter().map(|p| &*p.name).collect();
        tracing::info!(peers = ?names, "peers");
        *self.0.peers.write() = Arc::from(list);
        Ok(())
    }

    /// The current list.
    pub(crate) fn snapshot(&self) -> Arc<[Arc<Peer>]> {
        Arc::clone(&self.0.peers.read())
    }

    /// The peers to ask now, in order: those not being skipped, the
    /// likeliest to hold chunks first (the order given among equals), at
    /// most [`PeerConfig::ask`].
    pub(crate) fn to_ask(&self) -> Vec<Arc<Peer>> {
        let now = Instant::now();
        let mut ready: Vec<(f64, usize, Arc<Peer>)> = self
            .snapshot()
            .iter()
            .enumerate()
            .filter(|(_, p)| p.back_at(now).is_none())
            .map(|(i, p)| (p.likeliness(), i, Arc::clone(p)))
            .collect();
        ready.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ready
            .into_iter()
            .take(self.0.config.ask.max(1))
            .map(|(_, _, p)| p)
            .collect()
    }

    /// Which mount asks the service first for `digest` (docs/peers.md,
    /// "All at once"): the highest rendezvous score among this mount and
    /// its peers, healthy or not, so that every mount with the same list
    /// agrees.
    pub(crate) fn owner(&self, digest: &B3Digest) -> Owner {
        let Some(key) = self.0.key else {
            return Owner::Nobody;
        };
        let peers = self.snapshot();
        if peers.is_empty() {
            return Owner::Nobody;
        }
        let mine = score(key, digest);
        let best = peers
            .iter()
            .map(|p| (score(p.key, digest), p))
            .max_by_key(|(s, _)| *s);
        match best {
            Some((s, p)) if s > mine => Owner::Peer(Arc::clone(p)),
            _ => Owner::Me,
        }
    }

    /// The name of the mount that asks the service first for `digest` in
    /// the fleet's split (this one's [`PeerConfig::name`] or a peer's
    /// URL); `None` without a split.
    pub fn first_fetcher(&self, digest: &B3Digest) -> Option<Arc<str>> {
        match self.owner(digest) {
            Owner::Me => self.0.config.name.clone(),
            Owner::Peer(p) => Some(Arc::clone(&p.name)),
            Owner::Nobody => None,
        }
    }

    /// Whether this mount asks the service first for `digest` within a
    /// split (false without one).
    pub(crate) fn owns(&self, digest: &B3Digest) -> bool {
        matches!(self.owner(digest), Owner::Me)
    }

    /// The peers to ask for a chunk `owner` owns, in order: the owner
    /// first (if it is not being skipped), then the likeliest others; for
    /// a chunk this mount owns, only the likeliest peer (a fleet that
    /// came earlier has it there), and none while peers hardly ever have
    /// such chunks (a fleet that starts together has them nowhere yet; see
    /// [`PeerSet::asked_for_own`]).
    pub(crate) fn to_ask_for(&self, owner: &Owner) -> Vec<Arc<Peer>> {
        let mut ask = self.to_ask();
        match owner {
            Owner::Nobody => {}
            Owner::Me if self.ask_for_own() => ask.truncate(1),
            Owner::Me => ask.clear(),
            Owner::Peer(p) => {
                let now = Instant::now();
                ask.retain(|q| !Arc::ptr_eq(q, p));
                if p.back_at(now).is_none() {
                    ask.insert(0, Arc::clone(p));
                    ask.truncate(self.0.config.ask.max(1));
                }
            }
        }
        ask
    }

    /// Whether to ask a peer for chunks this mount owns: while peers
    /// deliver at least one in ten of those asked (or fewer than
    /// [`OWN_ASKS_KNOWN`] were asked), else one batch in [`OWN_PROBE`].
    fn ask_for_own(&self) -> bool {
        let mut own = self.0.own.lock();
        own.batches += 1;
        own.asked < OWN_ASKS_KNOWN
            || own.found * 10 >= own.asked
            || own.batches.is_multiple_of(OWN_PROBE)
    }

    /// Peers delivered `found` of `asked` chunks this mount owns.
    pub(crate) fn asked_for_own(&self, asked: usize, found: usize) {
        let mut own = self.0.own.lock();
        own.asked += asked as u64;
        own.found += found as u64;
        // Recent asks weigh more.
        if own.asked > 16 * OWN_ASKS_KNOWN {
            own.asked /= 2;
            own.found /= 2;
        }
    }

    /// The service delivered a chunk of `len` bytes.
    pub(crate) fn service_delivered(&self, len: usize) {
        self.0.service_chunks.fetch_add(1, Ordering::Relaxed);
        self.0
            .service_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
    }

    /// A peer delivered a verified chunk of `len` bytes.
    pub(crate) fn peer_delivered(&self, len: usize) {
        self.0.peer_chunks.fetch_add(1, Ordering::Relaxed);
        self.0.peer_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// A peer sent a chunk that failed verification.
    pub(crate) fn lie(&self) {
        self.0.verification_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The figures now: each peer's, and the totals (peers since dropped
    /// from the list included).
    pub fn figures(&self) -> PeersFigures {
        let now = Instant::now();
        let peers: Vec<PeerFigures> = self.snapshot().iter().map(|p| p.figures(now)).collect();
        PeersFigures {
            peer_chunks: self.0.peer_chunks.load(Ordering::Relaxed),
            peer_bytes: self.0.peer_bytes.load(Ordering::Relaxed),
            verification_failures: self.0.verification_failures.load(Ordering::Relaxed),
            service_chunks: self.0.service_chunks.load(Ordering::Relaxed),
            service_bytes: self.0.service_bytes.load(Ordering::Relaxed),
            peers,
        }
    }
}
