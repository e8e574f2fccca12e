//! [`BlobService`] over the replicas.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use storefs_castore::{B3Digest, Error, Result};
use storefs_castore::{
    BlobReader, BlobService, BlobWriter, ChunkMeta, RefusingWriter, VerifiedChunk,
    open_read_via_chunks,
};

use super::Failover;
use super::remotes::{Verdict, verdict};

#[async_trait]
impl BlobService for Failover {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        self.remotes
            .call("BlobService/Stat", |r| {
                let digest = *digest;
                async move { r.services.grpc_blob.has(&digest).await }
            })
            .await
    }

    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        self.remotes
            .call("BlobService/Stat", |r| {
                let digest = *digest;
                async move { r.services.grpc_blob.chunks(&digest).await }
            })
            .await
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        Ok(self
            .read_chunk_verified(digest)
            .await?
            .map(VerifiedChunk::into_data))
    }

    async fn read_chunk_verified(&self, digest: &B3Digest) -> Result<Option<VerifiedChunk>> {
        self.remotes
            .call("BlobService/Read", |r| {
                let digest = *digest;
                async move {
                    let got = r.services.grpc_blob.read_chunk_verified(&digest).await?;
                    if let Some(c) = &got {
                        r.received(c.data().len());
                    }
                    Ok(got)
                }
            })
            .await
    }

    async fn read_chunk_batch(&self, digests: &[B3Digest]) -> Vec<Result<Option<Bytes>>> {
        VerifiedChunk::batch_data(self.read_chunk_batch_verified(digests).await)
    }

    /// Each replica in turn is asked for the entries still failing in a
    /// way another replica may not: what one delivered (or said is absent)
    /// stands. Chunks come as the replica's client checked them, with
    /// their frames.
    async fn read_chunk_batch_verified(
        &self,
        digests: &[B3Digest],
    ) -> Vec<Result<Option<VerifiedChunk>>> {
        let remotes = &self.remotes;
        let mut out: Vec<Option<Result<Option<VerifiedChunk>>>> =
            digests.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..digests.len()).collect();
        let mut backoff = remotes.config.initial_backoff;
        for round in 0..=remotes.config.retries {
            if pending.is_empty() {
                break;
            }
            if round > 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(remotes.config.max_backoff);
            }
            for i in remotes.order() {
                if pending.is_empty() {
                    break;
                }
                let remote = &remotes.list[i];
                let ask: Vec<B3Digest> = pending.iter().map(|&j| digests[j]).collect();
                let got = remote
                    .services
                    .grpc_blob
                    .read_chunk_batch_verified(&ask)
                    .await;
                let mut still = Vec::new();
                // The entry whose failure judges the replica: one that
                // says it is down, else any that failed over.
                let mut worst: Option<usize> = None;
                for (j, r) in pending.iter().copied().zip(got) {
                    match r {
                        Err(e) if verdict(&e).next() => {
                            still.push(j);
                            if worst.is_none() || verdict(&e) != Verdict::Next {
                                worst = Some(j);
                            }
                            out[j] = Some(Err(e));
                        }
                        other => {
                            if let Ok(Some(c)) = &other {
                                remote.received(c.data().len());
                            }
                            out[j] = Some(other);
                        }
                    }
                }
                let failure = worst.and_then(|j| match &out[j] {
                    Some(Err(e)) => Some(e),
                    _ => None,
                });
                remotes.record(remote, failure);
                pending = still;
            }
            // Another round only for entries a replica could not be asked.
            pending
                .retain(|&j| matches!(&out[j], Some(Err(e)) if verdict(e) == Verdict::Unreachable));
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::remote_msg("ReadChunks: no replica to ask"))))
            .collect()
    }

    /// A chunked blob is read through its chunk list, so that each chunk
    /// fails over on its own; a blob the service keeps unchunked (snix
    /// does, for large ones) is streamed from the first replica that
    /// starts sending it.
    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        let Some(chunks) = self.chunks(digest).await? else {
            return Ok(None);
        };
        if !chunks.is_empty() {
            return open_read_via_chunks(Arc::new(self.clone()), *digest).await;
        }
        self.remotes
            .call("BlobService/Read", |r| {
                let digest = *digest;
                async move { r.services.grpc_blob.open_read(&digest).await }
            })
            .await
    }

    /// Streamed to the first healthy replica; not moved if it fails (the
    /// bytes are not kept), so the caller uploads again.
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        let first = self.remotes.order().first().copied().unwrap_or(0);
        match self.remotes.list.get(first) {
            Some(r) => r.services.grpc_blob.open_write().await,
            None => Box::new(RefusingWriter::new(|| {
                Error::remote_msg("no replica to write to")
            })),
        }
    }
}
