//! Batched chunk reads (storefs's own `ChunkService`): many chunks in one
//! call, in order, each verified; absent ones are `None`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use storefs_castore::{
    B3Digest, BlobReader, BlobService, BlobWriter, CHUNK_RAW, CHUNK_ZSTD, ChunkMeta, Error,
    MemoryDirectoryService, RedbBlobService, RedbStore, Result, StoredChunk,
};
use storefs_grpc::ServerConfig;
use storefs_store::{MemoryPathInfoService, Services};
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

/// The service's store, watched: how many chunks it handed out as zstd
/// frames, and the bytes it handed out.
struct Watched {
    inner: Arc<RedbBlobService>,
    frames: AtomicU64,
    bytes: AtomicU64,
}

#[async_trait]
impl BlobService for Watched {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        self.inner.has(digest).await
    }
    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        self.inner.chunks(digest).await
    }
    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        let got = self.inner.read_chunk(digest).await?;
        if let Some(b) = &got {
            self.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        Ok(got)
    }
    async fn read_chunk_stored(&self, digest: &B3Digest) -> Result<Option<StoredChunk>> {
        let got = self.inner.read_chunk_stored(digest).await?;
        if let Some(c) = &got {
            self.bytes.fetch_add(c.wire_len() as u64, Ordering::Relaxed);
            if matches!(c, StoredChunk::Zstd(_)) {
                self.frames.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(got)
    }
    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        self.inner.open_read(digest).await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.inner.open_write().await
    }
}

/// Chunks the service keeps compressed cross as their zstd frames (fewer
/// bytes than the chunks) and come out of the client decoded and checked;
/// a damaged frame, or one that decodes to other bytes, fails its own
/// entry only; so does a damaged raw record, which the service sends as
/// it keeps it (unchecked) and the client refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_chunks_cross_as_frames_and_the_client_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(RedbBlobService::new(
        RedbStore::open_dir(dir.path()).unwrap(),
    ));
    let watched = Arc::new(Watched {
        inner: Arc::clone(&redb),
        frames: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let blob: Arc<dyn BlobService> = watched.clone();
    let services = Services::new(
        blob,
        Arc::new(MemoryDirectoryService::new()),
        Arc::new(MemoryPathInfoService::new()),
    );
    let server = GrpcServer::start(Kind::Unix, services, ServerConfig::default()).await;
    let c = client(&server.url);

    // Text compresses; noise does not (and is kept raw). Each is below the
    // chunker's minimum, so one chunk.
    let text = |i: usize| -> Vec<u8> {
        (0..600)
            .flat_map(|k| format!("line {k} of file {i}\n").into_bytes())
            .collect()
    };
    let mut want: Vec<Vec<u8>> = (0..8).map(text).collect();
    want.push(pseudo_random(12_000, 5));
    let mut digests = Vec::new();
    for w in &want {
        digests.push(put_blob(c.blob.as_ref(), w).await);
    }
    let content: u64 = want.iter().map(|w| w.len() as u64).sum();

    let got = c.blob.read_chunk_batch(&digests).await;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.as_ref().unwrap().as_deref(), Some(&w[..]), "chunk #{i}");
    }
    assert_eq!(watched.frames.load(Ordering::Relaxed), 8);
    let sent = watched.bytes.load(Ordering::Relaxed);
    assert!(sent < content / 2, "{sent} bytes sent for {content}");

    // A frame of other bytes, and bytes that are no zstd frame at all.
    let mut other = vec![CHUNK_ZSTD];
    other.extend(zstd_frame(&text(99)));
    redb.danger_overwrite_chunk_record(&digests[2], other)
        .await
        .unwrap();
    redb.danger_overwrite_chunk_record(&digests[5], vec![CHUNK_ZSTD, 1, 2, 3])
        .await
        .unwrap();
    let mut flipped = vec![CHUNK_RAW];
    flipped.extend_from_slice(&want[8]);
    flipped[100] ^= 0xff;
    redb.danger_overwrite_chunk_record(&digests[8], flipped)
        .await
        .unwrap();
    let got = c.blob.read_chunk_batch(&digests).await;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        match i {
            2 => assert!(
                matches!(g, Err(Error::Integrity { expected, .. }) if *expected == digests[2]),
                "{g:?}"
            ),
            5 => assert!(g.is_err(), "{g:?}"),
            8 => assert!(
                matches!(g, Err(Error::Integrity { expected, .. }) if *expected == digests[8]),
                "{g:?}"
            ),
            _ => assert_eq!(g.as_ref().unwrap().as_deref(), Some(&w[..]), "chunk #{i}"),
        }
    }
    server.stop().await.unwrap();
}

/// `data` as one zstd frame, as the store writes them.
fn zstd_frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = zstd::stream::write::Encoder::new(&mut out, 1).unwrap();
    enc.set_pledged_src_size(Some(data.len() as u64)).unwrap();
    std::io::Write::write_all(&mut enc, data).unwrap();
    enc.finish().unwrap();
    out
}
