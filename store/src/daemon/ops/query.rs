//! Read-only queries about paths (docs/daemon-protocol.md).

use futures::{StreamExt, TryStreamExt};

use super::{read_path, read_paths};
use crate::daemon::conn::Conn;
use crate::daemon::context::Ctx;
use crate::daemon::error::{ConnectionError, OpError};
use crate::daemon::path_info::put_unkeyed;
use crate::daemon::wire::{self, limits};
use crate::{StorePath, parse_hash_part};

/// How many path lookups of one request run at once.
const LOOKUP_CONCURRENCY: usize = 32;

/// IsValidPath 1: P → bool.
pub(super) async fn is_valid_path(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let outcome = async {
        let p = ctx.parse_path(&path)?;
        let mut out = Vec::with_capacity(8);
        wire::put_bool(&mut out, ctx.lookup(&p).await?.is_some());
        Ok(out)
    }
    .await;
    conn.finish(outcome).await
}

/// QueryPathInfo 26: P → (≥1.17: valid flag) unkeyed path info. Guix has
/// no valid flag and no 1.16 fields; there, and below 1.17, an invalid
/// path is an error.
pub(super) async fn query_path_info(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let flag = !conn.is_guix() && conn.minor() >= 17;
    let with_1_16 = !conn.is_guix() && conn.minor() >= 16;
    let outcome = async {
        let p = ctx.parse_path(&path)?;
        let mut out = Vec::with_capacity(256);
        match ctx.lookup(&p).await? {
            Some(info) => {
                if flag {
                    wire::put_bool(&mut out, true);
                }
                put_unkeyed(&mut out, &info, &ctx.config.store_dir, with_1_16);
            }
            None if flag => wire::put_bool(&mut out, false),
            None => return Err(OpError(format!("path '{path}' is not valid"))),
        }
        Ok(out)
    }
    .await;
    conn.finish(outcome).await
}

/// Parse each path and keep the valid ones, as full paths, sorted.
async fn valid_subset(ctx: &Ctx, paths: &[String]) -> Result<Vec<String>, OpError> {
    let parsed = paths
        .iter()
        .map(|s| ctx.parse_path(s))
        .collect::<Result<Vec<StorePath>, _>>()?;
    let mut valid: Vec<String> = futures::stream::iter(parsed)
        .map(|p| async move { Ok::<_, OpError>(ctx.lookup(&p).await?.map(|_| ctx.abs(&p))) })
        .buffered(LOOKUP_CONCURRENCY)
        .try_filter_map(|v| async move { Ok(v) })
        .try_collect()
        .await?;
    valid.sort();
    valid.dedup();
    Ok(valid)
}

/// QueryValidPaths 31: [P], (≥1.27, Nix) u64 substitute → [P].
pub(super) async fn query_valid_paths(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let paths = read_paths(conn).await?;
    if !conn.is_guix() && conn.minor() >= 27 {
        // We have no substituters; the flag changes nothing.
        wire::read_bool(&mut conn.r, "substitute").await?;
    }
    let outcome = async {
        let valid = valid_subset(ctx, &paths).await?;
        let mut out = Vec::with_capacity(8 + valid.len() * 64);
        wire::put_strings(&mut out, &valid);
        Ok(out)
    }
    .await;
    conn.finish(outcome).await
}

/// QueryPathFromHashPart 29: string hashPart → P or "".
pub(super) async fn query_path_from_hash_part(
    conn: &mut Conn,
    ctx: &Ctx,
) -> Result<(), ConnectionError> {
    let hash_part = wire::read_string(&mut conn.r, limits::MAX_PATH_LEN, "hash part").await?;
    let outcome = async {
        let digest = parse_hash_part(&hash_part)
            .map_err(|e| OpError(format!("invalid hash part '{hash_part}': {e}")))?;
        let found = ctx.services.path_info.get(digest).await?;
        let mut out = Vec::with_capacity(128);
        let path = found.map(|i| ctx.abs(&i.store_path)).unwrap_or_default();
        wire::put_str(&mut out, &path);
        Ok(out)
    }
    .await;
    conn.finish(outcome).await
}

/// QueryAllValidPaths 23: → [P].
pub(super) async fn query_all_valid_paths(
    conn: &mut Conn,
    ctx: &Ctx,
) -> Result<(), ConnectionError> {
    let outcome = async {
        let mut all: Vec<String> = ctx
            .services
            .path_info
            .list()
            .map_ok(|i| ctx.abs(&i.store_path))
            .try_collect()
            .await?;
        all.sort();
        let mut out = Vec::with_capacity(8 + all.len() * 64);
        wire::put_strings(&mut out, &all);
        Ok::<_, OpError>(out)
    }
    .await;
    conn.finish(outcome).await
}

/// QueryReferrers 6: P → [P], the valid paths that refer to P.
pub(super) async fn query_referrers(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let outcome = async {
        let p = ctx.parse_path(&path)?;
        let mut referrers: Vec<String> = ctx
            .services
            .path_info
            .referrers(*p.digest())
            .await?
            .iter()
            .map(|r| ctx.abs(r))
            .collect();
        referrers.sort();
        referrers.dedup();
        let mut out = Vec::new();
        wire::put_strings(&mut out, &referrers);
        Ok::<_, OpError>(out)
    }
    .await;
    conn.finish(outcome).await
}

/// QueryValidDerivers 33: P → [P], the recorded deriver if it is valid.
pub(super) async fn query_valid_derivers(
    conn: &mut Conn,
    ctx: &Ctx,
) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let outcome = async {
        let p = ctx.parse_path(&path)?;
        let mut derivers = Vec::new();
        if let Some(d) = ctx.lookup(&p).await?.and_then(|i| i.deriver)
            && ctx.lookup(&d).await?.is_some()
        {
            derivers.push(ctx.abs(&d));
        }
        let mut out = Vec::new();
        wire::put_strings(&mut out, &derivers);
        Ok(out)
    }
    .await;
    conn.finish(outcome).await
}

/// QueryReferences 5 (Guix; obsolete in Nix): P → [P]; invalid is an error.
pub(super) async fn query_references(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let outcome = async {
        let info = ctx.require(&ctx.parse_path(&path)?).await?;
        let mut refs: Vec<String> = info.references.iter().map(|r| ctx.abs(r)).collect();
        refs.sort();
        refs.dedup();
        let mut out = Vec::new();
        wire::put_strings(&mut out, &refs);
        Ok(out)
    }
    .await;
    conn.finish(outcome).await
}

/// QueryPathHash 4 (Guix; obsolete in Nix): P → base16 NAR hash.
pub(super) async fn query_path_hash(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let outcome = async {
        let info = ctx.require(&ctx.parse_path(&path)?).await?;
        let mut out = Vec::new();
        wire::put_str(&mut out, &hex::encode(info.nar_sha256));
        Ok(out)
    }
    .await;
    conn.finish(outcome).await
}

/// QueryDeriver 18 (obsolete): P → deriver or "".
pub(super) async fn query_deriver(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let outcome = async {
        let info = ctx.require(&ctx.parse_path(&path)?).await?;
        let mut out = Vec::new();
        let d = info.deriver.map(|d| ctx.abs(&d)).unwrap_or_default();
        wire::put_str(&mut out, &d);
        Ok(out)
    }
    .await;
    conn.finish(outcome).await
}

/// QueryDerivationOutputs 22 / QueryDerivationOutputNames 28: P → [].
/// storefs records no derivations' outputs.
pub(super) async fn empty_list_for_path(conn: &mut Conn) -> Result<(), ConnectionError> {
    read_path(conn).await?;
    conn.reply(&0u64.to_le_bytes()).await
}

/// QuerySubstitutablePaths 32: [P] → [] (no substituters).
pub(super) async fn query_substitutable_paths(conn: &mut Conn) -> Result<(), ConnectionError> {
    read_paths(conn).await?;
    conn.reply(&0u64.to_le_bytes()).await
}

/// QuerySubstitutablePathInfos 30: [P] (< 1.22 and Guix) or map<P, ca>
/// → no infos.
pub(super) async fn query_substitutable_path_infos(conn: &mut Conn) -> Result<(), ConnectionError> {
    if conn.is_guix() || conn.minor() < 22 {
        read_paths(conn).await?;
    } else {
        wire::read_string_map(
            &mut conn.r,
            limits::MAX_LIST_COUNT,
            limits::MAX_STRING_LEN,
            "paths with content addresses",
        )
        .await?;
    }
    conn.reply(&0u64.to_le_bytes()).await
}

/// QuerySubstitutablePathInfo 21: P → 0 (none).
pub(super) async fn query_substitutable_path_info(conn: &mut Conn) -> Result<(), ConnectionError> {
    read_path(conn).await?;
    conn.reply(&0u64.to_le_bytes()).await
}

/// HasSubstitutes 3: P → false.
pub(super) async fn has_substitutes(conn: &mut Conn) -> Result<(), ConnectionError> {
    read_path(conn).await?;
    conn.reply(&0u64.to_le_bytes()).await
}

/// The store path a DerivedPath string (`P`, `P!out,dev`, `P!*`) names.
pub(super) fn derived_path_base(s: &str) -> (&str, Option<&str>) {
    match s.split_once('!') {
        Some((p, outputs)) => (p, Some(outputs)),
        None => (s, None),
    }
}

/// QueryMissing 40: [DerivedPath] → willBuild [], willSubstitute [],
/// unknown, downloadSize 0, narSize 0. Valid opaque paths are not missing;
/// everything else is unknown, since storefs neither builds nor substitutes.
pub(super) async fn query_missing(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let targets = wire::read_strings(
        &mut conn.r,
        limits::MAX_LIST_COUNT,
        limits::MAX_PATH_LEN,
        "derived paths",
    )
    .await?;
    let outcome = async {
        let mut unknown = Vec::new();
        for t in &targets {
            let (base, outputs) = derived_path_base(t);
            let p = ctx.parse_path(base)?;
            if outputs.is_some() || ctx.lookup(&p).await?.is_none() {
                unknown.push(ctx.abs(&p));
            }
        }
        unknown.sort();
        unknown.dedup();
        let mut out = Vec::new();
        wire::put_u64(&mut out, 0); // willBuild
        wire::put_u64(&mut out, 0); // willSubstitute
        wire::put_strings(&mut out, &unknown);
        wire::put_u64(&mut out, 0); // downloadSize
        wire::put_u64(&mut out, 0); // narSize
        Ok(out)
    }
    .await;
    conn.finish(outcome).await
}

/// QueryDerivationOutputMap 41: P → {} (no derivations recorded).
pub(super) async fn query_derivation_output_map(conn: &mut Conn) -> Result<(), ConnectionError> {
    read_path(conn).await?;
    conn.reply(&0u64.to_le_bytes()).await
}

/// QueryRealisation 43: DrvOutput → [] (no CA derivations).
pub(super) async fn query_realisation(conn: &mut Conn) -> Result<(), ConnectionError> {
    wire::read_string(&mut conn.r, limits::MAX_STRING_LEN, "drv output").await?;
    conn.reply(&0u64.to_le_bytes()).await
}
