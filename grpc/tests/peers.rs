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
        peer_services(shared.blob.clone(), 4, None).services,
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
    let served = peer_services(shared.blob.clone(), 4, None).services;
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

/// A service whose chunk reads wait until the test opens the gate, and
/// count themselves.
struct Gate {
    inner: Arc<dyn BlobService>,
    open: tokio::sync::Semaphore,
    reads: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl BlobService for Gate {
    async fn has(&self, d: &storefs_castore::B3Digest) -> storefs_castore::Result<bool> {
        self.inner.has(d).await
    }

    async fn chunks(
        &self,
        d: &storefs_castore::B3Digest,
    ) -> storefs_castore::Result<Option<Vec<storefs_castore::ChunkMeta>>> {
        self.inner.chunks(d).await
    }

    async fn read_chunk(
        &self,
        d: &storefs_castore::B3Digest,
    ) -> storefs_castore::Result<Option<bytes::Bytes>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _pass = self.open.acquire().await;
        self.inner.read_chunk(d).await
    }

    async fn open_read(
        &self,
        d: &storefs_castore::B3Digest,
    ) -> storefs_castore::Result<Option<storefs_castore::BlobReader>> {
        self.inner.open_read(d).await
    }

    async fn open_write(&self) -> Box<dyn storefs_castore::BlobWriter> {
        self.inner.open_write().await
    }
}

/// A service over `backing` whose chunk reads wait behind a closed [`Gate`].
async fn gated_service(mut backing: Services) -> (Arc<Gate>, GrpcServer) {
    let gate = Arc::new(Gate {
        inner: backing.blob.clone(),
        open: tokio::sync::Semaphore::new(0),
        reads: Default::default(),
    });
    backing.blob = gate.clone();
    let service = GrpcServer::start(Kind::Unix, backing, ServerConfig::default()).await;
    (gate, service)
}

#[tokio::test]
async fn a_peer_asking_for_a_chunk_on_its_way_gets_it_when_it_arrives() {
    let backing = memory_services();
    let data = pseudo_random(20_000, 3);
    let digest = put_blob(backing.blob.as_ref(), &data).await;
    let (gate, service) = gated_service(backing).await;

    // Mount 1: no peers, nothing cached; it serves peers what is on its way.
    let m1 = Arc::new(peer_first(&service.url, &[], PeerConfig::default()));
    let serving = peer_services(
        Arc::new(storefs_castore::MemoryBlobService::new()),
        4,
        Some(m1.peers().clone()),
    );
    let figures = serving.figures.clone();
    let peer = GrpcServer::start(Kind::Unix, serving.services, ServerConfig::default()).await;

    let fetch = tokio::spawn({
        let m1 = m1.clone();
        async move { m1.read_chunk(&digest).await }
    });
    wait_until(
        Duration::from_secs(10),
        "mount 1 to ask the service",
        || gate.reads.load(std::sync::atomic::Ordering::SeqCst) == 1,
    )
    .await;
    // Mount 2 asks mount 1 meanwhile, then the service answers mount 1.
    let asker = tokio::spawn({
        let url = peer.url.clone();
        async move {
            let c = storefs_grpc::connect(&url, quick_config()).unwrap();
            c.blob.read_chunk(&digest).await
        }
    });
    wait_until(
        Duration::from_secs(10),
        "mount 2 to wait on mount 1",
        || figures.waiting.load(std::sync::atomic::Ordering::SeqCst) == 1,
    )
    .await;
    gate.open.add_permits(10);
    assert_eq!(fetch.await.unwrap().unwrap().unwrap(), data);
    assert_eq!(asker.await.unwrap().unwrap().unwrap(), data);
    assert_eq!(figures.joined(), 1);
    assert_eq!(gate.reads.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Two mounts of one gated service, `a` and `b`, each serving the other
/// its peer server over an empty cache, with the fleet's split on (each
/// named by the URL the other knows it by); `timeout` is their budget.
/// Returns the gate, the mounts, their peer servers' figures, and the
/// servers (kept alive).
async fn split_pair(
    blobs: &[Vec<u8>],
    timeout: Duration,
) -> (
    Arc<Gate>,
    Vec<storefs_castore::B3Digest>,
    [Arc<PeerFirstBlobService>; 2],
    [Arc<storefs_grpc::PeerServerFigures>; 2],
    Vec<GrpcServer>,
) {
    let backing = memory_services();
    let mut digests = Vec::new();
    for b in blobs {
        digests.push(put_blob(backing.blob.as_ref(), b).await);
    }
    let (gate, service) = gated_service(backing).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let urls: Vec<String> = dirs
        .iter()
        .map(|d| format!("grpc+unix://{}", d.path().join("peer.sock").display()))
        .collect();
    let mut mounts = Vec::new();
    let mut figures = Vec::new();
    let mut servers = vec![service];
    for (i, dir) in dirs.into_iter().enumerate() {
        let config = PeerConfig {
            name: Some(StoreUrl::parse(&urls[i]).unwrap().to_string().into()),
            timeout,
            active_window: Duration::from_secs(3600),
            ..PeerConfig::default()
        };
        let m = Arc::new(peer_first(&servers[0].url, &[&urls[1 - i]], config));
        let serving = peer_services(
            Arc::new(storefs_castore::MemoryBlobService::new()),
            4,
            Some(m.peers().clone()),
        );
        figures.push(serving.figures.clone());
        let addr = storefs_grpc::ListenAddr::Unix(dir.path().join("peer.sock"));
        servers
            .push(GrpcServer::start_on(addr, dir, serving.services, ServerConfig::default()).await);
        mounts.push(m);
    }
    let [a, b] = <[_; 2]>::try_from(mounts).ok().unwrap();
    let [fa, fb] = <[_; 2]>::try_from(figures).ok().unwrap();
    (gate, digests, [a, b], [fa, fb], servers)
}

/// The index of the first digest whose first fetcher is `mount`.
fn owned_by(mount: &PeerFirstBlobService, digests: &[storefs_castore::B3Digest]) -> usize {
    let me = mount.peers().config().name.clone();
    digests
        .iter()
        .position(|d| mount.peers().first_fetcher(d) == me)
        .expect("some digest owned by each mount")
}

#[tokio::test]
async fn a_chunk_two_mounts_want_at_once_is_fetched_once_by_its_owner() {
    let blobs: Vec<Vec<u8>> = (0..16).map(|i| pseudo_random(9_000, 40 + i)).collect();
    let (gate, digests, [a, b], [fa, _fb], _servers) =
        split_pair(&blobs, Duration::from_secs(20)).await;
    let d = owned_by(&a, &digests);
    // Both mounts agree who fetches it first.
    assert_eq!(
        a.peers().first_fetcher(&digests[d]),
        b.peers().first_fetcher(&digests[d])
    );
    // A's own reader is busy (it just read something else).
    let other = (d + 1) % digests.len();
    gate.open.add_permits(1);
    a.read_chunk(&digests[other]).await.unwrap().unwrap();
    let reads_before = gate.reads.load(std::sync::atomic::Ordering::SeqCst);

    // B wants the chunk first: it asks A, which has nothing yet and waits
    // for its own reader rather than B going to the service.
    let asker = tokio::spawn({
        let (b, digest) = (b.clone(), digests[d]);
        async move { b.read_chunk(&digest).await }
    });
    wait_until(Duration::from_secs(10), "B to wait on A", || {
        fa.waiting.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    // Then A's reader wants it: one fetch from the service, for both.
    gate.open.add_permits(100);
    assert_eq!(a.read_chunk(&digests[d]).await.unwrap().unwrap(), blobs[d]);
    assert_eq!(asker.await.unwrap().unwrap().unwrap(), blobs[d]);
    assert_eq!(
        gate.reads.load(std::sync::atomic::Ordering::SeqCst) - reads_before,
        1,
        "the service was asked for the chunk once"
    );
    assert_eq!(fa.lingered(), (1, 0));
    let fb = b.peers().figures();
    assert_eq!((fb.peer_chunks, fb.service_chunks), (1, 0), "{fb:?}");
}

#[tokio::test]
async fn an_owner_keeps_a_peer_waiting_but_never_fetches_for_it() {
    let blobs: Vec<Vec<u8>> = (0..16).map(|i| pseudo_random(9_000, 80 + i)).collect();
    let (gate, digests, [a, b], [fa, _fb], _servers) =
        split_pair(&blobs, Duration::from_millis(400)).await;
    let d = owned_by(&a, &digests);
    let other = (d + 1) % digests.len();
    gate.open.add_permits(100);
    a.read_chunk(&digests[other]).await.unwrap().unwrap();
    let reads_before = gate.reads.load(std::sync::atomic::Ordering::SeqCst);
    // A's reader never wants it: B waits at A in vain, then reads it from
    // the service itself; A fetched nothing for B.
    assert_eq!(b.read_chunk(&digests[d]).await.unwrap().unwrap(), blobs[d]);
    assert_eq!(
        gate.reads.load(std::sync::atomic::Ordering::SeqCst) - reads_before,
        1,
        "only B's own read reached the service"
    );
    assert_eq!(fa.lingered(), (0, 1));
    assert_eq!(fa.snapshot().0, 0, "A served nothing");
    let fb = b.peers().figures();
    assert_eq!((fb.peer_chunks, fb.service_chunks), (0, 1), "{fb:?}");
    assert_eq!(fb.peers[0].failures, 0, "waiting in vain is not a failure");
}
