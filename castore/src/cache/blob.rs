//! [`CachedBlobService`]: a near [`ChunkStore`] in front of a far
//! [`BlobService`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
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

/// Fills waiting behind their readers are written together, in one
/// transaction, once this many bytes of them wait ...
const FILL_TOGETHER_BYTES: u64 = FILL_BACKLOG_BYTES / 2;

/// ... or the first of them has waited this long. redb keeps chunks by
/// digest, so the chunks of one fill land on leaves all over its tree, and
/// a commit writes every leaf it touched: fills of a few hundred small
/// files each rewrote most of the tree every time (a cold walk of 50,000
/// small files spent a third of the mount's CPU committing). Fewer, larger
/// transactions touch each leaf once for many chunks.
const FILL_LINGER: std::time::Duration = std::time::Duration::from_millis(200);

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
    inflight: Arc<Mutex<InFlight>>,
    /// How many fills have let their chunks leave the in-flight map
    /// (changed under its lock). A reader that finds it unchanged between
    /// its look in near and its look in the map knows that no chunk moved
    /// from one to the other meanwhile: what it did not find in either is
    /// fetched without a second look in near. When it changed, the fills
    /// since (see [`InFlight::recent`]) name the chunks to look for again.
    fills_done: Arc<AtomicU64>,
    /// What was served from near and fetched from far.
    stats: Arc<CacheStats>,
    /// Whether fetched data goes into near now (not after a failed write,
    /// for a while).
    gate: Arc<FillGate>,
    /// Bounds the bytes fetched and not yet written into near.
    backlog: Arc<Semaphore>,
    /// Fills waiting to be written together (see [`FILL_LINGER`]).
    fills: Arc<Mutex<FillQueue>>,
    /// Wakes the filler early: enough is waiting, or a flush wants it all.
    fill_wake: Arc<Notify>,
    /// Flushes waiting: the filler writes at once while there are any.
    flushing: Arc<AtomicUsize>,
}

/// Fetched chunks waiting for the filler, which writes them into near
/// together.
#[derive(Default)]
struct FillQueue {
    /// Each fill: its chunks, their digests, and its share of the backlog
    /// (given back once written).
    waiting: Vec<(Vec<VerifiedChunk>, Vec<B3Digest>, OwnedSemaphorePermit)>,
    /// Bytes of `waiting`.
    bytes: u64,
    /// Whether a filler task is running (it takes what waits, until
    /// nothing does).
    filler: bool,
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

/// How many of the last fills [`InFlight::recent`] remembers.
const RECENT_FILLS: usize = 64;

/// Fetches in flight, and what the last fills took out of them.
#[derive(Default)]
struct InFlight {
    /// Each chunk being fetched, and its fetch.
    map: HashMap<B3Digest, Fetch>,
    /// The chunks each of the last [`RECENT_FILLS`] fills wrote into near
    /// and let leave `map`, with the fill's number (its count in
    /// `fills_done`), oldest first.
    recent: VecDeque<(u64, Vec<B3Digest>)>,
}

/// Which chunks may have moved from the in-flight map into near since a
/// reader looked in near (see [`InFlight::moved_since`]).
enum Moved {
    /// None: nothing was filled meanwhile.
    Nothing,
    /// These.
    These(HashSet<B3Digest>),
    /// Too many fills to tell: any.
    Any,
}

impl Moved {
    /// Whether `digest` is to be looked for in near again.
    fn may_have(&self, digest: &B3Digest) -> bool {
        match self {
            Moved::Nothing => false,
            Moved::These(set) => set.contains(digest),
            Moved::Any => true,
        }
    }
}

impl InFlight {
    /// What fills after number `before` took out of the map, when `now`
    /// fills are done.
    fn moved_since(&self, before: u64, now: u64) -> Moved {
        if now == before {
            return Moved::Nothing;
        }
        match self.recent.front() {
            Some((oldest, _)) if *oldest <= before + 1 => Moved::These(
                self.recent
                    .iter()
                    .filter(|(n, _)| *n > before)
                    .flat_map(|(_, ds)| ds.iter().copied())
                    .collect(),
            ),
            _ => Moved::Any,
        }
    }
}

/// One fetch from far of one chunk or of a batch of them, awaited by every
/// reader of any of them: each entry's outcome, in request order.
type Batch = Shared<BoxFuture<'static, Arc<Vec<Result<Option<Bytes>, Arc<Error>>>>>>;

/// A chunk being fetched: the fetch that brings it and its place there.
/// One shared fetch per request, not one future per chunk: most chunks of
/// a batch are awaited only by the batch's own caller.
#[derive(Clone)]
struct Fetch {
    batch: Batch,
    index: usize,
}

impl Fetch {
    /// The chunk's outcome, once its fetch is done.
    async fn outcome(self) -> Result<Option<Bytes>> {
        let all = self.batch.await;
        pick(&all, self.index)
    }
}

/// Entry `index` of a fetch's outcomes.
fn pick(all: &[Result<Option<Bytes>, Arc<Error>>], index: usize) -> Result<Option<Bytes>> {
    match all.get(index) {
        Some(Ok(data)) => Ok(data.clone()),
        Some(Err(e)) => Err(e.duplicate()),
        None => Err(Error::remote_msg("batched fetch answered too few chunks")),
    }
}

impl CachedBlobService {
    /// `near` in front of `far`.
    pub fn new(near: Arc<dyn ChunkStore>, far: Arc<dyn BlobService>) -> Self {
        let stats = Arc::new(CacheStats::default());
        Self {
            near,
            far,
            inflight: Arc::default(),
            fills_done: Arc::default(),
            gate: Arc::new(FillGate::new(Arc::clone(&stats))),
            stats,
            backlog: Arc::new(Semaphore::new(BACKLOG_UNITS as usize)),
            fills: Arc::default(),
            fill_wake: Arc::new(Notify::new()),
            flushing: Arc::default(),
        }
    }

    /// Wait until every fetched chunk has been written into near (or its
    /// write has failed): before the process exits, so that what was
    /// fetched is there next time.
    pub async fn flush(&self) {
        // The filler writes what waits now, not after its linger.
        self.flushing.fetch_add(1, Ordering::SeqCst);
        self.fill_wake.notify_one();
        // Never closed; all permits back means no fill is left.
        let _all = self.backlog.acquire_many(BACKLOG_UNITS).await;
        self.flushing.fetch_sub(1, Ordering::SeqCst);
    }

    /// The cache's live figures: hits in near, bytes fetched from far,
    /// failed fills.
    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.stats
    }

    /// What near holds of `digests`, in order; `None` for each it lacks
    /// (or could not read: that pauses filling, and far answers).
    async fn near_batch(&self, digests: &[B3Digest]) -> Vec<Option<Result<Option<Bytes>>>> {
        self.stats.near_lookups(digests.len());
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

    /// Keep fetched chunks in near behind the readers: the fetch answers
    /// now, the fill waits for the filler once there is room in the backlog
    /// (waiting for room otherwise), and the filler writes the fills that
    /// wait together (see [`FILL_LINGER`]). The chunks leave the in-flight
    /// map only when written, so that a later reader, or a quota sweep,
    /// never misses a chunk that is neither in flight nor yet in near: it
    /// gets the fetch's answer from memory.
    async fn fill_behind(&self, chunks: Vec<VerifiedChunk>, digests: Vec<B3Digest>) {
        // What failed or was absent leaves the map now: the next reader
        // asks far again rather than meet this answer. (Nothing went into
        // near, so `fills_done` stays.)
        if chunks.len() < digests.len() {
            let got: std::collections::HashSet<&B3Digest> =
                chunks.iter().map(VerifiedChunk::digest).collect();
            let mut inflight = self.inflight.lock();
            for d in digests.iter().filter(|d| !got.contains(d)) {
                inflight.map.remove(d);
            }
        }
        if chunks.is_empty() {
            return;
        }
        let digests: Vec<B3Digest> = chunks.iter().map(|c| *c.digest()).collect();
        let bytes: u64 = chunks.iter().map(|c| c.mem_len() as u64).sum();
        let units = bytes
            .div_ceil(BACKLOG_UNIT)
            .clamp(1, u64::from(BACKLOG_UNITS)) as u32;
        let permit = match Arc::clone(&self.backlog).acquire_many_owned(units).await {
            Ok(permit) => permit,
            // Never closed; were it, fill before answering.
            Err(_) => return self.clone().fill(chunks, digests).await,
        };
        let start = {
            let mut q = self.fills.lock();
            q.bytes += bytes;
            q.waiting.push((chunks, digests, permit));
            if q.bytes >= FILL_TOGETHER_BYTES {
                self.fill_wake.notify_one();
            }
            !std::mem::replace(&mut q.filler, true)
        };
        if start {
            tokio::spawn(self.clone().run_filler());
        }
    }

    /// Write the fills that wait, together, until none do: each round
    /// waits [`FILL_LINGER`] for more to come (less when
    /// [`FILL_TOGETHER_BYTES`] wait or a flush asks), then takes all.
    async fn run_filler(self) {
        loop {
            if self.flushing.load(Ordering::SeqCst) == 0 {
                let _ = tokio::time::timeout(FILL_LINGER, self.fill_wake.notified()).await;
            }
            let waiting = {
                let mut q = self.fills.lock();
                if q.waiting.is_empty() {
                    q.filler = false;
                    return;
                }
                q.bytes = 0;
                std::mem::take(&mut q.waiting)
            };
            let mut chunks = Vec::new();
            let mut digests = Vec::new();
            let mut permits = Vec::with_capacity(waiting.len());
            for (c, d, p) in waiting {
                chunks.extend(c);
                digests.extend(d);
                permits.push(p);
            }
            self.clone().fill(chunks, digests).await;
            drop(permits);
        }
    }

    /// Write fetched chunks into near in one transaction (under a quota,
    /// a few), then let them leave the in-flight map.
    async fn fill(self, chunks: Vec<VerifiedChunk>, digests: Vec<B3Digest>) {
        if !chunks.is_empty() && self.gate.may_fill() {
            match self.near.insert_verified(chunks).await {
                Ok(()) => self.gate.succeeded(),
                Err(e) => self.fill_failed("chunk", &e).await,
            }
        }
        let mut inflight = self.inflight.lock();
        for d in &digests {
            inflight.map.remove(d);
        }
        // Under the map's lock: see `fills_done`.
        let n = self.fills_done.fetch_add(1, Ordering::Release) + 1;
        inflight.recent.push_back((n, digests));
        if inflight.recent.len() > RECENT_FILLS {
            inflight.recent.pop_front();
        }
    }

    /// Fetch `digests` from far in one batch and check each; returns the
    /// outcomes and the good chunks (for near). Each entry fails on its own.
    /// Those marked in `again` are looked for in near once more before: a
    /// fill wrote them there since the caller looked (see
    /// [`InFlight::recent`]).
    async fn fetch_batch(
        &self,
        digests: &[B3Digest],
        again: &[bool],
    ) -> (Vec<Result<Option<Bytes>>>, Vec<VerifiedChunk>) {
        let mut out: Vec<Option<Result<Option<Bytes>>>> = digests.iter().map(|_| None).collect();
        if again.iter().any(|a| *a) {
            let look: Vec<B3Digest> = digests
                .iter()
                .zip(again)
                .filter(|(_, a)| **a)
                .map(|(d, _)| *d)
                .collect();
            let mut found = self.near_batch(&look).await.into_iter();
            for (slot, _) in out.iter_mut().zip(again).filter(|(_, a)| **a) {
                *slot = found.next().flatten();
            }
        }
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
        let got = if let [one] = missing.as_slice() {
            vec![self.far.read_chunk_verified(one).await]
        } else {
            self.far.read_chunk_batch_verified(&missing).await
        };
        let bytes = got
            .iter()
            .filter_map(|r| r.as_ref().ok().and_then(|c| c.as_ref()))
            .map(|c| c.data().len() as u64)
            .sum();
        request.finish(bytes, got.iter().any(|r| r.is_err()));
        let mut fill = Vec::with_capacity(got.len());
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

    /// Start one fetch of `fresh` (chunks neither in near at the caller's
    /// look nor in flight; those marked in `again` may have been written
    /// into near since) and register each in the in-flight map, whose lock
    /// the caller holds.
    fn start_fetch(
        &self,
        inflight: &mut InFlight,
        fresh: Vec<B3Digest>,
        again: Vec<bool>,
    ) -> Batch {
        let this = self.clone();
        let ds = fresh.clone();
        let batch: Batch = async move {
            let (got, fill) = this.fetch_batch(&ds, &again).await;
            this.fill_behind(fill, ds).await;
            Arc::new(got.into_iter().map(|r| r.map_err(Arc::new)).collect())
        }
        .boxed()
        .shared();
        for (index, digest) in fresh.into_iter().enumerate() {
            inflight.map.insert(
                digest,
                Fetch {
                    batch: batch.clone(),
                    index,
                },
            );
        }
        batch
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
        let fills_before = self.fills_done.load(Ordering::Acquire);
        self.stats.near_lookups(1);
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
            match inflight.map.get(digest) {
                Some(f) => f.clone(),
                None => {
                    let now = self.fills_done.load(Ordering::Acquire);
                    let again = inflight.moved_since(fills_before, now).may_have(digest);
                    let batch = self.start_fetch(&mut inflight, vec![*digest], vec![again]);
                    Fetch { batch, index: 0 }
                }
            }
        };
        fetch.outcome().await
    }

    /// Near first, all in one look; what near lacks is fetched from far in
    /// one batch, joining fetches already in flight, and kept in near in
    /// one transaction. Near is looked at again only for chunks a fill may
    /// have moved there since (a count of fills tells).
    async fn read_chunk_batch(&self, digests: &[B3Digest]) -> Vec<Result<Option<Bytes>>> {
        let fills_before = self.fills_done.load(Ordering::Acquire);
        let mut out: Vec<Option<Result<Option<Bytes>>>> = self.near_batch(digests).await;
        // Each miss waits on a fetch in the map: one already in flight, or
        // the one started here.
        let mut waits: Vec<(usize, Fetch)> = Vec::new();
        let mut fresh: Vec<B3Digest> = Vec::new();
        // Misses of the fresh fetch: (slot, place in the fetch).
        let mut fresh_slots: Vec<(usize, usize)> = Vec::new();
        let batch = {
            let mut inflight = self.inflight.lock();
            // A digest asked twice in one call is fetched once.
            let mut seen: HashMap<B3Digest, usize> = HashMap::new();
            for (i, digest) in digests.iter().enumerate() {
                if out[i].is_some() {
                    continue;
                }
                if let Some(f) = inflight.map.get(digest) {
                    waits.push((i, f.clone()));
                    continue;
                }
                let k = *seen.entry(*digest).or_insert_with(|| {
                    fresh.push(*digest);
                    fresh.len() - 1
                });
                fresh_slots.push((i, k));
            }
            if fresh.is_empty() {
                None
            } else {
                let now = self.fills_done.load(Ordering::Acquire);
                let moved = inflight.moved_since(fills_before, now);
                let again = fresh.iter().map(|d| moved.may_have(d)).collect();
                Some(self.start_fetch(&mut inflight, fresh, again))
            }
        };
        let (fetched, joined) = futures::future::join(
            async move {
                match batch {
                    Some(b) => Some(b.await),
                    None => None,
                }
            },
            futures::future::join_all(
                waits
                    .into_iter()
                    .map(|(i, f)| f.outcome().map(move |r| (i, r))),
            ),
        )
        .await;
        if let Some(all) = fetched {
            for (i, k) in fresh_slots {
                out[i] = Some(pick(&all, k));
            }
        }
        for (i, r) in joined {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The fills since a reader's look name what to look for again; when
    /// the oldest of them is forgotten, anything may have moved.
    #[test]
    fn moved_since_names_the_chunks_of_the_fills_since() {
        let d = |n: u8| B3Digest::of(&[n]);
        let mut f = InFlight::default();
        for n in 1..=(RECENT_FILLS as u64 + 2) {
            f.recent.push_back((n, vec![d(n as u8)]));
            if f.recent.len() > RECENT_FILLS {
                f.recent.pop_front();
            }
        }
        let now = RECENT_FILLS as u64 + 2;
        assert!(matches!(f.moved_since(now, now), Moved::Nothing));
        let m = f.moved_since(now - 2, now);
        assert!(m.may_have(&d(now as u8)) && m.may_have(&d(now as u8 - 1)));
        assert!(!m.may_have(&d(now as u8 - 2)));
        // Fills 3.. are remembered: a look after fill 2 can tell ...
        assert!(matches!(f.moved_since(2, now), Moved::These(_)));
        // ... one after fill 1 cannot (fill 2 is forgotten).
        assert!(matches!(f.moved_since(1, now), Moved::Any));
    }
}
