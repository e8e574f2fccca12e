//! [`BlobService`] over gRPC.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::Stream;
use storefs_castore::{B3Digest, Error, Result};
use storefs_castore::{
    BATCH_CONCURRENCY, BlobReader, BlobService, BlobWriter, ChunkMeta, StoredChunk, VerifiedChunk,
};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::io::StreamReader;
use tokio_util::sync::PollSender;
use tonic::{Code, Status, Streaming};

use super::Conn;
use super::call::{deadline, error, next_message, request, retry};
use crate::limits::{
    MAX_BATCH_BYTES, MAX_BATCH_DIGESTS, MAX_READ_CHUNK_LEN, READ_MESSAGE_SIZE, WRITE_QUEUE_MESSAGES,
};
use crate::proto::castore::{BlobChunk, PutBlobResponse, ReadBlobRequest, StatBlobRequest};
use crate::proto::storefs::ReadChunksRequest;

/// Blobs of a remote service. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct GrpcBlobService {
    conn: Conn,
    /// Set once the service answered `ReadChunks` with UNIMPLEMENTED (a
    /// snix service): single chunks are then read with `Read` straight
    /// away, without asking again each time.
    no_read_chunks: Arc<AtomicBool>,
}

impl GrpcBlobService {
    pub(crate) fn new(conn: Conn) -> Self {
        Self {
            conn,
            no_read_chunks: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Stat, `None` for NOT_FOUND.
    async fn stat(
        &self,
        digest: &B3Digest,
        send_chunks: bool,
    ) -> Result<Option<Vec<crate::proto::castore::stat_blob_response::ChunkMeta>>> {
        let op = format!("BlobService/Stat {digest}");
        let answer = retry(&self.conn, || {
            let mut client = self.conn.blob_client();
            let req = request(
                &self.conn,
                StatBlobRequest {
                    digest: digest.to_bytes(),
                    send_chunks,
                    send_bao: false,
                },
            );
            async move { client.stat(req).await }
        })
        .await;
        match answer {
            Ok(r) => Ok(Some(r.into_inner().chunks)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(error(&self.conn, &op, &s)),
        }
    }

    /// Start a `Read` and wait for its first message (retrying while the
    /// service is unreachable). `None` for NOT_FOUND.
    async fn open(
        &self,
        digest: &B3Digest,
    ) -> Result<Option<(Option<BlobChunk>, Streaming<BlobChunk>)>, Status> {
        let answer = retry(&self.conn, || {
            let mut client = self.conn.blob_client();
            let conn = self.conn.clone();
            let req = tonic::Request::new(ReadBlobRequest {
                digest: digest.to_bytes(),
            });
            async move {
                let mut stream = client.read(req).await?.into_inner();
                let first = next_message(&conn, &mut stream).await?;
                Ok((first, stream))
            }
        })
        .await;
        match answer {
            Ok(v) => Ok(Some(v)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }
}

impl GrpcBlobService {
    /// The chunks (or single-chunk blobs) named by `digests`, in order, each
    /// verified; `None` for one the service does not hold. Uses storefs's
    /// `ChunkService/ReadChunks` (one call per
    /// [`MAX_BATCH_DIGESTS`](crate::limits::MAX_BATCH_DIGESTS) digests) and
    /// falls back to one `Read` per chunk on a service that lacks it (snix).
    /// Fails as a whole if any chunk fails; see
    /// [`BlobService::read_chunk_batch`] for entries failing on their own.
    ///
    /// You must only batch chunks you expect to fit in memory together: a
    /// call collecting more than [`MAX_BATCH_BYTES`] fails.
    pub async fn read_chunks(&self, digests: &[B3Digest]) -> Result<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(digests.len());
        let mut total: usize = 0;
        for batch in digests.chunks(MAX_BATCH_DIGESTS) {
            match self.read_batch(batch, &mut total).await {
                Ok(got) => {
                    for r in got {
                        out.push(r?.map(VerifiedChunk::into_data));
                    }
                }
                Err(BatchError::Unimplemented) => {
                    self.no_read_chunks.store(true, Ordering::Relaxed);
                    for d in batch {
                        out.push(self.read_chunk(d).await?);
                    }
                }
                Err(BatchError::Broken(_, e) | BatchError::Other(e)) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One `ReadChunks` call. The outer error fails the whole call (the
    /// stream broke or broke the protocol); an entry whose bytes do not
    /// hash to its digest fails on its own. Each chunk is decoded (if it
    /// came as a zstd frame) and hashed once, here, and keeps its frame.
    async fn read_batch(
        &self,
        batch: &[B3Digest],
        total: &mut usize,
    ) -> Result<Vec<Result<Option<VerifiedChunk>>>, BatchError> {
        let conn = &self.conn;
        let op = format!("ChunkService/ReadChunks ({} digests)", batch.len());
        let protocol =
            |why: String| BatchError::Other(Error::remote(format!("{} {op}", conn.name), why));
        let opened = retry(conn, || {
            let mut client = conn.chunk_client();
            let req = tonic::Request::new(ReadChunksRequest {
                digests: batch.iter().map(B3Digest::to_bytes).collect(),
                accept_zstd: true,
            });
            async move {
                let mut stream = client.read_chunks(req).await?.into_inner();
                let first = next_message(conn, &mut stream).await?;
                Ok((first, stream))
            }
        })
        .await;
        let (first, mut rest) = match opened {
            Ok(v) => v,
            Err(s) if s.code() == Code::Unimplemented => return Err(BatchError::Unimplemented),
            Err(s) => return Err(BatchError::Other(error(conn, &op, &s))),
        };
        let mut out: Vec<Result<Option<VerifiedChunk>>> = Vec::with_capacity(batch.len());
        let mut parts: Vec<Bytes> = Vec::new();
        // Whether the chunk being put together is a zstd frame.
        let mut zstd = false;
        let mut next = first;
        while let Some(msg) = next.take() {
            let index = msg.index as usize;
            if index != out.len() || index >= batch.len() {
                return Err(protocol(format!(
                    "chunk #{index} sent where #{} was due",
                    out.len()
                )));
            }
            *total = total.saturating_add(msg.data.len());
            if *total > MAX_BATCH_BYTES {
                return Err(BatchError::Other(Error::InvalidRequest(format!(
                    "{} {op}: more than {MAX_BATCH_BYTES} bytes in one call",
                    conn.name
                ))));
            }
            if msg.missing {
                if !parts.is_empty() || !msg.last {
                    return Err(protocol(format!("chunk #{index}: missing after data")));
                }
                out.push(Ok(None));
            } else {
                if parts.is_empty() {
                    zstd = msg.zstd;
                } else if zstd != msg.zstd {
                    return Err(protocol(format!(
                        "chunk #{index}: compressed in some messages only"
                    )));
                }
                parts.push(msg.data);
                if msg.last {
                    let data = join(std::mem::take(&mut parts));
                    let stored = if zstd {
                        StoredChunk::Zstd(data)
                    } else {
                        StoredChunk::Plain(data)
                    };
                    // Decoded (within the bound on one chunk) and checked:
                    // a bad chunk fails its own entry. One that came plain
                    // was kept so by the service because it does not
                    // shrink (a storefs store compresses every chunk that
                    // does, and sends it so to a client taking frames).
                    out.push(
                        VerifiedChunk::verify(batch[index], stored, MAX_READ_CHUNK_LEN)
                            .map(|c| Some(c.sent_plain_by_choice())),
                    );
                }
            }
            next = match next_message(conn, &mut rest).await {
                Ok(m) => m,
                Err(s) => return Err(BatchError::Broken(out, error(conn, &op, &s))),
            };
        }
        if out.len() != batch.len() || !parts.is_empty() {
            return Err(protocol(format!(
                "the stream ended after {} of {} chunks",
                out.len(),
                batch.len()
            )));
        }
        Ok(out)
    }
}

impl GrpcBlobService {
    /// One `Read` of a chunk (or single-chunk blob), its bytes not yet
    /// checked: the caller checks them. `None` for NOT_FOUND.
    async fn read_unchecked(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        let op = format!("BlobService/Read {digest}");
        let conn = &self.conn;
        let Some((first, mut rest)) = self.open(digest).await.map_err(|s| error(conn, &op, &s))?
        else {
            return Ok(None);
        };
        let mut parts: Vec<Bytes> = Vec::new();
        let mut total: usize = 0;
        let mut next = first;
        while let Some(msg) = next.take() {
            total = total.saturating_add(msg.data.len());
            if total > MAX_READ_CHUNK_LEN {
                return Err(Error::InvalidRequest(format!(
                    "{} {op}: larger than {MAX_READ_CHUNK_LEN} bytes; read it with open_read",
                    conn.name
                )));
            }
            parts.push(msg.data);
            next = next_message(conn, &mut rest)
                .await
                .map_err(|s| error(conn, &op, &s))?;
        }
        // One message (the usual chunk) is returned without a copy.
        let data = match parts.len() {
            0 => Bytes::new(),
            1 => parts.swap_remove(0),
            _ => {
                let mut buf = BytesMut::with_capacity(total);
                parts.iter().for_each(|p| buf.extend_from_slice(p));
                buf.freeze()
            }
        };
        Ok(Some(data))
    }

    /// One `Read` (as snix serves it: plain bytes), checked once.
    async fn read_plain(&self, digest: &B3Digest) -> Result<Option<VerifiedChunk>> {
        let Some(data) = self.read_unchecked(digest).await? else {
            return Ok(None);
        };
        VerifiedChunk::verify(*digest, StoredChunk::Plain(data), MAX_READ_CHUNK_LEN).map(Some)
    }

    /// One `Read` per chunk, [`BATCH_CONCURRENCY`] at a time.
    async fn read_each(&self, digests: &[B3Digest]) -> Vec<Result<Option<VerifiedChunk>>> {
        let mut out = Vec::with_capacity(digests.len());
        for group in digests.chunks(BATCH_CONCURRENCY) {
            let reads: Vec<_> = group.iter().map(|d| self.read_plain(d)).collect();
            out.extend(futures::future::join_all(reads).await);
        }
        out
    }
}

/// A copy of `e` for each entry of a batch that failed as a whole.
fn each_entry(e: &Error) -> Error {
    match e {
        Error::Timeout { what, after } => Error::timeout(what.clone(), *after),
        Error::InvalidRequest(m) => Error::InvalidRequest(m.clone()),
        // The same remote failure again, not wrapped in a second one.
        Error::Remote { context, source } => Error::remote_msg(match source {
            Some(s) => format!("{context}: {}", storefs_castore::Report(s.as_ref())),
            None => context.clone(),
        }),
        other => Error::remote_msg(storefs_castore::Report(other).to_string()),
    }
}

/// Why a batch read did not give its chunks.
enum BatchError {
    /// The service does not have `ReadChunks`: read one by one.
    Unimplemented,
    /// The stream ended in an error after these entries arrived.
    Broken(Vec<Result<Option<VerifiedChunk>>>, Error),
    Other(Error),
}

/// Pieces of one chunk as one buffer (no copy for a single piece).
fn join(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.swap_remove(0),
        _ => {
            let mut buf = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            parts.iter().for_each(|p| buf.extend_from_slice(p));
            buf.freeze()
        }
    }
}

/// The bytes of a `Read` stream, hashed as they pass; at the end, an
/// `InvalidData` error unless they hash to `digest`.
fn verified_stream(
    conn: Conn,
    digest: B3Digest,
    first: Option<BlobChunk>,
    mut rest: Streaming<BlobChunk>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    async_stream::stream! {
        let op = format!("BlobService/Read {digest}");
        let mut hasher = blake3::Hasher::new();
        let mut next = first;
        loop {
            let Some(msg) = next.take() else { break };
            hasher.update(&msg.data);
            if !msg.data.is_empty() {
                yield Ok(msg.data);
            }
            match next_message(&conn, &mut rest).await {
                Ok(m) => next = m,
                Err(s) => {
                    yield Err(io::Error::from(error(&conn, &op, &s)));
                    return;
                }
            }
        }
        let actual = B3Digest::from(hasher.finalize());
        if actual != digest {
            yield Err(io::Error::from(Error::Integrity { what: "blob", expected: digest, actual }));
        }
    }
}

#[async_trait]
impl BlobService for GrpcBlobService {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        Ok(self.stat(digest, false).await?.is_some())
    }

    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        let Some(raw) = self.stat(digest, true).await? else {
            return Ok(None);
        };
        // Returned as received: whoever reads a chunk checks it then.
        raw.into_iter()
            .enumerate()
            .map(|(i, c)| {
                let d = B3Digest::try_from(&c.digest).map_err(|e| {
                    Error::remote(
                        format!("{} BlobService/Stat {digest}: chunk #{i}", self.conn.name),
                        e,
                    )
                })?;
                Ok(ChunkMeta {
                    digest: d,
                    size: c.size,
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        Ok(self
            .read_chunk_verified(digest)
            .await?
            .map(VerifiedChunk::into_data))
    }

    /// A `ReadChunks` call for the one digest, so that a chunk the service
    /// keeps compressed comes as its zstd frame (fewer bytes on the link,
    /// no decompression on the service, and a cache fill that keeps the
    /// frame rather than compressing the bytes again); checked once. A
    /// service without `ReadChunks` (snix) is asked with `Read`, which
    /// serves plain bytes. `None` for a digest that is not a chunk there (a
    /// blob kept in several chunks is read by its chunk list).
    async fn read_chunk_verified(&self, digest: &B3Digest) -> Result<Option<VerifiedChunk>> {
        if self.no_read_chunks.load(Ordering::Relaxed) {
            return self.read_plain(digest).await;
        }
        let mut total = 0;
        match self
            .read_batch(std::slice::from_ref(digest), &mut total)
            .await
        {
            Ok(mut got) => match got.pop() {
                Some(Ok(Some(chunk))) => Ok(Some(chunk)),
                Some(Ok(None)) | None => Ok(None),
                Some(Err(e)) => Err(e),
            },
            Err(BatchError::Unimplemented) => {
                self.no_read_chunks.store(true, Ordering::Relaxed);
                self.read_plain(digest).await
            }
            Err(BatchError::Broken(_, e) | BatchError::Other(e)) => Err(e),
        }
    }

    async fn read_chunk_batch(&self, digests: &[B3Digest]) -> Vec<Result<Option<Bytes>>> {
        VerifiedChunk::batch_data(self.read_chunk_batch_verified(digests).await)
    }

    /// One `ReadChunks` call per [`MAX_BATCH_DIGESTS`] digests, all at
    /// once on the shared connection; one `Read` per chunk
    /// ([`BATCH_CONCURRENCY`] at a time) on a service without
    /// `ReadChunks`.
    async fn read_chunk_batch_verified(
        &self,
        digests: &[B3Digest],
    ) -> Vec<Result<Option<VerifiedChunk>>> {
        let calls = digests.chunks(MAX_BATCH_DIGESTS).map(|batch| async move {
            // Each call is bounded on its own: a batch is sized by its
            // caller, who knows what it can hold.
            let mut total = 0;
            match self.read_batch(batch, &mut total).await {
                Ok(got) => got,
                Err(BatchError::Unimplemented) => {
                    self.no_read_chunks.store(true, Ordering::Relaxed);
                    self.read_each(batch).await
                }
                Err(BatchError::Broken(mut got, e)) => {
                    // The call broke part way (the service sends an error
                    // status for a chunk it cannot read, which ends the
                    // stream): what arrived stands, and the rest are asked
                    // for one by one, so that a bad chunk fails alone.
                    tracing::debug!(error = %e, received = got.len(), "ReadChunks broke; reading the rest one by one");
                    let rest = self.read_each(&batch[got.len()..]).await;
                    got.extend(rest);
                    got
                }
                Err(BatchError::Other(e)) => batch.iter().map(|_| Err(each_entry(&e))).collect(),
            }
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        let op = format!("BlobService/Read {digest}");
        let Some((first, rest)) = self
            .open(digest)
            .await
            .map_err(|s| error(&self.conn, &op, &s))?
        else {
            return Ok(None);
        };
        let stream = verified_stream(self.conn.clone(), *digest, first, rest);
        Ok(Some(Box::new(StreamReader::new(Box::pin(stream)))))
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        Box::new(GrpcBlobWriter::start(self.conn.clone()))
    }
}

/// Streams a blob to `Put` as it is written, hashing it on the way; `close`
/// checks the service's digest against the local one.
struct GrpcBlobWriter {
    conn: Conn,
    /// Bytes not yet sent, up to one message.
    buf: BytesMut,
    hasher: blake3::Hasher,
    /// Sends messages to the `Put` call; `None` once closed.
    tx: Option<PollSender<BlobChunk>>,
    /// The `Put` call, running on its own task.
    call: Option<JoinHandle<Result<PutBlobResponse, Status>>>,
    /// The digest, once closed successfully.
    digest: Option<B3Digest>,
}

impl GrpcBlobWriter {
    fn start(conn: Conn) -> Self {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_MESSAGES);
        let mut client = conn.blob_client();
        let call = tokio::spawn(async move {
            client
                .put(tonic::Request::new(ReceiverStream::new(rx)))
                .await
                .map(|r| r.into_inner())
        });
        Self {
            conn,
            buf: BytesMut::new(),
            hasher: blake3::Hasher::new(),
            tx: Some(PollSender::new(tx)),
            call: Some(call),
            digest: None,
        }
    }

    fn broken() -> io::Error {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the blob upload ended early; close() tells why",
        )
    }

    /// Send the buffer as one message, waiting for room in the queue.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let tx = self.tx.as_mut().ok_or_else(Self::broken)?;
        ready!(tx.poll_reserve(cx)).map_err(|_| Self::broken())?;
        let data = self.buf.split().freeze();
        tx.send_item(BlobChunk { data })
            .map_err(|_| Self::broken())?;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for GrpcBlobWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.digest.is_some() {
            return Poll::Ready(Err(io::Error::other("write to a closed blob writer")));
        }
        if this.buf.len() >= READ_MESSAGE_SIZE {
            ready!(this.poll_send(cx))?;
        }
        if this.buf.capacity() == 0 {
            this.buf.reserve(READ_MESSAGE_SIZE);
        }
        let n = data.len().min(READ_MESSAGE_SIZE - this.buf.len());
        this.buf.extend_from_slice(&data[..n]);
        this.hasher.update(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() {
            ready!(this.poll_send(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl Drop for GrpcBlobWriter {
    fn drop(&mut self) {
        // Dropped unclosed: reset the upload, so the service stores nothing
        // half-written under a digest nobody asked for.
        if let Some(call) = self.call.take() {
            call.abort();
        }
    }
}

#[async_trait]
impl BlobWriter for GrpcBlobWriter {
    async fn close(&mut self) -> Result<B3Digest> {
        if let Some(d) = self.digest {
            return Ok(d);
        }
        let op = "BlobService/Put";
        let flushed = futures::future::poll_fn(|cx| Pin::new(&mut *self).poll_flush(cx)).await;
        // Closing the queue ends the request stream.
        self.tx = None;
        let call = self.call.take().ok_or_else(|| {
            Error::remote_msg(format!(
                "{} {op}: the upload already failed",
                self.conn.name
            ))
        })?;
        let answer = deadline(&self.conn, async {
            call.await
                .unwrap_or_else(|e| Err(Status::internal(format!("upload task: {e}"))))
        })
        .await
        .map_err(|s| error(&self.conn, op, &s))?;
        flushed?;
        let remote = B3Digest::try_from(&answer.digest)
            .map_err(|e| Error::remote(format!("{} {op}: digest in reply", self.conn.name), e))?;
        let local = B3Digest::from(self.hasher.finalize());
        if remote != local {
            return Err(Error::Integrity {
                what: "blob",
                expected: local,
                actual: remote,
            });
        }
        self.digest = Some(local);
        Ok(local)
    }
}
