//! How many connections the daemon socket holds, per user and in all, and
//! the timeouts that keep idle ones from piling up.
//!
//! Connections are always accepted at once (a full backlog is how idle
//! clients used to lock everyone out). Each is admitted under two limits,
//! [`DaemonLimits::max_connections_per_user`] per peer uid and
//! `DaemonConfig::max_connections` in all. At a limit, the oldest
//! connection that has not finished its handshake (under the same uid for
//! the per-user limit) is dropped to make room: a real client finishes its
//! handshake within milliseconds, so only silent connections go. When
//! every connection held has finished its handshake, the newcomer is
//! refused with an error telling it why.
//!
//! A connection that does not finish its handshake within
//! [`DaemonLimits::handshake_timeout`], or on which no byte moves for
//! [`DaemonLimits::idle_timeout`] (between requests, or a request that
//! stalls), is closed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// Timeouts and the per-user connection limit of the daemon socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonLimits {
    /// Longest time from accept to the end of the handshake: 10 s.
    pub handshake_timeout: Duration,
    /// Longest time with no byte moving on a connection: 1 hour. Nix keeps
    /// a connection to its daemon for its whole run, idle while it
    /// evaluates, so this is long by default.
    pub idle_timeout: Duration,
    /// Most connections held at once for one peer uid: 64.
    pub max_connections_per_user: usize,
}

impl Default for DaemonLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            max_connections_per_user: 64,
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The peer's uid holds its share, every one past its handshake.
    PerUser,
    /// The socket holds its maximum, every one past its handshake.
    Total,
}

impl Refusal {
    /// The message the refused client is sent.
    pub(crate) fn message(self, uid: u32) -> String {
        match self {
            Refusal::PerUser => {
                format!("storefs daemon: too many connections from uid {uid}; close some and retry")
            }
            Refusal::Total => "storefs daemon: too many connections; retry later".to_owned(),
        }
    }
}

struct Held {
    uid: u32,
    /// Still in the handshake, so evictable.
    greeting: bool,
    evict: CancellationToken,
}

#[derive(Default)]
struct State {
    next: u64,
    /// By admission order, oldest first.
    held: BTreeMap<u64, Held>,
    by_uid: HashMap<u32, usize>,
}

impl State {
    fn remove(&mut self, seq: u64) -> Option<Held> {
        let h = self.held.remove(&seq)?;
        if let Some(n) = self.by_uid.get_mut(&h.uid) {
            *n -= 1;
            if *n == 0 {
                self.by_uid.remove(&h.uid);
            }
        }
        Some(h)
    }

    /// Drop the oldest connection still in its handshake (of `uid`, if
    /// given); whether there was one.
    fn evict_oldest_greeting(&mut self, uid: Option<u32>) -> bool {
        let victim = self
            .held
            .iter()
            .find(|(_, h)| h.greeting && uid.is_none_or(|u| u == h.uid))
            .map(|(seq, _)| *seq);
        match victim.and_then(|seq| self.remove(seq)) {
            Some(h) => {
                h.evict.cancel();
                true
            }
            None => false,
        }
    }
}

/// The connections held, by uid.
pub(crate) struct Admission {
    per_user: usize,
    total: usize,
    state: Mutex<State>,
}

/// One admitted connection. `evicted` fires if it is dropped to make room;
/// the slot is given back when the ticket is dropped.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    seq: u64,
    /// Cancelled when the connection must go.
    pub evicted: CancellationToken,
}

impl Admission {
    pub(crate) fn new(per_user: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_user: per_user.max(1),
            total: total.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// Admit a connection from `uid`, making room if the limits call for
    /// it and someone can be dropped.
    pub(crate) fn admit(self: &Arc<Self>, uid: u32) -> Result<Ticket, Refusal> {
        let mut s = self.state.lock();
        if s.by_uid.get(&uid).copied().unwrap_or(0) >= self.per_user
            && !s.evict_oldest_greeting(Some(uid))
        {
            return Err(Refusal::PerUser);
        }
        if s.held.len() >= self.total && !s.evict_oldest_greeting(None) {
            return Err(Refusal::Total);
        }
        let seq = s.next;
        s.next += 1;
        let evict = CancellationToken::new();
        s.held.insert(
            seq,
            Held {
                uid,
                greeting: true,
                evict: evict.clone(),
            },
        );
        *s.by_uid.entry(uid).or_insert(0) += 1;
        Ok(Ticket {
            admission: self.clone(),
            seq,
            evicted: evict,
        })
    }

    /// Connections held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.state.lock().held.len()
    }
}

impl Ticket {
    /// The handshake is done: the connection is no longer dropped to make
    /// room.
    pub(crate) fn greeted(&self) {
        if let Some(h) = self.admission.state.lock().held.get_mut(&self.seq) {
            h.greeting = false;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.state.lock().remove(self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_connections_make_room_greeted_ones_do_not() {
        let a = Admission::new(2, 3);
        let t1 = a.admit(7).unwrap();
        let t2 = a.admit(7).unwrap();
        t2.greeted();
        // uid 7 is full: its oldest silent connection (t1) goes.
        let t3 = a.admit(7).unwrap();
        assert!(t1.evicted.is_cancelled());
        assert_eq!(a.held(), 2);
        drop(t1); // its task ends; nothing is given back twice
        assert_eq!(a.held(), 2);
        t3.greeted();
        // Both of uid 7's connections are greeted: refused.
        assert_eq!(a.admit(7).err(), Some(Refusal::PerUser));
        // Another uid still fits (3 in all), then the total is reached.
        let t4 = a.admit(8).unwrap();
        t4.greeted();
        assert_eq!(a.admit(9).err(), Some(Refusal::Total));
        drop(t2);
        let _t5 = a.admit(9).unwrap();
        assert!(!t3.evicted.is_cancelled() && !t4.evicted.is_cancelled());
    }

    #[test]
    fn total_limit_evicts_the_oldest_silent_connection_of_anyone() {
        let a = Admission::new(10, 2);
        let t1 = a.admit(1).unwrap();
        let t2 = a.admit(2).unwrap();
        let _t3 = a.admit(3).unwrap();
        assert!(t1.evicted.is_cancelled());
        assert!(!t2.evicted.is_cancelled());
    }
}
