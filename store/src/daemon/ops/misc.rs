//! Options, roots, garbage collection and the other small ops: storefs has
//! no garbage collector and no build log store, so most of these only
//! acknowledge, and the ones that would claim work they cannot do refuse.

use super::{read_path, read_paths};
use crate::daemon::conn::Conn;
use crate::daemon::context::Ctx;
use crate::daemon::error::ConnectionError;
use crate::daemon::path_info::parse_signature;
use crate::daemon::wire::{self, FramedReader, limits};

/// SetOptions 19: 12 u64, then (≥1.12) overrides → nothing. Accepted and
/// ignored: nothing storefs does depends on a client's settings.
pub(super) async fn set_options(conn: &mut Conn) -> Result<(), ConnectionError> {
    for _ in 0..12 {
        wire::read_u64(&mut conn.r, "SetOptions field").await?;
    }
    if conn.minor() >= 12 {
        let overrides = wire::read_string_map(
            &mut conn.r,
            limits::MAX_OPTIONS,
            limits::MAX_STRING_LEN,
            "SetOptions overrides",
        )
        .await?;
        tracing::trace!(?overrides, "SetOptions");
    }
    conn.reply(&[]).await
}

/// QueryFailedPaths 24, BuiltinBuilders 80, SubstituteURLs 81 (Guix) → [].
pub(super) async fn empty_list(conn: &mut Conn) -> Result<(), ConnectionError> {
    conn.reply(&0u64.to_le_bytes()).await
}

/// ClearFailedPaths 25 (Guix): [P] → 1.
pub(super) async fn clear_failed_paths(conn: &mut Conn) -> Result<(), ConnectionError> {
    read_paths(conn).await?;
    conn.reply(&1u64.to_le_bytes()).await
}

/// FindRoots 14: → no roots (storefs has no garbage collector).
pub(super) async fn find_roots(conn: &mut Conn) -> Result<(), ConnectionError> {
    conn.reply(&0u64.to_le_bytes()).await
}

/// AddTempRoot 11: P → 1. Nothing is ever collected, so every root holds.
pub(super) async fn add_temp_root(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let outcome = ctx.parse_path(&path).map(|_| 1u64.to_le_bytes().to_vec());
    conn.finish(outcome).await
}

/// AddIndirectRoot 12: string link → 1.
pub(super) async fn add_indirect_root(conn: &mut Conn) -> Result<(), ConnectionError> {
    wire::read_string(&mut conn.r, limits::MAX_PATH_LEN, "root link").await?;
    conn.reply(&1u64.to_le_bytes()).await
}

/// AddPermRoot 47: P, string gcRoot → gcRoot.
pub(super) async fn add_perm_root(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let root = wire::read_string(&mut conn.r, limits::MAX_PATH_LEN, "gc root").await?;
    let outcome = ctx.parse_path(&path).map(|_| {
        let mut out = Vec::new();
        wire::put_str(&mut out, &root);
        out
    });
    conn.finish(outcome).await
}

/// EnsurePath 10: P → 1 if valid; an invalid path cannot be made valid.
pub(super) async fn ensure_path(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let outcome = async {
        ctx.require(&ctx.parse_path(&path)?).await?;
        Ok(1u64.to_le_bytes().to_vec())
    }
    .await;
    conn.finish(outcome).await
}

/// SyncWithGC 13, OptimiseStore 34: → 1 (nothing to wait for; a
/// content-addressed store is deduplicated already).
pub(super) async fn reply_one(conn: &mut Conn) -> Result<(), ConnectionError> {
    conn.reply(&1u64.to_le_bytes()).await
}

/// CollectGarbage 20: read the arguments, refuse.
pub(super) async fn collect_garbage(conn: &mut Conn) -> Result<(), ConnectionError> {
    wire::read_u64(&mut conn.r, "gc action").await?;
    read_paths(conn).await?;
    wire::read_u64(&mut conn.r, "ignoreLiveness").await?;
    wire::read_u64(&mut conn.r, "maxFreed").await?;
    for _ in 0..3 {
        wire::read_u64(&mut conn.r, "obsolete gc field").await?;
    }
    conn.error(
        "storefs daemon: garbage collection is not supported (storefs has no garbage collector)",
    )
    .await
}

/// VerifyStore 35: u64 checkContents, u64 repair → refused: storefs checks
/// contents against their digests on every read instead.
pub(super) async fn verify_store(conn: &mut Conn) -> Result<(), ConnectionError> {
    wire::read_u64(&mut conn.r, "checkContents").await?;
    wire::read_u64(&mut conn.r, "repair").await?;
    conn.error("storefs daemon: VerifyStore is not supported (contents are verified on every read)")
        .await
}

/// RegisterDrvOutput 42: read the realisation, refuse.
pub(super) async fn register_drv_output(conn: &mut Conn) -> Result<(), ConnectionError> {
    if conn.minor() < 31 {
        wire::read_string(&mut conn.r, limits::MAX_STRING_LEN, "drv output id").await?;
        wire::read_string(&mut conn.r, limits::MAX_PATH_LEN, "output path").await?;
    } else {
        wire::read_string(&mut conn.r, limits::MAX_STRING_LEN, "realisation").await?;
    }
    conn.error(
        "storefs daemon: RegisterDrvOutput is not supported (no content-addressed derivations)",
    )
    .await
}

/// AddBuildLog 45: string drv, framed log → drained, refused.
pub(super) async fn add_build_log(conn: &mut Conn) -> Result<(), ConnectionError> {
    wire::read_string(&mut conn.r, limits::MAX_PATH_LEN, "derivation").await?;
    FramedReader::new(&mut conn.r)
        .drain()
        .await
        .map_err(|source| ConnectionError::Framing {
            op: "AddBuildLog",
            source,
        })?;
    conn.error("storefs daemon: AddBuildLog is not supported (storefs keeps no build logs)")
        .await
}

/// AddSignatures 37: P, [string] → 1, the signatures recorded beside the
/// ones the path has.
pub(super) async fn add_signatures(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let sigs = wire::read_strings(
        &mut conn.r,
        limits::MAX_SIGNATURES,
        limits::MAX_STRING_LEN,
        "signatures",
    )
    .await?;
    let outcome = async {
        ctx.writable()?;
        let mut info = ctx.require(&ctx.parse_path(&path)?).await?;
        for s in &sigs {
            let sig = parse_signature(s)?;
            if !info.signatures.contains(&sig) {
                info.signatures.push(sig);
            }
        }
        ctx.services.path_info.put(info).await?;
        Ok(1u64.to_le_bytes().to_vec())
    }
    .await;
    conn.finish(outcome).await
}
