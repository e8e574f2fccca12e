//! [`PeerCollector`]: a mount's peer figures (docs/peers.md) as Prometheus
//! metrics, read at each scrape from the counters the peer layer and the
//! peer server keep anyway.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use storefs_grpc::{PeerFigures, PeerServerFigures, PeerSet};

use super::per_endpoint::{self, CounterFamily};

/// The peer figures of one mount.
pub struct PeerCollector {
    /// The peers it reads from (`--peer`, `--peers-file`), if any.
    pub peers: Option<PeerSet>,
    /// What it served to peers (`--peer-listen`), if it does.
    pub served: Option<Arc<PeerServerFigures>>,
}

impl std::fmt::Debug for PeerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCollector").finish_non_exhaustive()
    }
}

/// One unlabelled counter.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let m = ConstCounter::new(value);
    m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)
}

impl Collector for PeerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(set) = &self.peers {
            let f = set.figures();
            let totals = [
                (
                    "mount_peers_fetched_bytes",
                    "Bytes of chunks received from peers (verified)",
                    f.peer_bytes,
                ),
                (
                    "mount_peers_fetched_chunks",
                    "Chunks received from peers (verified)",
                    f.peer_chunks,
                ),
                (
                    "mount_peers_service_bytes",
                    "Bytes of chunks the service sent because no peer had them",
                    f.service_bytes,
                ),
                (
                    "mount_peers_service_chunks",
                    "Chunks the service sent because no peer had them",
                    f.service_chunks,
                ),
                (
                    "mount_peers_verification_failures",
                    "Chunks from peers that failed verification (dropped, read from the service)",
                    f.verification_failures,
                ),
            ];
            for (name, help, value) in totals {
                counter(&mut encoder, name, help, value)?;
            }
            encode_each(&f.peers, &mut encoder)?;
        }
        if let Some(s) = &self.served {
            let (chunks, bytes, misses) = s.snapshot();
            counter(
                &mut encoder,
                "mount_peer_served_bytes",
                "Bytes of chunks served to peers",
                bytes,
            )?;
            counter(
                &mut encoder,
                "mount_peer_served_chunks",
                "Chunks served to peers",
                chunks,
            )?;
            counter(
                &mut encoder,
                "mount_peer_served_misses",
                "Chunks peers asked for that the cache did not hold",
                misses,
            )?;
            let (awaited, in_vain) = s.lingered();
            counter(
                &mut encoder,
                "mount_peer_served_in_flight",
                "Chunks served to peers from this mount's fetches on their way (or just arrived)",
                s.joined(),
            )?;
            counter(
                &mut encoder,
                "mount_peer_served_awaited",
                "Chunks served to peers that waited for this mount's own reader to bring them in (the split)",
                awaited,
            )?;
            counter(
                &mut encoder,
                "mount_peer_waits_in_vain",
                "Peer reads that waited here for a chunk that did not come in time",
                in_vain,
            )?;
        }
        Ok(())
    }
}

/// One series per peer and figure, labelled with its endpoint.
fn encode_each(
    figures: &[PeerFigures],
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let counters: [CounterFamily<PeerFigures>; 5] = [
        (
            "mount_peer_fetched_bytes",
            "Bytes of chunks received from each peer (verified)",
            |f| f.bytes,
        ),
        (
            "mount_peer_fetched_chunks",
            "Chunks received from each peer (verified)",
            |f| f.chunks,
        ),
        (
            "mount_peer_misses",
            "Chunks each peer said it does not hold",
            |f| f.misses,
        ),
        (
            "mount_peer_failures",
            "Requests that failed on each peer (down, slow, broken)",
            |f| f.failures,
        ),
        (
            "mount_peer_verification_failures",
            "Chunks from each peer that failed verification",
            |f| f.verification_failures,
        ),
    ];
    per_endpoint::encode(
        encoder,
        figures,
        |f| f.endpoint.as_str(),
        &counters,
        (
            "mount_peer_up",
            "1 while a peer is asked, 0 while it is skipped (failed or distrusted)",
            |f| f.state == "healthy",
        ),
    )
}
