//! A local redb cache in front of a remote store: what `mount` keeps
//! under `--cache`, and what `serve --near-cache` keeps in front of an
//! object store, so that a hot path costs no remote request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use storefs_castore::{
    BlobService, CacheStats, CachedBlobService, CachedDirectoryService, DirectoryService,
    FileCache, MOUNT_CACHE_REDB_CACHE_BYTES, RedbBlobService, RedbStore,
};
use storefs_store::{CachedPathInfoService, PathInfoService, RedbPathInfoService};

use crate::services::Services;

/// What [`front`] sets up.
pub struct NearCache {
    /// The services, cached.
    pub services: Services,
    /// What is still being written into the cache, to finish at exit.
    pub writes: CacheWrites,
    /// The blob cache's figures.
    pub stats: Arc<CacheStats>,
    /// The cache's own blob store (its quota's figures).
    pub blobs: Arc<RedbBlobService>,
    /// Whole-file copies for FUSE passthrough (`files/` beside the redb
    /// file), when asked for.
    pub files: Option<Arc<FileCache>>,
}

/// The local cache's writes: fills running behind readers, and the redb
/// file's last commits.
#[derive(Clone)]
pub struct CacheWrites {
    store: RedbStore,
    blobs: CachedBlobService,
}

impl CacheWrites {
    /// Let the fills still running behind readers end, then make the cache
    /// durable: what was fetched is there next time.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.blobs.flush().await;
        let store = self.store;
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .context("the cache flush task failed")?
            .context("flushing the cache")
    }
}

/// The share of the cache size the passthrough file copies may take (a
/// quarter); the chunk cache gets the rest, so both together stay within
/// the quota.
const FILE_CACHE_SHARE: u64 = 4;

/// How long `serve --near-cache` reuses an answer "this path is absent"
/// (docs/object-store.md): a burst of lookups of a missing path costs one
/// request, and a path uploaded through another replica shows within it.
pub const NEGATIVE_PATH_INFO_TTL: Duration = Duration::from_secs(1);

/// Front `far` with a redb cache in `dir`, bounded by `size` (e.g. `10G`;
/// default: a quarter of the free space there), and with `with_files` a
/// file cache for passthrough beside it within the same bound. Chunks and
/// chunk lists, directories and path infos are kept; concurrent misses of
/// one chunk share one fetch; a path info that is absent is kept for
/// `negative_ttl` (zero: asked again each time).
pub async fn front(
    far: Services,
    dir: &Path,
    size: Option<&str>,
    with_files: bool,
    negative_ttl: Duration,
) -> anyhow::Result<NearCache> {
    let open_dir = dir.to_owned();
    let store = tokio::task::spawn_blocking(move || {
        RedbStore::open_dir_with_cache(open_dir, MOUNT_CACHE_REDB_CACHE_BYTES)
    })
    .await
    .context("the cache task failed")?
    .with_context(|| format!("opening the cache at {}", dir.display()))?;
    let quota = match size {
        Some(s) => parse_size(s).with_context(|| format!("cache size {s}"))?,
        None => default_quota(dir),
    };
    let file_quota = if with_files {
        quota / FILE_CACHE_SHARE
    } else {
        0
    };
    let chunk_quota = quota - file_quota;
    tracing::info!(cache = %dir.display(), quota, file_quota, "local cache");
    let near_blobs = Arc::new(RedbBlobService::new(store.clone()).with_quota(chunk_quota));
    // The quota's figures start from what the cache already holds.
    near_blobs
        .quota_tracked_bytes()
        .await
        .context("reading the cache's size")?;
    let cached_blobs = CachedBlobService::new(near_blobs.clone(), far.blob);
    let files = if with_files {
        let files_dir = dir.join("files");
        let near: Arc<dyn BlobService> = near_blobs.clone();
        let open_dir = files_dir.clone();
        let files =
            tokio::task::spawn_blocking(move || FileCache::open(open_dir, near, file_quota))
                .await
                .context("the file cache task failed")?
                .with_context(|| format!("opening the file cache at {}", files_dir.display()))?;
        Some(Arc::new(files.waiting_for_fills(cached_blobs.clone())))
    } else {
        None
    };
    let near_dirs = Arc::new(store.directory_service());
    let near_infos = Arc::new(RedbPathInfoService::from_store(&store).await?);
    let stats = Arc::clone(cached_blobs.stats());
    let writes = CacheWrites {
        store,
        blobs: cached_blobs.clone(),
    };
    let blob: Arc<dyn BlobService> = Arc::new(cached_blobs);
    let directory: Arc<dyn DirectoryService> =
        Arc::new(CachedDirectoryService::new(near_dirs, far.directory));
    let path_info: Arc<dyn PathInfoService> = Arc::new(
        CachedPathInfoService::new(near_infos, far.path_info).with_negative_ttl(negative_ttl),
    );
    let services = Services {
        blob,
        directory,
        path_info,
        nar_calculation: far.nar_calculation,
    };
    Ok(NearCache {
        services,
        writes,
        stats,
        blobs: near_blobs,
        files,
    })
}

/// Parse a size: a number of bytes, optionally with a binary suffix
/// K, M, G or T (`10G` = 10 GiB); `iB`/`B` suffixes are accepted too.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("not a size (use e.g. 500M or 10G)"))?;
    n.checked_mul(1u64 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| anyhow::anyhow!("size out of range"))
}

/// Without `--cache-size`: a quarter of the space free where the cache
/// lives, at least 256 MiB (and 10 GiB if free space cannot be read).
fn default_quota(dir: &std::path::Path) -> u64 {
    const MIN: u64 = 256 << 20;
    match rustix::fs::statvfs(dir) {
        Ok(st) => (st.f_bavail.saturating_mul(st.f_frsize) / 4).max(MIN),
        Err(_) => 10 << 30,
    }
}
