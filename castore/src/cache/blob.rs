//! [`CachedBlobService`]: a near [`ChunkStore`] in front of a far
//! [`BlobService`].

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tracing::warn;

use super::tee::TeeWriter;
use crate::blobservice::{BlobReader, BlobService, BlobWriter, ChunkMeta, ChunkStore};
use crate::{B3Digest, Error, Result};

/// Blobs read through a near cache from a far service. Chunks and chunk
/// lists fetched from far are verified, then kept in near.
///
/// A chunk list from far cannot be checked on its own: each chunk is checked
/// when it is read, and the whole blob when `open_read` reaches its end.
#[derive(Clone)]
pub struct CachedBlobService {
    /// Where reads look first and fetched data is kept.
    near: Arc<dyn ChunkStore>,
    /// The authority; every miss goes there, every write too.
    far: Arc<dyn BlobService>,
}

impl CachedBlobService {
    /// `near` in front of `far`.
    pub fn new(near: Arc<dyn ChunkStore>, far: Arc<dyn BlobService>) -> Self {
        Self { near, far }
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
            Err(e) => warn!(%digest, error = %e, "near blob service failed; asking far"),
        }
        self.far.has(digest).await
    }

    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        match self.near.chunks(digest).await {
            Ok(Some(list)) => return Ok(Some(list)),
            Ok(None) => {}
            Err(e) => warn!(%digest, error = %e, "near blob service failed; asking far"),
        }
        let Some(mut list) = self.far.chunks(digest).await? else {
            return Ok(None);
        };
        if list.len() < 2 {
            // One chunk is the blob itself: the trait's form is an empty list.
            list.clear();
        } else if let Err(e) = self.near.insert_chunk_list(digest, &list).await {
            warn!(%digest, error = %e, "could not cache chunk list");
        }
        Ok(Some(list))
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        match self.near.read_chunk(digest).await {
            Ok(Some(data)) => return Ok(Some(data)),
            Ok(None) => {}
            Err(e) => warn!(%digest, error = %e, "near chunk unreadable; fetching from far"),
        }
        let Some(data) = self.far.read_chunk(digest).await? else {
            return Ok(None);
        };
        let actual = B3Digest::of(&data);
        if &actual != digest {
            return Err(Error::Integrity {
                what: "chunk",
                expected: *digest,
                actual,
            });
        }
        if let Err(e) = self.near.insert_chunk(digest, data.clone()).await {
            warn!(%digest, error = %e, "could not cache chunk");
        }
        Ok(Some(data))
    }

    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        crate::blobservice::reader::open_read(Arc::new(self.clone()), *digest).await
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        let far = self.far.open_write().await;
        let near = self.near.open_write().await;
        Box::new(TeeWriter::new(far, near))
    }
}
