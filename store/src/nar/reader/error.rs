//! Why a NAR was refused. Every variant names the byte offset (from the
//! start of the NAR) of the string or byte at fault.

use storefs_castore::{NameError, SymlinkTargetError};

/// Why [`read_nar`](super::read_nar) refused a NAR or could not store it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NarReadError {
    /// The stream does not start with `str("nix-archive-1")`.
    #[error("at byte {offset}: not a NAR (bad magic)")]
    BadMagic {
        /// Where the magic should be (0).
        offset: u64,
    },
    /// A string other than the one the grammar allows here.
    #[error("at byte {offset}: expected {expected}, found {found}")]
    UnexpectedToken {
        /// Where the string (its length word) starts.
        offset: u64,
        /// What the grammar allows here.
        expected: &'static str,
        /// What was there (a lossy rendering, or its length if too long).
        found: String,
    },
    /// A padding byte is not zero.
    #[error("at byte {offset}: non-zero padding")]
    NonZeroPadding {
        /// The first non-zero padding byte.
        offset: u64,
    },
    /// The stream ended inside the NAR.
    #[error("at byte {offset}: NAR truncated")]
    Truncated {
        /// Where the stream ended.
        offset: u64,
    },
    /// An entry name breaks the name rules (empty, `.`, `..`, `/`, NUL,
    /// over 255 bytes). Over-long names are refused before being read.
    #[error("at byte {offset}: invalid entry name")]
    InvalidName {
        /// Where the name string starts.
        offset: u64,
        /// The broken rule.
        source: NameError,
    },
    /// An entry name is not greater than the one before it.
    #[error("at byte {offset}: entry {name:?} is not sorted after {previous:?}")]
    NotSorted {
        /// Where the name string starts.
        offset: u64,
        /// The name out of place (lossy UTF-8).
        name: String,
        /// The name before it.
        previous: String,
    },
    /// An entry name equal to the one before it.
    #[error("at byte {offset}: duplicate entry {name:?}")]
    DuplicateName {
        /// Where the second name string starts.
        offset: u64,
        /// The name (lossy UTF-8).
        name: String,
    },
    /// A symlink target breaks the target rules (empty, NUL, over 4095
    /// bytes). Over-long targets are refused before being read.
    #[error("at byte {offset}: invalid symlink target")]
    InvalidSymlinkTarget {
        /// Where the target string starts.
        offset: u64,
        /// The broken rule.
        source: SymlinkTargetError,
    },
    /// Directories nest deeper than the limit.
    #[error("at byte {offset}: directories nest deeper than {max}")]
    TooDeep {
        /// Where the directory that is one too deep starts.
        offset: u64,
        /// The limit ([`MAX_DEPTH`](crate::nar::limits::MAX_DEPTH)).
        max: usize,
    },
    /// Bytes follow the NAR where the caller said the stream must end.
    #[error("at byte {offset}: trailing data after the NAR")]
    TrailingData {
        /// The first byte after the NAR.
        offset: u64,
    },
    /// Reading the stream failed.
    #[error("at byte {offset}: cannot read NAR")]
    Io {
        /// How far reading got.
        offset: u64,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Storing a file's contents failed.
    #[error("at byte {offset}: cannot store file contents")]
    Blob {
        /// Where the file's contents start (or end, for a failed close).
        offset: u64,
        /// The blob service's error.
        source: storefs_castore::Error,
    },
    /// Storing the directories failed.
    #[error("at byte {offset}: cannot store directory")]
    Directory {
        /// Where the directory's closing string ends.
        offset: u64,
        /// The directory service's error.
        source: storefs_castore::Error,
    },
}

impl NarReadError {
    /// The byte offset in the NAR the error is about.
    pub fn offset(&self) -> u64 {
        match self {
            NarReadError::BadMagic { offset }
            | NarReadError::UnexpectedToken { offset, .. }
            | NarReadError::NonZeroPadding { offset }
            | NarReadError::Truncated { offset }
            | NarReadError::InvalidName { offset, .. }
            | NarReadError::NotSorted { offset, .. }
            | NarReadError::DuplicateName { offset, .. }
            | NarReadError::InvalidSymlinkTarget { offset, .. }
            | NarReadError::TooDeep { offset, .. }
            | NarReadError::TrailingData { offset }
            | NarReadError::Io { offset, .. }
            | NarReadError::Blob { offset, .. }
            | NarReadError::Directory { offset, .. } => *offset,
        }
    }
}
