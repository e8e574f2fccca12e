//! Real FUSE mounts (as root, with /dev/fuse) of trees held in memory
//! services: contents, attributes, xattrs, laziness, concurrency, exec,
//! timeouts, forget, root listing, stale mounts.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use storefs_castore::B3Digest;
use storefs_castore::{BlobReader, BlobService, BlobWriter, ChunkMeta};
use storefs_testkit::wait_for;

fn sample_tree() -> T {
    T::Dir(vec![
        (
            b"abs-link".to_vec(),
            T::Link(b"/nix/store/somewhere".to_vec()),
        ),
        (
            b"big.bin".to_vec(),
            T::File(pseudo_random(3_000_000, 2), false, 256 * 1024),
        ),
        (
            b"bin".to_vec(),
            T::Dir(vec![(
                b"tool".to_vec(),
                T::File(b"#!/bin/sh\necho hi\n".to_vec(), true, 65536),
            )]),
        ),
        (
            b"caf\xe9-latin1".to_vec(),
            file(b"not utf-8 name\n".to_vec()),
        ),
        (
            b"cdc.bin".to_vec(),
            T::File(pseudo_random(1_500_000, 4), false, 0),
        ),
        // Small enough to be asked for whole first, but stored in chunks.
        (
            b"small-chunked.bin".to_vec(),
            T::File(pseudo_random(50_000, 5), false, 7777),
        ),
        (b"empty".to_vec(), file(Vec::new())),
        (b"emptydir".to_vec(), T::Dir(vec![])),
        (b"link".to_vec(), T::Link(b"small.txt".to_vec())),
        (b"medium.bin".to_vec(), file(pseudo_random(100_000, 1))),
        (
            b"odd-chunks.bin".to_vec(),
            T::File(pseudo_random(1_000_003, 3), false, 7777),
        ),
        (b"small.txt".to_vec(), file(b"hello\n".to_vec())),
        (
            b"sub".to_vec(),
            T::Dir(vec![
                (
                    b"a".to_vec(),
                    T::Dir(vec![(b"x".to_vec(), file(b"x".to_vec()))]),
                ),
                (b"b".to_vec(), T::Dir(vec![])),
                (b"c.txt".to_vec(), file(b"c".to_vec())),
            ]),
        ),
    ])
}

/// Check that `path` in the mount is exactly `tree`.
fn check_tree(path: &Path, tree: &T) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "{path:?}");
    assert_eq!(meta.mtime(), 1, "{path:?}");
    assert_eq!(meta.atime(), 1, "{path:?}");
    assert_eq!(meta.ctime(), 1, "{path:?}");
    match tree {
        T::File(data, executable, _) => {
            let mode = if *executable { 0o100555 } else { 0o100444 };
            assert_eq!(meta.mode(), mode, "{path:?}");
            assert_eq!(meta.size(), data.len() as u64, "{path:?}");
            assert_eq!(meta.blocks(), (data.len() as u64).div_ceil(512), "{path:?}");
            assert_eq!(meta.nlink(), 1, "{path:?}");
            assert!(std::fs::read(path).unwrap() == *data, "{path:?} differs");
            let hex = xattr::get(path, storefs_fuse::xattr::BLOB_DIGEST).unwrap();
            assert_eq!(hex, B3Digest::of(data).to_hex().into_bytes());
            assert_eq!(xattr::list(path), vec![storefs_fuse::xattr::BLOB_DIGEST]);
        }
        T::Link(target) => {
            assert_eq!(meta.mode(), 0o120777, "{path:?}");
            assert_eq!(meta.size(), target.len() as u64);
            assert_eq!(
                std::fs::read_link(path).unwrap().as_os_str().as_bytes(),
                target
            );
        }
        T::Dir(children) => {
            assert_eq!(meta.mode(), 0o40555, "{path:?}");
            let subdirs = children
                .iter()
                .filter(|(_, c)| matches!(c, T::Dir(_)))
                .count();
            assert_eq!(meta.nlink(), 2 + subdirs as u64, "{path:?}");
            let listed: BTreeSet<Vec<u8>> = std::fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap().file_name().as_bytes().to_vec())
                .collect();
            let expected: BTreeSet<Vec<u8>> = children.iter().map(|(n, _)| n.clone()).collect();
            assert_eq!(listed, expected, "{path:?}");
            assert!(xattr::get(path, storefs_fuse::xattr::DIRECTORY_DIGEST).is_ok());
            for (name, child) in children {
                check_tree(&path.join(OsStr::from_bytes(name)), child);
            }
        }
    }
}

#[test]
fn a_tree_reads_back_exactly_with_nix_attributes() {
    let rt = runtime();
    let svc = Services::default();
    let tree = sample_tree();
    let (sp, root) = rt.block_on(async {
        let sp = svc.add_path("sample-1.0", &tree).await;
        let root = svc.put_tree(&tree).await;
        (sp, root)
    });
    let m = mount(rt, &svc, |_| {});
    let p = m.store_path(&sp);
    check_tree(&p, &tree);

    // The directory xattr is the root directory's digest.
    let storefs_castore::Node::Directory { digest, .. } = root else {
        panic!("root is a directory")
    };
    assert_eq!(
        xattr::get(&p, storefs_fuse::xattr::DIRECTORY_DIGEST).unwrap(),
        digest.to_hex().into_bytes()
    );
    // An unknown xattr is ENODATA.
    assert_eq!(xattr::get(&p, "user.nope"), Err(libc::ENODATA));

    // Positional reads across odd chunk boundaries.
    let data = pseudo_random(1_000_003, 3);
    let f = std::fs::File::open(p.join("odd-chunks.bin")).unwrap();
    for (offset, len) in [
        (0, 1),
        (7776, 2),
        (7777, 7777),
        (500_000, 100_000),
        (999_990, 100),
    ] {
        let mut buf = vec![0u8; len];
        let n = f.read_at(&mut buf, offset as u64).unwrap();
        let end = (offset + len).min(data.len());
        assert_eq!(&buf[..n], &data[offset..end], "read_at({offset}, {len})");
    }
    // A read past the end reads nothing.
    let mut buf = [0u8; 16];
    assert_eq!(f.read_at(&mut buf, 2_000_000).unwrap(), 0);

    // Writing is refused.
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(p.join("small.txt"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));

    // The figures are readable in-process and through the root's xattr.
    let json = xattr::stats(m.path());
    let snap = m.stats();
    assert!(snap.bytes_fetched > 0);
    assert_eq!(json["closures_fetched"], 1);
    assert!(json["bytes_fetched"].as_u64().unwrap() > 0);
}

#[test]
fn reads_through_file_handles_when_the_kernel_asks_on_every_open() {
    let rt = runtime();
    let svc = Services::default();
    let tree = sample_tree();
    let sp = rt.block_on(svc.add_path("sample-handles", &tree));
    let m = mount(rt, &svc, |c| c.no_open = false);
    check_tree(&m.store_path(&sp), &tree);
    let f = std::fs::File::open(m.store_path(&sp).join("big.bin")).unwrap();
    assert_eq!(m.stats().open_files, 1);
    drop(f);
    assert!(eventually(Duration::from_secs(5), || m.stats().open_files == 0));
    // Each open after the first found the chunk list in memory.
    assert!(m.stats().chunk_list_hits > 0);
}

#[test]
fn a_wrong_name_with_a_right_hash_is_enoent() {
    let rt = runtime();
    let svc = Services::default();
    let sp = rt.block_on(svc.add_path("hello-2.12", &file(b"hi".to_vec())));
    let m = mount(rt, &svc, |_| {});
    // A single-file store path.
    assert_eq!(std::fs::read(m.store_path(&sp)).unwrap(), b"hi");
    let wrong = m.path().join(format!("{}-hello-2.13", sp.hash_part()));
    assert_eq!(
        std::fs::metadata(&wrong).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    for garbage in ["nothing", "x-y", &sp.hash_part()] {
        assert_eq!(
            std::fs::metadata(m.path().join(garbage))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOENT),
            "{garbage}"
        );
    }
    // Without --list-root the root lists nothing.
    assert_eq!(std::fs::read_dir(m.path()).unwrap().count(), 0);
    // The root's own attributes.
    let meta = std::fs::metadata(m.path()).unwrap();
    assert_eq!(meta.mode(), 0o40555);
}

#[test]
fn warm_metadata_needs_no_round_trip_and_new_store_paths_still_appear() {
    let rt = runtime();
    let svc = Services::default();
    let tree = sample_tree();
    let sp = rt.block_on(svc.add_path("warm-meta", &tree));
    let infos = svc.infos.clone();
    let m = mount(rt, &svc, |_| {});
    let p = m.store_path(&sp);
    let walk = |p: &Path| {
        walkdir::WalkDir::new(p)
            .into_iter()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .collect::<Vec<u64>>()
    };
    let entries = walk(&p);
    let missing = p.join("no-such-file");
    assert_eq!(
        std::fs::metadata(&missing).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    // A second walk, and the absent name again, are answered by the
    // kernel's caches (long entry/attribute timeouts, negative entries
    // inside store paths): no lookup reaches the mount.
    let before = m.stats().lookups;
    assert_eq!(walk(&p), entries);
    assert_eq!(
        std::fs::metadata(&missing).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    assert_eq!(m.stats().lookups, before);

    // An absent store path is remembered only briefly: added to the
    // service, it appears.
    let later = store_path_for("appears-later");
    let at = m.path().join(later.base_name());
    assert_eq!(
        std::fs::metadata(&at).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    let setup = runtime();
    let added = setup.block_on(
        Services {
            infos,
            ..svc.clone()
        }
        .add_path("appears-later", &file(b"late".to_vec())),
    );
    assert_eq!(added, later);
    wait_for(
        Duration::from_secs(10),
        "the new store path appears",
        || std::fs::read(&at).is_ok_and(|d| d == b"late"),
    );
}

#[test]
fn list_root_lists_every_store_path() {
    let rt = runtime();
    let svc = Services::default();
    let names: BTreeSet<String> = rt.block_on(async {
        let mut names = BTreeSet::new();
        for i in 0..5 {
            let sp = svc
                .add_path(
                    &format!("pkg-{i}"),
                    &T::Dir(vec![(b"f".to_vec(), file(vec![i]))]),
                )
                .await;
            names.insert(sp.base_name());
        }
        names
    });
    let m = mount(rt, &svc, |c| c.list_root = true);
    let listed: BTreeSet<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, names);
    // Entries of the listing are usable.
    for n in &names {
        let meta = std::fs::metadata(m.path().join(n)).unwrap();
        assert_eq!(meta.nlink(), 2);
        assert_eq!(std::fs::read(m.path().join(n).join("f")).unwrap().len(), 1);
    }
}

#[test]
fn reading_one_small_file_fetches_only_its_chunks() {
    let rt = runtime();
    let svc = Services::default();
    let small = pseudo_random(10_000, 9);
    let tree = T::Dir(vec![
        (
            b"huge.bin".to_vec(),
            file(pseudo_random(8 * 1024 * 1024, 7)),
        ),
        (
            b"other.bin".to_vec(),
            file(pseudo_random(2 * 1024 * 1024, 8)),
        ),
        (b"small.txt".to_vec(), file(small.clone())),
    ]);
    let sp = rt.block_on(svc.add_path("large-path", &tree));
    let m = mount(rt, &svc, |_| {});
    let p = m.store_path(&sp);
    assert_eq!(std::fs::read(p.join("small.txt")).unwrap(), small);
    let s = m.stats();
    assert_eq!(s.bytes_fetched, small.len() as u64, "{s:?}");
    assert_eq!(s.chunks_fetched, 1);
    assert_eq!(s.closures_fetched, 1);

    // A small read in the middle of the huge file fetches a few chunks
    // (the kernel reads ahead a little), not the file.
    let f = std::fs::File::open(p.join("huge.bin")).unwrap();
    let mut buf = [0u8; 100];
    f.read_at(&mut buf, 4 * 1024 * 1024).unwrap();
    assert_eq!(
        &buf[..],
        &pseudo_random(8 * 1024 * 1024, 7)[4 * 1024 * 1024..][..100]
    );
    let s2 = m.stats();
    let fetched = s2.bytes_fetched - s.bytes_fetched;
    assert!(
        fetched <= 1024 * 1024,
        "fetched {fetched} bytes for a 100-byte read"
    );

    // Re-opening and re-reading the small file costs nothing more.
    let before = m.stats();
    std::fs::read(p.join("small.txt")).unwrap();
    let after = m.stats();
    assert_eq!(after.bytes_fetched, before.bytes_fetched);
}

#[test]
fn opening_a_file_asks_for_the_next_large_files_chunk_lists_not_their_bytes() {
    let rt = runtime();
    let svc = Services::default();
    const SIZE: usize = 200 * 1024;
    let names: Vec<String> = (0..7).map(|i| format!("f{i}")).collect();
    let tree = T::Dir(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.as_bytes().to_vec(),
                    file(pseudo_random(SIZE, i as u64 + 70)),
                )
            })
            .collect(),
    );
    let sp = rt.block_on(svc.add_path("list-lookahead", &tree));
    let m = mount(rt, &svc, |_| {});
    let p = m.store_path(&sp);
    assert_eq!(
        std::fs::read(p.join("f0")).unwrap(),
        pseudo_random(SIZE, 70)
    );
    // f0's list, and those of the four after it, asked for.
    wait_for(Duration::from_secs(10), "lists asked for ahead", || {
        m.stats().chunk_list_misses == 5
    });
    assert_eq!(m.stats().bytes_fetched, SIZE as u64, "{:?}", m.stats());
    // Their opens find the lists in memory; f5's open asks for its own.
    for (i, n) in names.iter().enumerate().skip(1) {
        assert_eq!(
            std::fs::read(p.join(n)).unwrap(),
            pseudo_random(SIZE, i as u64 + 70)
        );
    }
    let s = m.stats();
    assert!(s.chunk_list_hits >= 4, "{s:?}");
    assert_eq!(s.bytes_fetched, 7 * SIZE as u64, "{s:?}");
}

#[test]
fn sequential_reads_trigger_read_ahead() {
    let rt = runtime();
    let svc = Services::default();
    let data = pseudo_random(4 * 1024 * 1024, 11);
    let sp = rt.block_on(svc.add_path("seq", &T::Dir(vec![(b"f".to_vec(), file(data.clone()))])));
    let m = mount(rt, &svc, |_| {});
    assert_eq!(std::fs::read(m.store_path(&sp).join("f")).unwrap(), data);
    let s = m.stats();
    assert!(s.readahead_chunks > 0, "{s:?}");
    // Every chunk was fetched once: read-ahead and demand reads shared fetches.
    assert_eq!(s.chunks_fetched, 64, "{s:?}");
    assert_eq!(s.bytes_fetched, data.len() as u64);
}

/// A memory cache smaller than read-ahead would ramp to still hands each
/// chunk to its reader: read-ahead stays within half the cache, and chunks
/// already read through leave it first, not the ones read-ahead brought
/// for what comes next.
#[test]
fn read_ahead_wider_than_the_chunk_cache_is_not_evicted_before_it_is_read() {
    let rt = runtime();
    let svc = Services::default();
    let data = pseudo_random(16 * 1024 * 1024, 12);
    let sp = rt.block_on(svc.add_path("wide", &T::Dir(vec![(b"f".to_vec(), file(data.clone()))])));
    // 1 MiB of memory cache; read-ahead ramps to 2 MiB.
    let m = mount(rt, &svc, |c| c.chunk_cache_bytes = 16 * CHUNK as u64);
    let mut f = std::fs::File::open(m.store_path(&sp).join("f")).unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut got).unwrap();
    assert!(got == data, "the bytes differ");
    let s = m.stats();
    assert!(s.readahead_chunks > 16, "{s:?}");
    // Each chunk about once (a few of 256 may be fetched twice when a read
    // and read-ahead cross, more on a loaded machine; unbounded read-ahead
    // over a small cache fetched over five times as many).
    assert!(s.chunks_fetched >= 256, "{s:?}");
    assert!(s.chunks_fetched <= 256 + 64, "chunks fetched again: {s:?}");
}

#[test]
fn sixteen_parallel_readers_get_correct_bytes() {
    let rt = runtime();
    let svc = Services::default();
    let big = pseudo_random(6 * 1024 * 1024 + 17, 21);
    let mut children = vec![(b"big.bin".to_vec(), T::File(big.clone(), false, 50_000))];
    let mut smalls = Vec::new();
    for i in 0..200u64 {
        let data = pseudo_random(1000 + (i as usize * 37) % 5000, 100 + i);
        children.push((format!("s{i:03}").into_bytes(), file(data.clone())));
        smalls.push((format!("s{i:03}"), data));
    }
    let sp = rt.block_on(svc.add_path("parallel", &T::Dir(children)));
    let m = mount(rt, &svc, |_| {});
    let p = m.store_path(&sp);
    let big = Arc::new(big);
    let smalls = Arc::new(smalls);
    let mut threads = Vec::new();
    for t in 0..16usize {
        let (p, big, smalls) = (p.clone(), big.clone(), smalls.clone());
        threads.push(std::thread::spawn(move || {
            if t % 2 == 0 {
                // Whole-file reads of the big file, and positional reads.
                assert!(std::fs::read(p.join("big.bin")).unwrap() == *big);
                let f = std::fs::File::open(p.join("big.bin")).unwrap();
                for k in 0..20usize {
                    let offset = (k * 311_111 + t * 7919) % big.len();
                    let mut buf = vec![0u8; 70_000];
                    let n = f.read_at(&mut buf, offset as u64).unwrap();
                    let end = (offset + 70_000).min(big.len());
                    assert!(buf[..n] == big[offset..end], "offset {offset}");
                }
            } else {
                for (name, data) in smalls.iter().skip(t).chain(smalls.iter().take(t)) {
                    assert!(std::fs::read(p.join(name)).unwrap() == *data, "{name}");
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    // However many readers wanted a chunk at once, it was fetched once.
    let s = m.stats();
    let big_chunks = big.len().div_ceil(50_000) as u64;
    assert_eq!(s.chunks_fetched, big_chunks + smalls.len() as u64, "{s:?}");
    let small_bytes: usize = smalls.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(s.bytes_fetched, (big.len() + small_bytes) as u64, "{s:?}");
}

#[test]
fn a_program_runs_from_the_mount() {
    let rt = runtime();
    let svc = Services::default();
    let true_bin = std::fs::read("/bin/true").unwrap();
    let tree = T::Dir(vec![(
        b"bin".to_vec(),
        T::Dir(vec![
            (
                b"script".to_vec(),
                T::File(b"#!/bin/sh\nexit 3\n".to_vec(), true, 65536),
            ),
            (b"true".to_vec(), T::File(true_bin, true, 16 * 1024)),
        ]),
    )]);
    let sp = rt.block_on(svc.add_path("coreutils-true", &tree));
    let m = mount(rt, &svc, |_| {});
    let bin = m.store_path(&sp).join("bin");
    let status = std::process::Command::new(bin.join("true"))
        .status()
        .unwrap();
    assert!(status.success());
    let status = std::process::Command::new(bin.join("script"))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
}

/// A blob service that never answers `read_chunk` for one digest.
struct Hanging {
    inner: MemoryBlobService,
    hang: B3Digest,
    /// Set once a read of `hang` is hanging.
    hung: Arc<AtomicBool>,
}

#[async_trait]
impl BlobService for Hanging {
    async fn has(&self, digest: &B3Digest) -> storefs_castore::Result<bool> {
        self.inner.has(digest).await
    }
    async fn chunks(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Vec<ChunkMeta>>> {
        self.inner.chunks(digest).await
    }
    async fn read_chunk(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Bytes>> {
        if *digest == self.hang {
            self.hung.store(true, SeqCst);
            futures::future::pending::<()>().await;
        }
        self.inner.read_chunk(digest).await
    }
    async fn open_read(&self, digest: &B3Digest) -> storefs_castore::Result<Option<BlobReader>> {
        self.inner.open_read(digest).await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.inner.open_write().await
    }
}

#[test]
fn a_hung_blob_fails_with_eio_within_the_timeout_while_others_read() {
    let rt = runtime();
    let svc = Services::default();
    let slow = pseudo_random(5000, 31);
    let fast = pseudo_random(5000, 32);
    let tree = T::Dir(vec![
        (b"fast.bin".to_vec(), file(fast.clone())),
        (b"slow.bin".to_vec(), file(slow.clone())),
    ]);
    let sp = rt.block_on(svc.add_path("flaky", &tree));
    let hung = Arc::new(AtomicBool::new(false));
    let hanging = Hanging {
        inner: svc.blobs.clone(),
        hang: B3Digest::of(&slow),
        hung: hung.clone(),
    };
    let timeout = Duration::from_secs(1);
    let m = FuseMount::start(
        rt,
        Arc::new(hanging),
        Arc::new(svc.dirs.clone()),
        Arc::new(svc.infos.clone()),
        |c| c.timeout = timeout,
    );
    let p = m.store_path(&sp);
    std::fs::metadata(&p).unwrap();
    let slow_path = p.join("slow.bin");
    let started = Instant::now();
    let slow_reader = std::thread::spawn(move || std::fs::read(slow_path));
    wait_for(Duration::from_secs(10), "the slow read to hang", || {
        hung.load(SeqCst)
    });
    // The hung fetch blocks nothing else.
    let t = Instant::now();
    assert_eq!(std::fs::read(p.join("fast.bin")).unwrap(), fast);
    assert!(t.elapsed() < timeout, "fast read took {:?}", t.elapsed());
    let err = slow_reader.join().unwrap().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    // The kernel may retry a failed page read once; either way it is bounded.
    assert!(
        started.elapsed() < 3 * timeout + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(m.stats().timeouts >= 1);
}

/// A path info service that never answers for one store path.
struct HangingInfos {
    inner: MemoryPathInfoService,
    hang: [u8; 20],
    /// Set once a lookup of `hang` is hanging.
    hung: Arc<AtomicBool>,
}

#[async_trait]
impl storefs_store::PathInfoService for HangingInfos {
    async fn get(
        &self,
        digest: [u8; 20],
    ) -> storefs_castore::Result<Option<storefs_store::PathInfo>> {
        if digest == self.hang {
            self.hung.store(true, SeqCst);
            futures::future::pending::<()>().await;
        }
        self.inner.get(digest).await
    }
    async fn put(
        &self,
        info: storefs_store::PathInfo,
    ) -> storefs_castore::Result<storefs_store::PathInfo> {
        self.inner.put(info).await
    }
    fn list(
        &self,
    ) -> futures::stream::BoxStream<'static, storefs_castore::Result<storefs_store::PathInfo>> {
        self.inner.list()
    }
}

#[test]
fn a_hung_lookup_fails_with_eio_within_the_timeout_while_others_answer() {
    let rt = runtime();
    let svc = Services::default();
    let (slow, fast) = rt.block_on(async {
        (
            svc.add_path("slow-1", &file(b"s".to_vec())).await,
            svc.add_path("fast-1", &file(b"f".to_vec())).await,
        )
    });
    let hung = Arc::new(AtomicBool::new(false));
    let timeout = Duration::from_secs(1);
    let m = FuseMount::start(
        rt,
        Arc::new(svc.blobs.clone()),
        Arc::new(svc.dirs.clone()),
        Arc::new(HangingInfos {
            inner: svc.infos.clone(),
            hang: *slow.digest(),
            hung: hung.clone(),
        }),
        |c| c.timeout = timeout,
    );
    let slow_path = m.store_path(&slow);
    let started = Instant::now();
    let looker = std::thread::spawn(move || std::fs::metadata(slow_path));
    wait_for(Duration::from_secs(10), "the slow lookup to hang", || {
        hung.load(SeqCst)
    });
    let t = Instant::now();
    assert_eq!(std::fs::read(m.store_path(&fast)).unwrap(), b"f");
    assert!(t.elapsed() < timeout, "fast lookup took {:?}", t.elapsed());
    let err = looker.join().unwrap().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(started.elapsed() < 2 * timeout + Duration::from_secs(2));
    assert_eq!(m.stats().timeouts, 1);
}

#[test]
fn forgotten_inodes_leave_the_table() {
    let rt = runtime();
    let svc = Services::default();
    let mut dirs = Vec::new();
    for d in 0..40u64 {
        let files = (0..50u64)
            .map(|f| {
                (
                    format!("f{f}").into_bytes(),
                    file(pseudo_random(10, d * 100 + f)),
                )
            })
            .collect();
        dirs.push((format!("d{d}").into_bytes(), T::Dir(files)));
    }
    let sp = rt.block_on(svc.add_path("many", &T::Dir(dirs)));
    let m = mount(rt, &svc, |_| {});
    let mut seen = 0;
    for entry in walkdir::WalkDir::new(m.store_path(&sp)) {
        entry.unwrap().metadata().unwrap();
        seen += 1;
    }
    assert_eq!(seen, 1 + 40 + 40 * 50);
    let walked = m.stats().inodes;
    assert!(walked > 2000, "{walked} inodes after the walk");
    let shrunk = eventually(Duration::from_secs(10), || {
        std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        m.stats().inodes < 100
    });
    assert!(
        shrunk,
        "still {} inodes after dropping caches",
        m.stats().inodes
    );
    // And the tree is still there, with the same content.
    let again = std::fs::read(m.store_path(&sp).join("d3/f7")).unwrap();
    assert_eq!(again, pseudo_random(10, 307));
}

#[test]
fn a_large_unchunked_blob_is_streamed() {
    let rt = runtime();
    let svc = Services::default();
    let data = pseudo_random(20 * 1024 * 1024 + 3, 41);
    let sp = rt.block_on(svc.add_path(
        "unchunked",
        &T::Dir(vec![(
            b"whole.bin".to_vec(),
            T::File(data.clone(), false, usize::MAX),
        )]),
    ));
    let m = mount(rt, &svc, |_| {});
    let p = m.store_path(&sp).join("whole.bin");
    assert!(std::fs::read(&p).unwrap() == data);
    let f = std::fs::File::open(&p).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = f.read_at(&mut buf, 10_000_000).unwrap();
    assert!(buf[..n] == data[10_000_000..10_000_000 + n]);
    assert!(m.stats().streamed_bytes >= data.len() as u64);
}

#[test]
fn a_stale_mount_is_cleared() {
    let rt = runtime();
    let svc = Services::default();
    let sp = rt.block_on(svc.add_path("after-crash", &file(b"back".to_vec())));
    let dir = tempfile::tempdir().unwrap();
    make_stale_mount(dir.path());
    assert_eq!(
        std::fs::metadata(dir.path()).unwrap_err().raw_os_error(),
        Some(libc::ENOTCONN),
        "precondition: the mountpoint is stale"
    );
    let mut config = storefs_fuse::MountConfig::new(dir.path());
    config.timeout = Duration::from_secs(5);
    let handle = storefs_fuse::mount(config, &svc.services(), rt.handle().clone()).unwrap();
    let m = FuseMount {
        handle: Some(handle),
        dir,
        rt,
    };
    assert_eq!(std::fs::read(m.store_path(&sp)).unwrap(), b"back");
}

/// Leave a FUSE mount whose server is gone at `dir`: mount with a fresh
/// /dev/fuse descriptor and close it, as a killed process would.
fn make_stale_mount(dir: &Path) {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .unwrap();
    let target = CString::new(dir.as_os_str().as_bytes()).unwrap();
    let opts = CString::new(format!(
        "fd={},rootmode=40000,user_id=0,group_id=0",
        dev.as_raw_fd()
    ))
    .unwrap();
    // SAFETY: all pointers are NUL-terminated strings that outlive the call.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::mount(
            c"storefs-stale".as_ptr(),
            target.as_ptr(),
            c"fuse".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            opts.as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mount: {}", std::io::Error::last_os_error());
    drop(dev);
}

/// Past `max_inodes`, the mount asks the kernel to drop the entries of its
/// oldest directories: the kernel forgets the inodes below them, the table
/// comes back within the bound, and what was dropped reads back the same
/// when walked again.
#[test]
fn walking_more_than_max_inodes_keeps_the_table_within_the_bound() {
    let rt = runtime();
    let svc = Services::default();
    let dirs: Vec<(Vec<u8>, T)> = (0..40u32)
        .map(|d| {
            let files = (0..10u32)
                .map(|f| {
                    let name = format!("f{f}").into_bytes();
                    (name, file(format!("dir {d} file {f}").into_bytes()))
                })
                .collect();
            (format!("d{d:02}").into_bytes(), T::Dir(files))
        })
        .collect();
    let sp = rt.block_on(svc.add_path("many-inodes", &T::Dir(dirs)));
    let max = 100;
    let m = mount(rt, &svc, |c| c.max_inodes = max);
    let p = m.store_path(&sp);
    let read_all = || {
        let mut n = 0;
        for d in 0..40u32 {
            for f in 0..10u32 {
                let at = p.join(format!("d{d:02}/f{f}"));
                assert_eq!(
                    std::fs::read(&at).unwrap(),
                    format!("dir {d} file {f}").into_bytes(),
                    "{}",
                    at.display()
                );
                n += 1;
            }
        }
        n
    };
    assert_eq!(read_all(), 400);
    // 1 root + 1 store path + 40 directories + 400 files were looked up.
    wait_for(
        Duration::from_secs(30),
        "the inode table to come back within its bound",
        || m.stats().inodes <= max as u64,
    );
    assert!(m.stats().kernel_entries_dropped > 0, "{:?}", m.stats());
    // Dropped entries are looked up again, with the same bytes.
    let lookups = m.stats().lookups;
    assert_eq!(read_all(), 400);
    assert!(m.stats().lookups > lookups, "{:?}", m.stats());
}

/// A cold walk of directories of small files, as a reader in `os.walk`
/// order does it (list, then open and read each file to its end): every
/// file reads back exactly, each chunk is fetched once, and the kernel
/// asks the mount one open, one read and one release per file (with the
/// kernel asking at every open, as a mount with passthrough has it), no
/// flush, no lookup and no attributes per file (the listings brought
/// them).
#[test]
fn a_cold_walk_of_small_files_costs_three_operations_a_file() {
    let rt = runtime();
    let svc = Services::default();
    let (dirs, per_dir) = (6, 70);
    let content =
        |d: usize, f: usize| pseudo_random(1 + (d * 977 + f * 131) % 4000, (d * 1000 + f) as u64);
    let tree = T::Dir(
        (0..dirs)
            .map(|d| {
                let files = (0..per_dir)
                    .map(|f| (format!("f{f:03}").into_bytes(), file(content(d, f))))
                    .collect();
                (format!("d{d}").into_bytes(), T::Dir(files))
            })
            .collect(),
    );
    let sp = rt.block_on(svc.add_path("small-walk", &tree));
    let m = mount(rt, &svc, |c| c.no_open = false);
    let root = m.store_path(&sp);
    let mut names: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), dirs);
    let before = m.stats();
    for (d, dir) in names.iter().enumerate() {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        files.sort_by_key(|e| e.file_name());
        assert_eq!(files.len(), per_dir);
        for (f, entry) in files.iter().enumerate() {
            assert!(entry.file_type().unwrap().is_file());
            assert!(
                std::fs::read(entry.path()).unwrap() == content(d, f),
                "{:?}",
                entry.path()
            );
        }
    }
    let n = (dirs * per_dir) as u64;
    // Releases reach the mount after close returns.
    assert!(
        eventually(Duration::from_secs(10), || m.stats().releases
            - before.releases
            == n),
        "{:?}",
        m.stats()
    );
    let s = m.stats();
    assert_eq!(s.chunks_fetched, n, "each file fetched once: {s:?}");
    assert_eq!(
        s.bytes_fetched,
        (0..dirs)
            .flat_map(|d| (0..per_dir).map(move |f| content(d, f).len() as u64))
            .sum::<u64>()
    );
    assert_eq!(s.opens - before.opens, n, "{s:?}");
    assert_eq!(s.reads - before.reads, n, "one read per file: {s:?}");
    assert_eq!(s.flushes, 0, "files open without flush: {s:?}");
    assert_eq!(
        s.lookups - before.lookups,
        0,
        "readdirplus brought every entry: {s:?}"
    );
    assert!(
        s.getattrs - before.getattrs < n / 10,
        "attributes come with the entries: {s:?}"
    );
    assert!(s.listings - before.listings >= dirs as u64, "{s:?}");
}
