//! The conformance suites against the redb backends, plus what only a disk
//! store shows: reopening, dedup by row count, corruption on disk.

use std::sync::Arc;
use storefs_testkit::suites::blob::{check_blob, write_blob};
use storefs_testkit::suites::directory::{diamond, file_dir};
use storefs_testkit::{blob_suite, directory_suite, pseudo_random};

use storefs_castore::{
    B3Digest, BlobService, CHUNK_RAW, DirectoryService, Error, RedbStore, STORE_FILE_NAME,
};
use tempfile::TempDir;

fn store() -> (RedbStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_dir(dir.path().join("s")).unwrap();
    (store, dir)
}

fn blobs() -> (Arc<dyn BlobService>, TempDir) {
    let (s, d) = store();
    (Arc::new(s.blob_service()), d)
}

fn dirs() -> (Arc<dyn DirectoryService>, TempDir) {
    let (s, d) = store();
    (Arc::new(s.directory_service()), d)
}

blob_suite!(crate::blobs());
directory_suite!(crate::dirs());

#[tokio::test]
async fn survives_close_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let data = pseudo_random(2 * 1024 * 1024 + 7, 77);
    let small = b"a small file".to_vec();
    let t = diamond();
    let (blob, small_blob) = {
        let store = RedbStore::open_dir(&path).unwrap();
        let blobs = store.blob_service();
        let b = write_blob(&blobs, &data, 12_345).await;
        let s = write_blob(&blobs, &small, 3).await;
        let dirs = store.directory_service();
        let mut p = dirs.put_multiple_start();
        for d in [&t.c, &t.d, &t.a, &t.b, &t.root] {
            p.put(d.clone()).await.unwrap();
        }
        p.close().await.unwrap();
        (b, s)
        // Every handle on the database is dropped here.
    };
    assert!(path.join(STORE_FILE_NAME).is_file());
    let store = RedbStore::open_dir(&path).unwrap();
    let blobs = store.blob_service();
    check_blob(&blobs, &blob, &data).await;
    check_blob(&blobs, &small_blob, &small).await;
    let dirs = store.directory_service();
    assert_eq!(dirs.get(&t.root.digest()).await.unwrap(), Some(t.root));
    assert_eq!(dirs.get(&t.d.digest()).await.unwrap(), Some(t.d));
}

#[tokio::test]
async fn shared_chunk_is_stored_once() {
    let (store, _tmp) = store();
    let svc = store.blob_service();
    let zeroes = vec![0u8; 256 * 1024];
    let mut a = zeroes.clone();
    a.extend_from_slice(&pseudo_random(100_000, 5));
    let mut b = zeroes.clone();
    b.extend_from_slice(&pseudo_random(100_000, 6));
    let da = write_blob(&svc, &a, 30_000).await;
    let before = svc.chunk_count().await.unwrap();
    let db = write_blob(&svc, &b, 30_000).await;
    let la = svc.chunks(&da).await.unwrap().unwrap();
    let lb = svc.chunks(&db).await.unwrap().unwrap();
    assert_eq!(la[0], lb[0]);
    assert_eq!(
        svc.chunk_count().await.unwrap() - before,
        lb.len() as u64 - 1
    );
    // Writing the same blob again adds nothing.
    write_blob(&svc, &b, 1 << 20).await;
    assert_eq!(
        svc.chunk_count().await.unwrap() - before,
        lb.len() as u64 - 1
    );
}

#[tokio::test]
async fn compressible_chunks_take_less_room() {
    // 8 MiB of zeroes: 32 identical max-size chunks, stored once, compressed.
    let (store, tmp) = store();
    let svc = store.blob_service();
    let d = write_blob(&svc, &vec![0u8; 8 << 20], 1 << 20).await;
    assert_eq!(svc.chunks(&d).await.unwrap().unwrap().len(), 32);
    assert_eq!(svc.chunk_count().await.unwrap(), 1);
    drop((svc, store));
    let size = std::fs::metadata(tmp.path().join("s").join(STORE_FILE_NAME))
        .unwrap()
        .len();
    assert!(size < 4 << 20, "database is {size} bytes");
}

#[tokio::test]
async fn two_services_on_one_store_write_concurrently() {
    let (store, _tmp) = store();
    let (s1, s2) = (store.blob_service(), store.blob_service());
    let a = pseudo_random(10 << 20, 21);
    let b = pseudo_random(10 << 20, 22);
    let (da, db) = tokio::join!(write_blob(&s1, &a, 64 * 1024), write_blob(&s2, &b, 100_000));
    check_blob(&s2, &da, &a).await;
    check_blob(&s1, &db, &b).await;
}

/// Many writers at once go through the group commit (several blobs per
/// transaction); every blob, small or spanning several write batches, is
/// there after the database is closed and reopened, and a blob written
/// twice at once is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_all_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let mut contents: Vec<Vec<u8>> = (0..200u64)
        .map(|i| pseudo_random(1 + (i as usize * 97) % 5000, i))
        .collect();
    // Larger than one write batch (8 MiB), so it is flushed midway.
    contents.push(pseudo_random(9 << 20, 1000));
    contents.push(b"the same twice".to_vec());
    contents.push(b"the same twice".to_vec());
    let digests = {
        let store = RedbStore::open_dir(&path).unwrap();
        let svc = Arc::new(store.blob_service());
        let mut tasks = tokio::task::JoinSet::new();
        for (i, data) in contents.iter().cloned().enumerate() {
            let svc = svc.clone();
            tasks.spawn(async move { (i, write_blob(svc.as_ref(), &data, 4096).await) });
        }
        let mut digests = vec![None; contents.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, d) = joined.unwrap();
            digests[i] = Some(d);
        }
        digests
    };
    let store = RedbStore::open_dir(&path).unwrap();
    let svc = store.blob_service();
    for (data, digest) in contents.iter().zip(&digests) {
        check_blob(&svc, digest.as_ref().unwrap(), data).await;
    }
    assert_eq!(digests[201], digests[202]);
}

#[tokio::test]
async fn corrupt_chunk_is_an_integrity_error() {
    let (store, _tmp) = store();
    let svc = store.blob_service();
    let data = pseudo_random(1 << 20, 3);
    let blob = write_blob(&svc, &data, 1 << 16).await;
    let list = svc.chunks(&blob).await.unwrap().unwrap();
    let victim = list[1].digest;
    // Same length, one byte flipped, stored raw.
    let mut bad = svc.read_chunk(&victim).await.unwrap().unwrap().to_vec();
    bad[10] ^= 0xff;
    let mut record = vec![CHUNK_RAW];
    record.extend_from_slice(&bad);
    svc.danger_overwrite_chunk_record(&victim, record)
        .await
        .unwrap();
    let err = svc.read_chunk(&victim).await.unwrap_err();
    assert!(
        matches!(err, Error::Integrity { what: "chunk", expected, .. } if expected == victim),
        "{err}"
    );
    // open_read fails on that chunk rather than returning the bad bytes.
    let mut r = svc.open_read(&blob).await.unwrap().unwrap();
    let mut out = Vec::new();
    let e = tokio::io::AsyncReadExt::read_to_end(&mut r, &mut out)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(out, data[..list[0].size as usize]);
    // Garbage that is not even a record is an error too, never bytes.
    svc.danger_overwrite_chunk_record(&victim, b"\x01garbage".to_vec())
        .await
        .unwrap();
    assert!(svc.read_chunk(&victim).await.is_err());
    // In a batch (one transaction): the bad chunk fails alone, an absent
    // one is `None`, the others come out whole and in order.
    let absent = B3Digest::of(b"not stored");
    let asked = [list[0].digest, victim, absent, list[2].digest];
    let got = svc.read_chunk_batch(&asked).await;
    assert_eq!(got.len(), 4);
    assert_eq!(
        got[0].as_ref().unwrap().as_deref(),
        Some(&data[..list[0].size as usize])
    );
    assert!(got[1].is_err());
    assert_eq!(got[2].as_ref().unwrap(), &None);
    let start = (list[0].size + list[1].size) as usize;
    assert_eq!(
        got[3].as_ref().unwrap().as_deref(),
        Some(&data[start..start + list[2].size as usize])
    );
    // As kept, for a server (one transaction too): the record that claims
    // to be a zstd frame is handed out as such, unchecked, and fails its
    // receiver's check; the others are the chunks.
    let kept = svc.read_chunk_stored_batch(&asked).await;
    assert_eq!(kept.len(), 4);
    let verified = |i: usize| {
        kept[i]
            .as_ref()
            .unwrap()
            .clone()
            .unwrap()
            .into_verified(&asked[i], 1 << 20)
    };
    assert_eq!(verified(0).unwrap(), &data[..list[0].size as usize]);
    assert!(verified(1).is_err());
    assert_eq!(kept[2].as_ref().unwrap(), &None);
    assert_eq!(
        verified(3).unwrap(),
        &data[start..start + list[2].size as usize]
    );
    // A record of no known form is an error here already, never bytes.
    svc.danger_overwrite_chunk_record(&victim, b"\x7fgarbage".to_vec())
        .await
        .unwrap();
    let kept = svc.read_chunk_stored_batch(&asked).await;
    assert!(kept[1].is_err(), "{:?}", kept[1]);
    assert!(svc.read_chunk_stored(&victim).await.is_err());
}

#[tokio::test]
async fn corrupt_directory_is_an_integrity_error() {
    let (store, _tmp) = store();
    let svc = store.directory_service();
    let leaf = file_dir(&["f"]);
    let digest = svc.put(leaf.clone()).await.unwrap();
    let other = file_dir(&["g"]);
    svc.danger_overwrite_directory_record(&digest, other.encode().to_vec())
        .await
        .unwrap();
    let err = svc.get(&digest).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Integrity {
                what: "directory",
                ..
            }
        ),
        "{err}"
    );
    let mut s = svc.get_recursive(&digest);
    assert!(futures::StreamExt::next(&mut s).await.unwrap().is_err());
}

#[tokio::test]
async fn recursive_get_over_a_partial_closure_fails_and_early_drop_is_fine() {
    use futures::StreamExt;
    use storefs_castore::PartialDirectoryStore;
    let (store, _tmp) = store();
    let svc = store.directory_service();
    let t = diamond();
    // Only the root and `a`: `b`, `c`, `d` are missing.
    svc.insert_directories(vec![t.root.clone(), t.a.clone()])
        .await
        .unwrap();
    let got: Vec<_> = svc.get_recursive(&t.root.digest()).collect().await;
    let last = got.last().unwrap();
    assert!(
        matches!(last, Err(Error::Storage { context, .. }) if context.contains("missing")),
        "{last:?}"
    );
    // A full closure, dropped after its first item.
    let mut p = svc.put_multiple_start();
    for d in [&t.c, &t.d, &t.b] {
        p.put(d.clone()).await.unwrap();
    }
    p.put(t.root.clone()).await.unwrap();
    p.close().await.unwrap();
    let mut s = svc.get_recursive(&t.root.digest());
    assert_eq!(s.next().await.unwrap().unwrap(), t.root);
    drop(s);
    let all: Vec<_> = svc.get_recursive(&t.root.digest()).collect().await;
    assert_eq!(all.len(), 5);
    assert!(all.iter().all(|r| r.is_ok()));
}

#[tokio::test]
async fn quota_evicts_least_recently_used_chunks() {
    use storefs_castore::ChunkStore;
    let tmp = tempfile::tempdir().unwrap();
    const SIZE: usize = 200 * 1024;
    let chunks: Vec<Vec<u8>> = (0..7).map(|i| pseudo_random(SIZE, 100 + i)).collect();
    let digests: Vec<B3Digest> = chunks.iter().map(|c| B3Digest::of(c)).collect();
    // The quota charges each chunk the redb pages its record takes (noise
    // does not compress) and its bookkeeping rows: measure one chunk's
    // charge in a store of its own, then allow five.
    let charge = {
        let other = tempfile::tempdir().unwrap();
        let store = RedbStore::open_dir(other.path()).unwrap();
        let svc = store.blob_service().with_quota(u64::MAX / 2);
        svc.insert_chunk(&digests[6], chunks[6].clone().into())
            .await
            .unwrap();
        svc.quota_tracked_bytes().await.unwrap()
    };
    assert!(charge > SIZE as u64, "{charge}");
    let quota = 5 * charge;
    {
        let store = RedbStore::open_dir(tmp.path()).unwrap();
        let svc = store.blob_service().with_quota(quota);
        for i in 0..5 {
            svc.insert_chunk(&digests[i], chunks[i].clone().into())
                .await
                .unwrap();
        }
        assert_eq!(svc.quota_tracked_bytes().await.unwrap(), quota);
        // Use chunk 0, so chunk 1 is now the least recently used.
        assert!(svc.read_chunk(&digests[0]).await.unwrap().is_some());
        svc.insert_chunk(&digests[5], chunks[5].clone().into())
            .await
            .unwrap();
        assert_eq!(svc.read_chunk(&digests[1]).await.unwrap(), None);
        assert!(svc.read_chunk(&digests[0]).await.unwrap().is_some());
        assert_eq!(svc.quota_tracked_bytes().await.unwrap(), quota);
    }
    // The bookkeeping survives a reopen.
    let store = RedbStore::open_dir(tmp.path()).unwrap();
    let svc = store.blob_service().with_quota(quota);
    assert_eq!(svc.quota_tracked_bytes().await.unwrap(), quota);
    svc.insert_chunk(&digests[6], chunks[6].clone().into())
        .await
        .unwrap();
    // Chunk 2 was the oldest use left (0 was read after it).
    assert_eq!(svc.read_chunk(&digests[2]).await.unwrap(), None);
    for i in [0, 3, 4, 5, 6] {
        assert_eq!(
            svc.read_chunk(&digests[i]).await.unwrap().as_deref(),
            Some(&chunks[i][..]),
            "chunk {i}"
        );
    }
    assert_eq!(svc.chunk_count().await.unwrap(), 5);
}

#[tokio::test]
async fn a_cache_with_a_quota_stays_within_it_and_refetches() {
    use storefs_castore::{CachedBlobService, MemoryBlobService};
    let tmp = tempfile::tempdir().unwrap();
    let quota = 1 << 20;
    let near = RedbStore::open_dir(tmp.path())
        .unwrap()
        .blob_service()
        .with_quota(quota);
    let far = MemoryBlobService::new();
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| pseudo_random(600_000, 200 + i)).collect();
    let mut digests = Vec::new();
    for b in &blobs {
        digests.push(write_blob(&far, b, 1 << 16).await);
    }
    let cache = CachedBlobService::new(Arc::new(near.clone()), Arc::new(far));
    for _round in 0..2 {
        for (d, b) in digests.iter().zip(&blobs) {
            check_blob(&cache, d, b).await;
            // Fills are written in the background: wait for them, or
            // the figure may be read before the first one commits.
            cache.flush().await;
            let tracked = near.quota_tracked_bytes().await.unwrap();
            assert!(tracked <= quota, "{tracked} > {quota}");
            assert!(tracked > 0);
        }
    }
}
