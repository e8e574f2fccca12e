//! One module per command; `run` builds the runtime and dispatches.

mod add;
mod gc;
mod guix;
mod import;
mod info;
mod mount;
mod mount_access;
mod nar;
mod near_cache;
mod peers;
mod prefetch;
mod serve;
mod startup;
mod status;
mod virtiofs;

use anyhow::{Context, anyhow, bail};
use storefs_store::PathInfo;
use storefs_store::StoreDir;

use crate::Failure;
use crate::cli::{Cli, Command};
use crate::services::{self, Globals, Services};

/// Most threads of tokio's blocking pool. Its default (512) lets a mount
/// under 64 concurrent readers grow past a hundred threads (each redb call
/// that finds no idle thread at once starts one), each with its stack.
/// Blocking work beyond this waits in tokio's queue; the long-lived
/// blocking tasks (the FUSE session, its waiter) are a handful, and redb
/// work is bounded below this anyway (`MAX_BLOCKING_REDB`).
const MAX_BLOCKING_THREADS: usize = 32;

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let globals = Globals::from_args(&cli.global).map_err(usage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(dispatch(cli.command, globals))?;
    Ok(())
}

async fn dispatch(command: Command, globals: Globals) -> Result<(), Failure> {
    let open = || services::open(&globals);
    let sd = &globals.store_dir;
    match command {
        Command::Add { name, paths } => {
            add::run(&open().await?, sd, name.as_deref(), &paths).await?
        }
        Command::Nar { path } => nar::run(&open().await?, sd, &path).await?,
        Command::Info { json, paths } => info::run(&open().await?, sd, json, &paths).await?,
        Command::Serve(args) if args.gc_interval.is_some() => {
            if args.near_cache.is_some() {
                return Err(usage(anyhow!(
                    "--gc-interval collects the embedded store; it cannot go with --near-cache"
                )));
            }
            let embedded = gc::open_embedded(&globals).await?;
            let services = embedded.services.clone();
            let stop = tokio_util::sync::CancellationToken::new();
            let interval = args.gc_interval.unwrap_or_default();
            let collector = tokio::spawn(gc::every(
                embedded,
                interval,
                args.gc_keep_since,
                stop.clone(),
            ));
            let served = serve::run(services, sd.clone(), &args).await;
            stop.cancel();
            collector.await.context("the gc task failed")?;
            served?
        }
        Command::Serve(args) => {
            let options = services::OpenOptions {
                timeout: Some(args.timeout),
            };
            let opened = services::open_with(&globals, options).await?;
            let _report = opened.object_requests.map(services::RequestReport);
            let far = opened.services;
            match &args.near_cache {
                Some(dir) => {
                    let size = args.near_cache_size.as_deref();
                    let ttl = near_cache::NEGATIVE_PATH_INFO_TTL;
                    let near = near_cache::front(far, dir, size, false, ttl).await?;
                    let served = serve::run(near.services, sd.clone(), &args).await;
                    near.writes.finish().await.context("the near cache")?;
                    served?
                }
                None => serve::run(far, sd.clone(), &args).await?,
            }
        }
        Command::Import {
            from,
            trusted_public_keys,
            no_check_sigs,
            authorized_keys,
            paths,
        } => {
            let args = import::ImportArgs {
                from,
                trusted_public_keys,
                no_check_sigs,
                authorized_keys,
                paths,
            };
            import::run(&open().await?, sd, args).await?
        }
        Command::Mount(args) => mount::run(&globals, &args).await?,
        Command::Virtiofs(args) => virtiofs::run(&globals, &args).await?,
        Command::GuixGenerateKey { dir } => guix::generate_key(&dir)?,
        Command::Delete { recursive, paths } => {
            gc::delete(&open().await?, sd, &paths, recursive).await?
        }
        Command::Gc {
            keep_since,
            dry_run,
            max_deletions,
            json,
        } => {
            let args = gc::GcArgs {
                keep_since,
                dry_run,
                max_deletions,
                json,
            };
            gc::gc(&globals, &args).await?
        }
        Command::Verify => gc::verify(&globals).await?,
        Command::Prefetch {
            mount,
            cache,
            cache_size,
            closure,
            paths,
        } => {
            let args = prefetch::PrefetchArgs {
                paths,
                mount,
                cache,
                cache_size,
                closure,
            };
            prefetch::run(open(), sd, &args).await?
        }
        Command::Status { json, mountpoints } => status::run(&mountpoints, json)?,
    }
    Ok(())
}

/// The path info of `path` (a full store path or a base name), or an error
/// that says it is not in the store.
pub async fn lookup(
    services: &Services,
    store_dir: &StoreDir,
    path: &str,
) -> anyhow::Result<PathInfo> {
    let sp = store_dir.parse_path(path)?;
    let info = services
        .path_info
        .get(*sp.digest())
        .await
        .with_context(|| format!("looking up {path}"))?
        .ok_or_else(|| anyhow!("{} is not in the store", sp.to_absolute(store_dir)))?;
    if info.store_path != sp {
        bail!(
            "{} is not in the store (its hash names {})",
            sp.to_absolute(store_dir),
            info.store_path.to_absolute(store_dir)
        );
    }
    Ok(info)
}

/// A usage error: exit 2.
fn usage(e: anyhow::Error) -> Failure {
    Failure {
        code: 2,
        message: crate::one_line(&e),
    }
}
