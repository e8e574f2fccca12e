//! Garbage collection of an object store ([`ObjectCastore`]: `s3://`,
//! `file://`), in the same three steps as the embedded store's
//! (`crate::gc`): mark from the root nodes the caller lists, then sweep
//! directories (closure objects and their index entries), then chunk
//! lists, then chunks, never anything whose `last_modified` is within the
//! grace period before the collection started.
//!
//! Closure objects are kept when a reachable directory is their root, or
//! when the mark reached a reachable directory through them (a path's
//! root stored only inside a larger closure). An index entry of a
//! reachable directory that names a closure about to go is first
//! rewritten to name one that stays, so that `get` of every reachable
//! directory still answers once the closure is gone. Each object is
//! checked again (HEAD) just before it is deleted; an object store has no
//! transactions, so an upload that rewrites an object in the instant
//! between that check and the DELETE can still lose it: the grace period
//! covers uploads that began before the collection, not ones that race
//! its last step on the same object.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use futures::TryStreamExt;
use object_store::ObjectMeta;
use object_store::path::Path;

use crate::objectstore::ObjectCastore;
use crate::objectstore::layout::{closure_key, decode_index_entry, directory_index_key};
use crate::{B3Digest, BlobService, DirectoryService, Error, GcKind, GcMark, GcOptions, GcReport};
use crate::{Node, Result};

/// What the mark of an object store adds to [`GcMark`].
#[derive(Debug, Default)]
pub struct ObjectGcMark {
    /// Reachable records (`started_ms`, directories, blobs, chunks,
    /// missing).
    pub mark: GcMark,
    /// Closure objects to keep.
    pub closures: HashSet<B3Digest>,
    /// For each reachable directory, a kept closure object holding it.
    pub holder: HashMap<B3Digest, B3Digest>,
}

fn objects_err(what: &str, e: object_store::Error) -> Error {
    Error::storage(format!("object store gc: {what}"), e)
}

fn millis(meta: &ObjectMeta) -> u64 {
    u64::try_from(meta.last_modified.timestamp_millis()).unwrap_or(0)
}

/// The digest an object's key ends in, `None` for keys that are not ours.
fn key_digest(key: &Path) -> Option<B3Digest> {
    B3Digest::from_hex(key.filename()?).ok()
}

impl ObjectCastore {
    /// Mark everything `roots` reach. `started` is when the collection
    /// began (before the roots were listed).
    pub async fn gc_mark(&self, roots: &[Node], started: SystemTime) -> Result<ObjectGcMark> {
        let prefix = self.bucket.prefix().clone();
        let mut m = ObjectGcMark::default();
        m.mark.started_ms = crate::redb_store::unix_ms(started);
        let mut blobs = Vec::new();
        for root in roots {
            match root {
                Node::File { digest, .. } => blobs.push(*digest),
                Node::Symlink { .. } => {}
                Node::Directory { digest, .. } => {
                    if m.mark.directories.contains(digest) {
                        continue;
                    }
                    // The closure object holding it: its own, else the one
                    // its index entry names.
                    let holder = if self.bucket.exists(&closure_key(&prefix, digest)).await? {
                        *digest
                    } else {
                        let index = directory_index_key(&prefix, digest);
                        match self.bucket.get(&index).await? {
                            Some(entry) => decode_index_entry(&index, &entry)?,
                            None => {
                                m.mark.missing.push(format!("directory {digest}"));
                                continue;
                            }
                        }
                    };
                    m.closures.insert(holder);
                    let dirs: Vec<_> = self.directories.get_recursive(digest).try_collect().await?;
                    if dirs.is_empty() {
                        m.mark.missing.push(format!("directory {digest}"));
                    }
                    for dir in dirs {
                        let d = dir.digest();
                        m.holder.entry(d).or_insert(holder);
                        m.mark.directories.insert(d);
                        for (_, node) in dir.entries() {
                            if let Node::File { digest, .. } = node {
                                blobs.push(*digest);
                            }
                        }
                    }
                }
            }
        }
        for b in blobs {
            if !m.mark.blobs.insert(b) {
                continue;
            }
            match self.blobs.chunks(&b).await? {
                Some(list) if !list.is_empty() => {
                    m.mark.chunks.extend(list.iter().map(|c| c.digest));
                }
                Some(_) => {
                    m.mark.chunks.insert(b);
                }
                None => m.mark.missing.push(format!("blob {b}")),
            }
        }
        // A reachable directory that is the root of a closure object keeps it.
        for d in &m.mark.directories {
            if !m.closures.contains(d) && self.bucket.exists(&closure_key(&prefix, d)).await? {
                m.closures.insert(*d);
            }
        }
        Ok(m)
    }

    /// Delete what the mark did not reach and what is older than the
    /// grace period: directories (index entries pointed at kept closures
    /// first), then chunk lists, then chunks.
    pub async fn gc_sweep(&self, m: &ObjectGcMark, options: &GcOptions) -> Result<GcReport> {
        let grace_ms = u64::try_from(options.grace.as_millis()).unwrap_or(u64::MAX);
        let cutoff = m.mark.started_ms.saturating_sub(grace_ms);
        let prefix = self.bucket.prefix().clone();
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        let mut budget = options.max_deletions.unwrap_or(u64::MAX);

        // Directories: closure objects and index entries.
        let closures = self.listing(&prefix.child("dirs")).await?;
        let mut doomed_closures = Vec::new();
        for meta in closures {
            let Some(d) = key_digest(&meta.location) else {
                continue;
            };
            if m.closures.contains(&d) {
                report.directories.reachable += 1;
            } else if millis(&meta) >= cutoff {
                report.directories.young += 1;
            } else {
                doomed_closures.push((d, meta));
            }
        }
        let doomed_set: HashSet<B3Digest> = doomed_closures.iter().map(|(d, _)| *d).collect();
        let index = self.listing(&prefix.child("dirs-in")).await?;
        let mut doomed_index = Vec::new();
        for meta in index {
            let Some(d) = key_digest(&meta.location) else {
                continue;
            };
            if let Some(holder) = m.holder.get(&d) {
                // Reachable: make it name a closure that stays.
                let entry = self.bucket.get(&meta.location).await?;
                let names = match &entry {
                    Some(e) => Some(decode_index_entry(&meta.location, e)?),
                    None => None,
                };
                if names.is_none_or(|n| doomed_set.contains(&n)) && !options.dry_run {
                    self.bucket.put(&meta.location, holder.to_bytes()).await?;
                }
            } else if millis(&meta) >= cutoff {
                report.directories.young += 1;
            } else {
                doomed_index.push(meta);
            }
        }
        let closure_metas = doomed_closures.into_iter().map(|(_, meta)| meta);
        let all_dirs: Vec<ObjectMeta> = closure_metas.chain(doomed_index).collect();
        if self
            .delete_old(
                all_dirs,
                cutoff,
                options,
                &mut budget,
                &mut report.directories,
            )
            .await?
        {
            report.stopped_early = true;
            return Ok(report);
        }

        let mut stopped = false;
        for (dir, keep, out) in [
            ("blobs", &m.mark.blobs, &mut report.chunk_lists),
            ("chunks", &m.mark.chunks, &mut report.chunks),
        ] {
            let mut doomed = Vec::new();
            for meta in self.listing(&prefix.child(dir)).await? {
                let Some(d) = key_digest(&meta.location) else {
                    continue;
                };
                if keep.contains(&d) {
                    out.reachable += 1;
                } else if millis(&meta) >= cutoff {
                    out.young += 1;
                } else {
                    doomed.push(meta);
                }
            }
            if self
                .delete_old(doomed, cutoff, options, &mut budget, out)
                .await?
            {
                stopped = true;
                break;
            }
        }
        report.stopped_early = stopped;
        Ok(report)
    }

    /// Every object under `dir` with its metadata.
    async fn listing(&self, dir: &Path) -> Result<Vec<ObjectMeta>> {
        self.bucket
            .store()
            .list(Some(dir))
            .map_err(|e| objects_err(&format!("LIST {dir}"), e))
            .try_collect()
            .await
    }

    /// Delete `doomed` (each checked again to be older than `cutoff`);
    /// whether the budget ran out first.
    async fn delete_old(
        &self,
        doomed: Vec<ObjectMeta>,
        cutoff: u64,
        options: &GcOptions,
        budget: &mut u64,
        out: &mut GcKind,
    ) -> Result<bool> {
        let store = self.bucket.store();
        for meta in doomed {
            if *budget == 0 {
                return Ok(true);
            }
            // Rewritten since the listing (an upload reusing it): keep.
            let now = match store.head(&meta.location).await {
                Ok(m) => m,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(objects_err(&format!("HEAD {}", meta.location), e)),
            };
            if millis(&now) >= cutoff {
                out.young += 1;
                continue;
            }
            if !options.dry_run {
                match store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        return Err(objects_err(&format!("DELETE {}", meta.location), e));
                    }
                }
            }
            out.deleted += 1;
            out.bytes += now.size;
            *budget -= 1;
        }
        Ok(false)
    }
}
