//! [`ObjectStoreBlobService`]: blobs as chunk objects and chunk-list
//! objects in a bucket (`layout.rs`).
//!
//! A blob of two or more chunks has a chunk-list object; a blob of one
//! chunk is only its chunk object, under the blob's own digest (snix reads
//! it the same way: no list, then the chunk). Writers upload chunks as
//! they are cut, several at a time, and the chunk list last, so that a
//! list never names a chunk that is not there. Every chunk read is
//! decompressed and hashed before it is returned.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};

use super::Bucket;
use super::error::task;
use super::layout::{
    blob_key, chunk_key, decode_chunk, decode_chunk_list, encode_chunk, encode_chunk_list,
};
use crate::blobservice::{BlobReader, BlobService, BlobWriter, ChunkMeta};
use crate::blobservice::{ChunkSink, ChunkingWriter};
use crate::chunking::Chunker;
use crate::{B3Digest, Result};

/// How many chunk bytes a writer buffers before it uploads them.
const UPLOAD_BATCH_BYTES: usize = 4 << 20;

/// How many PUTs one writer keeps going at once.
const UPLOAD_CONCURRENCY: usize = 8;

/// A blob service over a [`Bucket`]. Clones share it.
#[derive(Clone)]
pub struct ObjectStoreBlobService {
    bucket: Bucket,
    /// A fresh chunker, cloned for every writer.
    chunker: Chunker,
}

impl ObjectStoreBlobService {
    /// The blob service of `bucket`, with the default chunking.
    pub fn new(bucket: Bucket) -> Self {
        Self {
            bucket,
            chunker: Chunker::default(),
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }
}

/// The empty blob is there in every store: it has no chunk to hold.
fn is_empty_blob(digest: &B3Digest) -> bool {
    digest == &B3Digest::of(b"")
}

#[async_trait]
impl BlobService for ObjectStoreBlobService {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        if is_empty_blob(digest) {
            return Ok(true);
        }
        let prefix = self.bucket.prefix();
        Ok(self.bucket.exists(&blob_key(prefix, digest)).await?
            || self.bucket.exists(&chunk_key(prefix, digest)).await?)
    }

    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        let prefix = self.bucket.prefix();
        let key = blob_key(prefix, digest);
        if let Some(object) = self.bucket.get(&key).await? {
            return decode_chunk_list(&key, digest, &object).map(Some);
        }
        if is_empty_blob(digest) || self.bucket.exists(&chunk_key(prefix, digest)).await? {
            return Ok(Some(Vec::new()));
        }
        Ok(None)
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        let key = chunk_key(self.bucket.prefix(), digest);
        let Some(object) = self.bucket.get(&key).await? else {
            return Ok(is_empty_blob(digest).then(Bytes::new));
        };
        let digest = *digest;
        tokio::task::spawn_blocking(move || decode_chunk(&key, &digest, &object))
            .await
            .map_err(|e| task("decompressing a chunk", e))?
            .map(Some)
    }

    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        crate::blobservice::open_read_via_chunks(Arc::new(self.clone()), *digest).await
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        Box::new(ChunkingWriter::new(
            Uploader {
                bucket: self.bucket.clone(),
                pending: Vec::new(),
                pending_bytes: 0,
                sent: HashSet::new(),
            },
            self.chunker.clone(),
        ))
    }
}

/// Takes the chunks a writer cuts and uploads them in batches.
struct Uploader {
    bucket: Bucket,
    /// Chunks cut but not yet uploaded.
    pending: Vec<(B3Digest, Bytes)>,
    pending_bytes: usize,
    /// Chunks this writer uploaded already (a blob may repeat a chunk).
    sent: HashSet<B3Digest>,
}

impl Uploader {
    fn take_batch(&mut self) -> Vec<(B3Digest, Bytes)> {
        self.pending_bytes = 0;
        std::mem::take(&mut self.pending)
    }
}

/// Compress and PUT `chunks`, [`UPLOAD_CONCURRENCY`] at a time.
async fn upload(bucket: Bucket, chunks: Vec<(B3Digest, Bytes)>) -> Result<()> {
    futures::stream::iter(chunks)
        .map(|(digest, data)| {
            let bucket = bucket.clone();
            async move {
                let object = tokio::task::spawn_blocking(move || encode_chunk(&data))
                    .await
                    .map_err(|e| task("compressing a chunk", e))??;
                bucket
                    .put(&chunk_key(bucket.prefix(), &digest), object)
                    .await
            }
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect::<()>()
        .await
}

impl ChunkSink for Uploader {
    fn put_chunk(&mut self, digest: B3Digest, data: Bytes) {
        if self.sent.insert(digest) {
            self.pending_bytes += data.len();
            self.pending.push((digest, data));
        }
    }

    fn maybe_flush(&mut self) -> Option<BoxFuture<'static, Result<()>>> {
        if self.pending_bytes < UPLOAD_BATCH_BYTES {
            return None;
        }
        let batch = self.take_batch();
        Some(Box::pin(upload(self.bucket.clone(), batch)))
    }

    fn finish(&mut self, blob: B3Digest, chunks: Vec<ChunkMeta>) -> BoxFuture<'static, Result<()>> {
        let batch = self.take_batch();
        let bucket = self.bucket.clone();
        Box::pin(async move {
            upload(bucket.clone(), batch).await?;
            if !chunks.is_empty() {
                // Written last: a list never names a chunk not yet there.
                bucket
                    .put(
                        &blob_key(bucket.prefix(), &blob),
                        encode_chunk_list(&chunks),
                    )
                    .await?;
            }
            Ok(())
        })
    }
}
