//! Failures met while sending stored data, reported to the operator: data
//! loss in our own store (corrupt bytes, or a blob or directory a recorded
//! path needs that is not there) at error level, naming what is damaged;
//! anything else (a remote that went away) as a warning.

use storefs_castore::Error;

/// Log a failure in the middle of a NAR body.
pub(crate) fn log_nar_failure(e: &Error) {
    // The path's info was found, so a blob or directory the NAR needs and
    // cannot be had (InvalidRequest "... is missing from the store", a
    // wrong size) is damage as well.
    if e.is_data_loss() || matches!(e, Error::InvalidRequest(_)) {
        tracing::error!(error = %storefs_castore::Report(e), "DATA_LOSS: a NAR could not be rendered from this server's own store");
    } else {
        tracing::warn!(error = %storefs_castore::Report(e), "NAR body failed");
    }
}
