//! Our NAR of an ingested tree equals `nix-store --dump` of the same tree,
//! byte for byte. Needs Nix (Debian's nix-bin): the README's test command
//! (`scripts/test`) installs it. `nix-store --dump` reads any path, so no
//! Nix store is touched.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use proptest::prelude::*;

/// `nix-store --dump path`. Fails the test (never skips it) if Nix is
/// missing.
fn nix_dump(path: &Path) -> Vec<u8> {
    storefs_testkit::ok(
        storefs_testkit::nix::cmd("nix-store")
            .arg("--dump")
            .arg(path),
    )
}

fn ours(path: &Path) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (bs, ds) = common::services();
        common::ingest_and_dump(path, &bs, &ds).await.1
    })
}

/// First differing offset, for a readable failure.
fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// The NAR `storefs add` hashes: straight from the file system.
fn local(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    storefs_store::nar::dump_path(path, &mut out).unwrap();
    out
}

fn assert_same_as_nix(path: &Path) {
    let nix = nix_dump(path);
    let from_fs = local(path);
    assert!(
        nix == from_fs,
        "local NAR of {} differs from nix-store --dump at byte {:?} (ours {} bytes, Nix {})",
        path.display(),
        first_diff(&from_fs, &nix),
        from_fs.len(),
        nix.len()
    );
    let mine = ours(path);
    assert!(
        nix == mine,
        "NAR of {} differs from nix-store --dump at byte {:?} (ours {} bytes, Nix {})",
        path.display(),
        first_diff(&mine, &nix),
        mine.len(),
        nix.len()
    );
}

#[test]
fn handmade_tree_equals_nix_store_dump() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::write(root.join("a/b/c/deep.txt"), b"deep\n").unwrap();
    std::fs::write(root.join("empty-file"), b"").unwrap();
    std::fs::write(root.join("hello.txt"), b"Hello World!").unwrap();
    for (name, mode) in [("exe", 0o755), ("owner-x", 0o700), ("group-other-x", 0o611)] {
        let p = root.join("bin").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let big = storefs_testkit::pseudo_random(300 * 1024 + 3, 7);
    std::fs::write(root.join("big.bin"), &big).unwrap();
    for name in [
        &b"with space"[..],
        b"new\nline",
        b"\xff\xfe-not-utf8",
        b"UPPER",
        b"_under",
    ] {
        std::fs::write(root.join(std::ffi::OsStr::from_bytes(name)), name).unwrap();
    }
    std::fs::write(root.join("n".repeat(255)), b"long name").unwrap();
    symlink("/absolute/dangling", root.join("abs-link")).unwrap();
    symlink("hello.txt", root.join("rel-link")).unwrap();
    symlink("../../nowhere", root.join("a/b/up-link")).unwrap();
    assert_same_as_nix(&root);
    // Roots that are not directories.
    assert_same_as_nix(&root.join("hello.txt"));
    assert_same_as_nix(&root.join("bin/exe"));
    assert_same_as_nix(&root.join("abs-link"));
    assert_same_as_nix(&root.join("empty-dir"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_equal_nix_store_dump(tree in common::tree()) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        common::write_tree(&root, &tree);
        let nix = nix_dump(&root);
        let mine = ours(&root);
        prop_assert!(nix == mine, "differs at byte {:?}", first_diff(&mine, &nix));
        let from_fs = local(&root);
        prop_assert!(nix == from_fs, "local NAR differs at byte {:?}", first_diff(&from_fs, &nix));
    }
}
