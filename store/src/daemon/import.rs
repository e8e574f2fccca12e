//! `storefs import --from unix://…`: copy closures from a running Nix
//! daemon (QueryPathInfo + NarFromPath) into castore and path info,
//! checking each NAR's size and sha256 against what the daemon declared.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use tokio::io::BufReader;

use super::client::DaemonClient;
use super::error::ConnectionError;
use super::protocol::ProtocolVersion;
use super::server::DaemonServices;
use crate::import::{ImportProgress, NoProgress};
use crate::nar::read_nar;
use crate::pathinfo::PathInfo;
use crate::signing::TrustedKeys;
use crate::store_path::{StoreDir, StorePath};

/// Why an import from a daemon failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Talking to the daemon failed.
    #[error("daemon at {socket}: {source}")]
    Connection {
        /// The socket.
        socket: String,
        /// What failed.
        source: ConnectionError,
    },
    /// A path is neither content-addressed nor signed by a trusted key,
    /// and signatures are checked.
    #[error("{0} lacks a signature by a trusted key (and is not content-addressed)")]
    Untrusted(String),
    /// A path asked for (or referenced) is not valid on the daemon.
    #[error("{0} is not valid on the source daemon")]
    NotValid(String),
    /// The daemon sent something that is not a valid path, hash or info.
    #[error("{path}: invalid metadata from the daemon: {reason}")]
    InvalidInfo {
        /// The store path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The NAR did not parse, or did not match the declared size or hash.
    #[error("{path}: {reason}")]
    BadNar {
        /// The store path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Our own services failed.
    #[error("{path}: storing: {source}")]
    Store {
        /// The store path.
        path: String,
        /// The service error.
        source: storefs_castore::Error,
    },
}

/// Which paths to import.
#[derive(Debug, Clone)]
pub enum ImportSelection {
    /// The closures of these paths (full paths or base names).
    Paths(Vec<String>),
    /// Everything the daemon holds (QueryAllValidPaths).
    All,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Paths copied in, references first.
    pub imported: Vec<StorePath>,
    /// Paths of the closure that were already present, left as they were.
    pub skipped: Vec<StorePath>,
    /// Total NAR bytes copied.
    pub nar_bytes: u64,
}

/// How to import from a daemon.
#[derive(Debug, Clone)]
pub struct DaemonImportOptions {
    /// Our store directory: the daemon's paths are parsed in it.
    pub store_dir: StoreDir,
    /// Require each path to be content-addressed (its content address
    /// gives its path) or signed by one of `trusted_keys`, as Nix's
    /// `require-sigs` does; off on the user's explicit word
    /// (`--no-check-sigs`). Checked before any NAR is fetched.
    pub check_sigs: bool,
    /// Keys whose signatures are accepted.
    pub trusted_keys: TrustedKeys,
}

/// Copy the closures of `selection` from the Nix daemon listening on
/// `socket` into `services`, without signature checks and without progress
/// reports: [`import_from_daemon_with`] with `check_sigs` off.
pub async fn import_from_daemon(
    socket: &Path,
    selection: ImportSelection,
    services: &DaemonServices,
    store_dir: &StoreDir,
) -> Result<ImportStats, ImportError> {
    let options = DaemonImportOptions {
        store_dir: store_dir.clone(),
        check_sigs: false,
        trusted_keys: TrustedKeys::default(),
    };
    import_from_daemon_with(socket, selection, services, &options, &NoProgress).await
}

/// Copy the closures of `selection` from the Nix daemon listening on
/// `socket` into `services`. Paths already present are skipped (their
/// references are still followed). Every NAR is parsed by the strict NAR
/// reader, and its size and sha256 must equal the daemon's path info, or
/// nothing of that path is recorded. The first failing path ends the
/// import (paths before it, its references among them, stay recorded).
pub async fn import_from_daemon_with(
    socket: &Path,
    selection: ImportSelection,
    services: &DaemonServices,
    options: &DaemonImportOptions,
    progress: &dyn ImportProgress,
) -> Result<ImportStats, ImportError> {
    let store_dir = &options.store_dir;
    let conn_err = |source| ImportError::Connection {
        socket: socket.display().to_string(),
        source,
    };
    // 1.34 is what Nix 2.8 speaks, and every daemon from 2.8 on accepts it.
    let mut client = DaemonClient::connect_with_version(socket, ProtocolVersion::new(1, 34))
        .await
        .map_err(conn_err)?;
    let roots: Vec<String> = match selection {
        ImportSelection::All => client.query_all_valid_paths().await.map_err(conn_err)?,
        ImportSelection::Paths(p) => p,
    };
    let parse = |s: &str| {
        store_dir
            .parse_path(s)
            .map_err(|e| ImportError::InvalidInfo {
                path: s.to_owned(),
                reason: e.to_string(),
            })
    };

    // Walk the closure, collecting every path's info.
    let mut infos: HashMap<StorePath, PathInfo> = HashMap::new();
    let mut todo: Vec<StorePath> = roots.iter().map(|s| parse(s)).collect::<Result<_, _>>()?;
    let mut seen: BTreeSet<StorePath> = todo.iter().cloned().collect();
    while let Some(p) = todo.pop() {
        let abs = p.to_absolute(store_dir);
        let raw = client
            .query_path_info(&abs)
            .await
            .map_err(conn_err)?
            .ok_or_else(|| ImportError::NotValid(abs.clone()))?;
        let placeholder = storefs_castore::Node::File {
            digest: storefs_castore::B3Digest::of(b""),
            size: 0,
            executable: false,
        };
        let info = raw
            .into_path_info(p.clone(), placeholder, store_dir)
            .map_err(|e| ImportError::InvalidInfo {
                path: abs.clone(),
                reason: e.0,
            })?;
        for r in &info.references {
            if seen.insert(r.clone()) {
                todo.push(r.clone());
            }
        }
        infos.insert(p, info);
    }

    // References first, so that a reader never sees a path whose
    // references are missing.
    let order = topo_order(&infos);
    let mut stats = ImportStats::default();
    let mut to_copy = Vec::with_capacity(order.len());
    for p in order {
        let abs = p.to_absolute(store_dir);
        let present = services
            .path_info_service
            .get(*p.digest())
            .await
            .map_err(|source| ImportError::Store {
                path: abs.clone(),
                source,
            })?
            .is_some_and(|i| i.store_path == p);
        if present {
            stats.skipped.push(p);
            continue;
        }
        if let Some(info) = infos.get(&p) {
            if options.check_sigs && !info.is_trusted(&options.trusted_keys, store_dir) {
                return Err(ImportError::Untrusted(abs));
            }
            to_copy.push(p);
        }
    }
    progress.planned(
        to_copy.len() as u64,
        to_copy
            .iter()
            .filter_map(|p| infos.get(p))
            .map(|i| i.nar_size)
            .sum(),
    );
    for p in to_copy {
        let Some(mut info) = infos.remove(&p) else {
            continue;
        };
        let abs = p.to_absolute(store_dir);
        let nar = client
            .nar_from_path(&abs, info.nar_size)
            .await
            .map_err(conn_err)?;
        // The reader ends after the declared size: a shorter NAR fails
        // to parse, a longer one is cut and fails too. On any error the
        // client is dropped with the import, so nothing is left unread on
        // a connection that is used again.
        let mut nar = BufReader::new(nar);
        let ingested = read_nar(
            &mut nar,
            services.blob_service.as_ref(),
            services.directory_service.as_ref(),
        )
        .await
        .map_err(|e| ImportError::BadNar {
            path: abs.clone(),
            reason: e.to_string(),
        })?;
        if ingested.nar_size != info.nar_size {
            return Err(ImportError::BadNar {
                path: abs,
                reason: format!(
                    "NAR is {} bytes, the daemon declared {}",
                    ingested.nar_size, info.nar_size
                ),
            });
        }
        if ingested.nar_sha256 != info.nar_sha256 {
            return Err(ImportError::BadNar {
                path: abs,
                reason: format!(
                    "NAR hash mismatch: declared sha256:{}, got sha256:{}",
                    hex::encode(info.nar_sha256),
                    hex::encode(ingested.nar_sha256)
                ),
            });
        }
        info.node = ingested.root;
        stats.nar_bytes += info.nar_size;
        progress.nar_bytes(info.nar_size);
        services
            .path_info_service
            .put(info)
            .await
            .map_err(|source| ImportError::Store { path: abs, source })?;
        progress.path_done(&p, None);
        stats.imported.push(p);
    }
    Ok(stats)
}

/// The paths of `infos` ordered so each comes after its references (self
/// references and references outside the set are ignored).
fn topo_order(infos: &HashMap<StorePath, PathInfo>) -> Vec<StorePath> {
    let mut order = Vec::with_capacity(infos.len());
    let mut done: BTreeSet<&StorePath> = BTreeSet::new();
    // Expanded but not finished: a reference back to one of these is a
    // cycle (Nix allows none but self references), which is not followed.
    let mut visiting: BTreeSet<&StorePath> = BTreeSet::new();
    let mut keys: Vec<&StorePath> = infos.keys().collect();
    keys.sort();
    for start in keys {
        // Iterative DFS: (path, whether its references were pushed).
        let mut stack = vec![(start, false)];
        while let Some((p, expanded)) = stack.pop() {
            if done.contains(p) {
                continue;
            }
            if expanded {
                done.insert(p);
                order.push(p.clone());
                continue;
            }
            if !visiting.insert(p) {
                continue;
            }
            stack.push((p, true));
            if let Some(info) = infos.get(p) {
                for r in &info.references {
                    if infos.contains_key(r) && !done.contains(r) && !visiting.contains(r) {
                        stack.push((r, false));
                    }
                }
            }
        }
    }
    order
}
