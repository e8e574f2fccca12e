//! [`TeeWriter`]: writes one blob to far and near at once.
//!
//! Far is the authority: its errors fail the write, and its digest is the
//! result. Near is best effort: if it fails, the blob is simply not cached.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_trait::async_trait;
use tokio::io::AsyncWrite;
use tracing::warn;

use crate::blobservice::BlobWriter;
use crate::{B3Digest, Result};

pub(crate) struct TeeWriter {
    far: Box<dyn BlobWriter>,
    /// `None` once near has failed.
    near: Option<Box<dyn BlobWriter>>,
    /// Bytes far has taken that near has not yet; at most one write's worth,
    /// since every write first drains it.
    backlog: Vec<u8>,
}

impl TeeWriter {
    pub(crate) fn new(far: Box<dyn BlobWriter>, near: Box<dyn BlobWriter>) -> Self {
        Self {
            far,
            near: Some(near),
            backlog: Vec::new(),
        }
    }

    /// Push the backlog into near; Pending while near is not ready.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.backlog.is_empty() {
            let Some(near) = self.near.as_mut() else {
                self.backlog.clear();
                break;
            };
            match ready!(Pin::new(near).poll_write(cx, &self.backlog)) {
                Ok(0) => {
                    self.drop_near("near writer took no bytes");
                }
                Ok(n) => {
                    self.backlog.drain(..n);
                }
                Err(e) => self.drop_near(&e.to_string()),
            }
        }
        Poll::Ready(())
    }

    fn drop_near(&mut self, why: &str) {
        warn!(
            error = why,
            "near blob writer failed; the blob will not be cached"
        );
        self.near = None;
        self.backlog.clear();
    }
}

impl AsyncWrite for TeeWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx));
        let n = ready!(Pin::new(&mut this.far).poll_write(cx, buf))?;
        if this.near.is_some() {
            this.backlog.extend_from_slice(&buf[..n]);
            // Start near on it now; whatever is left waits for the next call.
            let _ = this.poll_drain(cx);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx));
        Pin::new(&mut this.far).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx));
        Pin::new(&mut this.far).poll_shutdown(cx)
    }
}

#[async_trait]
impl BlobWriter for TeeWriter {
    async fn close(&mut self) -> Result<B3Digest> {
        std::future::poll_fn(|cx| self.poll_drain(cx)).await;
        let digest = self.far.close().await?;
        if let Some(near) = self.near.as_mut() {
            match near.close().await {
                Ok(d) if d == digest => {}
                Ok(d) => warn!(%digest, near = %d, "near and far disagree on a blob's digest"),
                Err(e) => warn!(%digest, error = %crate::Report(&e), "could not cache blob"),
            }
        }
        Ok(digest)
    }
}
