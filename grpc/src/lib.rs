//! storefs-grpc: the snix-compatible gRPC services, server and clients.
//!
//! The server ([`serve`]) wraps any [`BlobService`], [`DirectoryService`],
//! [`PathInfoService`] and [`NarCalculationService`] and serves them on TCP
//! and unix sockets. The clients ([`connect`]) implement the same traits over
//! one shared HTTP/2 connection and check everything they receive: each
//! directory and chunk against its digest, a blob read whole against the
//! blob's digest.
//!
//! # Layout
//! - [`auth`]: bearer tokens, on both sides.
//! - [`limits`]: message sizes, windows, queue lengths.
//! - `server/`: the tonic service implementations, listeners, shutdown.
//! - `client/`: the trait implementations over a tonic channel; with
//!   several replicas of one store ([`connect_replicas`]), over all of
//!   them with failover.
//! - `peers/`: mounts sharing their cached chunks: the peer-first blob
//!   service ([`PeerFirstBlobService`], [`PeerSet`]) and what a mount
//!   serves to its peers ([`peer_services`]).
//! - [`proto`]: the generated tonic code.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use storefs_grpc::{ClientConfig, ListenAddr, Listener, ServerConfig};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! // A server over memory backends, on a unix socket.
//! let services = storefs_store::Services::memory();
//! let dir = tempfile::tempdir().unwrap();
//! let listener = Listener::bind(&ListenAddr::Unix(dir.path().join("s.sock"))).await.unwrap();
//! let url = listener.client_url(); // "grpc+unix:///…/s.sock"
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(storefs_grpc::serve(
//!     vec![listener], services, ServerConfig::default(), async { let _ = stopped.await; },
//! ));
//!
//! // A client: write a blob, read it back (verified).
//! let remote = storefs_grpc::connect(&url, ClientConfig::default()).unwrap();
//! let mut w = remote.blob.open_write().await;
//! w.write_all(b"Hello World!").await.unwrap();
//! let digest = w.close().await.unwrap();
//! let mut back = Vec::new();
//! remote.blob.open_read(&digest).await.unwrap().unwrap().read_to_end(&mut back).await.unwrap();
//! assert_eq!(back, b"Hello World!");
//!
//! stop.send(()).unwrap();
//! server.await.unwrap().unwrap();
//! # });
//! ```
//!
//! [`BlobService`]: storefs_castore::BlobService
//! [`DirectoryService`]: storefs_castore::DirectoryService
//! [`PathInfoService`]: storefs_store::PathInfoService
//! [`NarCalculationService`]: storefs_store::NarCalculationService
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
mod client;
pub mod limits;
mod pathinfo_conv;
mod peers;
mod server;
mod shunning;
mod status;

pub use auth::{AuthPolicy, Token, TokenError};
pub use client::{
    ClientConfig, ConnectError, GrpcBlobService, GrpcDirectoryService, GrpcPathInfoService,
    GrpcServices, RemoteFigures, Replicas, ReplicatedServices, connect, connect_endpoint,
    connect_replicas, parse_replicas,
};
pub use peers::{
    InFlight, PeerConfig, PeerFigures, PeerFirstBlobService, PeerListError, PeerServerFigures,
    PeerServing, PeerSet, PeersFigures, parse_peer_list, peer_services,
};
pub use server::{ListenAddr, Listener, ServeError, ServerConfig, UNIX_SOCKET_MODE, serve};

/// Generated tonic services and their request/response messages.
#[allow(missing_docs)] // generated code; the schemas document each field
pub mod proto {
    /// `snix.castore.v1` services.
    pub mod castore {
        include!(concat!(env!("OUT_DIR"), "/snix.castore.v1.rs"));
    }
    /// `snix.store.v1` services.
    pub mod store {
        include!(concat!(env!("OUT_DIR"), "/snix.store.v1.rs"));
    }
    /// `storefs.castore.v1`: storefs's own extensions (batched chunk reads).
    pub mod storefs {
        include!(concat!(env!("OUT_DIR"), "/storefs.castore.v1.rs"));
    }
}
