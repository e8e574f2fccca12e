//! The filesystem itself, whatever carries its requests: the store paths
//! under the root, inodes, attributes, lookups, listings, chunked reads with
//! read-ahead, the in-memory caches and the figures.
//!
//! Two transports sit on top: the FUSE mount ([`crate::mount()`], through
//! `fuser` and `/dev/fuse`) and the virtio-fs backend (`storefs-virtiofs`,
//! through vhost-user). Both speak the FUSE protocol, so the core speaks its
//! vocabulary (inode numbers, handles, offsets, lookup counts) in plain
//! types, and every failure reaches a transport as an errno
//! ([`Errno`]). Nothing here knows `fuser` or virtio.
//!
//! The operations are async functions (`ops`); [`Core`] runs them for a
//! transport through the one boundary between blocking threads and the
//! tokio runtime (`bridge`): the FUSE mount hands each operation and its
//! reply to the bridge, a thread-per-queue transport such as virtio-fs calls
//! the blocking methods of [`Core`].
//!
//! # Layout
//! - `ops`: the operations over shared state (root lookup, directory
//!   lookups, readdir(plus), open, read, xattrs).
//! - `bridge`: inline answer when ready, else a task with a semaphore and
//!   a backstop; blocking calls for thread transports.
//! - `deadline`: the `--timeout` of each call to a service.
//! - `inodes`: the inode table (lookup counts, forget).
//! - `attr`: attributes as Nix has them ([`Attr`]).
//! - `dircache`, `fetch`, `reader`: directories in memory; chunk cache,
//!   single-flight and read-ahead; positional reads.
//! - `stats`: [`MountStats`] / [`StatsSnapshot`].
//! - `error`: the one mapping of failures to errno.
//! - `blocking`: [`Core`]'s blocking methods.

pub(crate) mod attr;
mod blocking;
pub(crate) mod bridge;
pub(crate) mod deadline;
pub(crate) mod dircache;
pub(crate) mod error;
pub(crate) mod fetch;
pub(crate) mod inodes;
pub(crate) mod ops;
pub(crate) mod reader;
pub(crate) mod stats;

use std::sync::Arc;
use std::time::Duration;

use storefs_store::Services;
use tokio::runtime::Handle;

pub use attr::{Attr, BLKSIZE, FileKind, NIX_MTIME, ROOT_NEGATIVE_TTL, TTL};
pub use inodes::ROOT_INO;
pub use ops::{ListItem, PlusItem, UNKNOWN_INO};
pub use ops::{XATTR_BLOB, XATTR_DIRECTORY, XATTR_STATS};
pub use reader::MAX_READ;
pub use stats::{BlobOrigin, ExtraStats, MountStats, StatsSnapshot};

/// An errno (`libc::ENOENT`, ...): what every failed operation of the core
/// answers, for the transport to pass on to the guest or the kernel.
pub type Errno = i32;

/// What the core needs to know, whatever the transport. The FUSE mount
/// fills it from [`crate::MountConfig`]; `storefs virtiofs` from the same
/// flags.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CoreConfig {
    /// Whether `readdir` of the root lists every store path the path info
    /// service knows (`--list-root`); otherwise the root lists nothing and
    /// store paths appear only when looked up by name.
    pub list_root: bool,
    /// Deadline of every call to a service (`--timeout`): past it the
    /// operation that made it fails with EIO. Whole operations get a
    /// backstop of a few times this, counted from when they start working.
    pub timeout: Duration,
    /// Operations working on the tokio runtime at once.
    pub max_in_flight: usize,
    /// Bytes of recently read chunks kept in memory.
    pub chunk_cache_bytes: u64,
    /// Chunks fetched ahead of a sequential reader.
    pub readahead_chunks: usize,
    /// Read-ahead fetches in flight at once, over all files.
    pub readahead_in_flight: usize,
    /// Directory entries kept in memory.
    pub dir_cache_entries: usize,
    /// Where the blob service gets its bytes, so that the figures count as
    /// fetched only what came from a remote.
    pub blob_origin: BlobOrigin,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            list_root: false,
            timeout: Duration::from_secs(10),
            max_in_flight: 256,
            chunk_cache_bytes: 8 * 1024 * 1024,
            readahead_chunks: 8,
            readahead_in_flight: 16,
            dir_cache_entries: 16 * 1024,
            blob_origin: BlobOrigin::Remote,
        }
    }
}

/// Why a [`Core`] cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The configuration cannot work.
    #[error("invalid filesystem configuration: {0}")]
    Config(&'static str),
}

/// The filesystem over one store: its state and the bridge its operations
/// run through. Cheap to share (`Arc` inside); one per transport session
/// or shared by several.
pub struct Core {
    pub(crate) inner: Arc<ops::FsInner>,
    pub(crate) bridge: Arc<bridge::Bridge>,
}

impl Core {
    /// The filesystem over `services` (blob, directory and path info
    /// services), running its async work on `runtime`.
    pub fn new(
        config: &CoreConfig,
        services: &Services,
        runtime: Handle,
    ) -> Result<Self, CoreError> {
        if config.timeout.is_zero() {
            return Err(CoreError::Config("timeout must be more than zero"));
        }
        let stats = Arc::new(MountStats::new(config.blob_origin.clone()));
        let fetcher = Arc::new(fetch::Fetcher::new(
            Arc::clone(&services.blob),
            Arc::clone(&stats),
            runtime.clone(),
            config.timeout,
            config.chunk_cache_bytes,
            config.readahead_in_flight,
        ));
        let inner = Arc::new(ops::FsInner::new(
            Arc::clone(&services.directory),
            Arc::clone(&services.path_info),
            fetcher,
            Arc::clone(&stats),
            ops::InnerConfig {
                list_root: config.list_root,
                readahead_chunks: config.readahead_chunks,
                dir_cache_entries: config.dir_cache_entries,
                timeout: config.timeout,
            },
        ));
        let bridge = Arc::new(bridge::Bridge::new(
            runtime,
            config.max_in_flight,
            config.timeout,
            stats,
        ));
        Ok(Self { inner, bridge })
    }

    /// The live figures (also the root's `user.storefs.stats` xattr).
    pub fn stats(&self) -> Arc<MountStats> {
        Arc::clone(&self.inner.stats)
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("inodes", &self.inner.inodes.len())
            .finish_non_exhaustive()
    }
}
