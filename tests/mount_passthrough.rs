//! `storefs mount` with FUSE passthrough (as root, real `storefs serve`):
//! files read again after their chunks are cached are copied beside the
//! cache and handed to the kernel, byte-exact, within the cache quota;
//! `--no-passthrough` keeps every read in the mount and copies nothing.

use std::path::Path;
use std::time::Duration;

use storefs_testkit::{
    TestMount, TestServer, ok_str, pseudo_random, storefs, storefs_bin, wait_for,
};

const FILES: usize = 6;
const SIZE: usize = 150 * 1024;

fn content(i: usize) -> Vec<u8> {
    pseudo_random(SIZE + i * 1000, i as u64 + 40)
}

fn stat(stats: &serde_json::Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

/// Read every file through `dir`, checking the bytes.
fn read_all(dir: &Path) {
    for i in 0..FILES {
        let got = std::fs::read(dir.join(format!("f{i}"))).unwrap();
        assert!(got == content(i), "file {i}");
    }
}

fn files_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().metadata().unwrap().len()).sum())
        .unwrap_or(0)
}

#[test]
fn files_read_again_pass_through_and_stay_within_the_quota() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..FILES {
        std::fs::write(src.join(format!("f{i}")), content(i)).unwrap();
    }
    let data = tmp.path().join("service");
    let path = ok_str(storefs!(&data).arg("add").arg(&src));
    let base = path.rsplit('/').next().unwrap().to_owned();
    let service = TestServer::start(&storefs_bin!(), &data, &tmp.path().join("grpc.sock"));
    let cache = tmp.path().join("cache");
    let mnt = tmp.path().join("mnt");
    // A quarter of the quota (1 MiB) is for file copies: the six files
    // (0.9 MiB) fit.
    let mount = TestMount::start(
        &storefs_bin!(),
        &service.url(),
        &mnt,
        &cache,
        &["--cache-size", "4M"],
    );
    let dir = mnt.join(&base);

    read_all(&dir);
    let s = mount.stats();
    assert_eq!(stat(&s, "passthrough_opens"), 0, "{s}");
    assert_eq!(stat(&s, "files_materialised"), 0, "{s}");
    // The second reading copies (in the background) what is cached ...
    read_all(&dir);
    wait_for(Duration::from_secs(20), "copies made", || {
        stat(&mount.stats(), "files_materialised") >= FILES as u64
    });
    wait_for(Duration::from_secs(5), "files released", || {
        stat(&mount.stats(), "open_files") == 0
    });
    // ... and the third passes the copies through, byte-exact.
    let fetched = stat(&mount.stats(), "bytes_fetched");
    read_all(&dir);
    let s = mount.stats();
    assert_eq!(stat(&s, "passthrough_opens"), FILES as u64, "{s}");
    assert_eq!(stat(&s, "passthrough_fallbacks"), 0, "{s}");
    assert_eq!(stat(&s, "bytes_fetched"), fetched, "{s}");
    // Copies started by the third reading may still be finishing: the
    // figure catches up with the directory.
    wait_for(
        Duration::from_secs(20),
        "file_cache_bytes is what is on disk",
        || files_bytes(&cache.join("files")) == stat(&mount.stats(), "file_cache_bytes"),
    );
    let held = files_bytes(&cache.join("files"));
    assert!(held > 0 && held <= 1 << 20, "file copies take {held} bytes");
    drop(mount);

    // A new mount process finds the copies, checks them, passes through.
    let mount = TestMount::start(
        &storefs_bin!(),
        &service.url(),
        &mnt,
        &cache,
        &["--cache-size", "4M"],
    );
    read_all(&dir);
    let s = mount.stats();
    assert_eq!(stat(&s, "passthrough_opens"), FILES as u64, "{s}");
    assert_eq!(stat(&s, "bytes_fetched"), 0, "{s}");
    drop(mount);

    // --no-passthrough: the same reads, no copies used or made.
    let cache2 = tmp.path().join("cache2");
    let mount = TestMount::start(
        &storefs_bin!(),
        &service.url(),
        &mnt,
        &cache2,
        &["--cache-size", "4M", "--no-passthrough"],
    );
    for _ in 0..3 {
        read_all(&dir);
    }
    let s = mount.stats();
    assert_eq!(stat(&s, "passthrough_opens"), 0, "{s}");
    assert_eq!(stat(&s, "files_materialised"), 0, "{s}");
    assert!(!cache2.join("files").exists());
}
