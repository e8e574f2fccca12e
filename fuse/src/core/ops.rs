//! The filesystem's operations, as async functions over shared state.
//!
//! Each returns `Result<_, FsError>`; [`crate::core::bridge`] runs them for the
//! FUSE callbacks. They are written so that when everything they need is in
//! memory they finish without ever yielding, and the bridge answers on the
//! FUSE thread at once.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use futures::TryStreamExt;
use lru::LruCache;
use parking_lot::Mutex;
use storefs_castore::DirectoryService;
use storefs_castore::{B3Digest, Directory, Node};
use storefs_store::PathInfoService;
use storefs_store::{HASH_PART_LEN, parse_hash_part};

use crate::core::attr::{Attr, FileKind, attr, dir_nlink, kind};
use crate::core::deadline::within;
use crate::core::error::FsError;
use crate::core::fetch::{Fetcher, LIST_LOOKAHEAD, LIST_LOOKAHEAD_SCAN, SMALL_BLOB};
use crate::core::inodes::{InodeData, InodeKey, InodeTable, ROOT_INO};
use crate::core::reader::{self, OpenFile};
use crate::core::stats::{self, MountStats};
use storefs_castore::ChunkMeta;

/// The xattr naming a file's blob digest (hex).
pub const XATTR_BLOB: &str = "user.storefs.blob.digest";
/// The xattr naming a directory's digest (hex).
pub const XATTR_DIRECTORY: &str = "user.storefs.directory.digest";
/// The xattr of the root holding the mount's figures (JSON).
pub const XATTR_STATS: &str = "user.storefs.stats";

/// At most this many entries go into one readdirplus answer: each creates
/// an inode (and counts a lookup) before we know whether the kernel's buffer
/// holds it; those that do not fit are forgotten again at once.
const READDIRPLUS_BATCH: usize = 32;

/// Bound on the set of store paths whose closure was fetched; cleared when
/// it grows past this (a refetch costs one round trip, nothing more).
const CLOSURES_REMEMBERED: usize = 64 * 1024;

/// How many blobs keep open-file state for handle-less reads.
const BLOB_FILES: usize = 4096;

/// How many files remember the directory (and name) they were last found
/// under, for fetching their small siblings together.
const FILE_DIRS: usize = 16 * 1024;

/// The window of small siblings fetched together when a file is opened:
/// the small files (up to [`SMALL_BLOB`] each) from the opened one on, in
/// name order (the order a walker reads them), up to this many bytes ...
const SIBLING_WINDOW_BYTES: u64 = 2 * 1024 * 1024;

/// ... or this many files. A new batch starts when the file halfway
/// through the window is not yet here, so a reader walking a directory
/// finds the next files arrived or on their way, and each request carries
/// about half a window.
const SIBLING_WINDOW_FILES: usize = 256;

/// How many directories remember the name of the file last opened in them,
/// to tell a walk through a directory from opens here and there.
const DIR_CURSORS: usize = 16 * 1024;

/// A walk reaching the end of a directory's small files makes sure the
/// first windows of this many directories after it (those with small
/// files) are here or on their way: while the walker reads the next one,
/// the one after is on its way, so it never waits for a directory's
/// request ...
const DIRECTORIES_AHEAD: usize = 2;

/// ... and when they are not, asks for the first windows of this many in
/// one request (one round trip, one fill of the local cache, instead of
/// one per directory) ...
const DIRECTORIES_PER_REQUEST: usize = 4;

/// ... of at most this many bytes (at least one directory's window) ...
const AHEAD_BYTES: u64 = 2 * 1024 * 1024;

/// ... looking at no more than this many directories for them ...
const DIRECTORIES_SCANNED: usize = 16;

/// ... and climbing at most this many levels above the directory for the
/// directories after it.
const ANCESTORS_AHEAD: usize = 3;

/// The `d_ino` of a readdir entry that has no inode yet (libfuse's
/// `FUSE_UNKNOWN_INO`): plain readdir does not count lookups, so it must
/// not create inodes.
pub const UNKNOWN_INO: u64 = 0xffff_ffff;

/// How far a walk through a directory needs no new look at its window of
/// small files (see [`FsInner::fetch_siblings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settled {
    /// The next open looks.
    No,
    /// Opens of names before this one do not look: the window last asked
    /// for reaches past them by at least half a window.
    Before(Bytes),
    /// The window last asked for reached the directory's end (and the
    /// directories after it were asked for): no open in it looks again.
    ToTheEnd,
}

/// Where a walk through one directory stands: the name last opened there,
/// and how far its window of small files is settled.
#[derive(Debug, Clone)]
struct DirCursor {
    last: Bytes,
    settled: Settled,
    /// Whether the directory has files larger than [`SMALL_BLOB`] (whose
    /// chunk lists are worth asking for ahead): a directory of small files
    /// only is not scanned for them at every open.
    large: bool,
}

/// Where an open stands in a walk through its directory (`FsInner::walk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// The first open in the directory.
    First,
    /// At most a window's files after the previous open there.
    On,
    /// Anywhere else.
    Jumped,
}

/// One entry of a directory listing (`readdir`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListItem {
    /// The offset of the entry after this one.
    pub next_offset: u64,
    /// The name.
    pub name: Bytes,
    /// The inode number, [`UNKNOWN_INO`] for an entry not looked up yet.
    pub ino: u64,
    /// The entry's type.
    pub kind: FileKind,
}

/// An entry of a readdirplus answer: the inode was looked up once.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PlusItem {
    /// The offset of the entry after this one.
    pub next_offset: u64,
    /// The name.
    pub name: Bytes,
    /// Its attributes (`attr.ino` is its inode).
    pub attr: Attr,
    /// Whether a lookup was counted for it (not for `.` and `..`): an entry
    /// that does not reach the kernel must be forgotten once.
    pub counted: bool,
}

/// A file opened by [`FsInner::open`].
pub(crate) struct Opened {
    /// Its handle.
    pub(crate) fh: u64,
    /// Its blob and length.
    pub(crate) digest: B3Digest,
    pub(crate) size: u64,
    /// Its chunks.
    pub(crate) layout: Arc<crate::core::fetch::BlobLayout>,
}

/// A snapshot of the root's entries: base name and root node, sorted.
type RootListing = Vec<(Bytes, Node)>;

/// The state every operation shares.
pub(crate) struct FsInner {
    pub(crate) inodes: InodeTable,
    dirs: crate::core::dircache::DirCache,
    dir_service: Arc<dyn DirectoryService>,
    pathinfo: Arc<dyn PathInfoService>,
    pub(crate) fetcher: Arc<Fetcher>,
    pub(crate) stats: Arc<MountStats>,
    /// Open files by handle. `parking_lot`: held for one map operation.
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    /// Open-file state by blob, for reads without a handle: once the
    /// kernel runs without FUSE_OPEN (see [`FsInner::set_no_open`]) every
    /// read arrives with handle 0. `parking_lot`: one map operation.
    blob_files: Mutex<LruCache<B3Digest, Arc<OpenFile>>>,
    /// Whether the kernel agreed to skip FUSE_OPEN/RELEASE for files.
    no_open: AtomicBool,
    /// Snapshots of the root listing, by directory handle.
    listings: Mutex<HashMap<u64, Arc<RootListing>>>,
    next_fh: AtomicU64,
    /// Store paths (by root directory digest) whose closure was fetched.
    closures: Mutex<HashSet<B3Digest>>,
    list_root: bool,
    readahead_chunks: usize,
    /// The deadline of each call to a service.
    timeout: std::time::Duration,
    /// The directory (digest) and name each file was last found under, by
    /// blob: where to find its siblings when it is opened.
    /// Also the inode of that directory, to find the directory after it.
    file_dirs: Mutex<LruCache<B3Digest, (B3Digest, Bytes, u64)>>,
    /// The name last opened in each directory (by digest): see
    /// [`FsInner::walks_on`].
    dir_cursors: Mutex<LruCache<B3Digest, DirCursor>>,
    /// Directories (by inode) whose walk already asked for the
    /// directories after it ([`FsInner::fetch_next_directories`]).
    next_asked: Mutex<LruCache<u64, ()>>,
}

/// What [`FsInner::new`] needs beyond the services.
pub(crate) struct InnerConfig {
    pub(crate) list_root: bool,
    pub(crate) readahead_chunks: usize,
    pub(crate) dir_cache_entries: usize,
    /// The deadline of each call to a service (see `deadline`).
    pub(crate) timeout: std::time::Duration,
}

impl FsInner {
    /// Shared state over these services.
    pub(crate) fn new(
        dir_service: Arc<dyn DirectoryService>,
        pathinfo: Arc<dyn PathInfoService>,
        fetcher: Arc<Fetcher>,
        stats: Arc<MountStats>,
        config: InnerConfig,
    ) -> Self {
        stats::set(&stats.inodes, 1);
        Self {
            inodes: InodeTable::new(),
            dirs: crate::core::dircache::DirCache::new(config.dir_cache_entries),
            dir_service,
            pathinfo,
            fetcher,
            stats,
            files: Mutex::new(HashMap::new()),
            blob_files: Mutex::new(LruCache::new(
                NonZeroUsize::new(BLOB_FILES).unwrap_or(NonZeroUsize::MIN),
            )),
            no_open: AtomicBool::new(false),
            listings: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            closures: Mutex::new(HashSet::new()),
            list_root: config.list_root,
            readahead_chunks: config.readahead_chunks,
            timeout: config.timeout,
            file_dirs: Mutex::new(LruCache::new(
                NonZeroUsize::new(FILE_DIRS).unwrap_or(NonZeroUsize::MIN),
            )),
            dir_cursors: Mutex::new(LruCache::new(
                NonZeroUsize::new(DIR_CURSORS).unwrap_or(NonZeroUsize::MIN),
            )),
            next_asked: Mutex::new(LruCache::new(
                NonZeroUsize::new(DIR_CURSORS).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    fn inode(&self, ino: u64) -> Result<Arc<InodeData>, FsError> {
        self.inodes.get(ino).ok_or(FsError::UnknownInode(ino))
    }

    fn count_inodes(&self) {
        stats::set(&self.stats.inodes, self.inodes.len() as u64);
    }

    /// One directory: from memory, else from the directory service
    /// (checked against its digest).
    async fn dir(&self, digest: B3Digest) -> Result<Arc<Directory>, FsError> {
        if let Some(d) = self.dirs.get(&digest) {
            return Ok(d);
        }
        stats::add(&self.stats.directories_fetched, 1);
        let call = self.dir_service.get(&digest);
        let dir = within(&self.stats, "directory fetch", self.timeout, call)
            .await?
            .ok_or(FsError::Missing {
                what: "directory",
                digest,
            })?;
        let actual = dir.digest();
        if actual != digest {
            return Err(FsError::DirectoryDigest {
                expected: digest,
                actual,
            });
        }
        let dir = Arc::new(dir);
        self.dirs.insert(digest, dir.clone());
        Ok(dir)
    }

    /// Fetch the whole closure of a store path's root directory in one
    /// recursive call, once per store path.
    async fn ensure_closure(&self, root: B3Digest) -> Result<(), FsError> {
        if self.closures.lock().contains(&root) {
            return Ok(());
        }
        stats::add(&self.stats.closures_fetched, 1);
        let mut stream = self.dir_service.get_recursive(&root);
        let mut seen = 0usize;
        // The deadline is per directory: a large closure may take longer
        // than one timeout as a whole, a silent service does not.
        while let Some(dir) = within(
            &self.stats,
            "closure fetch",
            self.timeout,
            stream.try_next(),
        )
        .await?
        {
            let digest = dir.digest();
            self.dirs.insert(digest, Arc::new(dir));
            seen += 1;
        }
        if seen == 0 {
            return Err(FsError::Missing {
                what: "directory",
                digest: root,
            });
        }
        let mut closures = self.closures.lock();
        if closures.len() >= CLOSURES_REMEMBERED {
            closures.clear();
        }
        closures.insert(root);
        Ok(())
    }

    /// The inode data for `node`, loading a directory for its link count.
    async fn node_data(&self, parent: u64, node: &Node) -> Result<InodeData, FsError> {
        Ok(match node {
            Node::Directory { digest, .. } => {
                let dir = self.dir(*digest).await?;
                InodeData::Directory {
                    digest: *digest,
                    nlink: dir_nlink(dir.child_directories().count()),
                    parent,
                }
            }
            Node::File {
                digest,
                size,
                executable,
            } => InodeData::File {
                digest: *digest,
                size: *size,
                executable: *executable,
            },
            Node::Symlink { target } => InodeData::Symlink {
                target: target.clone(),
            },
        })
    }

    /// Count one lookup of the child `name` (which is `node`) of `parent`.
    async fn child(&self, parent: u64, name: &[u8], node: &Node) -> Result<Attr, FsError> {
        if let Node::File { digest, .. } = node
            && let Some(InodeData::Directory { digest: dir, .. }) =
                self.inodes.get(parent).as_deref()
        {
            self.file_dirs
                .lock()
                .put(*digest, (*dir, Bytes::copy_from_slice(name), parent));
        }
        let key = InodeKey::for_node(parent, name, node);
        let data = match self.inodes.find(&key) {
            Some((_, data)) => (*data).clone(),
            None => self.node_data(parent, node).await?,
        };
        let (ino, data) = self.inodes.lookup(key, || data);
        self.count_inodes();
        Ok(attr(ino, &data))
    }

    /// `lookup`: the child `name` of `parent`, or `None` if there is no
    /// such name (which the kernel may remember: see `crate::mount::fs`).
    pub(crate) async fn lookup(
        self: Arc<Self>,
        parent: u64,
        name: Bytes,
    ) -> Result<Option<Attr>, FsError> {
        stats::add(&self.stats.lookups, 1);
        match self.lookup_entry(parent, name).await {
            Ok(attr) => Ok(Some(attr)),
            Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn lookup_entry(&self, parent: u64, name: Bytes) -> Result<Attr, FsError> {
        if parent == ROOT_INO {
            return self.lookup_root(name).await;
        }
        let data = self.inode(parent)?;
        let InodeData::Directory { digest, .. } = &*data else {
            return Err(FsError::NotDirectory(parent));
        };
        let dir = self.dir(*digest).await?;
        let node = dir.get(&name).ok_or(FsError::NotFound)?.clone();
        self.child(parent, &name, &node).await
    }

    /// A store path by its base name: the hash part is asked of the path
    /// info service, and the name must match.
    async fn lookup_root(&self, name: Bytes) -> Result<Attr, FsError> {
        let (digest, path_name) = parse_root_name(&name).ok_or(FsError::NotFound)?;
        let key = InodeKey::Child {
            parent: ROOT_INO,
            name: name.clone(),
        };
        if let Some((_, data)) = self.inodes.find(&key) {
            // Known already; make sure its closure was fetched (readdirplus
            // of the root creates inodes without it).
            if let InodeData::Directory { digest, .. } = &*data {
                self.ensure_closure(*digest).await?;
            }
            let (ino, data) = self.inodes.lookup(key, || (*data).clone());
            self.count_inodes();
            return Ok(attr(ino, &data));
        }
        stats::add(&self.stats.path_infos_fetched, 1);
        let call = self.pathinfo.get(digest);
        let info = within(&self.stats, "path info fetch", self.timeout, call)
            .await?
            .ok_or(FsError::NotFound)?;
        if info.store_path.name() != path_name {
            return Err(FsError::NotFound);
        }
        if let Node::Directory { digest, .. } = &info.node {
            self.ensure_closure(*digest).await?;
        }
        self.child(ROOT_INO, &name, &info.node).await
    }

    /// `getattr`.
    pub(crate) fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        stats::add(&self.stats.getattrs, 1);
        Ok(attr(ino, &*self.inode(ino)?))
    }

    /// `readlink`.
    pub(crate) fn readlink(&self, ino: u64) -> Result<Bytes, FsError> {
        match &*self.inode(ino)? {
            InodeData::Symlink { target } => Ok(target.to_bytes()),
            _ => Err(FsError::WrongType(ino)),
        }
    }

    /// A new session: the kernel on the other side is not the one that
    /// looked things up so far (a guest rebooted against the same virtio-fs
    /// backend). Its inodes, open files and listings go; the caches and the
    /// figures stay.
    pub(crate) fn new_session(&self) {
        self.inodes.forget_all();
        self.count_inodes();
        self.files.lock().clear();
        stats::set(&self.stats.open_files, 0);
        self.listings.lock().clear();
        self.no_open.store(false, Ordering::Relaxed);
    }

    /// `forget`.
    pub(crate) fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
        self.count_inodes();
    }

    /// `open`: learn the file's chunk list (from memory if known) and hand
    /// out a handle.
    pub(crate) async fn open(self: Arc<Self>, ino: u64, write: bool) -> Result<Opened, FsError> {
        stats::add(&self.stats.opens, 1);
        let data = self.inode(ino)?;
        let (digest, size) = match &*data {
            InodeData::File { digest, size, .. } => (*digest, *size),
            InodeData::Root | InodeData::Directory { .. } => return Err(FsError::IsDirectory(ino)),
            InodeData::Symlink { .. } => return Err(FsError::WrongType(ino)),
        };
        if write {
            return Err(FsError::ReadOnly);
        }
        self.fetch_siblings(digest);
        let layout = self.fetcher.layout(digest, size).await?;
        if self.no_open.load(Ordering::Relaxed) {
            // The chunk list is in memory now. Answering ENOSYS tells the
            // kernel to open files without asking us from now on (it then
            // keeps its page cache across opens): a warm open costs no round
            // trip at all, and reads arrive with handle 0.
            return Err(FsError::NoOpen);
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let mut files = self.files.lock();
        files.insert(fh, Arc::new(OpenFile::new(Arc::clone(&layout))));
        stats::set(&self.stats.open_files, files.len() as u64);
        Ok(Opened {
            fh,
            digest,
            size,
            layout,
        })
    }

    /// A file (blob `blob`) is being opened: make sure the small files
    /// after it in its directory are here or on their way, fetching those
    /// that are not in batches (see [`SIBLING_WINDOW_BYTES`]), and ask for
    /// the chunk lists of the next few large files (not their bytes; see
    /// [`LIST_LOOKAHEAD`]). Bounded by
    /// the window, so a program that opens one file of a large directory
    /// pulls at most a window of its neighbours. Needs nothing from the
    /// network: the directory is in memory (its store path's closure was
    /// fetched at lookup) or the window is skipped.
    fn fetch_siblings(self: &Arc<Self>, blob: B3Digest) {
        let Some((dir_digest, name, dir_ino)) = self.file_dirs.lock().get(&blob).cloned() else {
            return;
        };
        let Some(dir) = self.dirs.get(&dir_digest) else {
            return;
        };
        let (walk, settled, has_large) = self.walk(dir_digest, &dir, &name);
        if has_large {
            // The large files just after it: their chunk lists, asked for
            // now and together, are in memory by the time they are opened.
            let large: Vec<(B3Digest, u64)> = dir
                .entries_from(&name)
                .skip(1)
                .take(LIST_LOOKAHEAD_SCAN)
                .filter_map(|(_, node)| match node {
                    Node::File { digest, size, .. } if *size > SMALL_BLOB => Some((*digest, *size)),
                    _ => None,
                })
                .take(LIST_LOOKAHEAD)
                .collect();
            if !large.is_empty() {
                self.fetcher.prefetch_layouts(large);
            }
        }
        if walk == Walk::Jumped || settled {
            // Elsewhere in the directory; or the window asked for earlier
            // is still far enough ahead: nothing to scan, nothing to ask.
            return;
        }
        let (window, to_the_end) = self.small_window(dir.entries_from(&name));
        if to_the_end && walk == Walk::On {
            // A walk is going through this directory and the window reaches
            // its end: the next directories' first small files are asked
            // for now, so that the walker does not wait for them there.
            // Once per directory (later opens in it find it marked), and on
            // the runtime: the directories may have to be read back from the
            // directory service.
            if self.next_asked.lock().put(dir_ino, ()).is_none() {
                let this = Arc::clone(self);
                let dir = Arc::clone(&dir);
                self.fetcher
                    .spawn(async move { this.fetch_next_directories(dir_ino, dir).await });
            }
        }
        // The first file of the window not here nor on its way.
        let first_new = window
            .iter()
            .position(|(_, m)| !self.fetcher.is_known(&m.digest));
        let half = window.len() / 2;
        // How far later opens of a walk need no look: while at least half
        // a window ahead of them is here or on its way.
        let until = |k: usize| match window.get(k) {
            Some((name, _)) => Settled::Before(name.clone()),
            None => Settled::No,
        };
        let skipped = matches!(first_new, Some(i) if i > 0 && i >= half);
        if first_new.is_some() && !skipped && window.len() > 1 {
            // Else only the file itself, which the ordinary fetch brings.
            self.fetcher.fetch_batch(window.iter().map(|(_, m)| *m));
        }
        let settled = match first_new {
            // The batch that reached the middle is still ahead of the
            // reader: look again once fewer than half a window ahead are
            // here or on their way.
            Some(i) if skipped => until(i - half + 1),
            _ if to_the_end => Settled::ToTheEnd,
            _ => until(half),
        };
        // The first open of a directory whose window reaches its end
        // settles nothing: the directories after it are asked for (above)
        // only at a later open of a walk.
        if (walk == Walk::On || !to_the_end)
            && let Some(c) = self.dir_cursors.lock().get_mut(&dir_digest)
        {
            c.settled = settled;
        }
    }

    /// The small files (see [`SMALL_BLOB`]) among `entries`, in order, up
    /// to a window ([`SIBLING_WINDOW_BYTES`], [`SIBLING_WINDOW_FILES`]);
    /// and whether the window reached the end of `entries`.
    fn small_window<'a>(
        &self,
        entries: impl Iterator<Item = (&'a storefs_castore::PathComponent, &'a Node)>,
    ) -> (Vec<(Bytes, ChunkMeta)>, bool) {
        let mut window = Vec::new();
        let mut bytes = 0u64;
        for (name, node) in entries {
            let Node::File { digest, size, .. } = node else {
                continue;
            };
            if *size == 0 || *size > SMALL_BLOB || self.fetcher.is_chunked_small(digest) {
                continue;
            }
            window.push((
                name.to_bytes(),
                ChunkMeta {
                    digest: *digest,
                    size: *size,
                },
            ));
            bytes += size;
            if bytes >= SIBLING_WINDOW_BYTES || window.len() >= SIBLING_WINDOW_FILES {
                return (window, false);
            }
        }
        (window, true)
    }

    /// Ask for the first windows of small files of the next directories a
    /// walker goes to after the files of `dir` (inode `dir_ino`), in the
    /// order of a top-down walk (its subdirectories, then the directories
    /// after it in its parent, and so on up), among the next
    /// [`DIRECTORIES_SCANNED`]: nothing while the next [`DIRECTORIES_AHEAD`]
    /// that have small files are here or on their way, else the next
    /// [`DIRECTORIES_PER_REQUEST`] in one batch (within [`AHEAD_BYTES`]), so
    /// a walk costs one request per few directories, each asked for a
    /// directory or two before the walker gets there. Once per directory: later opens in it find
    /// it marked ([`FsInner::next_asked`]), so the walk costs one look-ahead
    /// per directory, not one per file. Skips what is here or on its way.
    /// Directories not in memory are read back from the directory service
    /// (the local cache: the closure was fetched at lookup); one that cannot
    /// be ends the look-ahead.
    async fn fetch_next_directories(&self, dir_ino: u64, dir: Arc<Directory>) {
        // The walk's place: `dir` (from its first subdirectory), below its
        // ancestors (each from the directory after the one walked into).
        let mut stack: Vec<(Arc<Directory>, Option<B3Digest>)> = vec![(dir, None)];
        let mut ino = dir_ino;
        while stack.len() <= ANCESTORS_AHEAD {
            let Some(data) = self.inodes.get(ino) else {
                break;
            };
            let InodeData::Directory { digest, parent, .. } = &*data else {
                break;
            };
            let Some(up) = self.inodes.get(*parent) else {
                break;
            };
            let InodeData::Directory { digest: up, .. } = &*up else {
                break;
            };
            let Ok(up) = self.dir(*up).await else {
                break;
            };
            stack.insert(0, (up, Some(*digest)));
            ino = *parent;
        }
        // The first windows of the next directories, in walk order.
        let mut windows: Vec<Vec<(Bytes, ChunkMeta)>> = Vec::new();
        let mut scanned = 0;
        while windows.len() < DIRECTORIES_PER_REQUEST && scanned < DIRECTORIES_SCANNED {
            let Some((top, after)) = stack.pop() else {
                break;
            };
            // The first subdirectory of `top` after `after` (from its
            // first when `after` is `None`).
            let mut past = after.is_none();
            let next = top.entries().find_map(|(_, n)| match n {
                Node::Directory { digest, .. } if past => Some(*digest),
                Node::Directory { digest, .. } => {
                    past = Some(digest) == after.as_ref();
                    None
                }
                _ => None,
            });
            let Some(next) = next else {
                continue;
            };
            stack.push((top, Some(next)));
            scanned += 1;
            let Ok(sub) = self.dir(next).await else {
                break;
            };
            let (window, _) = self.small_window(sub.entries());
            if window.len() >= 2 {
                windows.push(window);
            }
            stack.push((sub, None));
        }
        // The walk is far enough ahead of its reader while the next
        // `DIRECTORIES_AHEAD` directories are here or on their way; when
        // not, the next `DIRECTORIES_PER_REQUEST` go in one request (one
        // round trip, one fill of the local cache), within a window's bytes.
        let here =
            |w: &Vec<(Bytes, ChunkMeta)>| w.iter().all(|(_, m)| self.fetcher.is_known(&m.digest));
        if windows.iter().take(DIRECTORIES_AHEAD).all(here) {
            return;
        }
        let mut bytes = 0u64;
        let mut metas = Vec::new();
        for window in &windows {
            let size: u64 = window.iter().map(|(_, m)| m.size).sum();
            if !metas.is_empty() && bytes + size > AHEAD_BYTES {
                break;
            }
            bytes += size;
            metas.extend(window.iter().map(|(_, m)| *m));
            stats::add(&self.stats.directories_ahead, 1);
        }
        let n = self.fetcher.fetch_batch(metas);
        stats::add(&self.stats.readahead_chunks, n as u64);
    }

    /// Where opening `name` in directory `dir` (digest `digest`) stands in
    /// a walk through it: the first open there, an open at most a window's
    /// files after the previous one, or a jump. Only a walk makes a window
    /// of siblings worth fetching: programs that open files of a directory
    /// here and there (many readers at once, a loader) would otherwise pull
    /// a window per open, each read back from the local cache for nothing
    /// when the files are there already.
    ///
    /// Also whether the open is settled: a walk's window asked for earlier
    /// still reaches far enough past it (see [`Settled`]); and whether the
    /// directory has large files ([`DirCursor::large`]).
    fn walk(&self, digest: B3Digest, dir: &Directory, name: &Bytes) -> (Walk, bool, bool) {
        let mut cursors = self.dir_cursors.lock();
        let Some(cursor) = cursors.get_mut(&digest) else {
            let large = dir
                .entries()
                .any(|(_, n)| matches!(n, Node::File { size, .. } if *size > SMALL_BLOB));
            cursors.put(
                digest,
                DirCursor {
                    last: name.clone(),
                    settled: Settled::No,
                    large,
                },
            );
            return (Walk::First, false, large);
        };
        let large = cursor.large;
        // Usually the next name: a step or two from the last.
        let on = dir
            .entries_from(&cursor.last)
            .take(SIBLING_WINDOW_FILES + 1)
            .any(|(n, _)| n.as_ref() == name.as_ref());
        cursor.last = name.clone();
        if !on {
            cursor.settled = Settled::No;
            return (Walk::Jumped, false, large);
        }
        let settled = match &cursor.settled {
            Settled::No => false,
            Settled::Before(until) => name.as_ref() < until.as_ref(),
            Settled::ToTheEnd => true,
        };
        (Walk::On, settled, large)
    }

    /// The kernel agreed to open files without FUSE_OPEN (it asked with
    /// FUSE_NO_OPEN_SUPPORT): the next `open` answers ENOSYS to switch over.
    pub(crate) fn set_no_open(&self) {
        self.no_open.store(true, Ordering::Relaxed);
    }

    /// Open-file state of inode `ino` for reads without a handle, shared by
    /// all readers of its blob.
    async fn blob_file(self: &Arc<Self>, ino: u64) -> Result<Arc<OpenFile>, FsError> {
        let (digest, size) = match &*self.inode(ino)? {
            InodeData::File { digest, size, .. } => (*digest, *size),
            _ => return Err(FsError::WrongType(ino)),
        };
        if let Some(f) = self.blob_files.lock().get(&digest).cloned() {
            return Ok(f);
        }
        self.fetch_siblings(digest);
        let layout = self.fetcher.layout(digest, size).await?;
        let file = Arc::new(OpenFile::new(layout));
        self.blob_files.lock().put(digest, file.clone());
        Ok(file)
    }

    /// `read` of `ino` through handle `fh` (0: no handle, see
    /// [`FsInner::set_no_open`]).
    pub(crate) fn read(
        self: &Arc<Self>,
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> futures::future::BoxFuture<'static, Result<Bytes, FsError>> {
        use futures::FutureExt;
        stats::add(&self.stats.reads, 1);
        let len = u64::from(size);
        if fh == 0 {
            let this = Arc::clone(self);
            return async move {
                let file = this.blob_file(ino).await?;
                reader::read(
                    &this.fetcher,
                    &this.stats,
                    &file,
                    offset,
                    len,
                    this.readahead_chunks,
                )
                .await
            }
            .boxed();
        }
        let Some(file) = self.files.lock().get(&fh).cloned() else {
            return futures::future::ready(Err(FsError::UnknownHandle(fh))).boxed();
        };
        reader::read(
            &self.fetcher,
            &self.stats,
            &file,
            offset,
            len,
            self.readahead_chunks,
        )
    }

    /// `release` of handle `fh`.
    pub(crate) fn release(&self, fh: u64) {
        stats::add(&self.stats.releases, 1);
        let mut files = self.files.lock();
        files.remove(&fh);
        stats::set(&self.stats.open_files, files.len() as u64);
    }

    /// `opendir`: a handle, and whether the kernel may cache the listing.
    /// The root's listing is a snapshot taken here (`--list-root`) or empty.
    pub(crate) async fn opendir(self: Arc<Self>, ino: u64) -> Result<(u64, bool), FsError> {
        match &*self.inode(ino)? {
            InodeData::Root => {
                let mut entries = Vec::new();
                if self.list_root {
                    let mut list = self.pathinfo.list();
                    while let Some(info) =
                        within(&self.stats, "path info list", self.timeout, list.try_next()).await?
                    {
                        entries.push((Bytes::from(info.store_path.base_name()), info.node));
                    }
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                    entries.dedup_by(|a, b| a.0 == b.0);
                }
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.listings.lock().insert(fh, Arc::new(entries));
                // New store paths may appear: the root is not cached.
                Ok((fh, false))
            }
            InodeData::Directory { .. } => Ok((0, true)),
            _ => Err(FsError::NotDirectory(ino)),
        }
    }

    /// `releasedir`.
    pub(crate) fn releasedir(&self, fh: u64) {
        self.listings.lock().remove(&fh);
    }

    /// The children of directory `ino` (with `.` and `..` first), from
    /// position `offset` on, as `(next_offset, name, node)`; `.` and `..`
    /// have no node.
    async fn children(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
    ) -> Result<(u64, Vec<(u64, Bytes, Option<Node>)>), FsError> {
        let data = self.inode(ino)?;
        let (parent, nodes): (u64, Vec<(Bytes, Node)>) = match &*data {
            InodeData::Root => {
                let listing = self.listings.lock().get(&fh).cloned();
                let listing = listing.unwrap_or_default();
                let skip = (offset.saturating_sub(2)) as usize;
                (ROOT_INO, listing.iter().skip(skip).cloned().collect())
            }
            InodeData::Directory { digest, parent, .. } => {
                let dir = self.dir(*digest).await?;
                let skip = (offset.saturating_sub(2)) as usize;
                (
                    *parent,
                    dir.entries()
                        .skip(skip)
                        .map(|(n, node)| (n.to_bytes(), node.clone()))
                        .collect(),
                )
            }
            _ => return Err(FsError::NotDirectory(ino)),
        };
        let mut out = Vec::with_capacity(nodes.len() + 2);
        if offset == 0 {
            out.push((1, Bytes::from_static(b"."), None));
        }
        if offset <= 1 {
            out.push((2, Bytes::from_static(b".."), None));
        }
        let first = offset.max(2);
        for (i, (name, node)) in nodes.into_iter().enumerate() {
            out.push((first + i as u64 + 1, name, Some(node)));
        }
        Ok((parent, out))
    }

    /// `readdir`: does not create inodes (plain readdir counts no lookups);
    /// entries without one carry `UNKNOWN_INO`.
    pub(crate) async fn readdir(
        self: Arc<Self>,
        ino: u64,
        fh: u64,
        offset: u64,
    ) -> Result<Vec<ListItem>, FsError> {
        stats::add(&self.stats.listings, 1);
        let (parent, children) = self.children(ino, fh, offset).await?;
        Ok(children
            .into_iter()
            .map(|(next_offset, name, node)| {
                let (ino, kind) = match &node {
                    None if name.as_ref() == b"." => (ino, FileKind::Directory),
                    None => (parent, FileKind::Directory),
                    Some(node) => {
                        let key = InodeKey::for_node(ino, &name, node);
                        let kind = match node {
                            Node::Directory { .. } => FileKind::Directory,
                            Node::File { .. } => FileKind::RegularFile,
                            Node::Symlink { .. } => FileKind::Symlink,
                        };
                        (self.inodes.find(&key).map_or(UNKNOWN_INO, |(i, _)| i), kind)
                    }
                };
                ListItem {
                    next_offset,
                    name,
                    ino,
                    kind,
                }
            })
            .collect())
    }

    /// `readdirplus`: every entry but `.` and `..` counts one lookup.
    pub(crate) async fn readdirplus(
        self: Arc<Self>,
        ino: u64,
        fh: u64,
        offset: u64,
    ) -> Result<Vec<PlusItem>, FsError> {
        stats::add(&self.stats.listings, 1);
        let (parent, children) = self.children(ino, fh, offset).await?;
        let mut out = Vec::with_capacity(children.len().min(READDIRPLUS_BATCH));
        for (next_offset, name, node) in children.into_iter().take(READDIRPLUS_BATCH) {
            let item = match node {
                None => {
                    let which = if name.as_ref() == b"." { ino } else { parent };
                    let data = self.inode(which).or_else(|_| self.inode(ino))?;
                    PlusItem {
                        next_offset,
                        name,
                        attr: attr(which, &data),
                        counted: false,
                    }
                }
                Some(node) => match self.child(ino, &name, &node).await {
                    Ok(attr) => PlusItem {
                        next_offset,
                        name,
                        attr,
                        counted: true,
                    },
                    Err(e) => {
                        // Undo the lookups counted so far: none reaches the kernel.
                        for item in out.iter().filter(|i: &&PlusItem| i.counted) {
                            self.forget(item.attr.ino, 1);
                        }
                        return Err(e);
                    }
                },
            };
            out.push(item);
        }
        Ok(out)
    }

    /// The value of xattr `name` of `ino`.
    pub(crate) fn xattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let data = self.inode(ino)?;
        match (&*data, name) {
            (InodeData::File { digest, .. }, n) if n == XATTR_BLOB.as_bytes() => {
                Ok(digest.to_hex().into_bytes())
            }
            (InodeData::Directory { digest, .. }, n) if n == XATTR_DIRECTORY.as_bytes() => {
                Ok(digest.to_hex().into_bytes())
            }
            (InodeData::Root, n) if n == XATTR_STATS.as_bytes() => {
                Ok(self.stats.to_json().into_bytes())
            }
            _ => Err(FsError::NoXattr),
        }
    }

    /// The xattr names of `ino`, each followed by NUL.
    pub(crate) fn xattr_names(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let name = match &*self.inode(ino)? {
            InodeData::File { .. } => Some(XATTR_BLOB),
            InodeData::Directory { .. } => Some(XATTR_DIRECTORY),
            InodeData::Root => Some(XATTR_STATS),
            InodeData::Symlink { .. } => None,
        };
        Ok(name
            .map(|n| {
                let mut v = n.as_bytes().to_vec();
                v.push(0);
                v
            })
            .unwrap_or_default())
    }

    /// The type of `ino`, if held.
    pub(crate) fn kind(&self, ino: u64) -> Option<FileKind> {
        self.inodes.get(ino).map(|d| kind(&d))
    }
}

/// Split a root entry name `<32 nixbase32 chars>-<name>` into the store
/// path digest and the name; `None` if it is not of that form.
pub(crate) fn parse_root_name(name: &[u8]) -> Option<([u8; 20], &str)> {
    let name = std::str::from_utf8(name).ok()?;
    let hash = name.get(..HASH_PART_LEN)?;
    let rest = name.get(HASH_PART_LEN..)?.strip_prefix('-')?;
    if rest.is_empty() {
        return None;
    }
    let digest = parse_hash_part(hash).ok()?;
    Some((digest, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_names_parse() {
        let (d, n) =
            parse_root_name(b"00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432")
                .unwrap();
        assert_eq!(n, "net-tools-1.60_p20170221182432");
        assert_eq!(d.len(), 20);
        assert!(parse_root_name(b"00bgd045z0d4icpbc2yyz4gx48ak44la").is_none());
        assert!(parse_root_name(b"00bgd045z0d4icpbc2yyz4gx48ak44la-").is_none());
        assert!(parse_root_name(b"00bgd045z0d4icpbc2yyz4gx48ak44la_x").is_none());
        assert!(parse_root_name(b"short-x").is_none());
        assert!(parse_root_name(b"\xff\xfe").is_none());
        // 'e', 'o', 't', 'u' are not nixbase32 digits.
        assert!(parse_root_name(b"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x").is_none());
    }
}
