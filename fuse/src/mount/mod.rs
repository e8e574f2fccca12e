//! Mounting: the configuration the CLI fills in, [`mount`], and the handle
//! that waits for or ends the mount.
//!
//! A stale mount at the mountpoint (its `stat` fails with `ENOTCONN`, left
//! by a process that died without unmounting) is detached first; a live
//! mount of any kind there is refused ([`MountError::Busy`]), since a mount
//! stacked on it would take it away when unmounted. As root fuser mounts
//! with mount(2); otherwise it goes through `fusermount3`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fuser::{BackgroundSession, MountOption, SessionACL};
use storefs_castore::FileCache;
use storefs_store::Services;
use tokio::runtime::Handle;

use crate::core::{BlobOrigin, Core, CoreConfig, CoreError, MountStats};
use crate::mount::fs::StoreFs;
use crate::mount::passthrough::Passthrough;

pub(crate) mod fs;
mod inode_bound;
mod mountpoint;
pub(crate) mod passthrough;

/// The default of [`MountConfig::max_inodes`]: about 15 MB of inode table,
/// which keeps the mount within 100 MB however much is walked; more than
/// the 57k entries of a Rust toolchain.
pub const DEFAULT_MAX_INODES: usize = 64 * 1024;

/// How to mount. Build it with [`MountConfig::new`] and change the fields
/// you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MountConfig {
    /// Where to mount (an existing directory).
    pub mountpoint: PathBuf,
    /// Whether `readdir` of the root lists every store path the path info
    /// service knows (`--list-root`); otherwise the root lists nothing and
    /// store paths appear only when looked up by name.
    pub list_root: bool,
    /// FUSE threads reading requests from the kernel (`--threads`). Slow
    /// work never runs on them, so a few suffice.
    pub threads: usize,
    /// Deadline of every operation that waits on a service (`--timeout`):
    /// past it the operation fails with EIO.
    pub timeout: Duration,
    /// Whether users other than the one mounting may use the mount
    /// (`--allow-other`; unprivileged, needs `user_allow_other` in
    /// /etc/fuse.conf).
    pub allow_other: bool,
    /// The store directory the mount serves (`--store-dir`), shown as the
    /// mount's source in /proc/mounts. The mount does not rewrite paths.
    pub store_dir: String,
    /// Operations working on the tokio runtime at once.
    pub max_in_flight: usize,
    /// Bytes of recently read chunks kept in memory (8 MiB: with the
    /// kernel's page cache in front and the local cache behind, more buys
    /// little and counts fully against the mount's memory bound).
    pub chunk_cache_bytes: u64,
    /// Chunks fetched ahead of a sequential reader.
    pub readahead_chunks: usize,
    /// Read-ahead fetches in flight at once, over all files.
    pub readahead_in_flight: usize,
    /// Let the kernel open files without asking us (FUSE_NO_OPEN_SUPPORT,
    /// where the kernel has it): a warm open then costs no round trip. The
    /// price: a file whose blob is missing fails at its first read rather
    /// than at open.
    pub no_open: bool,
    /// Directory entries kept in memory (16k: a few hundred bytes each;
    /// beyond that, directories are asked of the directory service again,
    /// which the CLI backs with a local cache).
    pub dir_cache_entries: usize,
    /// Where the blob service gets its bytes, so that the figures
    /// (`user.storefs.stats`) count as fetched only what came from a
    /// remote. Default: all of it is remote.
    pub blob_origin: BlobOrigin,
    /// Local copies of fully cached files, for FUSE passthrough (the CLI
    /// keeps them beside its disk cache, within its quota). Without one,
    /// every read goes through the mount.
    pub file_cache: Option<Arc<FileCache>>,
    /// Inodes the mount holds before it asks the kernel to drop the
    /// entries of its oldest directories (`--max-inodes`; 0: as many as
    /// the kernel keeps). About 230 bytes each; see docs/mount.md.
    pub max_inodes: usize,
    /// Whether to use FUSE passthrough for files in `file_cache`
    /// (`--no-passthrough` turns it off). Used only where the kernel
    /// offers it and the mount may register backing files (root);
    /// elsewhere the mount behaves as without it.
    pub passthrough: bool,
}

impl MountConfig {
    /// The defaults, mounting at `mountpoint`.
    pub fn new(mountpoint: impl Into<PathBuf>) -> Self {
        // The core's defaults are the mount's.
        let core = CoreConfig::default();
        Self {
            mountpoint: mountpoint.into(),
            list_root: core.list_root,
            threads: 2,
            timeout: core.timeout,
            allow_other: false,
            store_dir: "/nix/store".to_owned(),
            max_in_flight: core.max_in_flight,
            chunk_cache_bytes: core.chunk_cache_bytes,
            readahead_chunks: core.readahead_chunks,
            readahead_in_flight: core.readahead_in_flight,
            dir_cache_entries: core.dir_cache_entries,
            no_open: true,
            blob_origin: core.blob_origin,
            file_cache: None,
            max_inodes: DEFAULT_MAX_INODES,
            passthrough: true,
        }
    }

    /// The part of this configuration the filesystem core takes (the rest
    /// is the FUSE mount's own).
    pub fn core_config(&self) -> CoreConfig {
        CoreConfig {
            list_root: self.list_root,
            timeout: self.timeout,
            max_in_flight: self.max_in_flight,
            chunk_cache_bytes: self.chunk_cache_bytes,
            readahead_chunks: self.readahead_chunks,
            readahead_in_flight: self.readahead_in_flight,
            dir_cache_entries: self.dir_cache_entries,
            blob_origin: self.blob_origin.clone(),
        }
    }
}

/// Why mounting or unmounting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The configuration cannot work.
    #[error("invalid mount configuration: {0}")]
    Config(String),
    /// A stale mount at the mountpoint could not be detached.
    #[error("cannot clear the stale mount at {path}: {message}")]
    Stale {
        /// The mountpoint.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The mountpoint already holds a live mount (storefs or any other).
    #[error(
        "{path} already holds a live {fstype} mount{}; unmount it first or choose another mountpoint",
        device.as_ref().map(|s| format!(" of {s}")).unwrap_or_default()
    )]
    Busy {
        /// The mountpoint.
        path: PathBuf,
        /// The type of what is mounted there (`fuse.storefs`, `tmpfs`, ...).
        fstype: String,
        /// What is mounted there (the mount's source), if known.
        device: Option<String>,
    },
    /// The mount itself failed (no /dev/fuse, no fusermount3, not a
    /// directory, no permission).
    #[error("cannot mount at {path}")]
    Mount {
        /// The mountpoint.
        path: PathBuf,
        /// The error from mount(2) or fusermount3.
        source: std::io::Error,
    },
    /// Unmounting failed.
    #[error("cannot unmount {path}: {message}")]
    Unmount {
        /// The mountpoint.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The session ended with an error reading from the kernel.
    #[error("the mount at {path} ended with an error")]
    Session {
        /// The mountpoint.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Mount the store given by `services` (its blob, directory and path info
/// services) at `config.mountpoint`, running async work on `runtime`.
///
/// Returns once the kernel has initialised the mount: from then on it
/// serves requests on its own threads. You must keep the [`MountHandle`]
/// (dropping it unmounts) and call [`MountHandle::wait`] or
/// [`MountHandle::unmount`]; both block, so call them outside the runtime's
/// worker threads (e.g. in `spawn_blocking`). Signals are the caller's: on
/// SIGINT/SIGTERM call [`Unmounter::unmount`] (from
/// [`MountHandle::unmounter`]) and `wait` returns.
pub fn mount(
    config: MountConfig,
    services: &Services,
    runtime: Handle,
) -> Result<MountHandle, MountError> {
    let core =
        Core::new(&config.core_config(), services, runtime.clone()).map_err(|e| match e {
            CoreError::Config(message) => MountError::Config(message.to_owned()),
        })?;
    crate::memory::bound_malloc();
    clear_stale(&config.mountpoint)?;
    if let Some(live) = mountpoint::live_mount_at(&config.mountpoint) {
        return Err(MountError::Busy {
            path: config.mountpoint.clone(),
            fstype: live.fstype,
            device: live.source,
        });
    }
    let stats = core.stats();
    let passthrough = config
        .file_cache
        .clone()
        .filter(|_| config.passthrough)
        .map(|files| Passthrough::new(files, Arc::clone(&stats), runtime));
    let fs = StoreFs::new(&core, passthrough, config.no_open);

    let mut fuse_config = fuser::Config::default();
    fuse_config.mount_options = vec![
        MountOption::FSName("storefs".to_owned()),
        MountOption::Subtype("storefs".to_owned()),
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
        MountOption::Exec,
        MountOption::DefaultPermissions,
    ];
    fuse_config.acl = if config.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    let threads = config.threads.max(1);
    fuse_config.n_threads = Some(threads);
    fuse_config.clone_fd = threads > 1;

    let session = fuser::spawn_mount(fs, &config.mountpoint, &fuse_config).map_err(|source| {
        MountError::Mount {
            path: config.mountpoint.clone(),
            source,
        }
    })?;
    let inode_bound = (config.max_inodes > 0)
        .then(|| inode_bound::InodeBound::start(&core, session.notifier(), config.max_inodes))
        .flatten();
    tracing::info!(
        mountpoint = %config.mountpoint.display(),
        store_dir = %config.store_dir,
        "storefs mount ready"
    );
    Ok(MountHandle {
        mountpoint: config.mountpoint,
        session: Some(session),
        inode_bound,
        stats,
    })
}

/// A live mount. Dropping it unmounts (lazily) and waits for the session.
#[derive(Debug)]
pub struct MountHandle {
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
    /// Keeps the inodes within `max_inodes`; stopped before the session
    /// is joined.
    inode_bound: Option<inode_bound::InodeBound>,
    stats: Arc<MountStats>,
}

impl MountHandle {
    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The mount's live figures.
    pub fn stats(&self) -> Arc<MountStats> {
        Arc::clone(&self.stats)
    }

    /// Something that unmounts this mount from any thread (a signal
    /// handler task, say), making [`MountHandle::wait`] return.
    pub fn unmounter(&self) -> Unmounter {
        Unmounter {
            mountpoint: self.mountpoint.clone(),
        }
    }

    /// Block until the mount goes away (through [`Unmounter::unmount`],
    /// `umount`, `fusermount3 -u`, or the kernel aborting the connection).
    pub fn wait(mut self) -> Result<(), MountError> {
        self.join()
    }

    /// Unmount (lazily: programs still inside keep working until they leave)
    /// and wait for the session to end.
    ///
    /// The mount leaves the namespace at once, but the session ends only
    /// when the kernel lets go of it, which with files still open inside is
    /// when they are closed. A caller that must exit now can simply exit
    /// after [`Unmounter::unmount`]: the mount is already detached, and the
    /// process's exit closes the connection.
    pub fn unmount(mut self) -> Result<(), MountError> {
        lazy_unmount(&self.mountpoint)?;
        self.join()
    }

    fn join(&mut self) -> Result<(), MountError> {
        self.inode_bound = None;
        match self.session.take() {
            Some(session) => session.join().map_err(|source| MountError::Session {
                path: self.mountpoint.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if self.session.is_some() {
            if let Err(e) = lazy_unmount(&self.mountpoint) {
                tracing::warn!(error = %storefs_castore::Report(&e), "storefs mount: unmount on drop failed");
            }
            if let Err(e) = self.join() {
                tracing::warn!(error = %storefs_castore::Report(&e), "storefs mount: session ended with an error");
            }
        }
    }
}

/// Unmounts a mount from anywhere. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Unmounter {
    mountpoint: PathBuf,
}

impl Unmounter {
    /// Detach the mount (lazy unmount). Unmounting a mountpoint that is no
    /// longer mounted is not an error.
    pub fn unmount(&self) -> Result<(), MountError> {
        lazy_unmount(&self.mountpoint)
    }
}

/// Detach a stale FUSE mount at `path`, if there is one.
///
/// `stat` alone cannot tell: a dead mount's root attributes may still be in
/// the kernel's attribute cache (we give them long timeouts), so `stat`
/// succeeds from the cache. `statfs` is never cached and reaches the
/// connection, which answers `ENOTCONN` once its daemon is gone.
fn clear_stale(path: &Path) -> Result<(), MountError> {
    let stale = std::fs::metadata(path)
        .err()
        .and_then(|e| e.raw_os_error())
        .or_else(|| statfs_errno(path))
        == Some(libc::ENOTCONN);
    if !stale {
        return Ok(());
    }
    tracing::info!(mountpoint = %path.display(), "clearing stale mount");
    lazy_unmount(path).map_err(|e| MountError::Stale {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The errno of `statfs(path)`, or `None` if it succeeds.
fn statfs_errno(path: &Path) -> Option<i32> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: all-zero bytes are a valid `libc::statfs` (plain integers).
    #[allow(unsafe_code)]
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `buf` a valid,
    // exclusively borrowed statfs struct; both outlive the call, which only
    // writes into `buf`.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut buf) };
    if rc == 0 {
        None
    } else {
        std::io::Error::last_os_error().raw_os_error()
    }
}

/// Lazily unmount `path`: umount2(MNT_DETACH) when we may (root), else
/// `fusermount3 -uz` (or `fusermount -uz`).
fn lazy_unmount(path: &Path) -> Result<(), MountError> {
    let err = |message: String| MountError::Unmount {
        path: path.to_owned(),
        message,
    };
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| err("the path contains NUL".to_owned()))?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the
    // call; umount2 reads it and touches no memory of ours otherwise.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        return Ok(());
    }
    let errno = std::io::Error::last_os_error();
    if errno.raw_os_error() == Some(libc::EINVAL) {
        // Not a mount point (any more): nothing to do.
        return Ok(());
    }
    let mut last = format!("umount2: {errno}");
    for helper in ["fusermount3", "fusermount"] {
        match Command::new(helper)
            .args(["-u", "-z", "-q", "--"])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
        {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => last = format!("{helper}: {}", String::from_utf8_lossy(&out.stderr).trim()),
            Err(e) => last = format!("{helper}: {e}"),
        }
    }
    Err(err(last))
}
