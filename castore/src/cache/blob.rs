//! [`CachedBlobService`]: a near [`ChunkStore`] in front of a far
//! [`BlobService`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use tracing::warn;

use super::fill::{AfterFailure, FillGate};
use super::stats::CacheStats;
use super::tee::TeeWriter;
use crate::blobservice::{BlobReader, BlobService, BlobWriter, ChunkMeta, ChunkStore};
use crate::{B3Digest, Error, Result};

/// Blobs read through a near cache from a far service. Chunks and chunk
/// lists fetched from far are verified, then kept in near.
///
/// A chunk list from far cannot be checked on its own: each chunk is checked
/// when it is read, and the whole blob when `open_read` reaches its end.
///
/// Concurrent misses on one chunk share one fetch from far.
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
}

/// One fetch of a chunk from far, awaited by every reader that wants it.
type Fetch = Shared<BoxFuture<'static, Result<Option<Bytes>, Arc<Error>>>>;

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
        }
    }

    /// The cache's live figures: hits in near, bytes fetched from far,
    /// failed fills.
    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.stats
    }

    /// Fetch `digest` from far, check it, and keep it in near.
    async fn fetch(self, digest: B3Digest) -> Result<Option<Bytes>> {
        let Some(data) = self.far.read_chunk(&digest).await? else {
            return Ok(None);
        };
        let actual = B3Digest::of(&data);
        if actual != digest {
            return Err(Error::Integrity {
                what: "chunk",
                expected: digest,
                actual,
            });
        }
        self.stats.far_fetch(data.len());
        if self.gate.may_fill() {
            match self.near.insert_chunk(&digest, data.clone()).await {
                Ok(()) => self.gate.succeeded(),
                Err(e) => self.fill_failed("chunk", &e).await,
            }
        }
        Ok(Some(data))
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
            Err(e) => warn!(error = %e, "could not reopen the local cache; trying again later"),
        }
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
                    let (this, map, d) = (self.clone(), self.inflight.clone(), *digest);
                    let f = async move {
                        let r = this.fetch(d).await.map_err(Arc::new);
                        map.lock().remove(&d);
                        r
                    }
                    .boxed()
                    .shared();
                    inflight.insert(*digest, f.clone());
                    f
                }
            }
        };
        fetch.await.map_err(|e| clone_error(&e))
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

/// A copy of an error shared between the readers of one fetch.
fn clone_error(e: &Error) -> Error {
    match e {
        Error::Integrity {
            what,
            expected,
            actual,
        } => Error::Integrity {
            what,
            expected: *expected,
            actual: *actual,
        },
        Error::InvalidDirectory { digest, source } => Error::InvalidDirectory {
            digest: *digest,
            source: source.clone(),
        },
        Error::InvalidRequest(m) => Error::InvalidRequest(m.clone()),
        Error::Storage(m) => Error::Storage(m.clone()),
        Error::Remote(m) => Error::Remote(m.clone()),
        Error::Timeout(m) => Error::Timeout(m.clone()),
        Error::Io(io) => Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        #[allow(unreachable_patterns)] // a variant added later still maps
        other => Error::Remote(other.to_string()),
    }
}
