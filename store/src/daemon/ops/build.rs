//! BuildPaths and BuildPathsWithResults: storefs builds nothing, but Nix
//! asks to "build" paths that are already valid (`nix-store -r`, `nix copy
//! --from`), and those succeed.

use super::query::derived_path_base;
use crate::daemon::conn::Conn;
use crate::daemon::context::Ctx;
use crate::daemon::error::{ConnectionError, OpError};
use crate::daemon::protocol::BUILD_STATUS_ALREADY_VALID;
use crate::daemon::wire::{self, limits};

async fn read_targets(conn: &mut Conn) -> Result<(Vec<String>, u64), ConnectionError> {
    let targets = wire::read_strings(
        &mut conn.r,
        limits::MAX_LIST_COUNT,
        limits::MAX_PATH_LEN,
        "derived paths",
    )
    .await?;
    let mode = if conn.minor() >= 15 {
        wire::read_num(&mut conn.r, 2, "build mode").await?
    } else {
        0
    };
    Ok((targets, mode))
}

/// Succeed if every target is an opaque path that is valid; otherwise say
/// why not.
async fn check_all_valid(ctx: &Ctx, targets: &[String]) -> Result<(), OpError> {
    for t in targets {
        let (base, outputs) = derived_path_base(t);
        if outputs.is_some() {
            return Err(OpError(format!(
                "cannot build '{t}': storefs does not build derivations"
            )));
        }
        let p = ctx.parse_path(base)?;
        if ctx.lookup(&p).await?.is_none() {
            return Err(OpError(format!(
                "path '{base}' is not valid, and storefs cannot build or substitute it"
            )));
        }
    }
    Ok(())
}

/// BuildPaths 9: [DerivedPath], (≥1.15) u64 mode → 1.
pub(super) async fn build_paths(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let (targets, _mode) = read_targets(conn).await?;
    let outcome = check_all_valid(ctx, &targets)
        .await
        .map(|()| 1u64.to_le_bytes().to_vec());
    conn.finish(outcome).await
}

/// BuildPathsWithResults 46: [DerivedPath], u64 mode → KeyedBuildResults,
/// each AlreadyValid.
pub(super) async fn build_paths_with_results(
    conn: &mut Conn,
    ctx: &Ctx,
) -> Result<(), ConnectionError> {
    let (targets, _mode) = read_targets(conn).await?;
    let minor = conn.minor();
    let outcome = async {
        check_all_valid(ctx, &targets).await?;
        let mut out = Vec::new();
        wire::put_u64(&mut out, targets.len() as u64);
        for t in &targets {
            wire::put_str(&mut out, t);
            wire::put_u64(&mut out, BUILD_STATUS_ALREADY_VALID);
            wire::put_str(&mut out, ""); // errorMsg
            if minor >= 29 {
                wire::put_u64(&mut out, 0); // timesBuilt
                wire::put_bool(&mut out, false); // isNonDeterministic
                wire::put_u64(&mut out, 0); // startTime
                wire::put_u64(&mut out, 0); // stopTime
            }
            if minor >= 37 {
                wire::put_u64(&mut out, 0); // cpuUser: none
                wire::put_u64(&mut out, 0); // cpuSystem: none
            }
            if minor >= 28 {
                wire::put_u64(&mut out, 0); // builtOutputs: {}
            }
        }
        Ok(out)
    }
    .await;
    conn.finish(outcome).await
}
