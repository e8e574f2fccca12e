//! A running Nix daemon as an [`ImportSource`] (`storefs import --from
//! unix://…`): QueryPathInfo says what a path is, NarFromPath streams its
//! NAR. One connection, so one request at a time; a connection left out of
//! step by a failed NAR is dropped and the next request opens another.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use storefs_castore::{B3Digest, Node};

use super::client::DaemonClient;
use super::error::ConnectionError;
use super::protocol::ProtocolVersion;
use crate::Services;
use crate::StoreDir;
use crate::TrustedKeys;
use crate::import::{
    Found, ImportError, ImportOptions, ImportProgress, ImportReport, ImportSource, NarSink,
    PathImportError, Wanted, import_closure,
};
use crate::nar::NarIngested;

/// The protocol version we announce: 1.34 is what Nix 2.8 speaks, and
/// every daemon from 2.8 on accepts it.
const CLIENT_VERSION: ProtocolVersion = ProtocolVersion::new(1, 34);

/// A nix-daemon socket to import from.
pub struct DaemonSource {
    socket: PathBuf,
    keys: TrustedKeys,
    store_dir: StoreDir,
    /// The open connection; `None` after one failed mid-request.
    client: tokio::sync::Mutex<Option<DaemonClient>>,
}

impl DaemonSource {
    /// Connect to the daemon at `socket` and parse `options.trusted_keys`
    /// (`name:base64`). Paths are trusted as Nix's `require-sigs` does: a
    /// valid signature by a trusted key, or a content address that gives
    /// the path.
    pub async fn connect(socket: &Path, options: &ImportOptions) -> Result<Self, ImportError> {
        let keys = options.nix_keys()?;
        let client = DaemonClient::connect_with_version(socket, CLIENT_VERSION)
            .await
            .map_err(|e| ImportError::Connection {
                from: describe(socket),
                source: Box::new(e),
            })?;
        Ok(Self {
            socket: socket.to_owned(),
            keys,
            store_dir: options.store_dir.clone(),
            client: tokio::sync::Mutex::new(Some(client)),
        })
    }

    fn connection_error(&self, e: ConnectionError) -> PathImportError {
        PathImportError::Connection {
            from: describe(&self.socket),
            source: Box::new(e),
        }
    }

    /// The open client, reconnecting if the last one was dropped.
    async fn client<'a>(
        &self,
        slot: &'a mut Option<DaemonClient>,
    ) -> Result<&'a mut DaemonClient, ConnectionError> {
        match slot {
            Some(client) => Ok(client),
            None => Ok(slot
                .insert(DaemonClient::connect_with_version(&self.socket, CLIENT_VERSION).await?)),
        }
    }
}

fn describe(socket: &Path) -> String {
    format!("daemon at {}", socket.display())
}

#[async_trait]
impl ImportSource for DaemonSource {
    type Entry = ();

    fn concurrency(&self) -> usize {
        1
    }

    async fn list(&self) -> Result<Vec<Wanted>, ImportError> {
        let mut slot = self.client.lock().await;
        let conn_err = |e| ImportError::Connection {
            from: describe(&self.socket),
            source: Box::new(e),
        };
        let client = self.client(&mut slot).await.map_err(conn_err)?;
        let all = client.query_all_valid_paths().await.map_err(conn_err)?;
        all.iter()
            .map(|p| {
                let sp = self.store_dir.parse_path(p)?;
                Ok(Wanted {
                    digest: *sp.digest(),
                    path: Some(sp),
                })
            })
            .collect()
    }

    async fn lookup(&self, wanted: &Wanted) -> Result<Found<()>, PathImportError> {
        // Every path a daemon is asked for is known in full (its listing
        // and references give full paths).
        let Some(path) = &wanted.path else {
            return Err(PathImportError::NotValid);
        };
        let abs = path.to_absolute(&self.store_dir);
        let mut slot = self.client.lock().await;
        let client = self
            .client(&mut slot)
            .await
            .map_err(|e| self.connection_error(e))?;
        let raw = match client.query_path_info(&abs).await {
            Ok(Some(raw)) => raw,
            Ok(None) => return Err(PathImportError::NotValid),
            Err(e) => {
                if !matches!(e, ConnectionError::Remote(_)) {
                    *slot = None;
                }
                return Err(self.connection_error(e));
            }
        };
        // The node is a placeholder until the NAR is read.
        let placeholder = Node::File {
            digest: B3Digest::of(b""),
            size: 0,
            executable: false,
        };
        let info = raw
            .into_path_info(path.clone(), placeholder, &self.store_dir)
            .map_err(|e| PathImportError::BadMetadata {
                from: describe(&self.socket),
                source: Box::new(e),
            })?;
        Ok(Found { info, entry: () })
    }

    fn is_trusted(&self, found: &Found<()>, store_dir: &StoreDir) -> bool {
        found.info.is_trusted(&self.keys, store_dir)
    }

    async fn fetch_nar(
        &self,
        found: &Found<()>,
        sink: NarSink<'_>,
    ) -> Result<NarIngested, PathImportError> {
        let abs = found.info.store_path.to_absolute(&self.store_dir);
        let mut slot = self.client.lock().await;
        let client = self
            .client(&mut slot)
            .await
            .map_err(|e| self.connection_error(e))?;
        let nar = match client.nar_from_path(&abs, found.info.nar_size).await {
            Ok(nar) => nar,
            Err(e) => {
                *slot = None;
                return Err(self.connection_error(e));
            }
        };
        // The reader ends after the declared size: a shorter NAR leaves
        // bytes unread, a longer one is cut and fails to parse. Either way
        // the connection is out of step and is dropped.
        let result = sink.read_nar(nar).await;
        if !matches!(&result, Ok(n) if n.nar_size == found.info.nar_size) {
            *slot = None;
        }
        result.map_err(|source| PathImportError::BadNar { url: abs, source })
    }
}

/// Copy `paths` (full store paths or base names; none: every valid path
/// the daemon holds) and their closures from the Nix daemon listening on
/// `socket` into `services`: [`DaemonSource::connect`], then
/// [`import_closure`].
pub async fn import_from_daemon(
    socket: &Path,
    paths: &[String],
    options: ImportOptions,
    services: Services,
    progress: Arc<dyn ImportProgress>,
) -> Result<ImportReport, ImportError> {
    let source = DaemonSource::connect(socket, &options).await?;
    import_closure(Arc::new(source), paths, options, services, progress).await
}
