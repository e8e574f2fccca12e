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

/// A server on a runtime of its own (its own thread), so that
/// [`CrashingServer::crash`] stops it the way a crash would: every task
/// gone, every connection closed at once, nothing finished gracefully.
/// [`CrashingServer::restart`] serves the same services on the same
/// address again. Dropped, it crashes.
pub struct CrashingServer {
    runtime: Option<tokio::runtime::Runtime>,
    addr: ListenAddr,
    services: Services,
    /// The URL clients connect to.
    pub url: String,
}

impl CrashingServer {
    /// Serve `services` on `addr` (a unix socket can be restarted on the
    /// same path; so can a TCP port given explicitly).
    pub fn start(services: Services, addr: ListenAddr) -> Self {
        let mut s = Self {
            runtime: None,
            addr,
            services,
            url: String::new(),
        };
        s.restart();
        s
    }

    /// Start serving again (after [`CrashingServer::crash`]); a no-op while
    /// it runs.
    pub fn restart(&mut self) {
        if self.runtime.is_some() {
            return;
        }
        let (addr, services) = (self.addr.clone(), self.services.clone());
        // Built on a plain thread: a runtime cannot be started from inside
        // the test's runtime.
        let (runtime, url) = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("server runtime");
            let listener = rt.block_on(Listener::bind(&addr)).expect("bind");
            let url = listener.client_url();
            rt.spawn(storefs_grpc::serve(
                vec![listener],
                services,
                ServerConfig::default(),
                futures::future::pending(),
            ));
            (rt, url)
        })
        .join()
        .expect("server thread");
        self.runtime = Some(runtime);
        self.url = url;
    }

    /// Kill it: tasks dropped, sockets closed, no goodbye to clients.
    pub fn crash(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for CrashingServer {
    fn drop(&mut self) {
        self.crash();
    }
}
