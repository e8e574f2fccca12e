//! Garbage collection of the embedded store ([`RedbStore`]): what no root
//! reaches, and what is older than a grace period, is deleted.
//!
//! The caller (the store crate knows the roots: its path infos) hands
//! [`RedbStore::gc_mark`] the root nodes; the mark walks, in one read
//! transaction, every directory they reach, the blobs those name, and the
//! chunks of each blob. [`RedbStore::gc_sweep`] then deletes the records
//! not marked, in three passes: **directories, then chunk lists, then
//! chunks**, so that a record is deleted only after every unmarked record
//! that could name it. Each pass deletes in transactions of
//! [`GcOptions::batch`] records; a crash between two leaves every record
//! still reachable from a root in place (only unmarked ones are ever
//! deleted), and a second run finishes the job.
//!
//! **Uploads running meanwhile.** Writers note when they wrote or reused
//! each record (`castore.written.v1`, in the transaction that stores it;
//! a chunk or directory found already stored is noted too). A record
//! whose note is younger than the grace period is kept, checked again in
//! the transaction that would delete it: an upload writes its data before
//! its path info, so its records are either reachable by the time gc
//! marks, or young. The grace period must exceed the longest upload (from
//! its first chunk to its path info).
//!
//! A cache (a blob service with a quota) keeps no write times and evicts
//! by itself: you must not run gc on a cache.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use redb::{ReadableTable, ReadableTableMetadata};

use crate::redb_store::{
    BLOB_CHUNKS, CHUNKS, DIRECTORIES, KIND_CHUNK, KIND_CHUNK_LIST, KIND_DIRECTORY, RedbStore,
    WRITTEN, decode_chunk_list, storage, unix_ms,
};
use crate::{B3Digest, Node, Result};

/// How [`RedbStore::gc_sweep`] runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GcOptions {
    /// Records written (or reused) more recently than this are kept.
    pub grace: Duration,
    /// Count what would be deleted; delete nothing.
    pub dry_run: bool,
    /// Records deleted per write transaction.
    pub batch: usize,
    /// Stop after deleting this many records, as if interrupted (for
    /// tests of an interrupted run, and for bounding one run's work).
    pub max_deletions: Option<u64>,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(3600),
            dry_run: false,
            batch: 1000,
            max_deletions: None,
        }
    }
}

/// What the mark reached.
#[derive(Debug, Default)]
pub struct GcMark {
    /// When the collection started (before its roots were listed), in
    /// Unix milliseconds: anything written or reused since is kept,
    /// whatever the grace period.
    pub started_ms: u64,
    /// Directories reachable from a root.
    pub directories: HashSet<B3Digest>,
    /// Blobs reachable from a root (their chunk lists, or their only
    /// chunk).
    pub blobs: HashSet<B3Digest>,
    /// Chunks reachable from a root.
    pub chunks: HashSet<B3Digest>,
    /// Reachable records that are not in the store: the store is missing
    /// data a root needs (a damaged store; gc does not make it worse).
    pub missing: Vec<String>,
}

/// The outcome for one kind of record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcKind {
    /// Records reachable from a root (kept).
    pub reachable: u64,
    /// Unreachable records kept because they are younger than the grace
    /// period.
    pub young: u64,
    /// Records deleted (or, in a dry run, that would be).
    pub deleted: u64,
    /// Bytes of the records deleted, as stored (compressed chunks).
    pub bytes: u64,
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Directories.
    pub directories: GcKind,
    /// Chunk lists of blobs of two or more chunks.
    pub chunk_lists: GcKind,
    /// Chunks (and single-chunk blobs).
    pub chunks: GcKind,
    /// Whether the sweep stopped at [`GcOptions::max_deletions`] before the
    /// end (run it again to finish).
    pub stopped_early: bool,
    /// Whether nothing was deleted because it was a dry run.
    pub dry_run: bool,
}

impl GcReport {
    /// Records deleted, all kinds.
    pub fn deleted(&self) -> u64 {
        self.directories.deleted + self.chunk_lists.deleted + self.chunks.deleted
    }

    /// Bytes deleted, all kinds.
    pub fn bytes(&self) -> u64 {
        self.directories.bytes + self.chunk_lists.bytes + self.chunks.bytes
    }
}

impl RedbStore {
    /// Mark everything `roots` reach, in one read transaction. `started`
    /// is when the collection began: before the roots were listed.
    /// Blocking: call it from `spawn_blocking`.
    pub fn gc_mark(&self, roots: &[Node], started: SystemTime) -> Result<GcMark> {
        let db = self.database();
        let txn = db.begin_read().map_err(storage("begin read"))?;
        let dirs = txn
            .open_table(DIRECTORIES)
            .map_err(storage("open directories"))?;
        let lists = txn
            .open_table(BLOB_CHUNKS)
            .map_err(storage("open chunk lists"))?;
        let chunks = txn.open_table(CHUNKS).map_err(storage("open chunks"))?;
        let mut mark = GcMark {
            started_ms: unix_ms(started),
            ..GcMark::default()
        };
        let mut queue = VecDeque::new();
        let mut blobs = Vec::new();
        for root in roots {
            match root {
                Node::Directory { digest, .. } => {
                    if mark.directories.insert(*digest) {
                        queue.push_back(*digest);
                    }
                }
                Node::File { digest, .. } => blobs.push(*digest),
                Node::Symlink { .. } => {}
            }
        }
        while let Some(d) = queue.pop_front() {
            let Some(record) = dirs.get(*d.as_bytes()).map_err(storage("read directory"))? else {
                mark.missing.push(format!("directory {d}"));
                continue;
            };
            let dir = crate::directoryservice::verify_directory(&d, record.value())?;
            for (_, node) in dir.entries() {
                match node {
                    Node::Directory { digest, .. } => {
                        if mark.directories.insert(*digest) {
                            queue.push_back(*digest);
                        }
                    }
                    Node::File { digest, .. } => blobs.push(*digest),
                    Node::Symlink { .. } => {}
                }
            }
        }
        for blob in blobs {
            if !mark.blobs.insert(blob) {
                continue;
            }
            match lists
                .get(*blob.as_bytes())
                .map_err(storage("read chunk list"))?
            {
                Some(record) => {
                    for c in decode_chunk_list(&blob, record.value())? {
                        if mark.chunks.insert(c.digest)
                            && chunks
                                .get(*c.digest.as_bytes())
                                .map_err(storage("read chunk"))?
                                .is_none()
                        {
                            mark.missing
                                .push(format!("chunk {} of blob {blob}", c.digest));
                        }
                    }
                }
                None => {
                    mark.chunks.insert(blob);
                    // The empty blob reads as nothing even when absent.
                    if !is_empty_blob(&blob)
                        && chunks
                            .get(*blob.as_bytes())
                            .map_err(storage("read chunk"))?
                            .is_none()
                    {
                        mark.missing.push(format!("blob {blob}"));
                    }
                }
            }
        }
        Ok(mark)
    }

    /// Delete what `mark` did not reach and was last written before the
    /// grace period (the mark's start minus [`GcOptions::grace`]):
    /// directories, then chunk lists, then chunks. Blocking: call it from
    /// `spawn_blocking`.
    pub fn gc_sweep(&self, mark: &GcMark, options: &GcOptions) -> Result<GcReport> {
        let grace_ms = u64::try_from(options.grace.as_millis()).unwrap_or(u64::MAX);
        let cutoff = mark.started_ms.saturating_sub(grace_ms);
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        let mut budget = options.max_deletions.unwrap_or(u64::MAX);
        for (kind, table, keep, out) in [
            (
                KIND_DIRECTORY,
                DIRECTORIES,
                &mark.directories,
                &mut report.directories,
            ),
            (
                KIND_CHUNK_LIST,
                BLOB_CHUNKS,
                &mark.blobs,
                &mut report.chunk_lists,
            ),
            (KIND_CHUNK, CHUNKS, &mark.chunks, &mut report.chunks),
        ] {
            let stopped = self.sweep_table(kind, table, keep, cutoff, options, &mut budget, out)?;
            if stopped {
                report.stopped_early = true;
                break;
            }
        }
        Ok(report)
    }

    /// One pass of [`RedbStore::gc_sweep`]; whether it stopped at the
    /// deletion budget.
    #[allow(clippy::too_many_arguments)] // one pass's whole state; private
    fn sweep_table(
        &self,
        kind: u8,
        table: redb::TableDefinition<'static, [u8; 32], &'static [u8]>,
        keep: &HashSet<B3Digest>,
        cutoff: u64,
        options: &GcOptions,
        budget: &mut u64,
        out: &mut GcKind,
    ) -> Result<bool> {
        // The candidates, from a snapshot; each is checked again in the
        // transaction that deletes it.
        let candidates: Vec<[u8; 32]> = {
            let db = self.database();
            let txn = db.begin_read().map_err(storage("begin read"))?;
            let t = txn.open_table(table).map_err(storage("open table"))?;
            let total = t.len().map_err(storage("count"))?;
            let mut c = Vec::new();
            for entry in t.iter().map_err(storage("scan"))? {
                let (k, _) = entry.map_err(storage("scan"))?;
                let key = k.value();
                if !keep.contains(&B3Digest::from(key)) {
                    c.push(key);
                }
            }
            out.reachable += total.saturating_sub(c.len() as u64);
            c
        };
        let mut left = candidates.as_slice();
        while !left.is_empty() {
            if *budget == 0 {
                return Ok(true);
            }
            let (group, rest) = left.split_at(options.batch.max(1).min(left.len()));
            left = rest;
            let db = self.database();
            let txn = db.begin_write().map_err(storage("begin write"))?;
            let mut unfinished = false;
            {
                let mut t = txn.open_table(table).map_err(storage("open table"))?;
                let mut written = txn.open_table(WRITTEN).map_err(storage("open written"))?;
                for key in group {
                    if *budget == 0 {
                        unfinished = true;
                        break;
                    }
                    let at = written
                        .get((kind, *key))
                        .map_err(storage("read written"))?
                        .map(|g| g.value());
                    if at.is_some_and(|at| at >= cutoff) {
                        out.young += 1;
                        continue;
                    }
                    let len = match t.get(*key).map_err(storage("read"))? {
                        Some(v) => v.value().len() as u64,
                        // Gone since the snapshot.
                        None => continue,
                    };
                    if !options.dry_run {
                        t.remove(*key).map_err(storage("delete"))?;
                        written.remove((kind, *key)).map_err(storage("delete"))?;
                    }
                    out.deleted += 1;
                    out.bytes += len;
                    *budget -= 1;
                }
            }
            if options.dry_run {
                txn.abort().map_err(storage("abort"))?;
            } else {
                txn.commit().map_err(storage("commit gc"))?;
                // Progress of a long sweep (and what a test of a killed
                // run waits for): this batch's deletions are durable.
                tracing::debug!(
                    deleted = out.deleted,
                    left = left.len(),
                    "gc: deleted a batch of {}",
                    kind_name(kind)
                );
            }
            if unfinished {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// What a pass deletes, for logs.
fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_DIRECTORY => "directories",
        KIND_CHUNK_LIST => "chunk lists",
        _ => "chunks",
    }
}

/// The empty blob needs no chunk: it is read as nothing.
fn is_empty_blob(digest: &B3Digest) -> bool {
    *digest == B3Digest::of(b"")
}
