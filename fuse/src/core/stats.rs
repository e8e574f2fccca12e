//! The mount's figures: what was fetched from the remote, what the local
//! disk cache and the in-memory caches served.
//!
//! `bytes_fetched` means bytes received from a remote service, nothing
//! else. Where the mount's blob service is a local cache in front of a
//! remote ([`BlobOrigin::Cached`]), the cache tells which chunks came from
//! where; a mount of a local store fetches nothing. What the mount read
//! from its blob service, wherever from, is `blob_bytes_read`.
//!
//! Counters are relaxed atomics: they are read for reporting only, never to
//! decide anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use storefs_castore::CacheStats;

/// Where the mount's blob service gets its bytes, so that its figures can
/// say what crossed to a remote.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum BlobOrigin {
    /// The blob service is remote: all it returns was fetched.
    #[default]
    Remote,
    /// The blob service is a local store: nothing is fetched.
    Local,
    /// A local cache in front of a remote: its figures say what was
    /// fetched and what came from the disk cache.
    Cached(Arc<CacheStats>),
}

/// Figures the mount's owner adds to `user.storefs.stats` (the cache's
/// quota, the remote's health, the slowest recent fetches): called at each
/// read of the xattr, its keys merged into the JSON object.
pub type ExtraStats = Arc<dyn Fn() -> serde_json::Map<String, serde_json::Value> + Send + Sync>;

/// Live counters of one mount. Shared by every part of the filesystem; read
/// them with [`MountStats::snapshot`].
#[derive(Default)]
pub struct MountStats {
    /// Where blob bytes come from (for `bytes_fetched`).
    origin: BlobOrigin,
    /// What the owner adds to the xattr ([`MountStats::set_extra`]).
    extra: std::sync::OnceLock<ExtraStats>,
    /// Bytes of chunks (and streamed blobs) the mount read from its blob
    /// service, from a remote or not.
    pub(crate) bytes_fetched: AtomicU64,
    /// Chunks the mount read from its blob service.
    pub(crate) chunks_fetched: AtomicU64,
    pub(crate) chunk_cache_hits: AtomicU64,
    pub(crate) chunk_cache_misses: AtomicU64,
    pub(crate) chunk_cache_bytes: AtomicU64,
    pub(crate) chunk_list_hits: AtomicU64,
    pub(crate) chunk_list_misses: AtomicU64,
    pub(crate) readahead_chunks: AtomicU64,
    pub(crate) directories_ahead: AtomicU64,
    pub(crate) batched_chunks: AtomicU64,
    pub(crate) streamed_bytes: AtomicU64,
    pub(crate) directories_fetched: AtomicU64,
    pub(crate) closures_fetched: AtomicU64,
    pub(crate) path_infos_fetched: AtomicU64,
    pub(crate) inodes: AtomicU64,
    pub(crate) kernel_entries_dropped: AtomicU64,
    pub(crate) open_files: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) lookups: AtomicU64,
    pub(crate) opens: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) releases: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) getattrs: AtomicU64,
    pub(crate) listings: AtomicU64,
    pub(crate) opens_waited: AtomicU64,
    pub(crate) reads_waited: AtomicU64,
    pub(crate) ops_waited: AtomicU64,
    pub(crate) passthrough_opens: AtomicU64,
    pub(crate) passthrough_fallbacks: AtomicU64,
    pub(crate) files_materialised: AtomicU64,
    pub(crate) file_cache_files: AtomicU64,
    pub(crate) file_cache_bytes: AtomicU64,
}

/// The counters at one moment, as plain numbers (and as the JSON the
/// `user.storefs.stats` xattr of the mount's root returns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Bytes of chunks (and streamed blobs) received from a remote service.
    pub bytes_fetched: u64,
    /// Chunks received from a remote service (whole small blobs count as
    /// one).
    pub chunks_fetched: u64,
    /// Bytes of chunks served by the local disk cache (0 without one).
    pub cache_hit_bytes: u64,
    /// Chunks served by the local disk cache.
    pub cache_hit_chunks: u64,
    /// Chunks looked up in the local disk cache, found or not (about one
    /// per chunk read through it).
    pub cache_lookups: u64,
    /// Bytes of chunks the mount read from its blob service: fetched from
    /// a remote, from the local disk cache, or from a local store.
    pub blob_bytes_read: u64,
    /// Chunks the mount read from its blob service.
    pub blob_chunks_read: u64,
    /// Writes into the local disk cache that failed (a full disk).
    pub cache_fill_failures: u64,
    /// Fetched chunks not kept because filling the cache was paused.
    pub cache_fills_skipped: u64,
    /// 1 while filling the disk cache is paused after a failure.
    pub cache_filling_paused: u64,
    /// Times the disk cache was reopened after a failed write.
    pub cache_recoveries: u64,
    /// Chunk reads served by the in-memory chunk cache.
    pub chunk_cache_hits: u64,
    /// Chunk reads that had to ask the blob service (or join a fetch in flight).
    pub chunk_cache_misses: u64,
    /// Bytes held in the in-memory chunk cache now.
    pub chunk_cache_bytes: u64,
    /// Opens whose chunk list was already in memory.
    pub chunk_list_hits: u64,
    /// Opens that asked the blob service for the chunk list.
    pub chunk_list_misses: u64,
    /// Chunks fetched ahead of a sequential reader.
    pub readahead_chunks: u64,
    /// Directories whose first small files a walk asked for before
    /// reaching them.
    pub directories_ahead: u64,
    /// Chunks asked for in batched requests (many chunks in one call).
    pub batched_chunks: u64,
    /// Bytes read through the streaming fallback for large unchunked blobs.
    pub streamed_bytes: u64,
    /// Directories asked of the directory service one by one.
    pub directories_fetched: u64,
    /// Recursive directory fetches (one per store path, on first lookup).
    pub closures_fetched: u64,
    /// Path infos asked of the path info service.
    pub path_infos_fetched: u64,
    /// Inodes held now (the root included).
    pub inodes: u64,
    /// Directory entries the mount asked the kernel to drop, to keep its
    /// inodes within their bound (`--max-inodes`).
    pub kernel_entries_dropped: u64,
    /// Files open now.
    pub open_files: u64,
    /// Operations that hit the timeout and answered EIO.
    pub timeouts: u64,
    /// Operations that failed with an I/O error (timeouts included).
    pub errors: u64,
    /// Lookups the kernel asked of the mount (names it had not cached).
    pub lookups: u64,
    /// File opens the kernel asked of the mount (none once it opens files
    /// on its own, see `FUSE_NO_OPEN_SUPPORT` in docs/mount.md).
    pub opens: u64,
    /// Reads the kernel asked of the mount.
    pub reads: u64,
    /// Releases (last close of an open file) the kernel sent.
    pub releases: u64,
    /// Flushes (every close) the kernel sent: one at most, answered so
    /// that it sends no more.
    pub flushes: u64,
    /// Attribute requests the kernel sent (it caches attributes, so these
    /// are rare).
    pub getattrs: u64,
    /// Directory listing requests (readdir and readdirplus) the kernel sent.
    pub listings: u64,
    /// Opens that could not be answered at once on the transport's thread
    /// (they waited for a fetch: a chunk, a chunk list).
    pub opens_waited: u64,
    /// Reads that could not be answered at once (they waited for chunks).
    pub reads_waited: u64,
    /// Operations of any kind that could not be answered at once and went
    /// to a task on the runtime.
    pub ops_waited: u64,
    /// Opens answered with FUSE passthrough: the kernel reads the file
    /// from its local copy in the file cache, without asking the mount.
    pub passthrough_opens: u64,
    /// Times the kernel refused a backing file, which turned passthrough
    /// off for the rest of the mount (0 or 1).
    pub passthrough_fallbacks: u64,
    /// Files written into the file cache (for passthrough) by this mount.
    pub files_materialised: u64,
    /// Files held in the file cache now.
    pub file_cache_files: u64,
    /// Bytes of the files held in the file cache now.
    pub file_cache_bytes: u64,
}

impl std::fmt::Debug for MountStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountStats")
            .field("snapshot", &self.snapshot())
            .finish_non_exhaustive()
    }
}

impl MountStats {
    /// One directory entry asked of the kernel to drop (the inode bound).
    pub(crate) fn count_entry_dropped(&self) {
        add(&self.kernel_entries_dropped, 1);
    }

    /// One flush the kernel sent (the FUSE adapter answers it).
    pub(crate) fn count_flush(&self) {
        add(&self.flushes, 1);
    }

    /// Add figures of the owner's to what `user.storefs.stats` shows
    /// (once: a second call is ignored).
    pub fn set_extra(&self, extra: ExtraStats) {
        let _ = self.extra.set(extra);
    }

    /// The JSON `user.storefs.stats` returns: the snapshot, and the
    /// owner's figures beside it.
    pub fn to_json(&self) -> String {
        let snap = self.snapshot();
        let Some(extra) = self.extra.get() else {
            return snap.to_json();
        };
        let mut obj = match serde_json::to_value(snap) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        obj.extend(extra());
        serde_json::Value::Object(obj).to_string()
    }

    /// Counters for a mount whose blob service gets its bytes from
    /// `origin`.
    pub fn new(origin: BlobOrigin) -> Self {
        Self {
            origin,
            ..Self::default()
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (blob_bytes_read, blob_chunks_read) =
            (get(&self.bytes_fetched), get(&self.chunks_fetched));
        let mut snap = StatsSnapshot {
            blob_bytes_read,
            blob_chunks_read,
            chunk_cache_hits: get(&self.chunk_cache_hits),
            chunk_cache_misses: get(&self.chunk_cache_misses),
            chunk_cache_bytes: get(&self.chunk_cache_bytes),
            chunk_list_hits: get(&self.chunk_list_hits),
            chunk_list_misses: get(&self.chunk_list_misses),
            readahead_chunks: get(&self.readahead_chunks),
            directories_ahead: get(&self.directories_ahead),
            batched_chunks: get(&self.batched_chunks),
            streamed_bytes: get(&self.streamed_bytes),
            directories_fetched: get(&self.directories_fetched),
            closures_fetched: get(&self.closures_fetched),
            path_infos_fetched: get(&self.path_infos_fetched),
            inodes: get(&self.inodes),
            kernel_entries_dropped: get(&self.kernel_entries_dropped),
            open_files: get(&self.open_files),
            timeouts: get(&self.timeouts),
            errors: get(&self.errors),
            lookups: get(&self.lookups),
            opens: get(&self.opens),
            reads: get(&self.reads),
            releases: get(&self.releases),
            flushes: get(&self.flushes),
            getattrs: get(&self.getattrs),
            listings: get(&self.listings),
            opens_waited: get(&self.opens_waited),
            reads_waited: get(&self.reads_waited),
            ops_waited: get(&self.ops_waited),
            passthrough_opens: get(&self.passthrough_opens),
            passthrough_fallbacks: get(&self.passthrough_fallbacks),
            files_materialised: get(&self.files_materialised),
            file_cache_files: get(&self.file_cache_files),
            file_cache_bytes: get(&self.file_cache_bytes),
            ..StatsSnapshot::default()
        };
        match &self.origin {
            BlobOrigin::Remote => {
                snap.bytes_fetched = blob_bytes_read;
                snap.chunks_fetched = blob_chunks_read;
            }
            BlobOrigin::Local => {}
            BlobOrigin::Cached(cache) => {
                let c = cache.snapshot();
                snap.bytes_fetched = c.far_bytes;
                snap.chunks_fetched = c.far_chunks;
                snap.cache_hit_bytes = c.near_bytes;
                snap.cache_hit_chunks = c.near_chunks;
                snap.cache_lookups = c.near_lookups;
                snap.cache_fill_failures = c.fill_failures;
                snap.cache_fills_skipped = c.fills_skipped;
                snap.cache_filling_paused = c.filling_paused;
                snap.cache_recoveries = c.near_recoveries;
            }
        }
        snap
    }
}

/// Add `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Set a gauge.
pub(crate) fn set(gauge: &AtomicU64, n: u64) {
    gauge.store(n, Ordering::Relaxed);
}

impl StatsSnapshot {
    /// One line of JSON, the form `user.storefs.stats` returns.
    pub fn to_json(&self) -> String {
        // Serialising a struct of u64s cannot fail; fall back to an empty
        // object rather than panic should serde ever say otherwise.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reads_the_counters_and_renders_json() {
        let s = MountStats::default();
        add(&s.bytes_fetched, 4096);
        add(&s.chunks_fetched, 2);
        set(&s.inodes, 5);
        let snap = s.snapshot();
        assert_eq!(snap.bytes_fetched, 4096);
        assert_eq!(snap.chunks_fetched, 2);
        assert_eq!(snap.blob_bytes_read, 4096);
        assert_eq!(snap.inodes, 5);
        let v: serde_json::Value = serde_json::from_str(&snap.to_json()).unwrap();
        assert_eq!(v["bytes_fetched"], 4096);
        assert_eq!(v["inodes"], 5);
    }

    #[test]
    fn the_owner_s_figures_join_the_json() {
        let s = MountStats::default();
        add(&s.bytes_fetched, 7);
        s.set_extra(Arc::new(|| {
            let mut m = serde_json::Map::new();
            m.insert("remote".into(), "grpc://h:1".into());
            m
        }));
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["remote"], "grpc://h:1");
        assert_eq!(v["bytes_fetched"], 7);
    }

    #[test]
    fn a_local_store_fetches_nothing() {
        let s = MountStats::new(BlobOrigin::Local);
        add(&s.bytes_fetched, 4096);
        let snap = s.snapshot();
        assert_eq!((snap.bytes_fetched, snap.blob_bytes_read), (0, 4096));
    }
}
