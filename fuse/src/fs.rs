//! The `fuser::Filesystem` implementation: thin callbacks that hand each
//! operation of [`crate::ops`] to the [`Bridge`] together with its reply.
//!
//! `batch_forget` keeps fuser's default, which calls [`Filesystem::forget`]
//! for each node (fuser does not export the type its signature names).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use crate::attr::{BLKSIZE, ROOT_NEGATIVE_TTL, TTL, negative};
use crate::bridge::Bridge;
use crate::inodes::ROOT_INO;
use crate::ops::FsInner;
use crate::passthrough::open_flags;
use crate::reader::MAX_READ;

/// The filesystem fuser runs.
pub(crate) struct StoreFs {
    inner: Arc<FsInner>,
    bridge: Bridge,
    /// Whether to ask the kernel for FUSE_NO_OPEN_SUPPORT.
    no_open: bool,
}

impl StoreFs {
    /// A filesystem over `inner`, running operations through `bridge`.
    pub(crate) fn new(inner: Arc<FsInner>, bridge: Bridge, no_open: bool) -> Self {
        Self {
            inner,
            bridge,
            no_open,
        }
    }
}

/// Answer an xattr request of `size` bytes with `value` (the size alone
/// when `size` is 0, ERANGE when it is too small).
fn reply_xattr(reply: ReplyXattr, size: u32, value: Result<Vec<u8>, crate::error::FsError>) {
    match value {
        Err(e) => reply.error(e.errno()),
        Ok(v) if size == 0 => reply.size(u32::try_from(v.len()).unwrap_or(u32::MAX)),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
    }
}

impl Filesystem for StoreFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each capability on its own: an old kernel lacking one still mounts.
        // Passthrough (see `crate::passthrough`) needs the kernel's consent,
        // one level of stacking (the backing files are on a plain disk
        // filesystem) and CAP_SYS_ADMIN to register backing files.
        let passthrough = match &self.inner.passthrough {
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
                self.inner.set_no_open_possible();
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
                Ok(Some(attr)) => reply.entry(&TTL, &attr, Generation(0)),
                Ok(None) => reply.entry_with_ttls(
                    &Duration::ZERO,
                    &negative_ttl,
                    &negative(),
                    Generation(0),
                ),
                Err(e) => reply.error(e),
            });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inner.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inner.getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.inner.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let inner = Arc::clone(&self.inner);
        let op = Arc::clone(&self.inner).open(ino.0, write);
        self.bridge.run("open", op, reply, move |reply, r| match r {
            Ok((fh, backing)) => match &inner.passthrough {
                Some(p) => {
                    if p.reply_open(reply, ino.0, fh, backing) {
                        inner.passthrough_refused();
                    }
                }
                None => reply.opened(FileHandle(fh), open_flags()),
            },
            Err(e) => reply.error(e),
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
            Err(e) => reply.error(e),
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
        self.inner.release(ino.0, fh.0);
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
            Err(e) => reply.error(e),
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
                        if reply.add(INodeNo(item.ino), item.next_offset, item.kind, name) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(e),
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
                                item.attr.ino,
                                item.next_offset,
                                name,
                                &TTL,
                                &item.attr,
                                Generation(0),
                            );
                        }
                        // What did not fit never reaches the kernel: take its
                        // lookup back.
                        if full && item.counted {
                            inner.forget(item.attr.ino.0, 1);
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(e),
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
