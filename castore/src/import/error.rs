//! What can go wrong while ingesting a local tree.

use std::path::PathBuf;

use crate::{Error, NameError, SymlinkTargetError};

/// Why [`ingest_path`](super::ingest_path) failed. Every variant that is
/// about one file names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// Reading the file system failed (stat, readdir, readlink, open, read).
    #[error("cannot read {path}")]
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A device file, socket or fifo: castore (like NAR) has no such node.
    #[error(
        "cannot ingest {path}: it is a {kind}, only regular files, directories and symlinks can be stored"
    )]
    UnsupportedFileType {
        /// The offending path.
        path: PathBuf,
        /// What it is: "fifo", "socket", "block device", "character device".
        kind: &'static str,
    },
    /// The path has no usable final component (`/`), and no name was given.
    #[error("cannot name the entry for {path}: it has no file name; give a name explicitly")]
    NoName {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// A file name is not a valid castore name (for example, longer than
    /// 255 bytes).
    #[error("invalid name {path}")]
    InvalidName {
        /// The path whose last component is at fault.
        path: PathBuf,
        /// The broken rule.
        source: NameError,
    },
    /// A symlink's target is not valid in castore (empty or over 4095 bytes).
    #[error("invalid symlink target at {path}")]
    InvalidSymlinkTarget {
        /// The symlink.
        path: PathBuf,
        /// The broken rule.
        source: SymlinkTargetError,
    },
    /// Storing a file's contents failed.
    #[error("cannot store contents of {path}")]
    Blob {
        /// The file being stored.
        path: PathBuf,
        /// The blob service's error.
        source: Error,
    },
    /// Storing the directories failed.
    #[error("cannot store directories of {path}")]
    Directory {
        /// The root being ingested.
        path: PathBuf,
        /// The directory service's error.
        source: Error,
    },
    /// A worker task died (panicked or was cancelled); a bug, not bad input.
    #[error("ingest task for {path} failed")]
    TaskFailed {
        /// The path the task was working on.
        path: PathBuf,
        /// What the runtime reported.
        source: crate::BoxError,
    },
}
