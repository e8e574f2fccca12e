//! The gRPC server: wraps any blob, directory and path info services and
//! serves them on TCP and unix sockets until told to stop.
//!
//! Every request is validated (a bad one gets `INVALID_ARGUMENT` naming the
//! field), messages are bounded ([`crate::limits`]), and tokens are checked
//! before a request reaches a service ([`crate::auth`]).

mod blob;
mod chunks;
mod cut;
mod directory;
mod listen;
mod pathinfo;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use storefs_store::Services;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::Router;

pub use listen::{ListenAddr, Listener, UNIX_SOCKET_MODE};

use crate::auth::{AuthPolicy, Authorized};
use crate::limits;
use crate::proto::castore::blob_service_server::BlobServiceServer;
use crate::proto::castore::directory_service_server::DirectoryServiceServer;
use crate::proto::store::path_info_service_server::PathInfoServiceServer;
use crate::proto::storefs::chunk_service_server::ChunkServiceServer;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Which tokens reads and writes need.
    pub auth: AuthPolicy,
    /// Largest message decoded from a client.
    pub max_decoding_message_size: usize,
    /// Concurrent requests served per connection; more wait.
    pub concurrency_limit_per_connection: usize,
    /// Concurrent HTTP/2 streams a client may open per connection.
    pub max_concurrent_streams: u32,
    /// How long in-flight calls may run once shutdown starts; after it,
    /// connections are cut.
    pub grace_period: Duration,
    /// Whether storefs's own `ChunkService` (`ReadChunks`) is served. Off,
    /// the server offers only the castore and store services, as a snix
    /// service does: what clients fall back to there can be checked
    /// against a real server.
    pub chunk_service: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            auth: AuthPolicy::default(),
            max_decoding_message_size: limits::MAX_DECODING_MESSAGE_SIZE,
            concurrency_limit_per_connection: limits::DEFAULT_CONCURRENCY_PER_CONNECTION,
            max_concurrent_streams: limits::DEFAULT_MAX_CONCURRENT_STREAMS,
            grace_period: limits::DEFAULT_GRACE_PERIOD,
            chunk_service: true,
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A listen address that cannot be parsed.
    #[error("listen address {addr:?}: {reason}")]
    Address {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Binding a listener failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// No listener was given.
    #[error("no listen address given")]
    NoListeners,
    /// The transport failed while serving.
    #[error("serving {addr}")]
    Transport {
        /// The listener that failed.
        addr: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
}

/// Build the router for one listener: the three services, each behind the
/// token check, with the configured limits.
fn router(services: &Services, config: &ServerConfig) -> Router {
    let policy = Arc::new(config.auth.clone());
    let max = config.max_decoding_message_size;
    let blob = BlobServiceServer::new(blob::BlobServer::new(services.blob.clone()))
        .max_decoding_message_size(max);
    let directory =
        DirectoryServiceServer::new(directory::DirectoryServer::new(services.directory.clone()))
            .max_decoding_message_size(max);
    let chunks = config.chunk_service.then(|| {
        Authorized::new(
            ChunkServiceServer::new(chunks::ChunkServer::new(services.blob.clone()))
                .max_decoding_message_size(max),
            policy.clone(),
        )
    });
    let path_info = PathInfoServiceServer::new(pathinfo::PathInfoServer::new(
        services.path_info.clone(),
        services.nar_calculation.clone(),
    ))
    .max_decoding_message_size(max);
    Server::builder()
        .concurrency_limit_per_connection(config.concurrency_limit_per_connection)
        .max_concurrent_streams(config.max_concurrent_streams)
        .initial_stream_window_size(limits::STREAM_WINDOW)
        .initial_connection_window_size(limits::CONNECTION_WINDOW)
        .max_frame_size(limits::MAX_FRAME_SIZE)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(Authorized::new(blob, policy.clone()))
        .add_service(Authorized::new(directory, policy.clone()))
        .add_optional_service(chunks)
        .add_service(Authorized::new(path_info, policy))
}

/// Serve `services` on every listener until `shutdown` completes.
///
/// Each listener is logged (tracing `info`) once it is being served. When
/// `shutdown` completes, the listeners stop accepting at once, in-flight
/// calls get [`ServerConfig::grace_period`] to finish, and then the remaining
/// connections are cut. Unix socket files are removed on the way out.
pub async fn serve(
    listeners: Vec<Listener>,
    services: Services,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    if listeners.is_empty() {
        return Err(ServeError::NoListeners);
    }
    let stop = CancellationToken::new();
    let cut = CancellationToken::new();
    let mut sockets = Vec::new();
    let mut servers = Vec::new();
    for listener in listeners {
        let name = listener.local_addr().to_string();
        let router = router(&services, &config);
        let signal = stop.clone().cancelled_owned();
        let cut = cut.clone();
        tracing::info!(listen = %name, url = %listener.client_url(), "serving gRPC");
        let fut = match listener.kind {
            listen::ListenerKind::Tcp(l, _) => {
                let incoming = TcpListenerStream::new(l).map(move |r| {
                    r.map(|s| {
                        // Small replies (Stat, Get) should not wait for Nagle.
                        let _ = s.set_nodelay(true);
                        cut::Cuttable::new(s, &cut)
                    })
                });
                router
                    .serve_with_incoming_shutdown(incoming, signal)
                    .boxed()
            }
            listen::ListenerKind::Unix(l, path) => {
                sockets.push(path);
                let incoming =
                    UnixListenerStream::new(l).map(move |r| r.map(|s| cut::Cuttable::new(s, &cut)));
                router
                    .serve_with_incoming_shutdown(incoming, signal)
                    .boxed()
            }
        };
        servers.push(async move {
            fut.await
                .map_err(|source| ServeError::Transport { addr: name, source })
        });
    }
    let all = futures::future::try_join_all(servers);
    let grace = config.grace_period;
    let stopper = async {
        shutdown.await;
        tracing::info!(grace = ?grace, "shutting down: no new connections, draining calls");
        stop.cancel();
        tokio::time::sleep(grace).await;
        tracing::info!("grace period over: cutting remaining connections");
        cut.cancel();
        futures::future::pending::<()>().await;
    };
    let result = tokio::select! {
        r = all => r.map(|_| ()),
        () = stopper => Ok(()),
    };
    for path in sockets {
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove socket file");
        }
    }
    tracing::info!("gRPC server stopped");
    result
}
