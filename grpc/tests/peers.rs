//! The peer-first blob service over real gRPC servers: it passes the blob
//! conformance suite in front of a service with a peer; a peer that never
//! answers costs one budget and is skipped afterwards; a peer that died is
//! skipped, and asked again once its pause is over and it is back.

use std::sync::Arc;
use std::time::Duration;

use storefs_castore::{BlobService, GrpcEndpoint, StoreUrl};
use storefs_grpc::{PeerConfig, PeerFirstBlobService, PeerSet, ServerConfig, peer_services};
use storefs_store::Services;
use storefs_testkit::grpc::{CrashingServer, Kind, memory_services, quick_config};
use storefs_testkit::suites::blob::put_blob;
use storefs_testkit::{GrpcServer, blob_suite, pseudo_random, wait_until};

fn endpoint(url: &str) -> GrpcEndpoint {
    match StoreUrl::parse(url).unwrap() {
        StoreUrl::Grpc { endpoint } => endpoint,
        other => panic!("not gRPC: {other}"),
    }
}

/// The service's client, with peers at `peer_urls` in front of it.
fn peer_first(service_url: &str, peer_urls: &[&str], config: PeerConfig) -> PeerFirstBlobService {
    let service = storefs_grpc::connect(service_url, quick_config()).unwrap();
    let set = PeerSet::new(config);
    let peers: Vec<GrpcEndpoint> = peer_urls.iter().map(|u| endpoint(u)).collect();
    set.set_peers(&peers).unwrap();
    PeerFirstBlobService::new(set, service.services.blob.clone())
}

/// A service, and a peer serving the same blobs read-only.
async fn with_peer() -> (Arc<dyn BlobService>, [GrpcServer; 2]) {
    let shared = memory_services();
    let service = GrpcServer::start(Kind::Unix, shared.clone(), ServerConfig::default()).await;
    let peer = GrpcServer::start(
        Kind::Tcp,
        peer_services(shared.blob.clone(), 4).services,
        ServerConfig::default(),
    )
    .await;
    let svc = peer_first(&service.url, &[&peer.url], PeerConfig::default());
    (Arc::new(svc), [service, peer])
}

blob_suite!(blobs_with_a_peer, crate::with_peer().await);

/// A socket that accepts connections and never says a word.
async fn silent() -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("grpc://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (url, task)
}

#[tokio::test]
async fn a_silent_peer_costs_one_budget_and_is_skipped_afterwards() {
    let service = GrpcServer::start(Kind::Unix, memory_services(), ServerConfig::default()).await;
    let data = pseudo_random(3 << 20, 1);
    let digest = put_blob(service.client().services.blob.as_ref(), &data).await;
    let chunks = service
        .client()
        .services
        .blob
        .chunks(&digest)
        .await
        .unwrap()
        .unwrap();
    let (peer, _task) = silent().await;
    let config = PeerConfig {
        timeout: Duration::from_millis(300),
        shun_initial: Duration::from_secs(60),
        ..PeerConfig::default()
    };
    let svc = peer_first(&service.url, &[&peer], config);
    let set = svc_set(&svc);

    let first = svc.read_chunk(&chunks[0].digest).await.unwrap().unwrap();
    assert_eq!(first.len() as u64, chunks[0].size);
    let f = set.figures();
    assert_eq!(f.peers[0].failures, 1, "{f:?}");
    assert_eq!(f.peers[0].state, "shunned", "{f:?}");
    assert_eq!(f.service_chunks, 1, "{f:?}");

    // Skipped: the rest is read from the service without asking it.
    let rest: Vec<_> = chunks[1..].iter().map(|c| c.digest).collect();
    for r in svc.read_chunk_batch(&rest).await {
        r.unwrap().unwrap();
    }
    let f = set.figures();
    assert_eq!(f.peers[0].requests, 1, "{f:?}");
    assert_eq!(f.service_chunks, chunks.len() as u64, "{f:?}");
}

/// The set behind a peer-first service (the test keeps its own handle).
fn svc_set(svc: &PeerFirstBlobService) -> PeerSet {
    svc.peers().clone()
}

#[tokio::test]
async fn a_dead_peer_is_skipped_then_asked_again_once_back() {
    let service = GrpcServer::start(Kind::Unix, memory_services(), ServerConfig::default()).await;
    let data = pseudo_random(2 << 20, 2);
    let digest = put_blob(service.client().services.blob.as_ref(), &data).await;
    let chunks = service
        .client()
        .services
        .blob
        .chunks(&digest)
        .await
        .unwrap()
        .unwrap();
    // The peer holds the same chunks (its cache), and dies.
    let shared: Services = memory_services();
    put_blob(shared.blob.as_ref(), &data).await;
    let dir = tempfile::tempdir().unwrap();
    let served = peer_services(shared.blob.clone(), 4).services;
    let mut peer = CrashingServer::start(
        served,
        storefs_grpc::ListenAddr::Unix(dir.path().join("peer.sock")),
    );
    let config = PeerConfig {
        shun_initial: Duration::from_millis(200),
        ..PeerConfig::default()
    };
    let svc = peer_first(&service.url, &[&peer.url], config);
    let set = svc_set(&svc);
    svc.read_chunk(&chunks[0].digest).await.unwrap().unwrap();
    assert_eq!(set.figures().peer_chunks, 1);

    peer.crash();
    svc.read_chunk(&chunks[1].digest).await.unwrap().unwrap();
    let f = set.figures();
    assert_eq!((f.peers[0].failures, f.service_chunks), (1, 1), "{f:?}");

    // Back, and its pause over: asked again, and it answers.
    peer.restart();
    wait_until(Duration::from_secs(10), "the pause to end", || {
        set.figures().peers[0].state == "healthy"
    })
    .await;
    svc.read_chunk(&chunks[2].digest).await.unwrap().unwrap();
    let f = set.figures();
    assert_eq!((f.peer_chunks, f.service_chunks), (2, 1), "{f:?}");
}
