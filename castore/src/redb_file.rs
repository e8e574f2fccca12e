//! The file under a [`crate::RedbStore`]'s database: redb's
//! [`redb::StorageBackend`] over a plain file, without redb's own lock, and
//! noting when the disk is full.
//!
//! Why not redb's `FileBackend`: after any I/O error (a full disk, above
//! all) a redb `Database` answers every later call, reads included, with
//! "Previous I/O error occurred" until it is dropped and opened again. A
//! cache must then open the file again *while* the old handle may still be
//! held by readers in flight, and redb's backend takes an exclusive
//! `flock` on its own file descriptor, which the new handle could not get
//! until the old one is gone. So the lock moves up: [`FileLock`] is taken
//! once per store and process (another process still gets "in use"), and
//! each database handle opens its own unlocked [`StoreFile`]. A handle that
//! has failed never writes again (redb checks its failure flag before
//! every write), so the old and the new handle never both write.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The exclusive lock on a store file, held for as long as any clone of
/// its store lives.
#[derive(Debug)]
pub(crate) struct FileLock {
    /// The locked descriptor; the lock goes with it.
    _file: File,
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another process (or another open in this one) holds it.
    Busy,
    /// Opening or locking failed otherwise.
    Io(io::Error),
}

impl FileLock {
    /// Create `path` if absent and lock it exclusively, without waiting.
    pub(crate) fn acquire(path: &Path) -> Result<Self, LockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(LockError::Io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Busy),
            Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(e)),
        }
    }
}

/// Whether a write to the store file has met a full disk (`ENOSPC` or
/// `EDQUOT`) since the flag was last cleared. Shared by every
/// [`StoreFile`] of one store.
#[derive(Debug, Default)]
pub(crate) struct DiskFull(AtomicBool);

impl DiskFull {
    /// Whether it happened; clears the flag.
    pub(crate) fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }

    fn note(&self, e: &io::Error) {
        if matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ) {
            self.0.store(true, Ordering::Release);
        }
    }
}

/// One database handle's view of the store file.
#[derive(Debug)]
pub(crate) struct StoreFile {
    file: File,
    full: Arc<DiskFull>,
}

impl StoreFile {
    /// Open `path` (created if absent) for one database handle.
    pub(crate) fn open(path: &Path, full: Arc<DiskFull>) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Self { file, full })
    }

    fn noted<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            self.full.note(e);
        }
        r
    }
}

impl redb::StorageBackend for StoreFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buffer = vec![0; len];
        self.file.read_exact_at(&mut buffer, offset)?;
        Ok(buffer)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let r = self.file.set_len(len);
        self.noted(r)
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        let r = self.file.sync_data();
        self.noted(r)
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let r = self.file.write_all_at(data, offset);
        self.noted(r)
    }
}
