//! One store behind two replicas (two real gRPC servers over the same
//! backends, as two `storefs serve` over one bucket): the failover client
//! passes the conformance suites, reads move to the live replica when one
//! dies, a read in progress finishes there, a replica that failed is
//! skipped and taken back once it answers again, and with none left the
//! error comes at once instead of a hang.

use std::sync::Arc;
use std::time::Duration;

use storefs_castore::{BlobService, DirectoryService, Error, GrpcEndpoint, StoreUrl};
use storefs_grpc::{
    ClientConfig, ReplicatedServices, ServerConfig, connect_replicas, parse_replicas,
};
use storefs_store::Services;
use storefs_testkit::grpc::{CrashingServer, Kind, memory_services, quick_config};
use storefs_testkit::suites::blob::{expected_chunks, put_blob};
use storefs_testkit::suites::directory::{collect, diamond};
use storefs_testkit::suites::path_info::{conformance, info};
use storefs_testkit::{GrpcServer, blob_suite, directory_suite, pseudo_random};
use tokio::io::AsyncReadExt;

fn endpoint(url: &str) -> GrpcEndpoint {
    match StoreUrl::parse(url).unwrap() {
        StoreUrl::Grpc { endpoint } => endpoint,
        other => panic!("not gRPC: {other}"),
    }
}

/// Client settings: quick, and a failed replica skipped for a minute, so
/// that the test sees it shunned.
fn config() -> ClientConfig {
    ClientConfig {
        shun_initial: Duration::from_secs(60),
        shun_max: Duration::from_secs(60),
        ..quick_config()
    }
}

/// Two in-process servers over one set of backends, and a client of both.
async fn pair() -> (ReplicatedServices, [GrpcServer; 2]) {
    let shared = memory_services();
    let a = GrpcServer::start(Kind::Unix, shared.clone(), ServerConfig::default()).await;
    let b = GrpcServer::start(Kind::Tcp, shared, ServerConfig::default()).await;
    let r = connect_replicas(&[endpoint(&a.url), endpoint(&b.url)], config()).unwrap();
    (r, [a, b])
}

async fn blobs() -> (Arc<dyn BlobService>, [GrpcServer; 2]) {
    let (r, guard) = pair().await;
    (r.services.blob.clone(), guard)
}

async fn dirs() -> (Arc<dyn DirectoryService>, [GrpcServer; 2]) {
    let (r, guard) = pair().await;
    (r.services.directory.clone(), guard)
}

blob_suite!(blobs_over_two_replicas, crate::blobs().await);
directory_suite!(directories_over_two_replicas, crate::dirs().await, streamed);

#[tokio::test]
async fn path_infos_over_two_replicas() {
    let (r, _guard) = pair().await;
    conformance(r.services.path_info.as_ref()).await;
}

/// Two crashable servers over `shared` on unix sockets in `dir`, and a
/// client of both (A first).
fn crashable(
    shared: &Services,
    dir: &std::path::Path,
) -> (CrashingServer, CrashingServer, ReplicatedServices) {
    let a = CrashingServer::start(
        shared.clone(),
        storefs_grpc::ListenAddr::Unix(dir.join("a.sock")),
    );
    let b = CrashingServer::start(
        shared.clone(),
        storefs_grpc::ListenAddr::Unix(dir.join("b.sock")),
    );
    let spec = format!("{},{}", a.url, b.url);
    let endpoints = parse_replicas(&spec).unwrap().unwrap();
    let r = connect_replicas(&endpoints, config()).unwrap();
    (a, b, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_move_to_the_live_replica_and_back() {
    let shared = memory_services();
    let data = pseudo_random(6 << 20, 11);
    let digest = put_blob(shared.blob.as_ref(), &data).await;
    let tree = diamond();
    let mut putter = shared.directory.put_multiple_start();
    for d in [&tree.c, &tree.d, &tree.a, &tree.b, &tree.root] {
        putter.put((*d).clone()).await.unwrap();
    }
    let root = putter.close().await.unwrap();
    let path = info("hello", &[], false);
    shared.path_info.put(path.clone()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, mut b, r) = crashable(&shared, tmp.path());
    let s = &r.services;

    // The first half of the chunks, from A (the first given).
    let chunks = expected_chunks(&data);
    assert!(chunks.len() >= 4, "{} chunks", chunks.len());
    assert_eq!(s.blob.chunks(&digest).await.unwrap().unwrap(), chunks);
    let digests: Vec<_> = chunks.iter().map(|c| c.digest).collect();
    let half = digests.len() / 2;
    let mut got = Vec::new();
    for c in s.blob.read_chunk_batch(&digests[..half]).await {
        got.extend_from_slice(&c.unwrap().unwrap());
    }
    let f = r.replicas.figures();
    assert!(f[0].bytes > 0 && f[1].bytes == 0, "{f:?}");
    assert_eq!((f[0].state(), f[1].state()), ("healthy", "healthy"));

    // A dies: the rest comes from B, without an error.
    a.crash();
    for c in s.blob.read_chunk_batch(&digests[half..]).await {
        got.extend_from_slice(&c.unwrap().unwrap());
    }
    assert_eq!(got, data);
    let f = r.replicas.figures();
    assert!(f[0].failures >= 1 && f[0].shunned, "{f:?}");
    assert!(f[1].bytes > 0 && f[1].failures == 0, "{f:?}");
    // Everything else is served by B now, A skipped.
    let a_requests = f[0].requests;
    assert_eq!(
        s.path_info.get(*path.store_path.digest()).await.unwrap(),
        Some(path.clone())
    );
    assert_eq!(collect(s.directory.as_ref(), &root).await.unwrap().len(), 5);
    assert_eq!(
        s.directory.get(&tree.c.digest()).await.unwrap(),
        Some(tree.c.clone())
    );
    assert!(s.blob.has(&digest).await.unwrap());
    assert_eq!(r.replicas.figures()[0].requests, a_requests, "A is skipped");

    // Both dead: an error, soon.
    b.crash();
    let err = s.blob.read_chunk(&digests[0]).await.unwrap_err();
    assert!(
        matches!(err, Error::Remote { .. } | Error::Timeout { .. }),
        "{err}"
    );
    let f = r.replicas.figures();
    assert!(f[0].shunned && f[1].shunned, "{f:?}");

    // A comes back: the same client uses it again, by itself.
    a.restart();
    assert_eq!(
        s.blob.read_chunk(&digests[0]).await.unwrap().unwrap().len() as u64,
        chunks[0].size
    );
    let f = r.replicas.figures();
    assert!(!f[0].shunned && f[0].consecutive_failures == 0, "{f:?}");
    assert!(f[1].shunned, "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_read_in_progress_finishes_on_the_other_replica() {
    let shared = memory_services();
    let data = pseudo_random(8 << 20, 12);
    let digest = put_blob(shared.blob.as_ref(), &data).await;
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, _b, r) = crashable(&shared, tmp.path());

    let mut reader = r.services.blob.open_read(&digest).await.unwrap().unwrap();
    let mut got = vec![0u8; 1 << 20];
    reader.read_exact(&mut got).await.unwrap();
    a.crash();
    reader.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, data);
    let f = r.replicas.figures();
    assert!(f[0].failures >= 1 && f[1].bytes > 0, "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_to_a_live_replica() {
    let shared = memory_services();
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, _b, r) = crashable(&shared, tmp.path());
    a.crash();
    // The path info put fails over to B (and A is now known dead).
    let p = info("written", &[], false);
    r.services.path_info.put(p.clone()).await.unwrap();
    assert_eq!(
        shared.path_info.get(*p.store_path.digest()).await.unwrap(),
        Some(p)
    );
    // A blob upload goes to the first healthy replica: B.
    let data = pseudo_random(300_000, 13);
    let digest = put_blob(r.services.blob.as_ref(), &data).await;
    assert!(shared.blob.has(&digest).await.unwrap());
    // A closure put goes whole to B.
    let tree = diamond();
    let mut putter = r.services.directory.put_multiple_start();
    for d in [&tree.c, &tree.d, &tree.a, &tree.b, &tree.root] {
        putter.put((*d).clone()).await.unwrap();
    }
    let root = putter.close().await.unwrap();
    assert_eq!(
        collect(shared.directory.as_ref(), &root)
            .await
            .unwrap()
            .len(),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_not_sent_to_the_next_replica() {
    let shared = memory_services();
    let tmp = tempfile::tempdir().unwrap();
    let (_a, _b, r) = crashable(&shared, tmp.path());
    // A directory naming a child nobody has: refused by A, and B would
    // refuse it too, so it is not asked.
    let tree = diamond();
    let err = r.services.directory.put(tree.a.clone()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    let f = r.replicas.figures();
    assert_eq!((f[0].requests, f[1].requests), (1, 0), "{f:?}");
    assert!(!f[0].shunned, "{f:?}");
}
