//! The error every castore service returns.
//!
//! Every variant keeps what caused it as its [`source`](std::error::Error::source)
//! and never repeats it in its own text: print an error with [`Report`] (or
//! walk the sources) to see the whole story on one line.

use std::fmt;
use std::time::Duration;

use crate::digest::B3Digest;
use crate::directory::DirectoryError;

/// A cause of another crate's type, kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    #[error("invalid directory {digest}")]
    InvalidDirectory {
        /// The directory at fault (its digest as announced or computed).
        digest: B3Digest,
        /// The broken rule.
        #[source]
        source: DirectoryError,
    },
    /// A request that the service refuses: a bad closure order, a missing
    /// child, an oversized message.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The backing storage failed (redb, the filesystem), or holds a record
    /// it cannot read.
    #[error("storage error: {context}")]
    Storage {
        /// What was being done, on what.
        context: String,
        /// What failed underneath (redb, the filesystem), if anything did.
        #[source]
        source: Option<BoxError>,
    },
    /// A remote service could not be reached, failed, or answered wrongly.
    #[error("remote error: {context}")]
    Remote {
        /// The endpoint and call, and what went wrong with it.
        context: String,
        /// What failed underneath (the gRPC status, the transport), if
        /// anything did.
        #[source]
        source: Option<BoxError>,
    },
    /// A call did not finish within its deadline.
    #[error("timed out: {what}{}", after.map(|d| format!(" after {d:?}")).unwrap_or_default())]
    Timeout {
        /// The call that took too long.
        what: String,
        /// The deadline it had, when known here.
        after: Option<Duration>,
    },
    /// I/O on a local file or stream.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// [`Error::Storage`] caused by `source`.
    pub fn storage(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Storage {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// [`Error::Storage`] with nothing underneath (a record that does not
    /// decode, a task that stopped).
    pub fn storage_msg(context: impl Into<String>) -> Self {
        Error::Storage {
            context: context.into(),
            source: None,
        }
    }

    /// [`Error::Remote`] caused by `source`.
    pub fn remote(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Remote {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// [`Error::Remote`] with nothing underneath (a reply that breaks the
    /// protocol).
    pub fn remote_msg(context: impl Into<String>) -> Self {
        Error::Remote {
            context: context.into(),
            source: None,
        }
    }

    /// [`Error::Timeout`] of `what`.
    pub fn timeout(what: impl Into<String>, after: Option<Duration>) -> Self {
        Error::Timeout {
            what: what.into(),
            after,
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(value: Error) -> Self {
        match value {
            Error::Io(e) => e,
            Error::Integrity { .. } | Error::InvalidDirectory { .. } => {
                std::io::Error::new(std::io::ErrorKind::InvalidData, value)
            }
            Error::Timeout { .. } => std::io::Error::new(std::io::ErrorKind::TimedOut, value),
            other => std::io::Error::other(other),
        }
    }
}

/// An error and its sources on one line, joined by ": " (each error's text
/// says only its own part, so nothing repeats).
#[derive(Clone, Copy)]
pub struct Report<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Shorthand for a castore result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A copy of an error shared between several waiters on one operation
    /// (the original stays with the shared future): the same variant and
    /// text, its sources kept as text.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Integrity {
                what,
                expected,
                actual,
            } => Error::Integrity {
                what,
                expected: *expected,
                actual: *actual,
            },
            Error::InvalidDirectory { digest, source } => Error::InvalidDirectory {
                digest: *digest,
                source: source.clone(),
            },
            Error::InvalidRequest(m) => Error::InvalidRequest(m.clone()),
            Error::Storage { context, source } => Error::Storage {
                context: context.clone(),
                source: source.as_deref().map(copy_source),
            },
            Error::Remote { context, source } => Error::Remote {
                context: context.clone(),
                source: source.as_deref().map(copy_source),
            },
            Error::Timeout { what, after } => Error::Timeout {
                what: what.clone(),
                after: *after,
            },
            Error::Io(io) => Error::Io(std::io::Error::new(io.kind(), io.to_string())),
            #[allow(unreachable_patterns)] // a variant added later still maps
            other => Error::remote_msg(other.to_string()),
        }
    }
}

/// A source's text (and its own sources'), for a copy of the error.
fn copy_source(source: &(dyn std::error::Error + Send + Sync + 'static)) -> crate::BoxError {
    crate::Report(source).to_string().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_walks_the_sources_without_repeating_them() {
        let e = Error::storage("redb read chunk", std::io::Error::other("disk gone"));
        assert_eq!(e.to_string(), "storage error: redb read chunk");
        assert_eq!(
            Report(&e).to_string(),
            "storage error: redb read chunk: disk gone"
        );
        let t = Error::timeout("get blob", Some(Duration::from_secs(3)));
        assert_eq!(t.to_string(), "timed out: get blob after 3s");
        assert_eq!(std::io::Error::from(t).kind(), std::io::ErrorKind::TimedOut);
    }
}
