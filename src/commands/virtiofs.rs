//! `storefs virtiofs`: the lazy store served to virtual machines over
//! virtio-fs (a vhost-user-fs backend on `--socket`), in the foreground
//! until signalled. The store is opened as `storefs mount` opens it (the
//! same flags, the same local cache); guests are served one after another.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use storefs_fuse::StatsSnapshot;
use storefs_fuse::core::CoreConfig;
use storefs_virtiofs::{VirtiofsConfig, VirtiofsServer};
use tokio_util::sync::CancellationToken;

use crate::cli::VirtiofsArgs;
use crate::commands::serve::spawn_signal_handler;
use crate::services::Globals;

/// Serve, print one line when ready, and return when signalled (or, with
/// `--once`, when the guest goes away).
pub async fn run(globals: &Globals, args: &VirtiofsArgs) -> anyhow::Result<()> {
    let store = super::mount::open_lazy(globals, &args.lazy, false, None).await?;
    let mut core = CoreConfig::default();
    core.list_root = args.lazy.list_root;
    core.timeout = Duration::from_secs(args.lazy.timeout.max(1));
    core.blob_origin = store.blob_origin.clone();
    let mut config = VirtiofsConfig::new(&args.socket);
    config.core = core;
    config.once = args.once;

    let runtime = tokio::runtime::Handle::current();
    let server = VirtiofsServer::bind(&config, &store.services, runtime)?;
    let stats = server.stats();
    let stopper = server.stopper();
    let stats_file = args.stats_file.clone();

    // The guests are served on a thread of our own (not tokio's blocking
    // pool: a guest still connected at a signal must not hold up the exit).
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let session_file = stats_file.clone();
    std::thread::Builder::new()
        .name("storefs-virtiofs".to_owned())
        .spawn(move || {
            let r = server.run(|figures| {
                if let Some(path) = &session_file
                    && let Err(e) = write_stats(path, figures)
                {
                    tracing::warn!(error = %e, "cannot write the figures");
                }
            });
            let _ = done_tx.send(r);
        })
        .context("starting the virtio-fs thread")?;

    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone());
    println!(
        "storefs: serving {} over virtio-fs on {}",
        globals.url,
        args.socket.display()
    );
    std::io::stdout().flush().ok();

    let result = tokio::select! {
        r = done_rx => r.context("the virtio-fs thread ended without a word")?,
        () = stop.cancelled() => {
            // Accept no one else; a connected guest loses the device as
            // the process ends.
            stopper.stop();
            Ok(())
        }
    };
    // Exiting with a guest connected leaves the listener to the thread:
    // the socket goes here.
    match std::fs::remove_file(&args.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(error = %e, "cannot remove the socket"),
    }
    if let Some(cache) = store.cache {
        cache.finish().await?;
    }
    if let Some(path) = &stats_file {
        write_stats(path, &stats.snapshot())
            .with_context(|| format!("writing the figures to {}", path.display()))?;
    }
    result.context("serving virtio-fs")?;
    Ok(())
}

/// Replace `path` with the figures as JSON (written beside it, then
/// renamed: a reader never sees half a file).
fn write_stats(path: &Path, figures: &StatsSnapshot) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, figures.to_json())?;
    std::fs::rename(&tmp, path)
}
