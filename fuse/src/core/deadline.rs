//! The deadline of one call to a service.
//!
//! Every call the core makes to its blob, directory or path info service
//! gets the mount's timeout on its own: a silent remote turns into
//! [`FsError::Timeout`] (EIO) after that long, however the call was reached.
//! Waiting locally — for a permit among the operations in flight, for room
//! among the bytes requested, for another reader's fetch of the same chunk —
//! is not a call and is not timed here: on a busy machine with many readers
//! that wait is slow progress, not a dead service. The bridge keeps a wider
//! backstop over whole operations (see `bridge`).

use std::future::Future;
use std::time::Duration;

use crate::core::error::FsError;
use crate::core::stats::{self, MountStats};

/// Run the service call `call` within `after`; `what` names it in the
/// error. A timeout is counted in `stats`.
pub(crate) async fn within<T, E>(
    stats: &MountStats,
    what: &'static str,
    after: Duration,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, FsError>
where
    FsError: From<E>,
{
    match tokio::time::timeout(after, call).await {
        Ok(r) => r.map_err(FsError::from),
        Err(_) => {
            stats::add(&stats.timeouts, 1);
            Err(FsError::Timeout { what, after })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_call_times_out_and_is_counted() {
        let stats = MountStats::default();
        let silent = futures::future::pending::<Result<(), FsError>>();
        let got = within(&stats, "probe", Duration::from_millis(20), silent).await;
        assert!(
            matches!(got, Err(FsError::Timeout { what: "probe", .. })),
            "{got:?}"
        );
        assert_eq!(stats.snapshot().timeouts, 1);
    }

    #[tokio::test]
    async fn answers_and_errors_pass_through_uncounted() {
        let stats = MountStats::default();
        let ok = within(&stats, "probe", Duration::from_secs(5), async {
            Ok::<_, FsError>(3)
        })
        .await;
        assert_eq!(ok.ok(), Some(3));
        let err = within(&stats, "probe", Duration::from_secs(5), async {
            Err::<(), _>(storefs_castore::Error::remote_msg("down"))
        })
        .await;
        assert!(matches!(err, Err(FsError::Store(_))), "{err:?}");
        assert_eq!(stats.snapshot().timeouts, 0);
    }
}
