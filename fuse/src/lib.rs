//! storefs-fuse: the read-only lazy filesystem over a root of store paths.
//!
//! A store path appears under the root when it is looked up by its base
//! name (`<hash>-<name>`): its hash part is asked of the
//! [`PathInfoService`](storefs_store::PathInfoService) and
//! the name must match. The first lookup fetches the path's whole directory
//! closure in one recursive call; after that its metadata is local. File
//! contents are fetched chunk by chunk, only as far as programs read them,
//! with read-ahead for sequential readers, single-flight fetches and an
//! in-memory chunk cache. Everything is immutable, so the kernel is told to
//! cache entries, attributes, pages, directories and symlinks for long.
//!
//! # Layout
//! - [`core`]: the filesystem whatever the transport: store paths under the
//!   root, inodes, attributes, lookups, listings, chunked reads with
//!   read-ahead, caches, figures ([`core::Core`]; plain types, errors as
//!   errno). The virtio-fs backend (`storefs-virtiofs`) is a second
//!   transport over it.
//! - `mount`: the FUSE transport: [`MountConfig`], [`mount()`],
//!   [`MountHandle`], [`Unmounter`] (stale mount clearing, lazy unmount),
//!   the thin `fuser::Filesystem` adapter, and FUSE passthrough of files
//!   copied whole into a [`storefs_castore::FileCache`] (the kernel reads
//!   them without us; `/dev/fuse` only).
//! - `memory`: malloc tunables that keep a long-running server's memory
//!   bounded.
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

pub mod core;
mod memory;
mod mount;

pub use crate::core::{BlobOrigin, ExtraStats, MountStats, StatsSnapshot};
pub use memory::{MALLOC_ARENAS, MMAP_THRESHOLD, bound_malloc};
pub use mount::{DEFAULT_MAX_INODES, MountConfig, MountError, MountHandle, Unmounter, mount};

/// Names of the extended attributes the mount offers.
pub mod xattr {
    /// On files: the hex BLAKE3 digest of the blob.
    pub const BLOB_DIGEST: &str = crate::core::ops::XATTR_BLOB;
    /// On directories: the hex BLAKE3 digest of the directory.
    pub const DIRECTORY_DIGEST: &str = crate::core::ops::XATTR_DIRECTORY;
    /// On the root: the mount's figures as JSON ([`crate::StatsSnapshot`]).
    pub const STATS: &str = crate::core::ops::XATTR_STATS;
}
