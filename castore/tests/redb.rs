//! The conformance suites against the redb backends, plus what only a disk
//! store shows: reopening, dedup by row count, corruption on disk.

mod common;

use std::sync::Arc;

use storefs_castore::{
    BlobService, CHUNK_RAW, DirectoryService, Error, RedbStore, STORE_FILE_NAME,
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
    let data = common::noise(2 * 1024 * 1024 + 7, 77);
    let small = b"a small file".to_vec();
    let t = common::diamond();
    let (blob, small_blob) = {
        let store = RedbStore::open_dir(&path).unwrap();
        let blobs = store.blob_service();
        let b = common::write_blob(&blobs, &data, 12_345).await;
        let s = common::write_blob(&blobs, &small, 3).await;
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
    common::check_blob(&blobs, &blob, &data).await;
    common::check_blob(&blobs, &small_blob, &small).await;
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
    a.extend_from_slice(&common::noise(100_000, 5));
    let mut b = zeroes.clone();
    b.extend_from_slice(&common::noise(100_000, 6));
    let da = common::write_blob(&svc, &a, 30_000).await;
    let before = svc.chunk_count().await.unwrap();
    let db = common::write_blob(&svc, &b, 30_000).await;
    let la = svc.chunks(&da).await.unwrap().unwrap();
    let lb = svc.chunks(&db).await.unwrap().unwrap();
    assert_eq!(la[0], lb[0]);
    assert_eq!(
        svc.chunk_count().await.unwrap() - before,
        lb.len() as u64 - 1
    );
    // Writing the same blob again adds nothing.
    common::write_blob(&svc, &b, 1 << 20).await;
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
    let d = common::write_blob(&svc, &vec![0u8; 8 << 20], 1 << 20).await;
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
    let a = common::noise(10 << 20, 21);
    let b = common::noise(10 << 20, 22);
    let (da, db) = tokio::join!(
        common::write_blob(&s1, &a, 64 * 1024),
        common::write_blob(&s2, &b, 100_000)
    );
    common::check_blob(&s2, &da, &a).await;
    common::check_blob(&s1, &db, &b).await;
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
        .map(|i| common::noise(1 + (i as usize * 97) % 5000, i))
        .collect();
    // Larger than one write batch (8 MiB), so it is flushed midway.
    contents.push(common::noise(9 << 20, 1000));
    contents.push(b"the same twice".to_vec());
    contents.push(b"the same twice".to_vec());
    let digests = {
        let store = RedbStore::open_dir(&path).unwrap();
        let svc = Arc::new(store.blob_service());
        let mut tasks = tokio::task::JoinSet::new();
        for (i, data) in contents.iter().cloned().enumerate() {
            let svc = svc.clone();
            tasks.spawn(async move { (i, common::write_blob(svc.as_ref(), &data, 4096).await) });
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
        common::check_blob(&svc, digest.as_ref().unwrap(), data).await;
    }
    assert_eq!(digests[201], digests[202]);
}

#[tokio::test]
async fn corrupt_chunk_is_an_integrity_error() {
    let (store, _tmp) = store();
    let svc = store.blob_service();
    let data = common::noise(1 << 20, 3);
    let blob = common::write_blob(&svc, &data, 1 << 16).await;
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
}

#[tokio::test]
async fn corrupt_directory_is_an_integrity_error() {
    let (store, _tmp) = store();
    let svc = store.directory_service();
    let leaf = common::file_dir(&["f"]);
    let digest = svc.put(leaf.clone()).await.unwrap();
    let other = common::file_dir(&["g"]);
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
    let t = common::diamond();
    // Only the root and `a`: `b`, `c`, `d` are missing.
    svc.insert_directories(vec![t.root.clone(), t.a.clone()])
        .await
        .unwrap();
    let got: Vec<_> = svc.get_recursive(&t.root.digest()).collect().await;
    let last = got.last().unwrap();
    assert!(
        matches!(last, Err(Error::Storage(m)) if m.contains("missing")),
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
