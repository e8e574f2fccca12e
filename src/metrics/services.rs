//! [`ServiceMetrics`]: each front end of `serve` (gRPC, HTTP, daemon)
//! gets its own view of the store services, wrapped so that every call
//! is counted, timed and its bytes added up, by front end and operation.
//!
//! Measuring at the service boundary, not inside each protocol, keeps the
//! front ends untouched and the operations comparable across them: a NAR
//! served over HTTP and one sent by the daemon both show as
//! `blob.open_read`, `directory.get_recursive` and `path_info.get` calls.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use storefs_castore::{
    B3Digest, BlobReader, BlobService, BlobWriter, ChunkMeta, Directory, DirectoryPutter,
    DirectoryService, Node, Result, StoredChunk,
};
use storefs_store::PathInfo;
use storefs_store::Services;
use storefs_store::{DIGEST_LEN, StorePath};
use storefs_store::{NarCalculationService, PathInfoService};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Labels of a request: which front end asked, which operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    frontend: &'static str,
    op: &'static str,
}

/// Labels of a byte count: which front end.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrontLabels {
    frontend: &'static str,
}

/// The latency buckets: 100 µs to about 13 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// Requests, errors, latency and bytes of the store services.
#[derive(Debug)]
pub struct ServiceMetrics {
    requests: Family<OpLabels, Counter>,
    errors: Family<OpLabels, Counter>,
    duration: Family<OpLabels, Histogram, fn() -> Histogram>,
    bytes_out: Family<FrontLabels, Counter>,
    bytes_in: Family<FrontLabels, Counter>,
}

impl ServiceMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Self {
            requests: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            bytes_out: Family::default(),
            bytes_in: Family::default(),
        };
        registry.register(
            "requests",
            "Calls of the store services, by front end and operation",
            m.requests.clone(),
        );
        registry.register(
            "request_errors",
            "Calls of the store services that failed, by front end and operation",
            m.errors.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time each call of the store services took (streams: until the stream ended)",
            Unit::Seconds,
            m.duration.clone(),
        );
        registry.register_with_unit(
            "bytes_out",
            "Blob bytes the store services handed to a front end (chunks, whole blobs)",
            Unit::Bytes,
            m.bytes_out.clone(),
        );
        registry.register_with_unit(
            "bytes_in",
            "Blob bytes a front end wrote into the store services",
            Unit::Bytes,
            m.bytes_in.clone(),
        );
        Arc::new(m)
    }

    /// Blob bytes handed to front end `frontend` so far (`serve` prints
    /// the gRPC figure as it exits, with or without `--metrics`).
    pub fn bytes_out(&self, frontend: &'static str) -> u64 {
        self.bytes_out
            .get_or_create(&FrontLabels { frontend })
            .get()
    }

    /// `services`, measured as front end `frontend` (`grpc`, `http`,
    /// `daemon`).
    pub fn wrap(self: &Arc<Self>, services: Services, frontend: &'static str) -> Services {
        let m = Meter {
            metrics: Arc::clone(self),
            frontend,
        };
        Services {
            blob: Arc::new(MeteredBlobs {
                inner: services.blob,
                m: m.clone(),
            }),
            directory: Arc::new(MeteredDirectories {
                inner: services.directory,
                m: m.clone(),
            }),
            path_info: Arc::new(MeteredPathInfos {
                inner: services.path_info,
                m: m.clone(),
            }),
            nar_calculation: Arc::new(MeteredNar {
                inner: services.nar_calculation,
                m,
            }),
        }
    }
}

/// One front end's handle on the metrics.
#[derive(Clone, Debug)]
struct Meter {
    metrics: Arc<ServiceMetrics>,
    frontend: &'static str,
}

impl Meter {
    fn labels(&self, op: &'static str) -> OpLabels {
        OpLabels {
            frontend: self.frontend,
            op,
        }
    }

    /// Count a call of `op` that started at `start` and ended now.
    fn done(&self, op: &'static str, start: Instant, ok: bool) {
        let labels = self.labels(op);
        self.metrics.requests.get_or_create(&labels).inc();
        if !ok {
            self.metrics.errors.get_or_create(&labels).inc();
        }
        self.metrics
            .duration
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64());
    }

    /// Count the outcome of a call.
    fn result<T>(&self, op: &'static str, start: Instant, r: Result<T>) -> Result<T> {
        self.done(op, start, r.is_ok());
        r
    }

    fn bytes_out(&self, n: u64) {
        let labels = FrontLabels {
            frontend: self.frontend,
        };
        self.metrics.bytes_out.get_or_create(&labels).inc_by(n);
    }

    fn bytes_in(&self, n: u64) {
        let labels = FrontLabels {
            frontend: self.frontend,
        };
        self.metrics.bytes_in.get_or_create(&labels).inc_by(n);
    }
}

/// Counts a streamed call when the stream ends or is dropped: one
/// request, an error if any item failed, the time until then.
struct StreamCall {
    m: Meter,
    op: &'static str,
    start: Instant,
    failed: bool,
}

impl Drop for StreamCall {
    fn drop(&mut self) {
        self.m.done(self.op, self.start, !self.failed);
    }
}

/// `stream`, counted as one call of `op`.
fn metered_stream<T: Send + 'static>(
    m: &Meter,
    op: &'static str,
    stream: BoxStream<'static, Result<T>>,
) -> BoxStream<'static, Result<T>> {
    let mut call = StreamCall {
        m: m.clone(),
        op,
        start: Instant::now(),
        failed: false,
    };
    stream
        .map(move |item| {
            // Borrow the whole guard (not just its field), so that the
            // closure owns it and it is dropped with the stream.
            let call = &mut call;
            if item.is_err() {
                call.failed = true;
            }
            item
        })
        .boxed()
}

struct MeteredBlobs {
    inner: Arc<dyn BlobService>,
    m: Meter,
}

impl MeteredBlobs {
    /// Count a batch read that started at `start`: the bytes of the chunks
    /// it found (each `len` long), and the call, failed if any entry did.
    fn batch_done<T>(&self, start: Instant, out: &[Result<Option<T>>], len: impl Fn(&T) -> usize) {
        let bytes: u64 = out
            .iter()
            .filter_map(|r| r.as_ref().ok().and_then(Option::as_ref))
            .map(|c| len(c) as u64)
            .sum();
        self.m.bytes_out(bytes);
        self.m.done(
            "blob.read_chunk_batch",
            start,
            out.iter().all(|r| r.is_ok()),
        );
    }
}

#[async_trait]
impl BlobService for MeteredBlobs {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        let start = Instant::now();
        let r = self.inner.has(digest).await;
        self.m.result("blob.has", start, r)
    }

    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        let start = Instant::now();
        let r = self.inner.chunks(digest).await;
        self.m.result("blob.chunks", start, r)
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        let start = Instant::now();
        let r = self.inner.read_chunk(digest).await;
        if let Ok(Some(b)) = &r {
            self.m.bytes_out(b.len() as u64);
        }
        self.m.result("blob.read_chunk", start, r)
    }

    async fn read_chunk_batch(&self, digests: &[B3Digest]) -> Vec<Result<Option<Bytes>>> {
        let start = Instant::now();
        let out = self.inner.read_chunk_batch(digests).await;
        self.batch_done(start, &out, |b| b.len());
        out
    }

    async fn read_chunk_stored_batch(
        &self,
        digests: &[B3Digest],
    ) -> Vec<Result<Option<StoredChunk>>> {
        let start = Instant::now();
        let out = self.inner.read_chunk_stored_batch(digests).await;
        self.batch_done(start, &out, StoredChunk::wire_len);
        out
    }

    async fn read_chunk_stored(&self, digest: &B3Digest) -> Result<Option<StoredChunk>> {
        let start = Instant::now();
        let r = self.inner.read_chunk_stored(digest).await;
        if let Ok(Some(c)) = &r {
            self.m.bytes_out(c.wire_len() as u64);
        }
        self.m.result("blob.read_chunk", start, r)
    }

    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        let start = Instant::now();
        let r = self.inner.open_read(digest).await;
        let r = self.m.result("blob.open_read", start, r)?;
        Ok(r.map(|inner| {
            Box::new(CountingReader {
                inner,
                m: self.m.clone(),
            }) as BlobReader
        }))
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        Box::new(CountingWriter {
            inner: self.inner.open_write().await,
            m: self.m.clone(),
            start: Instant::now(),
            closed: false,
        })
    }
}

/// A blob reader that adds what it delivers to `bytes_out`.
struct CountingReader {
    inner: BlobReader,
    m: Meter,
}

impl AsyncRead for CountingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.m.bytes_out(n as u64);
        }
        r
    }
}

/// A blob writer that adds what it takes to `bytes_in` and counts one
/// `blob.write` call when closed.
struct CountingWriter {
    inner: Box<dyn BlobWriter>,
    m: Meter,
    start: Instant,
    closed: bool,
}

impl AsyncWrite for CountingWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.m.bytes_in(*n as u64);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl BlobWriter for CountingWriter {
    async fn close(&mut self) -> Result<B3Digest> {
        let r = self.inner.close().await;
        if !self.closed {
            self.closed = true;
            self.m.done("blob.write", self.start, r.is_ok());
        }
        r
    }
}

struct MeteredDirectories {
    inner: Arc<dyn DirectoryService>,
    m: Meter,
}

#[async_trait]
impl DirectoryService for MeteredDirectories {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>> {
        let start = Instant::now();
        let r = self.inner.get(digest).await;
        self.m.result("directory.get", start, r)
    }

    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory>> {
        metered_stream(
            &self.m,
            "directory.get_recursive",
            self.inner.get_recursive(root),
        )
    }

    async fn put(&self, directory: Directory) -> Result<B3Digest> {
        let start = Instant::now();
        let r = self.inner.put(directory).await;
        self.m.result("directory.put", start, r)
    }

    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter> {
        Box::new(MeteredPutter {
            inner: self.inner.put_multiple_start(),
            m: self.m.clone(),
            start: Instant::now(),
        })
    }
}

/// A closure putter counted as one `directory.put_closure` call at close.
struct MeteredPutter {
    inner: Box<dyn DirectoryPutter>,
    m: Meter,
    start: Instant,
}

#[async_trait]
impl DirectoryPutter for MeteredPutter {
    async fn put(&mut self, directory: Directory) -> Result<()> {
        self.inner.put(directory).await
    }

    async fn close(&mut self) -> Result<B3Digest> {
        let r = self.inner.close().await;
        self.m.result("directory.put_closure", self.start, r)
    }
}

struct MeteredPathInfos {
    inner: Arc<dyn PathInfoService>,
    m: Meter,
}

#[async_trait]
impl PathInfoService for MeteredPathInfos {
    async fn get(&self, digest: [u8; DIGEST_LEN]) -> Result<Option<PathInfo>> {
        let start = Instant::now();
        let r = self.inner.get(digest).await;
        self.m.result("path_info.get", start, r)
    }

    async fn put(&self, info: PathInfo) -> Result<PathInfo> {
        let start = Instant::now();
        let r = self.inner.put(info).await;
        self.m.result("path_info.put", start, r)
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
        metered_stream(&self.m, "path_info.list", self.inner.list())
    }

    async fn delete(&self, digest: [u8; DIGEST_LEN]) -> Result<bool> {
        let start = Instant::now();
        let r = self.inner.delete(digest).await;
        self.m.result("path_info.delete", start, r)
    }

    async fn referrers(&self, digest: [u8; DIGEST_LEN]) -> Result<Vec<StorePath>> {
        let start = Instant::now();
        let r = self.inner.referrers(digest).await;
        self.m.result("path_info.referrers", start, r)
    }
}

struct MeteredNar {
    inner: Arc<dyn NarCalculationService>,
    m: Meter,
}

#[async_trait]
impl NarCalculationService for MeteredNar {
    async fn calculate_nar(&self, root: &Node) -> Result<(u64, [u8; 32])> {
        let start = Instant::now();
        let r = self.inner.calculate_nar(root).await;
        self.m.result("nar.calculate", start, r)
    }
}
