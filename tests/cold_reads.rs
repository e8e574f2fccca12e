//! Cold reads through a real mount of a real `storefs serve`: the small
//! files of a directory are fetched together (batched `ReadChunks`), yet
//! every chunk is still verified on its own, and readers that overlap share
//! fetches.

use std::path::{Path, PathBuf};

use storefs_castore::{B3Digest, RedbBlobService, RedbStore};
use storefs_testkit::{TestMount, TestServer, ok_str, pseudo_random, storefs, storefs_bin};

/// `n` small files `f000`, `f001`, … of a few KiB each, seeded by `seed`.
fn small_files(dir: &Path, n: usize, seed: u64) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let data = pseudo_random(1000 + (i * 37) % 4000, seed * 1000 + i as u64);
            std::fs::write(dir.join(format!("f{i:03}")), &data).unwrap();
            data
        })
        .collect()
}

fn stat(stats: &serde_json::Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

/// `storefs serve` of the store in `data`, a fresh mount of it with an
/// empty cache (both under `tmp`), and where store path `path` shows in it.
fn serve_and_mount(tmp: &Path, data: &Path, path: &str) -> (TestServer, TestMount, PathBuf) {
    let service = TestServer::start(&storefs_bin!(), data, &tmp.join("grpc.sock"));
    let mnt = tmp.join("mnt");
    let mount = TestMount::start(
        &storefs_bin!(),
        &service.url(),
        &mnt,
        &tmp.join("cache"),
        &[],
    );
    let at = mnt.join(path.rsplit('/').next().unwrap_or(path));
    (service, mount, at)
}

#[test]
fn a_corrupt_small_file_among_batched_siblings_fails_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("smalls");
    let files = small_files(&src, 60, 1);
    let data = tmp.path().join("service");
    let path = ok_str(storefs!(&data).arg("add").arg(&src));

    // Corrupt the stored record of one file in the middle, on the service's
    // side: its bytes no longer hash to its digest.
    const BAD: usize = 17;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = RedbStore::open_dir(&data).unwrap();
        let blobs = RedbBlobService::new(store);
        let mut record = vec![0u8]; // raw record: flag byte, then the bytes
        record.extend_from_slice(&files[BAD]);
        record[1] ^= 0xff;
        blobs
            .danger_overwrite_chunk_record(&B3Digest::of(&files[BAD]), record)
            .await
            .unwrap();
    });
    drop(rt);

    let (_service, mount, dir) = serve_and_mount(tmp.path(), &data, &path);
    for (i, want) in files.iter().enumerate() {
        let got = std::fs::read(dir.join(format!("f{i:03}")));
        if i == BAD {
            let e = got.expect_err("the corrupt file must not read");
            assert_eq!(e.raw_os_error(), Some(libc_eio()), "{e}");
        } else {
            let got = got.unwrap_or_else(|e| panic!("f{i:03}: {e}"));
            assert!(got == *want, "f{i:03} differs");
        }
    }
    let stats = mount.stats();
    // The siblings really went in batches, not one by one.
    assert!(stat(&stats, "batched_chunks") >= 50, "{stats}");
    // And the corrupt one is not served from the cache on a second try.
    assert!(std::fs::read(dir.join(format!("f{BAD:03}"))).is_err());
}

#[test]
fn concurrent_readers_of_overlapping_directories_fetch_each_chunk_once() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("tree");
    // Three directories; the same file content appears in two of them, so
    // readers of different directories overlap on chunks too.
    let a = small_files(&src.join("a"), 120, 2);
    let b = small_files(&src.join("b"), 120, 3);
    let c = small_files(&src.join("c"), 40, 2); // the same as the first 40 of a
    assert!(c.iter().zip(&a).all(|(x, y)| x == y));
    let data = tmp.path().join("service");
    let path = ok_str(storefs!(&data).arg("add").arg(&src));
    let (_service, mount, root) = serve_and_mount(tmp.path(), &data, &path);

    // Eight readers at once, each walking the directories in its own order.
    let orders: [&[&str]; 8] = [
        &["a", "b", "c"],
        &["b", "a", "c"],
        &["c", "a", "b"],
        &["a", "c", "b"],
        &["b", "c", "a"],
        &["c", "b", "a"],
        &["a", "b", "c"],
        &["b", "a", "c"],
    ];
    std::thread::scope(|s| {
        for (k, order) in orders.iter().enumerate() {
            let (root, a, b, c) = (&root, &a, &b, &c);
            s.spawn(move || {
                for d in *order {
                    let want = match *d {
                        "a" => a,
                        "b" => b,
                        _ => c,
                    };
                    // Odd readers go backwards through the directory.
                    let idx: Vec<usize> = if k % 2 == 0 {
                        (0..want.len()).collect()
                    } else {
                        (0..want.len()).rev().collect()
                    };
                    for i in idx {
                        let got = std::fs::read(root.join(d).join(format!("f{i:03}"))).unwrap();
                        assert!(got == want[i], "reader {k}: {d}/f{i:03} differs");
                    }
                }
            });
        }
    });
    let distinct: std::collections::HashSet<&Vec<u8>> = a.iter().chain(&b).chain(&c).collect();
    let distinct_bytes: u64 = distinct.iter().map(|d| d.len() as u64).sum();
    let stats = mount.stats();
    assert_eq!(
        stat(&stats, "chunks_fetched"),
        distinct.len() as u64,
        "{stats}"
    );
    assert_eq!(stat(&stats, "bytes_fetched"), distinct_bytes, "{stats}");
}

/// A cold walk through a real mount of a real service, one reader in
/// `os.walk` order: every file reads back exactly, each chunk is fetched
/// once and looked up in the mount's cache once, and the mount's figures count what the kernel asked per file (one
/// open, one read, one release: a root mount with a cache passes files
/// through once copied, so the kernel asks at every open) and which
/// operations had to wait for the network (the walk's first file at
/// least: nothing of it is here when it is opened).
#[test]
fn a_cold_walk_counts_the_kernels_operations_and_the_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("tree");
    let dirs = ["d0", "d1", "d2", "d3"];
    let files: Vec<Vec<Vec<u8>>> = dirs
        .iter()
        .enumerate()
        .map(|(k, d)| small_files(&src.join(d), 90, 10 + k as u64))
        .collect();
    let data = tmp.path().join("service");
    let path = ok_str(storefs!(&data).arg("add").arg(&src));
    let (_service, mount, root) = serve_and_mount(tmp.path(), &data, &path);
    let mut n = 0u64;
    for (k, d) in dirs.iter().enumerate() {
        let mut names: Vec<_> = std::fs::read_dir(root.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names.len(), files[k].len());
        for (i, name) in names.iter().enumerate() {
            let got = std::fs::read(root.join(d).join(name)).unwrap();
            assert!(got == files[k][i], "{d}/{name:?} differs");
            n += 1;
        }
    }
    // Releases reach the mount after close has returned.
    storefs_testkit::wait_for(std::time::Duration::from_secs(10), "every release", || {
        stat(&mount.stats(), "releases") == n
    });
    let stats = mount.stats();
    assert_eq!(stat(&stats, "chunks_fetched"), n, "each file once: {stats}");
    assert_eq!(
        stat(&stats, "cache_lookups"),
        n,
        "each chunk looked up in the local cache once: {stats}"
    );
    assert_eq!(stat(&stats, "opens"), n, "{stats}");
    assert_eq!(stat(&stats, "reads"), n, "one read a file: {stats}");
    assert_eq!(stat(&stats, "flushes"), 0, "{stats}");
    let waited = stat(&stats, "opens_waited") + stat(&stats, "reads_waited");
    assert!(waited >= 1, "the first file waits for the network: {stats}");
    assert!(waited <= stat(&stats, "ops_waited"), "{stats}");
}

/// EIO, without a libc dependency in the tests.
fn libc_eio() -> i32 {
    5
}
