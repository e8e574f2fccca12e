//! NarFromPath 38: the NAR of a path, rendered from castore as it streams.

use tokio::io::AsyncWriteExt;

use super::read_path;
use crate::daemon::conn::Conn;
use crate::daemon::context::Ctx;
use crate::daemon::error::ConnectionError;
use crate::daemon::protocol::STDERR_LAST;
use crate::nar::{NarWriteError, write_nar};

/// P → STDERR_LAST, then the raw NAR (no length, no framing). Validity is
/// checked before STDERR_LAST, since an error inside the NAR cannot be
/// reported: a failure there ends the connection.
pub(super) async fn nar_from_path(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let info = match async { ctx.require(&ctx.parse_path(&path)?).await }.await {
        Ok(info) => info,
        Err(e) => return conn.error(&e.0).await,
    };
    conn.w
        .write_all(&STDERR_LAST.to_le_bytes())
        .await
        .map_err(ConnectionError::Write)?;
    write_nar(
        &mut conn.w,
        &info.node,
        ctx.services.blob.as_ref(),
        ctx.services.directory.as_ref(),
    )
    .await
    .map_err(|e| {
        if is_data_loss(&e) {
            tracing::error!(path, error = %storefs_castore::Report(&e), "DATA_LOSS: a NAR could not be rendered from this daemon's own store");
        }
        ConnectionError::NarStream {
            path: path.clone(),
            source: e.into(),
        }
    })?;
    conn.flush().await
}

/// Whether a NAR of a valid path failed because our own store lacks or
/// holds damaged data for it (not because the client went away).
fn is_data_loss(e: &NarWriteError) -> bool {
    match e {
        NarWriteError::Io(_) => false,
        NarWriteError::BlobRead { source, .. } => source.kind() == std::io::ErrorKind::InvalidData,
        _ => true,
    }
}
