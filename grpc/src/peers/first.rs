//! [`PeerFirstBlobService`]: chunks from the peers first, then from the
//! service.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use storefs_castore::{B3Digest, Error, Result};
use storefs_castore::{
    BlobReader, BlobService, BlobWriter, ChunkMeta, VerifiedChunk, open_read_via_chunks,
};
use tokio::time::Instant;

use super::peer::Peer;
use super::set::{Owner, PeerSet};

/// A blob service that reads chunks from peers before the service.
///
/// A chunk (or a batch of them) is asked of the peers [`PeerSet`] names,
/// the likeliest first, one after another for what the earlier ones did
/// not hold, all within one budget ([`super::PeerConfig::timeout`]); what
/// they did not deliver by then is asked of the service, so a read waits at
/// most that long more than it would on the service alone. Every chunk from
/// a peer is checked against its digest (by the gRPC client); one that
/// fails is dropped, counted, and asked of the service, and the peer is
/// shunned. Chunks on their way from the service are listed in the set's
/// [`super::InFlight`] meanwhile, and every chunk that arrives is handed
/// to the peers waiting there, for this mount's peer server. Everything
/// else — chunk lists (which cannot be checked on their own), whole blob
/// reads of unchunked blobs, writes — goes to the service. Chunks travel
/// as their clients checked them, with the zstd frames they came in
/// ([`BlobService::read_chunk_batch_verified`]), for the cache behind.
#[derive(Clone)]
pub struct PeerFirstBlobService {
    peers: PeerSet,
    service: Arc<dyn BlobService>,
}

impl PeerFirstBlobService {
    /// `peers` in front of `service`.
    pub fn new(peers: PeerSet, service: Arc<dyn BlobService>) -> Self {
        Self { peers, service }
    }

    /// The peers, for their figures.
    pub fn peers(&self) -> &PeerSet {
        &self.peers
    }

    /// Read `digests`: grouped by the mount that owns them in the fleet's
    /// split ([`PeerSet::owner`]), each group asks its own peers in order
    /// ([`PeerSet::to_ask_for`]) within one budget, then the service for
    /// what they did not deliver; the groups run at the same time, so a
    /// chunk this mount owns never waits on a peer keeping another chunk
    /// waiting (two mounts would then wait on each other). Each entry is
    /// answered on its own.
    async fn read(&self, digests: &[B3Digest]) -> Vec<Result<Option<VerifiedChunk>>> {
        self.peers.in_flight().reading();
        let deadline = Instant::now() + self.peers.config().timeout;
        // (whether this mount owns them, the peers to ask, the indices)
        let mut groups: Vec<(bool, Vec<Arc<Peer>>, Vec<usize>)> = Vec::new();
        if !self.peers.snapshot().is_empty() {
            let mut own_order = None;
            for (j, d) in digests.iter().enumerate() {
                let owner = self.peers.owner(d);
                let mine = matches!(owner, Owner::Me);
                let order = match (mine, &own_order) {
                    // One decision per batch for the chunks it owns.
                    (true, Some(o)) => Vec::clone(o),
                    _ => self.peers.to_ask_for(&owner),
                };
                if mine && own_order.is_none() {
                    own_order = Some(order.clone());
                }
                match groups
                    .iter_mut()
                    .find(|(m, o, _)| *m == mine && same_order(o, &order))
                {
                    Some((_, _, members)) => members.push(j),
                    None => groups.push((mine, order, vec![j])),
                }
            }
        } else if !digests.is_empty() {
            groups.push((false, Vec::new(), (0..digests.len()).collect()));
        }
        let got = futures::future::join_all(groups.into_iter().map(|(mine, order, members)| {
            self.read_group(mine, order, digests, members, deadline)
        }))
        .await;
        let mut out: Vec<Result<Option<VerifiedChunk>>> = (0..digests.len())
            .map(|_| Err(Error::remote_msg("the service answered too few chunks")))
            .collect();
        for (j, r) in got.into_iter().flatten() {
            out[j] = r;
        }
        out
    }

    /// One group of [`Self::read`]: `order`'s peers, then the service.
    async fn read_group(
        &self,
        mine: bool,
        order: Vec<Arc<Peer>>,
        digests: &[B3Digest],
        members: Vec<usize>,
        deadline: Instant,
    ) -> Vec<(usize, Result<Option<VerifiedChunk>>)> {
        let in_flight = self.peers.in_flight();
        let mut out: Vec<(usize, Result<Option<VerifiedChunk>>)> =
            Vec::with_capacity(members.len());
        let mut rest = members.clone();
        if !order.is_empty() {
            let asked = members.len();
            let found = self.ask_in_order(order, digests, members, deadline).await;
            if mine {
                self.peers.asked_for_own(asked, found.len());
            }
            for (j, data) in found {
                in_flight.arrived(&digests[j], data.data());
                rest.retain(|&k| k != j);
                out.push((j, Ok(Some(data))));
            }
        }
        if rest.is_empty() {
            return out;
        }
        let wanted: Vec<B3Digest> = rest.iter().map(|&j| digests[j]).collect();
        let mut fetching = in_flight.start(&wanted);
        let got = self.service.read_chunk_batch_verified(&wanted).await;
        let mut got = got.into_iter();
        for (j, d) in rest.into_iter().zip(&wanted) {
            let r = got
                .next()
                .unwrap_or_else(|| Err(Error::remote_msg("the service answered too few chunks")));
            if let Ok(Some(c)) = &r {
                self.peers.service_delivered(c.data().len());
                fetching.deliver(d, c.data());
            }
            out.push((j, r));
        }
        out
    }

    /// Ask `order`'s peers, one after another, for the `pending` entries
    /// of `digests` the earlier ones did not hold, until `deadline`; what
    /// they delivered (verified), by index.
    async fn ask_in_order(
        &self,
        order: Vec<Arc<Peer>>,
        digests: &[B3Digest],
        mut pending: Vec<usize>,
        deadline: Instant,
    ) -> Vec<(usize, VerifiedChunk)> {
        let config = self.peers.config();
        let mut out = Vec::new();
        for peer in order {
            if pending.is_empty() {
                break;
            }
            let wanted: Vec<B3Digest> = pending.iter().map(|&j| digests[j]).collect();
            peer.asking(wanted.len());
            let got = match tokio::time::timeout_at(deadline, ask_peer(&peer, &wanted)).await {
                Ok(got) => got,
                Err(_) => {
                    peer.failed(
                        config,
                        &Error::timeout("a chunk read from a peer", Some(config.timeout)),
                    );
                    break;
                }
            };
            let mut still = Vec::new();
            let (mut missed, mut lied) = (0, false);
            let mut failure: Option<Error> = None;
            for (j, r) in pending.iter().copied().zip(got) {
                match r {
                    Ok(Some(c)) => {
                        peer.delivered(c.data().len());
                        self.peers.peer_delivered(c.data().len());
                        out.push((j, c));
                    }
                    Ok(None) => {
                        missed += 1;
                        still.push(j);
                    }
                    Err(e @ Error::Integrity { .. }) => {
                        self.peers.lie();
                        peer.lied(config, &digests[j], &e);
                        lied = true;
                        still.push(j);
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                        still.push(j);
                    }
                }
            }
            peer.missed(missed);
            match (lied, failure) {
                (true, _) => {}
                (false, Some(e)) => peer.failed(config, &e),
                (false, None) => peer.answered(),
            }
            pending = still;
            if Instant::now() >= deadline {
                break;
            }
        }
        out
    }
}

/// How many chunks one request to a peer asks for at most: a peer's
/// server reads a batch's chunks a few at a time (8), and a chunk may keep
/// the reader waiting there (for a fetch on its way, or for the peer's own
/// reader); a piece that waits thus waits once, not once per few chunks.
const PIECE: usize = 8;

/// `wanted` from `peer`, in pieces of [`PIECE`] asked at the same time;
/// one entry per digest.
async fn ask_peer(peer: &Peer, wanted: &[B3Digest]) -> Vec<Result<Option<VerifiedChunk>>> {
    futures::future::join_all(
        wanted
            .chunks(PIECE)
            .map(|p| peer.blob.read_chunk_batch_verified(p)),
    )
    .await
    .into_iter()
    .flatten()
    .collect()
}

/// Whether two ask orders are the same peers in the same order.
fn same_order(a: &[Arc<Peer>], b: &[Arc<Peer>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
}

#[async_trait]
impl BlobService for PeerFirstBlobService {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        self.service.has(digest).await
    }

    /// From the service only: a peer's chunk list could not be checked
    /// until the whole blob had been read.
    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        self.service.chunks(digest).await
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        Ok(self
            .read_chunk_verified(digest)
            .await?
            .map(VerifiedChunk::into_data))
    }

    async fn read_chunk_verified(&self, digest: &B3Digest) -> Result<Option<VerifiedChunk>> {
        self.read(std::slice::from_ref(digest))
            .await
            .pop()
            .unwrap_or(Ok(None))
    }

    /// The peers first, the rest from the service; each entry answered on
    /// its own.
    async fn read_chunk_batch(&self, digests: &[B3Digest]) -> Vec<Result<Option<Bytes>>> {
        VerifiedChunk::batch_data(self.read(digests).await)
    }

    /// As `read_chunk_batch`, with each chunk's frame.
    async fn read_chunk_batch_verified(
        &self,
        digests: &[B3Digest],
    ) -> Vec<Result<Option<VerifiedChunk>>> {
        self.read(digests).await
    }

    /// A chunked blob is read through its chunk list (so each chunk may
    /// come from a peer); an unchunked one from the service.
    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        let Some(chunks) = self.service.chunks(digest).await? else {
            return Ok(None);
        };
        if !chunks.is_empty() {
            return open_read_via_chunks(Arc::new(self.clone()), *digest).await;
        }
        self.service.open_read(digest).await
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.service.open_write().await
    }
}
