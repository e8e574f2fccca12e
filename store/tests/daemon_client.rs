//! Our client against our server: the handshake at both versions it
//! speaks, and an import that refuses a NAR whose hash does not match.

mod daemon_common;

use std::sync::Arc;

use daemon_common::*;
use storefs_castore::Node;
use storefs_store::daemon::protocol::ProtocolVersion;
use storefs_store::daemon::{
    ConnectionError, DaemonClient, DaemonConfig, DaemonServices, ImportError, ImportSelection,
    import_from_daemon,
};
use storefs_store::pathinfo::PathInfo;
use storefs_store::pathinfoservice::PathInfoService;
use storefs_store::store_path::StoreDir;
use tokio::io::AsyncWriteExt;

/// Services whose `hello.txt` really has its contents, and a second path
/// whose recorded NAR hash is wrong.
async fn services_with_contents() -> DaemonServices {
    let (services, pis) = memory_services().await;
    let mut w = services.blob_service.open_write().await;
    w.write_all(b"Hello World!").await.unwrap();
    let digest = w.close().await.unwrap();
    let mut bad = pis.get(*sp(HELLO).digest()).await.unwrap().unwrap();
    assert_eq!(
        bad.node,
        Node::File {
            digest,
            size: 12,
            executable: false
        }
    );
    bad.store_path = sp("55555555555555555555555555555555-bad");
    bad.ca = None;
    bad.nar_sha256[0] ^= 1;
    pis.put(bad).await.unwrap();
    // A third whose declared NAR size is larger than what it renders to.
    let mut long = pis.get(*sp(HELLO).digest()).await.unwrap().unwrap();
    long.store_path = sp("66666666666666666666666666666666-long");
    long.ca = None;
    long.nar_size = 168;
    pis.put(long).await.unwrap();
    services
}

#[tokio::test]
async fn client_handshakes_and_queries() {
    let services = services_with_contents().await;
    let d = TestDaemon::start(services, DaemonConfig::default()).await;
    for version in [ProtocolVersion::new(1, 34), ProtocolVersion::new(1, 38)] {
        let mut c = DaemonClient::connect_with_version(&d.socket, version)
            .await
            .unwrap();
        let n = c.negotiated();
        assert_eq!(n.version, version);
        assert!(n.daemon_version.as_deref().unwrap().starts_with("storefs"));
        let info = c.query_path_info(&full(HELLO)).await.unwrap().unwrap();
        assert_eq!(info.nar_hash, HELLO_NAR_SHA256);
        assert_eq!(info.nar_size, 128);
        assert!(c.query_path_info(&full(TEXT)).await.unwrap().is_none());
        assert!(!c.is_valid_path(&full(TEXT)).await.unwrap());
        // A daemon-side error leaves the connection usable.
        let err = c.query_path_info("/nix/store/garbage").await.unwrap_err();
        assert!(
            matches!(err, ConnectionError::Remote(ref m) if m.contains("garbage")),
            "{err}"
        );
        assert!(c.is_valid_path(&full(HELLO)).await.unwrap());
    }
    d.stop().await;
}

#[tokio::test]
async fn import_checks_nar_hash_and_size() {
    let source = services_with_contents().await;
    let d = TestDaemon::start(source, DaemonConfig::default()).await;
    let sd = StoreDir::default();
    let fresh = || {
        let pis = Arc::new(MapPathInfoService::new());
        let services = DaemonServices {
            blob_service: Arc::new(storefs_castore::MemoryBlobService::new()),
            directory_service: Arc::new(storefs_castore::MemoryDirectoryService::new()),
            path_info_service: pis.clone(),
        };
        (services, pis)
    };

    let (ok, ok_pis) = fresh();
    let stats = import_from_daemon(
        &d.socket,
        ImportSelection::Paths(vec![full(HELLO)]),
        &ok,
        &sd,
    )
    .await
    .unwrap();
    assert_eq!(stats.imported, vec![sp(HELLO)]);
    assert_eq!(stats.nar_bytes, 128);
    let got: PathInfo = ok_pis.get(*sp(HELLO).digest()).await.unwrap().unwrap();
    assert_eq!(hex::encode(got.nar_sha256), HELLO_NAR_SHA256);
    assert!(
        ok.blob_service
            .has(&storefs_castore::B3Digest::of(b"Hello World!"))
            .await
            .unwrap()
    );

    let (bad, bad_pis) = fresh();
    let err = import_from_daemon(
        &d.socket,
        ImportSelection::Paths(vec![full("55555555555555555555555555555555-bad")]),
        &bad,
        &sd,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ImportError::BadNar { ref reason, .. } if reason.contains("hash mismatch")),
        "{err}"
    );
    assert!(list_all(bad_pis.as_ref()).await.is_empty());

    // A declared size that is not the NAR's.
    let (bad, _) = fresh();
    let err = import_from_daemon(
        &d.socket,
        ImportSelection::Paths(vec![full("66666666666666666666666666666666-long")]),
        &bad,
        &sd,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ImportError::BadNar { .. }), "{err}");

    // baz refers to a path the daemon does not have.
    let (bad, _) = fresh();
    let err = import_from_daemon(
        &d.socket,
        ImportSelection::Paths(vec![full(BAZ)]),
        &bad,
        &sd,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ImportError::NotValid(ref p) if p == &full(TEXT)),
        "{err}"
    );
    d.stop().await;
}

/// Records what an import reports.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl storefs_store::import::ImportProgress for Recorder {
    fn planned(&self, paths: u64, nar_bytes: u64) {
        self.0
            .lock()
            .unwrap()
            .push(format!("planned {paths} {nar_bytes}"));
    }
    fn nar_bytes(&self, n: u64) {
        self.0.lock().unwrap().push(format!("bytes {n}"));
    }
    fn path_done(&self, path: &storefs_store::store_path::StorePath, error: Option<&str>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("done {path} {error:?}"));
    }
}

#[tokio::test]
async fn import_checks_signatures_when_asked() {
    use storefs_store::daemon::{DaemonImportOptions, import_from_daemon_with};
    use storefs_store::signing::{SecretKey, TrustedKeys};
    let source = services_with_contents().await;
    let sd = StoreDir::default();
    let key = SecretKey::from_seed("test-1", &[3; 32]).unwrap();
    // hello.txt's contents under a path that is not content-addressed.
    let signed = sp("77777777777777777777777777777777-signed");
    let mut info = source
        .path_info_service
        .get(*sp(HELLO).digest())
        .await
        .unwrap()
        .unwrap();
    info.store_path = signed.clone();
    info.ca = None;
    info.sign(&key, &sd).unwrap();
    source.path_info_service.put(info).await.unwrap();
    let d = TestDaemon::start(source, DaemonConfig::default()).await;
    let fresh = || DaemonServices {
        blob_service: Arc::new(storefs_castore::MemoryBlobService::new()),
        directory_service: Arc::new(storefs_castore::MemoryDirectoryService::new()),
        path_info_service: Arc::new(MapPathInfoService::new()),
    };
    let paths = ImportSelection::Paths(vec![full(HELLO), signed.to_absolute(&sd)]);

    // No trusted key: the content-addressed path would pass, the other not.
    let no_keys = DaemonImportOptions {
        store_dir: sd.clone(),
        check_sigs: true,
        trusted_keys: TrustedKeys::default(),
    };
    let into = fresh();
    let err = import_from_daemon_with(
        &d.socket,
        paths.clone(),
        &into,
        &no_keys,
        &Recorder::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ImportError::Untrusted(ref p) if p.contains("-signed")),
        "{err}"
    );
    assert!(
        list_all(into.path_info_service.as_ref()).await.is_empty(),
        "checked before copying"
    );

    // With the key, both come in, and progress is reported.
    let with_key = DaemonImportOptions {
        trusted_keys: TrustedKeys::new([key.to_public()]),
        ..no_keys
    };
    let rec = Recorder::default();
    let stats = import_from_daemon_with(&d.socket, paths, &into, &with_key, &rec)
        .await
        .unwrap();
    assert_eq!(stats.imported.len(), 2);
    let events = rec.0.lock().unwrap().clone();
    assert_eq!(events[0], "planned 2 256");
    assert_eq!(events.iter().filter(|e| e.starts_with("done")).count(), 2);
    assert_eq!(events.iter().filter(|e| *e == "bytes 128").count(), 2);
    d.stop().await;
}
