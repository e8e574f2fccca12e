//! [`RefusingWriter`]: the blob writer of a service that takes no blobs.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;

use super::BlobWriter;
use crate::{B3Digest, Error};

/// A [`BlobWriter`] that refuses every write and its close with the error
/// its maker builds: what a read-only or unconnected service's
/// `open_write` hands out.
pub struct RefusingWriter {
    why: fn() -> Error,
}

impl RefusingWriter {
    /// A writer that refuses with `why()`.
    pub fn new(why: fn() -> Error) -> Self {
        Self { why }
    }
}

impl tokio::io::AsyncWrite for RefusingWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Err(std::io::Error::from((self.why)())))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl BlobWriter for RefusingWriter {
    async fn close(&mut self) -> crate::Result<B3Digest> {
        Err((self.why)())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn writes_and_close_are_refused_with_the_reason() {
        let mut w = RefusingWriter::new(|| Error::InvalidRequest("read-only".into()));
        let e = w.write_all(b"x").await.unwrap_err();
        assert!(e.to_string().contains("read-only"), "{e}");
        let e = w.close().await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidRequest(ref m) if m == "read-only"),
            "{e}"
        );
    }
}
