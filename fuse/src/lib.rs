//! storefs-fuse: the read-only lazy filesystem over a root of store paths.
//!
//! A store path appears under the root when it is looked up by its base
//! name (`<hash>-<name>`): its hash part is asked of the
//! [`PathInfoService`](storefs_store::pathinfoservice::PathInfoService) and
//! the name must match. The first lookup fetches the path's whole directory
//! closure in one recursive call; after that its metadata is local. File
//! contents are fetched chunk by chunk, only as far as programs read them,
//! with read-ahead for sequential readers, single-flight fetches and an
//! in-memory chunk cache. Everything is immutable, so the kernel is told to
//! cache entries, attributes, pages, directories and symlinks for long.
//!
//! # Layout
//! - `mount`: [`MountConfig`], [`mount()`], [`MountHandle`], [`Unmounter`]
//!   (stale mount clearing, lazy unmount).
//! - `fs`: the `fuser::Filesystem` callbacks, each a few lines.
//! - `bridge`: the one boundary between FUSE threads and the tokio runtime
//!   (inline answer when ready, else a task with a semaphore and deadline).
//! - `ops`: the operations as async functions: root lookup, directory
//!   lookups, readdir(plus), open, xattrs.
//! - `inodes`: the inode table (lookup counts, forget).
//! - `attr`: attributes as Nix has them.
//! - `dircache`, `fetch`, `reader`: directories in memory; chunk cache,
//!   single-flight and read-ahead; positional reads.
//! - `passthrough`: FUSE passthrough of files copied whole into a
//!   [`storefs_castore::FileCache`]: the kernel reads them without us.
//! - `stats`: [`MountStats`] / [`StatsSnapshot`], also readable as the
//!   `user.storefs.stats` xattr of the root.
//! - `error`: the one mapping of failures to errno.
//!
//! # Limits worth knowing
//! - A large blob stored unchunked (over 16 MiB, as snix may store one) is
//!   streamed through `open_read` and skipped to the offset; its bytes are
//!   checked against the blob digest only when a reader reaches its end.
//! - With `no_open` (the default) the kernel opens files without asking, so
//!   a file whose blob is missing fails at its first read, not at open.
//! - The root reports `st_nlink` 1 ("unknown", as btrfs does): its
//!   subdirectories are not known without listing every store path.
//! - Plain `readdir` (rare: readdirplus is on) reports entries not yet
//!   looked up with `d_ino` 0xffffffff, as libfuse does.
//!
//! ```no_run
//! use storefs_fuse::{mount, MountConfig};
//!
//! fn serve(
//!     services: &storefs_store::Services,
//!     runtime: tokio::runtime::Handle,
//! ) -> Result<(), storefs_fuse::MountError> {
//!     let mut config = MountConfig::new("/nix/store");
//!     config.list_root = true;
//!     let handle = mount(config, services, runtime)?;
//!     println!("mounted; {} bytes fetched so far", handle.stats().snapshot().bytes_fetched);
//!     // Elsewhere, on SIGTERM: handle.unmounter().unmount()
//!     handle.wait()
//! }
//! ```
#![deny(missing_docs)]

mod attr;
mod bridge;
mod dircache;
mod error;
mod fetch;
mod fs;
mod inodes;
mod memory;
mod mount;
mod mountpoint;
mod ops;
mod passthrough;
mod reader;
mod stats;

pub use memory::{MALLOC_ARENAS, MMAP_THRESHOLD, bound_malloc};
pub use mount::{MountConfig, MountError, MountHandle, Unmounter, mount};
pub use stats::{BlobOrigin, MountStats, StatsSection, StatsSnapshot};

/// Names of the extended attributes the mount offers.
pub mod xattr {
    /// On files: the hex BLAKE3 digest of the blob.
    pub const BLOB_DIGEST: &str = crate::ops::XATTR_BLOB;
    /// On directories: the hex BLAKE3 digest of the directory.
    pub const DIRECTORY_DIGEST: &str = crate::ops::XATTR_DIRECTORY;
    /// On the root: the mount's figures as JSON ([`crate::StatsSnapshot`]).
    pub const STATS: &str = crate::ops::XATTR_STATS;
}
