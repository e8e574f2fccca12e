//! A static HTTP server for a directory (a binary cache Nix wrote).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::free_port;
use crate::wait::wait_for;

/// `python3 -m http.server` serving a directory on 127.0.0.1; killed on drop.
pub struct HttpDir {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl HttpDir {
    /// Serve `dir`; returns once the port accepts.
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server (scripts/test installs python3)");
        let s = HttpDir { child, port };
        wait_for(Duration::from_secs(20), "python3 http.server", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        s
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpDir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
