//! Flags of the front doors turned into their configs, and the words of
//! the startup lines `serve` and `mount` print for each listener.

use anyhow::Context;
use storefs_http::HttpLimits;
use storefs_store::daemon::DaemonLimits;
use storefs_store::daemon::{UserList, UserSpec};

use crate::cli::{DaemonAccessArgs, HttpLimitArgs};

/// What the daemon socket flags say.
pub struct DaemonSocket {
    /// Who may upload.
    pub trusted: UserList,
    /// Who may connect.
    pub allowed: UserList,
    /// The socket file's group, if one was asked for.
    pub group: Option<u32>,
    /// Timeouts and the per-user limit.
    pub limits: DaemonLimits,
}

/// Check the daemon socket flags.
pub fn daemon_access(args: &DaemonAccessArgs) -> anyhow::Result<DaemonSocket> {
    let trusted = if args.trusted_users.is_empty() {
        // Nix trusts root; the user running storefs owns the store anyway.
        UserList::of([
            UserSpec::Uid(0),
            UserSpec::Uid(nix::unistd::geteuid().as_raw()),
        ])
    } else {
        UserList::parse(&args.trusted_users.join(",")).context("--trusted-users")?
    };
    let allowed = if args.allowed_users.is_empty() {
        UserList::anyone()
    } else {
        UserList::parse(&args.allowed_users.join(",")).context("--allowed-users")?
    };
    let group = args
        .daemon_socket_group
        .as_deref()
        .map(group_id)
        .transpose()
        .context("--daemon-socket-group")?;
    let limits = DaemonLimits {
        handshake_timeout: args.daemon_handshake_timeout,
        idle_timeout: args.daemon_idle_timeout,
        max_connections_per_user: args.daemon_max_connections_per_user.max(1),
    };
    Ok(DaemonSocket {
        trusted,
        allowed,
        group,
        limits,
    })
}

/// A group given by gid or name.
fn group_id(g: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = g.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(g) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => anyhow::bail!("no group named {g:?}"),
        Err(e) => Err(e).with_context(|| format!("looking group {g:?} up")),
    }
}

/// The HTTP view's limits from its flags.
pub fn http_limits(args: &HttpLimitArgs) -> HttpLimits {
    HttpLimits {
        header_read_timeout: args.http_header_timeout,
        idle_timeout: args.http_idle_timeout,
        max_connections_per_ip: args.http_max_connections_per_ip.max(1),
        ..HttpLimits::default()
    }
}

/// How a listener's tokens read in its startup line. Without a write
/// token, gRPC writes follow the read token while HTTP is read-only.
pub fn token_summary(read: bool, write: bool, grpc: bool) -> &'static str {
    match (read, write, grpc) {
        (true, true, _) => "reads need the read token, writes the write token",
        (true, false, true) => "reads and writes need the read token",
        (true, false, false) => "reads need the read token; read-only",
        (false, true, _) => "reads open, writes need the write token",
        (false, false, true) => "no tokens: reads and writes open",
        (false, false, false) => "no tokens: reads open; read-only",
    }
}
