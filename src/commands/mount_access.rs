//! Fail early: before mounting a remote store, check that it lets us read.
//!
//! A service started with `--read-token-file` refuses every read without
//! the token (or with a wrong one). Mounted anyway, every lookup would
//! fail with EIO and nothing would say why; so `storefs mount` asks once,
//! at startup, and refuses with one line. A service that cannot be reached
//! is not refused: the local cache may serve what it holds, and the mount
//! reconnects when the service comes back.

use std::time::Duration;

use anyhow::bail;
use storefs_castore::{B3Digest, Error, StoreUrl};

use crate::services::Services;

/// How long the startup check waits for the service.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Ask `far` (the services of `url`) for a blob's existence, a read like
/// any other; refuse if the service says we may not read.
pub async fn check(url: &StoreUrl, far: &Services) -> anyhow::Result<()> {
    // Any digest will do: a refused token is refused before the lookup.
    let probe = B3Digest::of(b"storefs mount access check");
    match tokio::time::timeout(CHECK_TIMEOUT, far.blob.has(&probe)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(Error::Io(e))) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "{url} refuses to let us read ({e}); give its read token with --token-file or \
             STOREFS_TOKEN"
        ),
        Ok(Err(e)) => {
            tracing::warn!(%url, error = %e, "cannot check access to the store now; mounting anyway");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(%url, "the store did not answer the access check in time; mounting anyway");
            Ok(())
        }
    }
}
