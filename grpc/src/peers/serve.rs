//! What a mount serves to its peers (`--peer-listen`): its local cache's
//! chunks and chunk lists, read-only, a bounded number of reads at a time,
//! and nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use storefs_castore::{
    B3Digest, BlobReader, BlobService, BlobWriter, ChunkMeta, Directory, DirectoryPutter,
    DirectoryService, Error, Node, RefusingWriter, Result,
};
use storefs_store::{DIGEST_LEN, NarCalculationService, PathInfo, PathInfoService, Services};
use tokio::sync::Semaphore;

use super::inflight::InFlight;

/// How long a peer's read of a chunk waits for this mount's own fetch of
/// it from the service.
pub const IN_FLIGHT_WAIT: Duration = Duration::from_secs(2);

/// What a peer is told when it asks for anything but a read of chunks.
const READ_ONLY: &str = "this is a storefs peer: it serves the chunks it has cached, read-only";

/// The services a mount serves to its peers over `cache`, which you must
/// give as the mount's local store itself (never the cache layer in front
/// of the service, which would fetch on a peer's behalf).
///
/// Chunks (`Read`, `ReadChunks`) and chunk lists (`Stat`) come from
/// `cache`, at most `max_reads` reads at a time (more wait), so peers
/// cannot starve the mount's own programs; a chunk it lacks is
/// `NOT_FOUND`. A `Read` of a blob is answered only for one stored as a
/// single chunk. Path infos and directories are never served (`NOT_FOUND`),
/// and every write is refused.
///
/// With `in_flight` (the mount's [`PeerSet::in_flight`]), a chunk the
/// cache lacks but the mount is fetching from its service right now is
/// handed over when it arrives (waiting at most [`IN_FLIGHT_WAIT`], outside
/// the bound on reads): a fleet that starts at once fetches a chunk from
/// the service about once, not once per mount.
///
/// [`PeerSet::in_flight`]: super::PeerSet::in_flight
pub fn peer_services(
    cache: Arc<dyn BlobService>,
    max_reads: usize,
    in_flight: Option<InFlight>,
) -> PeerServing {
    let figures = Arc::new(PeerServerFigures::default());
    let blobs = Arc::new(CacheOnly {
        cache,
        permits: Arc::new(Semaphore::new(max_reads.max(1))),
        figures: Arc::clone(&figures),
        in_flight,
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
    /// the service when asked for.
    pub joined: AtomicU64,
    /// Peer reads waiting now for a chunk on its way from the service.
    pub waiting: AtomicU64,
}

impl PeerServerFigures {
    fn served(&self, got: &Result<Option<Bytes>>) {
        match got {
            Ok(Some(b)) => {
                self.chunks.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
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
    in_flight: Option<InFlight>,
}

impl CacheOnly {
    /// `digest` if the mount is fetching it from its service now and it
    /// arrives within [`IN_FLIGHT_WAIT`].
    async fn arriving(&self, digest: &B3Digest) -> Option<Bytes> {
        let in_flight = self.in_flight.as_ref()?;
        self.figures.waiting.fetch_add(1, Ordering::Relaxed);
        let got = in_flight.wait(digest, IN_FLIGHT_WAIT).await;
        self.figures.waiting.fetch_sub(1, Ordering::Relaxed);
        let got = got?;
        self.figures.joined.fetch_add(1, Ordering::Relaxed);
        Some(got)
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
