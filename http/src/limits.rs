//! Bounds on what clients can hold of the HTTP view: timeouts and
//! connection limits, overall and per client address.
//!
//! - A request's head (request line and headers) must arrive within
//!   [`HttpLimits::header_read_timeout`] of the server starting to wait for
//!   it, however slowly it trickles in (slowloris); this also bounds how
//!   long an idle keep-alive connection is kept.
//! - A connection on which no byte moves in either direction for
//!   [`HttpLimits::idle_timeout`] is closed (a client that stopped sending
//!   a body or stopped reading an answer, an HTTP/2 connection left open).
//! - At most [`HttpLimits::max_connections_per_ip`] connections from one
//!   address and [`HttpLimits::max_connections`] in all; a connection over
//!   either is answered `503` with `Retry-After` and closed at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// Timeouts and connection limits of the HTTP view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest wait for a complete request head: 30 s by default.
    pub header_read_timeout: Duration,
    /// Longest time with no byte moving on a connection: 120 s by default.
    pub idle_timeout: Duration,
    /// Most connections open at once from one client address: 64.
    pub max_connections_per_ip: usize,
    /// Most connections open at once in all: 1024.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight before dropping
    /// them: 10 s.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections_per_ip: 64,
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The client's address holds its share already.
    PerIp,
    /// The server holds its maximum.
    Total,
}

/// Counts the open connections, by client address.
#[derive(Debug)]
pub(crate) struct Admission {
    per_ip: usize,
    total: usize,
    open: Mutex<(HashMap<IpAddr, usize>, usize)>,
}

/// One admitted connection; its slot is given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub(crate) fn new(limits: &HttpLimits) -> Arc<Self> {
        Arc::new(Self {
            per_ip: limits.max_connections_per_ip.max(1),
            total: limits.max_connections.max(1),
            open: Mutex::new((HashMap::new(), 0)),
        })
    }

    /// Take a slot for a connection from `ip`, or say why not.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut g = self.open.lock();
        let (by_ip, total) = &mut *g;
        if *total >= self.total {
            return Err(Refusal::Total);
        }
        let n = by_ip.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        *total += 1;
        Ok(Slot {
            admission: self.clone(),
            ip,
        })
    }

    /// Connections open now from `ip`.
    #[cfg(test)]
    fn open_from(&self, ip: IpAddr) -> usize {
        self.open.lock().0.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.admission.open.lock();
        let (by_ip, total) = &mut *g;
        *total = total.saturating_sub(1);
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total_limits_hold_and_free() {
        let limits = HttpLimits {
            max_connections_per_ip: 2,
            max_connections: 3,
            ..HttpLimits::default()
        };
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let adm = Admission::new(&limits);
        let a1 = adm.admit(a).unwrap();
        let _a2 = adm.admit(a).unwrap();
        assert_eq!(adm.admit(a).unwrap_err(), Refusal::PerIp);
        let _b1 = adm.admit(b).unwrap();
        assert_eq!(adm.admit(b).unwrap_err(), Refusal::Total);
        drop(a1);
        assert_eq!(adm.open_from(a), 1);
        let _b2 = adm.admit(b).unwrap();
        assert_eq!(adm.admit(a).unwrap_err(), Refusal::Total);
    }
}
