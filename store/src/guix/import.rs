//! Copying closures out of a `guix publish` server (or a directory laid out
//! like one) into castore and the PathInfoService.
//!
//! For each path asked for, and everything it references:
//! 1. skip it if the PathInfoService has it already (a path is recorded
//!    only with its whole closure);
//! 2. fetch `<hashpart>.narinfo`, parse it strictly, check it names the
//!    path asked for and verify its Guix signature against the authorized
//!    keys ([`super::narinfo::ParsedNarInfo::verify`]);
//! 3. choose the download ([`choose_offer`]): the smallest known
//!    `FileSize` among the compressions it can decode (none, gzip, zstd, xz,
//!    bzip2; not lzip), else the best-compressing one;
//! 4. once every reference is recorded, stream the NAR through the
//!    decompressor into the strict NAR reader (blobs and directories go to
//!    castore), check `FileSize`, `NarSize` and `NarHash`;
//! 5. only then record the path info.
//!
//! A failure fails that path and the paths that reference it, nothing
//! else, and every failure names its path.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{BzDecoder, GzipDecoder, XzDecoder, ZstdDecoder};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};

use super::key::Acl;
use super::narinfo::{GuixNarInfo, GuixNarInfoError, NarOffer, uri_decode};
use crate::Services as ImportServices;
use crate::import::{CacheInfo, CacheSource, ImportProgress, SourceError};
use crate::nar::read_nar_to_end;
use crate::nixbase32;
use crate::pathinfo::PathInfo;
use crate::store_path::{DIGEST_LEN, StoreDir, StorePath, StorePathError};

/// How to import from a Guix server.
#[derive(Debug, Clone)]
pub struct GuixImportOptions {
    /// The keys whose signatures are accepted (`/etc/guix/acl`).
    pub acl: Acl,
    /// Our store directory (`/gnu/store`); the server's must be the same.
    pub store_dir: StoreDir,
    /// How many narinfos and NARs are fetched at once (at least 1).
    pub concurrency: usize,
}

/// Why a Guix import could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuixImportError {
    /// The server could not be reached or read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// No `nix-cache-info`: not a substitute server.
    #[error("{0} has no nix-cache-info; is it a guix publish server?")]
    NoCacheInfo(String),
    /// A malformed `nix-cache-info`.
    #[error("{cache}: {error}")]
    CacheInfo {
        /// The server.
        cache: String,
        /// What is wrong.
        error: crate::import::CacheInfoError,
    },
    /// The server's store directory is not ours.
    #[error("{cache} serves store directory {theirs}, but ours is {ours}")]
    StoreDirMismatch {
        /// The server.
        cache: String,
        /// Its `StoreDir`.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// No authorized key: every signature would be refused.
    #[error("no authorized Ed25519 key was given")]
    NoKeys,
    /// A path argument that is not a store path.
    #[error("invalid store path argument: {0}")]
    BadPath(#[from] StorePathError),
    /// Listing everything needs a `file://` source.
    #[error("give the paths to import: {0} cannot be listed")]
    NothingAsked(String),
    /// The PathInfoService failed.
    #[error("path info service: {0}")]
    Store(storefs_castore::Error),
}

/// Why one path was not imported (nothing of it was recorded).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuixPathError {
    /// The server has no narinfo for it.
    #[error("not on the server ({0}.narinfo is absent)")]
    NotOnServer(String),
    /// Fetching failed.
    #[error(transparent)]
    Fetch(#[from] SourceError),
    /// The narinfo is malformed or its signature is refused.
    #[error("{file}: {error}")]
    NarInfo {
        /// The narinfo file.
        file: String,
        /// Why.
        error: GuixNarInfoError,
    },
    /// The narinfo describes another path.
    #[error("{file} describes {found}")]
    WrongPath {
        /// The narinfo file.
        file: String,
        /// What it names.
        found: String,
    },
    /// No offered compression can be decoded.
    #[error("no NAR in a compression storefs decodes (offered: {0})")]
    NoUsableOffer(String),
    /// The NAR file is absent.
    #[error("NAR file {0} is absent from the server")]
    NarMissing(String),
    /// The compressed file's size differs from `FileSize`.
    #[error("NAR file {url}: {actual} bytes but FileSize says {expected}")]
    FileSize {
        /// The NAR URL.
        url: String,
        /// `FileSize`.
        expected: u64,
        /// What came.
        actual: u64,
    },
    /// The NAR's size differs from `NarSize`.
    #[error("NAR size {actual} but NarSize says {expected}")]
    NarSize {
        /// `NarSize`.
        expected: u64,
        /// What was read.
        actual: u64,
    },
    /// The NAR's hash differs from `NarHash`.
    #[error("NAR hash sha256:{actual} but NarHash says sha256:{expected}")]
    NarHash {
        /// `NarHash`, nix32.
        expected: String,
        /// What was read, nix32.
        actual: String,
    },
    /// The NAR is malformed or does not decompress.
    #[error("reading NAR {url}: {reason}")]
    BadNar {
        /// The NAR URL.
        url: String,
        /// What the decompressor or NAR reader said.
        reason: String,
    },
    /// Storing failed.
    #[error("storing: {0}")]
    Store(storefs_castore::Error),
    /// A reference failed, so it cannot be recorded.
    #[error("its reference {0} could not be imported")]
    ReferenceFailed(String),
    /// Its references reference it back.
    #[error("reference cycle among its references")]
    ReferenceCycle,
    /// Its import task died (a bug); nothing was recorded.
    #[error("internal error: {0}")]
    Internal(String),
}

/// One path that was not imported.
#[derive(Debug)]
pub struct GuixPathFailure {
    /// The full store path, or the hash part when unknown.
    pub path: String,
    /// Why.
    pub error: GuixPathError,
}

/// What a Guix import did.
#[derive(Debug, Default)]
pub struct GuixImportReport {
    /// Paths copied and recorded, references before referrers.
    pub imported: Vec<StorePath>,
    /// Paths already present, left alone.
    pub already_present: Vec<StorePath>,
    /// Paths not imported, with the reason.
    pub failed: Vec<GuixPathFailure>,
}

/// Compressions storefs decodes, best-compressing first (Guix's own
/// ranking: xz, zstd, bzip2 above gzip above none).
const DECODABLE: &[&str] = &["zstd", "xz", "bzip2", "gzip", "none"];

fn compression_rank(c: &str) -> Option<usize> {
    match c {
        "zstd" | "xz" | "bzip2" => Some(0),
        "gzip" => Some(1),
        "none" => Some(2),
        _ => None,
    }
}

/// The offer to download: among the decodable ones, the smallest known
/// `FileSize`; offers without one rank by compression, after those with
/// one (as `guix substitute` sorts them).
pub fn choose_offer(offers: &[NarOffer]) -> Option<&NarOffer> {
    offers
        .iter()
        .filter(|o| DECODABLE.contains(&o.compression.as_str()))
        .min_by_key(|o| {
            (
                o.file_size.is_none(),
                o.file_size.unwrap_or(0),
                compression_rank(&o.compression).unwrap_or(usize::MAX),
            )
        })
}

struct Entry {
    info: GuixNarInfo,
    offer: NarOffer,
}

struct Ctx {
    source: CacheSource,
    options: GuixImportOptions,
    services: ImportServices,
    progress: Arc<dyn ImportProgress>,
}

/// Copy `paths` (full store paths or base names; none: every narinfo of a
/// `file://` source) and their closures from the Guix server at
/// `source_url`. `Err` only when nothing could be tried; failures of
/// single paths are in the report.
pub async fn import_from_guix(
    source_url: &str,
    paths: &[String],
    options: GuixImportOptions,
    services: ImportServices,
    progress: Arc<dyn ImportProgress>,
) -> Result<GuixImportReport, GuixImportError> {
    if options.acl.keys().is_empty() {
        return Err(GuixImportError::NoKeys);
    }
    let source = CacheSource::parse(source_url)?;
    let cache = source.describe();
    let info_bytes = source
        .get_small("nix-cache-info")
        .await?
        .ok_or_else(|| GuixImportError::NoCacheInfo(cache.clone()))?;
    let info = CacheInfo::parse(&info_bytes).map_err(|error| GuixImportError::CacheInfo {
        cache: cache.clone(),
        error,
    })?;
    if info.store_dir != options.store_dir.as_str() {
        return Err(GuixImportError::StoreDirMismatch {
            cache,
            theirs: info.store_dir,
            ours: options.store_dir.as_str().to_owned(),
        });
    }
    let mut wanted: Vec<([u8; DIGEST_LEN], Option<StorePath>)> = Vec::new();
    if paths.is_empty() {
        let listed = source
            .list_narinfos()
            .await
            .map_err(|_| GuixImportError::NothingAsked(cache.clone()))?;
        for hash in listed {
            if let Ok(d) = crate::store_path::parse_hash_part(&hash) {
                wanted.push((d, None));
            }
        }
    } else {
        for p in paths {
            let sp = options.store_dir.parse_path(p)?;
            wanted.push((*sp.digest(), Some(sp)));
        }
    }
    let ctx = Arc::new(Ctx {
        source,
        options,
        services,
        progress,
    });
    let mut report = GuixImportReport::default();
    let plan = discover(&ctx, wanted, &mut report).await?;
    execute(&ctx, plan, &mut report).await;
    Ok(report)
}

enum Found {
    Present(StorePath),
    Entry(Box<Entry>),
}

async fn discover(
    ctx: &Arc<Ctx>,
    wanted: Vec<([u8; DIGEST_LEN], Option<StorePath>)>,
    report: &mut GuixImportReport,
) -> Result<HashMap<[u8; DIGEST_LEN], Entry>, GuixImportError> {
    let mut seen = HashSet::new();
    let mut queue = VecDeque::new();
    for (d, p) in wanted {
        if seen.insert(d) {
            queue.push_back((d, p));
        }
    }
    let mut found = HashMap::new();
    let mut inflight = FuturesUnordered::new();
    let limit = ctx.options.concurrency.max(1);
    loop {
        while inflight.len() < limit {
            let Some((digest, expected)) = queue.pop_front() else {
                break;
            };
            let ctx = ctx.clone();
            inflight.push(async move {
                let r = lookup(&ctx, digest, expected.as_ref()).await;
                (digest, expected, r)
            });
        }
        let Some((digest, expected, r)) = inflight.next().await else {
            break;
        };
        match r {
            Err(Lookup::Store(e)) => return Err(GuixImportError::Store(e)),
            Err(Lookup::Path(error)) => report.failed.push(GuixPathFailure {
                path: expected
                    .map(|p| p.to_absolute(&ctx.options.store_dir))
                    .unwrap_or_else(|| nixbase32::encode(&digest)),
                error,
            }),
            Ok(Found::Present(p)) => report.already_present.push(p),
            Ok(Found::Entry(e)) => {
                for r in &e.info.references {
                    if seen.insert(*r.digest()) {
                        queue.push_back((*r.digest(), Some(r.clone())));
                    }
                }
                found.insert(digest, *e);
            }
        }
    }
    Ok(found)
}

enum Lookup {
    Store(storefs_castore::Error),
    Path(GuixPathError),
}

async fn lookup(
    ctx: &Ctx,
    digest: [u8; DIGEST_LEN],
    expected: Option<&StorePath>,
) -> Result<Found, Lookup> {
    if let Some(info) = ctx
        .services
        .path_info
        .get(digest)
        .await
        .map_err(Lookup::Store)?
    {
        return Ok(Found::Present(info.store_path));
    }
    let hash = nixbase32::encode(&digest);
    let file = format!("{hash}.narinfo");
    let bytes = ctx
        .source
        .get_small(&file)
        .await
        .map_err(|e| Lookup::Path(e.into()))?
        .ok_or_else(|| Lookup::Path(GuixPathError::NotOnServer(hash.clone())))?;
    let sd = &ctx.options.store_dir;
    let narinfo_err = |error| {
        Lookup::Path(GuixPathError::NarInfo {
            file: file.clone(),
            error,
        })
    };
    let parsed = GuixNarInfo::parse(&bytes, sd).map_err(narinfo_err)?;
    let matches = match expected {
        Some(e) => *e == parsed.info.store_path,
        None => *parsed.info.store_path.digest() == digest,
    };
    if !matches {
        return Err(Lookup::Path(GuixPathError::WrongPath {
            file,
            found: parsed.info.store_path.to_absolute(sd),
        }));
    }
    parsed.verify(&ctx.options.acl).map_err(narinfo_err)?;
    let offer = choose_offer(&parsed.info.offers).cloned().ok_or_else(|| {
        let offered: Vec<&str> = parsed
            .info
            .offers
            .iter()
            .map(|o| o.compression.as_str())
            .collect();
        Lookup::Path(GuixPathError::NoUsableOffer(if offered.is_empty() {
            "nothing".into()
        } else {
            offered.join(", ")
        }))
    })?;
    Ok(Found::Entry(Box::new(Entry {
        info: parsed.info,
        offer,
    })))
}

/// Import the entries, each once its references are recorded.
async fn execute(
    ctx: &Arc<Ctx>,
    mut plan: HashMap<[u8; DIGEST_LEN], Entry>,
    report: &mut GuixImportReport,
) {
    let sd = ctx.options.store_dir.clone();
    let mut failed: HashSet<[u8; DIGEST_LEN]> = report
        .failed
        .iter()
        .filter_map(|f| {
            sd.parse_path(&f.path)
                .map(|p| *p.digest())
                .ok()
                .or_else(|| crate::store_path::parse_hash_part(&f.path).ok())
        })
        .collect();
    let mut waiting: HashMap<[u8; DIGEST_LEN], usize> = HashMap::new();
    let mut referrers: HashMap<[u8; DIGEST_LEN], Vec<[u8; DIGEST_LEN]>> = HashMap::new();
    let mut doomed = Vec::new();
    for (digest, entry) in &plan {
        let mut n = 0;
        for r in &entry.info.references {
            let rd = *r.digest();
            if rd == *digest {
                continue;
            }
            if failed.contains(&rd) {
                doomed.push((*digest, r.to_absolute(&sd)));
            } else if plan.contains_key(&rd) {
                n += 1;
                referrers.entry(rd).or_default().push(*digest);
            }
        }
        waiting.insert(*digest, n);
    }
    let total: u64 = plan.values().map(|e| e.info.nar_size).sum();
    ctx.progress.planned(plan.len() as u64, total);

    let mut fail = |first: [u8; DIGEST_LEN],
                    error: GuixPathError,
                    plan: &mut HashMap<[u8; DIGEST_LEN], Entry>,
                    waiting: &mut HashMap<[u8; DIGEST_LEN], usize>,
                    report: &mut GuixImportReport| {
        let mut stack = vec![(first, error)];
        while let Some((d, error)) = stack.pop() {
            if !failed.insert(d) {
                continue;
            }
            waiting.remove(&d);
            let Some(entry) = plan.remove(&d) else {
                continue;
            };
            let name = entry.info.store_path.to_absolute(&sd);
            ctx.progress
                .path_done(&entry.info.store_path, Some(&error.to_string()));
            for r in referrers.get(&d).into_iter().flatten() {
                stack.push((*r, GuixPathError::ReferenceFailed(name.clone())));
            }
            report.failed.push(GuixPathFailure { path: name, error });
        }
    };
    for (d, reference) in doomed {
        fail(
            d,
            GuixPathError::ReferenceFailed(reference),
            &mut plan,
            &mut waiting,
            report,
        );
    }

    let mut ready: VecDeque<[u8; DIGEST_LEN]> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(d, _)| *d)
        .collect();
    let mut running = tokio::task::JoinSet::new();
    let mut task_digest = HashMap::new();
    let limit = ctx.options.concurrency.max(1);
    loop {
        while running.len() < limit {
            let Some(d) = ready.pop_front() else { break };
            waiting.remove(&d);
            let Some(entry) = plan.get(&d) else { continue };
            let (info, offer) = (entry.info.clone(), entry.offer.clone());
            let ctx = ctx.clone();
            let handle = running.spawn(async move { import_one(&ctx, info, offer).await });
            task_digest.insert(handle.id(), d);
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let (id, result) = match joined {
            Ok(r) => r,
            Err(e) => (e.id(), Err(GuixPathError::Internal(e.to_string()))),
        };
        let Some(d) = task_digest.remove(&id) else {
            continue;
        };
        match result {
            Ok(()) => {
                if let Some(entry) = plan.remove(&d) {
                    ctx.progress.path_done(&entry.info.store_path, None);
                    report.imported.push(entry.info.store_path);
                }
                for r in referrers.get(&d).into_iter().flatten() {
                    if let Some(n) = waiting.get_mut(r) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            ready.push_back(*r);
                        }
                    }
                }
            }
            Err(error) => fail(d, error, &mut plan, &mut waiting, report),
        }
    }
    let left: Vec<_> = plan.keys().copied().collect();
    for d in left {
        fail(
            d,
            GuixPathError::ReferenceCycle,
            &mut plan,
            &mut waiting,
            report,
        );
    }
}

/// Counts the bytes read through it (the compressed file's size).
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            self.count += (buf.filled().len() - before) as u64;
        }
        res
    }
}

/// Tells the progress reporter of each uncompressed byte.
struct Progress<'a, R> {
    inner: R,
    progress: &'a dyn ImportProgress,
}

impl<R: AsyncRead + Unpin> AsyncRead for Progress<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let n = buf.filled().len() - before;
            if n > 0 {
                self.progress.nar_bytes(n as u64);
            }
        }
        res
    }
}

async fn import_one(ctx: &Ctx, info: GuixNarInfo, offer: NarOffer) -> Result<(), GuixPathError> {
    let url = offer.url.clone();
    // A directory laid out like a server keeps the decoded names.
    let rel = match &ctx.source {
        CacheSource::File(_) => uri_decode(&url).unwrap_or_else(|| url.clone()),
        _ => url.clone(),
    };
    let reader = ctx
        .source
        .open(&rel)
        .await?
        .ok_or_else(|| GuixPathError::NarMissing(url.clone()))?;
    let bad_nar = |reason: String| GuixPathError::BadNar {
        url: url.clone(),
        reason,
    };
    let mut file = Counting {
        inner: reader,
        count: 0,
    };
    let ingested = {
        let buffered = BufReader::new(&mut file);
        let decoded: Box<dyn AsyncRead + Send + Unpin + '_> = match offer.compression.as_str() {
            "none" => Box::new(buffered),
            "gzip" => Box::new(GzipDecoder::new(buffered)),
            "zstd" => Box::new(ZstdDecoder::new(buffered)),
            "xz" => Box::new(XzDecoder::new(buffered)),
            "bzip2" => Box::new(BzDecoder::new(buffered)),
            other => return Err(GuixPathError::NoUsableOffer(other.to_owned())),
        };
        let mut counted = BufReader::new(Progress {
            inner: decoded,
            progress: ctx.progress.as_ref(),
        });
        read_nar_to_end(
            &mut counted,
            ctx.services.blob.as_ref(),
            ctx.services.directory.as_ref(),
        )
        .await
        .map_err(|e| bad_nar(e.to_string()))?
    };
    // Read what the decompressor left so FileSize covers the whole file;
    // one byte past FileSize is enough to know it is wrong.
    let limit = offer
        .file_size
        .map_or(u64::MAX, |s| s.saturating_sub(file.count).saturating_add(1));
    tokio::io::copy(&mut (&mut file).take(limit), &mut tokio::io::sink())
        .await
        .map_err(|e| bad_nar(e.to_string()))?;
    if let Some(expected) = offer.file_size
        && expected != file.count
    {
        return Err(GuixPathError::FileSize {
            url,
            expected,
            actual: file.count,
        });
    }
    if ingested.nar_size != info.nar_size {
        return Err(GuixPathError::NarSize {
            expected: info.nar_size,
            actual: ingested.nar_size,
        });
    }
    if ingested.nar_sha256 != info.nar_sha256 {
        return Err(GuixPathError::NarHash {
            expected: nixbase32::encode(&info.nar_sha256),
            actual: nixbase32::encode(&ingested.nar_sha256),
        });
    }
    let mut references = info.references;
    references.sort_by_cached_key(StorePath::base_name);
    references.dedup();
    let path_info = PathInfo {
        store_path: info.store_path,
        node: ingested.root,
        references,
        nar_size: ingested.nar_size,
        nar_sha256: ingested.nar_sha256,
        signatures: Vec::new(),
        deriver: info.deriver,
        ca: None,
    };
    ctx.services
        .path_info
        .put(path_info)
        .await
        .map_err(GuixPathError::Store)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(c: &str, size: Option<u64>) -> NarOffer {
        NarOffer {
            url: format!("nar/{c}/x"),
            compression: c.into(),
            file_size: size,
        }
    }

    #[test]
    fn offers_are_chosen_as_guix_substitute_does() {
        // Known sizes win, smallest first.
        let o = [
            offer("zstd", Some(50)),
            offer("gzip", Some(40)),
            offer("none", Some(100)),
        ];
        assert_eq!(choose_offer(&o).unwrap().compression, "gzip");
        // guix publish without a cache: only "none" has a size.
        let o = [
            offer("zstd", None),
            offer("gzip", None),
            offer("none", Some(100)),
        ];
        assert_eq!(choose_offer(&o).unwrap().compression, "none");
        // No sizes: the better compression.
        let o = [
            offer("none", None),
            offer("gzip", None),
            offer("zstd", None),
        ];
        assert_eq!(choose_offer(&o).unwrap().compression, "zstd");
        // lzip is not decodable.
        let o = [offer("lzip", Some(1)), offer("gzip", None)];
        assert_eq!(choose_offer(&o).unwrap().compression, "gzip");
        assert!(choose_offer(&[offer("lzip", Some(1))]).is_none());
    }
}
