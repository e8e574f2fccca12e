//! `storefs mount`: the lazy mount of `--store`, in the foreground until
//! unmounted or signalled. A remote store (gRPC, or an object store) is
//! fronted by a local redb cache
//! (directories, path infos, chunk lists, chunks) that survives restarts; a
//! local store is mounted as it is.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use storefs_castore::StoreUrl;
use storefs_fuse::{BlobOrigin, MountConfig, StatsSection};
use storefs_grpc::Replicas;
use tokio_util::sync::CancellationToken;

use crate::cli::MountArgs;
use crate::commands::serve::{spawn_daemon, spawn_signal_handler};
use crate::services::{self, Globals, OpenOptions, Services};

/// Mount, print one line when ready, and return once unmounted.
pub async fn run(globals: &Globals, args: &MountArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let opened = services::open_with(
        globals,
        OpenOptions {
            timeout: Some(timeout),
        },
    )
    .await?;
    let far = opened.services;
    let (services, cache, blob_origin, file_cache) = match &globals.url {
        StoreUrl::Grpc { .. } | StoreUrl::ObjectStore { .. } => {
            if matches!(globals.url, StoreUrl::Grpc { .. }) {
                super::mount_access::check(&globals.url, &far).await?;
            }
            let near = with_local_cache(far, args).await?;
            (
                near.services,
                Some(near.store),
                BlobOrigin::Cached(near.stats),
                near.files,
            )
        }
        _ => (far, None, BlobOrigin::Local, None),
    };

    let mut config = MountConfig::new(&args.mountpoint);
    config.list_root = args.list_root;
    if let Some(t) = args.threads {
        config.threads = t.max(1);
    }
    config.timeout = timeout;
    config.allow_other = args.allow_other;
    config.store_dir = globals.store_dir.as_str().to_owned();
    config.blob_origin = blob_origin;
    config.passthrough = !args.no_passthrough;
    config.file_cache = file_cache;
    config.stats_sections = opened.replicas.map(remotes_section).into_iter().collect();

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
        tokio::task::spawn_blocking(move || cache.flush())
            .await
            .context("the cache flush task failed")?
            .context("flushing the cache")?;
    }
    result.context("the mount")?;
    Ok(())
}

/// `remotes` in `user.storefs.stats`: one entry per replica of the gRPC
/// store, in the order given (docs/mount.md).
fn remotes_section(replicas: Replicas) -> StatsSection {
    StatsSection::new("remotes", move || {
        replicas
            .figures()
            .iter()
            .map(|f| {
                serde_json::json!({
                    "endpoint": f.endpoint,
                    "state": f.state(),
                    "requests": f.requests,
                    "failures": f.failures,
                    "bytes": f.bytes,
                    "consecutive_failures": f.consecutive_failures,
                    "shunned_for_ms": f.shunned_for_ms,
                })
            })
            .collect()
    })
}

/// Front `far` with the local redb cache under `--cache` (default: the
/// data directory's `cache/`), and the file cache for passthrough beside it.
async fn with_local_cache(
    far: Services,
    args: &MountArgs,
) -> anyhow::Result<super::near_cache::NearCache> {
    let dir = args
        .cache
        .clone()
        .unwrap_or_else(|| services::default_data_dir().join("cache"));
    // A path info found absent is asked again each time: a mount shows a
    // path uploaded elsewhere as soon as it is looked up.
    super::near_cache::front(
        far,
        &dir,
        args.cache_size.as_deref(),
        !args.no_passthrough,
        Duration::ZERO,
    )
    .await
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
