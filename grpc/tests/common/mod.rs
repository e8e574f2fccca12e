//! Shared by the integration tests: real servers on loopback TCP and unix
//! sockets in a temporary directory, over the memory backends.
#![allow(dead_code)] // each test binary uses a different part

use std::sync::Arc;
use std::time::Duration;

use storefs_castore::B3Digest;
use storefs_castore::blobservice::{BlobService, MemoryBlobService};
use storefs_castore::directoryservice::{DirectoryService, MemoryDirectoryService};
use storefs_grpc::{ClientConfig, GrpcServices, ListenAddr, Listener, ServerConfig};
use storefs_store::Services;
use storefs_store::nar::NarCalculator;
use storefs_store::pathinfoservice::MemoryPathInfoService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Deterministic pseudo-random bytes (xorshift64*), so that content-defined
/// chunking cuts real chunks and failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Fresh memory backends.
pub fn memory_services() -> Services {
    let blob: Arc<dyn BlobService> = Arc::new(MemoryBlobService::new());
    let directory: Arc<dyn DirectoryService> = Arc::new(MemoryDirectoryService::new());
    Services {
        blob: blob.clone(),
        directory: directory.clone(),
        path_info: Arc::new(MemoryPathInfoService::new()),
        nar_calculation: Arc::new(NarCalculator::new(blob, directory)),
    }
}

/// Which kind of socket a test server listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Unix,
}

/// A server running on the test's runtime, stopped by [`TestServer::stop`]
/// (or when dropped).
pub struct TestServer {
    pub url: String,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), storefs_grpc::ServeError>>,
}

impl TestServer {
    pub async fn start(kind: Kind, services: Services, config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = match kind {
            Kind::Tcp => ListenAddr::parse("127.0.0.1:0").unwrap(),
            Kind::Unix => ListenAddr::Unix(dir.path().join("store.sock")),
        };
        Self::start_on(addr, dir, services, config).await
    }

    /// A server on `addr`; `dir` is kept alive as long as the server.
    pub async fn start_on(
        addr: ListenAddr,
        dir: tempfile::TempDir,
        services: Services,
        config: ServerConfig,
    ) -> Self {
        let listener = Listener::bind(&addr).await.unwrap();
        let url = listener.client_url();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(storefs_grpc::serve(
            vec![listener],
            services,
            config,
            async {
                let _ = rx.await;
            },
        ));
        Self {
            url,
            dir,
            stop: Some(tx),
            task,
        }
    }

    /// Ask for shutdown and wait for `serve` to return.
    pub async fn stop(mut self) -> Result<(), storefs_grpc::ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap()
    }
}

/// Client settings for tests: short timeouts so that failures show fast.
pub fn quick_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        call_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(2),
        retries: 2,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..ClientConfig::default()
    }
}

pub fn client(url: &str) -> GrpcServices {
    storefs_grpc::connect(url, quick_config()).unwrap()
}

/// Write `data` as a blob through `blobs`, in uneven pieces.
pub async fn put_blob(blobs: &dyn BlobService, data: &[u8]) -> B3Digest {
    let mut w = blobs.open_write().await;
    for piece in data.chunks(300_001) {
        w.write_all(piece).await.unwrap();
    }
    w.close().await.unwrap()
}

/// Read a whole blob through `open_read`.
pub async fn read_blob(blobs: &dyn BlobService, digest: &B3Digest) -> std::io::Result<Vec<u8>> {
    let mut r = blobs
        .open_read(digest)
        .await
        .map_err(std::io::Error::from)?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such blob"))?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}
