//! What a mount serves to its peers (`--peer-listen`): its local cache's
//! chunks and chunk lists, read-only, a bounded number of reads at a time,
//! and nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use storefs_castore::{
    B3Digest, BlobReader, BlobService, BlobWriter, ChunkMeta, Directory, DirectoryPutter,
    DirectoryService, Error, Node, RefusingWriter, Result, StoredChunk,
};
use storefs_store::{DIGEST_LEN, NarCalculationService, PathInfo, PathInfoService, Services};
use tokio::sync::Semaphore;

use super::inflight::Seen;
use super::set::PeerSet;

/// Waits that came to nothing in a row (less those that delivered) after
/// which lingering stops but for one request in [`PROBE_EVERY`]: a fleet
/// whose mounts read different things should not keep its askers waiting.
const LINGER_GIVE_UP: i64 = 8;

/// See [`LINGER_GIVE_UP`].
const PROBE_EVERY: u64 = 16;

/// What a peer is told when it asks for anything but a read of chunks.
const READ_ONLY: &str = "this is a storefs peer: it serves the chunks it has cached, read-only";

/// The services a mount serves to its peers over `cache`, which you must
/// give as the mount's local store itself (never the cache layer in front
/// of the service, which would fetch on a peer's behalf).
///
/// Chunks (`Read`, `ReadChunks`) and chunk lists (`Stat`) come from
/// `cache` (to a peer that accepts zstd, a chunk kept compressed goes as
/// the frame it is kept as: neither decoded nor hashed here, the peer
/// checks it), at most `max_reads` reads at a time (more wait), so peers
/// cannot starve the mount's own programs; a chunk it lacks is
/// `NOT_FOUND`. A `Read` of a blob is answered only for one stored as a
/// single chunk. Path infos and directories are never served (`NOT_FOUND`),
/// and every write is refused.
///
/// With `set` (the mount's own peers, whose [`PeerSet::in_flight`] lists
/// what its reads are bringing in), a chunk the cache lacks is waited for
/// (at most [`PeerConfig::linger`], outside the bound on reads) when
/// - the mount is fetching it from its service right now, for its own
///   readers; or
/// - the mount owns it in the fleet's split ([`PeerSet::first_fetcher`]) and its
///   own reader is busy: a fleet that reads the same files together
///   brings each chunk in at its owner, and the others wait for that
///   rather than all asking the service at once. Never a fetch: if the
///   mount's reader does not want the chunk in time, the asker is told
///   `NOT_FOUND`. Waits that keep coming to nothing stop (but for a rare
///   probe).
///
/// A fleet that starts at once thus fetches a chunk from the service
/// about once, not once per mount.
///
/// [`PeerConfig::linger`]: super::PeerConfig::linger
pub fn peer_services(
    cache: Arc<dyn BlobService>,
    max_reads: usize,
    set: Option<PeerSet>,
) -> PeerServing {
    let figures = Arc::new(PeerServerFigures::default());
    let blobs = Arc::new(CacheOnly {
        cache,
        permits: Arc::new(Semaphore::new(max_reads.max(1))),
        figures: Arc::clone(&figures),
        set,
        linger_score: AtomicI64::new(0),
        linger_asks: AtomicU64::new(0),
    });
    let nothing = Arc::new(Nothing);
    PeerServing {
        services: Services {
            blob: blobs,
            directory: nothing.clone(),
            path_info: nothing.clone(),
            nar_calculation: nothing,
        },
        figures,
    }
}

/// The services for [`crate::serve`], and their figures.
pub struct PeerServing {
    /// Serve these on the peer listeners.
    pub services: Services,
    /// What was served to peers.
    pub figures: Arc<PeerServerFigures>,
}

/// What a mount served to its peers.
#[derive(Debug, Default)]
pub struct PeerServerFigures {
    /// Chunks sent to peers.
    pub chunks: AtomicU64,
    /// Bytes of those chunks.
    pub bytes: AtomicU64,
    /// Chunks asked for that the cache did not hold (nor a fetch in
    /// flight deliver in time).
    pub misses: AtomicU64,
    /// Chunks served (counted in `chunks` too) that were on their way from
    /// the service when asked for, or had arrived a moment before (not yet
    /// in the disk cache).
    pub joined: AtomicU64,
    /// Chunks served (counted in `chunks` too) that this mount owns in the
    /// split and its own reader brought in while the asker waited.
    pub lingered: AtomicU64,
    /// Waits (for a fetch in flight or for this mount's own reader) that
    /// ended without the chunk.
    pub linger_misses: AtomicU64,
    /// Peer reads waiting now for a chunk on its way.
    pub waiting: AtomicU64,
}

impl PeerServerFigures {
    fn served(&self, got: &Result<Option<Bytes>>) {
        self.served_len(got.as_ref().map(|o| o.as_ref().map(|b| b.len() as u64)));
    }

    /// A chunk of `len` bytes served, `None` missed, or failed.
    fn served_len(&self, got: Result<Option<u64>, &Error>) {
        match got {
            Ok(Some(len)) => {
                self.chunks.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(len, Ordering::Relaxed);
            }
            Ok(None) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }

    /// Chunks served from fetches in flight so far.
    pub fn joined(&self) -> u64 {
        self.joined.load(Ordering::Relaxed)
    }

    /// Chunks served after waiting for this mount's reader, and waits
    /// that ended without the chunk, so far.
    pub fn lingered(&self) -> (u64, u64) {
        (
            self.lingered.load(Ordering::Relaxed),
            self.linger_misses.load(Ordering::Relaxed),
        )
    }

    /// `(chunks, bytes, misses)` now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.chunks.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// The cache's chunks, read-only, under a bound on concurrent reads.
struct CacheOnly {
    cache: Arc<dyn BlobService>,
    permits: Arc<Semaphore>,
    figures: Arc<PeerServerFigures>,
    set: Option<PeerSet>,
    /// Waits for the own reader that delivered, less those that did not,
    /// within ±2 × [`LINGER_GIVE_UP`].
    linger_score: AtomicI64,
    /// Asks that could have lingered, for [`PROBE_EVERY`].
    linger_asks: AtomicU64,
}

impl CacheOnly {
    /// Whether a peer asking for `digest`, which the cache lacks, may wait
    /// for this mount's own reader to bring it in.
    fn may_linger(&self, set: &PeerSet, digest: &B3Digest) -> bool {
        if !set.owns(digest) || !set.in_flight().active(set.config().active_window) {
            return false;
        }
        let n = self.linger_asks.fetch_add(1, Ordering::Relaxed);
        self.linger_score.load(Ordering::Relaxed) > -LINGER_GIVE_UP || n.is_multiple_of(PROBE_EVERY)
    }

    /// `digest`, which the cache lacked a moment ago, if this mount's own
    /// reads bring it in soon enough (see [`peer_services`]).
    async fn arriving(&self, digest: &B3Digest) -> Option<Bytes> {
        let set = self.set.as_ref()?;
        let linger = self.may_linger(set, digest);
        let watch = match set.in_flight().watch(digest, linger) {
            Seen::Here(data) => {
                self.figures.joined.fetch_add(1, Ordering::Relaxed);
                return Some(data);
            }
            Seen::Coming(w) => w,
            Seen::No => return None,
        };
        // It may have arrived between the miss and the watch.
        if let Ok(Some(data)) = self.cache.read_chunk(digest).await {
            return Some(data);
        }
        let fetching = watch.fetching;
        self.figures.waiting.fetch_add(1, Ordering::Relaxed);
        let got = watch.wait(set.config().linger()).await;
        self.figures.waiting.fetch_sub(1, Ordering::Relaxed);
        let counter = match (&got, fetching) {
            (Some(_), true) => &self.figures.joined,
            (Some(_), false) => &self.figures.lingered,
            (None, _) => &self.figures.linger_misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if linger {
            let step = if got.is_some() { 1 } else { -1 };
            let bound = 2 * LINGER_GIVE_UP;
            let _ = self
                .linger_score
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                    Some((s + step).clamp(-bound, bound))
                });
        }
        got
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.permits
            .acquire()
            .await
            .map_err(|_| Error::remote_msg("the peer server is shutting down"))
    }
}

#[async_trait]
impl BlobService for CacheOnly {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        self.cache.has(digest).await
    }

    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        self.cache.chunks(digest).await
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        let got = {
            let _permit = self.permit().await?;
            self.cache.read_chunk(digest).await
        };
        let got = match got {
            Ok(None) => Ok(self.arriving(digest).await),
            other => other,
        };
        self.figures.served(&got);
        got
    }

    /// As `read_chunk`, but a chunk the cache keeps compressed comes as its
    /// frame, not decoded (the asker checks it): what a peer that accepts
    /// zstd is sent.
    async fn read_chunk_stored(&self, digest: &B3Digest) -> Result<Option<StoredChunk>> {
        let got = {
            let _permit = self.permit().await?;
            self.cache.read_chunk_stored(digest).await
        };
        let got = match got {
            Ok(None) => Ok(self.arriving(digest).await.map(StoredChunk::Plain)),
            other => other,
        };
        self.figures.served_len(
            got.as_ref()
                .map(|o| o.as_ref().map(StoredChunk::chunk_len_hint)),
        );
        got
    }

    async fn read_chunk_batch(&self, digests: &[B3Digest]) -> Vec<Result<Option<Bytes>>> {
        let got = match self.permit().await {
            Ok(_permit) => self.cache.read_chunk_batch(digests).await,
            Err(e) => {
                let msg = e.to_string();
                return digests
                    .iter()
                    .map(|_| Err(Error::remote_msg(msg.clone())))
                    .collect();
            }
        };
        let got = futures::future::join_all(digests.iter().zip(got).map(|(d, r)| async move {
            match r {
                Ok(None) => Ok(self.arriving(d).await),
                other => other,
            }
        }))
        .await;
        got.iter().for_each(|r| self.figures.served(r));
        got
    }

    /// Only a blob kept as one chunk: a peer reads chunks, and the cache
    /// may hold only some of a chunked blob's.
    /// (The server asks `read_chunk` before this, and counts that; this
    /// asks again uncounted.)
    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        let _permit = self.permit().await?;
        Ok(self
            .cache
            .read_chunk(digest)
            .await?
            .map(|data| Box::new(std::io::Cursor::new(data)) as BlobReader))
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        Box::new(RefusingWriter::new(refused))
    }
}

/// No path infos, no directories, no NAR calculation, no writes.
struct Nothing;

fn refused() -> Error {
    Error::InvalidRequest(READ_ONLY.into())
}

#[async_trait]
impl DirectoryService for Nothing {
    async fn get(&self, _: &B3Digest) -> Result<Option<Directory>> {
        Ok(None)
    }

    fn get_recursive(&self, _: &B3Digest) -> BoxStream<'static, Result<Directory>> {
        Box::pin(stream::empty())
    }

    async fn put(&self, _: Directory) -> Result<B3Digest> {
        Err(refused())
    }

    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter> {
        Box::new(Refused)
    }
}

#[async_trait]
impl PathInfoService for Nothing {
    async fn get(&self, _: [u8; DIGEST_LEN]) -> Result<Option<PathInfo>> {
        Ok(None)
    }

    async fn put(&self, _: PathInfo) -> Result<PathInfo> {
        Err(refused())
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
        Box::pin(stream::empty())
    }
}

#[async_trait]
impl NarCalculationService for Nothing {
    async fn calculate_nar(&self, _: &Node) -> Result<(u64, [u8; 32])> {
        Err(refused())
    }
}

/// A directory putter that refuses everything.
struct Refused;

#[async_trait]
impl DirectoryPutter for Refused {
    async fn put(&mut self, _: Directory) -> Result<()> {
        Err(refused())
    }

    async fn close(&mut self) -> Result<B3Digest> {
        Err(refused())
    }
}
