//! What happens to an accepted connection before and around the protocol:
//! who the peer is and what it may do ([`super::peer`]), whether it is
//! admitted under the connection limits ([`super::admission`]), and the
//! handshake and idle timeouts.

use std::sync::Arc;

use futures::future::BoxFuture;
use storefs_castore::{Activity, Tracked};
use tokio::io::{BufReader, BufWriter};
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::admission::{Admission, Ticket};
use super::context::{Ctx, DaemonConfig};
use super::handshake::{TrustLevel, server_handshake};
use super::peer::{Access, Peer, UserList, classify};
use super::server::{Greeting, serve_one};
use crate::Services;

/// Refusals being told at once; past this, refused connections are
/// closed without a word.
const MAX_REFUSALS_IN_FLIGHT: usize = 16;

/// The daemon socket's doorkeeper.
pub(crate) struct Gate {
    shared: Arc<Shared>,
    admission: Arc<Admission>,
    refusing: Arc<Semaphore>,
}

struct Shared {
    services: Services,
    config: Arc<DaemonConfig>,
    trusted: UserList,
}

impl Gate {
    pub(crate) fn new(services: Services, config: DaemonConfig) -> Self {
        let admission = Admission::new(
            config.limits.max_connections_per_user,
            config.max_connections,
        );
        let trusted = config.trust.to_list();
        Self {
            shared: Arc::new(Shared {
                services,
                config: Arc::new(config),
                trusted,
            }),
            admission,
            refusing: Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT)),
        }
    }

    /// Decide on a connection just accepted: the task that serves it, or
    /// tells it why not; `None` if it was simply closed.
    pub(crate) fn accept(
        &self,
        stream: UnixStream,
        stop: watch::Receiver<bool>,
    ) -> Option<BoxFuture<'static, ()>> {
        let peer = match Peer::of(&stream) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "daemon socket: no peer credentials; connection closed");
                return None;
            }
        };
        match self.admission.admit(peer.uid) {
            Ok(ticket) => Some(Box::pin(serve_admitted(
                stream,
                peer,
                ticket,
                self.shared.clone(),
                stop,
            ))),
            Err(refusal) => {
                let msg = refusal.message(peer.uid);
                tracing::info!(uid = peer.uid, pid = ?peer.pid, "daemon socket: {msg}");
                let permit = self.refusing.clone().try_acquire_owned().ok()?;
                Some(Box::pin(refuse(
                    stream,
                    self.shared.config.clone(),
                    msg,
                    permit,
                )))
            }
        }
    }
}

/// Serve an admitted connection under its peer's access and the timeouts.
async fn serve_admitted(
    stream: UnixStream,
    peer: Peer,
    ticket: Ticket,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let uid = peer.uid;
    // User and group lookups may block (NSS).
    let s = shared.clone();
    let decided = tokio::task::spawn_blocking(move || {
        let mut peer = peer;
        let access = classify(&mut peer, &s.trusted, &s.config.allowed_users);
        let who = match access {
            Access::Trusted => String::new(),
            _ => peer.describe(),
        };
        (access, who)
    })
    .await;
    let Ok((access, who)) = decided else {
        tracing::warn!(
            uid,
            "daemon socket: could not look the peer up; connection closed"
        );
        return;
    };
    let config = &shared.config;
    let (refusal, write_refusal) = match access {
        Access::Refused => {
            tracing::info!(uid, "daemon socket: {who} is not allowed to connect");
            let msg =
                format!("storefs daemon: {who} is not allowed to connect (see --allowed-users)");
            (Some(msg), None)
        }
        Access::ReadOnly => (
            None,
            (!config.untrusted_writes).then(|| {
                format!(
                    "storefs daemon: {who} is not a trusted user, so it may query and read \
                     but not upload (see --trusted-users)"
                )
            }),
        ),
        Access::Trusted => (None, None),
    };
    let ctx = Ctx {
        services: shared.services.clone(),
        config: config.clone(),
        write_refusal,
    };
    let activity = Activity::new();
    let (r, w) = stream.into_split();
    let r = Tracked::new(r, activity.clone());
    let w = Tracked::new(w, activity.clone());
    let greeting = Greeting {
        trusted: access == Access::Trusted,
        refusal,
        timeout: Some(config.limits.handshake_timeout),
    };
    let idle = config.limits.idle_timeout;
    tokio::select! {
        _ = serve_one(Box::new(r), Box::new(w), &ctx, greeting, stop, || ticket.greeted()) => {}
        _ = ticket.evicted.cancelled() => {
            tracing::debug!(uid, "daemon socket: dropped a silent connection to make room");
        }
        _ = activity.idle(idle) => {
            tracing::debug!(uid, "daemon socket: closed a connection idle for {idle:?}");
        }
    }
}

/// Tell a connection over the limits why, through the handshake, and
/// close it.
async fn refuse(
    stream: UnixStream,
    config: Arc<DaemonConfig>,
    msg: String,
    _permit: OwnedSemaphorePermit,
) {
    let (r, w) = stream.into_split();
    let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
    let _ = tokio::time::timeout(
        config.limits.handshake_timeout,
        server_handshake(
            &mut r,
            &mut w,
            &config.daemon_version,
            TrustLevel::NotTrusted,
            Some(&msg),
        ),
    )
    .await;
}
