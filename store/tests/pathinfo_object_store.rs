//! The path info suite against [`ObjectStorePathInfoService`] (object_store's
//! in-memory store and a local directory), and what only it shows: records
//! checked by key, referrer entries checked against their path infos.

use std::sync::Arc;

use object_store::path::Path;
use prost::Message;
use storefs_castore::objectstore::Bucket;
use storefs_store::nixbase32;
use storefs_store::{ObjectStorePathInfoService, PathInfoService};
use storefs_testkit::suites::path_info::{conformance, info};

fn service() -> (ObjectStorePathInfoService, Bucket) {
    let bucket = Bucket::new(
        Arc::new(object_store::memory::InMemory::new()),
        Path::from("pre"),
    );
    (ObjectStorePathInfoService::new(bucket.clone()), bucket)
}

#[tokio::test]
async fn passes_the_path_info_suite() {
    conformance(&service().0).await;
}

#[tokio::test]
async fn passes_the_path_info_suite_in_a_local_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = object_store::local::LocalFileSystem::new_with_prefix(tmp.path()).unwrap();
    let svc = ObjectStorePathInfoService::new(Bucket::new(Arc::new(fs), Path::default()));
    conformance(&svc).await;
}

#[tokio::test]
async fn a_corrupt_record_is_an_error_naming_its_key() {
    let (svc, bucket) = service();
    let a = info("a", &[], false);
    svc.put(a.clone()).await.unwrap();
    let key = Path::from(format!(
        "pre/pathinfo/{}",
        nixbase32::encode(a.store_path.digest())
    ));
    bucket
        .put(&key, bytes::Bytes::from_static(b"\xff\xffjunk"))
        .await
        .unwrap();
    let err = svc
        .get(*a.store_path.digest())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(key.as_ref()), "{err}");
    // A record filed under another path's hash is refused too.
    let b = info("b", &[], false);
    bucket
        .put(&key, b.to_proto().encode_to_vec().into())
        .await
        .unwrap();
    let err = svc
        .get(*a.store_path.digest())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds"), "{err}");
}

#[tokio::test]
async fn a_referrer_entry_without_its_path_info_is_not_answered() {
    let (svc, bucket) = service();
    let a = info("a", &[], false);
    let b = info("b", &[&a], false);
    svc.put(a.clone()).await.unwrap();
    // As if a put of b stopped after its referrer entry.
    let entry = Path::from(format!(
        "pre/referrers/{}/{}",
        nixbase32::encode(a.store_path.digest()),
        b.store_path.base_name()
    ));
    bucket.put(&entry, bytes::Bytes::new()).await.unwrap();
    assert_eq!(svc.referrers(*a.store_path.digest()).await.unwrap(), vec![]);
    svc.put(b.clone()).await.unwrap();
    assert_eq!(
        svc.referrers(*a.store_path.digest()).await.unwrap(),
        vec![b.store_path.clone()]
    );
}
