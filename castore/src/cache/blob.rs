//! [`CachedBlobService`]: a near [`ChunkStore`] in front of a far
//! [`BlobService`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tracing::warn;

use super::fill::{AfterFailure, FillGate};
use super::stats::CacheStats;
use super::tee::TeeWriter;
use crate::blobservice::{
    BlobReader, BlobService, BlobWriter, ChunkMeta, ChunkStore, VerifiedChunk,
};
use crate::{B3Digest, Error, Result};

/// Bytes of fetched chunks (and the frames they came in) that may wait to
/// be written into near while their readers already have them. A fill
/// (committing the chunks, compressing those that came plain) took about
/// as long as fetching them on a fast link; awaited before the answer, it
/// doubled the time of every cold read.
/// Past this much waiting, fetches wait for the fills before them: memory
/// stays bounded when the disk is slower than the link.
pub const FILL_BACKLOG_BYTES: u64 = 8 * 1024 * 1024;

/// The unit of the backlog's permits (a semaphore counts in `u32`s).
const BACKLOG_UNIT: u64 = 4096;

/// [`FILL_BACKLOG_BYTES`] in [`BACKLOG_UNIT`]s.
const BACKLOG_UNITS: u32 = (FILL_BACKLOG_BYTES / BACKLOG_UNIT) as u32;

/// Blobs read through a near cache from a far service. Chunks and chunk
/// lists fetched from far are verified, then kept in near.
///
/// Chunks come from far checked once, with the zstd frame they arrived in
/// ([`BlobService::read_chunk_batch_verified`]): readers get the decoded
/// bytes, and near keeps the frame as it is
/// ([`ChunkStore::insert_verified`]), so that a chunk is decoded and hashed
/// once on its way in, and never compressed again.
///
/// A chunk list from far cannot be checked on its own: each chunk is checked
/// when it is read, and the whole blob when `open_read` reaches its end.
///
/// Concurrent misses on one chunk share one fetch from far. Fetched chunks
/// are written into near behind their readers (see [`FILL_BACKLOG_BYTES`]);
/// until written they stay in the in-flight map, answered from memory.
#[derive(Clone)]
pub struct CachedBlobService {
    /// Where reads look first and fetched data is kept.
    near: Arc<dyn ChunkStore>,
    /// The authority; every miss goes there, every write too.
    far: Arc<dyn BlobService>,
    /// Fetches from far in progress, so that concurrent readers of a chunk
    /// share one. A parking_lot (sync) lock: held only to look up or change
    /// the map, never across an `.await`.
    inflight: Arc<Mutex<HashMap<B3Digest, Fetch>>>,
    /// What was served from near and fetched from far.
    stats: Arc<CacheStats>,
    /// Whether fetched data goes into near now (not after a failed write,
    /// for a while).
    gate: Arc<FillGate>,
    /// Bounds the bytes fetched and not yet written into near.
    backlog: Arc<Semaphore>,
}

/// A fetched chunk in allocations of its own ([`VerifiedChunk::owned`]).
/// What far answers is often a slice of a whole receive buffer (megabytes,
/// shared with its neighbours): kept as is — in the fill backlog, in the
/// in-flight map, in a reader's memory cache — one chunk would pin all of
/// it, and every bound on cached bytes would mean nothing. One copy here
/// (of the frame, or of plain bytes; never of bytes decoded from a frame),
/// where fetched chunks enter the process for good, lets every holder
/// after it share the same exact bytes.
fn own(chunk: VerifiedChunk) -> VerifiedChunk {
    chunk.owned()
}

/// `chunk`, if it is the one asked for: far must answer each entry with
/// its own chunk (a [`VerifiedChunk`] is checked against the digest it
/// carries, which a wrong far could have swapped).
fn checked(asked: &B3Digest, chunk: VerifiedChunk) -> Result<VerifiedChunk> {
    if chunk.digest() != asked {
        return Err(Error::Integrity {
            what: "chunk",
            expected: *asked,
            actual: *chunk.digest(),
        });
    }
    Ok(chunk)
}

/// Where a fetch found its chunk: only what came from far is kept in near.
enum Origin {
    /// Written into near after the reader looked there first.
    Near,
    /// Fetched from far (and checked), to keep in near.
    Far(VerifiedChunk),
}

/// One fetch of a chunk from far, awaited by every reader that wants it.
type Fetch = Shared<BoxFuture<'static, Result<Option<Bytes>, Arc<Error>>>>;

/// One batched fetch from far: each entry's outcome, in request order.
type BatchFetch = Shared<BoxFuture<'static, Arc<Vec<Result<Option<Bytes>, Arc<Error>>>>>>;

impl CachedBlobService {
    /// `near` in front of `far`.
    pub fn new(near: Arc<dyn ChunkStore>, far: Arc<dyn BlobService>) -> Self {
        let stats = Arc::new(CacheStats::default());
        Self {
            near,
            far,
            inflight: Arc::default(),
            gate: Arc::new(FillGate::new(Arc::clone(&stats))),
            stats,
            backlog: Arc::new(Semaphore::new(BACKLOG_UNITS as usize)),
        }
    }

    /// Wait until every fetched chunk has been written into near (or its
    /// write has failed): before the process exits, so that what was
    /// fetched is there next time.
    pub async fn flush(&self) {
        // Never closed; all permits back means no fill is left.
        let _all = self.backlog.acquire_many(BACKLOG_UNITS).await;
    }

    /// The cache's live figures: hits in near, bytes fetched from far,
    /// failed fills.
    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.stats
    }

    /// Near once more, for a chunk that was in neither near nor the
    /// in-flight map: a fill may have written it and left the map between
    /// the two looks. Without this second look the reader fetches a chunk
    /// near already holds.
    async fn near_again(&self, digest: &B3Digest) -> Option<Bytes> {
        match self.near.read_chunk(digest).await {
            Ok(Some(data)) => {
                self.stats.near_hit(data.len());
                Some(data)
            }
            Ok(None) => None,
            Err(e) => {
                self.gate.read_failed("chunk", &e);
                None
            }
        }
    }

    /// What near holds of `digests`, in order; `None` for each it lacks
    /// (or could not read: that pauses filling, and far answers).
    async fn near_batch(&self, digests: &[B3Digest]) -> Vec<Option<Result<Option<Bytes>>>> {
        self.near
            .read_chunk_batch(digests)
            .await
            .into_iter()
            .map(|r| match r {
                Ok(Some(data)) => {
                    self.stats.near_hit(data.len());
                    Some(Ok(Some(data)))
                }
                Ok(None) => None,
                Err(e) => {
                    self.gate.read_failed("chunk", &e);
                    None
                }
            })
            .collect()
    }

    /// Fetch `digest` from far and check it, unless near got it meanwhile
    /// (see [`Self::near_again`]). The caller keeps a fetched chunk in near
    /// (see [`CachedBlobService::fill`]).
    async fn fetch(&self, digest: B3Digest) -> Result<Option<(Bytes, Origin)>> {
        if let Some(data) = self.near_again(&digest).await {
            return Ok(Some((data, Origin::Near)));
        }
        let request = self.stats.far_request(digest, 1);
        let got = self.far.read_chunk_verified(&digest).await;
        let bytes = match &got {
            Ok(Some(c)) => c.data().len() as u64,
            _ => 0,
        };
        request.finish(bytes, got.is_err());
        let Some(chunk) = got? else {
            return Ok(None);
        };
        let chunk = checked(&digest, chunk)?;
        self.stats.far_fetch(chunk.data().len());
        let chunk = own(chunk);
        Ok(Some((chunk.data().clone(), Origin::Far(chunk))))
    }

    /// A write into near failed: pause filling, and recover near so that
    /// what it holds is served again.
    async fn fill_failed(&self, what: &str, e: &Error) {
        if self.gate.failed(what, e) != AfterFailure::Recover {
            return;
        }
        match self.near.recover().await {
            Ok(crate::Recovery::Reopened { disk_full }) => self.gate.recovered(disk_full),
            Ok(_) => {}
            Err(e) => {
                warn!(error = %crate::Report(&e), "could not reopen the local cache; trying again later")
            }
        }
    }

    /// Keep fetched chunks in near, in one transaction per batch, behind
    /// the readers: the fetch answers now, the fill runs on its own once
    /// there is room in the backlog (waiting for room otherwise). The
    /// chunks leave the in-flight map only when written, so that a later
    /// reader, or a quota sweep, never misses a chunk that is neither in
    /// flight nor yet in near: it gets the fetch's answer from memory.
    async fn fill_behind(&self, chunks: Vec<VerifiedChunk>, digests: Vec<B3Digest>) {
        // What failed or was absent leaves the map now: the next reader
        // asks far again rather than meet this answer.
        {
            let got: std::collections::HashSet<&B3Digest> =
                chunks.iter().map(VerifiedChunk::digest).collect();
            let mut map = self.inflight.lock();
            for d in digests.iter().filter(|d| !got.contains(d)) {
                map.remove(d);
            }
        }
        let digests: Vec<B3Digest> = chunks.iter().map(|c| *c.digest()).collect();
        if digests.is_empty() {
            return;
        }
        let bytes: u64 = chunks.iter().map(|c| c.mem_len() as u64).sum();
        let units = bytes
            .div_ceil(BACKLOG_UNIT)
            .clamp(1, u64::from(BACKLOG_UNITS)) as u32;
        let this = self.clone();
        match Arc::clone(&self.backlog).acquire_many_owned(units).await {
            Ok(permit) => {
                tokio::spawn(async move {
                    this.fill(chunks, digests).await;
                    drop(permit);
                });
            }
            // Never closed; were it, fill before answering.
            Err(_) => this.fill(chunks, digests).await,
        }
    }

    /// Write fetched chunks into near in one transaction, then let them
    /// leave the in-flight map.
    async fn fill(self, chunks: Vec<VerifiedChunk>, digests: Vec<B3Digest>) {
        if !chunks.is_empty() && self.gate.may_fill() {
            match self.near.insert_verified(chunks).await {
                Ok(()) => self.gate.succeeded(),
                Err(e) => self.fill_failed("chunk", &e).await,
            }
        }
        let mut map = self.inflight.lock();
        for d in &digests {
            map.remove(d);
        }
    }

    /// Fetch `digests` from far in one batch and check each; returns the
    /// outcomes and the good chunks (for near). Each entry fails on its own.
    async fn fetch_batch(
        &self,
        digests: &[B3Digest],
    ) -> (Vec<Result<Option<Bytes>>>, Vec<VerifiedChunk>) {
        // Near once more (see `near_again`): what a fill wrote since the
        // caller looked is answered from there, the rest asked of far.
        let mut out: Vec<Option<Result<Option<Bytes>>>> = self.near_batch(digests).await;
        let missing: Vec<B3Digest> = digests
            .iter()
            .zip(&out)
            .filter(|(_, o)| o.is_none())
            .map(|(d, _)| *d)
            .collect();
        let Some(first) = missing.first() else {
            return (out.into_iter().flatten().collect(), Vec::new());
        };
        let request = self.stats.far_request(*first, missing.len() as u64);
        let got = self.far.read_chunk_batch_verified(&missing).await;
        let bytes = got
            .iter()
            .filter_map(|r| r.as_ref().ok().and_then(|c| c.as_ref()))
            .map(|c| c.data().len() as u64)
            .sum();
        request.finish(bytes, got.iter().any(|r| r.is_err()));
        let mut fill = Vec::new();
        let mut far = missing.iter().zip(got);
        for slot in out.iter_mut().filter(|o| o.is_none()) {
            let answer = match far.next() {
                Some((digest, Ok(Some(chunk)))) => checked(digest, chunk).map(|chunk| {
                    self.stats.far_fetch(chunk.data().len());
                    let chunk = own(chunk);
                    let data = chunk.data().clone();
                    fill.push(chunk);
                    Some(data)
                }),
                Some((_, Ok(None))) => Ok(None),
                Some((_, Err(e))) => Err(e),
                None => Err(Error::remote_msg("batched fetch answered too few chunks")),
            };
            *slot = Some(answer);
        }
        (out.into_iter().flatten().collect(), fill)
    }

    /// The near side.
    pub fn near(&self) -> &Arc<dyn ChunkStore> {
        &self.near
    }

    /// The far side.
    pub fn far(&self) -> &Arc<dyn BlobService> {
        &self.far
    }
}

#[async_trait]
impl BlobService for CachedBlobService {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        match self.near.has(digest).await {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(e) => self.gate.read_failed("blob", &e),
        }
        self.far.has(digest).await
    }

    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        match self.near.chunks(digest).await {
            Ok(Some(list)) => return Ok(Some(list)),
            Ok(None) => {}
            Err(e) => self.gate.read_failed("chunk list", &e),
        }
        let Some(mut list) = self.far.chunks(digest).await? else {
            return Ok(None);
        };
        if list.len() < 2 {
            // One chunk is the blob itself: the trait's form is an empty list.
            list.clear();
        } else if self.gate.may_fill() {
            match self.near.insert_chunk_list(digest, &list).await {
                Ok(()) => self.gate.succeeded(),
                Err(e) => self.fill_failed("chunk list", &e).await,
            }
        }
        Ok(Some(list))
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        match self.near.read_chunk(digest).await {
            Ok(Some(data)) => {
                self.stats.near_hit(data.len());
                return Ok(Some(data));
            }
            Ok(None) => {}
            Err(e) => self.gate.read_failed("chunk", &e),
        }
        let fetch = {
            let mut inflight = self.inflight.lock();
            match inflight.get(digest) {
                Some(f) => f.clone(),
                None => {
                    let (this, d) = (self.clone(), *digest);
                    let f = async move {
                        let r = this.fetch(d).await.map_err(Arc::new);
                        let (r, fill) = match r {
                            Ok(Some((data, Origin::Far(chunk)))) => (Ok(Some(data)), vec![chunk]),
                            Ok(Some((data, Origin::Near))) => (Ok(Some(data)), Vec::new()),
                            Ok(None) => (Ok(None), Vec::new()),
                            Err(e) => (Err(e), Vec::new()),
                        };
                        this.fill_behind(fill, vec![d]).await;
                        r
                    }
                    .boxed()
                    .shared();
                    inflight.insert(*digest, f.clone());
                    f
                }
            }
        };
        fetch.await.map_err(|e| e.duplicate())
    }

    /// Near first (each chunk on its own); what near lacks is fetched from
    /// far in one batch, joining fetches already in flight, and kept in near
    /// in one transaction.
    async fn read_chunk_batch(&self, digests: &[B3Digest]) -> Vec<Result<Option<Bytes>>> {
        let mut out: Vec<Option<Result<Option<Bytes>>>> = self.near_batch(digests).await;
        // Each miss waits on a fetch in the map: one already in flight, or
        // one of the batch started here.
        let mut waits: Vec<(usize, Fetch)> = Vec::new();
        let mut fresh: Vec<B3Digest> = Vec::new();
        {
            let mut inflight = self.inflight.lock();
            let mut batch_entries: Vec<(B3Digest, usize)> = Vec::new();
            for (i, digest) in digests.iter().enumerate() {
                if out[i].is_some() {
                    continue;
                }
                if let Some(f) = inflight.get(digest) {
                    waits.push((i, f.clone()));
                    continue;
                }
                batch_entries.push((*digest, fresh.len()));
                fresh.push(*digest);
                // A placeholder until the batch future exists (below),
                // so that a digest asked twice in one batch is fetched once.
                inflight.insert(*digest, futures::future::pending().boxed().shared());
            }
            if !fresh.is_empty() {
                let (this, ds) = (self.clone(), fresh.clone());
                let batch: BatchFetch = async move {
                    let (got, fill) = this.fetch_batch(&ds).await;
                    this.fill_behind(fill, ds).await;
                    Arc::new(got.into_iter().map(|r| r.map_err(Arc::new)).collect())
                }
                .boxed()
                .shared();
                for (digest, k) in batch_entries {
                    let f: Fetch = batch
                        .clone()
                        .map(move |v| match v.get(k) {
                            Some(r) => r.clone(),
                            None => Err(Arc::new(Error::remote_msg(
                                "batched fetch answered too few chunks",
                            ))),
                        })
                        .boxed()
                        .shared();
                    inflight.insert(digest, f);
                }
            }
            // Misses that are the same digest as a fresh one asked earlier
            // in this call wait on it too.
            let mut waiting = vec![false; digests.len()];
            for (i, _) in &waits {
                waiting[*i] = true;
            }
            for (i, digest) in digests.iter().enumerate() {
                if out[i].is_none()
                    && !waiting[i]
                    && let Some(f) = inflight.get(digest)
                {
                    waits.push((i, f.clone()));
                }
            }
        }
        let results = futures::future::join_all(
            waits
                .into_iter()
                .map(|(i, f)| f.map(move |r| (i, r.map_err(|e| e.duplicate())))),
        )
        .await;
        for (i, r) in results {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::remote_msg("chunk left unanswered"))))
            .collect()
    }

    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        crate::blobservice::open_read_via_chunks(Arc::new(self.clone()), *digest).await
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        let far = self.far.open_write().await;
        let near = self.near.open_write().await;
        Box::new(TeeWriter::new(far, near))
    }
}
