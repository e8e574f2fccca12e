//! Per-op handlers. Each reads all of its arguments first (a failure there
//! ends the connection), then does the work and answers with STDERR_LAST
//! and the reply, or STDERR_ERROR, keeping the connection open.

mod add;
mod build;
mod misc;
mod nar;
mod query;

use super::conn::Conn;
use super::context::Ctx;
use super::error::ConnectionError;
use super::protocol::Op;
use super::wire::{self, limits};

/// Read the store path argument most ops start with.
pub(super) async fn read_path(conn: &mut Conn) -> Result<String, ConnectionError> {
    Ok(wire::read_string(&mut conn.r, limits::MAX_PATH_LEN, "store path").await?)
}

/// Read a set of store paths.
pub(super) async fn read_paths(conn: &mut Conn) -> Result<Vec<String>, ConnectionError> {
    Ok(wire::read_strings(
        &mut conn.r,
        limits::MAX_LIST_COUNT,
        limits::MAX_PATH_LEN,
        "store paths",
    )
    .await?)
}

/// Handle one request whose op word was `op`.
pub(crate) async fn dispatch(conn: &mut Conn, ctx: &Ctx, op: u64) -> Result<(), ConnectionError> {
    let Some(known) = Op::from_wire(op) else {
        return refuse_and_close(conn, "unknown", op).await;
    };
    tracing::trace!(op = ?known, "daemon request");
    use Op::*;
    match known {
        SetOptions => misc::set_options(conn).await,
        IsValidPath => query::is_valid_path(conn, ctx).await,
        QueryPathInfo => query::query_path_info(conn, ctx).await,
        QueryValidPaths => query::query_valid_paths(conn, ctx).await,
        QueryPathFromHashPart => query::query_path_from_hash_part(conn, ctx).await,
        QueryAllValidPaths => query::query_all_valid_paths(conn, ctx).await,
        QueryReferrers => query::query_referrers(conn, ctx).await,
        QueryValidDerivers => query::query_valid_derivers(conn, ctx).await,
        QueryReferences => query::query_references(conn, ctx).await,
        QueryPathHash => query::query_path_hash(conn, ctx).await,
        QueryDeriver => query::query_deriver(conn, ctx).await,
        QueryDerivationOutputs | QueryDerivationOutputNames => {
            query::empty_list_for_path(conn).await
        }
        QuerySubstitutablePaths => query::query_substitutable_paths(conn).await,
        QuerySubstitutablePathInfos => query::query_substitutable_path_infos(conn).await,
        QuerySubstitutablePathInfo => query::query_substitutable_path_info(conn).await,
        HasSubstitutes => query::has_substitutes(conn).await,
        QueryMissing => query::query_missing(conn, ctx).await,
        QueryDerivationOutputMap => query::query_derivation_output_map(conn).await,
        QueryRealisation => query::query_realisation(conn).await,
        QueryFailedPaths | BuiltinBuilders | SubstituteUrls => misc::empty_list(conn).await,
        ClearFailedPaths => misc::clear_failed_paths(conn).await,
        FindRoots => misc::find_roots(conn).await,
        AddTempRoot => misc::add_temp_root(conn, ctx).await,
        AddIndirectRoot => misc::add_indirect_root(conn).await,
        AddPermRoot => misc::add_perm_root(conn, ctx).await,
        EnsurePath => misc::ensure_path(conn, ctx).await,
        SyncWithGC | OptimiseStore => misc::reply_one(conn).await,
        CollectGarbage => misc::collect_garbage(conn).await,
        VerifyStore => misc::verify_store(conn).await,
        RegisterDrvOutput => misc::register_drv_output(conn).await,
        AddBuildLog => misc::add_build_log(conn).await,
        AddSignatures => misc::add_signatures(conn, ctx).await,
        NarFromPath => nar::nar_from_path(conn, ctx).await,
        AddToStoreNar => add::add_to_store_nar(conn, ctx).await,
        AddMultipleToStore => add::add_multiple_to_store(conn, ctx).await,
        AddToStore => add::add_to_store(conn, ctx).await,
        AddTextToStore => add::add_text_to_store(conn, ctx).await,
        BuildPaths => build::build_paths(conn, ctx).await,
        BuildPathsWithResults => build::build_paths_with_results(conn, ctx).await,
        other => refuse_and_close(conn, &format!("{other:?}"), op).await,
    }
}

/// Tell the client that `op` is not supported and end the connection: its
/// arguments have no generic length, so there is no way to skip them.
async fn refuse_and_close(conn: &mut Conn, name: &str, op: u64) -> Result<(), ConnectionError> {
    let msg = format!("storefs daemon: invalid operation {op} ({name}): not supported");
    conn.error(&msg).await?;
    Err(ConnectionError::UnsupportedOp {
        name: name.to_owned(),
        number: op,
    })
}
