//! The filesystem core through its blocking methods, as a thread-per-queue
//! transport (virtio-fs) calls it: lookups with lookup counts, listings
//! with attributes, opens and chunked reads, errnos for what is absent or
//! failing, and a new session forgetting the old kernel's inodes. The FUSE
//! mount's tests (`mount.rs`) run the same core through fuser.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use storefs_castore::B3Digest;
use storefs_castore::{BlobReader, BlobService, BlobWriter, ChunkMeta};
use storefs_fuse::core::{Core, CoreConfig, FileKind, ROOT_INO, XATTR_STATS};

/// A core over `svc` on `rt`, with `timeout`.
fn core(rt: &tokio::runtime::Runtime, svc: &Services, timeout: Duration) -> Core {
    let mut config = CoreConfig::default();
    config.timeout = timeout;
    Core::new(&config, &svc.services(), rt.handle().clone()).expect("core")
}

#[test]
fn lookups_listings_and_chunked_reads_in_plain_types() {
    let rt = runtime();
    let svc = Services::default();
    let big = pseudo_random(300_000, 3);
    let tree = T::Dir(vec![
        (
            b"bin".to_vec(),
            T::Dir(vec![(
                b"run".to_vec(),
                T::File(b"#!/bin/sh\n".to_vec(), true, CHUNK),
            )]),
        ),
        (b"big".to_vec(), file(big.clone())),
        (b"link".to_vec(), T::Link(b"big".to_vec())),
    ]);
    let path = rt.block_on(svc.add_path("tree", &tree));
    let name = path.base_name();
    // Blocking calls from a thread of our own, never the runtime's.
    let core = core(&rt, &svc, Duration::from_secs(5));

    assert_eq!(core.lookup(ROOT_INO, b"nope"), Ok(None));
    assert_eq!(
        core.lookup(ROOT_INO, b"00000000000000000000000000000000-tree"),
        Ok(None)
    );
    let root = core
        .lookup(ROOT_INO, name.as_bytes())
        .unwrap()
        .expect("the store path");
    assert_eq!(
        (root.kind, root.perm, root.nlink),
        (FileKind::Directory, 0o555, 3)
    );
    assert_eq!(core.inodes(), 2);

    let items = core.readdirplus(root.ino, 0, 0).unwrap();
    let names: Vec<_> = items.iter().map(|i| i.name.to_vec()).collect();
    assert_eq!(names, [&b"."[..], b"..", b"big", b"bin", b"link"]);
    let big_attr = items[2].attr;
    assert_eq!(
        (big_attr.kind, big_attr.size, big_attr.perm),
        (FileKind::RegularFile, 300_000, 0o444)
    );
    assert!(items[2].counted && !items[0].counted);
    assert_eq!(core.readlink(items[4].attr.ino).unwrap().as_ref(), b"big");
    assert_eq!(core.lookup(items[3].attr.ino, b"missing"), Ok(None));
    let run = core.lookup(items[3].attr.ino, b"run").unwrap().unwrap();
    assert_eq!((run.perm, run.mode() & 0o170000), (0o555, libc::S_IFREG));

    // Reads of any size at any offset, across chunk boundaries.
    let fh = core.open(big_attr.ino, false).unwrap();
    for (offset, size) in [
        (0u64, 4096u32),
        (65_000, 200_000),
        (299_990, 4096),
        (300_000, 10),
    ] {
        let got = core.read(big_attr.ino, fh, offset, size).unwrap();
        let start = offset as usize;
        let end = (start + size as usize).min(big.len());
        assert!(got.as_ref() == &big[start..end], "read {offset}+{size}");
    }
    core.release(fh);
    assert_eq!(core.open(big_attr.ino, true), Err(libc::EROFS));
    assert_eq!(core.open(root.ino, false), Err(libc::EISDIR));
    assert!(core.getxattr(ROOT_INO, XATTR_STATS.as_bytes()).is_ok());
    assert_eq!(core.getxattr(root.ino, b"user.none"), Err(libc::ENODATA));
    assert!(core.stats().snapshot().blob_bytes_read >= 300_000);

    // Forgetting: counts drop, inodes go.
    let before = core.inodes();
    core.forget(run.ino, 1);
    assert_eq!(core.inodes(), before - 1);
    assert_eq!(core.getattr(run.ino), Err(libc::ENOENT));

    // A new kernel: nothing of the old one is held, lookups start over.
    core.new_session();
    assert_eq!(core.inodes(), 1);
    assert_eq!(core.getattr(root.ino), Err(libc::ENOENT));
    let again = core.lookup(ROOT_INO, name.as_bytes()).unwrap().unwrap();
    assert!(again.ino > root.ino, "inode numbers are never reused");
    drop(core);
    drop(rt);
}

/// A blob service whose reads never finish.
#[derive(Clone)]
struct Hung(MemoryBlobService);

#[async_trait::async_trait]
impl BlobService for Hung {
    async fn has(&self, digest: &B3Digest) -> storefs_castore::Result<bool> {
        self.0.has(digest).await
    }
    async fn chunks(&self, _digest: &B3Digest) -> storefs_castore::Result<Option<Vec<ChunkMeta>>> {
        futures::future::pending().await
    }
    async fn read_chunk(
        &self,
        _digest: &B3Digest,
    ) -> storefs_castore::Result<Option<bytes::Bytes>> {
        futures::future::pending().await
    }
    async fn open_read(&self, _digest: &B3Digest) -> storefs_castore::Result<Option<BlobReader>> {
        futures::future::pending().await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.0.open_write().await
    }
}

#[test]
fn a_hung_store_is_eio_within_the_timeout_and_the_core_goes_on() {
    let rt = runtime();
    let svc = Services::default();
    let path = rt.block_on(svc.add_path(
        "hung",
        &T::Dir(vec![(b"f".to_vec(), file(vec![7u8; 1000]))]),
    ));
    let services = storefs_store::Services::new(
        Arc::new(Hung(svc.blobs.clone())),
        Arc::new(svc.dirs.clone()),
        Arc::new(svc.infos.clone()),
    );
    let mut config = CoreConfig::default();
    config.timeout = Duration::from_millis(300);
    let core = Core::new(&config, &services, rt.handle().clone()).unwrap();
    let dir = core
        .lookup(ROOT_INO, path.base_name().as_bytes())
        .unwrap()
        .unwrap();
    let f = core.lookup(dir.ino, b"f").unwrap().unwrap();
    let started = std::time::Instant::now();
    assert_eq!(core.open(f.ino, false), Err(libc::EIO));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(core.stats().snapshot().timeouts, 1);
    // Metadata is in memory: still answered.
    assert_eq!(core.getattr(f.ino).map(|a| a.size), Ok(1000));
}

/// A blob service that answers every call, but only after `DELAY`.
#[derive(Clone)]
struct Slow(MemoryBlobService);

const DELAY: Duration = Duration::from_millis(300);

#[async_trait::async_trait]
impl BlobService for Slow {
    async fn has(&self, digest: &B3Digest) -> storefs_castore::Result<bool> {
        self.0.has(digest).await
    }
    async fn chunks(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Vec<ChunkMeta>>> {
        tokio::time::sleep(DELAY).await;
        self.0.chunks(digest).await
    }
    async fn read_chunk(&self, digest: &B3Digest) -> storefs_castore::Result<Option<bytes::Bytes>> {
        tokio::time::sleep(DELAY).await;
        self.0.read_chunk(digest).await
    }
    async fn read_chunk_batch(
        &self,
        digests: &[B3Digest],
    ) -> Vec<storefs_castore::Result<Option<bytes::Bytes>>> {
        tokio::time::sleep(DELAY).await;
        self.0.read_chunk_batch(digests).await
    }
    async fn open_read(&self, digest: &B3Digest) -> storefs_castore::Result<Option<BlobReader>> {
        tokio::time::sleep(DELAY).await;
        self.0.open_read(digest).await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.0.open_write().await
    }
}

/// Many readers at once ask for more bytes than the mount lets be in flight
/// (16 MiB): the later ones wait for room far longer than the timeout in
/// all, while every call to the (slow but answering) service ends within
/// it. No reader gets EIO and no timeout is counted: waiting behind other
/// readers is local queueing, not a silent service.
#[test]
fn queueing_behind_other_readers_is_not_a_timeout() {
    let rt = runtime();
    let svc = Services::default();
    const READERS: usize = 40;
    const SIZE: usize = 1024 * 1024;
    // One file per directory, so that no open fetches its siblings.
    let tree = T::Dir(
        (0..READERS)
            .map(|i| {
                let data = pseudo_random(SIZE, i as u64);
                (
                    format!("d{i}").into_bytes(),
                    T::Dir(vec![(b"f".to_vec(), file(data))]),
                )
            })
            .collect(),
    );
    let path = rt.block_on(svc.add_path("queued", &tree));
    let services = storefs_store::Services::new(
        Arc::new(Slow(svc.blobs.clone())),
        Arc::new(svc.dirs.clone()),
        Arc::new(svc.infos.clone()),
    );
    let mut config = CoreConfig::default();
    // 40 MiB asked for at once, 16 MiB in flight: three rounds of 300 ms,
    // the last readers waiting longer than the timeout, all well inside the
    // 6× backstop.
    config.timeout = Duration::from_millis(500);
    let core = Arc::new(Core::new(&config, &services, rt.handle().clone()).unwrap());
    let root = core
        .lookup(ROOT_INO, path.base_name().as_bytes())
        .unwrap()
        .unwrap();
    let files: Vec<u64> = (0..READERS)
        .map(|i| {
            let d = core
                .lookup(root.ino, format!("d{i}").as_bytes())
                .unwrap()
                .unwrap();
            core.lookup(d.ino, b"f").unwrap().unwrap().ino
        })
        .collect();
    let start = Arc::new(std::sync::Barrier::new(READERS));
    let readers: Vec<_> = files
        .into_iter()
        .enumerate()
        .map(|(i, ino)| {
            let core = Arc::clone(&core);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let fh = core.open(ino, false);
                start.wait();
                core.read(ino, fh?, 0, SIZE as u32).map(|got| (i, got))
            })
        })
        .collect();
    for r in readers {
        let (i, got) = r
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("a reader got errno {e}"));
        assert_eq!(got.as_ref(), &pseudo_random(SIZE, i as u64)[..]);
    }
    assert_eq!(core.stats().snapshot().timeouts, 0);
}

/// A walk through a directory fetches its small files a window at a time;
/// an open elsewhere in the directory fetches only its own file, and a
/// walk that goes on from there gets windows again.
#[test]
fn sibling_windows_follow_walks_not_scattered_opens() {
    let rt = runtime();
    let svc = Services::default();
    let names: Vec<String> = (0..600).map(|i| format!("f{i:03}")).collect();
    let tree = T::Dir(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone().into_bytes(), file(pseudo_random(100, i as u64))))
            .collect(),
    );
    let path = rt.block_on(svc.add_path("walk", &tree));
    let core = core(&rt, &svc, Duration::from_secs(10));
    let root = core
        .lookup(ROOT_INO, path.base_name().as_bytes())
        .unwrap()
        .unwrap();
    let read = |i: usize| {
        let f = core.lookup(root.ino, names[i].as_bytes()).unwrap().unwrap();
        let fh = core.open(f.ino, false).unwrap();
        let got = core.read(f.ino, fh, 0, 4096).unwrap();
        core.release(fh);
        assert_eq!(got.as_ref(), &pseudo_random(100, i as u64)[..]);
    };
    // A window of 100-byte files is one request, and the open waits for
    // it (its own file is in it): counted by the time the open returns.
    let fetched = || core.stats().snapshot().chunks_fetched;
    read(0);
    assert_eq!(fetched(), 256, "the first open: a window of 256 files");
    read(500);
    assert_eq!(fetched(), 257, "a jump: only the file opened");
    read(501);
    assert_eq!(
        fetched(),
        257 + 99,
        "the walk goes on from there: f501..f599"
    );
}

/// A directory of 20 files `f00`..`f19` of 100 bytes each (contents from
/// `seed` on).
fn small_files(seed: u64) -> T {
    T::Dir(
        (0..20)
            .map(|i| {
                (
                    format!("f{i:02}").into_bytes(),
                    file(pseudo_random(100, seed + i)),
                )
            })
            .collect(),
    )
}

/// A walk that reaches the end of a directory's small files has the next
/// directory's first window asked for before it gets there; a single open
/// in a directory does not.
#[test]
fn a_walk_reaching_a_directorys_end_fetches_the_next_directory_ahead() {
    let rt = runtime();
    let svc = Services::default();
    let tree = T::Dir(vec![
        (b"a".to_vec(), small_files(0)),
        (b"b".to_vec(), small_files(100)),
        (b"c".to_vec(), small_files(200)),
    ]);
    let path = rt.block_on(svc.add_path("dirs", &tree));
    let core = core(&rt, &svc, Duration::from_secs(10));
    let root = core
        .lookup(ROOT_INO, path.base_name().as_bytes())
        .unwrap()
        .unwrap();
    let open = |d: &str, f: &str| {
        let d = core.lookup(root.ino, d.as_bytes()).unwrap().unwrap();
        let f = core.lookup(d.ino, f.as_bytes()).unwrap().unwrap();
        let fh = core.open(f.ino, false).unwrap();
        core.release(fh);
    };
    let fetched = || core.stats().snapshot().chunks_fetched;
    // One open in `c`: its window, nothing of another directory.
    open("c", "f00");
    assert_eq!(fetched(), 20);
    // A walk through `a`: its window at the first open, then `b`'s first
    // window in the background.
    open("a", "f00");
    assert_eq!(fetched(), 40);
    open("a", "f01");
    storefs_testkit::wait_for(Duration::from_secs(10), "b's files fetched ahead", || {
        fetched() == 60
    });
    assert!(core.stats().snapshot().readahead_chunks >= 20);
}

/// A walk asks for the directories after the one it is in once per
/// directory, however many files it opens there, and in strides: when the
/// next two are not here, the next four go in one request. A walk through
/// `a` has `b`..`e` fetched together; walks through `b` and `c` find the
/// next two here and ask nothing; one through `d` asks for `e`..`h` (`e`
/// here already).
#[test]
fn a_walk_asks_for_the_next_directories_once_per_directory_in_strides() {
    walk_ahead_asks_once_per_directory(CoreConfig::default());
}

/// The same with directories in memory for only a few entries: the walk's
/// look-ahead reads the directories it needs back from the directory
/// service instead of giving up.
#[test]
fn a_walk_asks_ahead_for_directories_no_longer_in_memory() {
    let mut config = CoreConfig::default();
    config.dir_cache_entries = 25;
    walk_ahead_asks_once_per_directory(config);
}

fn walk_ahead_asks_once_per_directory(mut config: CoreConfig) {
    let rt = runtime();
    let svc = Services::default();
    let dirs = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let tree = T::Dir(
        dirs.iter()
            .enumerate()
            .map(|(k, d)| (d.as_bytes().to_vec(), small_files(100 * k as u64)))
            .collect(),
    );
    let path = rt.block_on(svc.add_path("dirs", &tree));
    config.timeout = Duration::from_secs(10);
    let core = Core::new(&config, &svc.services(), rt.handle().clone()).expect("core");
    let root = core
        .lookup(ROOT_INO, path.base_name().as_bytes())
        .unwrap()
        .unwrap();
    let walk = |k: usize| {
        let d = core.lookup(root.ino, dirs[k].as_bytes()).unwrap().unwrap();
        for i in 0..20 {
            let f = core
                .lookup(d.ino, format!("f{i:02}").as_bytes())
                .unwrap()
                .unwrap();
            let fh = core.open(f.ino, false).unwrap();
            let got = core.read(f.ino, fh, 0, 4096).unwrap();
            assert_eq!(got.as_ref(), &pseudo_random(100, 100 * k as u64 + i)[..]);
            core.release(fh);
        }
    };
    let snap = || core.stats().snapshot();
    walk(0);
    storefs_testkit::wait_for(Duration::from_secs(10), "b..e fetched ahead", || {
        snap().chunks_fetched == 100
    });
    assert_eq!(snap().directories_ahead, 4, "b, c, d and e, asked once");
    walk(1);
    walk(2);
    walk(3);
    storefs_testkit::wait_for(Duration::from_secs(10), "f..h fetched ahead", || {
        snap().chunks_fetched == 160
    });
    let s = snap();
    assert_eq!(
        s.directories_ahead, 8,
        "b and c asked nothing, d asked e (here already), f, g and h: {s:?}"
    );
    assert_eq!(s.batched_chunks, 160, "every file came in a batch: {s:?}");
    assert_eq!((s.opens, s.reads, s.releases), (80, 80, 80), "{s:?}");
}

/// A walk through a directory larger than a window has each file arrive
/// in a batch asked for ahead of it (none is fetched on its own), and
/// counts one open, one read and one release per file.
#[test]
fn a_long_walk_keeps_its_windows_ahead_of_the_reader() {
    let rt = runtime();
    let svc = Services::default();
    let n = 1000;
    let tree = T::Dir(
        (0..n)
            .map(|i| {
                (
                    format!("f{i:04}").into_bytes(),
                    file(pseudo_random(100 + i % 300, i as u64)),
                )
            })
            .collect(),
    );
    let path = rt.block_on(svc.add_path("long", &tree));
    let core = core(&rt, &svc, Duration::from_secs(10));
    let root = core
        .lookup(ROOT_INO, path.base_name().as_bytes())
        .unwrap()
        .unwrap();
    for i in 0..n {
        let f = core
            .lookup(root.ino, format!("f{i:04}").as_bytes())
            .unwrap()
            .unwrap();
        let fh = core.open(f.ino, false).unwrap();
        let got = core.read(f.ino, fh, 0, 4096).unwrap();
        assert_eq!(got.as_ref(), &pseudo_random(100 + i % 300, i as u64)[..]);
        core.release(fh);
    }
    let s = core.stats().snapshot();
    assert_eq!(s.chunks_fetched, n as u64, "each file once: {s:?}");
    assert_eq!(s.batched_chunks, n as u64, "each in a window: {s:?}");
    assert_eq!((s.opens, s.reads, s.releases), (1000, 1000, 1000));
}
