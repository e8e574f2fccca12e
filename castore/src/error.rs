//! The error every castore service returns.

use crate::digest::B3Digest;
use crate::directory::DirectoryError;

/// What can go wrong in a blob or directory service, local or remote.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Data did not hash to the digest it was asked for or announced under.
    /// Nothing carrying this error was handed on or cached.
    #[error("integrity error: {what} {expected} has digest {actual}")]
    Integrity {
        /// What was being checked: "blob", "chunk", "directory".
        what: &'static str,
        /// The digest it should have.
        expected: B3Digest,
        /// The digest it has.
        actual: B3Digest,
    },
    /// A directory, or a closure of them, breaks the model's rules.
    #[error("invalid directory {digest}: {source}")]
    InvalidDirectory {
        /// The directory at fault (its digest as announced or computed).
        digest: B3Digest,
        /// The broken rule.
        source: DirectoryError,
    },
    /// A request that the service refuses: a bad closure order, a missing
    /// child, an oversized message.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The backing storage failed (redb, the filesystem).
    #[error("storage error: {0}")]
    Storage(String),
    /// A remote service could not be reached or failed.
    #[error("remote error: {0}")]
    Remote(String),
    /// A call did not finish within its deadline.
    #[error("timed out: {0}")]
    Timeout(String),
    /// I/O on a local file or stream.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<Error> for std::io::Error {
    fn from(value: Error) -> Self {
        match value {
            Error::Io(e) => e,
            Error::Integrity { .. } | Error::InvalidDirectory { .. } => {
                std::io::Error::new(std::io::ErrorKind::InvalidData, value)
            }
            Error::Timeout(_) => std::io::Error::new(std::io::ErrorKind::TimedOut, value),
            other => std::io::Error::other(other),
        }
    }
}

/// Shorthand for a castore result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
