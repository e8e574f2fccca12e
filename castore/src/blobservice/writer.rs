//! The one [`BlobWriter`] every local backend uses: it hashes the blob,
//! chunks it as bytes arrive, and hands the chunks to a backend's
//! [`ChunkSink`], which may store them at once (memory) or in batches
//! (redb).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::io::AsyncWrite;

use super::{BlobWriter, ChunkMeta};
use crate::chunking::Chunker;
use crate::{B3Digest, Error, Result};

/// Most bytes one `poll_write` takes, so a huge write buffers no more than
/// this plus one chunk.
const MAX_WRITE_PIECE: usize = 1024 * 1024;

/// Where a [`ChunkingWriter`] puts what it cuts.
pub(crate) trait ChunkSink: Send + Unpin + 'static {
    /// Take one chunk; `digest` is BLAKE3 of `data`, computed by the writer.
    fn put_chunk(&mut self, digest: B3Digest, data: Bytes);

    /// If enough is buffered to be worth storing now, start storing it; the
    /// writer awaits the returned future before it takes more bytes.
    fn maybe_flush(&mut self) -> Option<BoxFuture<'static, Result<()>>>;

    /// Store whatever is buffered and, for a blob of two or more chunks,
    /// its chunk list (`chunks` is empty otherwise).
    fn finish(&mut self, blob: B3Digest, chunks: Vec<ChunkMeta>) -> BoxFuture<'static, Result<()>>;
}

enum State {
    Open,
    Closed(B3Digest),
    /// A store step failed; the message is repeated to every later call.
    Failed(String),
}

/// A [`BlobWriter`] over any [`ChunkSink`].
pub(crate) struct ChunkingWriter<S> {
    sink: S,
    chunker: Chunker,
    /// BLAKE3 of the whole blob so far.
    hasher: blake3::Hasher,
    /// The chunks cut so far, in order.
    chunks: Vec<ChunkMeta>,
    /// A store step the sink started; awaited before more bytes are taken.
    pending: Option<BoxFuture<'static, Result<()>>>,
    state: State,
}

impl<S: ChunkSink> ChunkingWriter<S> {
    /// A writer that cuts with `chunker` (a fresh one, holding no input).
    pub(crate) fn new(sink: S, chunker: Chunker) -> Self {
        Self {
            sink,
            chunker,
            hasher: blake3::Hasher::new(),
            chunks: Vec::new(),
            pending: None,
            state: State::Open,
        }
    }

    fn take_chunks(&mut self, out: Vec<Bytes>) {
        for data in out {
            let digest = B3Digest::of(&data);
            self.chunks.push(ChunkMeta {
                digest,
                size: data.len() as u64,
            });
            self.sink.put_chunk(digest, data);
        }
    }

    fn check_open(&self) -> io::Result<()> {
        match &self.state {
            State::Open => Ok(()),
            State::Closed(d) => Err(io::Error::other(format!(
                "blob writer already closed (blob {d})"
            ))),
            State::Failed(msg) => Err(io::Error::other(msg.clone())),
        }
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(fut) = self.pending.as_mut() {
            let result = ready!(fut.as_mut().poll(cx));
            self.pending = None;
            if let Err(e) = result {
                let msg = format!("storing blob chunks failed: {e}");
                self.state = State::Failed(msg.clone());
                return Poll::Ready(Err(io::Error::other(msg)));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: ChunkSink> AsyncWrite for ChunkingWriter<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_open()?;
        ready!(this.poll_pending(cx))?;
        let n = buf.len().min(MAX_WRITE_PIECE);
        let piece = &buf[..n];
        this.hasher.update(piece);
        let mut out = Vec::new();
        this.chunker.push(piece, &mut out);
        this.take_chunks(out);
        this.pending = this.sink.maybe_flush();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_pending(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Shutting down only drains; `close` is what stores the last chunk.
        self.get_mut().poll_pending(cx)
    }
}

#[async_trait]
impl<S: ChunkSink> BlobWriter for ChunkingWriter<S> {
    async fn close(&mut self) -> Result<B3Digest> {
        match &self.state {
            State::Closed(d) => return Ok(*d),
            State::Failed(msg) => return Err(Error::storage_msg(msg.clone())),
            State::Open => {}
        }
        if let Some(fut) = self.pending.take()
            && let Err(e) = fut.await
        {
            self.state = State::Failed(format!("storing blob chunks failed: {e}"));
            return Err(e);
        }
        let mut out = Vec::new();
        self.chunker.finish(&mut out);
        self.take_chunks(out);
        let blob = B3Digest::from(self.hasher.finalize());
        if self.chunks.is_empty() {
            // The empty blob is stored as one empty chunk, so that it can
            // be read back like any other single-chunk blob.
            self.sink.put_chunk(blob, Bytes::new());
        }
        let list = if self.chunks.len() >= 2 {
            std::mem::take(&mut self.chunks)
        } else {
            Vec::new()
        };
        match self.sink.finish(blob, list).await {
            Ok(()) => {
                self.state = State::Closed(blob);
                Ok(blob)
            }
            Err(e) => {
                self.state = State::Failed(format!("storing blob {blob} failed: {e}"));
                Err(e)
            }
        }
    }
}
