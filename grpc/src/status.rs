//! Translation of errors at the gRPC edge, once in each direction:
//! castore errors to `tonic::Status` on the server, statuses to castore
//! errors in the clients.

use std::io;

use storefs_castore::Error;
use tonic::{Code, Status};

/// A castore error raised while serving `op`, as the status sent back.
///
/// Integrity failures are `DataLoss`: the server's own store is damaged,
/// which is logged at error level (see [`data_loss`]).
/// A request the backend refuses is `InvalidArgument`.
pub(crate) fn to_status(op: &str, err: Error) -> Status {
    let msg = format!("{op}: {}", storefs_castore::Report(&err));
    if err.is_data_loss() {
        return data_loss(msg);
    }
    match err {
        Error::InvalidRequest(_) => Status::invalid_argument(msg),
        Error::Timeout { .. } => Status::deadline_exceeded(msg),
        Error::Remote { .. } => Status::unavailable(msg),
        _ => Status::internal(msg),
    }
}

/// `DataLoss` for `msg` (which names the call and the digest): the data in
/// this server's own store is corrupt or missing. An operator must hear of
/// it, so it is logged at error level, not only told to the client.
pub(crate) fn data_loss(msg: String) -> Status {
    tracing::error!(error = %msg, "DATA_LOSS: corrupt or missing data in this server's own store");
    Status::data_loss(msg)
}

/// An I/O error met while streaming a blob out, as a status.
pub(crate) fn io_to_status(op: &str, err: io::Error) -> Status {
    let msg = format!("{op}: {err}");
    match err.kind() {
        io::ErrorKind::InvalidData => data_loss(msg),
        io::ErrorKind::TimedOut => Status::deadline_exceeded(msg),
        _ => Status::internal(msg),
    }
}

/// A status received for `op` (naming the call and the endpoint), as the
/// castore error the client returns.
///
/// Refused credentials become an I/O `PermissionDenied` error, so callers can
/// tell them apart by kind without parsing messages.
pub(crate) fn from_status(op: &str, status: &Status) -> Error {
    let msg = format!("{op}: {}: {}", code_name(status.code()), status.message());
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => {
            Error::Io(io::Error::new(io::ErrorKind::PermissionDenied, msg))
        }
        Code::DeadlineExceeded => Error::timeout(msg, None),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            Error::InvalidRequest(msg)
        }
        _ => Error::remote_msg(msg),
    }
}

/// Whether a failed read may be retried: the service was unreachable or the
/// connection broke, so the request probably did not run.
pub(crate) fn is_transient(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown => is_transport(status),
        _ => false,
    }
}

/// Whether an `Unknown` status stems from the transport (hyper/h2) rather
/// than from the service.
fn is_transport(status: &Status) -> bool {
    use std::error::Error as _;
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<io::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The canonical upper-case name of a status code, as gRPC tools print it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefs_castore::B3Digest;

    #[test]
    fn integrity_is_data_loss() {
        let e = Error::Integrity {
            what: "chunk",
            expected: B3Digest::of(b"a"),
            actual: B3Digest::of(b"b"),
        };
        let s = to_status("Read", e);
        assert_eq!(s.code(), Code::DataLoss);
        assert!(s.message().starts_with("Read: integrity error: chunk"));
    }

    #[test]
    fn refused_token_is_permission_denied_io() {
        let e = from_status("Put", &Status::unauthenticated("no token"));
        match e {
            Error::Io(io) => assert_eq!(io.kind(), io::ErrorKind::PermissionDenied),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn only_unavailable_is_transient() {
        assert!(is_transient(&Status::unavailable("down")));
        assert!(!is_transient(&Status::not_found("x")));
        assert!(!is_transient(&Status::unknown("app said so")));
    }
}
