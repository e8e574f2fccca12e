//! Loopback ports.

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it
/// for a listener that is closed again before this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}
