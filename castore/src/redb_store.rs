//! [`RedbStore`]: the one redb database file that holds the whole embedded
//! store. castore's tables live here, and so do other crates' (the store
//! crate keeps its path infos in the same file): redb allows one open handle
//! per file and process, so everyone shares this handle.
//!
//! castore's tables (keys are 32-byte BLAKE3 digests):
//! - `castore.chunks`: chunk digest → one flag byte ([`CHUNK_RAW`] or
//!   [`CHUNK_ZSTD`]) then the chunk's bytes, raw or as one zstd frame.
//!   Single-chunk blobs are here under their own digest. In a cache (a
//!   blob service with a quota), a small chunk filled together with others
//!   is kept in a pack instead, and its record here is a pointer: flag
//!   [`CHUNK_PACKED`], then the pack's id (u64 LE), the member's offset and
//!   length in the pack (u32 LE each), 17 bytes in all.
//! - `castore.packs`: pack id (u64, handed out in order) → a pack of small
//!   chunk records filled together (see `blobservice/pack.rs`): version
//!   byte `1`, member count (u16 LE), per member its digest, offset and
//!   length (u32 LE each) in the value, then the members' records as
//!   `castore.chunks` would hold them (flag byte, raw bytes or zstd frame).
//! - `castore.blob_chunks`: blob digest → its chunk list (blobs of two or
//!   more chunks only), 40 bytes per chunk: digest, then size as u64 LE.
//! - `castore.directories`: directory digest → its canonical encoding.
//! - `castore.chunk_lru`, `castore.chunk_atime`, `castore.meta`: the
//!   bookkeeping of a size quota, used only by a blob service opened with
//!   one (a cache): last use of each chunk it stored, and their total size.
//! - `castore.pack_lru`, `castore.pack_atime`: the same for packs (a
//!   pack's members are tracked as one).
//! - `castore.written.v1`: (kind, digest) → when a store's writers last
//!   wrote or reused the record (Unix milliseconds), for garbage collection's
//!   grace period. Caches (a quota) keep none.
//!
//! Invariants: a record is written only under the digest of its content
//! (chunks after decompression, directories as encoded); every read checks
//! it again and returns [`Error::Integrity`] if it does not hold.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use redb::{Database, TableDefinition};

use crate::redb_file::{DiskFull, FileLock, LockError, StoreFile};
use crate::{B3Digest, Error, Result};

/// Name of the database file inside a `redb://` store directory.
pub const STORE_FILE_NAME: &str = "store.redb";

/// Chunk record flag: the bytes follow as they are.
pub const CHUNK_RAW: u8 = 0x00;
/// Chunk record flag: one zstd frame follows.
pub const CHUNK_ZSTD: u8 = 0x01;
/// Chunk record flag: the chunk's record is a member of a pack
/// (`castore.packs`); its pack id (u64 LE), offset and length (u32 LE
/// each) follow.
pub const CHUNK_PACKED: u8 = 0x02;

pub(crate) const CHUNKS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("castore.chunks");
pub(crate) const BLOB_CHUNKS: TableDefinition<[u8; 32], &[u8]> =
    TableDefinition::new("castore.blob_chunks");
pub(crate) const DIRECTORIES: TableDefinition<[u8; 32], &[u8]> =
    TableDefinition::new("castore.directories");
/// Quota bookkeeping (see `blobservice::quota`): (last use, chunk digest) →
/// record size, oldest first.
pub(crate) const CHUNK_LRU: TableDefinition<(u64, [u8; 32]), u64> =
    TableDefinition::new("castore.chunk_lru");
/// Quota bookkeeping: chunk digest → last use (its key in `CHUNK_LRU`).
pub(crate) const CHUNK_ATIME: TableDefinition<[u8; 32], u64> =
    TableDefinition::new("castore.chunk_atime");
/// Packs of small chunk records filled together (a cache's only): pack
/// id → header and member records (see `blobservice::pack`).
pub(crate) const PACKS: TableDefinition<u64, &[u8]> = TableDefinition::new("castore.packs");
/// Quota bookkeeping of packs: (last use, pack id) → the bytes the pack is
/// charged, oldest first.
pub(crate) const PACK_LRU: TableDefinition<(u64, u64), u64> =
    TableDefinition::new("castore.pack_lru");
/// Quota bookkeeping: pack id → last use (its key in `PACK_LRU`).
pub(crate) const PACK_ATIME: TableDefinition<u64, u64> = TableDefinition::new("castore.pack_atime");
/// Counters, e.g. the bytes of chunk records the quota tracks.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("castore.meta");
/// When each record of a store (not a cache) was last written or found
/// already there by a writer: (kind, digest) → Unix seconds. Garbage
/// collection never deletes a record younger than its grace period, so an
/// upload whose path info is not written yet keeps what it stored or
/// reused (`crate::gc`). Times are Unix milliseconds. Kinds: [`KIND_CHUNK`], [`KIND_CHUNK_LIST`],
/// [`KIND_DIRECTORY`]. A record without an entry (written before this
/// table existed) counts as old.
pub(crate) const WRITTEN: TableDefinition<(u8, [u8; 32]), u64> =
    TableDefinition::new("castore.written.v1");
/// [`WRITTEN`] kind of a chunk (or a single-chunk blob).
pub(crate) const KIND_CHUNK: u8 = 0;
/// [`WRITTEN`] kind of a blob's chunk list.
pub(crate) const KIND_CHUNK_LIST: u8 = 1;
/// [`WRITTEN`] kind of a directory.
pub(crate) const KIND_DIRECTORY: u8 = 2;

/// The counter `key` of the [`META`] table in `meta`, 0 if it was never
/// written.
pub(crate) fn meta_count(
    meta: &impl redb::ReadableTable<&'static str, u64>,
    key: &str,
) -> crate::Result<u64> {
    Ok(meta
        .get(key)
        .map_err(storage("read meta"))?
        .map(|g| g.value())
        .unwrap_or(0))
}

/// Milliseconds since the Unix epoch at `t` (0 before it), the unit of
/// [`WRITTEN`].
pub(crate) fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// [`unix_ms`] now.
pub(crate) fn unix_now() -> u64 {
    unix_ms(std::time::SystemTime::now())
}

/// redb's own page cache, per open database. redb's default (1 GiB) made a
/// mount's resident memory grow past 400 MB on one toolchain; the kernel's
/// page cache holds the file's hot pages anyway.
pub const REDB_CACHE_BYTES: usize = 32 << 20;

/// redb's page cache for a mount's local cache: small, so that the mount's
/// resident memory stays bounded under load (the kernel's page cache holds
/// the file's hot pages anyway).
pub const MOUNT_CACHE_REDB_CACHE_BYTES: usize = 4 << 20;

/// At most this long passes between durable commits of cache fills.
pub const CACHE_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// At most this many bytes of cache fills go between durable commits.
pub const CACHE_SYNC_BYTES: u64 = 4 << 20;

/// Cache fills since the last durable one.
struct CacheSync {
    /// When it was.
    at: std::time::Instant,
    /// Bytes filled since.
    bytes: u64,
    /// Bytes of fills that make the next one durable
    /// ([`CACHE_SYNC_BYTES`] unless set lower for a small quota).
    limit: u64,
}

impl CacheSync {
    fn new() -> Self {
        Self {
            at: std::time::Instant::now(),
            bytes: 0,
            limit: CACHE_SYNC_BYTES,
        }
    }
}

/// A shared handle on the embedded store's redb database. Clones share the
/// same open database.
///
/// The database can be reopened in place ([`RedbStore::recover`]): after an
/// I/O error (a full disk) redb fails every call until it is opened again.
/// So the services over a store ask it for the current handle
/// ([`RedbStore::database`]) for each operation and must not keep it.
#[derive(Clone)]
pub struct RedbStore {
    /// The open database; other crates open their own tables in it. A
    /// parking_lot (sync) lock: read for an instant to clone the handle,
    /// written only while [`RedbStore::recover`] swaps in a new one.
    db: Arc<RwLock<Arc<Database>>>,
    /// When a cache fill last committed durably (see
    /// [`RedbStore::cache_fill_durability`]). A std mutex: held for an
    /// instant, never across an await.
    cache_synced: Arc<std::sync::Mutex<CacheSync>>,
    /// Where it lives, for messages.
    path: Arc<PathBuf>,
    /// The file's lock and disk-full flag, for a store opened from its
    /// path (one opened elsewhere cannot be reopened).
    file: Option<Arc<FileState>>,
}

/// What a store opened from its path keeps of its file.
struct FileState {
    /// Held while any clone of the store lives: one process per file.
    _lock: FileLock,
    /// Set when a write met a full disk.
    full: Arc<DiskFull>,
    /// redb's page cache, for reopening.
    cache_bytes: usize,
}

/// What [`RedbStore::recover`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// The database works; nothing was done.
    Healthy,
    /// It had failed (after a full disk when `disk_full`) and was reopened.
    Reopened {
        /// Whether a write had met a full disk.
        disk_full: bool,
    },
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Open the database file at `path`, creating it if absent, and create
    /// castore's tables. This blocks (it may repair a file left by a crash):
    /// call it at startup or from `spawn_blocking`, and only once per file
    /// and process (a second open is refused); share clones instead.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_cache(path, REDB_CACHE_BYTES)
    }

    /// Like [`RedbStore::open`], with a page cache of `cache_bytes` instead
    /// of the default 32 MiB (a mount's cache gets a small one: the
    /// kernel caches the file's pages anyway, and the mount's memory must
    /// stay bounded).
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let lock = FileLock::acquire(&path).map_err(|e| match e {
            LockError::Busy => Error::storage_msg(format!(
                "{} is in use by another process (a running `storefs serve` or `storefs mount`?); \
                 use --store grpc://... to reach it through that process",
                path.display()
            )),
            LockError::Io(e) => {
                Error::storage(format!("opening redb database {}", path.display()), e)
            }
        })?;
        let full = Arc::new(DiskFull::default());
        let db = open_database(&path, &full, cache_bytes)?;
        let store = Self {
            db: Arc::new(RwLock::new(Arc::new(db))),
            cache_synced: Arc::new(std::sync::Mutex::new(CacheSync::new())),
            path: Arc::new(path),
            file: Some(Arc::new(FileState {
                _lock: lock,
                full,
                cache_bytes,
            })),
        };
        store.create_tables()?;
        Ok(store)
    }

    /// A store over a database opened elsewhere (by redb's own means). It
    /// works like any other but cannot be reopened by
    /// [`RedbStore::recover`]. `label` names it in messages.
    pub fn from_database(db: Arc<Database>, label: impl Into<PathBuf>) -> Result<Self> {
        let store = Self {
            db: Arc::new(RwLock::new(db)),
            cache_synced: Arc::new(std::sync::Mutex::new(CacheSync::new())),
            path: Arc::new(label.into()),
            file: None,
        };
        store.create_tables()?;
        Ok(store)
    }

    /// If the database has failed (redb answers "Previous I/O error" to
    /// everything after a write failed, e.g. on a full disk), open it
    /// again: it comes back as of its last durable commit. Calls in flight
    /// on the old handle fail; later ones use the new one. Blocks (the
    /// reopen repairs the file): call it from `spawn_blocking`.
    ///
    /// Reopening does not make room: on a disk that is still full the next
    /// write fails again, so callers must stop writing for a while.
    pub fn recover(&self) -> Result<Recovery> {
        let Some(file) = &self.file else {
            return Ok(Recovery::Healthy);
        };
        let mut slot = self.db.write();
        if !has_failed(&slot) {
            return Ok(Recovery::Healthy);
        }
        let disk_full = file.full.take();
        let db = open_database(&self.path, &file.full, file.cache_bytes)?;
        *slot = Arc::new(db);
        Ok(Recovery::Reopened { disk_full })
    }

    /// The size of the database file now, in bytes.
    pub fn file_len(&self) -> Result<u64> {
        std::fs::metadata(&*self.path)
            .map(|m| m.len())
            .map_err(|e| Error::storage(format!("stat {}", self.path.display()), e))
    }

    /// Open (creating the directory if needed) the store in directory `dir`:
    /// the database is the file [`STORE_FILE_NAME`] inside it. Blocks like
    /// [`RedbStore::open`].
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::storage(format!("creating store directory {}", dir.display()), e)
        })?;
        Self::open(dir.join(STORE_FILE_NAME))
    }

    /// [`RedbStore::open_dir`] with a page cache of `cache_bytes`
    /// ([`RedbStore::open_with_cache`]).
    pub fn open_dir_with_cache(dir: impl AsRef<Path>, cache_bytes: usize) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::storage(format!("creating store directory {}", dir.display()), e)
        })?;
        Self::open_with_cache(dir.join(STORE_FILE_NAME), cache_bytes)
    }

    /// The database now, for crates that keep their own tables in it.
    /// Take it for one operation and let go: after [`RedbStore::recover`]
    /// it is a new one.
    pub fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db.read())
    }

    /// The durability for a cache fill (a chunk, chunk list or directory
    /// that a cache keeps of what it fetched). On Linux every durable redb
    /// commit is an `fdatasync`; one per fetched chunk made a cold mount
    /// read several times slower. So fills commit without durability,
    /// except one every [`CACHE_SYNC_INTERVAL`] or [`CACHE_SYNC_BYTES`] of
    /// fills, whichever comes first, which makes all before it durable too.
    /// The byte bound matters as much as the time: redb frees pages only in
    /// durable commits, so unsynced fills grow the file. A crash loses at
    /// most that much of the cache, which is fetched again; redb stays
    /// consistent. You must call [`RedbStore::flush`] before a clean exit.
    pub(crate) fn cache_fill_durability(&self, bytes: u64) -> redb::Durability {
        let mut sync = self.cache_sync();
        sync.bytes = sync.bytes.saturating_add(bytes);
        if sync.at.elapsed() >= CACHE_SYNC_INTERVAL || sync.bytes >= sync.limit {
            sync.at = std::time::Instant::now();
            sync.bytes = 0;
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        }
    }

    /// Make cache fills durable after at most `bytes` of them (instead of
    /// [`CACHE_SYNC_BYTES`]; a store under a small quota needs less
    /// room for pages redb cannot reuse yet). Values above
    /// [`CACHE_SYNC_BYTES`] are lowered to it.
    pub fn set_cache_sync_bytes(&self, bytes: u64) {
        self.cache_sync().limit = bytes.clamp(1, CACHE_SYNC_BYTES);
    }

    fn cache_sync(&self) -> std::sync::MutexGuard<'_, CacheSync> {
        match self.cache_synced.lock() {
            Ok(g) => g,
            // A poisoned lock only means another fill panicked mid-check;
            // the counters inside are still valid numbers.
            Err(p) => p.into_inner(),
        }
    }

    /// Make every commit so far durable (an empty durable commit). Blocks:
    /// call it from `spawn_blocking` or at exit.
    pub fn flush(&self) -> Result<()> {
        let mut txn = self
            .database()
            .begin_write()
            .map_err(|e| Error::storage(format!("flush {}", self.path.display()), e))?;
        txn.set_durability(redb::Durability::Immediate);
        txn.commit()
            .map_err(|e| Error::storage(format!("flush {}", self.path.display()), e))
    }

    /// Give the space of deleted records back to the file system (redb's
    /// compaction), when nothing else holds the database now. Blocking.
    /// Returns whether it compacted.
    pub fn compact(&self) -> Result<bool> {
        let mut slot = self.db.write();
        match std::sync::Arc::get_mut(&mut slot) {
            Some(db) => db
                .compact()
                .map_err(|e| Error::storage(format!("compacting {}", self.path().display()), e)),
            None => Ok(false),
        }
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A blob service over this database, with the default chunking.
    pub fn blob_service(&self) -> crate::RedbBlobService {
        crate::RedbBlobService::new(self.clone())
    }

    /// A directory service over this database.
    pub fn directory_service(&self) -> crate::RedbDirectoryService {
        crate::RedbDirectoryService::new(self.clone())
    }

    fn create_tables(&self) -> Result<()> {
        let err = |e: crate::BoxError| {
            Error::storage(
                format!("creating castore tables in {}", self.path.display()),
                e,
            )
        };
        let db = self.database();
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        for table in [CHUNKS, BLOB_CHUNKS, DIRECTORIES] {
            txn.open_table(table).map_err(|e| err(e.into()))?;
        }
        txn.open_table(CHUNK_LRU).map_err(|e| err(e.into()))?;
        txn.open_table(CHUNK_ATIME).map_err(|e| err(e.into()))?;
        txn.open_table(META).map_err(|e| err(e.into()))?;
        txn.open_table(PACKS).map_err(|e| err(e.into()))?;
        txn.open_table(PACK_LRU).map_err(|e| err(e.into()))?;
        txn.open_table(PACK_ATIME).map_err(|e| err(e.into()))?;
        txn.open_table(WRITTEN).map_err(|e| err(e.into()))?;
        txn.commit().map_err(|e| err(e.into()))
    }
}

/// Open the database file at `path` through a [`StoreFile`] (the caller
/// holds the file's lock).
fn open_database(path: &Path, full: &Arc<DiskFull>, cache_bytes: usize) -> Result<Database> {
    let err =
        |e: crate::BoxError| Error::storage(format!("opening redb database {}", path.display()), e);
    let file = StoreFile::open(path, Arc::clone(full)).map_err(|e| err(e.into()))?;
    Database::builder()
        .set_cache_size(cache_bytes)
        .create_with_backend(file)
        .map_err(|e| err(e.into()))
}

/// Whether `db` has failed for good (a write failed; redb now answers
/// every call with "Previous I/O error"). Blocks behind a write in
/// progress.
fn has_failed(db: &Database) -> bool {
    match db.begin_write() {
        Ok(txn) => {
            // Nothing written: abort cannot fail in a way that matters.
            let _ = txn.abort();
            false
        }
        Err(redb::TransactionError::Storage(redb::StorageError::PreviousIo)) => true,
        Err(_) => false,
    }
}

/// Run blocking redb work off the async threads, at most
/// [`MAX_BLOCKING_REDB`] at once in the process: more callers wait (as
/// tasks, holding no thread). Unbounded, 64 concurrent readers of a mount
/// grew tokio's blocking pool to a hundred threads, each with its stack and
/// its share of malloc's memory; redb serialises writers anyway, and two
/// cores gain nothing from dozens of readers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_BLOCKING_REDB);
    let permit = SLOTS
        .acquire()
        .await
        .map_err(|e| Error::storage("redb task slots", e))?;
    let r = tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::storage("redb task failed", e))?;
    drop(permit);
    r
}

/// Most blocking redb operations (reads, fills, commits) running at once.
pub const MAX_BLOCKING_REDB: usize = 16;

/// Turn a redb error into ours, saying what was being done.
pub(crate) fn storage<E: Into<crate::BoxError>>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::storage(format!("redb {what}"), e)
}

/// Encode a chunk record: zstd (level 1) only when that makes it smaller.
///
/// The compressed frame is written straight after the flag byte, into
/// room as long as the raw chunk: if zstd cannot fit the frame there, it
/// would not have been smaller, and the chunk is stored raw. zstd contexts
/// are reused (making one costs more than compressing a small file) from a
/// small shared pool, not one per thread: encoding runs on tokio's blocking
/// threads, of which a loaded mount has dozens, and each context holds
/// about a megabyte.
pub(crate) fn encode_chunk(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; data.len() + 1];
    let mut compressor = COMPRESSORS
        .lock()
        .pop()
        .or_else(|| zstd::bulk::Compressor::new(ZSTD_LEVEL).ok());
    // A frame longer than `data` fails here (dstSize_tooSmall) and the
    // chunk goes raw.
    let compressed = compressor
        .as_mut()
        .and_then(|c| c.compress_to_buffer(data, &mut out[1..]).ok());
    if let Some(c) = compressor {
        let mut pool = COMPRESSORS.lock();
        if pool.len() < POOLED_COMPRESSORS {
            pool.push(c);
        }
    }
    match compressed {
        Some(n) if n < data.len() => {
            out[0] = CHUNK_ZSTD;
            out.truncate(n + 1);
        }
        _ => {
            out[0] = CHUNK_RAW;
            out[1..].copy_from_slice(data);
        }
    }
    out
}

/// The record of a chunk kept as `bytes` behind the flag byte `flag`:
/// [`CHUNK_ZSTD`] for a zstd frame that was checked to decode to the
/// chunk, [`CHUNK_RAW`] for bytes their holder found not worth
/// compressing. The bytes go in as they are.
pub(crate) fn encode_record(flag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(flag);
    out.extend_from_slice(bytes);
    out
}

/// Idle zstd contexts kept for reuse, at most [`POOLED_COMPRESSORS`]. A
/// parking_lot (sync) lock, held only to take or return one.
static COMPRESSORS: parking_lot::Mutex<Vec<zstd::bulk::Compressor<'static>>> =
    parking_lot::Mutex::new(Vec::new());

/// Most idle zstd contexts kept: about one per core compressing at once.
const POOLED_COMPRESSORS: usize = 4;

/// zstd level of stored chunks: the fastest of the normal levels.
const ZSTD_LEVEL: i32 = 1;

/// Largest decoded size a chunk record's zstd frame header is believed
/// for: the output is allocated once at that size. Larger claims (or none)
/// decode into an output that grows as the frame really decodes.
const TRUSTED_FRAME_SIZE: u64 = 16 << 20;

/// Decode one zstd frame. The frame header names the decoded size (every
/// record written here has it): one allocation of exactly that size, where
/// a growing buffer reached up to twice the chunk while it decoded, and
/// many reads at once held many such buffers. A header that lies makes
/// decoding fail, not allocate more than [`TRUSTED_FRAME_SIZE`].
fn decode_zstd(frame: &[u8]) -> std::io::Result<Vec<u8>> {
    match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n <= TRUSTED_FRAME_SIZE => {
            crate::blobservice::decompress_sized(frame, n as usize)
        }
        _ => zstd::stream::decode_all(frame),
    }
}

/// Decode a chunk record and check it hashes to `digest`.
pub(crate) fn decode_chunk(digest: &B3Digest, record: &[u8]) -> Result<bytes::Bytes> {
    let corrupt = |why: String| Error::storage(format!("chunk record {digest} is corrupt"), why);
    let data = match record.split_first() {
        Some((&CHUNK_RAW, rest)) => rest.to_vec(),
        Some((&CHUNK_ZSTD, rest)) => {
            decode_zstd(rest).map_err(|e| corrupt(format!("zstd: {e}")))?
        }
        Some((&CHUNK_PACKED, _)) => {
            return Err(corrupt("a pack pointer where a record belongs".into()));
        }
        Some((flag, _)) => return Err(corrupt(format!("unknown flag byte {flag:#04x}"))),
        None => return Err(corrupt("empty record".into())),
    };
    crate::verify_chunk(digest, &data)?;
    Ok(bytes::Bytes::from(data))
}

/// Bytes per chunk-list entry: digest, then size as u64 LE.
const LIST_ENTRY_LEN: usize = 32 + 8;

/// Encode a chunk list.
pub(crate) fn encode_chunk_list(chunks: &[crate::ChunkMeta]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks.len() * LIST_ENTRY_LEN);
    for c in chunks {
        out.extend_from_slice(c.digest.as_bytes());
        out.extend_from_slice(&c.size.to_le_bytes());
    }
    out
}

/// Decode a chunk list.
pub(crate) fn decode_chunk_list(blob: &B3Digest, record: &[u8]) -> Result<Vec<crate::ChunkMeta>> {
    if !record.len().is_multiple_of(LIST_ENTRY_LEN) || record.len() < 2 * LIST_ENTRY_LEN {
        return Err(Error::storage_msg(format!(
            "chunk list record of blob {blob} is corrupt: {} bytes",
            record.len()
        )));
    }
    let mut out = Vec::with_capacity(record.len() / LIST_ENTRY_LEN);
    for entry in record.chunks_exact(LIST_ENTRY_LEN) {
        let (d, s) = entry.split_at(32);
        // Both slices have the lengths split_at gives them (32 and 8), so
        // these conversions cannot fail; map the error anyway.
        let digest = B3Digest::try_from(d)
            .map_err(|e| Error::storage(format!("chunk list of blob {blob}"), e))?;
        let size_bytes: [u8; 8] = s
            .try_into()
            .map_err(|_| Error::storage_msg(format!("chunk list of blob {blob}: bad size")))?;
        out.push(crate::ChunkMeta {
            digest,
            size: u64::from_le_bytes(size_bytes),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_chunks_are_compressed_and_others_not() {
        let zeroes = vec![0u8; 65536];
        let rec = encode_chunk(&zeroes);
        assert_eq!(rec[0], CHUNK_ZSTD);
        assert!(rec.len() < 1000);
        assert_eq!(
            decode_chunk(&B3Digest::of(&zeroes), &rec).unwrap().as_ref(),
            &zeroes[..]
        );
        // BLAKE3's XOF output is incompressible.
        let mut noise = vec![0u8; 4096];
        blake3::Hasher::new()
            .update(b"seed")
            .finalize_xof()
            .fill(&mut noise);
        let rec = encode_chunk(&noise);
        assert_eq!(rec[0], CHUNK_RAW);
        assert_eq!(&rec[1..], &noise[..]);
    }

    #[test]
    fn zstd_frames_decode_into_one_exact_allocation_and_liars_fail() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let rec = encode_chunk(&data);
        assert_eq!(rec[0], CHUNK_ZSTD);
        let out = decode_zstd(&rec[1..]).unwrap();
        assert_eq!(out, data);
        assert_eq!(out.capacity(), data.len(), "allocated once, exactly");
        let mut liar = zstd::bulk::Compressor::new(1).unwrap();
        liar.include_contentsize(false).unwrap();
        let frame = liar.compress(&data).unwrap();
        assert_eq!(decode_zstd(&frame).unwrap(), data, "no size: grows");
        // A header claiming 10 bytes before 100,000 more: an error, with
        // no more than 10 bytes allocated for it.
        let mut forged = zstd::bulk::compress(&data[..10], 1).unwrap();
        forged.extend_from_slice(&frame);
        assert!(decode_zstd(&forged).is_err());
    }

    #[test]
    fn bad_records_are_refused() {
        let d = B3Digest::of(b"abc");
        assert!(matches!(
            decode_chunk(&d, b"\x00abd"),
            Err(Error::Integrity { .. })
        ));
        assert!(matches!(
            decode_chunk(&d, b"\x07abc"),
            Err(Error::Storage { .. })
        ));
        assert!(matches!(decode_chunk(&d, b""), Err(Error::Storage { .. })));
        assert!(matches!(
            decode_chunk(&d, b"\x01not zstd"),
            Err(Error::Storage { .. })
        ));
        assert!(decode_chunk(&d, b"\x00abc").is_ok());
        assert!(decode_chunk_list(&d, &[0; 41]).is_err());
    }
}
