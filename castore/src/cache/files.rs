//! [`FileCache`]: whole blobs as plain local files, named by their digest,
//! built from chunks already in the local cache.
//!
//! What it is for: a FUSE mount can hand such a file to the kernel
//! (passthrough), so reads of a fully cached blob never reach userspace.
//!
//! A file is written under a temporary name, hashed as it is written, and
//! renamed to `<hex digest>` only when the whole blob hashes to its digest;
//! the chunks it is built from are checked by the chunk store as they are
//! read. Files found at start (written by an earlier run, maybe cut short by
//! a crash, since nothing is synced) are hashed again before their first
//! use; leftover temporary files are removed.
//!
//! The files stay within a byte budget, least recently used first out.
//! Evicting a file only unlinks it: whoever has it open (the kernel, for a
//! passthrough file) keeps reading the same bytes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use lru::LruCache;
use parking_lot::Mutex;

use crate::blobservice::{BlobService, ChunkMeta};
use crate::{B3Digest, Error, Result};

/// Prefix of files being written (removed at start if left over).
const TMP_PREFIX: &str = ".tmp-";

/// One materialisation in progress, awaited by everyone who asks for the
/// same blob meanwhile.
type Building = Shared<BoxFuture<'static, Result<bool, Arc<Error>>>>;

/// What the cache knows about one file.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Its length.
    size: u64,
    /// Whether its content was checked against its name in this run.
    verified: bool,
}

/// The index: files by digest, least recently used first out.
struct Index {
    lru: LruCache<B3Digest, Entry>,
    bytes: u64,
}

/// Whole blobs as local files, content-addressed, under a byte budget.
/// Cheap to share (`Arc`); all methods take `&self`.
pub struct FileCache {
    /// The directory holding the files.
    dir: PathBuf,
    /// Where chunks are read from: the local chunk store (never a remote).
    near: Arc<dyn BlobService>,
    /// The cache that fills `near`, if any: a chunk fetched a moment ago
    /// may still wait there to be written (see
    /// [`super::CachedBlobService::flush`]).
    fills: Option<super::CachedBlobService>,
    /// The budget, in bytes of file content.
    max_bytes: u64,
    /// `parking_lot`: held for one map operation, never across I/O.
    index: Mutex<Index>,
    /// Materialisations in progress, by blob.
    building: Mutex<HashMap<B3Digest, Building>>,
    /// Files written (and kept) since start.
    written: AtomicU64,
    /// Files unlinked to stay within the budget.
    evicted: AtomicU64,
    /// Names for temporary files.
    next_tmp: AtomicU64,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

/// The figures of a [`FileCache`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileCacheSnapshot {
    /// Files held now.
    pub files: u64,
    /// Bytes of the files held now.
    pub bytes: u64,
    /// Files written since start.
    pub written: u64,
    /// Files unlinked to stay within the budget since start.
    pub evicted: u64,
}

impl FileCache {
    /// The cache in `dir` (created if missing), reading chunks from `near`
    /// and keeping at most `max_bytes` of files. Files already there are
    /// indexed (oldest modification first out) and checked before their
    /// first use; leftover temporary files are removed.
    pub fn open(
        dir: impl Into<PathBuf>,
        near: Arc<dyn BlobService>,
        max_bytes: u64,
    ) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let mut found = Vec::new();
        for item in std::fs::read_dir(&dir)? {
            let item = item?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TMP_PREFIX) {
                remove_quietly(&item.path());
                continue;
            }
            let Ok(digest) = B3Digest::from_hex(&name) else {
                continue;
            };
            let meta = item.metadata()?;
            if !meta.is_file() {
                continue;
            }
            let mtime = meta.modified().ok();
            found.push((mtime, digest, meta.len()));
        }
        found.sort_by_key(|(mtime, _, _)| *mtime);
        let cache = Self {
            dir,
            near,
            fills: None,
            max_bytes,
            index: Mutex::new(Index {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            building: Mutex::default(),
            written: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            next_tmp: AtomicU64::new(0),
        };
        for (_, digest, size) in found {
            cache.add(
                digest,
                Entry {
                    size,
                    verified: false,
                },
            );
        }
        Ok(cache)
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The budget in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes of files held now.
    pub fn bytes(&self) -> u64 {
        self.index.lock().bytes
    }

    /// The cache's figures now.
    pub fn snapshot(&self) -> FileCacheSnapshot {
        let index = self.index.lock();
        FileCacheSnapshot {
            files: index.lru.len() as u64,
            bytes: index.bytes,
            written: self.written.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    fn path_of(&self, digest: &B3Digest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// Index `digest`, then unlink least recently used files beyond the
    /// budget (never the one just added).
    fn add(&self, digest: B3Digest, entry: Entry) {
        let mut victims = Vec::new();
        {
            let mut index = self.index.lock();
            if let Some(old) = index.lru.put(digest, entry) {
                index.bytes = index.bytes.saturating_sub(old.size);
            }
            index.bytes += entry.size;
            while index.bytes > self.max_bytes && index.lru.len() > 1 {
                match index.lru.pop_lru() {
                    Some((d, e)) => {
                        index.bytes = index.bytes.saturating_sub(e.size);
                        victims.push(d);
                    }
                    None => break,
                }
            }
        }
        for d in victims {
            remove_quietly(&self.path_of(&d));
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drop `digest` from the index (its file is gone or wrong).
    fn forget(&self, digest: &B3Digest) {
        let mut index = self.index.lock();
        if let Some(e) = index.lru.pop(digest) {
            index.bytes = index.bytes.saturating_sub(e.size);
        }
    }

    /// Whether a file for `digest` is held (checked or not).
    pub fn contains(&self, digest: &B3Digest) -> bool {
        self.index.lock().lru.contains(digest)
    }

    /// Whether a file for `digest` of `size` bytes is held and was checked
    /// in this run (so [`FileCache::open_file`] answers without hashing).
    pub fn is_ready(&self, digest: &B3Digest, size: u64) -> bool {
        matches!(self.index.lock().lru.peek(digest), Some(e) if e.size == size && e.verified)
    }

    /// Open the file holding blob `digest` (`size` bytes) for reading, if
    /// the cache has it. A file from an earlier run is hashed first (this
    /// blocks: call it off latency-sensitive threads unless
    /// [`FileCache::is_ready`]); one that does not match, or cannot be
    /// opened, is removed and `None` returned.
    pub fn open_file(&self, digest: &B3Digest, size: u64) -> Option<File> {
        let entry = *self.index.lock().lru.get(digest)?;
        let path = self.path_of(digest);
        if entry.size != size {
            self.forget(digest);
            remove_quietly(&path);
            return None;
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(_) => {
                self.forget(digest);
                return None;
            }
        };
        if !entry.verified {
            match hash_file(&file) {
                Ok((len, d)) if len == size && d == *digest => {
                    if let Some(e) = self.index.lock().lru.peek_mut(digest) {
                        e.verified = true;
                    }
                }
                _ => {
                    self.forget(digest);
                    remove_quietly(&path);
                    return None;
                }
            }
        }
        Some(file)
    }

    /// Chunks missing from near are waited for in `fills`, the cache that
    /// writes what it fetches into near behind its readers, before a copy
    /// gives up: a file opened again soon after its first read is copied
    /// although its last chunks were not written yet.
    pub fn waiting_for_fills(mut self, fills: super::CachedBlobService) -> Self {
        self.fills = Some(fills);
        self
    }

    /// Build the file of blob `digest` (`size` bytes, in `chunks`: its chunk
    /// list, or one entry with its own digest for a blob stored whole) from
    /// the local chunk store. `Ok(false)` if a chunk is not held locally,
    /// or the blob is over the budget; nothing is left behind then.
    /// Concurrent calls for one blob share one build.
    pub async fn materialise(
        self: &Arc<Self>,
        digest: B3Digest,
        size: u64,
        chunks: Vec<ChunkMeta>,
    ) -> Result<bool> {
        if self.is_ready(&digest, size) {
            return Ok(true);
        }
        if size > self.max_bytes {
            return Ok(false);
        }
        let build = {
            let mut building = self.building.lock();
            building
                .entry(digest)
                .or_insert_with(|| {
                    let this = Arc::clone(self);
                    async move {
                        let r = this.build(digest, size, chunks).await.map_err(Arc::new);
                        this.building.lock().remove(&digest);
                        r
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        build.await.map_err(|e| e.duplicate())
    }

    async fn build(&self, digest: B3Digest, size: u64, chunks: Vec<ChunkMeta>) -> Result<bool> {
        let listed: u64 = chunks.iter().map(|c| c.size).sum();
        if listed != size {
            return Err(Error::InvalidRequest(format!(
                "chunk list of blob {digest} adds up to {listed} bytes, the file has {size}"
            )));
        }
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(
            "{TMP_PREFIX}{}-{}-{n}",
            digest.to_hex(),
            std::process::id()
        ));
        let result = self.write_tmp(&tmp, digest, &chunks).await;
        match result {
            Ok(true) => {
                let dest = self.path_of(&digest);
                let renamed = {
                    let (tmp, dest) = (tmp.clone(), dest.clone());
                    tokio::task::spawn_blocking(move || std::fs::rename(tmp, dest)).await
                };
                match renamed {
                    Ok(Ok(())) => {
                        self.add(
                            digest,
                            Entry {
                                size,
                                verified: true,
                            },
                        );
                        self.written.fetch_add(1, Ordering::Relaxed);
                        Ok(true)
                    }
                    Ok(Err(e)) => {
                        remove_quietly(&tmp);
                        Err(e.into())
                    }
                    Err(e) => {
                        remove_quietly(&tmp);
                        Err(Error::storage("file cache task failed", e))
                    }
                }
            }
            other => {
                remove_quietly(&tmp);
                other
            }
        }
    }

    /// Write the chunks into `tmp`, hashing the whole; `Ok(false)` if a
    /// chunk is not held locally.
    async fn write_tmp(&self, tmp: &Path, digest: B3Digest, chunks: &[ChunkMeta]) -> Result<bool> {
        let mut file = Some(create_tmp(tmp.to_owned()).await?);
        let mut hasher = blake3::Hasher::new();
        let mut flushed = false;
        for c in chunks {
            let mut data = self.near.read_chunk(&c.digest).await?;
            if data.is_none()
                && !flushed
                && let Some(fills) = &self.fills
            {
                // Once per copy: what waits to be written is written now.
                fills.flush().await;
                flushed = true;
                data = self.near.read_chunk(&c.digest).await?;
            }
            let Some(data) = data else {
                return Ok(false);
            };
            if data.len() as u64 != c.size {
                return Err(Error::InvalidRequest(format!(
                    "chunk {} of blob {digest} has {} bytes, its list says {}",
                    c.digest,
                    data.len(),
                    c.size
                )));
            }
            hasher.update(&data);
            let mut f = file
                .take()
                .ok_or_else(|| Error::storage_msg("file cache: no file"))?;
            let f = tokio::task::spawn_blocking(move || f.write_all(&data).map(|()| f))
                .await
                .map_err(|e| Error::storage("file cache task failed", e))??;
            file = Some(f);
        }
        let actual = B3Digest::from(hasher.finalize());
        if actual != digest {
            return Err(Error::Integrity {
                what: "blob",
                expected: digest,
                actual,
            });
        }
        Ok(true)
    }
}

/// Create `path` for writing (read-only for everyone once renamed: the
/// mode is 0444 from the start).
async fn create_tmp(path: PathBuf) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = tokio::task::spawn_blocking(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(path)
    })
    .await
    .map_err(|e| Error::storage("file cache task failed", e))??;
    Ok(f)
}

/// Length and digest of a whole file (read from its start; it is left
/// positioned at its start again).
fn hash_file(mut file: &File) -> std::io::Result<(u64, B3Digest)> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    file.seek(SeekFrom::Start(0))?;
    Ok((len, B3Digest::from(hasher.finalize())))
}

/// Remove a file, ignoring failure (it may be gone already).
fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "file cache: cannot remove");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobservice::{ChunkStore, MemoryBlobService};
    use bytes::Bytes;

    fn blob(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    async fn store_chunks(near: &MemoryBlobService, data: &[u8], piece: usize) -> Vec<ChunkMeta> {
        let mut metas = Vec::new();
        for c in data.chunks(piece) {
            let d = B3Digest::of(c);
            near.insert_chunk(&d, Bytes::copy_from_slice(c))
                .await
                .unwrap();
            metas.push(ChunkMeta {
                digest: d,
                size: c.len() as u64,
            });
        }
        metas
    }

    #[tokio::test]
    async fn builds_verified_files_and_evicts_beyond_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let near = Arc::new(MemoryBlobService::default());
        let cache = Arc::new(FileCache::open(dir.path().join("files"), near.clone(), 250).unwrap());
        let a = blob(100, 1);
        let b = blob(100, 2);
        let c = blob(100, 3);
        let (da, db, dc) = (B3Digest::of(&a), B3Digest::of(&b), B3Digest::of(&c));
        let ca = store_chunks(&near, &a, 30).await;
        let cb = store_chunks(&near, &b, 100).await;
        let cc = store_chunks(&near, &c, 64).await;
        assert!(cache.materialise(da, 100, ca).await.unwrap());
        assert!(cache.materialise(db, 100, cb).await.unwrap());
        let mut held = Vec::new();
        cache
            .open_file(&da, 100)
            .unwrap()
            .read_to_end(&mut held)
            .unwrap();
        assert_eq!(held, a);
        // Opening `a` made it recent: `b` goes when `c` comes.
        let mut open_a = cache.open_file(&da, 100).unwrap();
        assert!(cache.materialise(dc, 100, cc).await.unwrap());
        assert!(cache.open_file(&db, 100).is_none());
        assert!(!dir.path().join("files").join(db.to_hex()).exists());
        assert_eq!(cache.snapshot().evicted, 1);
        assert_eq!(cache.bytes(), 200);
        // Evicting `a` now leaves the open file reading the same bytes.
        let d = blob(100, 4);
        let cd = store_chunks(&near, &d, 50).await;
        assert!(cache.materialise(B3Digest::of(&d), 100, cd).await.unwrap());
        assert!(!dir.path().join("files").join(da.to_hex()).exists());
        held.clear();
        open_a.read_to_end(&mut held).unwrap();
        assert_eq!(held, a);
    }

    #[tokio::test]
    async fn a_missing_chunk_or_a_wrong_list_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let near = Arc::new(MemoryBlobService::default());
        let cache = Arc::new(FileCache::open(dir.path(), near.clone(), 1 << 20).unwrap());
        let a = blob(1000, 7);
        let da = B3Digest::of(&a);
        let mut metas = store_chunks(&near, &a[..500], 500).await;
        metas.push(ChunkMeta {
            digest: B3Digest::of(&a[500..]),
            size: 500,
        });
        assert!(!cache.materialise(da, 1000, metas).await.unwrap());
        // A list of chunks that are held but are not this blob.
        let other = store_chunks(&near, &blob(1000, 8), 500).await;
        let err = cache.materialise(da, 1000, other).await.unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(cache.open_file(&da, 1000).is_none());
    }

    #[tokio::test]
    async fn files_of_an_earlier_run_are_checked_before_use() {
        let dir = tempfile::tempdir().unwrap();
        let near = Arc::new(MemoryBlobService::default());
        let a = blob(300, 9);
        let da = B3Digest::of(&a);
        let b = blob(300, 10);
        let db = B3Digest::of(&b);
        std::fs::write(dir.path().join(da.to_hex()), &a).unwrap();
        let mut damaged = b.clone();
        damaged[7] ^= 1;
        std::fs::write(dir.path().join(db.to_hex()), &damaged).unwrap();
        std::fs::write(dir.path().join(format!("{TMP_PREFIX}x")), b"half").unwrap();
        let cache = FileCache::open(dir.path(), near, 1 << 20).unwrap();
        assert!(!dir.path().join(format!("{TMP_PREFIX}x")).exists());
        assert!(!cache.is_ready(&da, 300));
        let mut held = Vec::new();
        cache
            .open_file(&da, 300)
            .unwrap()
            .read_to_end(&mut held)
            .unwrap();
        assert_eq!(held, a);
        assert!(cache.is_ready(&da, 300));
        assert!(cache.open_file(&db, 300).is_none());
        assert!(!dir.path().join(db.to_hex()).exists());
    }
}
