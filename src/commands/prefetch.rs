//! Prefetch: fetching ahead of demand into a local cache.
//!
//! - **Traces.** A mount started with `--record-trace FILE` notes, in
//!   order and once each, what it asks of its services: path infos,
//!   directory closures, chunk lists and chunks, and writes them to FILE
//!   when it is unmounted. One entry a line:
//!
//!   ```text
//!   P <nixbase32 store path hash>   a path info
//!   D <hex BLAKE3>                  a directory closure, by its root
//!   B <hex BLAKE3>                  a blob's chunk list
//!   C <hex BLAKE3>                  a chunk (or a single-chunk blob)
//!   ```
//!
//!   Blank lines and lines starting with `#` are skipped; any other line
//!   is an error that names its line number, and nothing is replayed.
//! - **Replay.** A mount started with `--prefetch-list FILE` replays a
//!   trace in the background through its cache, in order, 16 chunks a
//!   request, and only while no demand read of the mount is waiting on
//!   its services: demand always goes first. Its progress is in
//!   `user.storefs.stats` (`prefetch`).
//! - **`storefs prefetch PATH…`** reads store paths (their files, whole)
//!   through a mount (`--mount`, at the lowest CPU priority), or fills
//!   a cache directory without a mount (`--cache DIR`, the same cache a
//!   mount keeps under `--cache`, not while a mount holds it), following
//!   references to whole closures with `--closure`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, bail};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use storefs_castore::{
    B3Digest, BlobReader, BlobService, BlobWriter, ChunkMeta, Directory, DirectoryPutter,
    DirectoryService, Result,
};
use storefs_store::PathInfo;
use storefs_store::PathInfoService;
use storefs_store::Services;
use storefs_store::nixbase32;
use storefs_store::{DIGEST_LEN, StoreDir, StorePath};

/// One thing a mount asked of its services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entry {
    /// A path info, by its store path's digest.
    PathInfo([u8; DIGEST_LEN]),
    /// A directory closure, by its root.
    Closure(B3Digest),
    /// A blob's chunk list.
    ChunkList(B3Digest),
    /// A chunk.
    Chunk(B3Digest),
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::PathInfo(d) => write!(f, "P {}", nixbase32::encode(d)),
            Entry::Closure(d) => write!(f, "D {}", d.to_hex()),
            Entry::ChunkList(d) => write!(f, "B {}", d.to_hex()),
            Entry::Chunk(d) => write!(f, "C {}", d.to_hex()),
        }
    }
}

/// Parse a trace (see the module docs); an error names the first bad line.
pub fn parse_trace(text: &str) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| anyhow::anyhow!("line {}: {why}: {line:?}", i + 1);
        let (kind, arg) = line.split_once(' ').ok_or_else(|| bad("no argument"))?;
        let digest = || B3Digest::from_hex(arg.trim()).map_err(|_| bad("not a hex BLAKE3 digest"));
        out.push(match kind {
            "P" => Entry::PathInfo(
                nixbase32::decode_fixed(arg.trim().as_bytes())
                    .map_err(|_| bad("not a nixbase32 store path hash"))?,
            ),
            "D" => Entry::Closure(digest()?),
            "B" => Entry::ChunkList(digest()?),
            "C" => Entry::Chunk(digest()?),
            _ => return Err(bad("unknown entry kind (P, D, B or C)")),
        });
    }
    Ok(out)
}

/// What a mount's services are asked, on demand: counted while in flight
/// (so that replay waits for them), and noted in order when recording.
pub struct Demand {
    in_flight: AtomicU64,
    recording: bool,
    /// The entries in first-asked order, and the set of them. A std
    /// mutex, held only to push or copy, never across an `.await`.
    trace: std::sync::Mutex<(Vec<Entry>, HashSet<Entry>)>,
}

impl Demand {
    /// A tracker; with `recording`, it notes every entry.
    pub fn new(recording: bool) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicU64::new(0),
            recording,
            trace: std::sync::Mutex::default(),
        })
    }

    /// Demand calls waiting on the services now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The trace, even if a panic poisoned its lock (it holds plain data).
    fn trace(&self) -> std::sync::MutexGuard<'_, (Vec<Entry>, HashSet<Entry>)> {
        self.trace
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn note(&self, e: Entry) {
        if self.recording {
            let mut t = self.trace();
            if t.1.insert(e) {
                t.0.push(e);
            }
        }
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Write the trace to `file` (replacing it atomically).
    pub fn write_trace(&self, file: &Path) -> anyhow::Result<usize> {
        let entries = self.trace().0.clone();
        let mut text =
            String::from("# storefs trace: P path info, D closure, B chunk list, C chunk\n");
        for e in &entries {
            text.push_str(&e.to_string());
            text.push('\n');
        }
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))?;
        Ok(entries.len())
    }

    /// `services` with every call counted (and noted when recording).
    pub fn wrap(self: &Arc<Self>, services: Services) -> Services {
        Services {
            blob: Arc::new(DemandBlobs {
                inner: services.blob,
                d: Arc::clone(self),
            }),
            directory: Arc::new(DemandDirectories {
                inner: services.directory,
                d: Arc::clone(self),
            }),
            path_info: Arc::new(DemandPathInfos {
                inner: services.path_info,
                d: Arc::clone(self),
            }),
            nar_calculation: services.nar_calculation,
        }
    }
}

/// One demand call in flight; ends when dropped.
struct InFlight(Arc<Demand>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

struct DemandBlobs {
    inner: Arc<dyn BlobService>,
    d: Arc<Demand>,
}

#[async_trait]
impl BlobService for DemandBlobs {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        let _g = self.d.start();
        self.inner.has(digest).await
    }

    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        let _g = self.d.start();
        self.d.note(Entry::ChunkList(*digest));
        self.inner.chunks(digest).await
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        let _g = self.d.start();
        self.d.note(Entry::Chunk(*digest));
        self.inner.read_chunk(digest).await
    }

    async fn read_chunk_batch(&self, digests: &[B3Digest]) -> Vec<Result<Option<Bytes>>> {
        let _g = self.d.start();
        for d in digests {
            self.d.note(Entry::Chunk(*d));
        }
        self.inner.read_chunk_batch(digests).await
    }

    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        let _g = self.d.start();
        self.inner.open_read(digest).await
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.inner.open_write().await
    }
}

struct DemandDirectories {
    inner: Arc<dyn DirectoryService>,
    d: Arc<Demand>,
}

#[async_trait]
impl DirectoryService for DemandDirectories {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>> {
        let _g = self.d.start();
        self.inner.get(digest).await
    }

    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory>> {
        self.d.note(Entry::Closure(*root));
        let g = self.d.start();
        self.inner
            .get_recursive(root)
            .map(move |item| {
                // Keep the guard for as long as the stream lives.
                let _ = &g;
                item
            })
            .boxed()
    }

    async fn put(&self, directory: Directory) -> Result<B3Digest> {
        self.inner.put(directory).await
    }

    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter> {
        self.inner.put_multiple_start()
    }
}

struct DemandPathInfos {
    inner: Arc<dyn PathInfoService>,
    d: Arc<Demand>,
}

#[async_trait]
impl PathInfoService for DemandPathInfos {
    async fn get(&self, digest: [u8; DIGEST_LEN]) -> Result<Option<PathInfo>> {
        let _g = self.d.start();
        self.d.note(Entry::PathInfo(digest));
        self.inner.get(digest).await
    }

    async fn put(&self, info: PathInfo) -> Result<PathInfo> {
        self.inner.put(info).await
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
        self.inner.list()
    }

    async fn referrers(&self, digest: [u8; DIGEST_LEN]) -> Result<Vec<StorePath>> {
        self.inner.referrers(digest).await
    }
}

/// Progress of a replay, for `user.storefs.stats`.
#[derive(Debug, Default)]
pub struct Progress {
    /// Entries in the list.
    pub entries: AtomicU64,
    /// Entries replayed so far.
    pub done: AtomicU64,
    /// Entries that failed (absent, or an error; demand will ask again).
    pub failed: AtomicU64,
    /// Times replay stood aside for demand reads.
    pub yielded: AtomicU64,
    /// Set when the whole list was replayed.
    pub finished: AtomicBool,
}

impl Progress {
    /// The figures as JSON.
    pub fn json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "entries": get(&self.entries),
            "done": get(&self.done),
            "failed": get(&self.failed),
            "yielded_to_demand": get(&self.yielded),
            "finished": self.finished.load(Ordering::Relaxed),
        })
    }
}

/// Chunks asked for in one replay request.
const REPLAY_BATCH: usize = 16;

/// Replay `entries` through `services` (the cached services, not the
/// demand-tracked ones), in order, waiting whenever `demand` has calls in
/// flight.
pub async fn replay(
    entries: Vec<Entry>,
    services: Services,
    demand: Arc<Demand>,
    progress: Arc<Progress>,
) {
    progress
        .entries
        .store(entries.len() as u64, Ordering::Relaxed);
    let mut i = 0;
    while i < entries.len() {
        // Demand first: wait while the mount waits on its services.
        while demand.in_flight() > 0 {
            progress.yielded.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        // A run of chunks goes as one batch.
        let run: Vec<B3Digest> = entries[i..]
            .iter()
            .take(REPLAY_BATCH)
            .map_while(|e| match e {
                Entry::Chunk(d) => Some(*d),
                _ => None,
            })
            .collect();
        if !run.is_empty() {
            let got = services.blob.read_chunk_batch(&run).await;
            let failed = got.iter().filter(|r| !matches!(r, Ok(Some(_)))).count();
            progress.failed.fetch_add(failed as u64, Ordering::Relaxed);
            progress.done.fetch_add(run.len() as u64, Ordering::Relaxed);
            i += run.len();
            continue;
        }
        let ok = match entries[i] {
            Entry::PathInfo(d) => matches!(services.path_info.get(d).await, Ok(Some(_))),
            Entry::Closure(root) => {
                let mut s = services.directory.get_recursive(&root);
                let mut ok = true;
                while let Some(item) = s.next().await {
                    ok &= item.is_ok();
                }
                ok
            }
            Entry::ChunkList(d) => matches!(services.blob.chunks(&d).await, Ok(Some(_))),
            Entry::Chunk(_) => true,
        };
        if !ok {
            progress.failed.fetch_add(1, Ordering::Relaxed);
        }
        progress.done.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
    progress.finished.store(true, Ordering::Relaxed);
}

/// Read a trace file.
pub fn read_trace(file: &Path) -> anyhow::Result<Vec<Entry>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    parse_trace(&text).with_context(|| format!("prefetch list {}", file.display()))
}

/// `storefs prefetch`'s flags, checked.
pub struct PrefetchArgs {
    /// Store paths (or files, with `--mount`).
    pub paths: Vec<String>,
    /// Read through this mount.
    pub mount: Option<PathBuf>,
    /// Fill this cache directory instead.
    pub cache: Option<PathBuf>,
    /// Its size quota.
    pub cache_size: Option<String>,
    /// Follow references (needs the store).
    pub closure: bool,
}

/// The store paths `paths` name, with their closures when `closure`.
async fn expand(
    services: &Services,
    store_dir: &StoreDir,
    paths: &[String],
    closure: bool,
) -> anyhow::Result<Vec<PathInfo>> {
    let mut seen = HashSet::new();
    let mut queue: Vec<StorePath> = Vec::new();
    for p in paths {
        queue.push(store_dir.parse_path(p)?);
    }
    let mut out = Vec::new();
    while let Some(sp) = queue.pop() {
        if !seen.insert(*sp.digest()) {
            continue;
        }
        let info = super::lookup(services, store_dir, &sp.to_absolute(store_dir)).await?;
        if closure {
            queue.extend(info.references.iter().cloned());
        }
        out.push(info);
    }
    Ok(out)
}

/// Run `storefs prefetch`.
pub async fn run(
    open: impl std::future::Future<Output = anyhow::Result<Services>>,
    store_dir: &StoreDir,
    args: &PrefetchArgs,
) -> anyhow::Result<()> {
    match (&args.mount, &args.cache) {
        (Some(mp), None) => {
            lower_priority();
            let mut targets: Vec<PathBuf> = Vec::new();
            if args.closure {
                let services = open.await?;
                for info in expand(&services, store_dir, &args.paths, true).await? {
                    targets.push(mp.join(info.store_path.base_name()));
                }
            } else {
                for p in &args.paths {
                    let rel = match store_dir.parse_path(p) {
                        Ok(sp) => PathBuf::from(sp.base_name()),
                        Err(_) => PathBuf::from(
                            p.trim_start_matches(store_dir.as_str())
                                .trim_start_matches('/'),
                        ),
                    };
                    targets.push(mp.join(rel));
                }
            }
            let (files, bytes) = tokio::task::spawn_blocking(move || read_all(&targets))
                .await
                .context("the prefetch task failed")??;
            println!("prefetched {files} files, {bytes} bytes through the mount");
            Ok(())
        }
        (None, Some(dir)) => {
            let far = open.await?;
            let near = super::near_cache::front(
                far,
                dir,
                args.cache_size.as_deref(),
                false,
                std::time::Duration::ZERO,
            )
            .await?;
            let infos = expand(&near.services, store_dir, &args.paths, args.closure).await?;
            let mut entries = Vec::new();
            for info in &infos {
                entries.push(Entry::PathInfo(*info.store_path.digest()));
                collect_entries(&near.services, &info.node, &mut entries).await?;
            }
            let progress = Arc::new(Progress::default());
            replay(
                entries,
                near.services.clone(),
                Demand::new(false),
                Arc::clone(&progress),
            )
            .await;
            near.writes.finish().await?;
            let s = near.stats.snapshot();
            println!(
                "prefetched {} paths into {}: {} bytes fetched, {} already cached, {} failed",
                infos.len(),
                dir.display(),
                s.far_bytes,
                s.near_bytes,
                progress.failed.load(Ordering::Relaxed)
            );
            Ok(())
        }
        _ => bail!("say where to prefetch to: --mount MOUNTPOINT or --cache DIR"),
    }
}

/// Every chunk of every file under `node`, as replay entries (chunk lists
/// and directory closures first).
async fn collect_entries(
    services: &Services,
    node: &storefs_castore::Node,
    out: &mut Vec<Entry>,
) -> anyhow::Result<()> {
    use storefs_castore::Node;
    let mut blobs = Vec::new();
    match node {
        Node::File { digest, .. } => blobs.push(*digest),
        Node::Symlink { .. } => {}
        Node::Directory { digest, .. } => {
            out.push(Entry::Closure(*digest));
            let mut s = services.directory.get_recursive(digest);
            while let Some(dir) = s.next().await {
                for (_, n) in dir?.entries() {
                    if let Node::File { digest, .. } = n {
                        blobs.push(*digest);
                    }
                }
            }
        }
    }
    for b in blobs {
        match services.blob.chunks(&b).await? {
            Some(list) if !list.is_empty() => {
                out.push(Entry::ChunkList(b));
                out.extend(list.iter().map(|c| Entry::Chunk(c.digest)));
            }
            _ => out.push(Entry::Chunk(b)),
        }
    }
    Ok(())
}

/// Read every file under `targets` whole; (files, bytes).
fn read_all(targets: &[PathBuf]) -> anyhow::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut buf = vec![0u8; 1 << 20];
    for t in targets {
        let mut stack = vec![t.clone()];
        while let Some(p) = stack.pop() {
            let meta = std::fs::symlink_metadata(&p).with_context(|| format!("{}", p.display()))?;
            if meta.is_dir() {
                for e in std::fs::read_dir(&p).with_context(|| format!("{}", p.display()))? {
                    stack.push(e?.path());
                }
            } else if meta.is_file() {
                let mut f = std::fs::File::open(&p).with_context(|| format!("{}", p.display()))?;
                loop {
                    let n = std::io::Read::read(&mut f, &mut buf)
                        .with_context(|| format!("reading {}", p.display()))?;
                    if n == 0 {
                        break;
                    }
                    bytes += n as u64;
                }
                files += 1;
            }
        }
    }
    Ok((files, bytes))
}

/// The lowest CPU priority for this process, so that reading through a
/// mount yields to other work here. (The mount serves these reads like
/// any other: for demand-first fetching use `mount --prefetch-list`.)
fn lower_priority() {
    if let Err(e) = rustix::process::setpriority_process(None, 19) {
        tracing::debug!(error = %e, "cannot lower our priority");
    }
}
