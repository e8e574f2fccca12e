//! `storefs mount`: the lazy mount of `--store`, in the foreground until
//! unmounted or signalled. A remote store (gRPC, or an object store) is
//! fronted by a local redb cache
//! (directories, path infos, chunk lists, chunks) that survives restarts; a
//! local store is mounted as it is.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use storefs_castore::{CacheStats, RedbBlobService, StoreUrl};
use storefs_fuse::{BlobOrigin, MountConfig};
use storefs_grpc::{PeerFirstBlobService, PeerSet, Replicas};
use tokio_util::sync::CancellationToken;

use crate::cli::{LazyStoreArgs, MountArgs};
use crate::commands::serve::{spawn_daemon, spawn_signal_handler};
use crate::metrics::{self, MountCollector, PeerCollector};
use crate::services::{self, Globals, OpenOptions, Services};

/// Mount, print one line when ready, and return once unmounted.
pub async fn run(globals: &Globals, args: &MountArgs) -> anyhow::Result<()> {
    let peering = super::peers::Peering::start(&args.peers).await?;
    let peer_set = peering.set.clone();
    let store = open_lazy(globals, &args.lazy, !args.no_passthrough, peer_set.clone()).await?;
    let (services, cache, blob_origin, file_cache, figures) = (
        store.services,
        store.cache,
        store.blob_origin,
        store.file_cache,
        store.figures,
    );
    let replicas = store.replicas;

    let mut config = MountConfig::new(&args.mountpoint);
    config.list_root = args.lazy.list_root;
    if let Some(t) = args.threads {
        config.threads = t.max(1);
    }
    config.timeout = Duration::from_secs(args.lazy.timeout.max(1));
    config.allow_other = args.allow_other;
    config.store_dir = globals.store_dir.as_str().to_owned();
    config.blob_origin = blob_origin;
    config.passthrough = !args.no_passthrough;
    config.max_inodes = args.max_inodes;
    config.file_cache = file_cache;

    // Demand is tracked (and recorded) only for what the mount asks.
    let prefetch_list = args
        .prefetch_list
        .as_deref()
        .map(super::prefetch::read_trace)
        .transpose()?;
    let demand = (args.record_trace.is_some() || prefetch_list.is_some())
        .then(|| super::prefetch::Demand::new(args.record_trace.is_some()));
    let runtime = tokio::runtime::Handle::current();
    let mount_services = match &demand {
        Some(d) => d.wrap(services.clone()),
        None => services.clone(),
    };
    let handle =
        tokio::task::spawn_blocking(move || storefs_fuse::mount(config, &mount_services, runtime))
            .await
            .context("the mount task failed")??;

    let progress = match (prefetch_list, &demand) {
        (Some(entries), Some(d)) => {
            let progress = Arc::new(super::prefetch::Progress::default());
            tokio::spawn(super::prefetch::replay(
                entries,
                services.clone(),
                Arc::clone(d),
                Arc::clone(&progress),
            ));
            Some(progress)
        }
        _ => None,
    };
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone());
    let mut tasks = tokio::task::JoinSet::new();
    // Peers are served the local cache itself, never the layer that fetches.
    let peer_cache = figures
        .as_ref()
        .map(|f| Arc::clone(&f.blobs) as Arc<dyn storefs_castore::BlobService>);
    let served = peering.run(peer_cache, &mut tasks, &stop)?;

    let mount_stats = handle.stats();
    mount_stats.set_extra(super::peers::extra(
        super::status::extra(
            globals.url.to_string(),
            figures
                .as_ref()
                .map(|f| (Arc::clone(&f.stats), Arc::clone(&f.blobs))),
            replicas.clone(),
            progress,
        ),
        peer_set.clone(),
        served.clone(),
    ));
    if let Some(addr) = &args.metrics {
        let mut registry = metrics::registry();
        registry.register_collector(Box::new(MountCollector {
            stats: mount_stats,
            cache: figures.as_ref().map(|f| Arc::clone(&f.stats)),
            cache_blobs: figures.as_ref().map(|f| Arc::clone(&f.blobs)),
            replicas: replicas.clone(),
        }));
        registry.register_collector(Box::new(PeerCollector {
            peers: peer_set.clone(),
            served: served.clone(),
        }));
        let server = metrics::serve(addr, registry, stop.clone()).await?;
        tasks.spawn(async move { server.await.context("the metrics task failed")? });
    }
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
        globals.display,
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
        cache.finish().await?;
    }
    if let (Some(file), Some(d)) = (&args.record_trace, &demand) {
        let n = d.write_trace(file)?;
        eprintln!("storefs: wrote {n} entries to {}", file.display());
    }
    super::peers::report(peer_set.as_ref(), served.as_deref());
    result.context("the mount")?;
    Ok(())
}

/// The store as `storefs mount` and `storefs virtiofs` serve it.
pub(super) struct LazyStore {
    /// The services to read through.
    pub(super) services: Services,
    /// The local cache's writes (a remote store only), to finish at exit.
    pub(super) cache: Option<super::near_cache::CacheWrites>,
    /// Where blobs come from, for the figures.
    pub(super) blob_origin: BlobOrigin,
    /// Whole-file copies for FUSE passthrough, if asked for and remote.
    pub(super) file_cache: Option<std::sync::Arc<storefs_castore::FileCache>>,
    /// The local cache's figures (a remote store only).
    pub(super) figures: Option<CacheFigures>,
    /// The replicas of a gRPC store, for their figures.
    pub(super) replicas: Option<Replicas>,
}

/// Open `--store` for a lazy filesystem: a remote store (gRPC, checked for
/// read access first, or an object store) behind the local cache of
/// `args` (with whole-file copies when `files`), chunks the cache misses
/// asked of `peers` first; a local store as it is.
pub(super) async fn open_lazy(
    globals: &Globals,
    args: &LazyStoreArgs,
    files: bool,
    peers: Option<PeerSet>,
) -> anyhow::Result<LazyStore> {
    let opened = services::open_with(
        globals,
        OpenOptions {
            timeout: Some(Duration::from_secs(args.timeout.max(1))),
        },
    )
    .await?;
    let (far, replicas) = (opened.services, opened.replicas);
    Ok(match &globals.url {
        StoreUrl::Grpc { .. } | StoreUrl::ObjectStore { .. } => {
            if matches!(globals.url, StoreUrl::Grpc { .. }) {
                super::mount_access::check(&globals.url, &far).await?;
            }
            // Only chunks come from peers, each checked against its
            // digest; path infos, directories and chunk lists from the
            // service.
            let far = match peers {
                Some(p) => Services {
                    blob: Arc::new(PeerFirstBlobService::new(p, far.blob.clone())),
                    ..far
                },
                None => far,
            };
            let near = with_local_cache(far, args, files).await?;
            let figures = CacheFigures {
                stats: Arc::clone(&near.stats),
                blobs: Arc::clone(&near.blobs),
            };
            LazyStore {
                services: near.services,
                cache: Some(near.writes),
                blob_origin: BlobOrigin::Cached(near.stats),
                file_cache: near.files,
                figures: Some(figures),
                replicas,
            }
        }
        _ if peers.is_some() => {
            anyhow::bail!(
                "--peer, --peers-file and --peer-listen need a remote --store (gRPC or an object store)"
            )
        }
        _ => LazyStore {
            services: far,
            cache: None,
            blob_origin: BlobOrigin::Local,
            file_cache: None,
            figures: None,
            replicas,
        },
    })
}

/// The local cache's figures, for metrics and `user.storefs.stats`.
pub(super) struct CacheFigures {
    stats: Arc<CacheStats>,
    blobs: Arc<RedbBlobService>,
}

/// Front `far` with the local redb cache under `--cache` (default: the
/// data directory's `cache/`), and with `files`, the file cache for
/// passthrough beside it.
async fn with_local_cache(
    far: Services,
    args: &LazyStoreArgs,
    files: bool,
) -> anyhow::Result<super::near_cache::NearCache> {
    let dir = args
        .cache
        .clone()
        .unwrap_or_else(|| services::default_data_dir().join("cache"));
    // A path info found absent is asked again each time: a mount shows a
    // path uploaded elsewhere as soon as it is looked up.
    super::near_cache::front(far, &dir, args.cache_size.as_deref(), files, Duration::ZERO).await
}

#[cfg(test)]
mod tests {
    use super::super::near_cache::parse_size;

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
