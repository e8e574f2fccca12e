//! A real gRPC server in the test's runtime, on a unix socket or loopback
//! TCP, and clients for it.

use std::sync::Arc;
use std::time::Duration;

use storefs_castore::{BlobService, DirectoryService, MemoryBlobService, MemoryDirectoryService};
use storefs_grpc::{ClientConfig, GrpcServices, ListenAddr, Listener, ServerConfig};
use storefs_store::MemoryPathInfoService;
use storefs_store::Services;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Fresh memory backends for a server.
pub fn memory_services() -> Services {
    let blob: Arc<dyn BlobService> = Arc::new(MemoryBlobService::new());
    let directory: Arc<dyn DirectoryService> = Arc::new(MemoryDirectoryService::new());
    Services::new(blob, directory, Arc::new(MemoryPathInfoService::new()))
}

/// Which kind of socket a [`GrpcServer`] listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 127.0.0.1, a port the kernel picks.
    Tcp,
    /// A unix socket in the server's temporary directory.
    Unix,
}

/// `storefs_grpc::serve` running on the test's runtime. [`GrpcServer::stop`]
/// shuts it down gracefully; dropping it aborts the task, and its socket
/// goes with its temporary directory.
pub struct GrpcServer {
    /// The URL clients connect to.
    pub url: String,
    /// Holds the unix socket, and anything else the test keeps beside it.
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    /// The serving task.
    pub task: JoinHandle<Result<(), storefs_grpc::ServeError>>,
}

impl GrpcServer {
    /// Serve `services` on a new socket of `kind`.
    pub async fn start(kind: Kind, services: Services, config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = match kind {
            Kind::Tcp => ListenAddr::parse("127.0.0.1:0").expect("loopback address"),
            Kind::Unix => ListenAddr::Unix(dir.path().join("store.sock")),
        };
        Self::start_on(addr, dir, services, config).await
    }

    /// Serve on `addr`; `dir` lives as long as the server.
    pub async fn start_on(
        addr: ListenAddr,
        dir: tempfile::TempDir,
        services: Services,
        config: ServerConfig,
    ) -> Self {
        let listener = Listener::bind(&addr).await.expect("bind");
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

    /// A client of this server with [`quick_config`].
    pub fn client(&self) -> GrpcServices {
        client(&self.url)
    }

    /// Ask for shutdown and wait for `serve` to return.
    pub async fn stop(mut self) -> Result<(), storefs_grpc::ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.expect("server task")
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Client settings for tests: short timeouts, so that failures show fast.
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

/// A client of `url` with [`quick_config`].
pub fn client(url: &str) -> GrpcServices {
    storefs_grpc::connect(url, quick_config()).expect("client")
}
