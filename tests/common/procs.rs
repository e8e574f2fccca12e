//! Long-running storefs processes for the tests: a service and a mount,
//! each stopped (and the mount detached) when dropped, even on failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{storefs, storefs_bin};

/// `storefs serve` on a unix socket, over the embedded store in `data`.
pub struct Service {
    child: Option<Child>,
    /// The gRPC socket.
    pub socket: PathBuf,
    /// The embedded store's directory.
    pub data: PathBuf,
}

impl Service {
    /// Start serving `data` on `socket` and wait until it answers.
    pub fn start(data: &Path, socket: &Path) -> Self {
        Self::start_with(data, socket, &[])
    }

    /// Like [`Service::start`], with extra `serve` flags.
    pub fn start_with(data: &Path, socket: &Path, extra: &[&str]) -> Self {
        let child = storefs(data)
            .arg("serve")
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn storefs serve");
        let s = Service {
            child: Some(child),
            socket: socket.to_owned(),
            data: data.to_owned(),
        };
        wait_for(Duration::from_secs(20), "the service to listen", || {
            socket.exists()
        });
        s
    }

    /// The `--store` URL clients use.
    pub fn url(&self) -> String {
        format!("grpc+unix://{}", self.socket.display())
    }

    /// Stop with SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc_sig::TERM);
            let _ = c.wait();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `storefs mount` of a store at a directory.
pub struct Mount {
    child: Option<Child>,
    /// Where it is mounted.
    pub at: PathBuf,
}

impl Mount {
    /// Mount `store_url` at `at` with the cache in `cache` and extra flags;
    /// wait for the ready line.
    pub fn start(store_url: &str, at: &Path, cache: &Path, extra: &[&str]) -> Self {
        std::fs::create_dir_all(at).expect("mkdir mountpoint");
        let mut child = Command::new(storefs_bin())
            .env(
                "RUST_LOG",
                std::env::var("STOREFS_TEST_LOG").unwrap_or_else(|_| "warn,fuser=error".into()),
            )
            .env("STOREFS_DATA", cache.join("data"))
            .arg("--store")
            .arg(store_url)
            .arg("mount")
            .arg(at)
            .arg("--cache")
            .arg(cache)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn storefs mount");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready line");
        assert!(line.contains("mounted"), "mount did not come up: {line:?}");
        Mount {
            child: Some(child),
            at: at.to_owned(),
        }
    }

    /// The mount's figures (the `user.storefs.stats` xattr of the root).
    pub fn stats(&self) -> serde_json::Value {
        let out = Command::new("python3")
            .arg("-c")
            .arg("import os,sys; sys.stdout.write(os.getxattr(sys.argv[1], 'user.storefs.stats').decode())")
            .arg(&self.at)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("stats json")
    }

    /// Send `sig` and wait for the process; returns its exit code.
    pub fn stop_with(&mut self, sig: i32) -> Option<i32> {
        let mut c = self.child.take()?;
        signal(&c, sig);
        let status = c.wait().expect("wait");
        status.code()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc_sig::TERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Whatever happened, leave no mount behind.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .stderr(Stdio::null())
            .status();
    }
}

/// Signal numbers the tests send.
pub mod libc_sig {
    /// SIGTERM.
    pub const TERM: i32 = 15;
    /// SIGINT.
    pub const INT: i32 = 2;
    /// SIGKILL.
    pub const KILL: i32 = 9;
}

fn signal(c: &Child, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(c.id().to_string())
        .status();
}

/// Poll `cond` until it holds or `limit` passes (then panic naming `what`).
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `path` is a mount point now (per /proc/self/mounts).
pub fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let p = path.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*p))
}
