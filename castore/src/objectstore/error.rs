//! The few places object-store errors become castore errors, so that a
//! change of [`crate::Error`]'s shape touches only this file.

use object_store::path::Path;

use crate::Error;

/// An object whose bytes fail their check: names the key, and logs it
/// (an operator must be able to find the object to repair it).
pub(crate) fn corrupt(key: &Path, reason: &str) -> Error {
    tracing::error!(object = %key, reason, "corrupt object in the object store");
    Error::storage_msg(format!("object store: object {key} is corrupt: {reason}"))
}

/// A request to the object store that failed (other than "not found").
pub(crate) fn request(op: &str, key: &Path, e: object_store::Error) -> Error {
    Error::remote(format!("object store: {op} {key}"), e)
}

/// A blocking task that did not finish.
pub(crate) fn task(what: &str, e: tokio::task::JoinError) -> Error {
    Error::storage(format!("object store: {what}"), e)
}

/// An error and its causes on one line ([`crate::Report`]), for the
/// one-line reasons of [`super::OpenObjectStoreError`].
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::Report(e).to_string().replace('\n', " ")
}
