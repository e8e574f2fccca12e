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
//! - [`endpoint`]: parsing `grpc://`, `grpc+http://`, `grpc+unix://` URLs.
//! - [`auth`]: bearer tokens, on both sides.
//! - [`limits`]: message sizes, windows, queue lengths.
//! - `server/`: the tonic service implementations, listeners, shutdown.
//! - `client/`: the trait implementations over a tonic channel.
//! - [`proto`]: the generated tonic code.
//!
//! [`BlobService`]: storefs_castore::blobservice::BlobService
//! [`DirectoryService`]: storefs_castore::directoryservice::DirectoryService
//! [`PathInfoService`]: storefs_store::pathinfoservice::PathInfoService
//! [`NarCalculationService`]: storefs_store::pathinfoservice::NarCalculationService
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
mod client;
pub mod endpoint;
pub mod limits;
mod pathinfo_conv;
mod server;
mod status;

pub use auth::{AuthPolicy, Token, TokenError};
pub use client::{
    ClientConfig, ConnectError, GrpcBlobService, GrpcDirectoryService, GrpcPathInfoService,
    GrpcServices, connect,
};
pub use endpoint::{Endpoint, EndpointError};
pub use server::{
    ListenAddr, Listener, ServeError, ServerConfig, Services, UNIX_SOCKET_MODE, serve,
};

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
}
