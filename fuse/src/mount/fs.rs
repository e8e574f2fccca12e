//! The `fuser::Filesystem` implementation: thin callbacks that hand each
//! operation of the core ([`crate::core`]) to its bridge together with
//! fuser's reply, and turn the core's plain attributes and errnos into
//! fuser's. FUSE passthrough (`crate::mount::passthrough`) is this
//! adapter's own: it needs `/dev/fuse`.
//!
//! `batch_forget` keeps fuser's default, which calls [`Filesystem::forget`]
//! for each node (fuser does not export the type its signature names).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use crate::core::attr::negative;
use crate::core::bridge::Bridge;
use crate::core::error::FsError;
use crate::core::ops::FsInner;
use crate::core::{
    Attr, BLKSIZE, Core, FileKind, MAX_READ, NIX_MTIME, ROOT_INO, ROOT_NEGATIVE_TTL, TTL,
};
use crate::mount::passthrough::{Passthrough, open_flags};

/// The filesystem fuser runs.
pub(crate) struct StoreFs {
    inner: Arc<FsInner>,
    bridge: Arc<Bridge>,
    /// FUSE passthrough of files copied into the file cache, if the mount
    /// has one.
    passthrough: Option<Arc<Passthrough>>,
    /// Whether to ask the kernel for FUSE_NO_OPEN_SUPPORT.
    no_open: bool,
    /// Whether the kernel offered to skip FUSE_OPEN but passthrough needs
    /// opens: switch over should passthrough be turned off.
    no_open_possible: Arc<AtomicBool>,
}

impl StoreFs {
    /// The FUSE face of `core`.
    pub(crate) fn new(core: &Core, passthrough: Option<Passthrough>, no_open: bool) -> Self {
        Self {
            inner: Arc::clone(&core.inner),
            bridge: Arc::clone(&core.bridge),
            passthrough: passthrough.map(Arc::new),
            no_open,
            no_open_possible: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The core's errno as fuser's.
fn errno(e: crate::core::Errno) -> Errno {
    Errno::from_i32(e)
}

/// fuser's attributes for the core's.
fn file_attr(a: &Attr) -> FileAttr {
    let time = SystemTime::UNIX_EPOCH + NIX_MTIME;
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: a.blksize,
        flags: 0,
    }
}

/// fuser's file type for the core's.
fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::Directory => FileType::Directory,
        FileKind::RegularFile => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
    }
}

/// Answer an xattr request of `size` bytes with `value` (the size alone
/// when `size` is 0, ERANGE when it is too small).
fn reply_xattr(reply: ReplyXattr, size: u32, value: Result<Vec<u8>, FsError>) {
    match value {
        Err(e) => reply.error(errno(e.errno())),
        Ok(v) if size == 0 => reply.size(u32::try_from(v.len()).unwrap_or(u32::MAX)),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
    }
}

impl Filesystem for StoreFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each capability on its own: an old kernel lacking one still mounts.
        // Passthrough (see `crate::mount::passthrough`) needs the kernel's consent,
        // one level of stacking (the backing files are on a plain disk
        // filesystem) and CAP_SYS_ADMIN to register backing files.
        let passthrough = match &self.passthrough {
            Some(p) if may_register_backing_files() => {
                let granted = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                    && config.set_max_stack_depth(1).is_ok();
                if granted {
                    p.enable();
                } else {
                    tracing::info!(
                        "the kernel does not offer FUSE passthrough; reads go through the mount"
                    );
                }
                granted
            }
            Some(_) => {
                tracing::info!("FUSE passthrough needs CAP_SYS_ADMIN; reads go through the mount");
                false
            }
            None => false,
        };
        // Open files without a round trip: the kernel asks once, we answer
        // ENOSYS, and from then on it opens files itself (with keep-cache).
        // Passthrough is decided at open, so it keeps opens coming.
        if self.no_open
            && config
                .add_capabilities(InitFlags::FUSE_NO_OPEN_SUPPORT)
                .is_ok()
        {
            if passthrough {
                self.no_open_possible.store(true, Ordering::Relaxed);
            } else {
                self.inner.set_no_open();
            }
        }
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_MAX_PAGES,
        ] {
            if config.add_capabilities(flag).is_err() {
                tracing::debug!(?flag, "kernel lacks FUSE capability");
            }
        }
        // max_write also sets max_pages, which bounds reads: 1 MiB reads.
        let max = u32::try_from(MAX_READ).unwrap_or(u32::MAX);
        if let Err(nearest) = config.set_max_write(max) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(max) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = Bytes::copy_from_slice(name.as_bytes());
        let op = Arc::clone(&self.inner).lookup(parent.0, name);
        // A name absent from a directory of a store path stays absent (the
        // directory is immutable): the kernel may remember that (a negative
        // entry) as long as the entry itself. A store path may yet appear
        // in the root, so there briefly.
        let negative_ttl = if parent.0 == ROOT_INO {
            ROOT_NEGATIVE_TTL
        } else {
            TTL
        };
        self.bridge
            .run("lookup", op, reply, move |reply, r| match r {
                Ok(Some(attr)) => reply.entry(&TTL, &file_attr(&attr), Generation(0)),
                Ok(None) => reply.entry_with_ttls(
                    &Duration::ZERO,
                    &negative_ttl,
                    &file_attr(&negative()),
                    Generation(0),
                ),
                Err(e) => reply.error(errno(e)),
            });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inner.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inner.getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(e) => reply.error(errno(e.errno())),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.inner.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(e.errno())),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let open = Arc::clone(&self.inner).open(ino.0, write);
        let passthrough = self.passthrough.clone();
        // With passthrough, the file cache's copy of the file to pass
        // through to, if there is one (see `crate::mount::passthrough`).
        let op = async move {
            let opened = open.await?;
            let backing = match &passthrough {
                Some(p) => {
                    p.backing_for(ino.0, opened.digest, opened.size, &opened.layout)
                        .await
                }
                None => None,
            };
            Ok::<_, FsError>((opened.fh, backing))
        };
        let inner = Arc::clone(&self.inner);
        let passthrough = self.passthrough.clone();
        let no_open_possible = Arc::clone(&self.no_open_possible);
        self.bridge.run("open", op, reply, move |reply, r| match r {
            Ok((fh, backing)) => match &passthrough {
                Some(p) => {
                    // The kernel refused a backing file, and passthrough is
                    // off now: open without round trips from now on, as a
                    // mount without passthrough does, if the kernel offered.
                    if p.reply_open(reply, ino.0, fh, backing)
                        && no_open_possible.load(Ordering::Relaxed)
                    {
                        inner.set_no_open();
                    }
                }
                None => reply.opened(FileHandle(fh), open_flags()),
            },
            Err(e) => reply.error(errno(e)),
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let op = self.inner.read(ino.0, fh.0, offset, size);
        self.bridge.run("read", op, reply, |reply, r| match r {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // The inode's mode first: once `open_files` shows the release, the
        // inode is free for a passthrough open.
        if let Some(p) = &self.passthrough {
            p.release(ino.0);
        }
        self.inner.release(fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.inner.stats.count_flush();
        // Nothing to flush, ever. ENOSYS makes the kernel stop sending
        // FLUSH on every close (files opened without FUSE_OPEN cannot carry
        // FOPEN_NOFLUSH), which saves a round trip per close.
        reply.error(Errno::ENOSYS);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let op = Arc::clone(&self.inner).opendir(ino.0);
        self.bridge.run("opendir", op, reply, |reply, r| match r {
            Ok((fh, true)) => reply.opened(
                FileHandle(fh),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Ok((fh, false)) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let op = Arc::clone(&self.inner).readdir(ino.0, fh.0, offset);
        self.bridge
            .run("readdir", op, reply, |mut reply, r| match r {
                Ok(items) => {
                    for item in items {
                        let name = OsStr::from_bytes(&item.name);
                        let kind = file_type(item.kind);
                        if reply.add(INodeNo(item.ino), item.next_offset, kind, name) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(errno(e)),
            });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let inner = Arc::clone(&self.inner);
        let op = Arc::clone(&self.inner).readdirplus(ino.0, fh.0, offset);
        self.bridge
            .run("readdirplus", op, reply, move |mut reply, r| match r {
                Ok(items) => {
                    let mut full = false;
                    for item in items {
                        if !full {
                            let name = OsStr::from_bytes(&item.name);
                            full = reply.add(
                                INodeNo(item.attr.ino),
                                item.next_offset,
                                name,
                                &TTL,
                                &file_attr(&item.attr),
                                Generation(0),
                            );
                        }
                        // What did not fit never reaches the kernel: take its
                        // lookup back.
                        if full && item.counted {
                            inner.forget(item.attr.ino, 1);
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(errno(e)),
            });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.inner.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.inner.stats.snapshot().inodes;
        reply.statfs(0, 0, 0, files, 0, BLKSIZE, 255, BLKSIZE);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, size, self.inner.xattr(ino.0, name.as_bytes()));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, size, self.inner.xattr_names(ino.0));
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        match self.inner.kind(ino.0) {
            Some(_) => reply.ok(),
            None => reply.error(Errno::ENOENT),
        }
    }
}

/// Whether this process may register passthrough backing files: the
/// kernel asks for `CAP_SYS_ADMIN` (bit 21 of the effective set). Read
/// from `/proc/self/status`; unknown counts as no.
fn may_register_backing_files() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}
