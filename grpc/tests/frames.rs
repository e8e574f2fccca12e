//! Chunks that cross the link as zstd frames, through the layers a mount
//! reads by (the cache, peers first, failover, the gRPC client): each is
//! decoded and checked once as it arrives, readers get the bytes, and the
//! cache's redb keeps the frame exactly as it came. A frame that is wrong
//! (other bytes, a bomb, not zstd) fails its own entry and is never kept; a
//! record in the cache that fails its check never serves a wrong byte.
//!
//! The service's records are rewritten here as frames no cache would make
//! itself (level 19, or without the size in the header), so that a cache
//! record equal to one shows it was kept as received, not made again.

use std::sync::Arc;

use storefs_castore::{
    B3Digest, BlobService, CHUNK_RAW, CHUNK_ZSTD, CachedBlobService, Error, GrpcEndpoint,
    MemoryDirectoryService, RedbBlobService, RedbStore, StoreUrl, StoredChunk,
};
use storefs_grpc::{
    ClientConfig, PeerConfig, PeerFirstBlobService, PeerSet, ServerConfig, connect_replicas,
    peer_services,
};
use storefs_store::{MemoryPathInfoService, Services};
use storefs_testkit::grpc::{Kind, client, quick_config};
use storefs_testkit::suites::blob::put_blob;
use storefs_testkit::{GrpcServer, pseudo_random};

/// Text that compresses well; one chunk (below the chunker's minimum).
fn text(i: usize) -> Vec<u8> {
    (0..600)
        .flat_map(|k| format!("line {k} of file {i}\n").into_bytes())
        .collect()
}

/// `data` as one zstd frame at `level`, with or without its size in the
/// frame header.
fn frame(data: &[u8], level: i32, sized: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = zstd::stream::write::Encoder::new(&mut out, level).unwrap();
    if sized {
        enc.set_pledged_src_size(Some(data.len() as u64)).unwrap();
    }
    std::io::Write::write_all(&mut enc, data).unwrap();
    enc.finish().unwrap();
    out
}

/// A redb record holding `frame`.
fn record(frame: &[u8]) -> Vec<u8> {
    let mut r = vec![CHUNK_ZSTD];
    r.extend_from_slice(frame);
    r
}

fn endpoint(url: &str) -> GrpcEndpoint {
    match StoreUrl::parse(url).unwrap() {
        StoreUrl::Grpc { endpoint } => endpoint,
        other => panic!("not gRPC: {other}"),
    }
}

/// A service over a redb store, as `storefs serve` runs it.
struct Service {
    redb: Arc<RedbBlobService>,
    server: GrpcServer,
    _dir: tempfile::TempDir,
}

impl Service {
    async fn start() -> Self {
        Self::start_with(ServerConfig::default()).await
    }

    /// A service started with `config`.
    async fn start_with(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let redb = Arc::new(RedbBlobService::new(
            RedbStore::open_dir(dir.path()).unwrap(),
        ));
        let blob: Arc<dyn BlobService> = redb.clone();
        let services = Services::new(
            blob,
            Arc::new(MemoryDirectoryService::new()),
            Arc::new(MemoryPathInfoService::new()),
        );
        let server = GrpcServer::start(Kind::Unix, services, config).await;
        Self {
            redb,
            server,
            _dir: dir,
        }
    }

    /// The service's clients as a mount has them: through failover.
    fn far(&self) -> Arc<dyn BlobService> {
        connect_replicas(&[endpoint(&self.server.url)], quick_config())
            .unwrap()
            .services
            .blob
    }

    /// What the service keeps for `digest`, as it would send it.
    async fn stored(&self, digest: &B3Digest) -> StoredChunk {
        self.redb.read_chunk_stored(digest).await.unwrap().unwrap()
    }
}

/// A mount's cache: redb under a quota, in `dir`.
fn near_in(dir: &std::path::Path) -> Arc<RedbBlobService> {
    Arc::new(RedbBlobService::new(RedbStore::open_dir(dir).unwrap()).with_quota(1 << 30))
}

/// Blobs of one chunk each, put into `service`: compressible ones, and
/// one of noise (kept raw by the service, so it crosses plain).
async fn put_chunks(service: &Service, n: usize) -> (Vec<B3Digest>, Vec<Vec<u8>>) {
    let c = client(&service.server.url);
    let mut want: Vec<Vec<u8>> = (0..n).map(text).collect();
    want.push(pseudo_random(20_000, 3));
    let mut digests = Vec::new();
    for w in &want {
        digests.push(put_blob(c.blob.as_ref(), w).await);
    }
    (digests, want)
}

/// Read `digests[range]` through `cache` in one batch: each must be
/// its `want`.
async fn read_batch_as_wanted(
    cache: &CachedBlobService,
    digests: &[B3Digest],
    want: &[Vec<u8>],
    range: std::ops::Range<usize>,
) {
    let got = cache.read_chunk_batch(&digests[range.clone()]).await;
    assert_eq!(got.len(), range.len());
    for (g, i) in got.iter().zip(range) {
        assert_eq!(
            g.as_ref().unwrap().as_deref(),
            Some(&want[i][..]),
            "chunk #{i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_from_far_are_kept_as_they_came_and_read_back_after_a_reopen() {
    let service = Service::start().await;
    let (mut digests, mut want) = put_chunks(&service, 6).await;
    // A blob of several chunks, compressible.
    let big: Vec<u8> = (0..40_000)
        .flat_map(|k| format!("{k:08} {}\n", k % 97).into_bytes())
        .collect();
    let c = client(&service.server.url);
    let big_digest = put_blob(c.blob.as_ref(), &big).await;
    let list = c.blob.chunks(&big_digest).await.unwrap().unwrap();
    assert!(list.len() >= 2, "{} chunks", list.len());
    let mut off = 0;
    for m in &list {
        digests.push(m.digest);
        want.push(big[off..off + m.size as usize].to_vec());
        off += m.size as usize;
    }
    // Frames the cache would never make itself: level 19, and one without
    // the chunk's size in its header.
    service
        .redb
        .danger_overwrite_chunk_record(&digests[0], record(&frame(&want[0], 19, true)))
        .await
        .unwrap();
    service
        .redb
        .danger_overwrite_chunk_record(&digests[1], record(&frame(&want[1], 3, false)))
        .await
        .unwrap();

    let near_dir = tempfile::tempdir().unwrap();
    let near = near_in(near_dir.path());
    let cache = CachedBlobService::new(near.clone(), service.far());
    // Most in one batch, one on its own (a single read).
    read_batch_as_wanted(&cache, &digests, &want, 1..digests.len()).await;
    let first = cache.read_chunk(&digests[0]).await.unwrap().unwrap();
    assert_eq!(first, want[0]);
    cache.flush().await;

    // Near keeps what crossed the link: each frame as the service sent it
    // (the single read's too, the level-19 frame no cache would make), the
    // noise plain.
    for (i, d) in digests.iter().enumerate() {
        let kept = near.read_chunk_stored(d).await.unwrap().unwrap();
        let sent = service.stored(d).await;
        assert!(
            matches!(&sent, StoredChunk::Zstd(_)) == (i != 6),
            "chunk #{i}: {sent:?}"
        );
        assert_eq!(kept, sent, "chunk #{i}");
    }
    assert_eq!(near.chunk_count().await.unwrap(), digests.len() as u64);

    // Everything reads back byte-exact after a reopen, the service gone.
    drop(cache);
    drop(near);
    let url = service.server.url.clone();
    service.server.stop().await.unwrap();
    let near = near_in(near_dir.path());
    for (i, (d, w)) in digests.iter().zip(&want).enumerate() {
        assert_eq!(
            near.read_chunk(d).await.unwrap().as_deref(),
            Some(&w[..]),
            "chunk #{i}"
        );
    }
    let unreachable = connect_replicas(
        &[endpoint(&url)],
        ClientConfig {
            retries: 0,
            ..quick_config()
        },
    )
    .unwrap();
    let cache = CachedBlobService::new(near.clone(), unreachable.services.blob);
    let got = cache.read_chunk_batch(&digests).await;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.as_ref().unwrap().as_deref(), Some(&w[..]), "chunk #{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_the_service_keeps_plain_is_kept_plain_without_compressing_it_again() {
    let service = Service::start().await;
    let (digests, want) = put_chunks(&service, 2).await;
    // The service keeps chunk #0 plain although it compresses (as if it
    // had judged otherwise): the cache follows the service's judgement.
    let mut raw = vec![CHUNK_RAW];
    raw.extend_from_slice(&want[0]);
    service
        .redb
        .danger_overwrite_chunk_record(&digests[0], raw)
        .await
        .unwrap();
    let near_dir = tempfile::tempdir().unwrap();
    let near = near_in(near_dir.path());
    let cache = CachedBlobService::new(near.clone(), service.far());
    // A single read and a batch.
    assert_eq!(
        cache.read_chunk(&digests[0]).await.unwrap().unwrap(),
        want[0]
    );
    read_batch_as_wanted(&cache, &digests, &want, 1..digests.len()).await;
    cache.flush().await;
    for (i, d) in digests.iter().enumerate() {
        let kept = near.read_chunk_stored(d).await.unwrap().unwrap();
        assert_eq!(kept, service.stored(d).await, "chunk #{i}");
        assert_eq!(near.read_chunk(d).await.unwrap().unwrap(), want[i]);
    }
    assert!(matches!(
        near.read_chunk_stored(&digests[0]).await.unwrap(),
        Some(StoredChunk::Plain(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_read_chunks_serves_plain_bytes_to_single_and_batch_reads() {
    // As a snix service: `Read` only. Its records are still frames.
    let service = Service::start_with(ServerConfig {
        chunk_service: false,
        ..ServerConfig::default()
    })
    .await;
    let (digests, want) = put_chunks(&service, 4).await;
    assert!(matches!(
        service.stored(&digests[0]).await,
        StoredChunk::Zstd(_)
    ));
    let near_dir = tempfile::tempdir().unwrap();
    let near = near_in(near_dir.path());
    let cache = CachedBlobService::new(near.clone(), service.far());
    // A single read first (it finds out `ReadChunks` is not there), then
    // a batch, then a single read again.
    let first = cache.read_chunk(&digests[0]).await.unwrap().unwrap();
    assert_eq!(first, want[0]);
    read_batch_as_wanted(&cache, &digests, &want, 1..4).await;
    let last = cache.read_chunk(&digests[4]).await.unwrap().unwrap();
    assert_eq!(last, want[4]);
    cache.flush().await;
    // What crossed came plain and the cache compressed it itself; the
    // noise stays plain.
    for (i, d) in digests.iter().enumerate() {
        let kept = near.read_chunk_stored(d).await.unwrap().unwrap();
        if i == 4 {
            assert!(matches!(kept, StoredChunk::Plain(_)), "chunk #{i}");
        } else {
            assert!(matches!(kept, StoredChunk::Zstd(_)), "chunk #{i}");
        }
        assert_eq!(near.read_chunk(d).await.unwrap().unwrap(), want[i]);
    }
    // A digest the service lacks is absent, not an error.
    let absent = B3Digest::from(blake3::hash(b"not stored"));
    assert_eq!(cache.read_chunk(&absent).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_from_far_is_refused_and_not_kept() {
    let service = Service::start().await;
    let (digests, want) = put_chunks(&service, 8).await;
    // Over the client's bound on one chunk (64 MiB), in a few kB.
    let zeros = vec![0u8; (64 << 20) + 1];
    let bad: Vec<(usize, Vec<u8>, &str)> = vec![
        (1, record(&frame(&text(99), 1, true)), "other bytes"),
        (3, record(&frame(&zeros, 1, true)), "a bomb that says so"),
        (4, record(&frame(&zeros, 1, false)), "a bomb that does not"),
        (
            6,
            vec![CHUNK_ZSTD, 0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3],
            "no frame",
        ),
    ];
    for (i, r, _) in &bad {
        service
            .redb
            .danger_overwrite_chunk_record(&digests[*i], r.clone())
            .await
            .unwrap();
    }

    let near_dir = tempfile::tempdir().unwrap();
    let near = near_in(near_dir.path());
    let cache = CachedBlobService::new(near.clone(), service.far());
    let got = cache.read_chunk_batch(&digests).await;
    for (i, g) in got.iter().enumerate() {
        match bad.iter().find(|(j, _, _)| *j == i) {
            Some((_, _, why)) => {
                assert!(g.is_err(), "chunk #{i} ({why}): {g:?}");
                if i == 1 {
                    assert!(
                        matches!(g, Err(Error::Integrity { expected, .. }) if *expected == digests[1]),
                        "{g:?}"
                    );
                }
            }
            None => assert_eq!(g.as_ref().unwrap().as_deref(), Some(&want[i][..]), "#{i}"),
        }
    }
    cache.flush().await;
    for (i, _, why) in &bad {
        assert_eq!(
            near.read_chunk_stored(&digests[*i]).await.unwrap(),
            None,
            "chunk #{i} ({why}) was kept"
        );
        assert!(!near.has(&digests[*i]).await.unwrap(), "chunk #{i} ({why})");
    }
    assert_eq!(
        near.chunk_count().await.unwrap(),
        (digests.len() - bad.len()) as u64
    );
    service.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_frame_that_fails_its_check_never_serves_a_wrong_byte() {
    let service = Service::start().await;
    let (digests, want) = put_chunks(&service, 4).await;
    let near_dir = tempfile::tempdir().unwrap();
    let near = near_in(near_dir.path());
    let cache = CachedBlobService::new(near.clone(), service.far());
    for g in cache.read_chunk_batch(&digests).await {
        g.unwrap().unwrap();
    }
    cache.flush().await;
    assert!(matches!(
        near.read_chunk_stored(&digests[0]).await.unwrap(),
        Some(StoredChunk::Zstd(_))
    ));

    // A valid frame of other bytes, and a frame cut short.
    let good = service.stored(&digests[2]).await;
    let StoredChunk::Zstd(f) = &good else {
        panic!("{good:?}")
    };
    near.danger_overwrite_chunk_record(&digests[0], record(&frame(&text(77), 1, true)))
        .await
        .unwrap();
    near.danger_overwrite_chunk_record(&digests[2], record(&f[..f.len() / 2]))
        .await
        .unwrap();
    for i in [0, 2] {
        let got = near.read_chunk(&digests[i]).await;
        assert!(got.is_err(), "chunk #{i}: {got:?}");
    }
    // Through the cache: the right bytes, from far, and near repaired with
    // the frame far sent.
    let got = cache.read_chunk_batch(&digests).await;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.as_ref().unwrap().as_deref(), Some(&w[..]), "chunk #{i}");
    }
    cache.flush().await;
    for i in [0, 2] {
        assert_eq!(
            near.read_chunk(&digests[i]).await.unwrap().as_deref(),
            Some(&want[i][..])
        );
        assert_eq!(
            near.read_chunk_stored(&digests[i]).await.unwrap().unwrap(),
            service.stored(&digests[i]).await
        );
    }
    service.server.stop().await.unwrap();
}

/// A mount's peer server hands out the frames its cache keeps, as kept;
/// a second mount reading through it keeps them as they came; a frame in
/// the peer's cache that fails its check is refused by the asker, which
/// reads the chunk from the service instead and keeps the service's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_hands_out_cached_frames_as_they_are() {
    let service = Service::start().await;
    let (digests, want) = put_chunks(&service, 6).await;
    let total: u64 = want.iter().map(|w| w.len() as u64).sum();

    // Mount A fills its cache from the service.
    let a_dir = tempfile::tempdir().unwrap();
    let a_near = near_in(a_dir.path());
    let a = CachedBlobService::new(a_near.clone(), service.far());
    for g in a.read_chunk_batch(&digests).await {
        g.unwrap().unwrap();
    }
    a.flush().await;
    let serving = peer_services(a_near.clone(), 4, None);
    let figures = serving.figures.clone();
    let peer = GrpcServer::start(Kind::Tcp, serving.services, ServerConfig::default()).await;

    // Asked directly, the peer sends each kept frame as it is.
    let asker = client(&peer.url);
    let got = asker.grpc_blob.read_chunk_batch_verified(&digests).await;
    for (i, g) in got.into_iter().enumerate() {
        let c = g.unwrap().unwrap();
        assert_eq!(c.data(), &want[i][..], "chunk #{i}");
        match a_near
            .read_chunk_stored(&digests[i])
            .await
            .unwrap()
            .unwrap()
        {
            StoredChunk::Zstd(kept) => assert_eq!(c.frame(), Some(&kept), "chunk #{i}"),
            other => assert_eq!(c.frame(), None, "chunk #{i}: {other:?}"),
        }
    }
    let (chunks, bytes, _) = figures.snapshot();
    assert_eq!((chunks, bytes), (digests.len() as u64, total));

    // Mount B, peers first: everything from A, kept as A sent it; but for
    // a chunk A's cache holds wrong, which comes from the service.
    a_near
        .danger_overwrite_chunk_record(&digests[3], record(&frame(&text(55), 1, true)))
        .await
        .unwrap();
    let set = PeerSet::new(PeerConfig::default());
    set.set_peers(&[endpoint(&peer.url)]).unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let b_near = near_in(b_dir.path());
    let b = CachedBlobService::new(
        b_near.clone(),
        Arc::new(PeerFirstBlobService::new(set.clone(), service.far())),
    );
    let got = b.read_chunk_batch(&digests).await;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.as_ref().unwrap().as_deref(), Some(&w[..]), "chunk #{i}");
    }
    b.flush().await;
    for (i, d) in digests.iter().enumerate() {
        let kept = b_near.read_chunk_stored(d).await.unwrap().unwrap();
        if i == 3 {
            assert_eq!(kept, service.stored(d).await);
        } else {
            assert_eq!(kept, a_near.read_chunk_stored(d).await.unwrap().unwrap());
        }
    }
    let f = set.figures();
    assert_eq!(f.verification_failures, 1, "{f:?}");
    assert_eq!(f.peer_bytes, total - want[3].len() as u64, "{f:?}");
    assert_eq!(f.service_bytes, want[3].len() as u64, "{f:?}");
    peer.stop().await.unwrap();
    service.server.stop().await.unwrap();
}
