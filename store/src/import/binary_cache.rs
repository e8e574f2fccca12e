//! Copying closures out of a Nix binary cache into castore and the
//! PathInfoService.
//!
//! For each path asked for, and everything it references:
//! 1. skip it if the PathInfoService already has it (what is recorded is
//!    recorded only with its whole closure, so its references are there);
//! 2. fetch `<hashpart>.narinfo`, check it names the path asked for and lies
//!    in our store directory, and check its signatures: at least one valid
//!    signature by a trusted key, unless signature checks are off (as Nix);
//! 3. once every path it references is recorded, stream the NAR from its
//!    `URL`, hashing the compressed bytes (`FileHash`, `FileSize`),
//!    decompressing by `Compression` (none, xz, zstd, bzip2) straight into
//!    the strict NAR reader, which stores blobs and directories in castore
//!    and returns the NAR's size and sha256 (`NarSize`, `NarHash`);
//! 4. only when all of that matched, record the `PathInfo`.
//!
//! A failure in one path fails the paths that reference it and no other;
//! the report lists each failure with its reason. Blobs and directories of a
//! failed NAR may remain in castore, unnamed by any path info, as any
//! content-addressed store tolerates.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{BzDecoder, XzDecoder, ZstdDecoder};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use storefs_castore::blobservice::BlobService;
use storefs_castore::directoryservice::DirectoryService;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};

use super::cache_info::{CacheInfo, CacheInfoError};
use super::hashing::HashingReader;
use super::progress::ImportProgress;
use super::source::{CacheSource, SourceError};
use crate::nar::read_nar_to_end;
use crate::narinfo::NarInfo;
use crate::nixbase32;
use crate::pathinfo::{HashAlgo, PathInfo};
use crate::pathinfoservice::PathInfoService;
use crate::signing::{PublicKey, TrustedKeys};
use crate::store_path::{DIGEST_LEN, StoreDir, StorePath, StorePathError};

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Public keys (`name:base64`, as in Nix's `trusted-public-keys`) whose
    /// signatures are accepted.
    pub trusted_keys: Vec<String>,
    /// Require at least one valid signature by a trusted key on each path.
    /// Off only on the user's explicit word (`--no-check-sigs`).
    pub check_sigs: bool,
    /// Our store directory; the cache's `StoreDir` must be the same, since
    /// it is part of every path's hash.
    pub store_dir: StoreDir,
    /// How many narinfos and NARs are fetched at once (at least 1).
    pub concurrency: usize,
}

impl ImportOptions {
    /// Check signatures, trust no key yet, fetch [`DEFAULT_CONCURRENCY`]
    /// files at once.
    pub fn new(store_dir: StoreDir) -> Self {
        Self {
            trusted_keys: Vec::new(),
            check_sigs: true,
            store_dir,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// How many narinfos and NARs an import fetches at once by default.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// The services an import writes to.
#[derive(Clone)]
pub struct ImportServices {
    /// Where file contents go.
    pub blob: Arc<dyn BlobService>,
    /// Where directories go.
    pub directory: Arc<dyn DirectoryService>,
    /// Where path infos are recorded, last, once a path passed every check.
    pub pathinfo: Arc<dyn PathInfoService>,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Paths copied and recorded, references before referrers.
    pub imported: Vec<StorePath>,
    /// Paths that were already present and left alone.
    pub already_present: Vec<StorePath>,
    /// Paths that could not be imported, with the reason. Nothing of them
    /// was recorded.
    pub failed: Vec<PathFailure>,
}

impl ImportReport {
    /// Whether every path asked for (and its closure) is now present.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }
}

/// One path that was not imported.
#[derive(Debug)]
pub struct PathFailure {
    /// The path: full store path when known, else the hash part.
    pub path: String,
    /// Why.
    pub error: PathImportError,
}

/// Why the whole import could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The cache could not be reached or read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The cache has no `nix-cache-info`: probably not a binary cache.
    #[error("{0} has no nix-cache-info; is it a binary cache?")]
    NoCacheInfo(String),
    /// The cache's `nix-cache-info` is malformed.
    #[error("{cache}: {source}")]
    CacheInfo {
        /// The cache.
        cache: String,
        /// What is wrong with it.
        source: CacheInfoError,
    },
    /// The cache holds paths of another store directory.
    #[error("the binary cache {cache} is for store directory {theirs}, but ours is {ours}")]
    StoreDirMismatch {
        /// The cache.
        cache: String,
        /// Its `StoreDir`.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// A trusted key that does not parse.
    #[error("invalid trusted public key {key:?}: {reason}")]
    BadKey {
        /// The key as given.
        key: String,
        /// Why it is refused.
        reason: String,
    },
    /// A path argument that is not a store path of our store directory.
    #[error("invalid store path argument: {0}")]
    BadPath(#[from] StorePathError),
    /// The PathInfoService failed while looking paths up.
    #[error("path info service: {0}")]
    Store(storefs_castore::Error),
}

/// Why one path was not imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathImportError {
    /// The cache has no narinfo for it.
    #[error("not in the binary cache ({0}.narinfo is absent)")]
    NotInCache(String),
    /// Fetching its narinfo or NAR failed.
    #[error(transparent)]
    Fetch(#[from] SourceError),
    /// Its narinfo does not parse.
    #[error("malformed narinfo {file}: {reason}")]
    BadNarInfo {
        /// The narinfo file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The narinfo describes another path than the one asked for.
    #[error("narinfo {file} describes {found}, not {expected}")]
    WrongPath {
        /// The narinfo file.
        file: String,
        /// What was asked for.
        expected: String,
        /// What it names.
        found: String,
    },
    /// No valid signature by a trusted key.
    #[error(
        "no valid signature by a trusted key (signed by: {signers}); pass the key with --trusted-public-key, or --no-check-sigs"
    )]
    Untrusted {
        /// Names of the keys that signed it, or `nobody`.
        signers: String,
    },
    /// A `Compression` we cannot decode.
    #[error("unsupported compression {0:?} (supported: none, xz, zstd, bzip2)")]
    UnsupportedCompression(String),
    /// The narinfo's `URL` names a file the cache does not have.
    #[error("NAR file {0} is absent from the cache")]
    NarMissing(String),
    /// The compressed file's size differs from `FileSize`.
    #[error("NAR file {url}: size {actual} but the narinfo says FileSize {expected}")]
    FileSize {
        /// The NAR file.
        url: String,
        /// `FileSize`.
        expected: u64,
        /// What was fetched.
        actual: u64,
    },
    /// The compressed file's hash differs from `FileHash`.
    #[error("NAR file {url}: sha256 {actual} but the narinfo says FileHash {expected}")]
    FileHash {
        /// The NAR file.
        url: String,
        /// `FileHash`, nix32.
        expected: String,
        /// What was fetched, nix32.
        actual: String,
    },
    /// The NAR's size differs from `NarSize`.
    #[error("NAR size {actual} but the narinfo says NarSize {expected}")]
    NarSize {
        /// `NarSize`.
        expected: u64,
        /// What was read.
        actual: u64,
    },
    /// The NAR's hash differs from `NarHash`.
    #[error("NAR hash sha256:{actual} but the narinfo says NarHash sha256:{expected}")]
    NarHash {
        /// `NarHash`, nix32.
        expected: String,
        /// What was read, nix32.
        actual: String,
    },
    /// The NAR is malformed, or decompression failed.
    #[error("reading NAR {url}: {reason}")]
    BadNar {
        /// The NAR file.
        url: String,
        /// What the NAR reader or decompressor said.
        reason: String,
    },
    /// Storing failed.
    #[error("storing: {0}")]
    Store(storefs_castore::Error),
    /// A path it references failed, so it cannot be recorded.
    #[error("its reference {0} could not be imported")]
    ReferenceFailed(String),
    /// The import task of this path died (a bug); nothing was recorded.
    #[error("internal error: {0}")]
    Internal(String),
    /// It references paths that (transitively) reference it.
    #[error("reference cycle among its references")]
    ReferenceCycle,
}

/// Copy `paths` (full store paths or base names; none: every path the
/// cache lists) and their closures from the binary cache at `source_url`.
///
/// Returns `Err` only when nothing could be tried (bad URL, unreachable
/// cache, wrong store directory, bad key or path argument); failures of
/// single paths are in [`ImportReport::failed`].
pub async fn import_from_binary_cache(
    source_url: &str,
    paths: &[String],
    options: ImportOptions,
    services: ImportServices,
    progress: Arc<dyn ImportProgress>,
) -> Result<ImportReport, ImportError> {
    let source = CacheSource::parse(source_url)?;
    let cache = source.describe();

    let info_bytes = source
        .get_small("nix-cache-info")
        .await?
        .ok_or_else(|| ImportError::NoCacheInfo(cache.clone()))?;
    let info = CacheInfo::parse(&info_bytes).map_err(|source| ImportError::CacheInfo {
        cache: cache.clone(),
        source,
    })?;
    if info.store_dir != options.store_dir.as_str() {
        return Err(ImportError::StoreDirMismatch {
            cache,
            theirs: info.store_dir,
            ours: options.store_dir.as_str().to_owned(),
        });
    }
    let keys = parse_keys(&options.trusted_keys)?;

    // What was asked for: digests, with the full path when we know it.
    let mut wanted: Vec<([u8; DIGEST_LEN], Option<StorePath>)> = Vec::new();
    if paths.is_empty() {
        for hash in source.list_narinfos().await? {
            // A stray file name that is no hash part is not a narinfo.
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
        keys,
        services,
        progress,
    });
    let mut report = ImportReport::default();
    let plan = discover(&ctx, wanted, &mut report).await?;
    execute(&ctx, plan, &mut report).await;
    Ok(report)
}

/// Shared by every task of one import.
struct Ctx {
    source: CacheSource,
    options: ImportOptions,
    keys: TrustedKeys,
    services: ImportServices,
    progress: Arc<dyn ImportProgress>,
}

/// Walk the closure: fetch and check narinfos, skip what is present.
/// Returns the entries to import, by digest.
async fn discover(
    ctx: &Arc<Ctx>,
    wanted: Vec<([u8; DIGEST_LEN], Option<StorePath>)>,
    report: &mut ImportReport,
) -> Result<HashMap<[u8; DIGEST_LEN], NarInfo>, ImportError> {
    let mut seen: HashSet<[u8; DIGEST_LEN]> = HashSet::new();
    let mut queue: VecDeque<([u8; DIGEST_LEN], Option<StorePath>)> = VecDeque::new();
    for (d, sp) in wanted {
        if seen.insert(d) {
            queue.push_back((d, sp));
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
            Err(LookupError::Store(e)) => return Err(ImportError::Store(e)),
            Err(LookupError::Path(error)) => report.failed.push(PathFailure {
                path: expected
                    .map(|p| p.to_absolute(&ctx.options.store_dir))
                    .unwrap_or_else(|| nixbase32::encode(&digest)),
                error,
            }),
            Ok(Lookup::Present(sp)) => report.already_present.push(sp),
            Ok(Lookup::Found(entry)) => {
                for r in &entry.references {
                    if seen.insert(*r.digest()) {
                        queue.push_back((*r.digest(), Some(r.clone())));
                    }
                }
                found.insert(digest, *entry);
            }
        }
    }
    Ok(found)
}

enum Lookup {
    Present(StorePath),
    Found(Box<NarInfo>),
}

enum LookupError {
    Store(storefs_castore::Error),
    Path(PathImportError),
}

/// One path: present already, or its checked narinfo.
async fn lookup(
    ctx: &Ctx,
    digest: [u8; DIGEST_LEN],
    expected: Option<&StorePath>,
) -> Result<Lookup, LookupError> {
    if let Some(info) = ctx
        .services
        .pathinfo
        .get(digest)
        .await
        .map_err(LookupError::Store)?
    {
        return Ok(Lookup::Present(info.store_path));
    }
    let hash = nixbase32::encode(&digest);
    let file = format!("{hash}.narinfo");
    let bytes = ctx
        .source
        .get_small(&file)
        .await
        .map_err(|e| LookupError::Path(e.into()))?
        .ok_or_else(|| LookupError::Path(PathImportError::NotInCache(hash.clone())))?;
    let entry = NarInfo::parse_bytes(&bytes, &ctx.options.store_dir).map_err(|e| {
        LookupError::Path(PathImportError::BadNarInfo {
            file: file.clone(),
            reason: e.to_string(),
        })
    })?;
    let sd = &ctx.options.store_dir;
    let matches = match expected {
        Some(e) => *e == entry.store_path,
        None => *entry.store_path.digest() == digest,
    };
    if !matches {
        return Err(LookupError::Path(PathImportError::WrongPath {
            file,
            expected: expected.map(|e| e.to_absolute(sd)).unwrap_or(hash),
            found: entry.store_path.to_absolute(sd),
        }));
    }
    if ctx.options.check_sigs && !signed_by_trusted_key(&entry, sd, &ctx.keys) {
        let mut signers: Vec<&str> = entry.signatures.iter().map(|s| s.name.as_str()).collect();
        signers.dedup();
        let signers = if signers.is_empty() {
            "nobody".to_owned()
        } else {
            signers.join(", ")
        };
        return Err(LookupError::Path(PathImportError::Untrusted { signers }));
    }
    Ok(Lookup::Found(Box::new(entry)))
}

/// Import the found entries, each once all its references are recorded,
/// at most `concurrency` at a time.
async fn execute(
    ctx: &Arc<Ctx>,
    mut plan: HashMap<[u8; DIGEST_LEN], NarInfo>,
    report: &mut ImportReport,
) {
    let sd = ctx.options.store_dir.clone();
    let failed: HashSet<[u8; DIGEST_LEN]> = report
        .failed
        .iter()
        .filter_map(|f| {
            sd.parse_path(&f.path)
                .map(|p| *p.digest())
                .ok()
                .or_else(|| crate::store_path::parse_hash_part(&f.path).ok())
        })
        .collect();
    let mut failed = failed;

    // Waiting counts and reverse edges among the planned paths. A reference
    // that is neither planned nor failed is present already.
    let mut waiting: HashMap<[u8; DIGEST_LEN], usize> = HashMap::new();
    let mut referrers: HashMap<[u8; DIGEST_LEN], Vec<[u8; DIGEST_LEN]>> = HashMap::new();
    let mut doomed: Vec<([u8; DIGEST_LEN], String)> = Vec::new();
    for (digest, entry) in &plan {
        let mut n = 0;
        for r in &entry.references {
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

    let total_bytes = plan.values().map(|e| e.nar_size).sum();
    ctx.progress.planned(plan.len() as u64, total_bytes);

    let fail = |digest: [u8; DIGEST_LEN],
                error: PathImportError,
                plan: &mut HashMap<[u8; DIGEST_LEN], NarInfo>,
                failed: &mut HashSet<[u8; DIGEST_LEN]>,
                waiting: &mut HashMap<[u8; DIGEST_LEN], usize>,
                report: &mut ImportReport| {
        // Fail this path and, transitively, everything waiting on it.
        let mut stack = vec![(digest, error)];
        while let Some((d, error)) = stack.pop() {
            if !failed.insert(d) {
                continue;
            }
            waiting.remove(&d);
            let Some(entry) = plan.remove(&d) else {
                continue;
            };
            let name = entry.store_path.to_absolute(&sd);
            ctx.progress
                .path_done(&entry.store_path, Some(&error.to_string()));
            for r in referrers.get(&d).into_iter().flatten() {
                stack.push((*r, PathImportError::ReferenceFailed(name.clone())));
            }
            report.failed.push(PathFailure { path: name, error });
        }
    };

    for (d, reference) in doomed {
        fail(
            d,
            PathImportError::ReferenceFailed(reference),
            &mut plan,
            &mut failed,
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
    let mut task_digest: HashMap<tokio::task::Id, [u8; DIGEST_LEN]> = HashMap::new();
    let limit = ctx.options.concurrency.max(1);
    loop {
        while running.len() < limit {
            let Some(d) = ready.pop_front() else { break };
            waiting.remove(&d);
            let Some(entry) = plan.get(&d).cloned() else {
                continue;
            };
            let ctx = ctx.clone();
            let handle = running.spawn(async move { import_one(&ctx, entry).await });
            task_digest.insert(handle.id(), d);
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let (id, result) = match joined {
            Ok(r) => r,
            // A task that panicked records nothing; fail its path.
            Err(e) => (e.id(), Err(PathImportError::Internal(e.to_string()))),
        };
        let Some(d) = task_digest.remove(&id) else {
            continue;
        };
        match result {
            Ok(()) => {
                if let Some(entry) = plan.remove(&d) {
                    ctx.progress.path_done(&entry.store_path, None);
                    report.imported.push(entry.store_path);
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
            Err(error) => fail(d, error, &mut plan, &mut failed, &mut waiting, report),
        }
    }

    // Whatever is left waited on something that never finished: a cycle.
    let left: Vec<[u8; DIGEST_LEN]> = plan.keys().copied().collect();
    for d in left {
        fail(
            d,
            PathImportError::ReferenceCycle,
            &mut plan,
            &mut failed,
            &mut waiting,
            report,
        );
    }
}

/// Fetch, decompress, ingest and check one NAR; record its path info last.
async fn import_one(ctx: &Ctx, entry: NarInfo) -> Result<(), PathImportError> {
    let url = entry.url.clone();
    let reader = ctx
        .source
        .open(&url)
        .await?
        .ok_or_else(|| PathImportError::NarMissing(url.clone()))?;
    let mut file = HashingReader::new(reader);
    let bad_nar = |reason: String| PathImportError::BadNar {
        url: url.clone(),
        reason,
    };

    let (node, nar_size, nar_sha256) = {
        let buffered = BufReader::new(&mut file);
        let decoded: Box<dyn AsyncRead + Send + Unpin + '_> = match entry.compression.as_str() {
            "none" => Box::new(buffered),
            "xz" => Box::new(XzDecoder::new(buffered)),
            "zstd" => Box::new(ZstdDecoder::new(buffered)),
            "bzip2" => Box::new(BzDecoder::new(buffered)),
            other => return Err(PathImportError::UnsupportedCompression(other.to_owned())),
        };
        let counted = ProgressReader {
            inner: decoded,
            progress: ctx.progress.as_ref(),
        };
        let mut counted = BufReader::new(counted);
        let ingested = read_nar_to_end(
            &mut counted,
            ctx.services.blob.as_ref(),
            ctx.services.directory.as_ref(),
        )
        .await
        .map_err(|e| bad_nar(e.to_string()))?;
        (ingested.root, ingested.nar_size, ingested.nar_sha256)
    };

    // The decompressor may stop at the end of its stream; read what is left
    // so FileSize and FileHash cover the whole file. Anything past FileSize
    // is wrong anyway, so stop one byte after it.
    let rest_limit = entry.file_size.map_or(u64::MAX, |s| {
        s.saturating_sub(file.count()).saturating_add(1)
    });
    tokio::io::copy(&mut (&mut file).take(rest_limit), &mut tokio::io::sink())
        .await
        .map_err(|e| bad_nar(e.to_string()))?;
    let (file_size, file_hash) = file.finish();

    if let Some(expected) = entry.file_size
        && expected != file_size
    {
        return Err(PathImportError::FileSize {
            url,
            expected,
            actual: file_size,
        });
    }
    // Nix writes sha256 file hashes; another algorithm is left unchecked
    // (the NAR hash below still covers the contents).
    if let Some(expected) = &entry.file_hash
        && expected.algo() == HashAlgo::Sha256
        && expected.digest() != file_hash
    {
        return Err(PathImportError::FileHash {
            url,
            expected: nixbase32::encode(expected.digest()),
            actual: nixbase32::encode(&file_hash),
        });
    }
    if nar_size != entry.nar_size {
        return Err(PathImportError::NarSize {
            expected: entry.nar_size,
            actual: nar_size,
        });
    }
    if nar_sha256 != entry.nar_sha256 {
        return Err(PathImportError::NarHash {
            expected: nixbase32::encode(&entry.nar_sha256),
            actual: nixbase32::encode(&nar_sha256),
        });
    }

    let info = PathInfo::from_narinfo(&entry, node);
    ctx.services
        .pathinfo
        .put(info)
        .await
        .map_err(PathImportError::Store)?;
    Ok(())
}

/// Tells the progress reporter of each uncompressed NAR byte read.
struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a dyn ImportProgress,
}

impl<R: AsyncRead + Unpin> AsyncRead for ProgressReader<'_, R> {
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

/// Parse `name:base64` public keys.
fn parse_keys(keys: &[String]) -> Result<TrustedKeys, ImportError> {
    let parsed = keys
        .iter()
        .map(|k| {
            PublicKey::parse(k).map_err(|e| ImportError::BadKey {
                key: k.clone(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TrustedKeys::new(parsed))
}

/// Nix's rule: at least one valid signature by a trusted key.
fn signed_by_trusted_key(narinfo: &NarInfo, store_dir: &StoreDir, keys: &TrustedKeys) -> bool {
    narinfo
        .fingerprint(store_dir)
        .is_ok_and(|fp| keys.count_valid(fp.as_bytes(), &narinfo.signatures) > 0)
}
