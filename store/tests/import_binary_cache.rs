//! `import_from_binary_cache` against caches written by a real Nix
//! (`nix copy --to file://…`), read from disk and over HTTP
//! (`python3 -m http.server`), for every compression, signed and unsigned,
//! and refused when a key, a NAR or a narinfo is wrong.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use storefs_castore::{BlobService, MemoryBlobService};
use storefs_castore::{DirectoryService, MemoryDirectoryService};
use storefs_store::StoreDir;
use storefs_store::import::{
    ImportError, ImportOptions, ImportProgress, ImportReport, NoProgress, PathImportError,
    import_from_binary_cache,
};
use storefs_store::nixbase32;
use storefs_store::{MemoryPathInfoService, PathInfoService};
use storefs_testkit::nix::{Fixtures, HttpDir, NixStore};

/// One scratch Nix store with its fixtures and caches, made once for all
/// tests of this file.
struct World {
    fx: Fixtures,
    public_key: String,
    other_public_key: String,
    /// Signed caches by compression.
    signed: Vec<(&'static str, PathBuf)>,
    unsigned: PathBuf,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let fx = Fixtures::build_in(NixStore::fresh(
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            "import-world",
        ));
        let nix = &fx.store;
        let (sk, public_key) = nix.keys("test-1");
        let (_, other_public_key) = nix.keys("other-1");
        let roots = [fx.withrefs.as_str(), fx.single.as_str()];
        let signed = ["none", "xz", "zstd", "bzip2"]
            .into_iter()
            .map(|c| (c, nix.copy_to_cache(c, c, Some(&sk), &roots)))
            .collect();
        let unsigned = nix.copy_to_cache("unsigned", "xz", None, &roots);
        World {
            fx,
            public_key,
            other_public_key,
            signed,
            unsigned,
        }
    })
}

struct Services {
    blob: Arc<dyn BlobService>,
    directory: Arc<dyn DirectoryService>,
    pathinfo: Arc<dyn PathInfoService>,
}

impl Services {
    fn new() -> Self {
        Self {
            blob: Arc::new(MemoryBlobService::default()),
            directory: Arc::new(MemoryDirectoryService::default()),
            pathinfo: Arc::new(MemoryPathInfoService::default()),
        }
    }

    fn import(&self) -> storefs_store::Services {
        storefs_store::Services::new(
            self.blob.clone(),
            self.directory.clone(),
            self.pathinfo.clone(),
        )
    }

    async fn recorded(&self) -> BTreeSet<String> {
        use futures::StreamExt;
        let sd = StoreDir::default();
        self.pathinfo
            .list()
            .map(|i| i.unwrap().store_path.to_absolute(&sd))
            .collect()
            .await
    }
}

fn options(keys: &[&str], check_sigs: bool) -> ImportOptions {
    ImportOptions {
        trusted_keys: keys.iter().map(|k| k.to_string()).collect(),
        check_sigs,
        store_dir: StoreDir::default(),
        concurrency: 4,
    }
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

fn all_paths(w: &World) -> BTreeSet<String> {
    let mut all: BTreeSet<String> = w.fx.store.requisites(&w.fx.withrefs).into_iter().collect();
    all.insert(w.fx.single.clone());
    all
}

fn failed_paths(r: &ImportReport) -> BTreeSet<String> {
    r.failed.iter().map(|f| f.path.clone()).collect()
}

/// Every recorded path equals what Nix has: NAR hash and size, references,
/// and the NAR rendered from castore is byte for byte Nix's.
async fn check_against_nix(w: &World, s: &Services) {
    let sd = StoreDir::default();
    for path in all_paths(w) {
        let sp = sd.parse_path(&path).unwrap();
        let info = s
            .pathinfo
            .get(*sp.digest())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{path} not recorded"));
        assert_eq!(info.store_path, sp);
        assert_eq!(
            format!("sha256:{}", nixbase32::encode(&info.nar_sha256)),
            w.fx.store.hash(&path),
            "{path}"
        );
        assert_eq!(info.nar_size, w.fx.store.size(&path), "{path}");
        let nix_refs: BTreeSet<String> =
            String::from_utf8(storefs_testkit::ok(w.fx.store.nix_store().args([
                "-q",
                "--references",
                &path,
            ])))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let our_refs: BTreeSet<String> =
            info.references.iter().map(|r| r.to_absolute(&sd)).collect();
        assert_eq!(our_refs, nix_refs, "{path}");

        let mut nar = Vec::new();
        storefs_store::nar::write_nar(&mut nar, &info.node, s.blob.as_ref(), s.directory.as_ref())
            .await
            .unwrap();
        assert!(
            nar == w.fx.store.dump(&path),
            "NAR of {path} differs from Nix's"
        );
    }
}

#[derive(Default)]
struct CountProgress {
    planned: Mutex<(u64, u64)>,
    bytes: std::sync::atomic::AtomicU64,
    done: Mutex<Vec<(String, bool)>>,
}

impl ImportProgress for CountProgress {
    fn planned(&self, paths: u64, nar_bytes: u64) {
        *self.planned.lock().unwrap() = (paths, nar_bytes);
    }
    fn nar_bytes(&self, n: u64) {
        self.bytes
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    fn path_done(&self, path: &storefs_store::StorePath, error: Option<&str>) {
        self.done
            .lock()
            .unwrap()
            .push((path.to_string(), error.is_none()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_every_compression_signed() {
    let w = world();
    let roots = vec![w.fx.withrefs.clone(), w.fx.single.clone()];
    for (compression, cache) in &w.signed {
        let s = Services::new();
        let progress = Arc::new(CountProgress::default());
        let report = import_from_binary_cache(
            &file_url(cache),
            &roots,
            options(&[&w.public_key], true),
            s.import(),
            progress.clone(),
        )
        .await
        .unwrap();
        assert!(report.is_success(), "{compression}: {:?}", report.failed);
        let imported: BTreeSet<String> = report
            .imported
            .iter()
            .map(|p| p.to_absolute(&StoreDir::default()))
            .collect();
        assert_eq!(imported, all_paths(w), "{compression}");
        // References come before their referrers.
        let pos = |p: &str| {
            report
                .imported
                .iter()
                .position(|i| i.to_absolute(&StoreDir::default()) == p)
                .unwrap()
        };
        assert!(pos(&w.fx.tree) < pos(&w.fx.withrefs));
        assert!(pos(&w.fx.hello) < pos(&w.fx.withrefs));
        check_against_nix(w, &s).await;

        let total: u64 = all_paths(w).iter().map(|p| w.fx.store.size(p)).sum();
        assert_eq!(*progress.planned.lock().unwrap(), (5, total));
        assert_eq!(
            progress.bytes.load(std::sync::atomic::Ordering::Relaxed),
            total
        );
        assert_eq!(progress.done.lock().unwrap().len(), 5);

        // The signatures Nix made are kept.
        let sp = StoreDir::default().parse_path(&w.fx.withrefs).unwrap();
        let info = s.pathinfo.get(*sp.digest()).await.unwrap().unwrap();
        assert_eq!(info.signatures.len(), 1);
        assert_eq!(info.signatures[0].name, "test-1");

        // Importing again copies nothing.
        let again = import_from_binary_cache(
            &file_url(cache),
            &roots,
            options(&[&w.public_key], true),
            s.import(),
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
        assert!(again.imported.is_empty() && again.failed.is_empty());
        assert_eq!(
            again.already_present.len(),
            2,
            "only the roots are looked at"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_a_file_cache_when_no_path_is_given() {
    let w = world();
    let s = Services::new();
    let report = import_from_binary_cache(
        &file_url(&w.signed[1].1),
        &[],
        options(&[&w.public_key], true),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert!(report.is_success(), "{:?}", report.failed);
    assert_eq!(s.recorded().await, all_paths(w));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_needs_no_check_sigs() {
    let w = world();
    let roots = vec![w.fx.withrefs.clone(), w.fx.single.clone()];

    let s = Services::new();
    let report = import_from_binary_cache(
        &file_url(&w.unsigned),
        &roots,
        options(&[&w.public_key], true),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    // An untrusted narinfo's references are not followed: only the roots
    // are tried, and refused.
    assert!(report.imported.is_empty());
    assert_eq!(failed_paths(&report), roots.iter().cloned().collect());
    let untrusted = report
        .failed
        .iter()
        .find(|f| f.path == w.fx.single)
        .unwrap();
    assert!(matches!(untrusted.error, PathImportError::Untrusted { .. }));
    assert!(
        untrusted.error.to_string().contains("no valid signature"),
        "{}",
        untrusted.error
    );
    assert!(s.recorded().await.is_empty());

    let report = import_from_binary_cache(
        &file_url(&w.unsigned),
        &roots,
        options(&[], false),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert!(report.is_success(), "{:?}", report.failed);
    check_against_nix(w, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_refused() {
    let w = world();
    let s = Services::new();
    let report = import_from_binary_cache(
        &file_url(&w.signed[0].1),
        std::slice::from_ref(&w.fx.withrefs),
        options(&[&w.other_public_key], true),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert!(report.imported.is_empty());
    assert_eq!(
        failed_paths(&report),
        BTreeSet::from([w.fx.withrefs.clone()])
    );
    for f in &report.failed {
        assert!(
            matches!(&f.error, PathImportError::Untrusted { signers } if signers == "test-1"),
            "{}: {}",
            f.path,
            f.error
        );
    }
    assert!(s.recorded().await.is_empty());

    let bad = import_from_binary_cache(
        &file_url(&w.signed[0].1),
        &[],
        options(&["not-a-key"], true),
        s.import(),
        Arc::new(NoProgress),
    )
    .await;
    assert!(matches!(bad, Err(ImportError::BadKey { .. })), "{bad:?}");
}

/// Copy a cache directory so a test may spoil it.
fn copy_cache(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn narinfo_path(cache: &Path, store_path: &str) -> PathBuf {
    let hash = &store_path["/nix/store/".len().."/nix/store/".len() + 32];
    cache.join(format!("{hash}.narinfo"))
}

fn narinfo_field(narinfo: &str, key: &str) -> String {
    narinfo
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_nar_is_refused_and_spares_the_rest() {
    let w = world();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    copy_cache(&w.signed[0].1, &cache);

    // Flip one byte of the text file's NAR (compression none): FileHash.
    let ni_path = narinfo_path(&cache, &w.fx.hello);
    let narinfo = std::fs::read_to_string(&ni_path).unwrap();
    let nar = cache.join(narinfo_field(&narinfo, "URL"));
    let mut bytes = std::fs::read(&nar).unwrap();
    // Change the contents, not the framing: the NAR stays well-formed.
    let at = bytes
        .windows(4)
        .position(|w| w == b"Hell")
        .expect("text in NAR");
    bytes[at] = b'i';
    std::fs::write(&nar, &bytes).unwrap();

    let s = Services::new();
    let report = import_from_binary_cache(
        &file_url(&cache),
        std::slice::from_ref(&w.fx.withrefs),
        options(&[&w.public_key], true),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    let failed: Vec<_> = report
        .failed
        .iter()
        .map(|f| (f.path.as_str(), &f.error))
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().any(|(p, e)| *p == w.fx.hello
        && matches!(e, PathImportError::FileHash { .. })
        && e.to_string().contains("FileHash")));
    assert!(failed.iter().any(|(p, e)| *p == w.fx.withrefs
        && matches!(e, PathImportError::ReferenceFailed(r) if *r == w.fx.hello)));
    // The tree and `small` do not depend on the text: they are in.
    assert_eq!(
        s.recorded().await,
        BTreeSet::from([w.fx.tree.clone(), w.fx.small.clone()])
    );

    // Without FileHash and FileSize (not covered by the signature), the
    // NAR hash still catches it.
    let stripped: String = narinfo
        .lines()
        .filter(|l| !l.starts_with("FileHash:") && !l.starts_with("FileSize:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&ni_path, stripped).unwrap();
    let report = import_from_binary_cache(
        &file_url(&cache),
        std::slice::from_ref(&w.fx.hello),
        options(&[&w.public_key], true),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(report.failed.len(), 1);
    assert!(
        matches!(report.failed[0].error, PathImportError::NarHash { .. }),
        "{}",
        report.failed[0].error
    );
    assert_eq!(
        s.recorded().await,
        BTreeSet::from([w.fx.tree.clone(), w.fx.small.clone()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_narinfo_is_refused() {
    let w = world();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    copy_cache(&w.signed[2].1, &cache);

    // Claim another NAR size: the signature no longer matches.
    let ni_path = narinfo_path(&cache, &w.fx.single);
    let narinfo = std::fs::read_to_string(&ni_path).unwrap();
    let size = narinfo_field(&narinfo, "NarSize");
    let bigger = (size.parse::<u64>().unwrap() + 8).to_string();
    std::fs::write(
        &ni_path,
        narinfo.replace(&format!("NarSize: {size}"), &format!("NarSize: {bigger}")),
    )
    .unwrap();

    let s = Services::new();
    let roots = [w.fx.single.clone()];
    let report = import_from_binary_cache(
        &file_url(&cache),
        &roots,
        options(&[&w.public_key], true),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(report.failed.len(), 1);
    assert!(matches!(
        report.failed[0].error,
        PathImportError::Untrusted { .. }
    ));
    // Unchecked signatures: the NAR itself gives the lie.
    let report = import_from_binary_cache(
        &file_url(&cache),
        &roots,
        options(&[], false),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(report.failed.len(), 1);
    assert!(
        matches!(report.failed[0].error, PathImportError::NarSize { .. }),
        "{}",
        report.failed[0].error
    );
    assert!(s.recorded().await.is_empty());

    // A narinfo that does not parse.
    std::fs::write(&ni_path, "StorePath: nonsense\n").unwrap();
    let report = import_from_binary_cache(
        &file_url(&cache),
        &roots,
        options(&[], false),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert!(
        matches!(report.failed[0].error, PathImportError::BadNarInfo { .. }),
        "{}",
        report.failed[0].error
    );
    assert!(s.recorded().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_over_http() {
    let w = world();
    // NAR URLs with a query, as harmonia writes them; a plain file server
    // ignores the query.
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    copy_cache(&w.signed[1].1, &cache);
    for entry in std::fs::read_dir(&cache).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "narinfo") {
            let text = std::fs::read_to_string(&p).unwrap();
            let url = narinfo_field(&text, "URL");
            std::fs::write(&p, text.replace(&url, &format!("{url}?hash=x"))).unwrap();
        }
    }
    let server = HttpDir::start(&cache);
    let s = Services::new();
    let report = import_from_binary_cache(
        &server.url(),
        &[w.fx.withrefs.clone(), w.fx.single.clone()],
        options(&[&w.public_key], true),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert!(report.is_success(), "{:?}", report.failed);
    check_against_nix(w, &s).await;

    // HTTP cannot be listed.
    let err = import_from_binary_cache(
        &server.url(),
        &[],
        options(&[&w.public_key], true),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("name the store paths"), "{err}");

    // A path the cache does not have.
    let missing = "/nix/store/00000000000000000000000000000000-missing".to_owned();
    let report = import_from_binary_cache(
        &server.url(),
        std::slice::from_ref(&missing),
        options(&[&w.public_key], true),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert!(matches!(
        report.failed[0].error,
        PathImportError::NotInCache(_)
    ));
    drop(server);

    // A server that is gone.
    let err = import_from_binary_cache(
        &format!("http://127.0.0.1:{}", storefs_testkit::free_port()),
        std::slice::from_ref(&w.fx.single),
        options(&[&w.public_key], true),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn another_store_dir_is_refused() {
    let w = world();
    let s = Services::new();
    let mut opts = options(&[&w.public_key], true);
    opts.store_dir = StoreDir::new("/gnu/store").unwrap();
    let err = import_from_binary_cache(
        &file_url(&w.signed[0].1),
        &[],
        opts,
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ImportError::StoreDirMismatch { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_reference_fails_only_its_referrers() {
    let w = world();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    copy_cache(&w.signed[3].1, &cache);
    std::fs::remove_file(narinfo_path(&cache, &w.fx.hello)).unwrap();

    let s = Services::new();
    let report = import_from_binary_cache(
        &file_url(&cache),
        &[w.fx.withrefs.clone(), w.fx.single.clone()],
        options(&[&w.public_key], true),
        s.import(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    let failed: Vec<_> = report
        .failed
        .iter()
        .map(|f| (f.path.as_str(), f.error.to_string()))
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        report
            .failed
            .iter()
            .any(|f| f.path == w.fx.hello && matches!(f.error, PathImportError::NotInCache(_)))
    );
    assert!(report.failed.iter().any(|f| f.path == w.fx.withrefs
        && matches!(&f.error, PathImportError::ReferenceFailed(r) if *r == w.fx.hello)));
    assert_eq!(
        s.recorded().await,
        BTreeSet::from([w.fx.tree.clone(), w.fx.small.clone(), w.fx.single.clone()])
    );
}
