//! The conformance suites against the memory backends, and what only the
//! memory backend can show (chunk dedup by count).

use std::sync::Arc;
use storefs_testkit::suites::blob::write_blob;
use storefs_testkit::{blob_suite, directory_suite, pseudo_random};

use storefs_castore::{BlobService, DirectoryService, MemoryBlobService, MemoryDirectoryService};

fn blobs() -> (Arc<dyn BlobService>, ()) {
    (Arc::new(MemoryBlobService::new()), ())
}

fn dirs() -> (Arc<dyn DirectoryService>, ()) {
    (Arc::new(MemoryDirectoryService::new()), ())
}

blob_suite!(crate::blobs());
directory_suite!(crate::dirs());

#[tokio::test]
async fn shared_chunk_is_stored_once() {
    let svc = MemoryBlobService::new();
    // 256 KiB of zeroes is one max-size chunk; both blobs start with it.
    let zeroes = vec![0u8; 256 * 1024];
    let mut a = zeroes.clone();
    a.extend_from_slice(&pseudo_random(100_000, 5));
    let mut b = zeroes.clone();
    b.extend_from_slice(&pseudo_random(100_000, 6));
    let da = write_blob(&svc, &a, 30_000).await;
    let before = svc.chunk_count();
    let db = write_blob(&svc, &b, 30_000).await;
    let la = svc.chunks(&da).await.unwrap().unwrap();
    let lb = svc.chunks(&db).await.unwrap().unwrap();
    assert_eq!(la[0], lb[0]);
    // b added its own chunks but not the shared one.
    assert_eq!(svc.chunk_count() - before, lb.len() - 1);
}

#[tokio::test]
async fn open_read_fails_at_end_on_wrong_blob_digest() {
    use storefs_castore::{B3Digest, ChunkMeta, ChunkStore};
    use tokio::io::AsyncReadExt;
    let svc = MemoryBlobService::new();
    let (x, y) = (pseudo_random(1000, 1), pseudo_random(2000, 2));
    svc.insert_chunk(&B3Digest::of(&x), x.clone().into())
        .await
        .unwrap();
    svc.insert_chunk(&B3Digest::of(&y), y.clone().into())
        .await
        .unwrap();
    // A chunk list recorded under a digest the chunks do not hash to.
    let liar = B3Digest::of(b"something else");
    let list = [
        ChunkMeta {
            digest: B3Digest::of(&x),
            size: 1000,
        },
        ChunkMeta {
            digest: B3Digest::of(&y),
            size: 2000,
        },
    ];
    svc.insert_chunk_list(&liar, &list).await.unwrap();
    let mut r = svc.open_read(&liar).await.unwrap().unwrap();
    let mut out = Vec::new();
    let err = r.read_to_end(&mut out).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("integrity"), "{err}");
    // A chunk that does not hash to its digest is refused.
    let err = svc
        .insert_chunk(&B3Digest::of(b"a"), "b".into())
        .await
        .unwrap_err();
    assert!(matches!(err, storefs_castore::Error::Integrity { .. }));
    assert_eq!(svc.read_chunk(&B3Digest::of(b"a")).await.unwrap(), None);
}
