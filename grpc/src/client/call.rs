//! Deadlines, idle timeouts and retries around calls.

use std::future::Future;

use storefs_castore::Error;
use tonic::{Status, Streaming};

use super::Conn;
use crate::status::{from_status, is_transient};

/// Run `attempt` until it succeeds, fails for good, or the retries are
/// spent. Only transient failures (service unreachable, connection broken)
/// are retried, after an exponentially growing pause. Each attempt is bound
/// by the call deadline.
///
/// You must only use this for calls that may safely run twice (reads, and
/// writes of content-addressed data).
pub(crate) async fn retry<T, F, Fut>(conn: &Conn, mut attempt: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let cfg = &conn.config;
    let mut backoff = cfg.initial_backoff;
    let mut tries: u32 = 0;
    loop {
        let result = deadline(conn, attempt()).await;
        match result {
            Err(status) if is_transient(&status) && tries < cfg.retries => {
                tries += 1;
                tracing::debug!(
                    endpoint = %conn.name,
                    attempt = tries,
                    error = %status.message(),
                    "service unavailable; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.max_backoff);
            }
            other => return other,
        }
    }
}

/// `fut`, or `DEADLINE_EXCEEDED` once the call deadline has passed.
pub(crate) async fn deadline<T>(
    conn: &Conn,
    fut: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let limit = conn.config.call_timeout;
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within {limit:?}"
        ))),
    }
}

/// The next message of a stream, or `DEADLINE_EXCEEDED` if none comes
/// within the idle timeout.
pub(crate) async fn next_message<T>(
    conn: &Conn,
    stream: &mut Streaming<T>,
) -> Result<Option<T>, Status> {
    let limit = conn.config.idle_timeout;
    match tokio::time::timeout(limit, stream.message()).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "stream idle for {limit:?}"
        ))),
    }
}

/// A request with the call deadline announced to the server too.
pub(crate) fn request<T>(conn: &Conn, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(conn.config.call_timeout);
    req
}

/// A status from `op` as the castore error the traits return, naming the
/// endpoint.
pub(crate) fn error(conn: &Conn, op: &str, status: &Status) -> Error {
    from_status(&format!("{} {op}", conn.name), status)
}
