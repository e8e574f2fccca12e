//! A connection that can be cut: once its token is cancelled, every read and
//! write fails, so hyper drops the connection and the peer sees it close.
//! This bounds the grace period of a graceful shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;

/// `io` until `token` is cancelled, then an `ConnectionAborted` error.
pub(crate) struct Cuttable<IO> {
    io: IO,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<IO> Cuttable<IO> {
    pub(crate) fn new(io: IO, token: &CancellationToken) -> Self {
        Self {
            io,
            cancelled: Box::pin(token.clone().cancelled_owned()),
        }
    }

    /// `Err` once cut. Polling registers the task, so a cut wakes it.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.cancelled.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "server shutting down: grace period over",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Cuttable<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Cuttable<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: Connected> Connected for Cuttable<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn cut_wakes_a_pending_read() {
        let (a, mut b) = tokio::io::duplex(64);
        let token = CancellationToken::new();
        let mut cut = Cuttable::new(a, &token);
        b.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        cut.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        let pending = tokio::spawn(async move {
            let mut one = [0u8; 1];
            cut.read(&mut one).await
        });
        tokio::task::yield_now().await;
        token.cancel();
        let err = pending.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    }
}
