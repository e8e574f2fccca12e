//! The mount's local cache under a size quota: reading far more than the
//! quota keeps the cache bounded, and evicted data is fetched again
//! correctly.

use storefs_testkit::{TestMount, TestServer, ok_str, pseudo_random, storefs, storefs_bin};

#[test]
fn reading_more_than_the_quota_keeps_the_cache_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("big");
    std::fs::create_dir_all(&src).unwrap();
    const FILES: usize = 16;
    const SIZE: usize = 2 << 20;
    for i in 0..FILES {
        std::fs::write(src.join(format!("f{i}")), pseudo_random(SIZE, i as u64 + 1)).unwrap();
    }
    let data = tmp.path().join("service");
    let path = ok_str(storefs!(&data).arg("add").arg(&src));
    let service = TestServer::start(&storefs_bin!(), &data, &tmp.path().join("grpc.sock"));
    let cache = tmp.path().join("cache");
    let mnt = tmp.path().join("mnt");
    const QUOTA: u64 = 4 << 20;
    let mount = TestMount::start(
        &storefs_bin!(),
        &service.url(),
        &mnt,
        &cache,
        &["--cache-size", "4M"],
    );
    let base = path.rsplit('/').next().unwrap();

    // Read everything (32 MiB through a 4 MiB cache), then again through a
    // new mount process on the same cache, whose memory holds nothing: what
    // was evicted is fetched again, and the bytes are right every time.
    let read_all = |round: usize| {
        for i in 0..FILES {
            let got = std::fs::read(mnt.join(base).join(format!("f{i}"))).unwrap();
            assert!(
                got == pseudo_random(SIZE, i as u64 + 1),
                "round {round} file {i}"
            );
        }
    };
    read_all(0);
    let fetched = mount.stats()["bytes_fetched"].as_u64().unwrap();
    assert!(fetched >= (FILES * SIZE) as u64, "fetched {fetched}");
    drop(mount);
    let mount = TestMount::start(
        &storefs_bin!(),
        &service.url(),
        &mnt,
        &cache,
        &["--cache-size", "4M"],
    );
    read_all(1);
    drop(mount);

    // Issue 13 item 5: the file stays within the documented bound on disk.
    let (len, used) = file_size(&cache);
    eprintln!(
        "cache file after reading {} MiB through a 4 MiB quota: {used} bytes on disk, length {len}",
        (2 * FILES * SIZE) >> 20
    );
    let bound = storefs_castore::disk_bound(QUOTA);
    assert!(used <= bound, "cache file takes {used} bytes, over {bound}");
}

/// The cache file's length and the bytes it takes on disk.
fn file_size(cache: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(cache.join("store.redb")).unwrap();
    (m.len(), m.blocks() * 512)
}

/// Read `files` files of `size` pseudo-random bytes through a mount with
/// `--cache-size quota`, check every byte, and return the cache file's
/// length and size on disk once the mount has exited.
fn fill_through_quota(quota: &str, files: usize, size: usize) -> (u64, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..files {
        std::fs::write(src.join(format!("f{i}")), pseudo_random(size, i as u64 + 7)).unwrap();
    }
    let data = tmp.path().join("service");
    let path = ok_str(storefs!(&data).arg("add").arg(&src));
    std::fs::remove_dir_all(&src).unwrap();
    let service = TestServer::start(&storefs_bin!(), &data, &tmp.path().join("grpc.sock"));
    let cache = tmp.path().join("cache");
    let mnt = tmp.path().join("mnt");
    let mount = TestMount::start(
        &storefs_bin!(),
        &service.url(),
        &mnt,
        &cache,
        &["--cache-size", quota],
    );
    let base = path.rsplit('/').next().unwrap();
    for i in 0..files {
        let got = std::fs::read(mnt.join(base).join(format!("f{i}"))).unwrap();
        assert!(got == pseudo_random(size, i as u64 + 7), "file {i}");
    }
    drop(mount);
    file_size(&cache)
}

/// Issue 13 item 5: `--cache-size 8M` keeps the file within the documented
/// bound (it took 59 MB on disk, a 68 MB file, before).
#[test]
fn issue13_an_8m_quota_holds_on_disk() {
    const QUOTA: u64 = 8 << 20;
    let (len, used) = fill_through_quota("8M", 24, 2 << 20);
    eprintln!("8 MiB quota after reading 48 MiB: {used} bytes on disk, length {len}");
    let bound = storefs_castore::disk_bound(QUOTA);
    assert!(used <= bound, "cache file takes {used} bytes, over {bound}");
    // The quota is used, not just respected by keeping nothing.
    assert!(used >= QUOTA / 2, "cache file takes only {used} bytes");
}

/// Issue 13 item 5 at a larger size: read just past a 256 MiB quota.
#[test]
fn issue13_a_256m_quota_holds_on_disk() {
    const QUOTA: u64 = 256 << 20;
    let (len, used) = fill_through_quota("256M", 140, 2 << 20);
    eprintln!("256 MiB quota after reading 280 MiB: {used} bytes on disk, length {len}");
    let bound = storefs_castore::disk_bound(QUOTA);
    assert!(used <= bound, "cache file takes {used} bytes, over {bound}");
    assert!(used >= QUOTA / 2, "cache file takes only {used} bytes");
}
