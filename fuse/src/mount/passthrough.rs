//! FUSE passthrough of fully cached files: the kernel reads such a file
//! straight from its local copy in the [`FileCache`], never asking us.
//!
//! When it is on: the mount was given a file cache and did not turn it off
//! (`--no-passthrough`), the kernel granted `FUSE_PASSTHROUGH` at init, and
//! we are root (registering a backing file takes `CAP_SYS_ADMIN`). Then
//! every open comes to us (no `FUSE_NO_OPEN`), and:
//! - a file whose copy is in the file cache opens with passthrough;
//! - a file opened before in this mount whose chunks are all in the local
//!   cache is copied into the file cache in the background (bounded), so
//!   its later opens pass through; a file read once is not copied (a cold
//!   walk would write everything twice);
//! - anything else opens as without passthrough.
//!
//! The kernel keeps one I/O mode per inode: while a file is open through
//! the page-cache path, another open of it with passthrough fails (EIO),
//! and all passthrough opens of an inode must share one backing file. So
//! the mode of each open inode is tracked here, and a new open follows it.
//! The kernel holds its own reference to the backing file: evicting the
//! copy from the file cache (unlinking it) leaves open files reading right.
//!
//! Should the kernel refuse a backing file (no privilege after all, a
//! stacking limit), passthrough is turned off for the rest of the mount and
//! the open goes the ordinary way.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use fuser::{BackingId, FileHandle, FopenFlags, ReplyOpen};
use lru::LruCache;
use parking_lot::Mutex;
use storefs_castore::{B3Digest, ChunkMeta, FileCache};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::core::fetch::BlobLayout;
use crate::core::stats::{self, MountStats};

/// How many blobs are remembered as opened before.
const SEEN: usize = 64 * 1024;

/// Copies into the file cache running at once ...
const BUILDS: usize = 4;

/// ... and waiting for their turn at most; an open that finds the queue
/// full leaves its file for a later open.
const BUILDS_QUEUED: usize = 1024;

/// The flags of an open file read through the mount: immutable content,
/// so the kernel may keep its page cache across opens, and closing needs no
/// flush.
pub(crate) fn open_flags() -> FopenFlags {
    FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH
}

/// The flags of a passthrough open (besides `FOPEN_PASSTHROUGH`): the
/// kernel refuses any but a few with passthrough (keep-cache among them:
/// the backing file's page cache is used), so only no-flush.
fn passthrough_flags() -> FopenFlags {
    FopenFlags::FOPEN_NOFLUSH
}

/// How an open inode is read by the kernel.
enum Io {
    /// Through the page cache and our `read`.
    Cached,
    /// From this backing file.
    Backed(BackingId),
}

/// An open inode: its mode and how many opens hold it.
struct InodeIo {
    io: Io,
    opens: u64,
}

/// Passthrough state of one mount.
pub(crate) struct Passthrough {
    files: Arc<FileCache>,
    on: AtomicBool,
    /// Blobs opened before in this mount (copied at their next open).
    seen: Mutex<LruCache<B3Digest, ()>>,
    /// Open inodes and their mode. `parking_lot`: held for one map
    /// operation and at most one ioctl.
    inodes: Mutex<HashMap<u64, InodeIo>>,
    builds: Arc<Semaphore>,
    /// Copies started or waiting.
    queued: Arc<AtomicUsize>,
    /// Blobs being copied (or waiting for their turn): an open meanwhile
    /// starts no second copy, so each file is copied, and counted, once.
    copying: Arc<Mutex<HashSet<B3Digest>>>,
    stats: Arc<MountStats>,
    runtime: Handle,
}

impl Passthrough {
    /// Off until [`Passthrough::enable`] (the kernel agreed at init).
    pub(crate) fn new(files: Arc<FileCache>, stats: Arc<MountStats>, runtime: Handle) -> Self {
        let s = files.snapshot();
        stats::set(&stats.file_cache_files, s.files);
        stats::set(&stats.file_cache_bytes, s.bytes);
        Self {
            files,
            on: AtomicBool::new(false),
            seen: Mutex::new(LruCache::new(
                NonZeroUsize::new(SEEN).unwrap_or(NonZeroUsize::MIN),
            )),
            inodes: Mutex::new(HashMap::new()),
            builds: Arc::new(Semaphore::new(BUILDS)),
            queued: Arc::new(AtomicUsize::new(0)),
            copying: Arc::default(),
            stats,
            runtime,
        }
    }

    /// The kernel granted passthrough: use it.
    pub(crate) fn enable(&self) {
        self.on.store(true, Ordering::Relaxed);
    }

    /// Whether opens may pass through now.
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// At open of inode `ino` (blob `digest`, `size` bytes, laid out as
    /// `layout`): the local copy to pass through to, if there is one;
    /// otherwise maybe start making one for later opens.
    pub(crate) async fn backing_for(
        &self,
        ino: u64,
        digest: B3Digest,
        size: u64,
        layout: &BlobLayout,
    ) -> Option<File> {
        if !self.is_on() || size == 0 {
            return None;
        }
        // Open already: its mode decides (a backed inode reuses its backing
        // file, a cached one must stay cached until its last release).
        let open_now = match self.inodes.lock().get(&ino) {
            // Its backing file serves this open too: nothing to find or copy.
            Some(open) if matches!(open.io, Io::Backed(_)) => return None,
            Some(open) => open.opens > 0,
            None => false,
        };
        if self.files.is_ready(&digest, size) {
            return if open_now {
                None
            } else {
                self.files.open_file(&digest, size)
            };
        }
        if self.files.contains(&digest) {
            if open_now {
                return None;
            }
            // A copy from an earlier run: hash it once, off this thread.
            let files = Arc::clone(&self.files);
            return tokio::task::spawn_blocking(move || files.open_file(&digest, size))
                .await
                .ok()
                .flatten();
        }
        let BlobLayout::Chunks { chunks, .. } = layout else {
            return None;
        };
        // Opened for the first time in this mount: leave it at that.
        self.seen.lock().put(digest, ())?;
        self.build_later(digest, size, chunks.clone());
        None
    }

    /// Copy blob `digest` into the file cache in the background, unless
    /// it is being copied already or too many copies are waiting.
    fn build_later(&self, digest: B3Digest, size: u64, chunks: Vec<ChunkMeta>) {
        if !self.copying.lock().insert(digest) {
            return;
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= BUILDS_QUEUED {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.copying.lock().remove(&digest);
            return;
        }
        let files = Arc::clone(&self.files);
        let stats = Arc::clone(&self.stats);
        let builds = Arc::clone(&self.builds);
        let queued = Arc::clone(&self.queued);
        let copying = Arc::clone(&self.copying);
        self.runtime.spawn(async move {
            // The semaphore is never closed; should it be, copy anyway.
            let _permit = builds.acquire_owned().await.ok();
            let outcome = files.materialise(digest, size, chunks).await;
            match outcome {
                Ok(true) => {
                    stats::add(&stats.files_materialised, 1);
                    let s = files.snapshot();
                    stats::set(&stats.file_cache_files, s.files);
                    stats::set(&stats.file_cache_bytes, s.bytes);
                }
                // A chunk is not (or no longer) held locally.
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(blob = %digest, error = %e, "file cache: cannot copy blob")
                }
            }
            // Counted before it leaves the set: a later open either finds
            // the copy ready or starts a new one (after an eviction).
            copying.lock().remove(&digest);
            queued.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Answer the open of inode `ino` with handle `fh`: with passthrough
    /// (to `backing`, or to the inode's backing file if it has one) when
    /// the inode's mode allows it, else the ordinary way. Returns `true`
    /// when the kernel refused a backing file (passthrough is off now).
    pub(crate) fn reply_open(
        &self,
        reply: ReplyOpen,
        ino: u64,
        fh: u64,
        backing: Option<File>,
    ) -> bool {
        let mut inodes = self.inodes.lock();
        if let Some(open) = inodes.get_mut(&ino) {
            open.opens += 1;
            match &open.io {
                Io::Backed(id) => {
                    stats::add(&self.stats.passthrough_opens, 1);
                    reply.opened_passthrough(FileHandle(fh), passthrough_flags(), id);
                }
                Io::Cached => reply.opened(FileHandle(fh), open_flags()),
            }
            return false;
        }
        let mut refused = false;
        let io = match backing {
            Some(file) if self.is_on() => match reply.open_backing(&file) {
                Ok(id) => Io::Backed(id),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "the kernel refused a passthrough backing file; passthrough is off for this mount"
                    );
                    self.on.store(false, Ordering::Relaxed);
                    stats::add(&self.stats.passthrough_fallbacks, 1);
                    refused = true;
                    Io::Cached
                }
            },
            _ => Io::Cached,
        };
        match &io {
            Io::Backed(id) => {
                stats::add(&self.stats.passthrough_opens, 1);
                reply.opened_passthrough(FileHandle(fh), passthrough_flags(), id);
            }
            Io::Cached => reply.opened(FileHandle(fh), open_flags()),
        }
        inodes.insert(ino, InodeIo { io, opens: 1 });
        refused
    }

    /// An open of inode `ino` was released. The last release of a backed
    /// inode drops its backing file (the kernel has let go of it by now).
    pub(crate) fn release(&self, ino: u64) {
        let mut inodes = self.inodes.lock();
        if let Some(open) = inodes.get_mut(&ino) {
            open.opens = open.opens.saturating_sub(1);
            if open.opens == 0 {
                inodes.remove(&ino);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use storefs_castore::{BlobService, MemoryBlobService};
    use storefs_testkit::suites::blob::write_blob;
    use storefs_testkit::{pseudo_random, wait_until};

    use super::*;

    /// Opens that arrive while a file is being copied into the file cache
    /// start no second copy: the file is copied, and counted, once. The
    /// opens run before the copy gets a turn (one thread), as a third open
    /// does while the second's copy is still running.
    #[tokio::test]
    async fn opens_during_a_copy_copy_the_file_once() {
        let near = Arc::new(MemoryBlobService::new());
        let data = pseudo_random(3_000, 7);
        let digest = write_blob(&*near, &data, 1 << 16).await;
        let size = data.len() as u64;
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobService> = near;
        let files = Arc::new(FileCache::open(dir.path(), blobs, 1 << 20).unwrap());
        let stats = Arc::new(MountStats::default());
        let p = Passthrough::new(Arc::clone(&files), Arc::clone(&stats), Handle::current());
        p.enable();
        let layout = BlobLayout::Chunks {
            chunks: vec![ChunkMeta { digest, size }],
            ends: vec![size],
        };
        // The first open only notes the file; the next ones ask for a copy.
        for _ in 0..4 {
            assert!(p.backing_for(2, digest, size, &layout).await.is_none());
        }
        wait_until(Duration::from_secs(10), "the copy", || {
            p.queued.load(Ordering::Relaxed) == 0
        })
        .await;
        assert!(files.is_ready(&digest, size));
        assert_eq!(stats.files_materialised.load(Ordering::Relaxed), 1);
        assert_eq!(files.snapshot().files, 1);
        // Now ready: an open passes through, and copies nothing.
        assert!(p.backing_for(2, digest, size, &layout).await.is_some());
        assert_eq!(stats.files_materialised.load(Ordering::Relaxed), 1);
        assert!(p.copying.lock().is_empty());
    }
}
