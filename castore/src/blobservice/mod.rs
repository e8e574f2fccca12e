//! Blobs: file contents addressed by BLAKE3, stored as content-defined chunks.
//!
//! A blob's digest is BLAKE3 of its whole content; a chunk's, BLAKE3 of the
//! chunk. A blob of fewer than two chunks has an empty chunk list and is read
//! whole (its only chunk has the blob's own digest).
//!
//! Every implementation returns only verified bytes: `read_chunk` hashes what
//! it returns, and `open_read` checks the whole blob's digest by the time the
//! reader reaches its end (an `InvalidData` I/O error otherwise).

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{B3Digest, Result};

mod chunk_store;
mod memory;
mod pack;
mod quota;
mod reader;
mod redb;
mod refusing;
mod stored;
mod writer;

pub use self::redb::{RedbBlobService, WRITE_BATCH_BYTES};
pub use chunk_store::{ChunkStore, verify_chunk};
pub use memory::MemoryBlobService;
pub use quota::{DISK_SLACK_BYTES, DISK_SLACK_PERCENT, QuotaFigures, disk_bound, sync_bytes_for};
pub use reader::open_read_via_chunks;
pub use refusing::RefusingWriter;
pub(crate) use stored::decompress_sized;
pub use stored::{StoredChunk, VerifiedChunk};
pub(crate) use writer::{ChunkSink, ChunkingWriter};

/// How many `read_chunk` calls the default
/// [`BlobService::read_chunk_batch`] keeps going at once.
pub const BATCH_CONCURRENCY: usize = 16;

/// One chunk of a blob: its digest and length, in blob order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// BLAKE3 of the chunk's bytes.
    pub digest: B3Digest,
    /// The chunk's length in bytes.
    pub size: u64,
}

/// A reader of a whole blob. It fails with `InvalidData` at the end if the
/// bytes it delivered do not hash to the blob's digest.
pub type BlobReader = Box<dyn AsyncRead + Send + Unpin>;

/// A writer that takes a blob's bytes in order, chunks them as they come,
/// and stores them.
///
/// You must call [`BlobWriter::close`] to learn the digest; bytes written to
/// a writer that is dropped unclosed may be stored but are named by nothing.
#[async_trait]
pub trait BlobWriter: AsyncWrite + Send + Unpin {
    /// Flush what is buffered, store the last chunk and the chunk list, and
    /// return the blob's digest. Calling it twice returns the same digest.
    async fn close(&mut self) -> Result<B3Digest>;
}

/// A store of blobs and their chunks.
#[async_trait]
pub trait BlobService: Send + Sync + 'static {
    /// Whether the blob (or chunk) is present.
    async fn has(&self, digest: &B3Digest) -> Result<bool>;

    /// The blob's chunk list: `None` if the blob is absent, an empty list if
    /// it has fewer than two chunks (read it whole with `read_chunk`).
    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>>;

    /// The bytes of one chunk, or of a whole blob that is stored as a single
    /// chunk, verified against `digest`. `None` if absent.
    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>>;

    /// Many chunks at once, each answered on its own and in order: a chunk
    /// that is absent (`Ok(None)`), corrupt or unreadable fails only its own
    /// entry. Every `Some` is verified against its digest, as `read_chunk`.
    ///
    /// For services where a request costs a round trip, this is one request
    /// (or a few) for all of them; the default asks `read_chunk` for each,
    /// [`BATCH_CONCURRENCY`] at a time. You must only ask for chunks you can
    /// hold in memory together.
    async fn read_chunk_batch(&self, digests: &[B3Digest]) -> Vec<Result<Option<Bytes>>> {
        let mut out = Vec::with_capacity(digests.len());
        for group in digests.chunks(BATCH_CONCURRENCY) {
            let reads: Vec<_> = group.iter().map(|d| self.read_chunk(d)).collect();
            out.extend(futures::future::join_all(reads).await);
        }
        out
    }

    /// One chunk as the service keeps it, for sending it on: a chunk kept
    /// compressed may come as its zstd frame, neither decoded nor checked
    /// here (whoever decodes it checks it: [`StoredChunk::into_verified`]),
    /// so that a server passes it on without decompressing and the link
    /// carries fewer bytes. `None` if absent. The default reads the chunk
    /// with `read_chunk` (verified); an implementation may hand out plain
    /// bytes unchecked too, since its receiver checks them.
    async fn read_chunk_stored(&self, digest: &B3Digest) -> Result<Option<StoredChunk>> {
        Ok(self.read_chunk(digest).await?.map(StoredChunk::Plain))
    }

    /// Many chunks as the service keeps them, each as by
    /// [`BlobService::read_chunk_stored`] and answered on its own, in
    /// order: for a server answering a batched request, so that a service
    /// with a per-read cost (a transaction, a thread hand-off) pays it once
    /// for the batch. The default asks `read_chunk_stored` for each,
    /// [`BATCH_CONCURRENCY`] at a time. You must only ask for chunks you
    /// can hold in memory together.
    async fn read_chunk_stored_batch(
        &self,
        digests: &[B3Digest],
    ) -> Vec<Result<Option<StoredChunk>>> {
        let mut out = Vec::with_capacity(digests.len());
        for group in digests.chunks(BATCH_CONCURRENCY) {
            let reads: Vec<_> = group.iter().map(|d| self.read_chunk_stored(d)).collect();
            out.extend(futures::future::join_all(reads).await);
        }
        out
    }

    /// One chunk, checked, with the zstd frame it arrived in if it came
    /// compressed: for a cache, which keeps the frame as it is
    /// ([`ChunkStore::insert_verified`]). `None` if absent. A client of a
    /// remote that receives frames overrides this to check each chunk once
    /// as it arrives; the default checks what `read_chunk` returns.
    async fn read_chunk_verified(&self, digest: &B3Digest) -> Result<Option<VerifiedChunk>> {
        match self.read_chunk(digest).await? {
            Some(data) => {
                VerifiedChunk::verify(*digest, StoredChunk::Plain(data), usize::MAX).map(Some)
            }
            None => Ok(None),
        }
    }

    /// [`BlobService::read_chunk_batch`], each chunk as by
    /// [`BlobService::read_chunk_verified`]: each entry answered on its
    /// own. The default checks what `read_chunk_batch` returns.
    async fn read_chunk_batch_verified(
        &self,
        digests: &[B3Digest],
    ) -> Vec<Result<Option<VerifiedChunk>>> {
        self.read_chunk_batch(digests)
            .await
            .into_iter()
            .zip(digests)
            .map(|(got, digest)| match got? {
                Some(data) => {
                    VerifiedChunk::verify(*digest, StoredChunk::Plain(data), usize::MAX).map(Some)
                }
                None => Ok(None),
            })
            .collect()
    }

    /// A reader of the whole blob, `None` if absent. Memory use is bounded by
    /// a chunk or so, whatever the blob's size.
    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>>;

    /// A writer for a new blob.
    async fn open_write(&self) -> Box<dyn BlobWriter>;
}
