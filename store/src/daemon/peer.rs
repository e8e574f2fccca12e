//! Who is on the other end of the daemon socket, and what they may do:
//! Nix's `allowed-users` / `trusted-users` model over the peer credentials
//! the kernel gives a unix socket (`SO_PEERCRED`).
//!
//! A user list holds uids (`1000`), user names (`alice`), groups
//! (`@wheel`: the peer's primary group, or a group that lists the peer's
//! user name as a member) and `*` (anyone). A connecting peer is
//! - **trusted** if it matches the trusted list: it may query, read and
//!   upload (and waive signature checks, as Nix's trusted users may);
//! - **allowed** if it is trusted or matches the allowed list: it may query
//!   and read; every upload is refused with an error naming the user;
//! - otherwise refused at the handshake with an error naming the user.
//!
//! Names and groups are looked up (through NSS, as `getpwuid`/`getgrnam`
//! do) when a peer connects, so changes to users and groups apply to the
//! next connection without a restart. An unknown name or group matches
//! nobody.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use nix::unistd::{Gid, Group, Uid, User};

/// One entry of a user list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum UserSpec {
    /// `*`: every peer.
    Anyone,
    /// A numeric uid.
    Uid(u32),
    /// A user name, matched against the peer uid's name.
    Name(String),
    /// `@group`: members of the group, by primary gid or membership list.
    Group(String),
}

/// Why a user list entry could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserSpecError {
    /// An empty entry, or `@` without a group name.
    #[error("empty user or group name in {0:?}")]
    Empty(String),
    /// A character no user or group name holds (whitespace, `:`, `,`, `/`).
    #[error("{entry:?} is not a user, uid, @group or *: bad character at byte {at}")]
    BadChar {
        /// The entry.
        entry: String,
        /// Where the bad character is.
        at: usize,
    },
}

impl FromStr for UserSpec {
    type Err = UserSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(UserSpec::Anyone);
        }
        let (group, name) = match s.strip_prefix('@') {
            Some(g) => (true, g),
            None => (false, s),
        };
        if name.is_empty() {
            return Err(UserSpecError::Empty(s.to_owned()));
        }
        if let Some(i) = name
            .bytes()
            .position(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b":,/".contains(&b))
        {
            return Err(UserSpecError::BadChar {
                entry: s.to_owned(),
                at: i + usize::from(group),
            });
        }
        Ok(match (group, name.parse::<u32>()) {
            (true, _) => UserSpec::Group(name.to_owned()),
            (false, Ok(uid)) => UserSpec::Uid(uid),
            (false, Err(_)) => UserSpec::Name(name.to_owned()),
        })
    }
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSpec::Anyone => f.write_str("*"),
            UserSpec::Uid(u) => write!(f, "{u}"),
            UserSpec::Name(n) => f.write_str(n),
            UserSpec::Group(g) => write!(f, "@{g}"),
        }
    }
}

/// A list of users, as `trusted-users` and `allowed-users` hold them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserList(BTreeSet<UserSpec>);

impl UserList {
    /// Parse entries separated by commas or whitespace (`root, @wheel 1000`).
    pub fn parse(text: &str) -> Result<Self, UserSpecError> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(UserList)
    }

    /// `*`: every peer.
    pub fn anyone() -> Self {
        UserList(BTreeSet::from([UserSpec::Anyone]))
    }

    /// The list of these entries.
    pub fn of(specs: impl IntoIterator<Item = UserSpec>) -> Self {
        UserList(specs.into_iter().collect())
    }

    /// Add an entry.
    pub fn insert(&mut self, spec: UserSpec) {
        self.0.insert(spec);
    }

    /// Whether the list is empty (matches nobody).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `peer` matches some entry. Looks names and groups up, which
    /// may block: call from a blocking context.
    pub(crate) fn matches(&self, peer: &mut Peer) -> bool {
        self.0.iter().any(|spec| match spec {
            UserSpec::Anyone => true,
            UserSpec::Uid(u) => *u == peer.uid,
            UserSpec::Name(n) => peer.name().is_some_and(|p| p == n),
            UserSpec::Group(g) => peer.in_group(g),
        })
    }
}

impl fmt::Display for UserList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

/// A connected peer: the credentials of the process that connected (at
/// connect time), and its user name once looked up.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
    /// Its process id, when the kernel gave one.
    pub pid: Option<i32>,
    name: Option<Option<String>>,
}

impl Peer {
    /// A peer with these credentials.
    pub fn new(uid: u32, gid: u32, pid: Option<i32>) -> Self {
        Self {
            uid,
            gid,
            pid,
            name: None,
        }
    }

    /// The credentials of the process on the other end of `stream`.
    pub fn of(stream: &tokio::net::UnixStream) -> std::io::Result<Self> {
        let c = stream.peer_cred()?;
        Ok(Self::new(c.uid(), c.gid(), c.pid()))
    }

    /// The peer's user name, looked up once (`None` if its uid has none).
    pub fn name(&mut self) -> Option<&str> {
        let uid = self.uid;
        self.name
            .get_or_insert_with(|| {
                User::from_uid(Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .as_deref()
    }

    /// Whether the peer belongs to group `group`: as its primary group at
    /// connect time, or listed as a member.
    fn in_group(&mut self, group: &str) -> bool {
        let Ok(Some(g)) = Group::from_name(group) else {
            return false;
        };
        if g.gid == Gid::from_raw(self.gid) {
            return true;
        }
        match self.name() {
            Some(name) => g.mem.iter().any(|m| m == name),
            None => false,
        }
    }

    /// How the peer is named in messages: `'alice' (uid 1000)`.
    pub fn describe(&mut self) -> String {
        let uid = self.uid;
        match self.name() {
            Some(n) => format!("user '{n}' (uid {uid})"),
            None => format!("uid {uid}"),
        }
    }
}

/// What a peer may do on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Refused at the handshake.
    Refused,
    /// Queries and reads only.
    ReadOnly,
    /// Everything, signature checks waivable.
    Trusted,
}

/// Decide what `peer` may do under the `trusted` and `allowed` lists
/// (trusted users are always allowed). May block on user lookups.
pub fn classify(peer: &mut Peer, trusted: &UserList, allowed: &UserList) -> Access {
    if trusted.matches(peer) {
        Access::Trusted
    } else if allowed.matches(peer) {
        Access::ReadOnly
    } else {
        Access::Refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_print() {
        let l = UserList::parse("root, @wheel 1000\t*").unwrap();
        assert_eq!(l.to_string(), "* 1000 root @wheel");
        assert_eq!(
            UserList::parse("@"),
            Err(UserSpecError::Empty("@".to_owned()))
        );
        assert!(matches!(
            UserList::parse("a:b"),
            Err(UserSpecError::BadChar { at: 1, .. })
        ));
        assert!(matches!(
            "@wh/eel".parse::<UserSpec>(),
            Err(UserSpecError::BadChar { at: 3, .. })
        ));
        assert!(UserList::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn root_matches_by_uid_name_and_group() {
        // uid 0 is root with primary group root (gid 0) on every Linux.
        let mut root = Peer::new(0, 0, None);
        assert_eq!(root.name(), Some("root"));
        for list in ["0", "root", "@root", "*", "nobody,root"] {
            let l = UserList::parse(list).unwrap();
            assert!(l.matches(&mut root), "{list}");
        }
        for list in ["1", "nobody", "@no-such-group-xyz", "no-such-user-xyz", ""] {
            let l = UserList::parse(list).unwrap();
            assert!(!l.matches(&mut root), "{list}");
        }
    }

    #[test]
    fn trusted_implies_allowed() {
        let mut p = Peer::new(4242, 4242, None);
        let trusted = UserList::parse("4242").unwrap();
        let none = UserList::default();
        assert_eq!(classify(&mut p, &trusted, &none), Access::Trusted);
        assert_eq!(
            classify(&mut p, &none, &UserList::anyone()),
            Access::ReadOnly
        );
        assert_eq!(classify(&mut p, &none, &none), Access::Refused);
        assert_eq!(p.describe(), "uid 4242");
    }
}
