//! FUSE passthrough of fully cached files (as root, real mounts): files
//! copied into the file cache are handed to the kernel and read byte-exact,
//! also after their copy is evicted while they are open; an inode open
//! through the page cache keeps that mode; `passthrough = false` (the
//! CLI's `--no-passthrough`) changes nothing but the counters.

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use storefs_castore::{B3Digest, FileCache};
use storefs_testkit::wait_for;

const SIZE: usize = 300 * 1024;

/// A mount of `svc` whose file cache (in `files`, `budget` bytes) copies
/// from the same memory blob service, so every chunk counts as cached.
fn mount_with_files(
    svc: &Services,
    files: &Path,
    budget: u64,
    passthrough: bool,
) -> (storefs_testkit::FuseMount, Arc<FileCache>) {
    let rt = runtime();
    let cache = Arc::new(FileCache::open(files, Arc::new(svc.blobs.clone()), budget).unwrap());
    let c = Arc::clone(&cache);
    let m = mount(rt, svc, move |config| {
        config.file_cache = Some(c);
        config.passthrough = passthrough;
    });
    (m, cache)
}

fn read_all(f: &mut std::fs::File) -> Vec<u8> {
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

fn copy_path(files: &Path, data: &[u8]) -> PathBuf {
    files.join(B3Digest::of(data).to_hex())
}

#[test]
fn fully_cached_files_pass_through_and_survive_eviction() {
    let a = pseudo_random(SIZE, 1);
    let b = pseudo_random(SIZE, 2);
    let tree = T::Dir(vec![
        (b"a.bin".to_vec(), file(a.clone())),
        (b"b.bin".to_vec(), file(b.clone())),
    ]);
    let svc = Services::default();
    let setup = runtime();
    let sp = setup.block_on(svc.add_path("passthrough", &tree));
    drop(setup);
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    // Room for one copy only: the second evicts the first.
    let (m, cache) = mount_with_files(&svc, &files, SIZE as u64 + 1000, true);
    let p = m.store_path(&sp);

    // First open: read through the mount, nothing copied.
    let mut held = std::fs::File::open(p.join("a.bin")).unwrap();
    assert_eq!(read_all(&mut held), a);
    assert_eq!(m.stats().passthrough_opens, 0);
    // Second open, while the first is still open through the page cache:
    // the copy is made in the background, and this open (and any other
    // while `held` is open) stays in the page-cache mode the kernel
    // requires for the inode.
    assert_eq!(std::fs::read(p.join("a.bin")).unwrap(), a);
    wait_for(Duration::from_secs(10), "a.bin copied", || {
        m.stats().files_materialised >= 1
    });
    assert!(copy_path(&files, &a).exists());
    assert_eq!(std::fs::read(copy_path(&files, &a)).unwrap(), a);
    assert_eq!(std::fs::read(p.join("a.bin")).unwrap(), a);
    assert_eq!(m.stats().passthrough_opens, 0, "{:?}", m.stats());
    drop(held);
    wait_for(Duration::from_secs(5), "a.bin released", || {
        m.stats().open_files == 0
    });

    // Now every open passes through, and reads right.
    let mut open_a = std::fs::File::open(p.join("a.bin")).unwrap();
    assert_eq!(m.stats().passthrough_opens, 1, "{:?}", m.stats());
    assert_eq!(read_all(&mut open_a), a);
    let mut second = std::fs::File::open(p.join("a.bin")).unwrap();
    assert_eq!(m.stats().passthrough_opens, 2);
    assert_eq!(read_all(&mut second), a);
    drop(second);

    // b's copy evicts a's while a is open: a keeps reading right, from
    // the copy the kernel holds; a new open of a still passes through
    // (the inode keeps its backing file while open).
    assert_eq!(std::fs::read(p.join("b.bin")).unwrap(), b);
    assert_eq!(std::fs::read(p.join("b.bin")).unwrap(), b);
    wait_for(Duration::from_secs(10), "b.bin copied", || {
        m.stats().files_materialised >= 2
    });
    assert!(!copy_path(&files, &a).exists(), "a's copy was not evicted");
    assert_eq!(cache.snapshot().evicted, 1);
    assert_eq!(read_all(&mut open_a), a);
    let mut again = std::fs::File::open(p.join("a.bin")).unwrap();
    assert_eq!(read_all(&mut again), a);
    assert_eq!(m.stats().passthrough_opens, 3, "{:?}", m.stats());
    drop(again);
    drop(open_a);

    // b passes through (once its page-cache opens are released); a,
    // evicted and closed, reads through the mount.
    wait_for(Duration::from_secs(5), "files released", || {
        m.stats().open_files == 0
    });
    let before = m.stats().passthrough_opens;
    assert_eq!(std::fs::read(p.join("b.bin")).unwrap(), b);
    assert_eq!(
        m.stats().passthrough_opens,
        before + 1,
        "{:?} {:?}",
        m.stats(),
        cache.snapshot()
    );
    wait_for(Duration::from_secs(5), "files released", || {
        m.stats().open_files == 0
    });
    assert_eq!(std::fs::read(p.join("a.bin")).unwrap(), a);
    assert_eq!(m.stats().passthrough_fallbacks, 0);
    assert_eq!(m.stats().file_cache_files, 1);
}

#[test]
fn a_copy_that_went_missing_falls_back_to_the_mount() {
    let a = pseudo_random(SIZE, 3);
    let tree = T::Dir(vec![(b"a.bin".to_vec(), file(a.clone()))]);
    let svc = Services::default();
    let setup = runtime();
    let sp = setup.block_on(svc.add_path("passthrough-gone", &tree));
    drop(setup);
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    let (m, _cache) = mount_with_files(&svc, &files, 1 << 30, true);
    let p = m.store_path(&sp);
    std::fs::read(p.join("a.bin")).unwrap();
    std::fs::read(p.join("a.bin")).unwrap();
    wait_for(Duration::from_secs(10), "a.bin copied", || {
        m.stats().files_materialised >= 1
    });
    // Someone removes the copy behind the cache's back.
    std::fs::remove_file(copy_path(&files, &a)).unwrap();
    wait_for(Duration::from_secs(5), "files released", || {
        m.stats().open_files == 0
    });
    assert_eq!(std::fs::read(p.join("a.bin")).unwrap(), a);
    assert_eq!(m.stats().passthrough_opens, 0);
}

#[test]
fn without_passthrough_nothing_is_copied_and_reads_are_the_same() {
    let a = pseudo_random(SIZE, 4);
    let tree = T::Dir(vec![(b"a.bin".to_vec(), file(a.clone()))]);
    let svc = Services::default();
    let setup = runtime();
    let sp = setup.block_on(svc.add_path("no-passthrough", &tree));
    drop(setup);
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    let (m, cache) = mount_with_files(&svc, &files, 1 << 30, false);
    let p = m.store_path(&sp);
    for _ in 0..4 {
        assert_eq!(std::fs::read(p.join("a.bin")).unwrap(), a);
    }
    let s = m.stats();
    assert_eq!(
        (
            s.passthrough_opens,
            s.files_materialised,
            s.passthrough_fallbacks
        ),
        (0, 0, 0)
    );
    assert_eq!(cache.snapshot().files, 0);
    // Without passthrough the kernel opens files itself (no FUSE_OPEN):
    // the mount holds no handles.
    assert_eq!(s.open_files, 0);
}
