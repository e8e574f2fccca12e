//! The client's side of the daemon's stderr stream (log lines, activities,
//! results, then STDERR_LAST or an error): read by the handshake and by
//! every operation of [`super::client::DaemonClient`].

use tokio::io::AsyncRead;

use super::error::ConnectionError;
use super::protocol::{
    ProtocolVersion, STDERR_ERROR, STDERR_LAST, STDERR_NEXT, STDERR_RESULT, STDERR_START_ACTIVITY,
    STDERR_STOP_ACTIVITY,
};
use super::wire::{self, limits};

/// Read the daemon's stderr stream up to STDERR_LAST, logging what it
/// says; STDERR_ERROR becomes [`ConnectionError::Remote`].
pub(crate) async fn read_stderr<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    version: ProtocolVersion,
) -> Result<(), ConnectionError> {
    loop {
        let msg = wire::read_u64(r, "stderr message").await?;
        match msg {
            STDERR_LAST => return Ok(()),
            STDERR_NEXT => {
                let line = wire::read_string(r, limits::MAX_STRING_LEN, "log line").await?;
                tracing::debug!(daemon = %line.trim_end());
            }
            STDERR_START_ACTIVITY => {
                wire::read_u64(r, "activity id").await?;
                wire::read_u64(r, "activity level").await?;
                wire::read_u64(r, "activity type").await?;
                let text = wire::read_string(r, limits::MAX_STRING_LEN, "activity text").await?;
                read_fields(r).await?;
                wire::read_u64(r, "activity parent").await?;
                tracing::debug!(daemon_activity = %text);
            }
            STDERR_STOP_ACTIVITY => {
                wire::read_u64(r, "activity id").await?;
            }
            STDERR_RESULT => {
                wire::read_u64(r, "activity id").await?;
                wire::read_u64(r, "result type").await?;
                read_fields(r).await?;
            }
            STDERR_ERROR => {
                let msg = if version.minor() >= 26 {
                    wire::read_string(r, limits::MAX_STRING_LEN, "error type").await?;
                    wire::read_u64(r, "error level").await?;
                    wire::read_string(r, limits::MAX_STRING_LEN, "error name").await?;
                    let msg = wire::read_string(r, limits::MAX_STRING_LEN, "error message").await?;
                    wire::read_u64(r, "error position").await?;
                    let traces = wire::read_num(r, limits::MAX_OPTIONS, "error traces").await?;
                    for _ in 0..traces {
                        wire::read_u64(r, "trace position").await?;
                        wire::read_string(r, limits::MAX_STRING_LEN, "trace").await?;
                    }
                    msg
                } else {
                    let msg = wire::read_string(r, limits::MAX_STRING_LEN, "error message").await?;
                    wire::read_u64(r, "exit status").await?;
                    msg
                };
                return Err(ConnectionError::Remote(msg));
            }
            other => {
                return Err(ConnectionError::Unexpected {
                    what: "stderr message",
                    value: other,
                });
            }
        }
    }
}

async fn read_fields<R: AsyncRead + Unpin + ?Sized>(r: &mut R) -> Result<(), ConnectionError> {
    let n = wire::read_num(r, limits::MAX_OPTIONS, "activity fields").await?;
    for _ in 0..n {
        match wire::read_u64(r, "field kind").await? {
            0 => {
                wire::read_u64(r, "field value").await?;
            }
            1 => {
                wire::read_string(r, limits::MAX_STRING_LEN, "field value").await?;
            }
            other => {
                return Err(ConnectionError::Unexpected {
                    what: "field kind",
                    value: other,
                });
            }
        }
    }
    Ok(())
}
