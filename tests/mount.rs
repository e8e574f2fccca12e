//! `storefs serve` + `storefs mount` as real processes, against Nix-made
//! fixtures: the mounted paths are what Nix has, byte for byte and mode for
//! mode; the mount is lazy, works from its cache with the service down,
//! survives restarts, and unmounts on signals.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use storefs_testkit::{
    Signal, TestMount, TestServer, is_mounted, nix::Fixtures, nix::nix_sha256, ok, ok_str, storefs,
    storefs_bin, wait_for,
};

/// Every entry under `a` equals the one under `b`: kind, permission bits,
/// mtime, size, contents, symlink target, and a directory's link count.
fn assert_same_tree(a: &Path, b: &Path) {
    let ma = std::fs::symlink_metadata(a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
    let mb = std::fs::symlink_metadata(b).unwrap_or_else(|e| panic!("{}: {e}", b.display()));
    assert_eq!(ma.file_type(), mb.file_type(), "{}", a.display());
    assert_eq!(ma.mtime(), 1, "{}", a.display());
    if ma.file_type().is_symlink() {
        assert_eq!(
            std::fs::read_link(a).unwrap(),
            std::fs::read_link(b).unwrap(),
            "{}",
            a.display()
        );
        return;
    }
    assert_eq!(
        ma.permissions().mode() & 0o7777,
        mb.permissions().mode() & 0o7777,
        "{}",
        a.display()
    );
    assert_eq!(ma.uid(), 0);
    if ma.is_file() {
        assert_eq!(ma.len(), mb.len(), "{}", a.display());
        assert_eq!(ma.blocks(), ma.len().div_ceil(512), "{}", a.display());
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{}",
            a.display()
        );
        return;
    }
    assert_eq!(ma.nlink(), mb.nlink(), "{}", a.display());
    let mut names: Vec<_> = std::fs::read_dir(b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut ours: Vec<_> = std::fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    ours.sort();
    assert_eq!(ours, names, "{}", a.display());
    for n in names {
        assert_same_tree(&a.join(&n), &b.join(&n));
    }
}

/// The fixtures Nix added as sources, added to a storefs store in `data`.
fn add_sources(fx: &Fixtures, data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for p in [&fx.tree, &fx.single, &fx.small] {
        let name = &p[p.find('-').unwrap() + 1..];
        let ours = ok_str(
            storefs!(data)
                .args(["add", "--name", name])
                .arg(fx.store.real_path(p)),
        );
        assert_eq!(&ours, p);
        out.push(p.clone());
    }
    out
}

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap()
}

#[test]
fn mounted_fixtures_equal_nix_and_the_mount_is_lazy_and_survives() {
    let fx = Fixtures::build();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("service");
    let paths = add_sources(&fx, &data);
    let socket = tmp.path().join("grpc.sock");
    let mut service = TestServer::start(&storefs_bin!(), &data, &socket);
    let mnt = tmp.path().join("mnt");
    let cache = tmp.path().join("cache");
    let mut mount = TestMount::start(
        &storefs_bin!(),
        &service.url(),
        &mnt,
        &cache,
        &["--timeout", "3"],
    );

    // Lazy: a store path appears on lookup; nothing is fetched before.
    assert_eq!(mount.stats()["bytes_fetched"], 0);
    let tree = mnt.join(base(&fx.tree));
    assert_eq!(std::fs::read(tree.join("a")).unwrap(), b"a\n");
    let fetched = mount.stats()["bytes_fetched"].as_u64().unwrap();
    assert!(
        fetched <= 64 * 1024,
        "reading a 2-byte file fetched {fetched} bytes"
    );

    // The root lists nothing without --list-root, and a wrong name with a
    // right hash is not there.
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0);
    let wrong = format!("{}-wrong-name", &base(&fx.tree)[..32]);
    assert_eq!(
        std::fs::metadata(mnt.join(wrong)).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );

    // Byte for byte and mode for mode what Nix has; nix-store --dump of the
    // mounted path hashes to the NAR hash.
    for p in &paths {
        assert_same_tree(&mnt.join(base(p)), &fx.store.real_path(p));
        let nar = ok(Command::new("nix-store")
            .arg("--dump")
            .arg(mnt.join(base(p))));
        assert_eq!(nix_sha256(&nar), fx.store.hash(p), "{p}");
    }
    // A program runs from the mount.
    let out = ok_str(&mut Command::new(tree.join("bin/tool")));
    assert_eq!(out, "tool");

    // A path the mount has never seen, added to the service now.
    let late_src = tmp.path().join("late.txt");
    std::fs::write(&late_src, b"late\n").unwrap();
    let late = {
        let mut c = std::process::Command::new(storefs_testkit::storefs_bin!());
        c.env("RUST_LOG", "warn")
            .args(["--store", &service.url(), "add"])
            .arg(&late_src);
        ok_str(&mut c)
    };

    // Service down: what was read is still served; what was never fetched
    // fails within the timeout, and does not hang.
    service.stop();
    assert_eq!(std::fs::read(tree.join("a")).unwrap(), b"a\n");
    let t = Instant::now();
    assert!(std::fs::read(mnt.join(base(&late))).is_err());
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );

    // Service back: the same mount reconnects by itself and reads it.
    service = TestServer::start(&storefs_bin!(), &data, &socket);
    wait_for(Duration::from_secs(20), "the mount to reconnect", || {
        std::fs::read(mnt.join(base(&late))).is_ok()
    });
    assert_eq!(std::fs::read(mnt.join(base(&late))).unwrap(), b"late\n");
    service.stop();

    // SIGTERM unmounts and exits 0.
    assert_eq!(mount.stop_with(Signal::TERM), Some(0));
    wait_for(Duration::from_secs(5), "the unmount", || !is_mounted(&mnt));

    // Remount on the same cache with no service: what was read reads.
    let mut mount = TestMount::start(
        &storefs_bin!(),
        &service.url(),
        &mnt,
        &cache,
        &["--timeout", "2"],
    );
    assert_eq!(std::fs::read(tree.join("a")).unwrap(), b"a\n");
    assert_eq!(ok_str(&mut Command::new(tree.join("bin/tool"))), "tool");

    // SIGKILL leaves a stale mount; a new mount there clears it.
    assert_eq!(mount.stop_with(Signal::KILL), None);
    assert!(is_mounted(&mnt));
    let service = TestServer::start(&storefs_bin!(), &data, &socket);
    let mount = TestMount::start(&storefs_bin!(), &service.url(), &mnt, &cache, &[]);
    for p in &paths {
        assert_same_tree(&mnt.join(base(p)), &fx.store.real_path(p));
    }
    drop(mount);
}

#[test]
fn list_root_lists_every_path_and_sigint_unmounts() {
    let fx = Fixtures::build();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("service");
    let paths = add_sources(&fx, &data);
    let service = TestServer::start(&storefs_bin!(), &data, &tmp.path().join("grpc.sock"));
    let mnt = tmp.path().join("mnt");
    let mut mount = TestMount::start(
        &storefs_bin!(),
        &service.url(),
        &mnt,
        &tmp.path().join("cache"),
        &["--list-root"],
    );
    let mut listed: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    let mut want: Vec<String> = paths.iter().map(|p| base(p).to_owned()).collect();
    want.sort();
    assert_eq!(listed, want);
    // Directories are 0555, files 0444 or 0555, as in Nix's store.
    let tree = mnt.join(base(&fx.tree));
    assert_eq!(
        std::fs::metadata(&tree).unwrap().permissions().mode() & 0o777,
        0o555
    );
    assert_eq!(
        std::fs::metadata(tree.join("a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o444
    );
    assert_eq!(
        std::fs::metadata(tree.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o555
    );
    assert_eq!(mount.stop_with(Signal::INT), Some(0));
    wait_for(Duration::from_secs(5), "the unmount", || !is_mounted(&mnt));
}
