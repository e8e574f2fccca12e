//! Long-running storefs processes, stopped (and a mount detached, sockets
//! removed) when their guard drops, even when the test panics.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::cmd::storefs_cmd;
use crate::wait::wait_for;

/// How long a process may take to come up before the test fails.
const STARTUP: Duration = Duration::from_secs(20);

/// Send `sig` to `child` (ignored if it is gone).
pub fn signal(child: &Child, sig: Signal) {
    if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, sig);
    }
}

/// Whether `path` is a mount point now (per /proc/self/mounts).
pub fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let p = path.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*p))
}

/// SIGTERM, a grace period for a clean exit, then SIGKILL.
fn terminate(child: &mut Child, grace: Duration) {
    signal(child, Signal::TERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A `storefs serve` process (or any server the test spawned): killed on
/// drop, its unix sockets removed.
pub struct TestServer {
    child: Option<Child>,
    sockets: Vec<PathBuf>,
    /// The gRPC socket, when started by [`TestServer::start`].
    pub socket: PathBuf,
}

impl TestServer {
    /// `storefs serve --listen unix:SOCKET` over the embedded store in
    /// `data`; returns once the socket accepts.
    pub fn start(bin: &Path, data: &Path, socket: &Path) -> Self {
        Self::start_with(bin, data, socket, &[])
    }

    /// [`TestServer::start`] with extra `serve` flags.
    pub fn start_with(bin: &Path, data: &Path, socket: &Path, extra: &[&str]) -> Self {
        let mut cmd = storefs_cmd(bin, data);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .args(extra);
        let mut s = Self::spawn(&mut cmd, &[socket], &[]);
        s.socket = socket.to_owned();
        s
    }

    /// Spawn `cmd` and wait until every unix socket in `sockets` and every
    /// loopback TCP port in `ports` accepts a connection.
    pub fn spawn(cmd: &mut Command, sockets: &[&Path], ports: &[u16]) -> Self {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let mut s = TestServer {
            child: Some(child),
            sockets: sockets.iter().map(|p| p.to_path_buf()).collect(),
            socket: PathBuf::new(),
        };
        for socket in sockets {
            wait_for(STARTUP, &format!("{} to accept", socket.display()), || {
                s.exited();
                std::os::unix::net::UnixStream::connect(socket).is_ok()
            });
        }
        for port in ports {
            wait_for(STARTUP, &format!("port {port} to accept"), || {
                s.exited();
                std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok()
            });
        }
        s
    }

    /// Panic if the process has already exited (it will never listen).
    fn exited(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            panic!("server exited before it was ready: {status}");
        }
    }

    /// The `--store` URL of the gRPC socket.
    pub fn url(&self) -> String {
        format!("grpc+unix://{}", self.socket.display())
    }

    /// Stop with SIGTERM and wait for the process to exit; its exit
    /// status (`None` if it was stopped already or cannot be waited for).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        signal(&c, Signal::TERM);
        c.wait().ok()
    }
}

impl Drop for TestServer {
    /// Kill a server still running and remove the sockets it leaves. A
    /// server already stopped is left alone: its sockets may belong to a
    /// new server the test started on the same paths before this guard
    /// was dropped (`service = serve(…)` drops the old guard last).
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            for s in &self.sockets {
                let _ = std::fs::remove_file(s);
            }
        }
    }
}

/// A `storefs mount` process: on drop it is stopped and whatever is
/// mounted at its directory is detached.
pub struct TestMount {
    child: Option<Child>,
    /// Where it is mounted.
    pub at: PathBuf,
}

impl TestMount {
    /// `storefs --store STORE_URL mount AT --cache CACHE EXTRA…`; returns
    /// once the mount printed its ready line.
    pub fn start(bin: &Path, store_url: &str, at: &Path, cache: &Path, extra: &[&str]) -> Self {
        std::fs::create_dir_all(at).expect("mkdir mountpoint");
        let mut child = Command::new(bin)
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
        // Guard first, so that a failed start still cleans up.
        let m = TestMount {
            child: Some(child),
            at: at.to_owned(),
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready line");
        assert!(line.contains("mounted"), "mount did not come up: {line:?}");
        m
    }

    /// The mount's figures (the root's `user.storefs.stats` xattr).
    pub fn stats(&self) -> serde_json::Value {
        crate::xattr::stats(&self.at)
    }

    /// Send `sig` and wait for the process; its exit code (`None` if a
    /// signal ended it).
    pub fn stop_with(&mut self, sig: Signal) -> Option<i32> {
        let mut c = self.child.take()?;
        signal(&c, sig);
        c.wait().expect("wait").code()
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(5));
        }
        if is_mounted(&self.at) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.at)
                .stderr(Stdio::null())
                .status();
        }
    }
}
