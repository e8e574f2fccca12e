//! [`Core`]'s blocking methods: the filesystem for a transport that answers
//! each request on the thread that received it (the virtio-fs backend).
//! Each runs its operation through the bridge (`Bridge::call`), so the
//! deadline, the concurrency bound, the logging and the figures are those
//! of the FUSE mount. Plain types in, plain types out, errors as errno.

use std::sync::Arc;

use bytes::Bytes;

use crate::core::attr::{Attr, FileKind};
use crate::core::ops::{ListItem, PlusItem};
use crate::core::{Core, Errno};

impl Core {
    /// A new kernel is on the other side (a guest rebooted against the same
    /// backend): forget every inode, open file and listing of the old one.
    /// The caches and the figures stay.
    pub fn new_session(&self) {
        self.inner.new_session();
    }

    /// Tell the core that the kernel opens files without asking
    /// (`FUSE_NO_OPEN_SUPPORT` granted): the next `open` answers `ENOSYS`,
    /// after which reads arrive with handle 0.
    pub fn set_no_open(&self) {
        self.inner.set_no_open();
    }

    /// `lookup` of `name` in directory `parent`: its attributes (one lookup
    /// counted), or `None` when there is no such name (a negative entry the
    /// kernel may keep: [`crate::core::TTL`] below a store path,
    /// [`crate::core::ROOT_NEGATIVE_TTL`] in the root).
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<Attr>, Errno> {
        let op = Arc::clone(&self.inner).lookup(parent, Bytes::copy_from_slice(name));
        self.bridge.call("lookup", op)
    }

    /// `forget`: the kernel drops `n` lookups of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.inner.forget(ino, n);
    }

    /// `getattr`.
    pub fn getattr(&self, ino: u64) -> Result<Attr, Errno> {
        self.inner.getattr(ino).map_err(|e| e.errno())
    }

    /// `readlink`: the target of symlink `ino`.
    pub fn readlink(&self, ino: u64) -> Result<Bytes, Errno> {
        self.inner.readlink(ino).map_err(|e| e.errno())
    }

    /// `open` of file `ino` (`write`: opened for writing, refused with
    /// `EROFS`): a handle for [`Core::read`] and [`Core::release`].
    pub fn open(&self, ino: u64, write: bool) -> Result<u64, Errno> {
        let op = Arc::clone(&self.inner).open(ino, write);
        self.bridge.call("open", op).map(|o| o.fh)
    }

    /// `read` of up to `size` bytes at `offset` of file `ino` through
    /// handle `fh` (0: no handle). Fewer bytes only at the end of the file.
    pub fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Bytes, Errno> {
        let op = self.inner.read(ino, fh, offset, size);
        self.bridge.call("read", op)
    }

    /// `release` of handle `fh`.
    pub fn release(&self, fh: u64) {
        self.inner.release(fh);
    }

    /// `opendir` of `ino`: a handle, and whether the kernel may cache the
    /// listing (everything but the root, whose listing may grow).
    pub fn opendir(&self, ino: u64) -> Result<(u64, bool), Errno> {
        let op = Arc::clone(&self.inner).opendir(ino);
        self.bridge.call("opendir", op)
    }

    /// `readdir` of `ino` through handle `fh` from `offset` on (`.` and
    /// `..` first). Counts no lookups.
    pub fn readdir(&self, ino: u64, fh: u64, offset: u64) -> Result<Vec<ListItem>, Errno> {
        let op = Arc::clone(&self.inner).readdir(ino, fh, offset);
        self.bridge.call("readdir", op)
    }

    /// `readdirplus`: as [`Core::readdir`] with attributes; every entry
    /// whose `counted` is set counts one lookup, so an entry that does not
    /// reach the kernel must be given back with [`Core::forget`].
    pub fn readdirplus(&self, ino: u64, fh: u64, offset: u64) -> Result<Vec<PlusItem>, Errno> {
        let op = Arc::clone(&self.inner).readdirplus(ino, fh, offset);
        self.bridge.call("readdirplus", op)
    }

    /// `releasedir` of handle `fh`.
    pub fn releasedir(&self, fh: u64) {
        self.inner.releasedir(fh);
    }

    /// The value of extended attribute `name` of `ino`.
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, Errno> {
        self.inner.xattr(ino, name).map_err(|e| e.errno())
    }

    /// The extended attribute names of `ino`, each followed by NUL.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        self.inner.xattr_names(ino).map_err(|e| e.errno())
    }

    /// The type of `ino`, if it is held (`access` asks only that).
    pub fn kind(&self, ino: u64) -> Option<FileKind> {
        self.inner.kind(ino)
    }

    /// Inodes held now (`statfs`'s file count).
    pub fn inodes(&self) -> u64 {
        self.inner.stats.snapshot().inodes
    }
}
