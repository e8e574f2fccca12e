//! `snix.castore.v1.BlobService` over any [`BlobService`].

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use storefs_castore::B3Digest;
use storefs_castore::{BlobReader, BlobService, ChunkMeta};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Request, Response, Status, Streaming};

use crate::limits::READ_MESSAGE_SIZE;
use crate::proto::castore::{
    BlobChunk, PutBlobResponse, ReadBlobRequest, StatBlobRequest, StatBlobResponse,
    blob_service_server, stat_blob_response,
};
use crate::status::{io_to_status, to_status};

/// Serves blobs from a [`BlobService`].
pub(crate) struct BlobServer {
    blobs: Arc<dyn BlobService>,
}

impl BlobServer {
    pub(crate) fn new(blobs: Arc<dyn BlobService>) -> Self {
        Self { blobs }
    }
}

/// The digest field of a request, checked.
pub(crate) fn parse_digest(op: &str, raw: &Bytes) -> Result<B3Digest, Status> {
    B3Digest::try_from(raw).map_err(|e| Status::invalid_argument(format!("{op}: digest: {e}")))
}

/// A blob reader as a stream of messages of [`READ_MESSAGE_SIZE`] bytes
/// (the last may be shorter); only one message is in memory at a time.
fn reader_stream(
    digest: B3Digest,
    mut reader: BlobReader,
) -> BoxStream<'static, Result<BlobChunk, Status>> {
    async_stream::try_stream! {
        loop {
            let mut buf = BytesMut::with_capacity(READ_MESSAGE_SIZE);
            while buf.len() < READ_MESSAGE_SIZE {
                let n = reader
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| io_to_status(&format!("Read {digest}"), e))?;
                if n == 0 {
                    break;
                }
            }
            if buf.is_empty() {
                break;
            }
            let last = buf.len() < READ_MESSAGE_SIZE;
            yield BlobChunk { data: buf.freeze() };
            if last {
                // A short message: the reader already returned 0 (its end,
                // where it checks the blob's digest).
                break;
            }
        }
    }
    .boxed()
}

/// How many chunks of a blob the server reads ahead of the one it sends.
const CHUNK_READ_AHEAD: usize = 4;

/// The chunks of `digest` in order, each read (and verified) by
/// `read_chunk`, [`CHUNK_READ_AHEAD`] at a time, and sent in messages of at
/// most [`READ_MESSAGE_SIZE`] bytes.
fn chunks_stream(
    blobs: Arc<dyn BlobService>,
    digest: B3Digest,
    list: Vec<ChunkMeta>,
) -> BoxStream<'static, Result<BlobChunk, Status>> {
    let reads = futures::stream::iter(list.into_iter().enumerate()).map(move |(index, meta)| {
        let blobs = blobs.clone();
        async move {
            let op = format!("Read {digest}: chunk #{index} ({})", meta.digest);
            match blobs.read_chunk(&meta.digest).await {
                Ok(Some(data)) if data.len() as u64 == meta.size => Ok(bytes_stream(data)),
                Ok(Some(data)) => Err(crate::status::data_loss(format!(
                    "{op}: {} bytes, the chunk list says {}",
                    data.len(),
                    meta.size
                ))),
                Ok(None) => Err(crate::status::data_loss(format!("{op}: missing"))),
                Err(e) => Err(to_status(&op, e)),
            }
        }
    });
    reads
        .buffered(CHUNK_READ_AHEAD)
        .map(|r| match r {
            Ok(pieces) => pieces,
            Err(status) => futures::stream::once(async move { Err(status) }).boxed(),
        })
        .flatten()
        .boxed()
}

/// A chunk held in memory as a stream of messages of at most
/// [`READ_MESSAGE_SIZE`] bytes (slices of the same buffer, no copies).
fn bytes_stream(data: Bytes) -> BoxStream<'static, Result<BlobChunk, Status>> {
    let pieces: Vec<Bytes> = (0..data.len())
        .step_by(READ_MESSAGE_SIZE)
        .map(|start| data.slice(start..data.len().min(start + READ_MESSAGE_SIZE)))
        .collect();
    futures::stream::iter(pieces.into_iter().map(|data| Ok(BlobChunk { data }))).boxed()
}

#[tonic::async_trait]
impl blob_service_server::BlobService for BlobServer {
    #[tracing::instrument(skip_all, fields(digest))]
    async fn stat(
        &self,
        request: Request<StatBlobRequest>,
    ) -> Result<Response<StatBlobResponse>, Status> {
        let req = request.into_inner();
        let digest = parse_digest("Stat", &req.digest)?;
        tracing::Span::current().record("digest", tracing::field::display(&digest));
        let op = format!("Stat {digest}");
        if !req.send_chunks {
            return match self.blobs.has(&digest).await {
                Ok(true) => Ok(Response::new(StatBlobResponse::default())),
                Ok(false) => Err(Status::not_found(format!("{op}: no such blob"))),
                Err(e) => Err(to_status(&op, e)),
            };
        }
        let chunks = self
            .blobs
            .chunks(&digest)
            .await
            .map_err(|e| to_status(&op, e))?
            .ok_or_else(|| Status::not_found(format!("{op}: no such blob")))?;
        Ok(Response::new(StatBlobResponse {
            chunks: chunks
                .into_iter()
                .map(|c| stat_blob_response::ChunkMeta {
                    digest: c.digest.to_bytes(),
                    size: c.size,
                })
                .collect(),
            bao: Bytes::new(),
        }))
    }

    type ReadStream = BoxStream<'static, Result<BlobChunk, Status>>;

    #[tracing::instrument(skip_all, fields(digest))]
    async fn read(
        &self,
        request: Request<ReadBlobRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let digest = parse_digest("Read", &request.into_inner().digest)?;
        tracing::Span::current().record("digest", tracing::field::display(&digest));
        let op = format!("Read {digest}");
        // A chunked blob is sent chunk by chunk: each chunk is verified by
        // `read_chunk` and sent without a copy; the whole-blob digest is the
        // client's to check. A blob of one chunk (its chunk list is empty,
        // so it is no bigger than a chunk) and a digest that names only a
        // chunk come from `read_chunk` too. Anything else a backend holds
        // streams from its reader.
        let chunks = self
            .blobs
            .chunks(&digest)
            .await
            .map_err(|e| to_status(&op, e))?;
        if let Some(list) = chunks.filter(|l| !l.is_empty()) {
            return Ok(Response::new(chunks_stream(
                self.blobs.clone(),
                digest,
                list,
            )));
        }
        if let Some(data) = self
            .blobs
            .read_chunk(&digest)
            .await
            .map_err(|e| to_status(&op, e))?
        {
            return Ok(Response::new(bytes_stream(data)));
        }
        match self
            .blobs
            .open_read(&digest)
            .await
            .map_err(|e| to_status(&op, e))?
        {
            Some(reader) => Ok(Response::new(reader_stream(digest, reader))),
            None => Err(Status::not_found(format!("{op}: no such blob or chunk"))),
        }
    }

    #[tracing::instrument(skip_all, fields(digest, size))]
    async fn put(
        &self,
        request: Request<Streaming<BlobChunk>>,
    ) -> Result<Response<PutBlobResponse>, Status> {
        let mut stream = request.into_inner();
        let mut writer = self.blobs.open_write().await;
        let mut size: u64 = 0;
        while let Some(msg) = stream.message().await? {
            writer
                .write_all(&msg.data)
                .await
                .map_err(|e| io_to_status("Put", e))?;
            size = size.saturating_add(msg.data.len() as u64);
        }
        let digest = writer.close().await.map_err(|e| to_status("Put", e))?;
        let span = tracing::Span::current();
        span.record("digest", tracing::field::display(&digest));
        span.record("size", size);
        tracing::debug!("blob stored");
        Ok(Response::new(PutBlobResponse {
            digest: digest.to_bytes(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_stream_splits_without_gaps() {
        let data: Bytes = (0..(2 * READ_MESSAGE_SIZE + 7))
            .map(|i| i as u8)
            .collect::<Vec<_>>()
            .into();
        let parts: Vec<_> = bytes_stream(data.clone()).collect().await;
        let lens: Vec<usize> = parts
            .iter()
            .map(|p| p.as_ref().unwrap().data.len())
            .collect();
        assert_eq!(lens, [READ_MESSAGE_SIZE, READ_MESSAGE_SIZE, 7]);
        let joined: Vec<u8> = parts
            .into_iter()
            .flat_map(|p| p.unwrap().data.to_vec())
            .collect();
        assert_eq!(joined, data);
    }

    #[tokio::test]
    async fn reader_stream_sends_full_messages() {
        let data: Vec<u8> = (0..(READ_MESSAGE_SIZE + 3))
            .map(|i| (i * 7) as u8)
            .collect();
        let reader: BlobReader = Box::new(std::io::Cursor::new(data.clone()));
        let parts: Vec<_> = reader_stream(B3Digest::of(&data), reader).collect().await;
        let lens: Vec<usize> = parts
            .iter()
            .map(|p| p.as_ref().unwrap().data.len())
            .collect();
        assert_eq!(lens, [READ_MESSAGE_SIZE, 3]);
    }
}
