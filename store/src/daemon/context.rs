//! What the daemon socket is configured with ([`DaemonConfig`], its
//! [`TrustPolicy`]) and what every op handler gets ([`Ctx`]): below the
//! server that builds them and the ops that use them.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::admission::DaemonLimits;
use super::error::OpError;
use super::peer::{UserList, UserSpec};
use super::wire;
use crate::PathInfo;
use crate::Services;
use crate::TrustedKeys;
use crate::{StoreDir, StorePath};

/// Who counts as a trusted client (Nix's `trusted-users`): trusted clients
/// may upload paths without signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustPolicy {
    /// Every client is trusted (a socket only its owner can open).
    Everyone,
    /// No client is trusted.
    Nobody,
    /// Clients whose peer uid is in the set.
    Uids(BTreeSet<u32>),
    /// Clients matching the list (uids, names, `@group`s; see [`UserList`]).
    Users(UserList),
}

impl TrustPolicy {
    /// The same policy as a user list.
    pub fn to_list(&self) -> UserList {
        match self {
            TrustPolicy::Everyone => UserList::anyone(),
            TrustPolicy::Nobody => UserList::default(),
            TrustPolicy::Uids(uids) => UserList::of(uids.iter().map(|u| UserSpec::Uid(*u))),
            TrustPolicy::Users(list) => list.clone(),
        }
    }
}

impl Default for TrustPolicy {
    /// root only, as Nix's default `trusted-users = root`.
    fn default() -> Self {
        TrustPolicy::Uids(BTreeSet::from([0]))
    }
}

/// How the daemon socket behaves.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The store directory that full paths on the wire must be in.
    pub store_dir: StoreDir,
    /// Which clients are trusted: they may upload (see [`classify`](super::classify)).
    pub trust: TrustPolicy,
    /// Which clients may connect at all (Nix's `allowed-users`; trusted
    /// ones always may). Default: anyone.
    pub allowed_users: UserList,
    /// Whether clients that are allowed but not trusted may upload paths
    /// that are content-addressed or signed by a trusted key, as Nix lets
    /// them. Default: no, untrusted clients are read-only.
    pub untrusted_writes: bool,
    /// Public keys (Nix's `trusted-public-keys`) whose signatures make an
    /// upload acceptable.
    pub trusted_public_keys: TrustedKeys,
    /// Whether uploads must be content-addressed or signed by one of
    /// `trusted_public_keys` unless a trusted client waives the check
    /// (Nix's `require-sigs`, true by default).
    pub require_sigs: bool,
    /// Whether uploads (AddToStoreNar, AddMultipleToStore, AddToStore,
    /// AddSignatures) are accepted at all.
    pub allow_writes: bool,
    /// Most connections held at once (see [`DaemonLimits`] for how the
    /// socket makes room).
    pub max_connections: usize,
    /// Timeouts and the per-user connection limit.
    pub limits: DaemonLimits,
    /// The version string sent to clients of 1.33 and later.
    pub daemon_version: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            store_dir: StoreDir::default(),
            trust: TrustPolicy::default(),
            allowed_users: UserList::anyone(),
            untrusted_writes: false,
            trusted_public_keys: TrustedKeys::default(),
            require_sigs: true,
            allow_writes: true,
            max_connections: wire::limits::DEFAULT_MAX_CONNECTIONS,
            limits: DaemonLimits::default(),
            daemon_version: format!("storefs {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// What every op handler gets: the services, the configuration and what
/// this connection may do.
pub(crate) struct Ctx {
    pub services: Services,
    pub config: Arc<DaemonConfig>,
    /// Why this connection may not upload, if it may not (an untrusted
    /// peer): the error every upload gets.
    pub write_refusal: Option<String>,
}

impl Ctx {
    /// `Ok` if this connection may record paths or signatures, else the
    /// error to answer the upload with.
    pub fn writable(&self) -> Result<(), OpError> {
        if let Some(why) = &self.write_refusal {
            return Err(OpError(why.clone()));
        }
        if self.config.allow_writes {
            Ok(())
        } else {
            Err(OpError::new(
                "storefs daemon: this socket is read-only; uploads are refused",
            ))
        }
    }

    /// Parse a full store path (or base name) sent by the client.
    pub fn parse_path(&self, s: &str) -> Result<StorePath, OpError> {
        self.config
            .store_dir
            .parse_path(s)
            .map_err(|e| OpError(format!("path '{s}' is not a valid store path: {e}")))
    }

    /// The full path in our store directory.
    pub fn abs(&self, p: &StorePath) -> String {
        p.to_absolute(&self.config.store_dir)
    }

    /// The path info of `p`, if it is valid (the name must match too).
    pub async fn lookup(&self, p: &StorePath) -> Result<Option<PathInfo>, OpError> {
        let info = self.services.path_info.get(*p.digest()).await?;
        Ok(info.filter(|i| i.store_path == *p))
    }

    /// The path info of `p`, or the error Nix gives for an invalid path
    /// (clients turn "is not valid" into InvalidPath).
    pub async fn require(&self, p: &StorePath) -> Result<PathInfo, OpError> {
        self.lookup(p)
            .await?
            .ok_or_else(|| OpError(format!("path '{}' is not valid", self.abs(p))))
    }
}
