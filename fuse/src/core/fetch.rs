//! Getting chunks: an in-memory LRU of recent chunks (bounded in bytes) in
//! front of the blob service, single-flight fetches (concurrent readers of
//! one chunk share one request), bounded read-ahead, and the chunk lists of
//! open files.
//!
//! The blob service the mount is given verifies what it returns; here each
//! chunk is also checked against the length its chunk list announces before
//! it is cached or handed out.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use lru::LruCache;
use parking_lot::Mutex;
use storefs_castore::B3Digest;
use storefs_castore::{BlobService, ChunkMeta};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::core::deadline::within;
use crate::core::error::FsError;
use crate::core::stats::{self, MountStats};

/// Unchunked blobs up to this size are fetched whole, verified and cached
/// as one chunk. Larger ones are streamed (see [`BlobLayout::Stream`]).
pub(crate) const WHOLE_BLOB_MAX: u64 = 16 * 1024 * 1024;

/// Blobs up to this size are first asked for whole (see
/// [`Fetcher::layout`]); the default chunker's average chunk size.
pub(crate) const SMALL_BLOB: u64 = 64 * 1024;

/// The chunk lists of at most this many large files after an opened one
/// are asked for ahead of their opens ([`Fetcher::prefetch_layouts`]) ...
pub(crate) const LIST_LOOKAHEAD: usize = 4;

/// ... found among this many entries after it.
pub(crate) const LIST_LOOKAHEAD_SCAN: usize = 64;

/// How many chunk lists are kept in memory.
const CHUNK_LISTS: usize = 16 * 1024;

/// Where a file's bytes are.
#[derive(Debug)]
pub(crate) enum BlobLayout {
    /// In chunks (a blob read whole counts as one chunk with the blob's
    /// digest). `ends[i]` is the offset just past chunk `i`.
    Chunks {
        /// The chunks, in order.
        chunks: Vec<ChunkMeta>,
        /// Cumulative end offsets, for binary search.
        ends: Vec<u64>,
    },
    /// A large blob stored unchunked: read through `open_read`, skipping to
    /// the offset. Limitation: such a blob is verified only when a reader
    /// reaches its end, so a read in its middle hands out bytes before the
    /// whole blob has been checked, and random access costs a re-read from
    /// the start (sequential readers keep their position per open file).
    Stream {
        /// The blob.
        digest: B3Digest,
        /// Its length.
        size: u64,
    },
}

impl BlobLayout {
    /// The layout of a blob of `size` bytes whose chunk list is `chunks`.
    fn new(digest: B3Digest, size: u64, chunks: Vec<ChunkMeta>) -> Result<Self, FsError> {
        if chunks.is_empty() {
            if size == 0 {
                return Ok(BlobLayout::Chunks {
                    chunks: Vec::new(),
                    ends: Vec::new(),
                });
            }
            if size > WHOLE_BLOB_MAX {
                return Ok(BlobLayout::Stream { digest, size });
            }
            return Ok(BlobLayout::Chunks {
                chunks: vec![ChunkMeta { digest, size }],
                ends: vec![size],
            });
        }
        let mut ends = Vec::with_capacity(chunks.len());
        let mut total: u64 = 0;
        for c in &chunks {
            total = total.saturating_add(c.size);
            ends.push(total);
        }
        if total != size {
            return Err(FsError::SizeMismatch {
                what: "chunk list of blob",
                digest,
                expected: size,
                actual: total,
            });
        }
        Ok(BlobLayout::Chunks { chunks, ends })
    }
}

/// The chunks (by index) that hold bytes `offset..end` of a chunked blob.
pub(crate) fn covering(ends: &[u64], offset: u64, end: u64) -> std::ops::Range<usize> {
    if offset >= end {
        return 0..0;
    }
    let first = ends.partition_point(|&e| e <= offset);
    let last = ends.partition_point(|&e| e < end);
    first..(last + 1).min(ends.len())
}

/// Where chunk `i` starts.
pub(crate) fn chunk_start(ends: &[u64], i: usize) -> u64 {
    if i == 0 {
        0
    } else {
        ends.get(i - 1).copied().unwrap_or(0)
    }
}

type ChunkFuture = Shared<BoxFuture<'static, Result<Bytes, FsError>>>;

/// One batched fetch: each chunk's outcome, in order.
type BatchFuture = Shared<BoxFuture<'static, Arc<Vec<Result<Bytes, FsError>>>>>;

/// A chunk being fetched.
#[derive(Clone)]
enum InFlight {
    /// Claimed by a batch being put together (never seen outside the
    /// lock of the in-flight map: replaced before it is let go).
    Claimed,
    /// Fetched on its own.
    One(ChunkFuture),
    /// Fetched in a batch, at this place: the batch's one shared future
    /// serves all its chunks (most are awaited by no one: read-ahead and
    /// sibling windows fetch them before their readers come).
    Batch(BatchFuture, usize),
}

impl InFlight {
    /// The chunk's bytes, once fetched.
    fn chunk(&self, digest: B3Digest) -> BoxFuture<'static, Result<Bytes, FsError>> {
        match self {
            InFlight::One(f) => f.clone().boxed(),
            InFlight::Batch(b, k) => {
                let k = *k;
                b.clone().map(move |all| pick(&all, k, digest)).boxed()
            }
            InFlight::Claimed => futures::future::ready(Err(FsError::Missing {
                what: "chunk",
                digest,
            }))
            .boxed(),
        }
    }
}

/// Entry `k` of a batch's outcomes.
fn pick(all: &[Result<Bytes, FsError>], k: usize, digest: B3Digest) -> Result<Bytes, FsError> {
    match all.get(k) {
        Some(r) => r.clone(),
        None => Err(FsError::Missing {
            what: "chunk",
            digest,
        }),
    }
}

/// A batch is cut into requests of at most this many bytes, all sent at
/// once: the first chunks arrive (and the reader waiting on them goes on)
/// while the rest are still on the way, and no one request holds the
/// connection for long.
pub(crate) const BATCH_PIECE_BYTES: u64 = 1024 * 1024;

/// ... and of at most this many chunks.
const BATCH_PIECE_CHUNKS: usize = 256;

/// Chunk bytes asked of the service and not yet taken in, across all
/// requests: more requests wait their turn. Received chunks sit in the
/// transport's buffers (and in cache fills) until their request ends, so
/// without a bound 64 concurrent readers held ~35 MB of them; 16 MiB is
/// still several times what a 1 Gbit/s link carries in one round trip.
pub(crate) const MAX_BYTES_IN_FLIGHT: u64 = 16 * 1024 * 1024;

/// The unit of [`Fetcher::in_flight`]'s permits (a semaphore counts in
/// `u32`s).
const IN_FLIGHT_UNIT: u64 = 1024;

/// Bytes of read replies being put together from several chunks at once.
/// A read that spans chunks copies them into one buffer of up to the
/// kernel's largest read (1 MiB); 64 concurrent readers, as many as the
/// kernel sends at once, held 64 such buffers beside the chunks they were
/// copied from. More wait their turn: the chunks are already here, the
/// copy is quick. (Each reply is freed once the transport has written it,
/// just after the permit goes, so a few more may be alive at an instant.)
pub(crate) const MAX_REPLY_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug)]
struct ChunkLru {
    lru: LruCache<B3Digest, Bytes>,
    bytes: u64,
}

/// Fetches and caches chunks. The locks are `parking_lot` mutexes, held for
/// one map operation each and never across an await.
pub(crate) struct Fetcher {
    blobs: Arc<dyn BlobService>,
    stats: Arc<MountStats>,
    handle: Handle,
    timeout: Duration,
    cache: Mutex<ChunkLru>,
    cache_max_bytes: u64,
    chunk_lists: Mutex<LruCache<B3Digest, Arc<BlobLayout>>>,
    inflight: Mutex<HashMap<B3Digest, InFlight>>,
    /// Bounds read-ahead fetches in flight; read-ahead is skipped when none
    /// is free rather than queued.
    readahead: Arc<Semaphore>,
    /// Bounds the bytes requested and not yet received, in
    /// [`IN_FLIGHT_UNIT`]s (see [`MAX_BYTES_IN_FLIGHT`]).
    in_flight: Semaphore,
    /// Bounds the bytes of replies being assembled, in [`IN_FLIGHT_UNIT`]s
    /// (see [`MAX_REPLY_BYTES`]).
    replies: Arc<Semaphore>,
    /// Small blobs the service holds only in chunks (asking for them whole
    /// found nothing): not worth asking for whole again in a batch.
    chunked_small: Mutex<LruCache<B3Digest, ()>>,
    /// Chunk lists being asked for ahead of their opens.
    layouts_ahead: Mutex<std::collections::HashSet<B3Digest>>,
}

impl Fetcher {
    /// A fetcher over `blobs`, caching up to `cache_max_bytes` of chunks.
    pub(crate) fn new(
        blobs: Arc<dyn BlobService>,
        stats: Arc<MountStats>,
        handle: Handle,
        timeout: Duration,
        cache_max_bytes: u64,
        readahead_in_flight: usize,
    ) -> Self {
        Self {
            blobs,
            stats,
            handle,
            timeout,
            cache: Mutex::new(ChunkLru {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            cache_max_bytes,
            chunk_lists: Mutex::new(LruCache::new(
                NonZeroUsize::new(CHUNK_LISTS).unwrap_or(NonZeroUsize::MIN),
            )),
            inflight: Mutex::new(HashMap::new()),
            readahead: Arc::new(Semaphore::new(readahead_in_flight.max(1))),
            in_flight: Semaphore::new((MAX_BYTES_IN_FLIGHT / IN_FLIGHT_UNIT) as usize),
            replies: Arc::new(Semaphore::new((MAX_REPLY_BYTES / IN_FLIGHT_UNIT) as usize)),
            chunked_small: Mutex::new(LruCache::new(
                NonZeroUsize::new(CHUNK_LISTS).unwrap_or(NonZeroUsize::MIN),
            )),
            layouts_ahead: Mutex::default(),
        }
    }

    /// Ask for the chunk lists of `blobs` (large files about to be opened,
    /// with their sizes) in the background, all at once, so that their
    /// opens find them in memory instead of each waiting a round trip.
    /// Lists known or already asked for are skipped; a failure is left for
    /// the open to meet again.
    pub(crate) fn prefetch_layouts(self: &Arc<Self>, blobs: Vec<(B3Digest, u64)>) {
        for (digest, size) in blobs {
            if self.chunk_lists.lock().contains(&digest)
                || !self.layouts_ahead.lock().insert(digest)
            {
                continue;
            }
            let this = Arc::clone(self);
            self.handle.spawn(async move {
                // Each call inside has its deadline; a failure is the open's.
                let _ = this.layout(digest, size).await;
                this.layouts_ahead.lock().remove(&digest);
            });
        }
    }

    /// Run `work` on the runtime, in the background (look-ahead that must
    /// not hold up the operation that set it off).
    pub(crate) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(work);
    }

    /// The deadline of each call to the blob service.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The blob service, for the streaming fallback.
    pub(crate) fn blobs(&self) -> &Arc<dyn BlobService> {
        &self.blobs
    }

    /// The layout of blob `digest` (`size` bytes, as its file entry says):
    /// from memory if known, else one `chunks` call.
    pub(crate) async fn layout(
        self: &Arc<Self>,
        digest: B3Digest,
        size: u64,
    ) -> Result<Arc<BlobLayout>, FsError> {
        if let Some(l) = self.chunk_lists.lock().get(&digest).cloned() {
            stats::add(&self.stats.chunk_list_hits, 1);
            return Ok(l);
        }
        stats::add(&self.stats.chunk_list_misses, 1);
        let chunks = if size == 0 {
            // The empty blob need not even be stored.
            Vec::new()
        } else if size <= SMALL_BLOB && self.small_blob_whole(digest, size).await? {
            // Fetched whole (and cached): no chunk list needed.
            Vec::new()
        } else {
            let call = self.blobs.chunks(&digest);
            match within(&self.stats, "chunk list", self.timeout, call).await? {
                Some(c) => c,
                None => {
                    return Err(FsError::Missing {
                        what: "blob",
                        digest,
                    });
                }
            }
        };
        let layout = Arc::new(BlobLayout::new(digest, size, chunks)?);
        self.chunk_lists.lock().put(digest, layout.clone());
        Ok(layout)
    }

    /// Try to read a small blob whole, by its own digest, instead of asking
    /// for its chunk list first: most small blobs are one chunk, so one
    /// round trip fetches what the reader is about to read. `false` if the
    /// service holds it only in chunks.
    async fn small_blob_whole(
        self: &Arc<Self>,
        digest: B3Digest,
        size: u64,
    ) -> Result<bool, FsError> {
        match self.chunk(ChunkMeta { digest, size }).await {
            Ok(_) => Ok(true),
            Err(FsError::Missing { .. }) => {
                self.chunked_small.lock().put(digest, ());
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn cache_get(&self, digest: &B3Digest) -> Option<Bytes> {
        self.cache.lock().lru.get(digest).cloned()
    }

    /// A cached chunk for a read; one the read goes through to its end
    /// becomes the first to leave (see [`Fetcher::cache_demote`]). One
    /// lock for both.
    fn cache_take(&self, digest: &B3Digest, consumed: bool) -> Option<Bytes> {
        let mut c = self.cache.lock();
        let b = c.lru.get(digest).cloned()?;
        if consumed {
            c.lru.demote(digest);
        }
        Some(b)
    }

    /// The most bytes one reader's read-ahead may ask for at once: half the
    /// memory cache, where the chunks wait for their reader (the other half
    /// is for what readers have in hand).
    pub(crate) fn readahead_bytes(&self) -> u64 {
        self.cache_max_bytes / 2
    }

    /// Chunks a read went through to their end become the first to leave
    /// the memory cache. Read-ahead puts the chunks a reader comes to next
    /// there; were the chunks just read (touched by their read) kept ahead
    /// of them, read-ahead's chunks would leave before their reader got to
    /// them, to be fetched again.
    fn cache_demote(&self, digests: &[B3Digest]) {
        let mut c = self.cache.lock();
        for d in digests {
            c.lru.demote(d);
        }
    }

    /// Whether `digest` is a small blob known to be stored only in chunks
    /// (so it cannot be fetched whole by its own digest).
    pub(crate) fn is_chunked_small(&self, digest: &B3Digest) -> bool {
        self.chunked_small.lock().contains(digest)
    }

    /// Whether the chunk is cached or being fetched already.
    pub(crate) fn is_known(&self, digest: &B3Digest) -> bool {
        self.cache.lock().lru.contains(digest) || self.inflight.lock().contains_key(digest)
    }

    /// Start fetching `metas` in batches (see [`BATCH_PIECE_BYTES`]),
    /// skipping chunks cached, in flight or named twice. Readers of any of
    /// them join the batch's fetch as they would a single one. Returns the
    /// number of chunks started.
    pub(crate) fn fetch_batch(
        self: &Arc<Self>,
        metas: impl IntoIterator<Item = ChunkMeta>,
    ) -> usize {
        let mut started = 0;
        let mut piece: Vec<ChunkMeta> = Vec::new();
        let mut piece_bytes = 0u64;
        let mut inflight = self.inflight.lock();
        for meta in metas {
            if inflight.contains_key(&meta.digest) || self.cache.lock().lru.contains(&meta.digest) {
                continue;
            }
            // Claimed at once (the real future replaces this when the
            // piece is cut, before the lock is let go), so a digest named
            // twice is fetched once.
            inflight.insert(meta.digest, InFlight::Claimed);
            piece_bytes += meta.size;
            piece.push(meta);
            started += 1;
            if piece_bytes >= BATCH_PIECE_BYTES || piece.len() >= BATCH_PIECE_CHUNKS {
                self.start_piece(&mut inflight, std::mem::take(&mut piece));
                piece_bytes = 0;
            }
        }
        if !piece.is_empty() {
            self.start_piece(&mut inflight, piece);
        }
        started
    }

    /// Register one request's chunks in the in-flight map and send it.
    fn start_piece(
        self: &Arc<Self>,
        inflight: &mut HashMap<B3Digest, InFlight>,
        metas: Vec<ChunkMeta>,
    ) {
        stats::add(&self.stats.batched_chunks, metas.len() as u64);
        let this = Arc::clone(self);
        let digests: Vec<B3Digest> = metas.iter().map(|m| m.digest).collect();
        let batch: BatchFuture = async move { Arc::new(this.fetch_many(metas).await) }
            .boxed()
            .shared();
        for (k, digest) in digests.into_iter().enumerate() {
            inflight.insert(digest, InFlight::Batch(batch.clone(), k));
        }
        // Driven to the end whoever waits: it empties its map entries.
        self.handle.spawn(batch.map(drop));
    }

    /// One batched request to the blob service; each chunk is checked,
    /// counted and cached on its own, then all leave the in-flight map.
    async fn fetch_many(self: Arc<Self>, metas: Vec<ChunkMeta>) -> Vec<Result<Bytes, FsError>> {
        let digests: Vec<B3Digest> = metas.iter().map(|m| m.digest).collect();
        let bytes: u64 = metas.iter().map(|m| m.size).sum();
        let units = bytes
            .div_ceil(IN_FLIGHT_UNIT)
            .clamp(1, MAX_BYTES_IN_FLIGHT / IN_FLIGHT_UNIT);
        // Waiting for room among the requests in flight is local queueing,
        // not a silent remote: it stays outside the deadline (each request
        // ahead ends within its own, so the wait is bounded), or a busy
        // machine with many readers would turn slow progress into EIO.
        // The semaphore is never closed, so `acquire_many` cannot fail;
        // were it to, the request goes ahead unbounded rather than fail.
        let _permit = self.in_flight.acquire_many(units as u32).await.ok();
        let batch = async { Ok::<_, FsError>(self.blobs.read_chunk_batch(&digests).await) };
        let got = within(&self.stats, "chunk fetch", self.timeout, batch).await;
        let out: Vec<Result<Bytes, FsError>> = match got {
            Err(e) => metas.iter().map(|_| Err(e.clone())).collect(),
            Ok(results) => {
                let mut results = results.into_iter();
                let out: Vec<Result<Bytes, FsError>> = metas
                    .iter()
                    .map(|meta| check(*meta, results.next().unwrap_or(Ok(None))))
                    .collect();
                self.count_and_cache(metas.iter().zip(&out));
                out
            }
        };
        let mut inflight = self.inflight.lock();
        for d in &digests {
            inflight.remove(d);
        }
        out
    }

    /// Count fetched chunks and keep them in the memory cache, under one
    /// lock. Kept as they came: the mount's blob service (the local cache
    /// in front of the remote) hands out each fetched chunk in an
    /// allocation of its own, shared with its fill.
    fn count_and_cache<'a>(
        &self,
        fetched: impl Iterator<Item = (&'a ChunkMeta, &'a Result<Bytes, FsError>)>,
    ) {
        let (mut chunks, mut bytes) = (0u64, 0u64);
        let mut c = self.cache.lock();
        for (meta, r) in fetched {
            let Ok(data) = r else {
                continue;
            };
            chunks += 1;
            bytes += data.len() as u64;
            let len = data.len() as u64;
            if len > self.cache_max_bytes {
                continue;
            }
            if let Some(old) = c.lru.put(meta.digest, data.clone()) {
                c.bytes = c.bytes.saturating_sub(old.len() as u64);
            }
            c.bytes += len;
        }
        while c.bytes > self.cache_max_bytes {
            match c.lru.pop_lru() {
                Some((_, old)) => c.bytes = c.bytes.saturating_sub(old.len() as u64),
                None => break,
            }
        }
        stats::set(&self.stats.chunk_cache_bytes, c.bytes);
        drop(c);
        stats::add(&self.stats.chunks_fetched, chunks);
        stats::add(&self.stats.bytes_fetched, bytes);
    }

    /// Check a fetched chunk against its announced length; count and cache
    /// it.
    fn accept(
        &self,
        meta: ChunkMeta,
        got: storefs_castore::Result<Option<Bytes>>,
    ) -> Result<Bytes, FsError> {
        let r = check(meta, got);
        self.count_and_cache(std::iter::once((&meta, &r)));
        r
    }

    /// The bytes of one chunk: from the cache, else by joining the fetch
    /// already in flight, else by starting one. Ready at once on a hit.
    pub(crate) fn chunk(
        self: &Arc<Self>,
        meta: ChunkMeta,
    ) -> BoxFuture<'static, Result<Bytes, FsError>> {
        if let Some(b) = self.cache_get(&meta.digest) {
            stats::add(&self.stats.chunk_cache_hits, 1);
            return futures::future::ready(Ok(b)).boxed();
        }
        stats::add(&self.stats.chunk_cache_misses, 1);
        self.join_or_start(meta)
    }

    fn join_or_start(
        self: &Arc<Self>,
        meta: ChunkMeta,
    ) -> BoxFuture<'static, Result<Bytes, FsError>> {
        let mut inflight = self.inflight.lock();
        // Check the cache again under the in-flight lock: a fetch caches its
        // chunk before it leaves the map, so the chunk is in one or the other
        // and is never fetched twice.
        if let Some(b) = self.cache_get(&meta.digest) {
            return futures::future::ready(Ok(b)).boxed();
        }
        if let Some(f) = inflight.get(&meta.digest) {
            return f.chunk(meta.digest);
        }
        let this = Arc::clone(self);
        let f: ChunkFuture = async move { this.fetch(meta).await }.boxed().shared();
        inflight.insert(meta.digest, InFlight::One(f.clone()));
        f.boxed()
    }

    /// One fetch from the blob service, with its own deadline so that a
    /// hung request leaves the in-flight map even if every waiter gave up.
    async fn fetch(self: Arc<Self>, meta: ChunkMeta) -> Result<Bytes, FsError> {
        let call = async { Ok::<_, FsError>(self.blobs.read_chunk(&meta.digest).await) };
        let res = match within(&self.stats, "chunk fetch", self.timeout, call).await {
            Err(e) => Err(e),
            Ok(r) => self.accept(meta, r),
        };
        self.inflight.lock().remove(&meta.digest);
        res
    }

    /// Start fetching `metas` in the background (read-ahead), skipping what
    /// is cached or in flight, in batches, while a read-ahead permit is
    /// free (each batch holds one until it is done).
    pub(crate) fn prefetch(self: &Arc<Self>, metas: impl Iterator<Item = ChunkMeta>) {
        let Ok(permit) = Arc::clone(&self.readahead).try_acquire_owned() else {
            return;
        };
        let unknown: Vec<ChunkMeta> = metas.filter(|m| !self.is_known(&m.digest)).collect();
        if unknown.is_empty() {
            return;
        }
        let digests: Vec<B3Digest> = unknown.iter().map(|m| m.digest).collect();
        let n = self.fetch_batch(unknown);
        stats::add(&self.stats.readahead_chunks, n as u64);
        // What to wait for: each batch once (its chunks sit side by side).
        let mut futs: Vec<BoxFuture<'static, ()>> = Vec::new();
        {
            let inflight = self.inflight.lock();
            let mut last: Option<BatchFuture> = None;
            for d in &digests {
                match inflight.get(d) {
                    Some(InFlight::Batch(b, _)) => {
                        if last.as_ref().is_some_and(|l| l.ptr_eq(b)) {
                            continue;
                        }
                        last = Some(b.clone());
                        futs.push(b.clone().map(drop).boxed());
                    }
                    Some(InFlight::One(f)) => futs.push(f.clone().map(drop).boxed()),
                    Some(InFlight::Claimed) | None => {}
                }
            }
        }
        self.handle.spawn(async move {
            // A failed read-ahead is not an error: the reader that needs
            // the chunk will fetch it again and see the error itself.
            futures::future::join_all(futs).await;
            drop(permit);
        });
    }

    /// Bytes `offset..offset+len` of a chunked blob, clipped to its end.
    /// Fetches the covering chunks concurrently.
    pub(crate) fn read_chunks(
        self: &Arc<Self>,
        chunks: &[ChunkMeta],
        ends: &[u64],
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Bytes, FsError>> + Send + 'static {
        use futures::future::Either;
        let total = ends.last().copied().unwrap_or(0);
        let end = offset.saturating_add(len).min(total);
        let range = covering(ends, offset, end);
        let first_start = chunk_start(ends, range.start);
        // The common case of a small file, or of a read within a chunk
        // here already: answered at once, with no future to put together.
        if range.is_empty() {
            return Either::Left(futures::future::ready(Ok(Bytes::new())));
        }
        if range.len() == 1 {
            let digest = chunks[range.start].digest;
            let consumed = ends[range.start] <= end;
            if let Some(p) = self.cache_take(&digest, consumed) {
                stats::add(&self.stats.chunk_cache_hits, 1);
                let skip = offset.saturating_sub(first_start) as usize;
                let want = (end - offset) as usize;
                let part = p.slice(skip.min(p.len())..(skip + want).min(p.len()));
                return Either::Left(futures::future::ready(Ok(part)));
            }
        }
        if range.len() > 1 {
            // Several chunks not yet here go in one request.
            self.fetch_batch(chunks[range.clone()].iter().copied());
        }
        let futs: Vec<_> = chunks[range.clone()]
            .iter()
            .map(|m| self.chunk(*m))
            .collect();
        // The chunks this read goes through to their end: done with, for
        // a reader going forward (the kernel's page cache has their bytes).
        let consumed: Vec<B3Digest> = chunks[range.clone()]
            .iter()
            .zip(&ends[range.clone()])
            .filter(|(_, chunk_end)| **chunk_end <= end)
            .map(|(m, _)| m.digest)
            .collect();
        let replies = Arc::clone(&self.replies);
        let this = Arc::clone(self);
        Either::Right(async move {
            if futs.is_empty() {
                return Ok(Bytes::new());
            }
            let parts = futures::future::try_join_all(futs).await?;
            this.cache_demote(&consumed);
            // Offsets into the concatenation of the covering chunks.
            let skip = offset.saturating_sub(first_start) as usize;
            let want = (end - offset) as usize;
            if parts.len() == 1 {
                let p = &parts[0];
                return Ok(p.slice(skip.min(p.len())..(skip + want).min(p.len())));
            }
            let units = (want as u64)
                .div_ceil(IN_FLIGHT_UNIT)
                .clamp(1, MAX_REPLY_BYTES / IN_FLIGHT_UNIT);
            // Never closed; were it, the copy goes ahead unbounded.
            let _permit = replies.acquire_many_owned(units as u32).await.ok();
            let mut out = Vec::with_capacity(want);
            let mut pos = 0usize; // offset of the current part in the concatenation
            for p in &parts {
                let from = skip.saturating_sub(pos).min(p.len());
                let to = (skip + want).saturating_sub(pos).min(p.len());
                if from < to {
                    out.extend_from_slice(&p[from..to]);
                }
                pos += p.len();
            }
            Ok(Bytes::from(out))
        })
    }
}

/// A fetched chunk, checked against the length its chunk list announces.
fn check(meta: ChunkMeta, got: storefs_castore::Result<Option<Bytes>>) -> Result<Bytes, FsError> {
    match got {
        Err(e) => Err(FsError::from(e)),
        Ok(None) => Err(FsError::Missing {
            what: "chunk",
            digest: meta.digest,
        }),
        Ok(Some(data)) if data.len() as u64 != meta.size => Err(FsError::SizeMismatch {
            what: "chunk",
            digest: meta.digest,
            expected: meta.size,
            actual: data.len() as u64,
        }),
        Ok(Some(data)) => Ok(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_finds_the_chunks_of_a_range() {
        let ends = [10, 20, 30];
        assert_eq!(covering(&ends, 0, 10), 0..1);
        assert_eq!(covering(&ends, 0, 11), 0..2);
        assert_eq!(covering(&ends, 9, 10), 0..1);
        assert_eq!(covering(&ends, 10, 20), 1..2);
        assert_eq!(covering(&ends, 15, 25), 1..3);
        assert_eq!(covering(&ends, 0, 30), 0..3);
        assert_eq!(covering(&ends, 29, 30), 2..3);
        assert_eq!(covering(&ends, 30, 30), 0..0);
        assert_eq!(chunk_start(&ends, 0), 0);
        assert_eq!(chunk_start(&ends, 2), 20);
    }

    #[test]
    fn layouts() {
        let d = B3Digest::of(b"blob");
        match BlobLayout::new(d, 5, vec![]).unwrap() {
            BlobLayout::Chunks { chunks, ends } => {
                assert_eq!(chunks, vec![ChunkMeta { digest: d, size: 5 }]);
                assert_eq!(ends, vec![5]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            BlobLayout::new(d, WHOLE_BLOB_MAX + 1, vec![]).unwrap(),
            BlobLayout::Stream { .. }
        ));
        let c = ChunkMeta {
            digest: B3Digest::of(b"c"),
            size: 3,
        };
        assert!(matches!(
            BlobLayout::new(d, 7, vec![c, c]),
            Err(FsError::SizeMismatch {
                expected: 7,
                actual: 6,
                ..
            })
        ));
    }
}
