//! A real Nix (Debian's nix-bin, 2.8, protocol 1.34) against our daemon
//! socket, side by side with a real `nix-daemon` serving the same paths;
//! our client importing from the real daemon; `nix copy --to` our socket.

mod daemon_common;

use std::collections::BTreeMap;
use std::sync::Arc;

use daemon_common::*;
use storefs_store::PathInfoService;
use storefs_store::Services;
use storefs_store::StoreDir;
use storefs_store::daemon::{DaemonConfig, TrustPolicy, import_from_daemon};
use storefs_store::import::{ImportOptions, ImportReport, NoProgress};
use storefs_testkit::nix::{self, Fixtures, NixDaemon, sorted_lines};
use storefs_testkit::{ok_str, try_run};

fn empty_services() -> (Services, Arc<MapPathInfoService>) {
    let pis = Arc::new(MapPathInfoService::new());
    let services = Services::new(
        Arc::new(storefs_castore::MemoryBlobService::new()),
        Arc::new(storefs_castore::MemoryDirectoryService::new()),
        pis.clone(),
    );
    (services, pis)
}

/// Import the closures of `roots` (all: none) from the daemon at
/// `socket`, signatures unchecked; every path must come in.
async fn import_all(socket: &std::path::Path, roots: &[String], into: &Services) -> ImportReport {
    let options = ImportOptions {
        check_sigs: false,
        ..ImportOptions::new(StoreDir::default())
    };
    let report = import_from_daemon(socket, roots, options, into.clone(), Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(report.is_success(), "{:?}", report.failed);
    report
}

fn trusting() -> DaemonConfig {
    DaemonConfig {
        trust: TrustPolicy::Everyone,
        ..DaemonConfig::default()
    }
}

async fn our_nar(services: &Services, path: &str) -> Vec<u8> {
    let sp = StoreDir::default().parse_path(path).unwrap();
    let info = services
        .path_info
        .get(*sp.digest())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} not in our store"));
    let mut nar = Vec::new();
    storefs_store::nar::write_nar(
        &mut nar,
        &info.node,
        services.blob.as_ref(),
        services.directory.as_ref(),
    )
    .await
    .unwrap();
    nar
}

/// `nix path-info --json` output without what storefs does not record:
/// `registrationTime` (no time is kept) and `ultimate` (nothing is built
/// here).
fn path_info_json(url: &str, path: &str) -> BTreeMap<String, serde_json::Value> {
    let out = ok_str(nix::cmd("nix").args(["path-info", "--store", url, "-r", "--json", path]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut by_path = BTreeMap::new();
    for mut entry in v.as_array().unwrap().clone() {
        let obj = entry.as_object_mut().unwrap();
        obj.remove("registrationTime");
        obj.remove("ultimate");
        let p = obj["path"].as_str().unwrap().to_owned();
        by_path.insert(p, entry);
    }
    by_path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nix_answers_the_same_from_our_socket_as_from_nix_daemon() {
    let fx = Fixtures::build();
    let real = NixDaemon::start(&fx.store.root, fx.store.dir().join("real.sock"));
    let (services, _) = empty_services();

    // Our client imports the closures from the real daemon.
    let roots = vec![fx.withrefs.clone(), fx.tree.clone(), fx.single.clone()];
    let stats = import_all(&real.socket, &roots, &services).await;
    let mut imported: Vec<String> = stats
        .imported
        .iter()
        .map(|p| p.to_absolute(&StoreDir::default()))
        .collect();
    imported.sort();
    let mut expected = vec![
        fx.withrefs.clone(),
        fx.tree.clone(),
        fx.single.clone(),
        fx.hello.clone(),
        fx.small.clone(),
    ];
    expected.sort();
    assert_eq!(imported, expected);
    // References come before their referrers.
    let pos = |p: &str| {
        stats
            .imported
            .iter()
            .position(|s| s.to_absolute(&StoreDir::default()) == p)
            .unwrap()
    };
    assert!(pos(&fx.hello) < pos(&fx.withrefs));
    assert!(pos(&fx.small) < pos(&fx.withrefs));
    // A second import finds everything present.
    let again = import_all(&real.socket, &roots, &services).await;
    assert!(again.imported.is_empty());
    assert_eq!(again.already_present.len(), 3, "the roots, found present");
    // Everything: the rest (the derivations) comes in too.
    let all = import_all(&real.socket, &[], &services).await;
    assert_eq!(all.already_present.len(), 5);
    assert!(all.imported.iter().any(|p| p.name().ends_with(".drv")));

    // Our NAR of each path is byte for byte `nix-store --dump`.
    for p in &expected {
        assert_eq!(our_nar(&services, p).await, fx.store.dump(p), "NAR of {p}");
    }

    // Serve them, and ask both daemons the same questions with Nix 2.8.
    let ours = TestDaemon::start(services.clone(), trusting()).await;
    let ours_url = format!("unix://{}", ours.socket.display());
    let real_url = real.url();
    for p in &expected {
        for q in [
            "--references",
            "--requisites",
            "--referrers",
            "--hash",
            "--size",
            "--deriver",
        ] {
            let ask = |url: &str| {
                let (ok, out, err) =
                    try_run(nix::cmd("nix-store").args(["--store", url, "-q", q, p]));
                (ok, sorted_lines(&out), err)
            };
            let (real_ok, real_out, real_err) = ask(&real_url);
            let (our_ok, our_out, our_err) = ask(&ours_url);
            assert!(real_ok, "real nix-daemon: -q {q} {p}: {real_err}");
            assert!(our_ok, "our daemon: -q {q} {p}: {our_err}");
            assert_eq!(our_out, real_out, "nix-store -q {q} {p}");
        }
    }
    for p in &roots {
        assert_eq!(
            path_info_json(&ours_url, p),
            path_info_json(&real_url, p),
            "nix path-info -r --json {p}"
        );
    }
    // Both hold the same paths now.
    let mut c_real = storefs_store::daemon::DaemonClient::connect(&real.socket)
        .await
        .unwrap();
    let mut c_ours = storefs_store::daemon::DaemonClient::connect(&ours.socket)
        .await
        .unwrap();
    let mut all_real = c_real.query_all_valid_paths().await.unwrap();
    let mut all_ours = c_ours.query_all_valid_paths().await.unwrap();
    all_real.sort();
    all_ours.sort();
    assert_eq!(all_ours, all_real);
    // Our client reads the same path info from both.
    for p in &expected {
        let a = c_real.query_path_info(p).await.unwrap().unwrap();
        let b = c_ours.query_path_info(p).await.unwrap().unwrap();
        assert_eq!(
            (
                &b.deriver,
                &b.nar_hash,
                &b.references,
                b.nar_size,
                &b.sigs,
                &b.ca
            ),
            (
                &a.deriver,
                &a.nar_hash,
                &a.references,
                a.nar_size,
                &a.sigs,
                &a.ca
            ),
            "{p}"
        );
        assert!(c_ours.is_valid_path(p).await.unwrap());
    }
    // NarFromPath through our socket gives `nix-store --dump`.
    for p in &expected {
        let size = c_ours.query_path_info(p).await.unwrap().unwrap().nar_size;
        let mut nar = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(
            &mut c_ours.nar_from_path(p, size).await.unwrap(),
            &mut nar,
        )
        .await
        .unwrap();
        assert_eq!(nar, fx.store.dump(p), "NarFromPath {p}");
    }
    let valid = c_ours
        .query_valid_paths(&[fx.tree.clone(), "/nix/store/not-a-store-path".to_owned()])
        .await;
    assert!(valid.is_err(), "a malformed path is an error");
    let valid = c_ours
        .query_valid_paths(std::slice::from_ref(&fx.tree))
        .await
        .unwrap();
    assert_eq!(valid, vec![fx.tree.clone()]);
    // `nix-store -r` of a valid path succeeds and prints it.
    let out = ok_str(nix::cmd("nix-store").args(["--store", &ours_url, "-r", &fx.withrefs]));
    assert_eq!(out.trim(), fx.withrefs);
    // An invalid path: Nix reports it as not valid.
    let missing = format!("/nix/store/{}-missing", &fx.single[11..43]);
    let (ok, _, err) =
        try_run(nix::cmd("nix-store").args(["--store", &ours_url, "-q", "--hash", &missing]));
    assert!(!ok && err.contains("is not valid"), "{err}");
    // With the files reachable (`?root=`), Nix verifies paths and copies
    // them out of our socket (BuildPathsWithResults, QueryPathInfo).
    let with_root = format!("{ours_url}?root={}", fx.store.root.display());
    for p in &expected {
        let (ok, _, err) =
            try_run(nix::cmd("nix-store").args(["--store", &with_root, "--verify-path", p]));
        assert!(ok, "nix-store --verify-path {p}: {err}");
    }
    let cache = fx.store.dir().join("cache");
    let cache_url = format!("file://{}?compression=none", cache.display());
    ok_str(nix::cmd("nix").args([
        "copy",
        "--from",
        &with_root,
        "--to",
        &cache_url,
        &fx.withrefs,
    ]));
    for p in [&fx.withrefs, &fx.hello, &fx.small] {
        let hash_part = &p["/nix/store/".len()..][..32];
        let narinfo = std::fs::read_to_string(cache.join(format!("{hash_part}.narinfo"))).unwrap();
        let real_hash =
            ok_str(nix::cmd("nix-store").args(["--store", &real_url, "-q", "--hash", p]));
        assert!(
            narinfo.contains(&format!("NarHash: {}", real_hash.trim())),
            "{p}: {narinfo}"
        );
    }
    // `nix store ping` only needs the handshake.
    ok_str(nix::cmd("nix").args(["store", "ping", "--store", &ours_url]));
    ours.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nix_copy_to_our_socket() {
    let fx = Fixtures::build();
    let (services, pis) = empty_services();
    let ours = TestDaemon::start(services.clone(), trusting()).await;
    let url = format!("unix://{}", ours.socket.display());
    let root = fx.store.root.display().to_string();
    let copy = |paths: &[&str], extra: &[&str]| {
        try_run(
            nix::cmd("nix")
                .args(["copy", "--from", &root, "--to", &url])
                .args(extra)
                .args(paths),
        )
    };

    // Content-addressed paths need no signature.
    let (ok, _, err) = copy(&[&fx.tree, &fx.single], &[]);
    assert!(ok, "nix copy of CA paths: {err}");
    // An input-addressed, unsigned path is refused, as a real daemon does.
    let (ok, _, err) = copy(&[&fx.withrefs], &[]);
    assert!(!ok, "an unsigned input-addressed path must be refused");
    assert!(err.contains("lacks a signature by a trusted key"), "{err}");
    // A trusted client may waive the check.
    let (ok, _, err) = copy(&[&fx.withrefs], &["--no-check-sigs"]);
    assert!(ok, "nix copy --no-check-sigs: {err}");

    let sd = StoreDir::default();
    for p in [&fx.tree, &fx.single, &fx.withrefs, &fx.hello, &fx.small] {
        let sp = sd.parse_path(p).unwrap();
        let info = pis
            .get(*sp.digest())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{p} missing"));
        let nix_hash = ok_str(nix::cmd("nix-store").args(["--store", &root, "-q", "--hash", p]));
        assert_eq!(
            format!(
                "sha256:{}",
                storefs_store::nixbase32::encode(&info.nar_sha256)
            ),
            nix_hash.trim(),
            "NAR hash of {p}"
        );
        assert_eq!(our_nar(&services, p).await, fx.store.dump(p), "NAR of {p}");
        let refs = sorted_lines(&ok_str(nix::cmd("nix-store").args([
            "--store",
            &root,
            "-q",
            "--references",
            p,
        ])));
        let mut ours_refs: Vec<String> =
            info.references.iter().map(|r| r.to_absolute(&sd)).collect();
        ours_refs.sort();
        assert_eq!(ours_refs, refs, "references of {p}");
    }
    // `nix-store --add-fixed` (flat, AddToStore fixed:sha256) and
    // `builtins.toFile` (text:sha256) through the socket give Nix's paths.
    let f = fx.store.dir().join("flat.txt");
    std::fs::write(&f, b"a flat file\n").unwrap();
    let ours_flat = ok_str(
        nix::cmd("nix-store")
            .args(["--store", &url, "--add-fixed", "sha256"])
            .arg(&f),
    );
    let nix_flat = ok_str(
        nix::cmd("nix-store")
            .args(["--store", &root, "--add-fixed", "sha256"])
            .arg(&f),
    );
    assert_eq!(ours_flat, nix_flat);
    let expr = r#"builtins.toFile "note.txt" "written by builtins.toFile\n""#;
    let ours_text =
        ok_str(nix::cmd("nix").args(["eval", "--raw", "--store", &url, "--expr", expr]));
    let nix_text =
        ok_str(nix::cmd("nix").args(["eval", "--raw", "--store", &root, "--expr", expr]));
    assert_eq!(ours_text, nix_text);
    for p in [ours_flat.trim(), ours_text.trim()] {
        assert_eq!(our_nar(&services, p).await, fx.store.dump(p), "NAR of {p}");
        let sp = sd.parse_path(p).unwrap();
        let info = pis.get(*sp.digest()).await.unwrap().unwrap();
        let nix_hash = ok_str(nix::cmd("nix-store").args(["--store", &root, "-q", "--hash", p]));
        assert_eq!(
            format!(
                "sha256:{}",
                storefs_store::nixbase32::encode(&info.nar_sha256)
            ),
            nix_hash.trim()
        );
    }
    // And `nix-store --add` through the socket gives Nix's path.
    let f = fx.store.dir().join("added.txt");
    std::fs::write(&f, b"added through the socket\n").unwrap();
    let ours_path = ok_str(
        nix::cmd("nix-store")
            .args(["--store", &url, "--add"])
            .arg(&f),
    );
    let nix_path = ok_str(
        nix::cmd("nix-store")
            .args(["--store", &root, "--add"])
            .arg(&f),
    );
    assert_eq!(ours_path, nix_path);
    assert_eq!(
        our_nar(&services, ours_path.trim()).await,
        fx.store.dump(nix_path.trim())
    );
    ours.stop().await;
}
