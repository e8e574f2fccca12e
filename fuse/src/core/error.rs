//! What can go wrong inside the filesystem, and its one translation to errno.
//!
//! Every operation returns `Result<_, FsError>`; [`FsError::errno`] is the
//! only place that decides which errno the kernel (and so the program) sees.

use std::sync::Arc;
use std::time::Duration;

use storefs_castore::B3Digest;

use crate::core::Errno;

/// Why an operation failed. Cloneable so that one failed fetch can be handed
/// to every reader that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum FsError {
    /// The name is not in the directory (or not a store path we know).
    #[error("no such entry")]
    NotFound,
    /// The kernel named an inode we do not hold (never handed out, or forgotten).
    #[error("unknown inode {0}")]
    UnknownInode(u64),
    /// The kernel named a file handle we do not hold.
    #[error("unknown file handle {0}")]
    UnknownHandle(u64),
    /// A directory operation on something that is not a directory.
    #[error("inode {0} is not a directory")]
    NotDirectory(u64),
    /// A file operation on a directory.
    #[error("inode {0} is a directory")]
    IsDirectory(u64),
    /// A symlink operation on something that is not a symlink, or a file
    /// operation on a symlink.
    #[error("inode {0} has the wrong type for this operation")]
    WrongType(u64),
    /// The extended attribute does not exist on this inode.
    #[error("no such extended attribute")]
    NoXattr,
    /// Not an error: `open` answers ENOSYS so that the kernel stops sending
    /// FUSE_OPEN for files (it agreed to with FUSE_NO_OPEN_SUPPORT).
    #[error("open handled by the kernel")]
    NoOpen,
    /// Opening for writing on a read-only filesystem.
    #[error("read-only filesystem")]
    ReadOnly,
    /// Something a tree names is absent from the service: the store is
    /// inconsistent (or the remote lost it).
    #[error("{what} {digest} is missing from the store")]
    Missing {
        /// "blob", "chunk", "directory".
        what: &'static str,
        /// The digest that was asked for.
        digest: B3Digest,
    },
    /// Data arrived with the wrong length.
    #[error("{what} {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// "blob", "chunk", "chunk list".
        what: &'static str,
        /// The digest it was fetched by.
        digest: B3Digest,
        /// The length the tree or chunk list announces.
        expected: u64,
        /// The length that arrived.
        actual: u64,
    },
    /// A directory arrived that does not hash to the digest it was fetched by.
    #[error("directory {expected} arrived with digest {actual}")]
    DirectoryDigest {
        /// The digest asked for.
        expected: B3Digest,
        /// The digest of what arrived.
        actual: B3Digest,
    },
    /// The blob, directory or path info service failed.
    #[error("{0}")]
    Store(Arc<storefs_castore::Error>),
    /// An operation did not finish within the mount's timeout.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// The operation.
        what: &'static str,
        /// The deadline it missed.
        after: Duration,
    },
    /// Reading a streamed blob failed.
    #[error("reading blob {digest}: {message}")]
    Stream {
        /// The blob.
        digest: B3Digest,
        /// The I/O error's text.
        message: String,
    },
}

impl From<storefs_castore::Error> for FsError {
    fn from(value: storefs_castore::Error) -> Self {
        FsError::Store(Arc::new(value))
    }
}

impl FsError {
    /// The errno the kernel passes on to the program.
    pub(crate) fn errno(&self) -> Errno {
        match self {
            FsError::NotFound | FsError::UnknownInode(_) => libc::ENOENT,
            FsError::UnknownHandle(_) => libc::EBADF,
            FsError::NotDirectory(_) => libc::ENOTDIR,
            FsError::IsDirectory(_) => libc::EISDIR,
            FsError::WrongType(_) => libc::EINVAL,
            FsError::NoXattr => libc::ENODATA,
            FsError::ReadOnly => libc::EROFS,
            FsError::NoOpen => libc::ENOSYS,
            // Remote, integrity and timeout failures all look the same to a
            // program: the data cannot be had right now.
            FsError::Missing { .. }
            | FsError::SizeMismatch { .. }
            | FsError::DirectoryDigest { .. }
            | FsError::Store(_)
            | FsError::Timeout { .. }
            | FsError::Stream { .. } => libc::EIO,
        }
    }

    /// Whether this is an ordinary answer (a missing name, a missing xattr)
    /// rather than a failure worth logging.
    pub(crate) fn is_expected(&self) -> bool {
        matches!(
            self,
            FsError::NotFound | FsError::NoXattr | FsError::ReadOnly | FsError::NoOpen
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_failures_are_eio_and_names_are_enoent() {
        let d = B3Digest::of(b"x");
        assert_eq!(FsError::NotFound.errno(), libc::ENOENT);
        assert_eq!(FsError::UnknownInode(7).errno(), libc::ENOENT);
        assert_eq!(
            FsError::from(storefs_castore::Error::remote_msg("down")).errno(),
            libc::EIO
        );
        assert_eq!(
            FsError::Timeout {
                what: "read",
                after: Duration::from_secs(1)
            }
            .errno(),
            libc::EIO
        );
        assert_eq!(
            FsError::Missing {
                what: "chunk",
                digest: d
            }
            .errno(),
            libc::EIO
        );
        assert!(
            !FsError::Missing {
                what: "chunk",
                digest: d
            }
            .is_expected()
        );
        assert!(FsError::NotFound.is_expected());
    }
}
