//! [`MountCollector`]: a mount's figures as Prometheus metrics, read at
//! each scrape from the counters the mount keeps anyway (the same ones
//! `user.storefs.stats` shows), so that no filesystem operation pays for
//! being measured twice.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use storefs_castore::{CacheStats, RedbBlobService};
use storefs_fuse::MountStats;
use storefs_grpc::{RemoteFigures, Replicas};

use super::per_endpoint::{self, CounterFamily};

/// The figures of one mount, for a [`prometheus_client::registry::Registry`].
pub struct MountCollector {
    /// The mount's own counters.
    pub stats: Arc<MountStats>,
    /// The local disk cache's counters, when there is one.
    pub cache: Option<Arc<CacheStats>>,
    /// The local disk cache's blob store, for its quota and evictions.
    pub cache_blobs: Option<Arc<RedbBlobService>>,
    /// The replicas of a gRPC store: one series each, labelled `endpoint`.
    pub replicas: Option<Replicas>,
}

impl std::fmt::Debug for MountCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountCollector").finish_non_exhaustive()
    }
}

/// A metric's kind.
enum Kind {
    Counter,
    Gauge,
}

impl Collector for MountCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, kind, value) in self.figures() {
            match kind {
                Kind::Counter => {
                    let m = ConstCounter::new(value);
                    m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
                }
                Kind::Gauge => {
                    let m = ConstGauge::new(value);
                    m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
                }
            }
        }
        if let Some(replicas) = &self.replicas {
            encode_replicas(&replicas.figures(), &mut encoder)?;
        }
        Ok(())
    }
}

/// One series per replica and figure, labelled with its endpoint.
fn encode_replicas(
    figures: &[RemoteFigures],
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let counters: [CounterFamily<RemoteFigures>; 3] = [
        (
            "mount_replica_requests",
            "Requests sent to each replica of the remote store",
            |f| f.requests,
        ),
        (
            "mount_replica_failures",
            "Requests that failed on each replica (and were tried on the next)",
            |f| f.failures,
        ),
        (
            "mount_replica_fetched_bytes",
            "Bytes of chunks received from each replica",
            |f| f.bytes,
        ),
    ];
    per_endpoint::encode(
        encoder,
        figures,
        |f| f.endpoint.as_str(),
        &counters,
        (
            "mount_replica_up",
            "1 while a replica is used, 0 while it is skipped after failing",
            |f| !f.shunned,
        ),
    )
}

impl MountCollector {
    /// Every figure: name (after `storefs_`), help, kind, value.
    fn figures(&self) -> Vec<(&'static str, &'static str, Kind, u64)> {
        use Kind::{Counter, Gauge};
        let s = self.stats.snapshot();
        let mut out = vec![
            (
                "mount_fetched_bytes",
                "Bytes of chunks received from the remote",
                Counter,
                s.bytes_fetched,
            ),
            (
                "mount_fetched_chunks",
                "Chunks received from the remote (local disk cache misses)",
                Counter,
                s.chunks_fetched,
            ),
            (
                "mount_cache_hit_bytes",
                "Bytes of chunks served by the local disk cache",
                Counter,
                s.cache_hit_bytes,
            ),
            (
                "mount_cache_hit_chunks",
                "Chunks served by the local disk cache",
                Counter,
                s.cache_hit_chunks,
            ),
            (
                "mount_read_bytes",
                "Bytes of chunks the mount read from its blob service (remote, disk cache or local store)",
                Counter,
                s.blob_bytes_read,
            ),
            (
                "mount_cache_lookups",
                "Chunks looked up in the disk cache",
                Counter,
                s.cache_lookups,
            ),
            (
                "mount_memory_cache_hits",
                "Chunk reads served by the in-memory chunk cache",
                Counter,
                s.chunk_cache_hits,
            ),
            (
                "mount_memory_cache_misses",
                "Chunk reads that had to ask the blob service",
                Counter,
                s.chunk_cache_misses,
            ),
            (
                "mount_memory_cache_bytes",
                "Bytes held in the in-memory chunk cache",
                Gauge,
                s.chunk_cache_bytes,
            ),
            (
                "mount_readahead_chunks",
                "Chunks fetched ahead of sequential readers",
                Counter,
                s.readahead_chunks,
            ),
            (
                "mount_batched_chunks",
                "Chunks asked for in batched requests",
                Counter,
                s.batched_chunks,
            ),
            (
                "mount_directories_fetched",
                "Directories asked of the directory service one by one",
                Counter,
                s.directories_fetched,
            ),
            (
                "mount_closures_fetched",
                "Recursive directory fetches (one per store path, on first lookup)",
                Counter,
                s.closures_fetched,
            ),
            (
                "mount_path_infos_fetched",
                "Path infos asked of the path info service",
                Counter,
                s.path_infos_fetched,
            ),
            (
                "mount_lookups",
                "Lookups the kernel asked of the mount",
                Counter,
                s.lookups,
            ),
            (
                "mount_opens",
                "File opens the kernel asked of the mount",
                Counter,
                s.opens,
            ),
            (
                "mount_reads",
                "Reads the kernel asked of the mount",
                Counter,
                s.reads,
            ),
            (
                "mount_releases",
                "Releases the kernel sent",
                Counter,
                s.releases,
            ),
            (
                "mount_flushes",
                "Flushes the kernel sent",
                Counter,
                s.flushes,
            ),
            (
                "mount_getattrs",
                "Attribute requests the kernel sent",
                Counter,
                s.getattrs,
            ),
            (
                "mount_listings",
                "Directory listings (readdir, readdirplus) the kernel asked for",
                Counter,
                s.listings,
            ),
            (
                "mount_ops_waited",
                "Operations that could not be answered at once and waited for a fetch",
                Counter,
                s.ops_waited,
            ),
            (
                "mount_timeouts",
                "Operations that hit the timeout and answered EIO",
                Counter,
                s.timeouts,
            ),
            (
                "mount_errors",
                "Operations that failed with an I/O error (timeouts included)",
                Counter,
                s.errors,
            ),
            ("mount_inodes", "Inodes held now", Gauge, s.inodes),
            ("mount_open_files", "Files open now", Gauge, s.open_files),
            (
                "mount_passthrough_opens",
                "Opens answered with FUSE passthrough",
                Counter,
                s.passthrough_opens,
            ),
            (
                "mount_file_cache_files",
                "Files held in the passthrough file cache",
                Gauge,
                s.file_cache_files,
            ),
            (
                "mount_file_cache_bytes",
                "Bytes of the files held in the passthrough file cache",
                Gauge,
                s.file_cache_bytes,
            ),
            (
                "mount_cache_fill_failures",
                "Writes into the local disk cache that failed",
                Counter,
                s.cache_fill_failures,
            ),
            (
                "mount_cache_filling_paused",
                "1 while filling the local disk cache is paused after a failure",
                Gauge,
                s.cache_filling_paused,
            ),
        ];
        if let Some(cache) = &self.cache {
            let c = cache.snapshot();
            out.extend([
                (
                    "mount_remote_fetches_in_flight",
                    "Requests to the remote in progress",
                    Gauge,
                    c.far_in_flight,
                ),
                (
                    "mount_remote_errors",
                    "Requests to the remote that failed or were given up",
                    Counter,
                    c.far_errors,
                ),
                (
                    "mount_remote_last_success_timestamp_seconds",
                    "When a request to the remote last succeeded (Unix time; 0: never)",
                    Gauge,
                    c.far_last_ok,
                ),
                (
                    "mount_remote_last_error_timestamp_seconds",
                    "When a request to the remote last failed (Unix time; 0: never)",
                    Gauge,
                    c.far_last_error,
                ),
                (
                    "mount_remote_up",
                    "1 unless the last request to the remote failed",
                    Gauge,
                    u64::from(c.far_last_error == 0 || c.far_last_ok >= c.far_last_error),
                ),
            ]);
        }
        if let Some(q) = self.cache_blobs.as_ref().and_then(|b| b.quota_figures()) {
            out.extend([
                (
                    "mount_cache_quota_bytes",
                    "Size quota of the local disk cache's chunks",
                    Gauge,
                    q.max_bytes,
                ),
                (
                    "mount_cache_used_bytes",
                    "Bytes of chunks the local disk cache holds, as charged against its quota",
                    Gauge,
                    q.used_bytes,
                ),
                (
                    "mount_cache_evictions",
                    "Chunks evicted from the local disk cache to stay within its quota",
                    Counter,
                    q.evicted_chunks,
                ),
                (
                    "mount_cache_evicted_bytes",
                    "Bytes (as charged) of the chunks evicted from the local disk cache",
                    Counter,
                    q.evicted_bytes,
                ),
            ]);
        }
        out
    }
}
