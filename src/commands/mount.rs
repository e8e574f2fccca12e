//! `storefs mount`: the lazy mount of `--store`, in the foreground until
//! unmounted or signalled. A remote store is fronted by a local redb cache
//! (directories, path infos, chunk lists, chunks) that survives restarts; a
//! local store is mounted as it is.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use storefs_castore::{
    BlobService, CachedBlobService, CachedDirectoryService, DirectoryService, StoreUrl,
    open_castore,
};
use storefs_fuse::MountConfig;
use storefs_store::pathinfoservice::{CachedPathInfoService, PathInfoService, RedbPathInfoService};
use tokio_util::sync::CancellationToken;

use crate::cli::MountArgs;
use crate::commands::serve::{spawn_daemon, spawn_signal_handler};
use crate::services::{self, Globals, Services};

/// Mount, print one line when ready, and return once unmounted.
pub async fn run(globals: &Globals, args: &MountArgs) -> anyhow::Result<()> {
    let far = services::open(&globals.url, globals.token.clone()).await?;
    let services = match &globals.url {
        StoreUrl::Grpc { .. } => with_local_cache(far, args).await?,
        _ => far,
    };

    let mut config = MountConfig::new(&args.mountpoint);
    config.list_root = args.list_root;
    if let Some(t) = args.threads {
        config.threads = t.max(1);
    }
    config.timeout = Duration::from_secs(args.timeout.max(1));
    config.allow_other = args.allow_other;
    config.store_dir = globals.store_dir.as_str().to_owned();

    let runtime = tokio::runtime::Handle::current();
    let (blob, directory, path_info) = (
        services.blob.clone(),
        services.directory.clone(),
        services.path_info.clone(),
    );
    let handle = tokio::task::spawn_blocking(move || {
        storefs_fuse::mount(config, blob, directory, path_info, runtime)
    })
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
    // Unmounted (by a signal or by umount): stop the daemon socket too.
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    result.context("the mount")?;
    Ok(())
}

/// Front `far` with the local redb cache under `--cache` (default: the
/// data directory's `cache/`).
async fn with_local_cache(far: Services, args: &MountArgs) -> anyhow::Result<Services> {
    let dir = args
        .cache
        .clone()
        .unwrap_or_else(|| services::default_data_dir().join("cache"));
    let near = open_castore(&StoreUrl::Redb { dir: dir.clone() })
        .await
        .with_context(|| format!("opening the cache at {}", dir.display()))?;
    let redb = near
        .redb
        .as_ref()
        .context("the cache is a redb store")?
        .database()
        .clone();
    let near_infos = Arc::new(RedbPathInfoService::new(redb).await?);
    let blob: Arc<dyn BlobService> = Arc::new(CachedBlobService::new(near.blobs, far.blob));
    let directory: Arc<dyn DirectoryService> =
        Arc::new(CachedDirectoryService::new(near.directories, far.directory));
    let path_info: Arc<dyn PathInfoService> =
        Arc::new(CachedPathInfoService::new(near_infos, far.path_info));
    Ok(Services {
        blob,
        directory,
        path_info,
        nar_calculation: far.nar_calculation,
    })
}
