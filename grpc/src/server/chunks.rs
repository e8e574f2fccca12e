//! `storefs.castore.v1.ChunkService`: many chunks in one call.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use storefs_castore::B3Digest;
use storefs_castore::{BlobService, StoredChunk};
use tonic::{Request, Response, Status};

use crate::limits::{MAX_BATCH_DIGESTS, READ_MESSAGE_SIZE};
use crate::proto::storefs::{ChunkData, ReadChunksRequest, chunk_service_server};
use crate::status::to_status;

/// How many chunks of a batch are read from the backend at once.
const BATCH_READ_AHEAD: usize = 8;

/// Serves batched chunk reads from a [`BlobService`].
pub(crate) struct ChunkServer {
    blobs: Arc<dyn BlobService>,
}

impl ChunkServer {
    pub(crate) fn new(blobs: Arc<dyn BlobService>) -> Self {
        Self { blobs }
    }
}

#[tonic::async_trait]
impl chunk_service_server::ChunkService for ChunkServer {
    type ReadChunksStream = BoxStream<'static, Result<ChunkData, Status>>;

    #[tracing::instrument(skip_all, fields(count))]
    async fn read_chunks(
        &self,
        request: Request<ReadChunksRequest>,
    ) -> Result<Response<Self::ReadChunksStream>, Status> {
        let request = request.into_inner();
        let (raw, accept_zstd) = (request.digests, request.accept_zstd);
        if raw.len() > MAX_BATCH_DIGESTS {
            return Err(Status::invalid_argument(format!(
                "ReadChunks: {} digests, at most {MAX_BATCH_DIGESTS}",
                raw.len()
            )));
        }
        tracing::Span::current().record("count", raw.len());
        let digests = raw
            .iter()
            .enumerate()
            .map(|(i, d)| {
                B3Digest::try_from(d)
                    .map_err(|e| Status::invalid_argument(format!("ReadChunks: digest #{i}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let blobs = self.blobs.clone();
        let reads = futures::stream::iter(digests.into_iter().enumerate()).map(move |(i, d)| {
            let blobs = blobs.clone();
            async move {
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                // A client that decodes zstd gets a chunk kept compressed
                // as it is kept: no decompression here, fewer bytes on the
                // link; the client checks it.
                let got = if accept_zstd {
                    blobs.read_chunk_stored(&d).await
                } else {
                    blobs
                        .read_chunk(&d)
                        .await
                        .map(|o| o.map(StoredChunk::Plain))
                }
                .map_err(|e| to_status(&format!("ReadChunks {d}"), e))?;
                Ok::<_, Status>(futures::stream::iter(messages(index, got)))
            }
        });
        let stream = reads
            .buffered(BATCH_READ_AHEAD)
            .map(|r| match r {
                Ok(msgs) => msgs.boxed(),
                Err(status) => futures::stream::once(async move { Err(status) }).boxed(),
            })
            .flatten();
        Ok(Response::new(stream.boxed()))
    }
}

/// The messages of chunk #`index` of a request: pieces of at most
/// [`READ_MESSAGE_SIZE`] bytes, or one `missing` message.
fn messages(index: u32, got: Option<StoredChunk>) -> Vec<Result<ChunkData, Status>> {
    let (data, zstd) = match got {
        None => {
            return vec![Ok(ChunkData {
                index,
                data: Bytes::new(),
                last: true,
                missing: true,
                zstd: false,
            })];
        }
        Some(StoredChunk::Zstd(frame)) => (frame, true),
        Some(StoredChunk::Plain(data)) => (data, false),
        // A kind this server does not know how to send: as missing would
        // lie, so the chunk fails.
        Some(_) => {
            return vec![Err(Status::internal(format!(
                "ReadChunks: chunk #{index} is stored in a form this server cannot send"
            )))];
        }
    };
    if data.is_empty() {
        return vec![Ok(ChunkData {
            index,
            data,
            last: true,
            missing: false,
            zstd,
        })];
    }
    let n = data.len().div_ceil(READ_MESSAGE_SIZE);
    (0..n)
        .map(|k| {
            let start = k * READ_MESSAGE_SIZE;
            let end = data.len().min(start + READ_MESSAGE_SIZE);
            Ok(ChunkData {
                index,
                data: data.slice(start..end),
                last: k + 1 == n,
                missing: false,
                zstd,
            })
        })
        .collect()
}
