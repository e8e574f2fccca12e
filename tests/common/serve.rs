//! `storefs serve` as a process whose startup lines (one per listener, on
//! stderr) tell the tests where it listens; stopped when dropped. Also a
//! minimal HTTP/1.1 client, so that the tests see exactly what goes over the
//! wire.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::storefs;

/// A running `storefs serve`.
pub struct Serve {
    child: Child,
    /// Its startup lines, in order.
    pub lines: Vec<String>,
    /// The HTTP view's address, if `--http` was given.
    pub http: Option<SocketAddr>,
    /// Everything it printed on stderr after the startup lines, as it comes.
    pub log: mpsc::Receiver<String>,
}

impl Serve {
    /// Start `storefs serve ARGS` on the embedded store in `data` and wait
    /// for `listeners` startup lines.
    pub fn start(data: &Path, args: &[&str], listeners: usize) -> Self {
        let mut child = storefs(data)
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
            let line = match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => l,
                Err(e) => {
                    let _ = child.kill();
                    panic!("storefs serve printed {lines:?}, then {e}");
                }
            };
            if line.starts_with("storefs: ") {
                lines.push(line);
            }
        }
        let http = lines.iter().find_map(|l| {
            let rest = l.strip_prefix("storefs: HTTP binary cache on http://")?;
            rest.split_whitespace().next()?.parse().ok()
        });
        Serve {
            child,
            lines,
            http,
            log: rx,
        }
    }

    /// The HTTP view's address.
    pub fn http(&self) -> SocketAddr {
        self.http.expect("started with --http")
    }

    /// Wait (up to `limit`) for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
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

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// All values of header `name`.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Send one request (with `Connection: close`) and read the whole answer.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    parse_answer(&raw, method == "HEAD")
}

/// Parse a whole HTTP/1.1 answer (a body of Content-Length bytes).
pub fn parse_answer(raw: &[u8], head_only: bool) -> Answer {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if head_only {
        Vec::new()
    } else {
        raw[end + 4..].to_vec()
    };
    Answer {
        status,
        headers,
        body,
    }
}
