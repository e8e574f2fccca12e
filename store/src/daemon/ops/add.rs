//! Uploads: AddToStoreNar 39, AddMultipleToStore 44, AddToStore 7,
//! AddTextToStore 8. Every NAR goes through the strict NAR reader into
//! castore, and its size and sha256 are checked against what the client
//! declared before the path info is recorded. Framed data is always
//! drained to its terminator, whatever happened to it.

use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};
use storefs_castore::Node;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

use super::read_path;
use crate::daemon::conn::{Conn, Reader, Writer};
use crate::daemon::context::Ctx;
use crate::daemon::error::{ConnectionError, OpError};
use crate::daemon::path_info::{RawPathInfo, put_unkeyed};
use crate::daemon::protocol::STDERR_READ;
use crate::daemon::wire::{self, FramedReader, limits};
use crate::nar::{nar_hash_and_size, read_nar, read_nar_to_end};
use crate::{ContentAddress, HashAlgo, NixHash, PathInfo};

/// Longest text AddTextToStore takes (a large `.drv` is a few MiB).
const MAX_TEXT_LEN: u64 = 64 << 20;

fn refuse_if_read_only(ctx: &Ctx) -> Result<(), OpError> {
    ctx.writable()
}

/// Drain a framed stream after its consumer is done, and fold the outcome:
/// a framing failure ends the connection; unread data after a successful
/// consumer is an error for the client.
async fn drain_framed<T>(
    framed: &mut FramedReader<'_, Reader>,
    op: &'static str,
    outcome: Result<T, OpError>,
) -> Result<Result<T, OpError>, ConnectionError> {
    let left = framed
        .drain()
        .await
        .map_err(|source| ConnectionError::Framing { op, source })?;
    Ok(match outcome {
        Ok(_) if left > 0 => Err(OpError(format!(
            "{op}: {left} bytes of unexpected data after the NAR"
        ))),
        other => other,
    })
}

/// Check an upload's signatures as Nix does: a trusted client may waive
/// the check (dontCheckSigs); otherwise, with `require_sigs`, the path
/// must be content-addressed or signed by a trusted key
/// (`LocalStore::addToStore`, `pathInfoIsUntrusted`).
fn check_trust(
    ctx: &Ctx,
    info: &PathInfo,
    trusted: bool,
    dont_check_sigs: bool,
) -> Result<(), OpError> {
    if (trusted && dont_check_sigs) || !ctx.config.require_sigs {
        return Ok(());
    }
    if info.is_trusted(&ctx.config.trusted_public_keys, &ctx.config.store_dir) {
        Ok(())
    } else {
        Err(OpError(format!(
            "cannot add path '{}' because it lacks a signature by a trusted key",
            ctx.abs(&info.store_path)
        )))
    }
}

/// Read the NAR of one declared path from `data` (exactly `nar_size`
/// bytes are taken), check it and record it.
async fn ingest_nar<R>(
    ctx: &Ctx,
    path: &str,
    raw: RawPathInfo,
    data: &mut R,
    trusted: bool,
    dont_check_sigs: bool,
) -> Result<(), OpError>
where
    R: AsyncRead + Unpin + Send + ?Sized,
{
    refuse_if_read_only(ctx)?;
    let store_path = ctx.parse_path(path)?;
    let declared_size = raw.nar_size;
    // Check the metadata (and the signatures it carries) before spending
    // any work on the NAR; the node is filled in once it is read.
    let placeholder = Node::File {
        digest: storefs_castore::B3Digest::of(b""),
        size: 0,
        executable: false,
    };
    let mut info = raw.into_path_info(store_path, placeholder, &ctx.config.store_dir)?;
    check_trust(ctx, &info, trusted, dont_check_sigs)?;

    let mut limited = BufReader::new(data.take(declared_size));
    let ingested = read_nar(
        &mut limited,
        ctx.services.blob.as_ref(),
        ctx.services.directory.as_ref(),
    )
    .await
    .map_err(|e| OpError(format!("invalid NAR for '{path}': {e}")))?;
    if ingested.nar_size != declared_size {
        return Err(OpError(format!(
            "NAR of '{path}' is {} bytes, but {declared_size} were declared",
            ingested.nar_size
        )));
    }
    if ingested.nar_sha256 != info.nar_sha256 {
        return Err(OpError(format!(
            "hash mismatch importing path '{path}': declared sha256:{}, got sha256:{}",
            hex::encode(info.nar_sha256),
            hex::encode(ingested.nar_sha256)
        )));
    }
    info.node = ingested.root;
    ctx.services.path_info.put(info).await?;
    Ok(())
}

/// A reader that pulls data from the client with STDERR_READ (the
/// AddToStoreNar framing of protocol 1.21–1.22).
fn stderr_read_source<'a>(
    r: &'a mut Reader,
    w: &'a mut Writer,
) -> impl AsyncRead + Send + Unpin + 'a {
    let chunks: Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'a>> =
        Box::pin(async_stream::try_stream! {
            loop {
                let mut req = Vec::with_capacity(16);
                wire::put_u64(&mut req, STDERR_READ);
                wire::put_u64(&mut req, limits::STDERR_READ_LEN);
                w.write_all(&req).await?;
                w.flush().await?;
                let chunk = wire::read_bytes(&mut *r, limits::STDERR_READ_LEN, "STDERR_READ reply")
                    .await
                    .map_err(io::Error::other)?;
                if chunk.is_empty() {
                    break;
                }
                yield Bytes::from(chunk);
            }
        });
    tokio_util::io::StreamReader::new(chunks)
}

/// AddToStoreNar 39: P, unkeyed info, u64 repair, u64 dontCheckSigs, then
/// the NAR (framed from 1.23, through STDERR_READ at 1.21–1.22) → nothing.
pub(super) async fn add_to_store_nar(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let path = read_path(conn).await?;
    let raw = RawPathInfo::read(&mut conn.r, true).await?;
    let _repair = wire::read_bool(&mut conn.r, "repair").await?;
    let dont_check_sigs = wire::read_bool(&mut conn.r, "dontCheckSigs").await?;
    let trusted = conn.trusted;
    let outcome = if conn.minor() >= 23 {
        let mut framed = FramedReader::new(&mut conn.r);
        let outcome = ingest_nar(ctx, &path, raw, &mut framed, trusted, dont_check_sigs).await;
        drain_framed(&mut framed, "AddToStoreNar", outcome).await?
    } else {
        let mut source = stderr_read_source(&mut conn.r, &mut conn.w);
        ingest_nar(ctx, &path, raw, &mut source, trusted, dont_check_sigs).await
    };
    conn.finish(outcome.map(|()| Vec::new())).await
}

/// AddMultipleToStore 44: u64 repair, u64 dontCheckSigs, then a framed
/// stream of `u64 count, count × (P, unkeyed info at 1.16, NAR)`.
pub(super) async fn add_multiple_to_store(
    conn: &mut Conn,
    ctx: &Ctx,
) -> Result<(), ConnectionError> {
    let _repair = wire::read_bool(&mut conn.r, "repair").await?;
    let dont_check_sigs = wire::read_bool(&mut conn.r, "dontCheckSigs").await?;
    let trusted = conn.trusted;
    let mut framed = FramedReader::new(&mut conn.r);
    let outcome = async {
        let wire_err = |e: wire::WireError| OpError(format!("AddMultipleToStore: {e}"));
        let count = wire::read_num(&mut framed, limits::MAX_ADD_MULTIPLE, "path count")
            .await
            .map_err(wire_err)?;
        for _ in 0..count {
            let path = wire::read_string(&mut framed, limits::MAX_PATH_LEN, "store path")
                .await
                .map_err(wire_err)?;
            let raw = RawPathInfo::read(&mut framed, true)
                .await
                .map_err(wire_err)?;
            ingest_nar(ctx, &path, raw, &mut framed, trusted, dont_check_sigs).await?;
        }
        Ok(())
    }
    .await;
    let outcome = drain_framed(&mut framed, "AddMultipleToStore", outcome).await?;
    conn.finish(outcome.map(|()| Vec::new())).await
}

/// Store a flat file read from `data`; returns its node, size and sha256.
async fn ingest_flat<R>(ctx: &Ctx, data: &mut R) -> Result<(Node, [u8; 32]), OpError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut writer = ctx.services.blob.open_write().await;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; limits::FRAME_LEN];
    loop {
        let n = data
            .read(&mut buf)
            .await
            .map_err(|e| OpError(format!("reading the file contents: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        writer
            .write_all(&buf[..n])
            .await
            .map_err(|e| OpError(format!("storing the file contents: {e}")))?;
    }
    let digest = writer.close().await?;
    let node = Node::File {
        digest,
        size,
        executable: false,
    };
    Ok((node, hasher.finalize().into()))
}

/// Record a content-addressed path whose contents are `node`, and return
/// its info.
async fn record_ca(
    ctx: &Ctx,
    name: &str,
    ca: ContentAddress,
    node: Node,
    refs: &[String],
    nar: Option<(u64, [u8; 32])>,
) -> Result<PathInfo, OpError> {
    let references = refs
        .iter()
        .map(|r| ctx.parse_path(r))
        .collect::<Result<Vec<_>, _>>()?;
    let store_path = ca
        .store_path(name, &references, false, &ctx.config.store_dir)
        .map_err(|e| OpError(format!("cannot add '{name}': {e}")))?;
    let (nar_size, nar_sha256) = match nar {
        Some(n) => n,
        None => nar_hash_and_size(
            &node,
            ctx.services.blob.as_ref(),
            ctx.services.directory.as_ref(),
        )
        .await
        .map_err(|e| OpError(format!("hashing the NAR of '{name}': {e}")))?,
    };
    let info = PathInfo {
        store_path,
        node,
        references,
        nar_size,
        nar_sha256,
        signatures: Vec::new(),
        deriver: None,
        ca: Some(ca),
    };
    Ok(ctx.services.path_info.put(info).await?)
}

/// The content a method string (`text:sha256`, `fixed:r:sha256`,
/// `fixed:sha256`) asks for.
enum Method {
    Text,
    Nar,
    Flat,
}

fn parse_method(method: &str) -> Result<Method, OpError> {
    match method {
        "text:sha256" => Ok(Method::Text),
        "fixed:r:sha256" => Ok(Method::Nar),
        "fixed:sha256" => Ok(Method::Flat),
        other => Err(OpError(format!(
            "storefs daemon: AddToStore method '{other}' is not supported \
             (text:sha256, fixed:r:sha256 and fixed:sha256 are)"
        ))),
    }
}

/// Read the dump of one AddToStore and record it.
async fn add_dump<R>(
    ctx: &Ctx,
    name: &str,
    method: &str,
    refs: &[String],
    data: &mut R,
) -> Result<PathInfo, OpError>
where
    R: AsyncRead + Unpin + Send + ?Sized,
{
    refuse_if_read_only(ctx)?;
    match parse_method(method)? {
        Method::Text => {
            let (node, sha) = ingest_flat(ctx, data).await?;
            record_ca(ctx, name, ContentAddress::Text(sha), node, refs, None).await
        }
        Method::Flat => {
            if !refs.is_empty() {
                return Err(OpError(format!(
                    "cannot add '{name}': a flat fixed-output path cannot have references"
                )));
            }
            let (node, sha) = ingest_flat(ctx, data).await?;
            let ca = ContentAddress::Flat(NixHash::sha256(sha));
            record_ca(ctx, name, ca, node, refs, None).await
        }
        Method::Nar => {
            let mut buffered = BufReader::new(data);
            let ingested = read_nar_to_end(
                &mut buffered,
                ctx.services.blob.as_ref(),
                ctx.services.directory.as_ref(),
            )
            .await
            .map_err(|e| OpError(format!("invalid NAR for '{name}': {e}")))?;
            let ca = ContentAddress::Recursive(NixHash::sha256(ingested.nar_sha256));
            let nar = Some((ingested.nar_size, ingested.nar_sha256));
            record_ca(ctx, name, ca, ingested.root, refs, nar).await
        }
    }
}

/// AddToStore 7. From 1.25: string name, string method, [P] refs, u64
/// repair, framed dump → ValidPathInfo with path. Before (and Guix):
/// string name, u64 fixed, u64 recursive, string algo, raw NAR → P.
pub(super) async fn add_to_store(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    if conn.is_guix() || conn.minor() < 25 {
        return add_to_store_old(conn, ctx).await;
    }
    let name = wire::read_string(&mut conn.r, limits::MAX_PATH_LEN, "name").await?;
    let method = wire::read_string(&mut conn.r, limits::MAX_STRING_LEN, "method").await?;
    let refs = super::read_paths(conn).await?;
    let _repair = wire::read_bool(&mut conn.r, "repair").await?;
    let mut framed = FramedReader::new(&mut conn.r);
    let outcome = add_dump(ctx, &name, &method, &refs, &mut framed).await;
    let outcome = drain_framed(&mut framed, "AddToStore", outcome).await?;
    let store_dir = ctx.config.store_dir.clone();
    conn.finish(outcome.map(|info| {
        let mut out = Vec::with_capacity(256);
        wire::put_str(&mut out, &info.store_path.to_absolute(&store_dir));
        put_unkeyed(&mut out, &info, &store_dir, true);
        out
    }))
    .await
}

/// The old AddToStore: the data is a raw NAR on the stream, which the NAR
/// reader delimits. A bad NAR cannot be skipped, so it ends the
/// connection after the error is sent.
async fn add_to_store_old(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let name = wire::read_string(&mut conn.r, limits::MAX_PATH_LEN, "name").await?;
    let fixed = wire::read_bool(&mut conn.r, "fixed").await?;
    let recursive = wire::read_bool(&mut conn.r, "recursive").await?;
    let algo = wire::read_string(&mut conn.r, limits::MAX_STRING_LEN, "hash algo").await?;
    // "fixed = 0" meant sha256 + recursive in old clients.
    let (recursive, algo) = if fixed {
        (recursive, algo)
    } else {
        (true, "sha256".to_owned())
    };
    let ingested = read_nar(
        &mut conn.r,
        ctx.services.blob.as_ref(),
        ctx.services.directory.as_ref(),
    )
    .await;
    let ingested = match ingested {
        Ok(i) => i,
        Err(e) => {
            conn.error(&format!("invalid NAR for '{name}': {e}"))
                .await?;
            return Err(ConnectionError::NarStream {
                path: name,
                source: e.into(),
            });
        }
    };
    let outcome = async {
        refuse_if_read_only(ctx)?;
        if algo != HashAlgo::Sha256.name() {
            return Err(OpError(format!(
                "storefs daemon: AddToStore with hash algorithm '{algo}' is not supported"
            )));
        }
        let info = if recursive {
            let ca = ContentAddress::Recursive(NixHash::sha256(ingested.nar_sha256));
            let nar = Some((ingested.nar_size, ingested.nar_sha256));
            record_ca(ctx, &name, ca, ingested.root, &[], nar).await?
        } else {
            let Node::File { digest, .. } = ingested.root.clone() else {
                return Err(OpError(format!(
                    "cannot add '{name}' flat: the NAR is not a single regular file"
                )));
            };
            let mut reader =
                ctx.services.blob.open_read(&digest).await?.ok_or_else(|| {
                    OpError(format!("blob {digest} vanished while adding '{name}'"))
                })?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; limits::FRAME_LEN];
            loop {
                let n = reader
                    .read(&mut buf)
                    .await
                    .map_err(|e| OpError(format!("reading back '{name}': {e}")))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            let ca = ContentAddress::Flat(NixHash::sha256(hasher.finalize().into()));
            let nar = Some((ingested.nar_size, ingested.nar_sha256));
            record_ca(ctx, &name, ca, ingested.root, &[], nar).await?
        };
        let mut out = Vec::new();
        wire::put_str(&mut out, &ctx.abs(&info.store_path));
        Ok(out)
    }
    .await;
    conn.finish(outcome).await
}

/// AddTextToStore 8: string name, string text, [P] refs → P.
pub(super) async fn add_text_to_store(conn: &mut Conn, ctx: &Ctx) -> Result<(), ConnectionError> {
    let name = wire::read_string(&mut conn.r, limits::MAX_PATH_LEN, "name").await?;
    let text = wire::read_bytes(&mut conn.r, MAX_TEXT_LEN, "text").await?;
    let refs = super::read_paths(conn).await?;
    let outcome = async {
        refuse_if_read_only(ctx)?;
        let (node, sha) = ingest_flat(ctx, &mut text.as_slice()).await?;
        let info = record_ca(ctx, &name, ContentAddress::Text(sha), node, &refs, None).await?;
        let mut out = Vec::new();
        wire::put_str(&mut out, &ctx.abs(&info.store_path));
        Ok(out)
    }
    .await;
    conn.finish(outcome).await
}
