//! Batched chunk reads (storefs's own `ChunkService`): many chunks in one
//! call, in order, each verified; absent ones are `None`.

use storefs_castore::B3Digest;
use storefs_grpc::ServerConfig;
use storefs_testkit::grpc::{Kind, client, memory_services};
use storefs_testkit::suites::blob::put_blob;
use storefs_testkit::{GrpcServer, pseudo_random};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_chunks_returns_every_chunk_in_order() {
    let services = memory_services();
    let server = GrpcServer::start(Kind::Unix, services.clone(), ServerConfig::default()).await;
    let c = client(&server.url);

    // Small blobs across more than one batch, a big blob's chunks, and gaps.
    let mut want = Vec::new();
    let mut digests = Vec::new();
    for i in 0..1500u64 {
        let data = pseudo_random(100 + (i as usize % 300), 500 + i);
        digests.push(put_blob(c.blob.as_ref(), &data).await);
        want.push(Some(data));
    }
    let big = pseudo_random(2 << 20, 77);
    let big_digest = put_blob(c.blob.as_ref(), &big).await;
    let chunks = c.blob.chunks(&big_digest).await.unwrap().unwrap();
    let mut off = 0usize;
    for ch in &chunks {
        digests.push(ch.digest);
        want.push(Some(big[off..off + ch.size as usize].to_vec()));
        off += ch.size as usize;
    }
    for i in [3usize, 1200] {
        digests.insert(i, B3Digest::of(format!("absent {i}").as_bytes()));
        want.insert(i, None);
    }

    let got = c.grpc_blob.read_chunks(&digests).await.unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.as_ref().map(|b| b.to_vec()), *w, "chunk #{i}");
    }
    assert!(c.grpc_blob.read_chunks(&[]).await.unwrap().is_empty());
    server.stop().await.unwrap();
}
