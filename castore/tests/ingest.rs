//! Ingest of real local trees into the memory services, read back byte for
//! byte against the disk.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use storefs_castore::{
    BlobService, DirectoryService, IngestError, IngestOptions, MemoryBlobService,
    MemoryDirectoryService, Node, PathComponent, ingest_path, ingest_path_with,
};
use tokio::io::AsyncReadExt;

fn services() -> (Arc<dyn BlobService>, Arc<dyn DirectoryService>) {
    (
        Arc::new(MemoryBlobService::default()),
        Arc::new(MemoryDirectoryService::default()),
    )
}

/// Counts of what `check_tree` compared.
#[derive(Default, Debug)]
struct Seen {
    files: u64,
    bytes: u64,
    directories: u64,
    symlinks: u64,
}

/// Compare a blob with a file on disk, streaming both.
async fn check_contents(bs: &dyn BlobService, digest: &storefs_castore::B3Digest, path: &Path) {
    let mut blob = bs
        .open_read(digest)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("blob of {} missing", path.display()));
    let mut file = tokio::fs::File::open(path).await.unwrap();
    let mut a = vec![0u8; 1 << 16];
    let mut b = vec![0u8; 1 << 16];
    let mut offset = 0u64;
    loop {
        let n = file.read(&mut a).await.unwrap();
        let mut got = 0;
        while got < n {
            let m = blob.read(&mut b[got..n]).await.unwrap();
            assert!(m > 0, "blob of {} ends early at {offset}", path.display());
            got += m;
        }
        assert!(
            a[..n] == b[..n],
            "{} differs near byte {offset}",
            path.display()
        );
        offset += n as u64;
        if n == 0 {
            // The file is done; so must the blob be (this also makes the
            // reader check the whole blob's digest).
            assert_eq!(
                blob.read(&mut b).await.unwrap(),
                0,
                "{} blob longer",
                path.display()
            );
            break;
        }
    }
}

/// Walk the castore tree from `node` and the disk from `path` together and
/// assert they hold the same things.
async fn check_tree(
    bs: &dyn BlobService,
    ds: &dyn DirectoryService,
    node: &Node,
    path: &Path,
) -> Seen {
    let mut seen = Seen::default();
    let mut todo: Vec<(Node, PathBuf)> = vec![(node.clone(), path.to_owned())];
    while let Some((node, path)) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        match node {
            Node::File {
                digest,
                size,
                executable,
            } => {
                assert!(meta.is_file(), "{}", path.display());
                assert_eq!(size, meta.len(), "{}", path.display());
                assert_eq!(
                    executable,
                    meta.permissions().mode() & 0o100 != 0,
                    "{}",
                    path.display()
                );
                check_contents(bs, &digest, &path).await;
                seen.files += 1;
                seen.bytes += size;
            }
            Node::Symlink { target } => {
                assert!(meta.file_type().is_symlink(), "{}", path.display());
                assert_eq!(
                    target.as_bytes(),
                    std::fs::read_link(&path).unwrap().as_os_str().as_bytes()
                );
                seen.symlinks += 1;
            }
            Node::Directory { digest, size } => {
                assert!(meta.is_dir(), "{}", path.display());
                let dir = ds.get(&digest).await.unwrap().expect("directory stored");
                assert_eq!(dir.size(), size);
                let mut on_disk: Vec<Vec<u8>> = std::fs::read_dir(&path)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().as_bytes().to_vec())
                    .collect();
                on_disk.sort();
                let in_store: Vec<Vec<u8>> =
                    dir.entries().map(|(n, _)| n.as_bytes().to_vec()).collect();
                assert_eq!(in_store, on_disk, "{}", path.display());
                for (name, child) in dir.entries() {
                    todo.push((
                        child.clone(),
                        path.join(std::ffi::OsStr::from_bytes(name.as_bytes())),
                    ));
                }
                seen.directories += 1;
            }
        }
    }
    seen
}

async fn ingest_and_check(root: &Path) {
    let (bs, ds) = services();
    let got = ingest_path(bs.clone(), ds.as_ref(), root).await.unwrap();
    assert_eq!(
        got.entry.name.as_bytes(),
        root.file_name().unwrap().as_bytes()
    );
    let seen = check_tree(bs.as_ref(), ds.as_ref(), &got.entry.node, root).await;
    assert_eq!(got.stats.files, seen.files);
    assert_eq!(got.stats.bytes, seen.bytes);
    assert_eq!(got.stats.directories, seen.directories);
    assert_eq!(got.stats.symlinks, seen.symlinks);
    // The closure is complete and reachable from the root.
    if let Node::Directory { digest, .. } = &got.entry.node {
        use futures::TryStreamExt;
        let all: Vec<_> = ds.get_recursive(digest).try_collect().await.unwrap();
        assert!(!all.is_empty());
    }
}

fn sysroot() -> PathBuf {
    let out = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc runs");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The whole toolchain: tens of thousands of files (mostly small HTML
/// docs) and over a gigabyte of contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_sysroot_reads_back_identical() {
    ingest_and_check(&sysroot()).await;
}

#[tokio::test]
async fn odd_tree_with_symlinks_and_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::write(root.join("a/b/c/deep"), b"deep").unwrap();
    std::fs::write(root.join("empty-file"), b"").unwrap();
    let exe = root.join("exe");
    std::fs::write(&exe, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Group and other execute bits alone do not make a file executable
    // for Nix (S_IXUSR); check_tree asserts the same rule.
    let gx = root.join("group-x");
    std::fs::write(&gx, b"x").unwrap();
    std::fs::set_permissions(&gx, std::fs::Permissions::from_mode(0o611)).unwrap();
    std::fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"non-utf8-\xff\xfe name\n")),
        b"odd",
    )
    .unwrap();
    symlink("/absolute/dangling", root.join("abs")).unwrap();
    symlink("a/b", root.join("rel")).unwrap();
    symlink("../../outside", root.join("a/up")).unwrap();
    ingest_and_check(&root).await;

    let (bs, ds) = services();
    let got = ingest_path(bs, ds.as_ref(), &root).await.unwrap();
    let Node::Directory { digest, .. } = got.entry.node else {
        panic!()
    };
    let dir = ds.get(&digest).await.unwrap().unwrap();
    assert!(matches!(
        dir.get(b"exe"),
        Some(Node::File {
            executable: true,
            ..
        })
    ));
    assert!(matches!(
        dir.get(b"group-x"),
        Some(Node::File {
            executable: false,
            ..
        })
    ));
    assert_eq!(got.stats.directories, 5);
    assert_eq!(got.stats.symlinks, 3);
}

#[tokio::test]
async fn single_file_and_symlink_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("hello.txt");
    std::fs::write(&f, b"Hello World!").unwrap();
    let (bs, ds) = services();
    let got = ingest_path(bs.clone(), ds.as_ref(), &f).await.unwrap();
    assert_eq!(got.entry.name.as_bytes(), b"hello.txt");
    assert_eq!(
        got.entry.node,
        Node::File {
            digest: storefs_castore::B3Digest::of(b"Hello World!"),
            size: 12,
            executable: false
        }
    );
    check_tree(bs.as_ref(), ds.as_ref(), &got.entry.node, &f).await;

    // A symlink at the root is stored as a symlink, not followed.
    let l = tmp.path().join("link");
    symlink("hello.txt", &l).unwrap();
    let opts = IngestOptions {
        name: Some(PathComponent::try_from("renamed").unwrap()),
        ..IngestOptions::default()
    };
    let got = ingest_path_with(bs.clone(), ds.as_ref(), &l, &opts)
        .await
        .unwrap();
    assert_eq!(got.entry.name.as_bytes(), b"renamed");
    assert!(
        matches!(&got.entry.node, Node::Symlink { target } if target.as_bytes() == b"hello.txt")
    );
}

#[tokio::test]
async fn a_path_ending_in_dot_is_named_after_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("named");
    std::fs::create_dir(&d).unwrap();
    let (bs, ds) = services();
    let got = ingest_path(bs, ds.as_ref(), d.join(".")).await.unwrap();
    assert_eq!(got.entry.name.as_bytes(), b"named");
    let (bs, ds) = services();
    let e = ingest_path(bs, ds.as_ref(), "/").await.unwrap_err();
    assert!(matches!(e, IngestError::NoName { .. }), "{e:?}");
}

#[tokio::test]
async fn sockets_and_fifos_are_refused_by_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("ok"), b"ok").unwrap();
    let sock = root.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (bs, ds) = services();
    let e = ingest_path(bs, ds.as_ref(), &root).await.unwrap_err();
    match &e {
        IngestError::UnsupportedFileType { path, kind } => {
            assert_eq!(path, &sock);
            assert_eq!(*kind, "socket");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains(&sock.display().to_string()));

    let fifo = tmp.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let (bs, ds) = services();
    let e = ingest_path(bs, ds.as_ref(), &fifo).await.unwrap_err();
    assert!(
        matches!(&e, IngestError::UnsupportedFileType { path, kind: "fifo" } if *path == fifo),
        "{e:?}"
    );
    // Nothing of the refused tree became a visible directory.
}

#[tokio::test]
async fn missing_path_is_an_io_error_naming_it() {
    let (bs, ds) = services();
    let e = ingest_path(bs, ds.as_ref(), "/nonexistent/storefs-test")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, IngestError::Io { path, .. } if path == Path::new("/nonexistent/storefs-test")),
        "{e:?}"
    );
}
