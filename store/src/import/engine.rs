//! The closure-import engine, shared by every source (binary caches, a
//! nix-daemon, …). For each path asked for, and everything it references:
//! 1. skip it if the PathInfoService already has it (what is recorded is
//!    recorded only with its whole closure, so its references are there);
//! 2. ask the [`ImportSource`] what it declares of the path, check that it
//!    names the path asked for and, unless signature checks are off, that
//!    the source vouches for it ([`ImportSource::is_trusted`]);
//! 3. once every path it references is recorded, let the source stream the
//!    NAR through the strict NAR reader into castore ([`NarSink`]), and
//!    check its size and sha256 against the declared ones;
//! 4. only when all of that matched, record the `PathInfo`.
//!
//! A failure in one path fails the paths that reference it and no other;
//! the report lists each failure with its reason. Blobs and directories of
//! a failed NAR may remain in castore, unnamed by any path info, as any
//! content-addressed store tolerates.
//!
//! A new source implements [`ImportSource`]: how to list its paths, how to
//! look one up, whose signatures it trusts, and how to stream a NAR.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::io::{AsyncRead, BufReader};
use tokio_util::io::InspectReader;

use super::error::{ImportError, PathFailure, PathImportError};
use super::progress::ImportProgress;
use crate::PathInfo;
use crate::Services;
use crate::nar::{NarIngested, NarReadError, read_nar, read_nar_to_end};
use crate::nixbase32;
use crate::{DIGEST_LEN, StoreDir, StorePath};
use crate::{PublicKey, TrustedKeys};

/// How many lookups and NAR fetches an import runs at once by default.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Public keys whose signatures are accepted, as the source's users
    /// write them (`name:base64` for Nix, as in `trusted-public-keys`).
    /// Each source parses them when it is opened.
    pub trusted_keys: Vec<String>,
    /// Require each path to be trusted by the source (a valid signature by
    /// a trusted key, or as the source's rule says). Off only on the
    /// user's explicit word (`--no-check-sigs`).
    pub check_sigs: bool,
    /// Our store directory; the source's must be the same, since it is part
    /// of every path's hash.
    pub store_dir: StoreDir,
    /// How many lookups and NARs are fetched at once (at least 1; a source
    /// may allow fewer).
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

    /// [`ImportOptions::trusted_keys`] as Nix keys (`name:base64`), for a
    /// source whose paths carry Nix signatures.
    pub fn nix_keys(&self) -> Result<TrustedKeys, ImportError> {
        let keys = self
            .trusted_keys
            .iter()
            .map(|k| {
                PublicKey::parse(k).map_err(|source| ImportError::BadKey {
                    key: k.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedKeys::new(keys))
    }
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
    /// Total NAR bytes of the imported paths.
    pub nar_bytes: u64,
}

impl ImportReport {
    /// Whether every path asked for (and its closure) is now present.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }
}

/// One path to look up: its digest, and its full path when known (a
/// reference, or a root named in full; a listing may give hash parts only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The store path's digest (hash part).
    pub digest: [u8; DIGEST_LEN],
    /// The full path, when known; the source's answer must name it.
    pub path: Option<StorePath>,
}

impl Wanted {
    /// The path for messages: full when known, else the hash part.
    pub fn describe(&self, store_dir: &StoreDir) -> String {
        match &self.path {
            Some(p) => p.to_absolute(store_dir),
            None => nixbase32::encode(&self.digest),
        }
    }
}

/// What a source declares of one path.
#[derive(Debug, Clone)]
pub struct Found<E> {
    /// The path's facts as the source declares them: path, references, NAR
    /// size and hash, signatures, deriver, content address. Its `node` is a
    /// placeholder, replaced by the root of the NAR once it is read.
    pub info: PathInfo,
    /// What the source needs to fetch the NAR (a narinfo's URL and
    /// compression, say).
    pub entry: E,
}

/// Where an import copies closures from. The engine asks it for paths and
/// NARs and does every check and every write itself.
#[async_trait]
pub trait ImportSource: Send + Sync + 'static {
    /// What the source keeps beside a path's facts to fetch its NAR.
    type Entry: Send + Sync + 'static;

    /// At most this many lookups and NAR fetches at once (a single
    /// connection allows 1).
    fn concurrency(&self) -> usize;

    /// Every path the source holds, for an import that names none.
    async fn list(&self) -> Result<Vec<Wanted>, ImportError>;

    /// What the source declares of `wanted`. The engine checks that the
    /// answer names `wanted`; the source checks what only it can (a
    /// narinfo's own syntax, say). A path it does not have is an error.
    async fn lookup(&self, wanted: &Wanted) -> Result<Found<Self::Entry>, PathImportError>;

    /// Whether the source vouches for `found` (with signature checks on):
    /// Nix's rule is a valid signature by a trusted key, or a content
    /// address that gives exactly the path.
    fn is_trusted(&self, found: &Found<Self::Entry>, store_dir: &StoreDir) -> bool;

    /// Stream `found`'s NAR into `sink` (with [`NarSink::read_nar`] or
    /// [`NarSink::read_nar_to_end`]), checking what the transport declares
    /// of it (a file's size and hash, say). The engine checks the NAR's
    /// size and hash against `found.info` afterwards.
    async fn fetch_nar(
        &self,
        found: &Found<Self::Entry>,
        sink: NarSink<'_>,
    ) -> Result<NarIngested, PathImportError>;
}

/// Where a source writes one NAR: the strict NAR reader into castore, with
/// progress reported per byte.
pub struct NarSink<'a> {
    services: &'a Services,
    progress: &'a dyn ImportProgress,
}

impl NarSink<'_> {
    /// Read one NAR from `reader` into castore, stopping at its end (the
    /// reader may go on).
    pub async fn read_nar<R>(&self, reader: R) -> Result<NarIngested, NarReadError>
    where
        R: AsyncRead + Send + Unpin,
    {
        let mut counted = BufReader::new(self.counted(reader));
        read_nar(
            &mut counted,
            self.services.blob.as_ref(),
            self.services.directory.as_ref(),
        )
        .await
    }

    /// Read one NAR from `reader` into castore; anything after its end is
    /// an error.
    pub async fn read_nar_to_end<R>(&self, reader: R) -> Result<NarIngested, NarReadError>
    where
        R: AsyncRead + Send + Unpin,
    {
        let mut counted = BufReader::new(self.counted(reader));
        read_nar_to_end(
            &mut counted,
            self.services.blob.as_ref(),
            self.services.directory.as_ref(),
        )
        .await
    }

    /// `inner`, telling the progress reporter of each byte read.
    fn counted<R: AsyncRead>(&self, inner: R) -> InspectReader<R, impl FnMut(&[u8]) + '_> {
        InspectReader::new(inner, |bytes: &[u8]| {
            if !bytes.is_empty() {
                self.progress.nar_bytes(bytes.len() as u64);
            }
        })
    }
}

/// Copy `paths` (full store paths or base names; none: every path the
/// source lists) and their closures from `source` into `services`.
///
/// Returns `Err` only when nothing could be tried (the source cannot list,
/// a bad path argument, the path info service failing on lookups); failures
/// of single paths are in [`ImportReport::failed`].
pub async fn import_closure<S: ImportSource>(
    source: Arc<S>,
    paths: &[String],
    options: ImportOptions,
    services: Services,
    progress: Arc<dyn ImportProgress>,
) -> Result<ImportReport, ImportError> {
    let wanted = if paths.is_empty() {
        source.list().await?
    } else {
        paths
            .iter()
            .map(|p| {
                let sp = options.store_dir.parse_path(p)?;
                Ok(Wanted {
                    digest: *sp.digest(),
                    path: Some(sp),
                })
            })
            .collect::<Result<_, ImportError>>()?
    };
    let limit = options.concurrency.min(source.concurrency()).max(1);
    let ctx = Arc::new(Ctx {
        source,
        options,
        services,
        progress,
        limit,
    });
    let mut report = ImportReport::default();
    let plan = discover(&ctx, wanted, &mut report).await?;
    execute(&ctx, plan, &mut report).await;
    Ok(report)
}

/// Shared by every task of one import.
struct Ctx<S: ImportSource> {
    source: Arc<S>,
    options: ImportOptions,
    services: Services,
    progress: Arc<dyn ImportProgress>,
    /// Lookups or NAR fetches at once.
    limit: usize,
}

type Digest = [u8; DIGEST_LEN];
type Plan<E> = HashMap<Digest, Arc<Found<E>>>;

/// Walk the closure: look paths up and check them, skip what is present.
/// Returns the entries to import, by digest.
async fn discover<S: ImportSource>(
    ctx: &Arc<Ctx<S>>,
    wanted: Vec<Wanted>,
    report: &mut ImportReport,
) -> Result<Plan<S::Entry>, ImportError> {
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut queue: VecDeque<Wanted> = VecDeque::new();
    for w in wanted {
        if seen.insert(w.digest) {
            queue.push_back(w);
        }
    }
    let mut found = HashMap::new();
    let mut inflight = FuturesUnordered::new();
    loop {
        while inflight.len() < ctx.limit {
            let Some(w) = queue.pop_front() else {
                break;
            };
            let ctx = ctx.clone();
            inflight.push(async move {
                let r = lookup(&ctx, &w).await;
                (w, r)
            });
        }
        let Some((w, r)) = inflight.next().await else {
            break;
        };
        match r {
            Err(LookupError::Store(source)) => return Err(ImportError::Store(source)),
            Err(LookupError::Path(error)) => report.failed.push(PathFailure {
                path: w.describe(&ctx.options.store_dir),
                error,
            }),
            Ok(Lookup::Present(sp)) => report.already_present.push(sp),
            Ok(Lookup::Found(entry)) => {
                for r in &entry.info.references {
                    if seen.insert(*r.digest()) {
                        queue.push_back(Wanted {
                            digest: *r.digest(),
                            path: Some(r.clone()),
                        });
                    }
                }
                found.insert(w.digest, Arc::from(entry));
            }
        }
    }
    Ok(found)
}

enum Lookup<E> {
    Present(StorePath),
    Found(Box<Found<E>>),
}

enum LookupError {
    Store(storefs_castore::Error),
    Path(PathImportError),
}

/// One path: present already, or what the source declares of it, checked.
async fn lookup<S: ImportSource>(
    ctx: &Ctx<S>,
    wanted: &Wanted,
) -> Result<Lookup<S::Entry>, LookupError> {
    if let Some(info) = ctx
        .services
        .path_info
        .get(wanted.digest)
        .await
        .map_err(LookupError::Store)?
    {
        return Ok(Lookup::Present(info.store_path));
    }
    let found = ctx.source.lookup(wanted).await.map_err(LookupError::Path)?;
    let sd = &ctx.options.store_dir;
    let declared = &found.info.store_path;
    let matches = match &wanted.path {
        Some(p) => p == declared,
        None => *declared.digest() == wanted.digest,
    };
    if !matches {
        return Err(LookupError::Path(PathImportError::WrongPath {
            expected: wanted.describe(sd),
            found: declared.to_absolute(sd),
        }));
    }
    if ctx.options.check_sigs && !ctx.source.is_trusted(&found, sd) {
        let mut signers: Vec<&str> = found
            .info
            .signatures
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        signers.dedup();
        let signers = if signers.is_empty() {
            "nobody".to_owned()
        } else {
            signers.join(", ")
        };
        return Err(LookupError::Path(PathImportError::Untrusted { signers }));
    }
    Ok(Lookup::Found(Box::new(found)))
}

/// Import the found entries, each once all its references are recorded,
/// at most `limit` at a time.
async fn execute<S: ImportSource>(
    ctx: &Arc<Ctx<S>>,
    mut plan: Plan<S::Entry>,
    report: &mut ImportReport,
) {
    let sd = ctx.options.store_dir.clone();
    let mut failed: HashSet<Digest> = report
        .failed
        .iter()
        .filter_map(|f| {
            sd.parse_path(&f.path)
                .map(|p| *p.digest())
                .ok()
                .or_else(|| crate::parse_hash_part(&f.path).ok())
        })
        .collect();

    // Waiting counts and reverse edges among the planned paths. A reference
    // that is neither planned nor failed is present already.
    let mut waiting: HashMap<Digest, usize> = HashMap::new();
    let mut referrers: HashMap<Digest, Vec<Digest>> = HashMap::new();
    let mut doomed: Vec<(Digest, String)> = Vec::new();
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

    let total_bytes = plan.values().map(|e| e.info.nar_size).sum();
    ctx.progress.planned(plan.len() as u64, total_bytes);

    let fail = |digest: Digest,
                error: PathImportError,
                plan: &mut Plan<S::Entry>,
                failed: &mut HashSet<Digest>,
                waiting: &mut HashMap<Digest, usize>,
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
            let name = entry.info.store_path.to_absolute(&sd);
            ctx.progress
                .path_done(&entry.info.store_path, Some(&error.to_string()));
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

    let mut ready: VecDeque<Digest> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(d, _)| *d)
        .collect();
    let mut running = tokio::task::JoinSet::new();
    let mut task_digest: HashMap<tokio::task::Id, Digest> = HashMap::new();
    loop {
        while running.len() < ctx.limit {
            let Some(d) = ready.pop_front() else { break };
            waiting.remove(&d);
            let Some(entry) = plan.get(&d).cloned() else {
                continue;
            };
            let ctx = ctx.clone();
            let handle = running.spawn(async move { import_one(&ctx, &entry).await });
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
                    ctx.progress.path_done(&entry.info.store_path, None);
                    report.nar_bytes += entry.info.nar_size;
                    report.imported.push(entry.info.store_path.clone());
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
    let left: Vec<Digest> = plan.keys().copied().collect();
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

/// Let the source stream one NAR into castore, check it against what the
/// source declared, and record its path info last.
async fn import_one<S: ImportSource>(
    ctx: &Ctx<S>,
    found: &Found<S::Entry>,
) -> Result<(), PathImportError> {
    let sink = NarSink {
        services: &ctx.services,
        progress: ctx.progress.as_ref(),
    };
    let ingested = ctx.source.fetch_nar(found, sink).await?;
    let declared = &found.info;
    if ingested.nar_size != declared.nar_size {
        return Err(PathImportError::NarSize {
            expected: declared.nar_size,
            actual: ingested.nar_size,
        });
    }
    if ingested.nar_sha256 != declared.nar_sha256 {
        return Err(PathImportError::NarHash {
            expected: nixbase32::encode(&declared.nar_sha256),
            actual: nixbase32::encode(&ingested.nar_sha256),
        });
    }
    let info = PathInfo {
        node: ingested.root,
        ..declared.clone()
    };
    ctx.services
        .path_info
        .put(info)
        .await
        .map_err(PathImportError::Store)?;
    Ok(())
}
