//! `storefs nar`: a path's NAR on stdout.

use anyhow::Context;
use storefs_store::StoreDir;
use storefs_store::nar::write_nar;
use tokio::io::AsyncWriteExt;

use crate::commands::lookup;
use crate::services::Services;

/// Write the NAR of `path` to stdout.
pub async fn run(services: &Services, store_dir: &StoreDir, path: &str) -> anyhow::Result<()> {
    let info = lookup(services, store_dir, path).await?;
    let mut out = tokio::io::stdout();
    write_nar(
        &mut out,
        &info.node,
        services.blob.as_ref(),
        services.directory.as_ref(),
    )
    .await
    .with_context(|| format!("writing the NAR of {path}"))?;
    out.flush().await.context("writing to stdout")?;
    Ok(())
}
