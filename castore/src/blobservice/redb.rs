//! [`RedbBlobService`]: blobs in the embedded redb store ([`RedbStore`]).
//!
//! Writers buffer chunks and commit them in batches of [`WRITE_BATCH_BYTES`]
//! (and at close), never one transaction per chunk. Batches of all the
//! writers of a service go through one group commit ([`CommitQueue`]):
//! while a transaction commits, the batches that arrive queue up, and the
//! next transaction takes them all. redb has one write transaction at a
//! time and every durable commit syncs the file, so without this, writers
//! storing many small blobs at once wait on each other's syncs (52k files
//! meant 52k serialised commits). Chunks are stored once per digest. Every
//! read decompresses and re-hashes.
//!
//! A service with a quota (a cache) stores the small chunks of each cache
//! fill (`insert_chunks`, `insert_verified`) together in packs
//! (`blobservice/pack.rs`): one value per up to 60 KiB of chunk records,
//! under a sequential key, and one quota entry per pack, where a record of
//! its own under a random key and two random-key quota rows per chunk cost
//! two fifths of a mount's CPU on a walk of small files. Its chunk's row
//! in `castore.chunks` is then a pointer into the pack. Writers
//! (`open_write`) and stores without a quota store every chunk alone.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use redb::{
    AccessGuard, Database, Durability, ReadOnlyTable, ReadableTable, ReadableTableMetadata,
};

use super::chunk_store::{ChunkStore, check_chunk_list, verify_chunk};
use super::pack::{Pointer, encode_pack, group, pack_members};
use super::quota::{Quota, Stored, Use, tracked_bytes};
use super::writer::{ChunkSink, ChunkingWriter};
use super::{BlobReader, BlobService, BlobWriter, ChunkMeta, StoredChunk, VerifiedChunk};
use crate::chunking::{Chunker, ChunkerConfig, ChunkerConfigError};
use crate::redb_store::{
    BLOB_CHUNKS, CHUNK_RAW, CHUNK_ZSTD, CHUNKS, KIND_CHUNK, KIND_CHUNK_LIST, META, PACKS,
    RedbStore, WRITTEN, blocking, decode_chunk, decode_chunk_list, encode_chunk, encode_chunk_list,
    encode_record, meta_count, storage, unix_now,
};
use crate::{B3Digest, Error, Result};

/// How many chunk bytes a writer buffers before it commits them.
pub const WRITE_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// A blob service over a [`RedbStore`]. Clones share the database.
#[derive(Clone)]
pub struct RedbBlobService {
    store: RedbStore,
    /// A fresh chunker, cloned for every writer (validated once, here).
    chunker: Chunker,
    /// The group commit every writer of this service (and its clones)
    /// stores through.
    commits: Arc<CommitQueue>,
    /// The size quota, for a service that is a cache; `None`: keep all.
    quota: Option<Arc<Quota>>,
}

impl RedbBlobService {
    /// One chunk's record, made into a `T` by `decode`, in a read
    /// transaction on a blocking thread; a hit counts as a use for the
    /// quota.
    async fn read_record<T: Send + 'static>(
        &self,
        digest: B3Digest,
        decode: fn(&B3Digest, &[u8]) -> Result<T>,
    ) -> Result<Option<T>> {
        let db = self.db();
        let found = blocking(move || {
            let txn = db.begin_read().map_err(storage("begin read"))?;
            RecordReader::open(&txn)?.read(&digest, decode)
        })
        .await?;
        Ok(found.map(|(value, used)| {
            if let Some(q) = &self.quota {
                q.touch(used);
            }
            value
        }))
    }

    /// Records of many chunks, each made into a `T` by `decode` and
    /// answered on its own, in one read transaction on one blocking
    /// thread; hits count as uses for the quota.
    async fn read_records<T: Send + 'static>(
        &self,
        digests: &[B3Digest],
        decode: fn(&B3Digest, &[u8]) -> Result<T>,
    ) -> Vec<Result<Option<T>>> {
        let db = self.db();
        let wanted = digests.to_vec();
        let found = blocking(move || {
            let txn = db.begin_read().map_err(storage("begin read"))?;
            // One reader: a pack holding several of the chunks is read once.
            let mut reader = RecordReader::open(&txn)?;
            Ok(wanted
                .iter()
                .map(|digest| reader.read(digest, decode))
                .collect::<Vec<Result<Option<(T, Use)>>>>())
        })
        .await;
        match found {
            Ok(found) => found
                .into_iter()
                .map(|got| {
                    got.map(|hit| {
                        hit.map(|(value, used)| {
                            if let Some(q) = &self.quota {
                                q.touch(used);
                            }
                            value
                        })
                    })
                })
                .collect(),
            // The transaction itself failed: every entry with it.
            Err(e) => digests
                .iter()
                .map(|_| {
                    Err(Error::storage(
                        "reading chunks",
                        crate::Report(&e).to_string(),
                    ))
                })
                .collect(),
        }
    }

    /// The blob service of `store`, with the default chunking.
    pub fn new(store: RedbStore) -> Self {
        let commits = Arc::new(CommitQueue::new(store.clone(), None));
        Self {
            store,
            chunker: Chunker::default(),
            commits,
            quota: None,
        }
    }

    /// Keep at most about `max_bytes` of chunk records, evicting the least
    /// recently used chunks when a write goes beyond it (see
    /// `blobservice/quota.rs`). For a cache only: you must not put a quota
    /// on a store that holds the only copy of its data.
    /// The file then takes at most [`super::disk_bound`]`(max_bytes)` on
    /// disk: fills of the store are made durable more often under a small
    /// quota ([`super::sync_bytes_for`]).
    pub fn with_quota(mut self, max_bytes: u64) -> Self {
        self.store
            .set_cache_sync_bytes(super::sync_bytes_for(max_bytes));
        let quota = Arc::new(Quota::new(max_bytes));
        // Writers of this service commit through a queue that applies it.
        self.commits = Arc::new(CommitQueue::new(self.store.clone(), Some(quota.clone())));
        self.quota = Some(quota);
        self
    }

    /// The bytes of chunk records the quota tracks (0 without a quota).
    /// Also refreshes [`RedbBlobService::quota_figures`].
    pub async fn quota_tracked_bytes(&self) -> Result<u64> {
        let db = self.db();
        let bytes = blocking(move || tracked_bytes(&db)).await?;
        if let Some(q) = &self.quota {
            q.set_tracked(bytes);
        }
        Ok(bytes)
    }

    /// The quota's figures (held, evicted), `None` without a quota. Held
    /// bytes are as of the last write (or
    /// [`RedbBlobService::quota_tracked_bytes`]).
    pub fn quota_figures(&self) -> Option<super::QuotaFigures> {
        self.quota.as_ref().map(|q| q.figures())
    }

    /// The blob service of `store`, cutting new blobs with `config`.
    pub fn with_chunker(
        store: RedbStore,
        config: ChunkerConfig,
    ) -> Result<Self, ChunkerConfigError> {
        let commits = Arc::new(CommitQueue::new(store.clone(), None));
        Ok(Self {
            store,
            chunker: Chunker::new(config)?,
            commits,
            quota: None,
        })
    }

    /// How many distinct chunks are stored (single-chunk blobs included).
    pub async fn chunk_count(&self) -> Result<u64> {
        self.rows(CHUNKS).await
    }

    /// How many packs of small chunks are stored (a cache's fills make
    /// them; see the module docs). For tests and figures.
    pub async fn pack_count(&self) -> Result<u64> {
        self.rows(PACKS).await
    }

    /// How many rows `table` holds.
    async fn rows<K: redb::Key + Send + 'static, V: redb::Value + Send + 'static>(
        &self,
        table: redb::TableDefinition<'static, K, V>,
    ) -> Result<u64> {
        let db = self.db();
        blocking(move || {
            let txn = db.begin_read().map_err(storage("begin read"))?;
            let t = txn.open_table(table).map_err(storage("open table"))?;
            t.len().map_err(storage("count rows"))
        })
        .await
    }

    /// Overwrite the stored record of chunk `digest` with `record` (a flag
    /// byte and payload, or any garbage). Dangerous: it exists so that tests
    /// can check that corruption on disk is caught on read. A chunk kept in
    /// a pack has its record in the pack replaced (the pack is written
    /// again, its other members as they were), unless `record` is itself a
    /// pack pointer ([`crate::CHUNK_PACKED`]): that replaces the chunk's
    /// row.
    pub async fn danger_overwrite_chunk_record(
        &self,
        digest: &B3Digest,
        record: Vec<u8>,
    ) -> Result<()> {
        let db = self.db();
        let key = *digest.as_bytes();
        let digest = *digest;
        blocking(move || {
            let txn = db.begin_write().map_err(storage("begin write"))?;
            {
                let mut table = txn.open_table(CHUNKS).map_err(storage("open chunks"))?;
                let mut packs = txn.open_table(PACKS).map_err(storage("open packs"))?;
                let pointer = match table.get(key).map_err(storage("read chunk"))? {
                    Some(r) => Pointer::decode(&digest, r.value()).ok().flatten(),
                    None => None,
                };
                // A pointer given is a row of its own, not a member's record.
                let repacked = match pointer {
                    Some(p) if record.first() != Some(&crate::CHUNK_PACKED) => {
                        repack_with(&mut table, &mut packs, &digest, p, &record)?
                    }
                    _ => false,
                };
                if !repacked {
                    table
                        .insert(key, record.as_slice())
                        .map_err(storage("insert chunk"))?;
                }
            }
            txn.commit().map_err(storage("commit"))
        })
        .await
    }

    fn db(&self) -> Arc<Database> {
        self.store.database().clone()
    }

    /// Write checked chunks as a cache fill: in one transaction (under a
    /// quota, cut into transactions of at most `Quota::max_batch_bytes`
    /// each, so that each stays small beside it), encoded on a blocking
    /// thread, with cache-fill durability, replacing existing records
    /// (which may be the corrupt one that sent the cache to far).
    async fn fill(&self, chunks: Vec<Fill>) -> Result<()> {
        let max_batch = self
            .quota
            .as_ref()
            .map_or(u64::MAX, |q| q.max_batch_bytes());
        let mut batches: Vec<Vec<Fill>> = Vec::new();
        let mut in_batch: u64 = 0;
        for chunk in chunks {
            let len = chunk.len() as u64;
            match batches.last_mut() {
                Some(b) if in_batch.saturating_add(len) <= max_batch => b.push(chunk),
                _ => {
                    batches.push(vec![chunk]);
                    in_batch = 0;
                }
            }
            in_batch = in_batch.saturating_add(len);
        }
        for batch in batches {
            let batch_bytes: u64 = batch.iter().map(|c| c.len() as u64).sum();
            let db = self.db();
            let durability = self.store.cache_fill_durability(batch_bytes);
            let quota = self.quota.clone();
            blocking(move || {
                write_chunks(
                    &db,
                    batch,
                    None,
                    durability,
                    Existing::Replace,
                    quota.as_deref(),
                )
            })
            .await?;
        }
        Ok(())
    }
}

/// What [`write_chunks`] does with a chunk that already has a record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Leave it (dedup: the usual case for writers).
    Keep,
    /// Overwrite it: a cache fill of a chunk whose record failed its check
    /// must repair it, or every read would fetch it again.
    Replace,
}

/// Chunks ready to store: digest and encoded record.
type Records = Vec<(B3Digest, Vec<u8>)>;

/// Encode chunk records. Blocking: compression.
fn encode_records(chunks: Vec<(B3Digest, Bytes)>) -> Records {
    chunks
        .into_iter()
        .map(|(digest, data)| (digest, encode_chunk(&data)))
        .collect()
}

/// A checked chunk on its way into a cache fill's record.
enum Fill {
    /// Bytes to encode (compressed when that makes them smaller).
    Data(B3Digest, Bytes),
    /// A zstd frame checked to decode to the chunk: kept as it is.
    Frame(B3Digest, Bytes),
    /// Bytes its holder found not worth compressing: kept plain, without
    /// trying again.
    Plain(B3Digest, Bytes),
}

impl Fill {
    /// At most the bytes of its record (less the flag byte).
    fn len(&self) -> usize {
        match self {
            Fill::Data(_, b) | Fill::Frame(_, b) | Fill::Plain(_, b) => b.len(),
        }
    }

    /// Its record. Blocking for `Data`: compression.
    fn encode(self) -> (B3Digest, Vec<u8>) {
        match self {
            Fill::Data(digest, data) => (digest, encode_chunk(&data)),
            Fill::Frame(digest, frame) => (digest, encode_record(CHUNK_ZSTD, &frame)),
            Fill::Plain(digest, data) => (digest, encode_record(CHUNK_RAW, &data)),
        }
    }
}

/// Store chunks (each once) and optionally one chunk list, in one
/// transaction. `durability` is relaxed for cache fills.
fn write_chunks(
    db: &Database,
    chunks: Vec<Fill>,
    list: Option<(B3Digest, Vec<ChunkMeta>)>,
    durability: Durability,
    existing: Existing,
    quota: Option<&Quota>,
) -> Result<()> {
    // Compress before taking redb's one write lock, so that writers on
    // other threads compress while this one commits.
    let records: Records = chunks.into_iter().map(Fill::encode).collect();
    // A cache's fills keep their small chunks in packs.
    let (records, packs) = if quota.is_some() && existing == Existing::Replace {
        group(records)
    } else {
        (records, Vec::new())
    };
    let batch = Batch {
        records,
        packs,
        list,
    };
    write_batches(
        db,
        std::slice::from_ref(&batch),
        durability,
        existing,
        quota,
    )
}

/// Store several batches in one transaction: their chunks (each once) and
/// chunk lists.
fn write_batches(
    db: &Database,
    batches: &[Batch],
    durability: Durability,
    existing: Existing,
    quota: Option<&Quota>,
) -> Result<()> {
    let mut txn = db.begin_write().map_err(storage("begin write"))?;
    txn.set_durability(durability);
    // What was written, for the quota.
    let mut stored = Vec::new();
    {
        let mut table = txn.open_table(CHUNKS).map_err(storage("open chunks"))?;
        let mut lists = txn
            .open_table(BLOB_CHUNKS)
            .map_err(storage("open chunk lists"))?;
        // A store (no quota) notes when each record was written or reused,
        // in this same transaction, for garbage collection's grace period.
        let mut written = match quota {
            None => Some(txn.open_table(WRITTEN).map_err(storage("open written"))?),
            Some(_) => None,
        };
        let now = unix_now();
        for batch in batches {
            for (digest, record) in &batch.records {
                let key = *digest.as_bytes();
                if let Some(w) = written.as_mut() {
                    w.insert((KIND_CHUNK, key), now)
                        .map_err(storage("note chunk write"))?;
                }
                // A chunk already stored is kept (dedup); it may have been
                // compressed for nothing, which is rare next to the cost of
                // compressing under the write lock every time.
                if existing == Existing::Keep
                    && table.get(key).map_err(storage("read chunk"))?.is_some()
                {
                    if let Some(q) = quota {
                        q.touch(Use::Chunk(*digest));
                    }
                    continue;
                }
                table
                    .insert(key, record.as_slice())
                    .map_err(storage("insert chunk"))?;
                stored.push(Stored::Chunk {
                    digest: *digest,
                    record_len: record.len() as u64,
                });
            }
            if !batch.packs.is_empty() {
                write_packs(&txn, &mut table, &batch.packs, &mut stored)?;
            }
            if let Some((blob, list)) = batch.list.as_ref().filter(|(_, l)| !l.is_empty()) {
                lists
                    .insert(*blob.as_bytes(), encode_chunk_list(list).as_slice())
                    .map_err(storage("insert chunk list"))?;
                if let Some(w) = written.as_mut() {
                    w.insert((KIND_CHUNK_LIST, *blob.as_bytes()), now)
                        .map_err(storage("note chunk list write"))?;
                }
            }
        }
    }
    if let Some(q) = quota {
        q.apply(&txn, &stored)?;
    }
    txn.commit().map_err(storage("commit chunks"))
}

/// What one writer hands the group commit: encoded chunks and, at close,
/// its blob's chunk list.
struct Batch {
    /// Records stored alone.
    records: Records,
    /// Groups of records stored as packs (cache fills only).
    packs: Vec<Records>,
    list: Option<(B3Digest, Vec<ChunkMeta>)>,
}

/// A batch waiting for its transaction, and who to tell when it is in.
struct Queued {
    batch: Batch,
    done: tokio::sync::oneshot::Sender<Result<()>>,
}

/// Group commit of writers' batches. Durability is unchanged: each
/// transaction is committed with [`Durability::Immediate`], and a writer
/// hears back only after the transaction holding its batch is durable.
struct CommitQueue {
    /// Asked for its database once per round (it may have been reopened).
    store: RedbStore,
    /// The service's quota, applied in each transaction.
    quota: Option<Arc<Quota>>,
    /// Batches waiting, and whether a committer is running. A std mutex:
    /// it is held only to push or take, never across an `.await`, and the
    /// committer takes it from a blocking thread.
    state: std::sync::Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    waiting: Vec<Queued>,
    /// A committer task is running; it takes `waiting` before it stops.
    running: bool,
}

/// Most chunk bytes a small batch may hold to be compressed on the calling
/// task rather than in the blocking pool: compressing 16 KiB takes some
/// tens of microseconds, less than a round trip to the pool.
const INLINE_ENCODE_BYTES: usize = 16 * 1024;

impl CommitQueue {
    fn new(store: RedbStore, quota: Option<Arc<Quota>>) -> Self {
        Self {
            store,
            quota,
            state: std::sync::Mutex::new(QueueState::default()),
        }
    }

    /// Encode `chunks`, queue them with `list`, and wait until they are
    /// committed durably.
    async fn store(
        self: Arc<Self>,
        chunks: Vec<(B3Digest, Bytes)>,
        list: Option<(B3Digest, Vec<ChunkMeta>)>,
    ) -> Result<()> {
        let bytes: usize = chunks.iter().map(|(_, d)| d.len()).sum();
        let records = if bytes <= INLINE_ENCODE_BYTES {
            encode_records(chunks)
        } else {
            blocking(move || Ok(encode_records(chunks))).await?
        };
        let (done, rx) = tokio::sync::oneshot::channel();
        let start = {
            let mut state = self.lock();
            state.waiting.push(Queued {
                batch: Batch {
                    records,
                    packs: Vec::new(),
                    list,
                },
                done,
            });
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            let queue = Arc::clone(&self);
            // Detached: it ends when the queue is empty. Its results go to
            // the writers through their channels.
            drop(tokio::task::spawn_blocking(move || {
                let last = queue.run();
                // Release the database before the last writers hear back.
                drop(queue);
                last.tell();
            }));
        }
        rx.await
            .map_err(|_| Error::storage_msg("redb committer stopped before our commit"))?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // A panic while the lock is held leaves only plain data behind
        // (no invariant spans a push or a take), so a poisoned lock is
        // still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Commit whatever is waiting, one transaction per round, until
    /// nothing is. Blocking. The writers of every round but the last hear
    /// back here; those of the last are returned, so that the caller can
    /// drop its handle on the queue (and so on the database) first: once a
    /// writer's `close` returns, no committer holds the database any more,
    /// and a process that dropped every handle can open the file again.
    fn run(&self) -> LastRound {
        // If a commit panics, the waiting writers must not wait forever:
        // on unwinding, the guard drops their senders (they get an error)
        // and lets the next batch start a new committer.
        struct Stopped<'a>(&'a CommitQueue);
        impl Drop for Stopped<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let mut state = self.0.lock();
                    state.running = false;
                    state.waiting.clear();
                }
            }
        }
        let _guard = Stopped(self);
        let mut taken = {
            let mut state = self.lock();
            if state.waiting.is_empty() {
                state.running = false;
                return LastRound::default();
            }
            std::mem::take(&mut state.waiting)
        };
        loop {
            let (batches, senders): (Vec<Batch>, Vec<_>) =
                taken.into_iter().map(|q| (q.batch, q.done)).unzip();
            let result = write_batches(
                &self.store.database(),
                &batches,
                Durability::Immediate,
                Existing::Keep,
                self.quota.as_deref(),
            );
            let next = {
                let mut state = self.lock();
                if state.waiting.is_empty() {
                    state.running = false;
                    None
                } else {
                    Some(std::mem::take(&mut state.waiting))
                }
            };
            match next {
                None => return LastRound { senders, result },
                Some(more) => {
                    LastRound { senders, result }.tell();
                    taken = more;
                }
            }
        }
    }
}

/// The writers of one committed round and the round's outcome.
struct LastRound {
    senders: Vec<tokio::sync::oneshot::Sender<Result<()>>>,
    result: Result<()>,
}

impl Default for LastRound {
    fn default() -> Self {
        Self {
            senders: Vec::new(),
            result: Ok(()),
        }
    }
}

impl LastRound {
    /// Tell each writer how its batch fared.
    fn tell(self) {
        for done in self.senders {
            // A writer that went away does not care.
            let _ = done.send(match &self.result {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::storage(
                    "committing the batch",
                    crate::Report(e).to_string(),
                )),
            });
        }
    }
}

#[async_trait]
impl BlobService for RedbBlobService {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        let db = self.db();
        let key = *digest.as_bytes();
        blocking(move || {
            let txn = db.begin_read().map_err(storage("begin read"))?;
            let lists = txn
                .open_table(BLOB_CHUNKS)
                .map_err(storage("open chunk lists"))?;
            if lists
                .get(key)
                .map_err(storage("read chunk list"))?
                .is_some()
            {
                return Ok(true);
            }
            let chunks = txn.open_table(CHUNKS).map_err(storage("open chunks"))?;
            Ok(chunks.get(key).map_err(storage("read chunk"))?.is_some())
        })
        .await
    }

    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        let db = self.db();
        let digest = *digest;
        blocking(move || {
            let key = *digest.as_bytes();
            let txn = db.begin_read().map_err(storage("begin read"))?;
            let lists = txn
                .open_table(BLOB_CHUNKS)
                .map_err(storage("open chunk lists"))?;
            if let Some(record) = lists.get(key).map_err(storage("read chunk list"))? {
                return decode_chunk_list(&digest, record.value()).map(Some);
            }
            let chunks = txn.open_table(CHUNKS).map_err(storage("open chunks"))?;
            Ok(chunks
                .get(key)
                .map_err(storage("read chunk"))?
                .map(|_| Vec::new()))
        })
        .await
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        self.read_record(*digest, decode_chunk).await
    }

    /// In one read transaction on one blocking thread: a cold mount asks
    /// its cache for every batch it fetches, and one task and transaction
    /// per chunk cost more than the lookups (a tenth of the mount's CPU
    /// reading a tree of small files).
    async fn read_chunk_batch(&self, digests: &[B3Digest]) -> Vec<Result<Option<Bytes>>> {
        self.read_records(digests, decode_chunk).await
    }

    /// A record kept compressed comes as its frame, neither decoded nor
    /// checked (its receiver does both); a raw one is checked here.
    async fn read_chunk_stored(&self, digest: &B3Digest) -> Result<Option<StoredChunk>> {
        self.read_record(*digest, stored_record).await
    }

    /// In one read transaction on one blocking thread, as
    /// `read_chunk_batch`: a server answering a batch of small chunks
    /// would otherwise hand each to a blocking thread of its own.
    async fn read_chunk_stored_batch(
        &self,
        digests: &[B3Digest],
    ) -> Vec<Result<Option<StoredChunk>>> {
        self.read_records(digests, stored_record).await
    }

    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        super::reader::open_read_via_chunks(Arc::new(self.clone()), *digest).await
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        Box::new(ChunkingWriter::new(
            RedbSink {
                commits: Arc::clone(&self.commits),
                batch: Vec::new(),
                batch_bytes: 0,
            },
            self.chunker.clone(),
        ))
    }
}

#[async_trait]
impl ChunkStore for RedbBlobService {
    /// Committed with cache-fill durability
    /// (`RedbStore::cache_fill_durability`): a fill lost in a crash is
    /// fetched again. Replaces an existing record (which may be the corrupt
    /// one that sent the cache to far in the first place).
    async fn insert_chunk(&self, digest: &B3Digest, data: Bytes) -> Result<()> {
        verify_chunk(digest, &data)?;
        let db = self.db();
        let durability = self.store.cache_fill_durability(data.len() as u64);
        let digest = *digest;
        let quota = self.quota.clone();
        blocking(move || {
            write_chunks(
                &db,
                vec![Fill::Data(digest, data)],
                None,
                durability,
                Existing::Replace,
                quota.as_deref(),
            )
        })
        .await
    }

    /// In one transaction (or, under a quota, a few small ones; compressed
    /// on a blocking thread), with cache-fill durability, like `insert_chunk`.
    async fn insert_chunks(&self, chunks: Vec<(B3Digest, Bytes)>) -> Result<()> {
        let mut first_err = None;
        let mut good = Vec::with_capacity(chunks.len());
        for (digest, data) in chunks {
            match verify_chunk(&digest, &data) {
                Ok(()) => good.push(Fill::Data(digest, data)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        self.fill(good).await?;
        first_err.map_or(Ok(()), Err)
    }

    /// As `insert_chunks`, but a chunk that came as a zstd frame is written
    /// as that frame (the record format keeps frames), neither compressed
    /// nor hashed again: the whole point of carrying the frame here. Plain
    /// bytes are compressed as by `insert_chunks`, unless their holder
    /// already found them not worth it ([`VerifiedChunk::incompressible`]). Every read of the record
    /// decodes and hashes it again, so a bad record never serves a wrong
    /// byte.
    async fn insert_verified(&self, chunks: Vec<VerifiedChunk>) -> Result<()> {
        let fills = chunks
            .into_iter()
            .map(|c| match c.frame() {
                Some(frame) => Fill::Frame(*c.digest(), frame.clone()),
                None if c.incompressible() => Fill::Plain(*c.digest(), c.into_data()),
                None => Fill::Data(*c.digest(), c.into_data()),
            })
            .collect();
        self.fill(fills).await
    }

    /// Committed with cache-fill durability, like `insert_chunk`.
    async fn insert_chunk_list(&self, blob: &B3Digest, chunks: &[ChunkMeta]) -> Result<()> {
        check_chunk_list(blob, chunks)?;
        let db = self.db();
        let list = (*blob, chunks.to_vec());
        let quota = self.quota.clone();
        let durability = self.store.cache_fill_durability(40 * chunks.len() as u64);
        blocking(move || {
            write_chunks(
                &db,
                Vec::new(),
                Some(list),
                durability,
                Existing::Keep,
                quota.as_deref(),
            )
        })
        .await
    }

    /// Reopen the database if a failed write broke it
    /// ([`RedbStore::recover`]).
    async fn recover(&self) -> Result<crate::Recovery> {
        let store = self.store.clone();
        blocking(move || store.recover()).await
    }
}

/// Buffers chunks and commits them in batches, through the group commit.
struct RedbSink {
    commits: Arc<CommitQueue>,
    batch: Vec<(B3Digest, Bytes)>,
    batch_bytes: usize,
}

impl RedbSink {
    fn take_batch(&mut self) -> Vec<(B3Digest, Bytes)> {
        self.batch_bytes = 0;
        std::mem::take(&mut self.batch)
    }
}

impl ChunkSink for RedbSink {
    fn put_chunk(&mut self, digest: B3Digest, data: Bytes) {
        self.batch_bytes += data.len();
        self.batch.push((digest, data));
    }

    fn maybe_flush(&mut self) -> Option<BoxFuture<'static, Result<()>>> {
        if self.batch_bytes < WRITE_BATCH_BYTES {
            return None;
        }
        let batch = self.take_batch();
        Some(Box::pin(Arc::clone(&self.commits).store(batch, None)))
    }

    fn finish(&mut self, blob: B3Digest, chunks: Vec<ChunkMeta>) -> BoxFuture<'static, Result<()>> {
        let batch = self.take_batch();
        Box::pin(Arc::clone(&self.commits).store(batch, Some((blob, chunks))))
    }
}

/// Reads chunk records in one read transaction, a packed chunk's from its
/// pack; each pack is read once, however many of its members are asked.
struct RecordReader {
    chunks: ReadOnlyTable<[u8; 32], &'static [u8]>,
    packs: ReadOnlyTable<u64, &'static [u8]>,
    /// The packs read so far (`None`: not there).
    read: HashMap<u64, Option<AccessGuard<'static, &'static [u8]>>>,
}

impl RecordReader {
    fn open(txn: &redb::ReadTransaction) -> Result<Self> {
        Ok(Self {
            chunks: txn.open_table(CHUNKS).map_err(storage("open chunks"))?,
            packs: txn.open_table(PACKS).map_err(storage("open packs"))?,
            read: HashMap::new(),
        })
    }

    /// The record of chunk `digest` made into a `T` by `decode`, and what
    /// its read uses (for the quota). A pointer to a pack that is not
    /// there reads as a missing chunk; one that reaches outside its pack,
    /// as a corrupt one.
    fn read<T>(
        &mut self,
        digest: &B3Digest,
        decode: fn(&B3Digest, &[u8]) -> Result<T>,
    ) -> Result<Option<(T, Use)>> {
        let Some(record) = self
            .chunks
            .get(*digest.as_bytes())
            .map_err(storage("read chunk"))?
        else {
            return Ok(None);
        };
        let Some(pointer) = Pointer::decode(digest, record.value())? else {
            return decode(digest, record.value()).map(|v| Some((v, Use::Chunk(*digest))));
        };
        let pack = match self.read.entry(pointer.pack) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.packs.get(pointer.pack).map_err(storage("read pack"))?)
            }
        };
        let Some(pack) = pack else {
            return Ok(None);
        };
        let member = pointer.member(digest, pack.value())?;
        decode(digest, member).map(|v| Some((v, Use::Pack(pointer.pack))))
    }
}

/// A chunk's record as it is kept, for sending on: a compressed one as its
/// frame, a raw one as its bytes, neither checked here (the receiver
/// checks every chunk it is sent; hashing here too was a twentieth of a
/// server's CPU serving small files).
fn stored_record(digest: &B3Digest, record: &[u8]) -> Result<StoredChunk> {
    match record.split_first() {
        Some((&CHUNK_ZSTD, frame)) => Ok(StoredChunk::Zstd(Bytes::copy_from_slice(frame))),
        Some((&CHUNK_RAW, data)) => Ok(StoredChunk::Plain(Bytes::copy_from_slice(data))),
        _ => decode_chunk(digest, record).map(StoredChunk::Plain),
    }
}

/// The `META` key of the next pack id.
const NEXT_PACK_ID: &str = "pack.next_id";

/// Store `groups` as packs under the next pack ids, each member's row in
/// `chunks` a pointer into its pack (replacing what was there), and note
/// them in `stored`.
fn write_packs(
    txn: &redb::WriteTransaction,
    chunks: &mut redb::Table<'_, [u8; 32], &'static [u8]>,
    groups: &[Records],
    stored: &mut Vec<Stored>,
) -> Result<()> {
    let mut packs = txn.open_table(PACKS).map_err(storage("open packs"))?;
    let mut meta = txn.open_table(META).map_err(storage("open meta"))?;
    let mut next = meta_count(&meta, NEXT_PACK_ID)?;
    for group in groups {
        let id = next;
        next = next.saturating_add(1);
        let encoded = encode_pack(group)?;
        packs
            .insert(id, encoded.value.as_slice())
            .map_err(storage("insert pack"))?;
        for (digest, offset, len) in &encoded.members {
            let pointer = Pointer {
                pack: id,
                offset: *offset,
                len: *len,
            };
            chunks
                .insert(*digest.as_bytes(), pointer.encode().as_slice())
                .map_err(storage("insert chunk pointer"))?;
        }
        stored.push(Stored::Pack {
            id,
            value_len: encoded.value.len() as u64,
            members: encoded.members.iter().map(|(d, _, _)| *d).collect(),
        });
    }
    meta.insert(NEXT_PACK_ID, next)
        .map_err(storage("write meta"))?;
    Ok(())
}

/// Write pack `pointer.pack` again with `record` as the record of member
/// `digest` (the others as they were), and point its members that still
/// point to it at their new places. `false` if the pack is not there or
/// its header is corrupt (nothing written).
fn repack_with(
    chunks: &mut redb::Table<'_, [u8; 32], &'static [u8]>,
    packs: &mut redb::Table<'_, u64, &'static [u8]>,
    digest: &B3Digest,
    pointer: Pointer,
    record: &[u8],
) -> Result<bool> {
    let id = pointer.pack;
    let records = {
        let Some(value) = packs.get(id).map_err(storage("read pack"))? else {
            return Ok(false);
        };
        let value = value.value();
        let Ok(members) = pack_members(id, value) else {
            return Ok(false);
        };
        members
            .into_iter()
            .map(|(d, offset, len)| {
                let r = if d == *digest {
                    record.to_vec()
                } else {
                    value[offset as usize..offset as usize + len as usize].to_vec()
                };
                (d, r)
            })
            .collect::<Records>()
    };
    let encoded = encode_pack(&records)?;
    packs
        .insert(id, encoded.value.as_slice())
        .map_err(storage("insert pack"))?;
    for (d, offset, len) in encoded.members {
        let key = *d.as_bytes();
        let ours = match chunks.get(key).map_err(storage("read chunk"))? {
            Some(r) => matches!(Pointer::decode(&d, r.value()), Ok(Some(p)) if p.pack == id),
            None => false,
        };
        if ours {
            let p = Pointer {
                pack: id,
                offset,
                len,
            };
            chunks
                .insert(key, p.encode().as_slice())
                .map_err(storage("insert chunk pointer"))?;
        }
    }
    Ok(true)
}
