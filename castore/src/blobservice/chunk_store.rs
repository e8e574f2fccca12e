//! [`ChunkStore`]: the extension a blob service needs to serve as the near
//! side of a cache ([`crate::CachedBlobService`]).
//!
//! A cache learns a blob's chunk list and its chunks separately and may hold
//! only some of the chunks, so it must be able to record each on its own.
//! This is additive: it does not change [`BlobService`].

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobService, ChunkMeta, VerifiedChunk};
use crate::{B3Digest, Error, Result};

/// A blob service that can also take chunks and chunk lists one by one.
#[async_trait]
pub trait ChunkStore: BlobService {
    /// Store one chunk (or a whole blob kept as a single chunk) fetched from
    /// elsewhere. The store checks that `data` hashes to `digest` and
    /// returns [`Error::Integrity`] without storing anything otherwise.
    async fn insert_chunk(&self, digest: &B3Digest, data: Bytes) -> Result<()>;

    /// Store several chunks fetched together, each checked as by
    /// `insert_chunk` (a chunk that fails its check is not stored, and the
    /// first such failure is returned after the others are stored). A store
    /// with transactions keeps them all in one. The default stores them one
    /// by one.
    async fn insert_chunks(&self, chunks: Vec<(B3Digest, Bytes)>) -> Result<()> {
        let mut first_err = None;
        for (digest, data) in chunks {
            if let Err(e) = self.insert_chunk(&digest, data).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Store chunks that were checked as they arrived
    /// ([`VerifiedChunk`]), as they arrived: a chunk that came as a zstd
    /// frame is kept as that frame where the store keeps frames, neither
    /// compressed nor hashed again (the chunk is its own proof). Otherwise
    /// as `insert_chunks`, which the default calls with the bytes (checking
    /// them again).
    async fn insert_verified(&self, chunks: Vec<VerifiedChunk>) -> Result<()> {
        self.insert_chunks(
            chunks
                .into_iter()
                .map(|c| (*c.digest(), c.into_data()))
                .collect(),
        )
        .await
    }

    /// Record the chunk list of `blob` (two or more chunks), whether or not
    /// the chunks themselves are here. Afterwards `has(blob)` is true and
    /// `chunks(blob)` returns `chunks`; a read of a chunk that is not here
    /// returns `None`. A list of fewer than two chunks is refused.
    async fn insert_chunk_list(&self, blob: &B3Digest, chunks: &[ChunkMeta]) -> Result<()>;

    /// After an insert failed: bring the store back to serving what it
    /// holds, if the failure broke it (redb fails every call after a write
    /// error until reopened). Returns whether anything had to be done, and
    /// whether the disk was full. The default: nothing to do.
    async fn recover(&self) -> Result<crate::Recovery> {
        Ok(crate::Recovery::Healthy)
    }
}

/// Check that `data` is the chunk named `digest`: an integrity error
/// naming both digests if not. For every chunk read from a store or a
/// remote, and every chunk given to [`ChunkStore::insert_chunk`].
pub fn verify_chunk(digest: &B3Digest, data: &[u8]) -> Result<()> {
    let actual = B3Digest::of(data);
    if &actual != digest {
        return Err(Error::Integrity {
            what: "chunk",
            expected: *digest,
            actual,
        });
    }
    Ok(())
}

/// Check what `insert_chunk_list` is given.
pub(crate) fn check_chunk_list(blob: &B3Digest, chunks: &[ChunkMeta]) -> Result<()> {
    if chunks.len() < 2 {
        return Err(Error::InvalidRequest(format!(
            "chunk list of blob {blob} has {} entries; a list needs at least 2",
            chunks.len()
        )));
    }
    Ok(())
}
