//! Our client against our server: the handshake at both versions it
//! speaks, and an import that refuses a NAR whose hash does not match.

mod daemon_common;

use std::sync::Arc;

use daemon_common::*;
use storefs_castore::Node;
use storefs_store::PathInfo;
use storefs_store::PathInfoService;
use storefs_store::Services;
use storefs_store::StoreDir;
use storefs_store::daemon::protocol::ProtocolVersion;
use storefs_store::daemon::{ConnectionError, DaemonClient, DaemonConfig, import_from_daemon};
use storefs_store::import::{ImportOptions, ImportReport, NoProgress, PathImportError};
use tokio::io::AsyncWriteExt;

/// Services whose `hello.txt` really has its contents, and a second path
/// whose recorded NAR hash is wrong.
async fn services_with_contents() -> Services {
    let (services, pis) = memory_services().await;
    let mut w = services.blob.open_write().await;
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

/// Import `path`'s closure from the daemon at `socket` into `into`,
/// signatures unchecked.
async fn import(socket: &std::path::Path, path: &str, into: &Services) -> ImportReport {
    let options = ImportOptions {
        check_sigs: false,
        ..ImportOptions::new(StoreDir::default())
    };
    import_from_daemon(
        socket,
        &[path.to_owned()],
        options,
        into.clone(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn import_checks_nar_hash_and_size() {
    let source = services_with_contents().await;
    let d = TestDaemon::start(source, DaemonConfig::default()).await;
    let fresh = || {
        let pis = Arc::new(MapPathInfoService::new());
        let services = Services::new(
            Arc::new(storefs_castore::MemoryBlobService::new()),
            Arc::new(storefs_castore::MemoryDirectoryService::new()),
            pis.clone(),
        );
        (services, pis)
    };

    let (ok, ok_pis) = fresh();
    let stats = import(&d.socket, &full(HELLO), &ok).await;
    assert!(stats.is_success(), "{:?}", stats.failed);
    assert_eq!(stats.imported, vec![sp(HELLO)]);
    assert_eq!(stats.nar_bytes, 128);
    let got: PathInfo = ok_pis.get(*sp(HELLO).digest()).await.unwrap().unwrap();
    assert_eq!(hex::encode(got.nar_sha256), HELLO_NAR_SHA256);
    assert!(
        ok.blob
            .has(&storefs_castore::B3Digest::of(b"Hello World!"))
            .await
            .unwrap()
    );

    let (bad, bad_pis) = fresh();
    let report = import(
        &d.socket,
        &full("55555555555555555555555555555555-bad"),
        &bad,
    )
    .await;
    assert_eq!(report.failed.len(), 1);
    let err = &report.failed[0].error;
    assert!(matches!(err, PathImportError::NarHash { .. }), "{err}");
    assert!(list_all(bad_pis.as_ref()).await.is_empty());

    // A declared size that is not the NAR's; the connection left out of
    // step is replaced, so the next import on the same source still works.
    let (bad, bad_pis) = fresh();
    let report = import(
        &d.socket,
        &full("66666666666666666666666666666666-long"),
        &bad,
    )
    .await;
    assert_eq!(report.failed.len(), 1);
    let err = &report.failed[0].error;
    assert!(matches!(err, PathImportError::NarSize { .. }), "{err}");
    assert!(list_all(bad_pis.as_ref()).await.is_empty());

    // baz refers to a path the daemon does not have: it fails, and so does
    // baz, which cannot be recorded without it.
    let (bad, bad_pis) = fresh();
    let report = import(&d.socket, &full(BAZ), &bad).await;
    assert!(
        report
            .failed
            .iter()
            .any(|f| f.path == full(TEXT) && matches!(f.error, PathImportError::NotValid)),
        "{:?}",
        report.failed
    );
    assert!(report.failed.iter().any(|f| f.path == full(BAZ)
        && matches!(&f.error, PathImportError::ReferenceFailed(r) if *r == full(TEXT))));
    // Its other references may come in; baz itself is not recorded.
    assert!(
        list_all(bad_pis.as_ref())
            .await
            .iter()
            .all(|i| i.store_path != sp(BAZ))
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
    fn path_done(&self, path: &storefs_store::StorePath, error: Option<&str>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("done {path} {error:?}"));
    }
}

#[tokio::test]
async fn import_checks_signatures_when_asked() {
    use storefs_store::SecretKey;
    let source = services_with_contents().await;
    let sd = StoreDir::default();
    let key = SecretKey::from_seed("test-1", &[3; 32]).unwrap();
    // hello.txt's contents under a path that is not content-addressed.
    let signed = sp("77777777777777777777777777777777-signed");
    let mut info = source
        .path_info
        .get(*sp(HELLO).digest())
        .await
        .unwrap()
        .unwrap();
    info.store_path = signed.clone();
    info.ca = None;
    info.sign(&key, &sd).unwrap();
    source.path_info.put(info).await.unwrap();
    let d = TestDaemon::start(source, DaemonConfig::default()).await;
    let paths = vec![full(HELLO), signed.to_absolute(&sd)];

    // No trusted key: the content-addressed path passes, the other not,
    // and is refused before its NAR is fetched.
    let no_keys = ImportOptions::new(sd.clone());
    let into = Services::memory();
    let report = import_from_daemon(
        &d.socket,
        &paths,
        no_keys.clone(),
        into.clone(),
        Arc::new(Recorder::default()),
    )
    .await
    .unwrap();
    assert_eq!(report.imported, vec![sp(HELLO)]);
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].path.contains("-signed"));
    assert!(
        matches!(&report.failed[0].error, PathImportError::Untrusted { signers } if signers == "test-1"),
        "{}",
        report.failed[0].error
    );
    assert_eq!(list_all(into.path_info.as_ref()).await.len(), 1);

    // With the key, both come in (one was present), and progress is
    // reported.
    let with_key = ImportOptions {
        trusted_keys: vec![key.to_public().to_string()],
        ..no_keys
    };
    let into = Services::memory();
    let rec = Arc::new(Recorder::default());
    let report = import_from_daemon(&d.socket, &paths, with_key, into, rec.clone())
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failed);
    assert_eq!(report.imported.len(), 2);
    let events = rec.0.lock().unwrap().clone();
    assert_eq!(events[0], "planned 2 256");
    assert_eq!(events.iter().filter(|e| e.starts_with("done")).count(), 2);
    let bytes: u64 = events
        .iter()
        .filter_map(|e| e.strip_prefix("bytes "))
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert_eq!(bytes, 256);
    d.stop().await;
}
