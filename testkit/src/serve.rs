//! `storefs serve` as a process whose startup lines (one per listener, on
//! stderr) tell the test where it listens; killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cmd::storefs_cmd;

/// A running `storefs serve` that announced its listeners.
pub struct Serve {
    child: Child,
    /// Its startup lines, in order.
    pub lines: Vec<String>,
    /// Everything it printed on stderr after the startup lines, as it comes.
    pub log: mpsc::Receiver<String>,
}

impl Serve {
    /// `storefs serve ARGS` (binary `bin`) on the embedded store in `data`;
    /// returns once it printed `listeners` startup lines.
    pub fn start(bin: &Path, data: &Path, args: &[&str], listeners: usize) -> Self {
        let mut child = storefs_cmd(bin, data)
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn storefs serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[serve] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        while lines.len() < listeners {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.starts_with("storefs: ") => lines.push(line),
                Ok(_) => {}
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("storefs serve printed {lines:?}, then {e}");
                }
            }
        }
        Serve {
            child,
            lines,
            log: rx,
        }
    }

    /// The HTTP view's address (panics unless started with `--http`).
    pub fn http(&self) -> SocketAddr {
        self.lines
            .iter()
            .find_map(|l| {
                let rest = l.strip_prefix("storefs: HTTP binary cache on http://")?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no HTTP listener in {:?}", self.lines))
    }

    /// Wait (up to `limit`) for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?}: {e}"),
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
