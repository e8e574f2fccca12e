//! Issue 13 (hardening), the mount's part: a live mountpoint is not
//! stacked on, a mount that may not read refuses at startup, a full cache
//! disk loses nothing already cached, and `bytes_fetched` counts only what
//! came from the remote.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use storefs_testkit::{
    TestMount, TestServer, is_mounted, ok_str, pseudo_random, storefs, storefs_bin, wait_for,
};

/// A store path of `n` files of `size` pseudo-random bytes (`f0`, `f1`,
/// ...), added to the embedded store in `data`; returns its base name.
fn add_files(tmp: &Path, data: &Path, n: usize, size: usize) -> String {
    let src = tmp.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..n {
        std::fs::write(src.join(format!("f{i}")), file_bytes(i, size)).unwrap();
    }
    let path = ok_str(storefs!(data).arg("add").arg(&src));
    path.rsplit('/').next().unwrap().to_owned()
}

fn file_bytes(i: usize, size: usize) -> Vec<u8> {
    pseudo_random(size, i as u64 + 1)
}

/// `storefs mount` that is expected to refuse: wait (at most `limit`) for
/// it to exit and return its output. If it mounted instead, detach it and
/// fail.
fn mount_expecting_refusal(
    url: &str,
    at: &Path,
    cache: &Path,
    token_file: Option<&Path>,
    limit: Duration,
) -> Output {
    let mut cmd = Command::new(storefs_bin!());
    cmd.env("RUST_LOG", "warn,fuser=error")
        .env_remove("STOREFS_TOKEN")
        .env("STOREFS_DATA", cache.join("data"))
        .arg("--store")
        .arg(url);
    if let Some(f) = token_file {
        cmd.arg("--token-file").arg(f);
    }
    let child = cmd
        .arg("mount")
        .arg(at)
        .arg("--cache")
        .arg(cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn storefs mount");
    wait_exit(child, limit, at)
}

/// Wait for `child` to exit, at most `limit`; on timeout kill it, detach
/// whatever it mounted at `at`, and fail.
fn wait_exit(mut child: Child, limit: Duration, at: &Path) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            let _ = Command::new("umount").arg("-l").arg(at).status();
            panic!(
                "storefs mount did not refuse within {limit:?}; it printed {:?} / {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many mounts /proc/self/mountinfo lists at `at`.
fn mounts_at(at: &Path) -> usize {
    let at = std::fs::canonicalize(at).unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter(|l| l.split(' ').nth(4).map(PathBuf::from).as_deref() == Some(&at))
        .count()
}

/// A tmpfs mounted for a test, unmounted when dropped (even on failure).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("tmpfs")
            .arg(at)
            .status()
            .expect("mount tmpfs");
        assert!(
            st.success(),
            "mount -t tmpfs failed (the tests run as root)"
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Issue 13 item 3: a second mount on a live mountpoint is refused with
/// one line, and the first mount keeps serving; so is a mount on a
/// mountpoint that holds any other live mount (a tmpfs).
#[test]
fn issue13_a_live_mountpoint_is_refused_and_the_first_mount_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("service");
    let base = add_files(tmp.path(), &data, 2, 300_000);
    let service = TestServer::start(&storefs_bin!(), &data, &tmp.path().join("grpc.sock"));
    let mnt = tmp.path().join("mnt");
    let first = TestMount::start(
        &storefs_bin!(),
        &service.url(),
        &mnt,
        &tmp.path().join("cache1"),
        &[],
    );
    let file = mnt.join(&base).join("f0");
    assert_eq!(std::fs::read(&file).unwrap(), file_bytes(0, 300_000));

    let out = mount_expecting_refusal(
        &service.url(),
        &mnt,
        &tmp.path().join("cache2"),
        None,
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("already holds a live fuse") && stderr.contains("storefs"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "not one line: {stderr}");
    assert_eq!(mounts_at(&mnt), 1);

    // The first mount is still there and serves the right bytes, old and new.
    assert_eq!(std::fs::read(&file).unwrap(), file_bytes(0, 300_000));
    let other = mnt.join(&base).join("f1");
    assert_eq!(std::fs::read(other).unwrap(), file_bytes(1, 300_000));
    assert!(first.stats()["inodes"].as_u64().unwrap() > 1);

    // Any live mount counts, not just ours.
    let t = tmp.path().join("t");
    let _tmpfs = Tmpfs::mount(&t, "1m");
    let out = mount_expecting_refusal(
        &service.url(),
        &t,
        &tmp.path().join("cache3"),
        None,
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already holds a live tmpfs mount"),
        "{stderr}"
    );
    assert_eq!(mounts_at(&t), 1);
    drop(first);
    assert!(!is_mounted(&mnt));
}

/// Issue 13 item 8 (the mount's part): against a service that needs a
/// read token, a mount without it, or with a wrong one, refuses at startup
/// with one line; with the right one it mounts and reads.
#[test]
fn issue13_a_mount_without_the_read_token_refuses_at_startup() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("service");
    let base = add_files(tmp.path(), &data, 1, 1000);
    let token = tmp.path().join("read.token");
    std::fs::write(&token, "the-read-token\n").unwrap();
    let wrong = tmp.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    let service = TestServer::start_with(
        &storefs_bin!(),
        &data,
        &tmp.path().join("grpc.sock"),
        &["--read-token-file", token.to_str().unwrap()],
    );
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    for (name, file) in [("no token", None), ("a wrong token", Some(wrong.as_path()))] {
        let out = mount_expecting_refusal(
            &service.url(),
            &mnt,
            &tmp.path().join("cache"),
            file,
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert!(
            stderr.contains("refuses to let us read"),
            "{name}: {stderr}"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{name}: not one line: {stderr}"
        );
        assert!(!is_mounted(&mnt), "{name}");
    }
    // The right token (through the environment) mounts, and reads.
    let mut cmd = Command::new(storefs_bin!());
    let mut child = cmd
        .env("RUST_LOG", "warn,fuser=error")
        .env("STOREFS_TOKEN", "the-read-token")
        .env("STOREFS_DATA", tmp.path().join("cache/data"))
        .arg("--store")
        .arg(service.url())
        .arg("mount")
        .arg(&mnt)
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let ready = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line
    };
    let read = std::fs::read(mnt.join(&base).join("f0"));
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let _ = Command::new("umount").arg("-l").arg(&mnt).status();
    assert!(ready.contains("mounted"), "{ready:?}");
    assert_eq!(read.unwrap(), file_bytes(0, 1000));
}

/// Issue 13 item 7: after a warm read with the service down, the figures
/// show nothing fetched and the bytes served by the disk cache.
#[test]
fn issue13_a_warm_read_with_the_service_down_fetches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("service");
    const SIZE: usize = 1 << 20;
    let base = add_files(tmp.path(), &data, 1, SIZE);
    let mut service = TestServer::start(&storefs_bin!(), &data, &tmp.path().join("grpc.sock"));
    let mnt = tmp.path().join("mnt");
    let cache = tmp.path().join("cache");
    let mount = TestMount::start(&storefs_bin!(), &service.url(), &mnt, &cache, &[]);
    assert_eq!(
        std::fs::read(mnt.join(&base).join("f0")).unwrap(),
        file_bytes(0, SIZE)
    );
    let cold = mount.stats();
    assert!(
        cold["bytes_fetched"].as_u64().unwrap() >= SIZE as u64,
        "{cold}"
    );
    assert_eq!(cold["cache_hit_bytes"], 0, "{cold}");
    drop(mount);

    service.stop();
    let mount = TestMount::start(&storefs_bin!(), &service.url(), &mnt, &cache, &[]);
    assert_eq!(
        std::fs::read(mnt.join(&base).join("f0")).unwrap(),
        file_bytes(0, SIZE)
    );
    let warm = mount.stats();
    assert_eq!(warm["bytes_fetched"], 0, "{warm}");
    assert_eq!(warm["chunks_fetched"], 0, "{warm}");
    assert!(
        warm["cache_hit_bytes"].as_u64().unwrap() >= SIZE as u64,
        "{warm}"
    );
    assert!(
        warm["blob_bytes_read"].as_u64().unwrap() >= SIZE as u64,
        "{warm}"
    );
}

/// Issue 13 item 4: a cache on a small tmpfs fills it up; reads go on
/// (from the service), the failure is counted, and once the service is
/// gone, what was cached before the disk filled is still served from the
/// cache, byte for byte.
#[test]
fn issue13_a_full_cache_disk_keeps_serving_what_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("service");
    const FILES: usize = 12;
    const SIZE: usize = 2 << 20;
    let base = add_files(tmp.path(), &data, FILES, SIZE);
    let mut service = TestServer::start(&storefs_bin!(), &data, &tmp.path().join("grpc.sock"));
    // Declared before the mounts: dropped (unmounted) after them.
    let small = tmp.path().join("small");
    let _tmpfs = Tmpfs::mount(&small, "12m");
    let cache = small.join("cache");
    let mnt = tmp.path().join("mnt");
    let flags = ["--cache-size", "1G"];
    let read = |i: usize| std::fs::read(mnt.join(&base).join(format!("f{i}"))).unwrap();

    // f0 goes into the cache (durably: the mount flushes at exit).
    let mount = TestMount::start(&storefs_bin!(), &service.url(), &mnt, &cache, &flags);
    assert!(read(0) == file_bytes(0, SIZE));
    drop(mount);

    // Everything else does not fit: every read is still right.
    let mount = TestMount::start(&storefs_bin!(), &service.url(), &mnt, &cache, &flags);
    for i in 1..FILES {
        assert!(read(i) == file_bytes(i, SIZE), "file {i}");
    }
    // Fills run behind the reads: wait for the failure to be counted.
    wait_for(Duration::from_secs(30), "a cache fill to fail", || {
        mount.stats()["cache_fill_failures"].as_u64().unwrap() >= 1
    });
    let full = mount.stats();
    eprintln!("after filling the disk: {full}");

    // With the service gone, f0 comes from the cache, which was not read
    // in this mount before: the disk cache works after the failures.
    service.stop();
    assert!(read(0) == file_bytes(0, SIZE), "f0 from the cache");
    let after = mount.stats();
    assert_eq!(after["bytes_fetched"], full["bytes_fetched"], "{after}");
    assert!(
        after["cache_hit_bytes"].as_u64().unwrap()
            >= full["cache_hit_bytes"].as_u64().unwrap() + SIZE as u64,
        "{after}"
    );
    drop(mount);
}
