//! One conformance suite for every PathInfoService backend: memory, redb in
//! a file of its own, redb sharing a database with other tables, and a
//! service that keeps only the trait's default `referrers` (scanning). The
//! suite itself lives in the test kit, which runs it over gRPC too.

use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use storefs_castore::{B3Digest, Result};
use storefs_store::PathInfo;
use storefs_store::StorePath;
use storefs_store::{MemoryPathInfoService, PathInfoService, RedbPathInfoService};
use storefs_testkit::suites::path_info::{conformance, info, names};

#[tokio::test]
async fn memory() {
    conformance(&MemoryPathInfoService::new()).await;
}

#[tokio::test]
async fn redb_file_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let svc = RedbPathInfoService::open(&path).await.unwrap();
        conformance(&svc).await;
    }
    let svc = RedbPathInfoService::open(&path).await.unwrap();
    let all: Vec<PathInfo> = svc.list().try_collect().await.unwrap();
    assert_eq!(all.len(), 4);
    let a = info("a", &[], false);
    assert_eq!(
        svc.referrers(*a.store_path.digest()).await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn redb_shares_a_database_with_other_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("shared.redb")).unwrap());
    // Another service's table in the same file.
    let other: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("castore.other");
    let txn = db.begin_write().unwrap();
    txn.open_table(other).unwrap().insert("k", "v").unwrap();
    txn.commit().unwrap();

    let svc = RedbPathInfoService::new(db.clone()).await.unwrap();
    conformance(&svc).await;
    let txn = db.begin_read().unwrap();
    assert_eq!(
        txn.open_table(other)
            .unwrap()
            .get("k")
            .unwrap()
            .unwrap()
            .value(),
        "v"
    );
}

#[tokio::test]
async fn redb_lives_beside_castore_in_one_file() {
    use storefs_castore::BlobService;
    let dir = tempfile::tempdir().unwrap();
    let store = storefs_castore::RedbStore::open_dir(dir.path()).unwrap();
    let svc = RedbPathInfoService::from_store(&store).await.unwrap();
    conformance(&svc).await;
    // castore's services on the same handle still work beside ours.
    let blobs = store.blob_service();
    assert!(!blobs.has(&B3Digest::of(b"nothing")).await.unwrap());
    drop((svc, blobs, store));
    // Reopened through castore's handle, the path infos are there.
    let store = storefs_castore::RedbStore::open_dir(dir.path()).unwrap();
    let svc = RedbPathInfoService::from_store(&store).await.unwrap();
    assert_eq!(svc.list().try_collect::<Vec<_>>().await.unwrap().len(), 4);
}

#[tokio::test]
async fn redb_list_pages_through_many_records() {
    let dir = tempfile::tempdir().unwrap();
    let svc = RedbPathInfoService::open(dir.path().join("s.redb"))
        .await
        .unwrap();
    let mut want = Vec::new();
    for n in 0..600 {
        let i = info(&format!("p{n}"), &[], false);
        svc.put(i.clone()).await.unwrap();
        want.push(i.store_path);
    }
    let mut got: Vec<StorePath> = svc
        .list()
        .map_ok(|i| i.store_path)
        .try_collect()
        .await
        .unwrap();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn redb_refuses_corrupt_records_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("c.redb")).unwrap());
    let svc = RedbPathInfoService::new(db.clone()).await.unwrap();
    let a = info("a", &[], false);
    let b = info("b", &[&a], false);
    svc.put(a.clone()).await.unwrap();
    svc.put(b.clone()).await.unwrap();
    assert_eq!(
        names(&svc.referrers(*a.store_path.digest()).await.unwrap()),
        ["b"]
    );
    // File b's record under a's digest, and garbage under b's.
    let table: redb::TableDefinition<[u8; 20], &[u8]> =
        redb::TableDefinition::new("store.pathinfo.v1");
    let txn = db.begin_write().unwrap();
    {
        use prost::Message;
        let mut t = txn.open_table(table).unwrap();
        t.insert(
            *a.store_path.digest(),
            b.to_proto().encode_to_vec().as_slice(),
        )
        .unwrap();
        t.insert(*b.store_path.digest(), &b"\xff\xff"[..]).unwrap();
    }
    txn.commit().unwrap();
    for d in [a.store_path.digest(), b.store_path.digest()] {
        let err = svc.get(*d).await.unwrap_err();
        assert!(
            matches!(err, storefs_castore::Error::Storage { ref context, .. } if context.contains("corrupt record")),
            "{err}"
        );
    }
    assert!(svc.list().try_collect::<Vec<_>>().await.is_err());
    // A put over a corrupt record still cleans the reference index.
    let c = info("c", &[], false);
    let mut b2 = info("b", &[&c], false);
    b2.store_path = b.store_path.clone();
    svc.put(b2.clone()).await.unwrap();
    assert_eq!(svc.get(*b.store_path.digest()).await.unwrap(), Some(b2));
    assert_eq!(svc.referrers(*a.store_path.digest()).await.unwrap(), vec![]);
    assert_eq!(
        names(&svc.referrers(*c.store_path.digest()).await.unwrap()),
        ["b"]
    );
}

/// A service that keeps only the trait's default `referrers`.
struct ScanOnly(MemoryPathInfoService);

#[async_trait]
impl PathInfoService for ScanOnly {
    async fn get(&self, digest: [u8; 20]) -> Result<Option<PathInfo>> {
        self.0.get(digest).await
    }
    async fn put(&self, info: PathInfo) -> Result<PathInfo> {
        self.0.put(info).await
    }
    fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
        self.0.list()
    }
}

#[tokio::test]
async fn default_referrers_scans() {
    conformance(&ScanOnly(MemoryPathInfoService::new())).await;
}
