//! I/O that notes when bytes last moved, for the idle timeouts of the
//! network front ends (the HTTP view, the daemon socket).
//!
//! [`Tracked`] wraps a stream and stamps a shared [`Activity`] whenever a
//! read or a write moves at least one byte; [`Activity::idle`] completes
//! once nothing has moved in either direction for a given time. A
//! connection that streams a long answer to a slow but reading client is
//! therefore never idle, while one whose peer stopped sending (or stopped
//! reading) is.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When bytes last moved on one connection.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    /// Milliseconds from `base` to the last movement.
    last_ms: AtomicU64,
}

impl Activity {
    /// A clock that starts now, as if bytes had just moved.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    /// Note that bytes moved now.
    pub fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// When bytes last moved.
    pub fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Completes once no byte has moved for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let deadline = self.last() + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

pin_project! {
    /// A stream whose reads and writes stamp an [`Activity`].
    #[derive(Debug)]
    pub struct Tracked<S> {
        #[pin]
        inner: S,
        activity: Arc<Activity>,
    }
}

impl<S> Tracked<S> {
    /// Wrap `inner`, stamping `activity`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_silence_in_both_directions() {
        let (a, mut b) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut t = Tracked::new(a, activity.clone());
        let timeout = Duration::from_secs(10);
        let start = Instant::now();
        // Bytes written at 6 s and read at 12 s push the deadline to 22 s.
        tokio::time::sleep(Duration::from_secs(6)).await;
        t.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        b.write_all(b"y").await.unwrap();
        let mut one = [0u8; 1];
        t.read_exact(&mut one).await.unwrap();
        activity.idle(timeout).await;
        assert_eq!(start.elapsed(), Duration::from_secs(22));
    }
}
