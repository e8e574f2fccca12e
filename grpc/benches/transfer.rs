//! Transfer benchmark: `serve` over loopback TCP and a unix socket against a
//! raw copy of the same bytes over the same kind of socket, in one run.
//!
//! - One large blob (default 256 MiB, `STOREFS_BENCH_MIB`), read whole with
//!   `open_read` (verified whole) and chunk by chunk with `read_chunk`
//!   (every chunk verified, 16 in flight), against a raw socket copy.
//! - Many small blobs (default 5000 × 4 KiB, `STOREFS_BENCH_FILES`), one
//!   request at a time and 64 in flight, against a raw request/response
//!   protocol (32-byte digest in, length-prefixed bytes out) over the same
//!   socket, also one at a time and 64 in flight; and the same blobs through
//!   storefs's batched `ChunkService/ReadChunks` (1024 a call) against the
//!   raw protocol with 64 in flight.
//!
//! Each figure is the best of `STOREFS_BENCH_ROUNDS` (default 3) runs, so
//! that other load on the machine disturbs both sides alike.
//!
//! Run: `cargo bench -p storefs-grpc --bench transfer`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use storefs_castore::B3Digest;
use storefs_castore::{BlobService, MemoryBlobService};
use storefs_castore::{DirectoryService, MemoryDirectoryService};
use storefs_grpc::{ClientConfig, ListenAddr, Listener, ServerConfig};
use storefs_store::MemoryPathInfoService;
use storefs_store::Services;
use storefs_store::nar::NarCalculator;
use storefs_testkit::pseudo_random;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

const SMALL_SIZE: usize = 4096;
const PIPELINE: usize = 64;
const CHUNKS_IN_FLIGHT: usize = 16;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Unix,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Unix => "unix",
        }
    }
}

/// The raw baselines' server: `b"B"` asks for the big blob (streamed in
/// 1 MiB writes); `b"S"` + 32-byte digest asks for a small blob (4-byte
/// little-endian length, then the bytes).
async fn raw_serve<S: AsyncRead + AsyncWrite + Unpin>(
    sock: S,
    big: Bytes,
    small: Arc<HashMap<B3Digest, Bytes>>,
) -> std::io::Result<()> {
    let (r, w) = tokio::io::split(sock);
    let mut r = BufReader::new(r);
    let mut w = BufWriter::with_capacity(1 << 16, w);
    loop {
        let mut op = [0u8; 1];
        if r.read(&mut op).await? == 0 {
            return Ok(());
        }
        match op[0] {
            b'B' => {
                for piece in big.chunks(1 << 20) {
                    w.write_all(piece).await?;
                }
                w.flush().await?;
                return Ok(());
            }
            _ => {
                let mut d = [0u8; 32];
                r.read_exact(&mut d).await?;
                let data = small.get(&B3Digest::from(d)).cloned().unwrap_or_default();
                w.write_all(&(data.len() as u32).to_le_bytes()).await?;
                w.write_all(&data).await?;
                // Flush when no further request is already buffered.
                if r.buffer().is_empty() {
                    w.flush().await?;
                }
            }
        }
    }
}

/// Start the raw server; returns how to connect.
async fn raw_server(
    kind: Kind,
    dir: &std::path::Path,
    big: Bytes,
    small: Arc<HashMap<B3Digest, Bytes>>,
) -> String {
    match kind {
        Kind::Tcp => {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap().to_string();
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    let _ = s.set_nodelay(true);
                    tokio::spawn(raw_serve(s, big.clone(), small.clone()));
                }
            });
            addr
        }
        Kind::Unix => {
            let path = dir.join("raw.sock");
            let l = UnixListener::bind(&path).unwrap();
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    tokio::spawn(raw_serve(s, big.clone(), small.clone()));
                }
            });
            path.display().to_string()
        }
    }
}

trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

async fn raw_connect(kind: Kind, addr: &str) -> Box<dyn Duplex> {
    match kind {
        Kind::Tcp => {
            let s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            Box::new(s)
        }
        Kind::Unix => Box::new(UnixStream::connect(addr).await.unwrap()),
    }
}

async fn raw_big(kind: Kind, addr: &str) -> (usize, Duration) {
    let t = Instant::now();
    let mut s = raw_connect(kind, addr).await;
    s.write_all(b"B").await.unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    (total, t.elapsed())
}

/// Small blobs over the raw protocol with `depth` requests in flight.
async fn raw_small(kind: Kind, addr: &str, digests: &[B3Digest], depth: usize) -> Duration {
    let s = raw_connect(kind, addr).await;
    let (r, w) = tokio::io::split(s);
    let mut r = BufReader::new(r);
    let mut w = BufWriter::new(w);
    let t = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(depth);
    let reqs: Vec<B3Digest> = digests.to_vec();
    let writer = tokio::spawn(async move {
        for d in reqs {
            // A permit per request in flight; the reader returns them.
            tx.send(()).await.unwrap();
            w.write_all(b"S").await.unwrap();
            w.write_all(d.as_bytes()).await.unwrap();
            w.flush().await.unwrap();
        }
    });
    for _ in digests {
        let mut len = [0u8; 4];
        r.read_exact(&mut len).await.unwrap();
        let mut data = vec![0u8; u32::from_le_bytes(len) as usize];
        r.read_exact(&mut data).await.unwrap();
        assert_eq!(data.len(), SMALL_SIZE);
        rx.recv().await.unwrap();
    }
    writer.await.unwrap();
    t.elapsed()
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn row(kind: Kind, what: &str, grpc: f64, raw: f64, unit: &str) {
    println!(
        "{:<5} {:<44} {:>10.1} {:<8} {:>10.1} {:<8} {:>6.2}",
        kind.name(),
        what,
        grpc,
        unit,
        raw,
        unit,
        grpc / raw
    );
}

async fn run() {
    let big_mib = env_usize("STOREFS_BENCH_MIB", 256);
    let files = env_usize("STOREFS_BENCH_FILES", 5000);
    let rounds = env_usize("STOREFS_BENCH_ROUNDS", 3).max(1);
    let blob: Arc<dyn BlobService> = Arc::new(MemoryBlobService::new());
    let directory: Arc<dyn DirectoryService> = Arc::new(MemoryDirectoryService::new());
    let services = Services {
        blob: blob.clone(),
        directory: directory.clone(),
        path_info: Arc::new(MemoryPathInfoService::new()),
        nar_calculation: Arc::new(NarCalculator::new(blob.clone(), directory)),
    };

    eprintln!("preparing {big_mib} MiB blob and {files} small blobs ...");
    let big = Bytes::from(pseudo_random(big_mib << 20, 1));
    let mut w = blob.open_write().await;
    w.write_all(&big).await.unwrap();
    let big_digest = w.close().await.unwrap();
    let mut small = HashMap::new();
    let mut small_digests = Vec::new();
    for i in 0..files {
        let data = Bytes::from(pseudo_random(SMALL_SIZE, 1000 + i as u64));
        let mut w = blob.open_write().await;
        w.write_all(&data).await.unwrap();
        let d = w.close().await.unwrap();
        small_digests.push(d);
        small.insert(d, data);
    }
    let small = Arc::new(small);

    println!(
        "{:<5} {:<44} {:>19} {:>19} {:>6}",
        "sock", "workload", "storefs gRPC", "raw socket", "ratio"
    );
    for kind in [Kind::Tcp, Kind::Unix] {
        let dir = tempfile::tempdir().unwrap();
        let addr = match kind {
            Kind::Tcp => ListenAddr::parse("127.0.0.1:0").unwrap(),
            Kind::Unix => ListenAddr::Unix(dir.path().join("grpc.sock")),
        };
        let listener = Listener::bind(&addr).await.unwrap();
        let url = listener.client_url();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(storefs_grpc::serve(
            vec![listener],
            services.clone(),
            ServerConfig::default(),
            async {
                let _ = stop_rx.await;
            },
        ));
        let raw_addr = raw_server(kind, dir.path(), big.clone(), small.clone()).await;
        let client = storefs_grpc::connect(&url, ClientConfig::default()).unwrap();
        // Establish the connection outside the measurements.
        assert!(client.blob.has(&big_digest).await.unwrap());

        // Large blob, whole, verified at the end.
        let t = Instant::now();
        let mut r = client.blob.open_read(&big_digest).await.unwrap().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        let whole = t.elapsed();
        assert_eq!(total, big.len());
        let (raw_total, raw_t) = raw_big(kind, &raw_addr).await;
        assert_eq!(raw_total, big.len());
        let raw_rate = mbps(raw_total, raw_t);
        row(
            kind,
            &format!("large blob {big_mib} MiB, open_read"),
            mbps(total, whole),
            raw_rate,
            "MB/s",
        );

        // Large blob, chunk by chunk, each verified.
        let blobs = client.blob.clone();
        let mut chunked = Duration::MAX;
        let mut chunks = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            chunks = client.blob.chunks(&big_digest).await.unwrap().unwrap();
            let total: usize = futures::stream::iter(chunks.iter().map(|c| {
                let blobs = blobs.clone();
                let d = c.digest;
                async move { blobs.read_chunk(&d).await.map(|b| b.map_or(0, |b| b.len())) }
            }))
            .buffered(CHUNKS_IN_FLIGHT)
            .try_fold(0usize, |acc, n| async move { Ok(acc + n) })
            .await
            .unwrap();
            chunked = chunked.min(t.elapsed());
            assert_eq!(total, big.len());
        }
        let total = big.len();
        row(
            kind,
            &format!(
                "large blob, {} chunks, {CHUNKS_IN_FLIGHT} in flight",
                chunks.len()
            ),
            mbps(total, chunked),
            raw_rate,
            "MB/s",
        );

        // Small blobs.
        for depth in [1, PIPELINE] {
            let mut grpc_t = Duration::MAX;
            let mut raw_t = Duration::MAX;
            for _ in 0..rounds {
                let t = Instant::now();
                let n: usize = futures::stream::iter(small_digests.iter().map(|d| {
                    let blobs = blobs.clone();
                    let d = *d;
                    async move { blobs.read_chunk(&d).await.map(|b| b.map_or(0, |b| b.len())) }
                }))
                .buffer_unordered(depth)
                .try_fold(0usize, |acc, n| async move { Ok(acc + n) })
                .await
                .unwrap();
                grpc_t = grpc_t.min(t.elapsed());
                assert_eq!(n, files * SMALL_SIZE);
                raw_t = raw_t.min(raw_small(kind, &raw_addr, &small_digests, depth).await);
            }
            row(
                kind,
                &format!("{files} x 4 KiB blobs, {depth} in flight"),
                files as f64 / grpc_t.as_secs_f64(),
                files as f64 / raw_t.as_secs_f64(),
                "files/s",
            );
        }

        // Small blobs in batches (storefs's ChunkService), against the raw
        // protocol with 64 in flight.
        let mut grpc_t = Duration::MAX;
        let mut raw_t = Duration::MAX;
        for _ in 0..rounds {
            let t = Instant::now();
            let got = client.grpc_blob.read_chunks(&small_digests).await.unwrap();
            grpc_t = grpc_t.min(t.elapsed());
            assert!(
                got.iter()
                    .all(|g| g.as_ref().map(|b| b.len()) == Some(SMALL_SIZE))
            );
            raw_t = raw_t.min(raw_small(kind, &raw_addr, &small_digests, PIPELINE).await);
        }
        row(
            kind,
            &format!("{files} x 4 KiB blobs, batched read_chunks"),
            files as f64 / grpc_t.as_secs_f64(),
            files as f64 / raw_t.as_secs_f64(),
            "files/s",
        );

        let _ = stop_tx.send(());
        server.await.unwrap().unwrap();
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}
