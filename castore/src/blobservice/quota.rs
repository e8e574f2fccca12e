//! A size quota with least-recently-used eviction for a redb blob service
//! that serves as a cache ([`crate::RedbBlobService::with_quota`]).
//!
//! Only chunk records count (directories and chunk lists are small and
//! kept). Each chunk the service stores gets a last-use tick; reads note
//! their chunk's use in memory, and every write transaction folds those
//! notes in, then evicts the least recently used chunks until the total is
//! within the quota. A chunk list may outlive some of its chunks: a cache
//! reads a missing chunk from far again.
//!
//! You must not put a quota on a store that is the only copy of its data:
//! eviction deletes chunks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use redb::{ReadableTable, WriteTransaction};

use crate::redb_store::{CHUNK_ATIME, CHUNK_LRU, CHUNKS, META, storage};
use crate::{B3Digest, Result};

/// The `META` key of the total size of tracked chunk records.
const CHUNK_BYTES: &str = "quota.chunk_bytes";

/// Most uses noted between two write transactions. A mount that only reads
/// would otherwise grow the notes without end; beyond this, uses of chunks
/// not yet noted are dropped (their recency is then a little stale).
pub(crate) const MAX_NOTED_USES: usize = 1 << 16;

/// The quota state shared by clones of one service.
pub(crate) struct Quota {
    /// Most bytes of chunk records to keep.
    max_bytes: u64,
    /// Uses noted since the last write transaction: digest → tick. A
    /// parking_lot (sync) lock, held only to add or take the map.
    recent: Mutex<HashMap<B3Digest, u64>>,
    /// The last tick handed out, so ticks never go backwards in a process.
    last: AtomicU64,
}

impl Quota {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            recent: Mutex::default(),
            last: AtomicU64::new(0),
        }
    }

    /// Wall-clock nanoseconds, strictly above every tick already given out
    /// in this process (so two uses never tie, and order survives restarts
    /// as long as the clock does).
    fn tick(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let next = |prev: u64| now.max(prev.saturating_add(1));
        match self
            .last
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| Some(next(p)))
        {
            Ok(prev) | Err(prev) => next(prev),
        }
    }

    /// Note that `digest` was just used.
    pub(crate) fn touch(&self, digest: B3Digest) {
        let t = self.tick();
        let mut recent = self.recent.lock();
        if recent.len() < MAX_NOTED_USES || recent.contains_key(&digest) {
            recent.insert(digest, t);
        }
    }

    /// Inside write transaction `txn` (with no table open): track the
    /// records just `stored` (digest, record length), fold in the noted
    /// uses, and evict least recently used chunks beyond the quota.
    pub(crate) fn apply(&self, txn: &WriteTransaction, stored: &[(B3Digest, u64)]) -> Result<()> {
        let recent = std::mem::take(&mut *self.recent.lock());
        let mut lru = txn
            .open_table(CHUNK_LRU)
            .map_err(storage("open chunk_lru"))?;
        let mut atime = txn
            .open_table(CHUNK_ATIME)
            .map_err(storage("open chunk_atime"))?;
        let mut meta = txn.open_table(META).map_err(storage("open meta"))?;
        let mut total = meta
            .get(CHUNK_BYTES)
            .map_err(storage("read meta"))?
            .map(|g| g.value())
            .unwrap_or(0);

        for (digest, size) in stored {
            let key = *digest.as_bytes();
            let t = self.tick();
            let old = atime
                .insert(key, t)
                .map_err(storage("write chunk_atime"))?
                .map(|g| g.value());
            if let Some(old) = old {
                // A replaced record: forget its old size and place.
                let old_size = lru
                    .remove((old, key))
                    .map_err(storage("write chunk_lru"))?
                    .map(|g| g.value());
                total = total.saturating_sub(old_size.unwrap_or(0));
            }
            lru.insert((t, key), *size)
                .map_err(storage("write chunk_lru"))?;
            total = total.saturating_add(*size);
        }

        for (digest, t) in recent {
            let key = *digest.as_bytes();
            let old = atime
                .get(key)
                .map_err(storage("read chunk_atime"))?
                .map(|g| g.value());
            // Untracked chunks (stored before the quota, or evicted since)
            // stay untracked; stale notes change nothing.
            let Some(old) = old.filter(|old| *old < t) else {
                continue;
            };
            let size = lru
                .remove((old, key))
                .map_err(storage("write chunk_lru"))?
                .map(|g| g.value());
            if let Some(size) = size {
                lru.insert((t, key), size)
                    .map_err(storage("write chunk_lru"))?;
                atime.insert(key, t).map_err(storage("write chunk_atime"))?;
            }
        }

        if total > self.max_bytes {
            let mut chunks = txn.open_table(CHUNKS).map_err(storage("open chunks"))?;
            while total > self.max_bytes {
                let Some((k, v)) = lru.pop_first().map_err(storage("evict"))? else {
                    break;
                };
                let ((_, key), size) = (k.value(), v.value());
                drop((k, v));
                atime.remove(key).map_err(storage("evict"))?;
                chunks.remove(key).map_err(storage("evict"))?;
                total = total.saturating_sub(size);
            }
        }
        meta.insert(CHUNK_BYTES, total)
            .map_err(storage("write meta"))?;
        Ok(())
    }
}

/// The bytes of chunk records a quota tracks in `db` (for tests and stats).
pub(crate) fn tracked_bytes(db: &redb::Database) -> Result<u64> {
    let txn = db.begin_read().map_err(storage("begin read"))?;
    let meta = txn.open_table(META).map_err(storage("open meta"))?;
    Ok(meta
        .get(CHUNK_BYTES)
        .map_err(storage("read meta"))?
        .map(|g| g.value())
        .unwrap_or(0))
}
