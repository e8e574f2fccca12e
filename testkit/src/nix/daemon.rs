//! A real `nix-daemon` serving a scratch store on a socket of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::wait::wait_for;

/// `nix-daemon --store ROOT` listening on its own socket; killed on drop,
/// its socket removed.
pub struct NixDaemon {
    child: Child,
    /// The socket it listens on.
    pub socket: PathBuf,
}

impl NixDaemon {
    /// Serve the store at `root` on `socket`; returns once it accepts.
    pub fn start(root: &Path, socket: PathBuf) -> Self {
        let child = super::cmd("nix-daemon")
            .env("NIX_DAEMON_SOCKET_PATH", &socket)
            .arg("--store")
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nix-daemon");
        let d = NixDaemon { child, socket };
        wait_for(Duration::from_secs(20), "nix-daemon's socket", || {
            std::os::unix::net::UnixStream::connect(&d.socket).is_ok()
        });
        d
    }

    /// The `--store` URL clients use.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for NixDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}
