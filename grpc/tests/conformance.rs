//! The gRPC clients pass the same conformance suites as the memory and redb
//! backends: blob and directory services over a real tonic server on a unix
//! socket and on loopback TCP, path infos over a unix socket. The server
//! runs the memory backends; what the suites check is what goes through the
//! wire and back. The gRPC directory putter streams, so a closure put out
//! of order is refused at close at the latest (`streamed`) rather than at
//! the offending put.

use std::sync::Arc;

use storefs_castore::{BlobService, DirectoryService};
use storefs_grpc::ServerConfig;
use storefs_testkit::grpc::{Kind, memory_services};
use storefs_testkit::suites::path_info::conformance;
use storefs_testkit::{GrpcServer, blob_suite, directory_suite};

async fn server(kind: Kind) -> GrpcServer {
    GrpcServer::start(kind, memory_services(), ServerConfig::default()).await
}

/// A blob client of a fresh server; the server lives as long as the guard.
async fn blobs(kind: Kind) -> (Arc<dyn BlobService>, GrpcServer) {
    let s = server(kind).await;
    (s.client().blob.clone(), s)
}

/// A directory client of a fresh server.
async fn dirs(kind: Kind) -> (Arc<dyn DirectoryService>, GrpcServer) {
    let s = server(kind).await;
    (s.client().directory.clone(), s)
}

blob_suite!(blobs_over_unix, crate::blobs(crate::Kind::Unix).await);
blob_suite!(blobs_over_tcp, crate::blobs(crate::Kind::Tcp).await);
directory_suite!(
    directories_over_unix,
    crate::dirs(crate::Kind::Unix).await,
    streamed
);
directory_suite!(
    directories_over_tcp,
    crate::dirs(crate::Kind::Tcp).await,
    streamed
);

#[tokio::test]
async fn path_infos_over_unix() {
    let s = server(Kind::Unix).await;
    conformance(s.client().path_info.as_ref()).await;
}

#[tokio::test]
async fn path_infos_over_tcp() {
    let s = server(Kind::Tcp).await;
    conformance(s.client().path_info.as_ref()).await;
}
