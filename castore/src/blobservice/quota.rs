//! A size quota with least-recently-used eviction for a redb blob service
//! that serves as a cache ([`crate::RedbBlobService::with_quota`]).
//!
//! Only chunk records count (directories and chunk lists are small and
//! kept), each at what it costs in the file ([`charged_bytes`]): redb keeps
//! a large value in a page of its own whose size is a power of two, so a
//! 65 KiB record takes 128 KiB. With that, and cache fills made durable
//! often enough that redb can reuse freed pages ([`sync_bytes_for`]), the
//! file stays within [`disk_bound`] of the quota.
//!
//! What is tracked is a chunk stored alone, or a pack of small chunks
//! (`blobservice/pack.rs`) as one: each gets a last-use tick (`chunk_lru`
//! and `chunk_atime`, or `pack_lru` and `pack_atime`); reads note the use
//! of their chunk or of its pack in memory, and every write transaction
//! folds those notes in, then evicts the least recently used chunks and
//! packs (oldest first, across both) until the total is within the quota.
//! Evicting a pack deletes it and the pointer records of its members that
//! still point to it. A chunk list may outlive some of its chunks: a cache
//! reads a missing chunk from far again.
//!
//! You must not put a quota on a store that is the only copy of its data:
//! eviction deletes chunks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use redb::{ReadableTable, WriteTransaction};

use super::pack::{POINTER_LEN, Pointer, pack_members};
use crate::redb_store::{
    CHUNK_ATIME, CHUNK_LRU, CHUNKS, META, PACK_ATIME, PACK_LRU, PACKS, meta_count, storage,
};
use crate::{B3Digest, Result};

/// The `META` key of the total size of tracked chunk records.
const CHUNK_BYTES: &str = "quota.chunk_bytes";

/// redb's page size, the unit of its allocations.
const PAGE: u64 = 4096;
/// A leaf page's header and one entry's offset, beside key and value.
const LEAF_OVERHEAD: u64 = 8;
/// A chunk's key (its digest).
const KEY_LEN: u64 = 32;
/// What a tracked chunk costs in the quota's own tables (its last use in
/// `chunk_lru` and `chunk_atime`), with B-tree slack.
const BOOKKEEPING_PER_CHUNK: u64 = 160;

/// The most the cache file may take on disk under a quota of `max_bytes`:
/// the quota, plus [`DISK_SLACK_PERCENT`] of it, plus
/// [`DISK_SLACK_BYTES`] (redb's own tables and headers, the directories,
/// chunk lists and path infos a cache keeps, and the pages freed since the
/// last durable commit, which redb cannot reuse yet). Measured as the
/// blocks the file holds: redb grows the file's length by doubling, and
/// the part not yet written takes no space.
pub fn disk_bound(max_bytes: u64) -> u64 {
    max_bytes
        .saturating_add(max_bytes / 100 * DISK_SLACK_PERCENT)
        .saturating_add(DISK_SLACK_BYTES)
}

/// The proportional part of [`disk_bound`]'s slack.
pub const DISK_SLACK_PERCENT: u64 = 10;
/// The fixed part of [`disk_bound`]'s slack.
pub const DISK_SLACK_BYTES: u64 = 4 << 20;

/// How many bytes a chunk record of `record_len` bytes takes in the file:
/// a record that fills more than half a page is stored in a page of its
/// own, sized to the next power of two; smaller ones share leaf pages,
/// which B-tree splits leave between half and fully used.
pub(crate) fn charged_bytes(record_len: u64) -> u64 {
    page_bytes(record_len.saturating_add(KEY_LEN))
}

/// How many bytes a pack of `value_len` bytes with `members` members
/// takes in the file: its value (under an 8-byte key), its bookkeeping,
/// and each member's pointer record in `castore.chunks`.
pub(crate) fn charged_pack_bytes(value_len: u64, members: u64) -> u64 {
    let pointer = (POINTER_LEN as u64 + KEY_LEN + LEAF_OVERHEAD) * 3 / 2;
    page_bytes(value_len.saturating_add(8)).saturating_add(members.saturating_mul(pointer))
}

/// What an entry of `key_and_value` bytes takes in the file, with its
/// quota bookkeeping (see [`charged_bytes`]).
fn page_bytes(key_and_value: u64) -> u64 {
    let need = key_and_value.saturating_add(LEAF_OVERHEAD);
    let page = if need > PAGE / 2 {
        need.checked_next_power_of_two()
            .unwrap_or(u64::MAX)
            .max(PAGE)
    } else {
        need.saturating_mul(3) / 2
    };
    page.saturating_add(BOOKKEEPING_PER_CHUNK)
}

/// Cache fills between two durable commits under a quota of `max_bytes`:
/// redb reuses pages freed in a commit only after a durable one, so these
/// fills (and the pages their commits copy) are extra room in the file.
/// A 32nd of the quota, between 256 KiB and
/// [`crate::CACHE_SYNC_BYTES`].
pub fn sync_bytes_for(max_bytes: u64) -> u64 {
    (max_bytes / 32).clamp(256 << 10, crate::CACHE_SYNC_BYTES)
}

/// Most uses noted between two write transactions. A mount that only reads
/// would otherwise grow the notes without end; beyond this, uses of chunks
/// not yet noted are dropped (their recency is then a little stale).
pub(crate) const MAX_NOTED_USES: usize = 1 << 16;

/// The quota state shared by clones of one service.
pub(crate) struct Quota {
    /// Most bytes of chunk records to keep.
    max_bytes: u64,
    /// Uses noted since the last write transaction: what → tick. A
    /// parking_lot (sync) lock, held only to add or take the map.
    recent: Mutex<HashMap<Use, u64>>,
    /// The last tick handed out, so ticks never go backwards in a process.
    last: AtomicU64,
    /// The tracked total as of the last write transaction (or the last
    /// [`tracked_bytes`] read), for figures.
    tracked: AtomicU64,
    /// Chunks evicted by this process.
    evicted_chunks: AtomicU64,
    /// What the evicted chunks were charged.
    evicted_bytes: AtomicU64,
}

/// A quota's figures at one moment
/// ([`crate::RedbBlobService::quota_figures`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuotaFigures {
    /// The most bytes of chunk records kept.
    pub max_bytes: u64,
    /// Bytes of chunk records held (as charged), as of the last write.
    pub used_bytes: u64,
    /// Chunks this process evicted to stay within the quota.
    pub evicted_chunks: u64,
    /// Bytes (as charged) of those chunks.
    pub evicted_bytes: u64,
}

impl Quota {
    /// Most bytes of chunks one write transaction should carry: redb
    /// cannot reuse the pages an eviction frees until the transaction that
    /// freed them commits, so a large batch grows the file past the quota.
    pub(crate) fn max_batch_bytes(&self) -> u64 {
        self.max_bytes / 16
    }

    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            recent: Mutex::default(),
            last: AtomicU64::new(0),
            tracked: AtomicU64::new(0),
            evicted_chunks: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
        }
    }

    /// The figures now.
    pub(crate) fn figures(&self) -> QuotaFigures {
        QuotaFigures {
            max_bytes: self.max_bytes,
            used_bytes: self.tracked.load(Ordering::Relaxed),
            evicted_chunks: self.evicted_chunks.load(Ordering::Relaxed),
            evicted_bytes: self.evicted_bytes.load(Ordering::Relaxed),
        }
    }

    /// Note the tracked total read from the database.
    pub(crate) fn set_tracked(&self, bytes: u64) {
        self.tracked.store(bytes, Ordering::Relaxed);
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

    /// Note that a chunk stored alone, or a pack, was just used.
    pub(crate) fn touch(&self, what: Use) {
        let t = self.tick();
        let mut recent = self.recent.lock();
        if recent.len() < MAX_NOTED_USES || recent.contains_key(&what) {
            recent.insert(what, t);
        }
    }

    /// Inside write transaction `txn` (with no table open): track what was
    /// just `stored` (each charged what it takes in the file), fold in the
    /// noted uses, and evict the least recently used chunks and packs
    /// beyond the quota.
    pub(crate) fn apply(&self, txn: &WriteTransaction, stored: &[Stored]) -> Result<()> {
        let recent = std::mem::take(&mut *self.recent.lock());
        let mut t = Tables {
            lru: txn
                .open_table(CHUNK_LRU)
                .map_err(storage("open chunk_lru"))?,
            atime: txn
                .open_table(CHUNK_ATIME)
                .map_err(storage("open chunk_atime"))?,
            pack_lru: txn.open_table(PACK_LRU).map_err(storage("open pack_lru"))?,
            pack_atime: txn
                .open_table(PACK_ATIME)
                .map_err(storage("open pack_atime"))?,
        };
        let mut meta = txn.open_table(META).map_err(storage("open meta"))?;
        let mut total = meta_count(&meta, CHUNK_BYTES)?;

        for s in stored {
            let tick = self.tick();
            match s {
                Stored::Chunk { digest, record_len } => {
                    let key = *digest.as_bytes();
                    total = total.saturating_sub(t.untrack_chunk(key)?);
                    let size = charged_bytes(*record_len);
                    t.atime
                        .insert(key, tick)
                        .map_err(storage("write chunk_atime"))?;
                    t.lru
                        .insert((tick, key), size)
                        .map_err(storage("write chunk_lru"))?;
                    total = total.saturating_add(size);
                }
                Stored::Pack {
                    id,
                    value_len,
                    members,
                } => {
                    // A member that was stored alone before (a record
                    // replaced by this fill) is no longer charged alone.
                    for m in members {
                        total = total.saturating_sub(t.untrack_chunk(*m.as_bytes())?);
                    }
                    let size = charged_pack_bytes(*value_len, members.len() as u64);
                    t.pack_atime
                        .insert(*id, tick)
                        .map_err(storage("write pack_atime"))?;
                    t.pack_lru
                        .insert((tick, *id), size)
                        .map_err(storage("write pack_lru"))?;
                    total = total.saturating_add(size);
                }
            }
        }

        for (what, tick) in recent {
            t.note_use(what, tick)?;
        }

        if total > self.max_bytes {
            let mut chunks = txn.open_table(CHUNKS).map_err(storage("open chunks"))?;
            let mut packs = txn.open_table(PACKS).map_err(storage("open packs"))?;
            while total > self.max_bytes {
                let oldest_chunk = t
                    .lru
                    .first()
                    .map_err(storage("evict"))?
                    .map(|(k, v)| (k.value(), v.value()));
                let oldest_pack = t
                    .pack_lru
                    .first()
                    .map_err(storage("evict"))?
                    .map(|(k, v)| (k.value(), v.value()));
                let (size, evicted) = match (oldest_chunk, oldest_pack) {
                    (None, None) => break,
                    (Some(((tc, key), size)), p) if p.is_none_or(|((tp, _), _)| tc < tp) => {
                        t.lru.remove((tc, key)).map_err(storage("evict"))?;
                        t.atime.remove(key).map_err(storage("evict"))?;
                        chunks.remove(key).map_err(storage("evict"))?;
                        (size, 1)
                    }
                    (_, Some(((tp, id), size))) => {
                        t.pack_lru.remove((tp, id)).map_err(storage("evict"))?;
                        t.pack_atime.remove(id).map_err(storage("evict"))?;
                        (size, evict_pack(&mut chunks, &mut packs, id)?)
                    }
                    // The guard of the first arm takes every chunk when
                    // there is no pack.
                    (Some(_), None) => break,
                };
                total = total.saturating_sub(size);
                // Counted before the commit: a transaction that then fails
                // overstates evictions, which is harmless for figures.
                self.evicted_chunks.fetch_add(evicted, Ordering::Relaxed);
                self.evicted_bytes.fetch_add(size, Ordering::Relaxed);
            }
        }
        meta.insert(CHUNK_BYTES, total)
            .map_err(storage("write meta"))?;
        self.set_tracked(total);
        Ok(())
    }
}

/// What a quota tracks, and a read notes the use of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Use {
    /// A chunk stored alone, by digest.
    Chunk(B3Digest),
    /// A pack, by id.
    Pack(u64),
}

/// What a write transaction stored, for [`Quota::apply`].
pub(crate) enum Stored {
    /// A chunk record stored alone, of `record_len` bytes.
    Chunk {
        /// The chunk.
        digest: B3Digest,
        /// Its record's length.
        record_len: u64,
    },
    /// A pack, and the chunks it holds (their pointers now point to it).
    Pack {
        /// The pack's id.
        id: u64,
        /// Its value's length.
        value_len: u64,
        /// Its members.
        members: Vec<B3Digest>,
    },
}

/// The quota's tables, open in one write transaction.
struct Tables<'txn> {
    lru: redb::Table<'txn, (u64, [u8; 32]), u64>,
    atime: redb::Table<'txn, [u8; 32], u64>,
    pack_lru: redb::Table<'txn, (u64, u64), u64>,
    pack_atime: redb::Table<'txn, u64, u64>,
}

impl Tables<'_> {
    /// Stop tracking chunk `key` alone (its record was replaced); returns
    /// what it was charged (0 if it was not tracked).
    fn untrack_chunk(&mut self, key: [u8; 32]) -> Result<u64> {
        let old = self
            .atime
            .remove(key)
            .map_err(storage("write chunk_atime"))?
            .map(|g| g.value());
        let Some(old) = old else { return Ok(0) };
        Ok(self
            .lru
            .remove((old, key))
            .map_err(storage("write chunk_lru"))?
            .map(|g| g.value())
            .unwrap_or(0))
    }

    /// Move `what` to its use at `tick`. Untracked ones (stored before the
    /// quota, or evicted since) stay untracked; stale notes change nothing.
    fn note_use(&mut self, what: Use, tick: u64) -> Result<()> {
        match what {
            Use::Chunk(digest) => {
                let key = *digest.as_bytes();
                let old = self
                    .atime
                    .get(key)
                    .map_err(storage("read chunk_atime"))?
                    .map(|g| g.value());
                let Some(old) = old.filter(|old| *old < tick) else {
                    return Ok(());
                };
                let size = self
                    .lru
                    .remove((old, key))
                    .map_err(storage("write chunk_lru"))?
                    .map(|g| g.value());
                if let Some(size) = size {
                    self.lru
                        .insert((tick, key), size)
                        .map_err(storage("write chunk_lru"))?;
                    self.atime
                        .insert(key, tick)
                        .map_err(storage("write chunk_atime"))?;
                }
            }
            Use::Pack(id) => {
                let old = self
                    .pack_atime
                    .get(id)
                    .map_err(storage("read pack_atime"))?
                    .map(|g| g.value());
                let Some(old) = old.filter(|old| *old < tick) else {
                    return Ok(());
                };
                let size = self
                    .pack_lru
                    .remove((old, id))
                    .map_err(storage("write pack_lru"))?
                    .map(|g| g.value());
                if let Some(size) = size {
                    self.pack_lru
                        .insert((tick, id), size)
                        .map_err(storage("write pack_lru"))?;
                    self.pack_atime
                        .insert(id, tick)
                        .map_err(storage("write pack_atime"))?;
                }
            }
        }
        Ok(())
    }
}

/// Delete pack `id` and the pointers of its members that still point to it
/// (a member filled again since keeps its new record). Returns how many
/// chunks that removed. A pack whose header is corrupt leaves its
/// pointers, which then read as missing chunks.
fn evict_pack(
    chunks: &mut redb::Table<'_, [u8; 32], &'static [u8]>,
    packs: &mut redb::Table<'_, u64, &'static [u8]>,
    id: u64,
) -> Result<u64> {
    let members = {
        let Some(value) = packs.remove(id).map_err(storage("evict pack"))? else {
            return Ok(0);
        };
        match pack_members(id, value.value()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(pack = id, error = %crate::Report(&e), "evicting a corrupt pack");
                return Ok(0);
            }
        }
    };
    let mut removed = 0;
    for (digest, _, _) in members {
        let key = *digest.as_bytes();
        let here = match chunks.get(key).map_err(storage("read chunk"))? {
            Some(record) => matches!(
                Pointer::decode(&digest, record.value()),
                Ok(Some(p)) if p.pack == id
            ),
            None => false,
        };
        if here {
            chunks.remove(key).map_err(storage("evict"))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The bytes of chunk records a quota tracks in `db` (for tests and stats).
pub(crate) fn tracked_bytes(db: &redb::Database) -> Result<u64> {
    let txn = db.begin_read().map_err(storage("begin read"))?;
    let meta = txn.open_table(META).map_err(storage("open meta"))?;
    meta_count(&meta, CHUNK_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_charged_their_pages() {
        assert_eq!(charged_bytes(65_537), (128 << 10) + BOOKKEEPING_PER_CHUNK);
        assert_eq!(charged_bytes(4000), 4096 + BOOKKEEPING_PER_CHUNK);
        assert_eq!(charged_bytes(4100), 8192 + BOOKKEEPING_PER_CHUNK);
        assert_eq!(charged_bytes(100), 210 + BOOKKEEPING_PER_CHUNK);
        assert_eq!(charged_bytes(u64::MAX), u64::MAX);
        assert_eq!(sync_bytes_for(8 << 20), 256 << 10);
        assert_eq!(sync_bytes_for(1 << 40), crate::CACHE_SYNC_BYTES);
        assert_eq!(disk_bound(100 << 20), (110 << 20) + DISK_SLACK_BYTES);
    }
}
