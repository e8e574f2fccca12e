//! An unprivileged user mounts through `fusermount3`, as test harnesses do.
//!
//! The test re-runs its own binary as user `nobody` (with `setpriv`); in
//! that child, `STOREFS_FUSE_TEST_MOUNT` names the mountpoint and the same
//! test function serves the mount until it is unmounted.

mod common;

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const CHILD_ENV: &str = "STOREFS_FUSE_TEST_MOUNT";
const NOBODY: u32 = 65534;
const TEST_NAME: &str = "an_unprivileged_user_mounts_through_fusermount3";

fn tree() -> T {
    T::Dir(vec![(
        b"hello.txt".to_vec(),
        file(b"hello from nobody\n".to_vec()),
    )])
}

/// The child: serve the mount at `dir` as the current (unprivileged) user.
fn serve(dir: PathBuf) {
    let rt = runtime();
    let svc = Services::default();
    rt.block_on(svc.add_path("unpriv", &tree()));
    // Passthrough asked for, with a file cache holding every chunk: an
    // unprivileged mount cannot register backing files, so it must serve
    // as without passthrough.
    let files = tempfile::tempdir().unwrap();
    let cache = storefs_castore::FileCache::open(
        files.path(),
        std::sync::Arc::new(svc.blobs.clone()),
        1 << 30,
    )
    .unwrap();
    let mut config = storefs_fuse::MountConfig::new(&dir);
    config.file_cache = Some(std::sync::Arc::new(cache));
    config.passthrough = true;
    let handle = storefs_fuse::mount(config, &svc.services(), rt.handle().clone()).unwrap();
    let stats = handle.stats();
    println!("ready");
    handle.wait().unwrap();
    println!("{}", stats.snapshot().to_json());
}

fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        program,
    ]);
    c
}

fn mounted_at(dir: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let dir = dir.to_str()?;
    mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(dir))
        .map(str::to_owned)
}

/// Kills the child and detaches the mount if the test fails half-way.
struct Guard {
    child: Option<Child>,
    dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.dir)
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn an_unprivileged_user_mounts_through_fusermount3() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return serve(PathBuf::from(dir));
    }
    // fusermount3 opens /dev/fuse with the user's own rights, so it must be
    // 0666 as udev makes it on every distribution; container runtimes often
    // create it 0600, which would leave FUSE to root alone.
    let dev_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata("/dev/fuse").unwrap().permissions(),
    );
    if dev_mode & 0o666 != 0o666 {
        std::fs::set_permissions(
            "/dev/fuse",
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();

    let exe = std::env::current_exe().unwrap();
    let child = as_nobody(exe.to_str().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard {
        child: Some(child),
        dir: dir.clone(),
    };
    assert!(
        eventually(Duration::from_secs(20), || mounted_at(&dir).is_some()),
        "the mount did not appear"
    );
    let line = mounted_at(&dir).unwrap();
    assert!(line.contains("fuse.storefs"), "{line}");
    assert!(line.contains(&format!("user_id={NOBODY}")), "{line}");

    let file = dir
        .join(store_path_for("unpriv").base_name())
        .join("hello.txt");
    for _ in 0..3 {
        let out = as_nobody("cat").arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"hello from nobody\n");
    }

    // The user unmounts; the serving process returns from `wait` and exits 0.
    let status = as_nobody("fusermount3")
        .arg("-u")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = guard.child.take().unwrap();
    let exited = eventually(Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        guard.child = Some(child);
        panic!("the mount process did not exit after fusermount3 -u");
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(mounted_at(&dir).is_none());
    // The mount's last figures: no passthrough was tried, nothing copied.
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no figures in the child's output: {text}"));
    let stats: serde_json::Value = serde_json::from_str(json).unwrap();
    for name in [
        "passthrough_opens",
        "passthrough_fallbacks",
        "files_materialised",
    ] {
        assert_eq!(stats[name], 0, "{name}: {json}");
    }
    assert_eq!(stats["errors"], 0, "{json}");
}
