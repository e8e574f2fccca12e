//! [`MemoryBlobService`]: blobs in process memory, for tests and `memory:`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::RwLock;

use super::chunk_store::{ChunkStore, check_chunk_list, verify_chunk};
use super::writer::{ChunkSink, ChunkingWriter};
use super::{BlobReader, BlobService, BlobWriter, ChunkMeta};
use crate::chunking::{Chunker, ChunkerConfig, ChunkerConfigError};
use crate::{B3Digest, Result};

/// The maps behind a [`MemoryBlobService`]. The locks are parking_lot
/// (sync) locks: they are held only for a map operation, never across an
/// `.await`.
#[derive(Default)]
struct Maps {
    /// Chunk digest → bytes; single-chunk blobs are here under their own digest.
    chunks: RwLock<HashMap<B3Digest, Bytes>>,
    /// Blob digest → chunk list, for blobs of two or more chunks.
    lists: RwLock<HashMap<B3Digest, Vec<ChunkMeta>>>,
}

/// A blob service that keeps everything in memory. Clones share the same
/// contents. Chunks are stored once however many blobs hold them.
#[derive(Clone)]
pub struct MemoryBlobService {
    maps: Arc<Maps>,
    /// A fresh chunker, cloned for every writer (validated once, here).
    chunker: Chunker,
}

impl MemoryBlobService {
    /// An empty service with the default chunking (16/64/256 KiB).
    pub fn new() -> Self {
        Self {
            maps: Arc::default(),
            chunker: Chunker::default(),
        }
    }

    /// An empty service that cuts new blobs with `config`.
    pub fn with_chunker(config: ChunkerConfig) -> Result<Self, ChunkerConfigError> {
        Ok(Self {
            maps: Arc::default(),
            chunker: Chunker::new(config)?,
        })
    }

    /// How many distinct chunks are stored (single-chunk blobs included).
    pub fn chunk_count(&self) -> usize {
        self.maps.chunks.read().len()
    }
}

impl Default for MemoryBlobService {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl BlobService for MemoryBlobService {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        Ok(self.maps.lists.read().contains_key(digest)
            || self.maps.chunks.read().contains_key(digest))
    }

    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        if let Some(list) = self.maps.lists.read().get(digest) {
            return Ok(Some(list.clone()));
        }
        Ok(self.maps.chunks.read().contains_key(digest).then(Vec::new))
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        let Some(data) = self.maps.chunks.read().get(digest).cloned() else {
            return Ok(None);
        };
        verify_chunk(digest, &data)?;
        Ok(Some(data))
    }

    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        super::reader::open_read_via_chunks(Arc::new(self.clone()), *digest).await
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        Box::new(ChunkingWriter::new(
            MemorySink {
                maps: self.maps.clone(),
            },
            self.chunker.clone(),
        ))
    }
}

#[async_trait]
impl ChunkStore for MemoryBlobService {
    async fn insert_chunk(&self, digest: &B3Digest, data: Bytes) -> Result<()> {
        verify_chunk(digest, &data)?;
        self.maps.chunks.write().entry(*digest).or_insert(data);
        Ok(())
    }

    async fn insert_chunk_list(&self, blob: &B3Digest, chunks: &[ChunkMeta]) -> Result<()> {
        check_chunk_list(blob, chunks)?;
        self.maps.lists.write().insert(*blob, chunks.to_vec());
        Ok(())
    }
}

/// Stores each chunk as it is cut.
struct MemorySink {
    maps: Arc<Maps>,
}

impl ChunkSink for MemorySink {
    fn put_chunk(&mut self, digest: B3Digest, data: Bytes) {
        self.maps.chunks.write().entry(digest).or_insert(data);
    }

    fn maybe_flush(&mut self) -> Option<BoxFuture<'static, Result<()>>> {
        None
    }

    fn finish(&mut self, blob: B3Digest, chunks: Vec<ChunkMeta>) -> BoxFuture<'static, Result<()>> {
        if !chunks.is_empty() {
            self.maps.lists.write().insert(blob, chunks);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}
