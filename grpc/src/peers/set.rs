//! [`PeerSet`]: the peers of one mount, the order they are asked in, and
//! the figures of where chunks came from.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use storefs_castore::{GrpcEndpoint, StoreUrl};

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
        }
    }
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
}

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
            config,
            peers: RwLock::new(Arc::from(Vec::new())),
            service_chunks: AtomicU64::new(0),
            service_bytes: AtomicU64::new(0),
            peer_chunks: AtomicU64::new(0),
            peer_bytes: AtomicU64::new(0),
            verification_failures: AtomicU64::new(0),
            in_flight: InFlight::default(),
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
