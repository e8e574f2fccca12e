//! `storefs delete PATH…`, `storefs gc` and `storefs verify`: removing
//! path infos, then the directories, blobs and chunks no remaining path
//! info reaches, and checking that every path info's closure is whole.
//!
//! The roots are the store's path infos. `gc` marks what they reach and
//! sweeps the rest that is older than the grace period
//! (`--keep-since`), directories before the chunk lists and chunks they
//! name, in small transactions: an interrupted run leaves every kept path
//! whole, and the next run finishes (castore's `gc` module has the
//! details). It runs on the embedded store (`redb://`), in the process
//! that owns it (another process holding the file is refused; `serve
//! --gc-interval` collects while serving), and on object stores (`s3://`,
//! `file://`), beside the replicas serving them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use futures::TryStreamExt;
use storefs_castore::objectstore::{
    ObjectCastore, ObjectStoreLocation, ObjectStoreOptions, open_object_store,
};
use storefs_castore::{GcOptions, GcReport, Node, RedbStore, StoreUrl, open_castore};
use storefs_store::{ObjectStorePathInfoService, PathInfoService, RedbPathInfoService};
use storefs_store::{StoreDir, StorePath};
use tokio_util::sync::CancellationToken;

use crate::services::{Globals, Services};

/// `storefs gc`'s flags, checked.
pub struct GcArgs {
    /// Keep records written (or reused by a writer) more recently.
    pub keep_since: Duration,
    /// Count, delete nothing.
    pub dry_run: bool,
    /// Stop after this many deletions (the rest on the next run).
    pub max_deletions: Option<u64>,
    /// Print the report as JSON.
    pub json: bool,
}

/// The embedded store the global flags name, with its services.
pub struct Embedded {
    /// Its database.
    pub store: RedbStore,
    /// Its path infos (the roots).
    pub infos: Arc<RedbPathInfoService>,
    /// Its services, over the same database.
    pub services: Services,
}

/// Open the embedded store the global flags name (only `redb://`).
pub async fn open_embedded(globals: &Globals) -> anyhow::Result<Embedded> {
    if !matches!(globals.url, StoreUrl::Redb { .. }) {
        bail!(
            "garbage collection works on the embedded store (redb://…) and object stores \
             (s3://, file://), not {}; run it where the store lives",
            globals.url
        );
    }
    let local = open_castore(&globals.url).await?;
    let store = local
        .redb
        .context("the embedded store has no database handle")?;
    let infos = Arc::new(
        RedbPathInfoService::from_store(&store)
            .await
            .context("opening the path info table")?,
    );
    let services = Services::new(local.blobs, local.directories, infos.clone());
    Ok(Embedded {
        store,
        infos,
        services,
    })
}

/// The root nodes of every path info.
async fn roots(infos: &dyn PathInfoService) -> anyhow::Result<Vec<Node>> {
    let all: Vec<_> = infos
        .list()
        .try_collect()
        .await
        .context("listing the path infos")?;
    Ok(all.into_iter().map(|i| i.node).collect())
}

/// One collection: list the roots, mark, sweep. Returns the report and
/// the records kept paths need that are missing (a damaged store).
pub async fn collect(
    store: &RedbStore,
    infos: &dyn PathInfoService,
    options: GcOptions,
) -> anyhow::Result<(GcReport, Vec<String>)> {
    // Before the roots are listed: whatever is written from now on is kept.
    let started = SystemTime::now();
    let roots = roots(infos).await?;
    let marking = store.clone();
    let mut mark = tokio::task::spawn_blocking(move || marking.gc_mark(&roots, started))
        .await
        .context("the mark task failed")??;
    let missing = std::mem::take(&mut mark.missing);
    let sweeping = store.clone();
    let report = tokio::task::spawn_blocking(move || sweeping.gc_sweep(&mark, &options))
        .await
        .context("the sweep task failed")??;
    Ok((report, missing))
}

/// Collect every `interval` until `stop` (`serve --gc-interval`), logging
/// what each run freed.
pub async fn every(
    embedded: Embedded,
    interval: Duration,
    keep_since: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let mut options = GcOptions::default();
        options.grace = keep_since;
        match collect(&embedded.store, embedded.infos.as_ref(), options).await {
            Ok((report, missing)) => {
                if !missing.is_empty() {
                    tracing::warn!(missing = missing.len(), first = %missing[0], "gc: kept paths miss records");
                }
                tracing::info!(
                    deleted = report.deleted(),
                    bytes = report.bytes(),
                    young =
                        report.directories.young + report.chunk_lists.young + report.chunks.young,
                    "gc run"
                );
            }
            Err(e) => tracing::warn!(error = %crate::one_line(&e), "gc run failed"),
        }
    }
}

/// An object store (`s3://`, `file://`) the global flags name, with its
/// path infos.
async fn open_objects(
    globals: &Globals,
) -> anyhow::Result<Option<(ObjectCastore, ObjectStorePathInfoService)>> {
    let StoreUrl::ObjectStore { location } = &globals.url else {
        return Ok(None);
    };
    let mut options = ObjectStoreOptions::default();
    if matches!(location, ObjectStoreLocation::S3 { .. }) {
        options.credentials =
            crate::services::s3_credentials(globals.s3_credentials_file.as_deref())?;
    }
    let objects = open_object_store(location, &options).await?;
    let infos = ObjectStorePathInfoService::new(objects.bucket.clone());
    Ok(Some((objects, infos)))
}

/// `storefs gc` on an object store.
async fn gc_objects(
    objects: &ObjectCastore,
    infos: &ObjectStorePathInfoService,
    args: &GcArgs,
) -> anyhow::Result<()> {
    let started = SystemTime::now();
    let roots = roots(infos).await?;
    let mark = objects.gc_mark(&roots, started).await?;
    for m in mark.mark.missing.iter().take(10) {
        eprintln!("storefs: warning: a kept path needs {m}, which is not in the store");
    }
    let mut options = GcOptions::default();
    options.grace = args.keep_since;
    options.dry_run = args.dry_run;
    options.max_deletions = args.max_deletions;
    let report = objects.gc_sweep(&mark, &options).await?;
    if args.json {
        println!("{}", report_json(&report, 0, 0, false));
    } else {
        let text = report_text(&report, args.keep_since, 0, 0);
        // An object store has no file to shrink.
        for line in text.lines().filter(|l| !l.starts_with("store file:")) {
            println!("{line}");
        }
    }
    Ok(())
}

/// Run `storefs gc`.
pub async fn gc(globals: &Globals, args: &GcArgs) -> anyhow::Result<()> {
    if let Some((objects, infos)) = open_objects(globals).await? {
        return gc_objects(&objects, &infos, args).await;
    }
    let Embedded {
        store,
        infos,
        services,
    } = open_embedded(globals).await?;
    let before = store.file_len()?;
    let mut options = GcOptions::default();
    options.grace = args.keep_since;
    options.dry_run = args.dry_run;
    options.max_deletions = args.max_deletions;
    let (report, missing) = collect(&store, infos.as_ref(), options).await?;
    for m in missing.iter().take(10) {
        eprintln!("storefs: warning: a kept path needs {m}, which is not in the store");
    }
    // Compaction needs the only handle on the database.
    drop((infos, services));
    let compacted = if report.deleted() > 0 && !args.dry_run {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.compact())
            .await
            .context("the compaction task failed")??
    } else {
        false
    };
    let after = store.file_len()?;
    if args.json {
        println!("{}", report_json(&report, before, after, compacted));
    } else {
        print!("{}", report_text(&report, args.keep_since, before, after));
    }
    Ok(())
}

fn kind_json(k: &storefs_castore::GcKind) -> serde_json::Value {
    serde_json::json!({
        "reachable": k.reachable, "young": k.young, "deleted": k.deleted, "bytes": k.bytes,
    })
}

fn report_json(r: &GcReport, before: u64, after: u64, compacted: bool) -> serde_json::Value {
    serde_json::json!({
        "dry_run": r.dry_run,
        "stopped_early": r.stopped_early,
        "directories": kind_json(&r.directories),
        "chunk_lists": kind_json(&r.chunk_lists),
        "chunks": kind_json(&r.chunks),
        "deleted": r.deleted(),
        "bytes_freed": r.bytes(),
        "file_bytes_before": before,
        "file_bytes_after": after,
        "compacted": compacted,
    })
}

fn report_text(r: &GcReport, grace: Duration, before: u64, after: u64) -> String {
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    let mut out = format!(
        "{verb} {} directories, {} chunk lists, {} chunks: {} bytes of records\n",
        r.directories.deleted,
        r.chunk_lists.deleted,
        r.chunks.deleted,
        r.bytes()
    );
    out += &format!(
        "kept {} directories, {} chunk lists, {} chunks that paths reach; {} records younger than {}s\n",
        r.directories.reachable,
        r.chunk_lists.reachable,
        r.chunks.reachable,
        r.directories.young + r.chunk_lists.young + r.chunks.young,
        grace.as_secs()
    );
    out += &format!("store file: {before} bytes before, {after} after\n");
    if r.stopped_early {
        out += "stopped early (--max-deletions): run gc again to finish\n";
    }
    out
}

/// Run `storefs verify`: every path info's closure must be in the store.
pub async fn verify(globals: &Globals) -> anyhow::Result<()> {
    let (n, mark) = match open_objects(globals).await? {
        Some((objects, infos)) => {
            let roots = roots(&infos).await?;
            let n = roots.len();
            (n, objects.gc_mark(&roots, SystemTime::now()).await?.mark)
        }
        None => {
            let Embedded { store, infos, .. } = open_embedded(globals).await?;
            let roots = roots(infos.as_ref()).await?;
            let n = roots.len();
            let mark =
                tokio::task::spawn_blocking(move || store.gc_mark(&roots, SystemTime::now()))
                    .await
                    .context("the mark task failed")??;
            (n, mark)
        }
    };
    if !mark.missing.is_empty() {
        for m in mark.missing.iter().take(20) {
            eprintln!("storefs: missing {m}");
        }
        bail!(
            "{} records that path infos need are missing from the store",
            mark.missing.len()
        );
    }
    println!(
        "{n} paths: {} directories, {} blobs, {} chunks, all present",
        mark.directories.len(),
        mark.blobs.len(),
        mark.chunks.len()
    );
    Ok(())
}

/// Run `storefs delete PATH…`: refuse a path that another path not being
/// deleted refers to, unless `recursive`, which deletes those referrers
/// too (and theirs). Referrers go first, so that an interrupted delete
/// never leaves a kept path referring to a deleted one.
pub async fn delete(
    services: &Services,
    store_dir: &StoreDir,
    paths: &[String],
    recursive: bool,
) -> anyhow::Result<()> {
    let mut doomed: BTreeMap<[u8; 20], StorePath> = BTreeMap::new();
    for p in paths {
        let info = super::lookup(services, store_dir, p).await?;
        doomed.insert(*info.store_path.digest(), info.store_path);
    }
    // Referrers of each doomed path, within the store.
    let mut referrers: BTreeMap<[u8; 20], Vec<StorePath>> = BTreeMap::new();
    let mut queue: Vec<[u8; 20]> = doomed.keys().copied().collect();
    while let Some(d) = queue.pop() {
        let refs = services
            .path_info
            .referrers(d)
            .await
            .context("looking up referrers")?;
        let refs: Vec<StorePath> = refs.into_iter().filter(|r| *r.digest() != d).collect();
        for r in &refs {
            if doomed.contains_key(r.digest()) {
                continue;
            }
            if !recursive {
                let path = doomed
                    .get(&d)
                    .map(|p| p.to_absolute(store_dir))
                    .unwrap_or_default();
                bail!(
                    "{path} is still referenced by {} (delete that too, or use --recursive)",
                    r.to_absolute(store_dir)
                );
            }
            doomed.insert(*r.digest(), r.clone());
            queue.push(*r.digest());
        }
        referrers.insert(d, refs);
    }
    // Delete a path once none of its referrers in the set is left.
    let mut left: BTreeSet<[u8; 20]> = doomed.keys().copied().collect();
    while !left.is_empty() {
        let ready: Vec<[u8; 20]> = left
            .iter()
            .filter(|d| {
                referrers
                    .get(*d)
                    .is_none_or(|rs| rs.iter().all(|r| !left.contains(r.digest())))
            })
            .copied()
            .collect();
        // A reference cycle (impossible for store paths, which are hashed
        // over their references): delete the rest together.
        let batch = if ready.is_empty() {
            left.iter().copied().collect()
        } else {
            ready
        };
        for d in batch {
            left.remove(&d);
            services
                .path_info
                .delete(d)
                .await
                .with_context(|| format!("deleting {}", doomed[&d].to_absolute(store_dir)))?;
            println!("{}", doomed[&d].to_absolute(store_dir));
        }
    }
    Ok(())
}
