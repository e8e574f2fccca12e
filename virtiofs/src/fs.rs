//! The filesystem as fuse-backend-rs's virtio-fs server calls it: a thin
//! adapter from its `FileSystem` trait to the core's blocking methods
//! ([`storefs_fuse::core::Core`]), turning the core's plain attributes into
//! `stat64` and its errnos into `io::Error`s. Everything a store offers is
//! read-only; what the trait's defaults answer (`ENOSYS`) for writes stays.

use std::ffi::CStr;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileSystem, FsOptions, GetxattrReply, ListxattrReply, OpenOptions,
    ZeroCopyWriter,
};
use storefs_fuse::core::{
    Attr, BLKSIZE, Core, Errno, MAX_READ, NIX_MTIME, ROOT_INO, ROOT_NEGATIVE_TTL, TTL,
};

/// The filesystem the virtio-fs server runs.
pub(crate) struct StoreVirtioFs {
    core: Arc<Core>,
}

impl StoreVirtioFs {
    /// The virtio-fs face of `core`.
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

/// The core's errno as an `io::Error`.
fn err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// `stat64` for the core's attributes.
pub(crate) fn stat(a: &Attr) -> stat64 {
    // SAFETY: `stat64` is plain integers; all-zero bytes are a valid value.
    #[allow(unsafe_code)]
    let mut st: stat64 = unsafe { std::mem::zeroed() };
    let secs = i64::try_from(NIX_MTIME.as_secs()).unwrap_or(1);
    st.st_ino = a.ino;
    st.st_size = i64::try_from(a.size).unwrap_or(i64::MAX);
    st.st_blocks = i64::try_from(a.blocks).unwrap_or(i64::MAX);
    st.st_mode = a.mode();
    st.st_nlink = u64::from(a.nlink);
    st.st_blksize = i64::from(a.blksize);
    st.st_atime = secs;
    st.st_mtime = secs;
    st.st_ctime = secs;
    st
}

/// The entry for `attr`, valid (as everything in a store) for long.
fn entry(attr: &Attr) -> Entry {
    Entry {
        inode: attr.ino,
        generation: 0,
        attr: stat(attr),
        attr_flags: 0,
        attr_timeout: TTL,
        entry_timeout: TTL,
    }
}

/// A negative entry (inode 0): the kernel remembers the name as absent for
/// `ttl`.
fn negative(ttl: Duration) -> Entry {
    Entry {
        inode: 0,
        generation: 0,
        // SAFETY: as in `stat`.
        #[allow(unsafe_code)]
        attr: unsafe { std::mem::zeroed() },
        attr_flags: 0,
        attr_timeout: Duration::ZERO,
        entry_timeout: ttl,
    }
}

impl FileSystem for StoreVirtioFs {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        // A new guest kernel: nothing the last one looked up is held now.
        self.core.new_session();
        let want = FsOptions::ASYNC_READ
            | FsOptions::DO_READDIRPLUS
            | FsOptions::PARALLEL_DIROPS
            | FsOptions::CACHE_SYMLINKS
            | FsOptions::MAX_PAGES
            | FsOptions::ZERO_MESSAGE_OPEN;
        if capable.contains(FsOptions::ZERO_MESSAGE_OPEN) {
            // The guest opens files without asking (after one ENOSYS), and
            // keeps its page cache across opens.
            self.core.set_no_open();
        }
        Ok(want & capable)
    }

    fn destroy(&self) {
        self.core.new_session();
    }

    fn lookup(&self, _ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        match self.core.lookup(parent, name.to_bytes()).map_err(err)? {
            Some(attr) => Ok(entry(&attr)),
            // Absent below a store path stays absent (directories never
            // change); in the root a path may be added, so briefly.
            None if parent == ROOT_INO => Ok(negative(ROOT_NEGATIVE_TTL)),
            None => Ok(negative(TTL)),
        }
    }

    fn forget(&self, _ctx: &Context, inode: u64, count: u64) {
        self.core.forget(inode, count);
    }

    fn batch_forget(&self, _ctx: &Context, requests: Vec<(u64, u64)>) {
        for (inode, count) in requests {
            self.core.forget(inode, count);
        }
    }

    fn getattr(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        let attr = self.core.getattr(inode).map_err(err)?;
        Ok((stat(&attr), TTL))
    }

    fn readlink(&self, _ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        self.core.readlink(inode).map(|t| t.to_vec()).map_err(err)
    }

    fn open(
        &self,
        _ctx: &Context,
        inode: u64,
        flags: u32,
        _fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        let write = (flags & libc::O_ACCMODE as u32) != libc::O_RDONLY as u32;
        let fh = self.core.open(inode, write).map_err(err)?;
        Ok((Some(fh), OpenOptions::KEEP_CACHE, None))
    }

    fn read(
        &self,
        _ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        _lock_owner: Option<u64>,
        _flags: u32,
    ) -> io::Result<usize> {
        // The guest names the size: never more than its buffer holds, nor
        // more than the largest read we announced (1 MiB).
        let room = u32::try_from(w.available_bytes()).unwrap_or(u32::MAX);
        let cap = u32::try_from(MAX_READ).unwrap_or(u32::MAX);
        let size = size.min(room).min(cap);
        let data = self.core.read(inode, handle, offset, size).map_err(err)?;
        w.write_all(&data)?;
        Ok(data.len())
    }

    fn release(
        &self,
        _ctx: &Context,
        _inode: u64,
        _flags: u32,
        handle: u64,
        _flush: bool,
        _flock_release: bool,
        _lock_owner: Option<u64>,
    ) -> io::Result<()> {
        self.core.release(handle);
        Ok(())
    }

    fn statfs(&self, _ctx: &Context, _inode: u64) -> io::Result<statvfs64> {
        // SAFETY: `statvfs64` is plain integers; all-zero bytes are valid.
        #[allow(unsafe_code)]
        let mut st: statvfs64 = unsafe { std::mem::zeroed() };
        st.f_bsize = u64::from(BLKSIZE);
        st.f_frsize = u64::from(BLKSIZE);
        st.f_files = self.core.inodes();
        st.f_namemax = 255;
        Ok(st)
    }

    fn getxattr(
        &self,
        _ctx: &Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        let value = self.core.getxattr(inode, name.to_bytes()).map_err(err)?;
        sized(value, size).map(|v| match v {
            Sized::Count(n) => GetxattrReply::Count(n),
            Sized::Data(v) => GetxattrReply::Value(v),
        })
    }

    fn listxattr(&self, _ctx: &Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        let names = self.core.listxattr(inode).map_err(err)?;
        sized(names, size).map(|v| match v {
            Sized::Count(n) => ListxattrReply::Count(n),
            Sized::Data(v) => ListxattrReply::Names(v),
        })
    }

    fn opendir(
        &self,
        _ctx: &Context,
        inode: u64,
        _flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        let (fh, cacheable) = self.core.opendir(inode).map_err(err)?;
        let options = if cacheable {
            OpenOptions::CACHE_DIR | OpenOptions::KEEP_CACHE
        } else {
            OpenOptions::empty()
        };
        Ok((Some(fh), options))
    }

    fn readdir(
        &self,
        _ctx: &Context,
        inode: u64,
        handle: u64,
        _size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        for item in self.core.readdir(inode, handle, offset).map_err(err)? {
            let written = add_entry(DirEntry {
                ino: item.ino,
                offset: item.next_offset,
                type_: item.kind.dirent_type(),
                name: &item.name,
            })?;
            if written == 0 {
                break;
            }
        }
        Ok(())
    }

    fn readdirplus(
        &self,
        _ctx: &Context,
        inode: u64,
        handle: u64,
        _size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let items = self.core.readdirplus(inode, handle, offset).map_err(err)?;
        let mut full = false;
        let mut failed = None;
        for item in items {
            if !full && failed.is_none() {
                let dirent = DirEntry {
                    ino: item.attr.ino,
                    offset: item.next_offset,
                    type_: item.attr.kind.dirent_type(),
                    name: &item.name,
                };
                match add_entry(dirent, entry(&item.attr)) {
                    Ok(0) => full = true,
                    Ok(_) => continue,
                    Err(e) => failed = Some(e),
                }
            }
            // What did not reach the kernel: take its lookup back.
            if item.counted {
                self.core.forget(item.attr.ino, 1);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn releasedir(&self, _ctx: &Context, _inode: u64, _flags: u32, handle: u64) -> io::Result<()> {
        self.core.releasedir(handle);
        Ok(())
    }

    fn access(&self, _ctx: &Context, inode: u64, _mask: u32) -> io::Result<()> {
        match self.core.kind(inode) {
            Some(_) => Ok(()),
            None => Err(err(libc::ENOENT)),
        }
    }
}

/// An xattr answer for a buffer of `size` bytes.
enum Sized {
    /// Only the length was asked for (`size` 0).
    Count(u32),
    /// The value.
    Data(Vec<u8>),
}

/// The size alone when `size` is 0, `ERANGE` when the value does not fit.
fn sized(value: Vec<u8>, size: u32) -> io::Result<Sized> {
    let len = u32::try_from(value.len()).map_err(|_| err(libc::E2BIG))?;
    if size == 0 {
        Ok(Sized::Count(len))
    } else if len > size {
        Err(err(libc::ERANGE))
    } else {
        Ok(Sized::Data(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattr_sizes() {
        assert!(matches!(sized(b"abc".to_vec(), 0), Ok(Sized::Count(3))));
        assert!(matches!(sized(b"abc".to_vec(), 3), Ok(Sized::Data(v)) if v == b"abc"));
        assert_eq!(
            sized(b"abc".to_vec(), 2)
                .err()
                .and_then(|e| e.raw_os_error()),
            Some(libc::ERANGE)
        );
    }
}
