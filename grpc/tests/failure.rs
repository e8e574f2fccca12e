//! The service going away or stalling: clients get an error within their
//! deadlines, never hang; a graceful shutdown lets short calls finish and
//! cuts the rest after the grace period.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use storefs_castore::B3Digest;
use storefs_castore::{BlobReader, BlobService, BlobWriter, ChunkMeta};
use storefs_grpc::{ListenAddr, ServerConfig};
use storefs_store::Services;
use storefs_testkit::grpc::{CrashingServer, Kind, client, memory_services};
use storefs_testkit::suites::blob::put_blob;
use storefs_testkit::{GrpcServer, pseudo_random};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_stream_is_an_error_not_a_hang() {
    let services = memory_services();
    let data = pseudo_random(48 << 20, 3);
    let digest = put_blob(services.blob.as_ref(), &data).await;
    let mut server = CrashingServer::start(services, ListenAddr::parse("127.0.0.1:0").unwrap());
    let c = client(&server.url);

    let mut reader = c.blob.open_read(&digest).await.unwrap().unwrap();
    let mut head = vec![0u8; 1 << 20];
    reader.read_exact(&mut head).await.unwrap();
    assert_eq!(head, data[..1 << 20]);

    // Kill the server.
    server.crash();
    let started = Instant::now();
    let mut rest = Vec::new();
    let err = reader.read_to_end(&mut rest).await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "error took {took:?}: {err}");
    assert!(
        rest.len() + (1 << 20) < data.len(),
        "the whole blob cannot have arrived"
    );

    // New calls fail too, within the bounded retries.
    let started = Instant::now();
    let err = c.blob.has(&digest).await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(err.to_string().contains("UNAVAILABLE"), "{err}");
}

/// A reader that hands out `head` and then never makes progress.
struct Stalling {
    head: Cursor,
}
type Cursor = std::io::Cursor<Vec<u8>>;

impl AsyncRead for Stalling {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.head).poll_read(cx, buf);
        if buf.filled().len() > before {
            return r;
        }
        Poll::Pending
    }
}

struct StallingBlobs {
    inner: Arc<dyn BlobService>,
}

#[async_trait]
impl BlobService for StallingBlobs {
    async fn has(&self, d: &B3Digest) -> storefs_castore::Result<bool> {
        self.inner.has(d).await
    }
    async fn chunks(&self, d: &B3Digest) -> storefs_castore::Result<Option<Vec<ChunkMeta>>> {
        self.inner.chunks(d).await
    }
    async fn read_chunk(&self, d: &B3Digest) -> storefs_castore::Result<Option<Bytes>> {
        self.inner.read_chunk(d).await
    }
    async fn open_read(&self, _d: &B3Digest) -> storefs_castore::Result<Option<BlobReader>> {
        Ok(Some(Box::new(Stalling {
            head: Cursor::new(vec![7u8; 3 << 20]),
        })))
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.inner.open_write().await
    }
}

#[tokio::test]
async fn a_stalled_stream_times_out() {
    let honest = memory_services();
    let services = Services {
        blob: Arc::new(StallingBlobs {
            inner: honest.blob.clone(),
        }),
        ..honest
    };
    let config = ServerConfig {
        grace_period: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server = GrpcServer::start(Kind::Unix, services, config).await;
    let c = client(&server.url); // idle timeout 2 s
    let mut reader = c
        .blob
        .open_read(&B3Digest::of(b"any"))
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let mut all = Vec::new();
    let err = reader.read_to_end(&mut all).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(all.len(), 3 << 20, "the head arrives");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    assert!(err.to_string().contains("idle"), "{err}");
    // The stalled call on the server is cut after the grace period.
    let started = Instant::now();
    server.stop().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_short_calls_and_cuts_long_ones() {
    let services = memory_services();
    let small = pseudo_random(6 << 20, 4);
    let small_digest = put_blob(services.blob.as_ref(), &small).await;
    let big = pseudo_random(64 << 20, 5);
    let big_digest = put_blob(services.blob.as_ref(), &big).await;
    let config = ServerConfig {
        grace_period: Duration::from_millis(1500),
        ..ServerConfig::default()
    };
    let server = GrpcServer::start(Kind::Tcp, services, config).await;
    let c = client(&server.url);

    let mut short = c.blob.open_read(&small_digest).await.unwrap().unwrap();
    // A long read that its client stops consuming: only the grace period ends it.
    let mut long = c.blob.open_read(&big_digest).await.unwrap().unwrap();
    let mut first = [0u8; 1024];
    long.read_exact(&mut first).await.unwrap();

    let started = Instant::now();
    let stopping = tokio::spawn(server.stop());
    let mut got = Vec::new();
    short.read_to_end(&mut got).await.unwrap();
    assert!(got == small, "the in-flight short read completes intact");

    stopping.await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    let mut rest = Vec::new();
    assert!(
        long.read_to_end(&mut rest).await.is_err(),
        "the cut read must fail, not end early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnects_after_the_server_restarts() {
    let services = memory_services();
    let data = pseudo_random(3 << 20, 11);
    let outer = tempfile::tempdir().unwrap();
    let sock = outer.path().join("s.sock");
    let start = |services: Services| {
        let sock = sock.clone();
        async move {
            GrpcServer::start_on(
                ListenAddr::Unix(sock),
                tempfile::tempdir().unwrap(),
                services,
                ServerConfig::default(),
            )
            .await
        }
    };
    let server = start(services.clone()).await;
    let c = client(&server.url);
    let digest = put_blob(c.blob.as_ref(), &data).await;
    server.stop().await.unwrap();

    // Down: a read fails (after its retries), it does not hang.
    let err = c.blob.has(&digest).await.unwrap_err();
    assert!(err.to_string().contains("UNAVAILABLE"), "{err}");

    // Up again on the same socket: the same client reads again.
    let server = start(services).await;
    assert_eq!(
        storefs_testkit::suites::blob::try_read_blob(c.blob.as_ref(), &digest)
            .await
            .unwrap(),
        data
    );
    server.stop().await.unwrap();
}
