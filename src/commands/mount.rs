//! `storefs mount`: the lazy mount of `--store`, in the foreground until
//! unmounted or signalled. A remote store is fronted by a local redb cache
//! (directories, path infos, chunk lists, chunks) that survives restarts; a
//! local store is mounted as it is.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use storefs_castore::{
    BlobService, CacheStats, CachedBlobService, CachedDirectoryService, DirectoryService,
    FileCache, MOUNT_CACHE_REDB_CACHE_BYTES, RedbBlobService, RedbStore, StoreUrl,
};
use storefs_fuse::{BlobOrigin, MountConfig};
use storefs_store::pathinfoservice::{CachedPathInfoService, PathInfoService, RedbPathInfoService};
use tokio_util::sync::CancellationToken;

use crate::cli::MountArgs;
use crate::commands::serve::{spawn_daemon, spawn_signal_handler};
use crate::services::{self, Globals, Services};

/// Mount, print one line when ready, and return once unmounted.
pub async fn run(globals: &Globals, args: &MountArgs) -> anyhow::Result<()> {
    let far = services::open(&globals.url, globals.token.clone()).await?;
    let (services, cache, blob_origin, file_cache) = match &globals.url {
        StoreUrl::Grpc { .. } => {
            super::mount_access::check(&globals.url, &far).await?;
            let local = with_local_cache(far, args).await?;
            (
                local.services,
                Some(local.store),
                BlobOrigin::Cached(local.stats),
                local.files,
            )
        }
        _ => (far, None, BlobOrigin::Local, None),
    };

    let mut config = MountConfig::new(&args.mountpoint);
    config.list_root = args.list_root;
    if let Some(t) = args.threads {
        config.threads = t.max(1);
    }
    config.timeout = Duration::from_secs(args.timeout.max(1));
    config.allow_other = args.allow_other;
    config.store_dir = globals.store_dir.as_str().to_owned();
    config.blob_origin = blob_origin;
    config.passthrough = !args.no_passthrough;
    config.file_cache = file_cache;

    let runtime = tokio::runtime::Handle::current();
    let mount_services = services.clone();
    let handle =
        tokio::task::spawn_blocking(move || storefs_fuse::mount(config, &mount_services, runtime))
            .await
            .context("the mount task failed")??;

    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone());
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(path) = &args.daemon_socket {
        spawn_daemon(
            &mut tasks,
            &services,
            &globals.store_dir,
            path,
            &args.daemon_access,
            stop.clone(),
        )
        .await?;
    }
    let unmounter = handle.unmounter();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        on_signal.cancelled().await;
        let r = tokio::task::spawn_blocking(move || unmounter.unmount()).await;
        if let Ok(Err(e)) = r {
            eprintln!("storefs: {e}");
        }
    });

    println!(
        "storefs: mounted {} at {}",
        globals.url,
        args.mountpoint.display()
    );
    std::io::stdout().flush().ok();

    let result = tokio::task::spawn_blocking(move || handle.wait())
        .await
        .context("the mount task failed")?;
    // Unmounted (by a signal or by umount): stop the daemon socket too, and
    // make the cache's last fills durable.
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    if let Some(cache) = cache {
        tokio::task::spawn_blocking(move || cache.flush())
            .await
            .context("the cache flush task failed")?
            .context("flushing the cache")?;
    }
    result.context("the mount")?;
    Ok(())
}

/// What [`with_local_cache`] sets up.
struct LocalCache {
    /// The services, cached.
    services: Services,
    /// The cache's store, to flush at exit.
    store: RedbStore,
    /// The blob cache's figures.
    stats: Arc<CacheStats>,
    /// Whole-file copies for passthrough (`files/` beside the redb file),
    /// unless `--no-passthrough`.
    files: Option<Arc<FileCache>>,
}

/// The share of `--cache-size` the passthrough file copies may take (a
/// quarter); the chunk cache gets the rest, so both together stay within
/// the quota.
const FILE_CACHE_SHARE: u64 = 4;

/// Front `far` with the local redb cache under `--cache` (default: the
/// data directory's `cache/`), and the file cache for passthrough beside it.
async fn with_local_cache(far: Services, args: &MountArgs) -> anyhow::Result<LocalCache> {
    let dir = args
        .cache
        .clone()
        .unwrap_or_else(|| services::default_data_dir().join("cache"));
    let open_dir = dir.clone();
    let store = tokio::task::spawn_blocking(move || {
        RedbStore::open_dir_with_cache(open_dir, MOUNT_CACHE_REDB_CACHE_BYTES)
    })
    .await
    .context("the cache task failed")?
    .with_context(|| format!("opening the cache at {}", dir.display()))?;
    let quota = match &args.cache_size {
        Some(s) => parse_size(s).with_context(|| format!("--cache-size {s}"))?,
        None => default_quota(&dir),
    };
    let file_quota = if args.no_passthrough {
        0
    } else {
        quota / FILE_CACHE_SHARE
    };
    let chunk_quota = quota - file_quota;
    tracing::info!(cache = %dir.display(), quota, file_quota, "local cache");
    let near_blobs = Arc::new(RedbBlobService::new(store.clone()).with_quota(chunk_quota));
    let files = if args.no_passthrough {
        None
    } else {
        let files_dir = dir.join("files");
        let near: Arc<dyn BlobService> = near_blobs.clone();
        let open_dir = files_dir.clone();
        let files =
            tokio::task::spawn_blocking(move || FileCache::open(open_dir, near, file_quota))
                .await
                .context("the file cache task failed")?
                .with_context(|| format!("opening the file cache at {}", files_dir.display()))?;
        Some(Arc::new(files))
    };
    let near_dirs = Arc::new(store.directory_service());
    let near_infos = Arc::new(RedbPathInfoService::from_store(&store).await?);
    let cached_blobs = CachedBlobService::new(near_blobs, far.blob);
    let stats = Arc::clone(cached_blobs.stats());
    let blob: Arc<dyn BlobService> = Arc::new(cached_blobs);
    let directory: Arc<dyn DirectoryService> =
        Arc::new(CachedDirectoryService::new(near_dirs, far.directory));
    let path_info: Arc<dyn PathInfoService> =
        Arc::new(CachedPathInfoService::new(near_infos, far.path_info));
    let services = Services {
        blob,
        directory,
        path_info,
        nar_calculation: far.nar_calculation,
    };
    Ok(LocalCache {
        services,
        store,
        stats,
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

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
        for bad in ["", "G", "ten", "-1G", "0", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
