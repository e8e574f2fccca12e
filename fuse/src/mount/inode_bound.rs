//! The bound on inodes a FUSE mount holds (`MountConfig::max_inodes`).
//!
//! The inode table follows what the kernel holds, and the kernel forgets an
//! inode only when it drops its dentries, which it does under memory
//! pressure: on a machine with memory to spare, walking a tree of a million
//! files keeps a million inodes in the mount. Past the bound, a thread of
//! its own asks the kernel to drop the entries of the oldest directories
//! (FUSE_NOTIFY_INVAL_ENTRY); the kernel then forgets the inodes below them
//! that no program holds open, and the table shrinks with its `forget`s.
//! What is dropped is looked up again when next used (from memory or the
//! local cache; the page cache of those files is lost).
//!
//! Not from a FUSE request thread: the kernel handles an invalidation under
//! the directory's lock, which a lookup being answered on the same thread
//! may hold.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::{INodeNo, Notifier};

use crate::core::Core;

/// How often the thread compares the table with the bound.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// The running bound; stops (and joins its thread) when dropped.
#[derive(Debug)]
pub(crate) struct InodeBound {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl InodeBound {
    /// Keep `core`'s inodes near `max`, dropping entries through
    /// `notifier`. `None` if the thread cannot be started (the mount then
    /// runs unbounded, as the kernel allows; logged).
    pub(crate) fn start(core: &Core, notifier: Notifier, max: usize) -> Option<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let inner = Arc::clone(&core.inner);
        let stats = core.stats();
        let stopping = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("storefs-inodes".to_owned())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::park_timeout(CHECK_EVERY);
                    for (parent, name) in inner.inodes.entries_to_drop(max) {
                        match notifier.inval_entry(INodeNo(parent), OsStr::from_bytes(&name)) {
                            Ok(()) => stats.count_entry_dropped(),
                            // The session is gone: nothing left to bound.
                            Err(e) if e.raw_os_error() == Some(libc::EBADF) => return,
                            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return,
                            Err(e) => {
                                tracing::debug!(error = %e, "dropping a kernel entry failed");
                            }
                        }
                    }
                }
            });
        match spawned {
            Ok(thread) => Some(Self {
                stop,
                thread: Some(thread),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the inode bound; inodes follow the kernel");
                None
            }
        }
    }
}

impl Drop for InodeBound {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
