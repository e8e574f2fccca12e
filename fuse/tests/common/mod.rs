//! Shared pieces of the mount tests: building trees in the services,
//! mounting in a temp dir with a guard that always unmounts, xattrs.
#![allow(dead_code)] // each test binary uses a different part

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use storefs_castore::blobservice::{BlobService, ChunkMeta, ChunkStore};
use storefs_castore::directoryservice::DirectoryService;
use storefs_castore::{B3Digest, Directory, Node, PathComponent, SymlinkTarget};
use storefs_fuse::{MountConfig, MountHandle, StatsSnapshot};
use storefs_store::pathinfo::PathInfo;
use storefs_store::pathinfoservice::PathInfoService;
use storefs_store::store_path::StorePath;

pub use storefs_castore::blobservice::MemoryBlobService;
pub use storefs_castore::directoryservice::MemoryDirectoryService;
pub use storefs_store::pathinfoservice::MemoryPathInfoService;

/// Chunk size the tests store most files with.
pub const CHUNK: usize = 64 * 1024;

/// A tree to put into the services.
#[derive(Clone)]
pub enum T {
    /// A file: contents, executable, chunk size to store it with (0: through
    /// the service's own FastCDC writer).
    File(Vec<u8>, bool, usize),
    /// A symlink.
    Link(Vec<u8>),
    /// A directory.
    Dir(Vec<(Vec<u8>, T)>),
}

/// A plain file stored in 64 KiB chunks.
pub fn file(data: impl Into<Vec<u8>>) -> T {
    T::File(data.into(), false, CHUNK)
}

/// `n` bytes of deterministic, non-repeating content seeded by `seed`.
pub fn content(seed: u64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut counter = 0u64;
    while out.len() < n {
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.update(&counter.to_le_bytes());
        out.extend_from_slice(h.finalize().as_bytes());
        counter += 1;
    }
    out.truncate(n);
    out
}

/// The services a mount reads from.
#[derive(Clone, Default)]
pub struct Services {
    pub blobs: MemoryBlobService,
    pub dirs: MemoryDirectoryService,
    pub infos: MemoryPathInfoService,
}

impl Services {
    /// The bundle a mount takes, over these memory services.
    pub fn services(&self) -> storefs_store::Services {
        storefs_store::Services::new(
            Arc::new(self.blobs.clone()),
            Arc::new(self.dirs.clone()),
            Arc::new(self.infos.clone()),
        )
    }

    /// Store `data` in chunks of `chunk` bytes (one chunk: no chunk list),
    /// through the memory blob service's chunk store side.
    pub async fn put_chunked(&self, data: &[u8], chunk: usize) -> B3Digest {
        let digest = B3Digest::of(data);
        if chunk == 0 {
            use tokio::io::AsyncWriteExt;
            let mut w = self.blobs.open_write().await;
            w.write_all(data).await.unwrap();
            assert_eq!(w.close().await.unwrap(), digest);
            return digest;
        }
        if data.len() <= chunk {
            self.blobs
                .insert_chunk(&digest, bytes::Bytes::copy_from_slice(data))
                .await
                .unwrap();
            return digest;
        }
        let mut list = Vec::new();
        for piece in data.chunks(chunk) {
            let d = B3Digest::of(piece);
            self.blobs
                .insert_chunk(&d, bytes::Bytes::copy_from_slice(piece))
                .await
                .unwrap();
            list.push(ChunkMeta {
                digest: d,
                size: piece.len() as u64,
            });
        }
        self.blobs.insert_chunk_list(&digest, &list).await.unwrap();
        digest
    }

    /// Put `tree` and return its root node.
    pub async fn put_tree(&self, tree: &T) -> Node {
        match tree {
            T::File(data, executable, chunk) => Node::File {
                digest: self.put_chunked(data, *chunk).await,
                size: data.len() as u64,
                executable: *executable,
            },
            T::Link(target) => Node::Symlink {
                target: SymlinkTarget::try_from(target.as_slice()).unwrap(),
            },
            T::Dir(children) => {
                let mut dir = Directory::new();
                for (name, child) in children {
                    let node = Box::pin(self.put_tree(child)).await;
                    dir.add(PathComponent::try_from(name.as_slice()).unwrap(), node)
                        .unwrap();
                }
                let size = dir.size();
                let digest = self.dirs.put(dir).await.unwrap();
                Node::Directory { digest, size }
            }
        }
    }

    /// Put `tree` as store path [`store_path_for`]`(name)`.
    pub async fn add_path(&self, name: &str, tree: &T) -> StorePath {
        let store_path = store_path_for(name);
        let node = self.put_tree(tree).await;
        self.infos
            .put(PathInfo {
                store_path: store_path.clone(),
                node,
                references: vec![],
                nar_size: 0,
                nar_sha256: [0; 32],
                signatures: vec![],
                deriver: None,
                ca: None,
            })
            .await
            .unwrap();
        store_path
    }
}

/// The store path `<hash>-<name>` the tests use, its hash derived from `name`.
pub fn store_path_for(name: &str) -> StorePath {
    let mut digest = [0u8; 20];
    digest.copy_from_slice(&B3Digest::of(name.as_bytes()).as_bytes()[..20]);
    StorePath::from_parts(digest, name).unwrap()
}

/// A mount in a temp dir, with its runtime. Dropping it unmounts, even when
/// the test fails.
pub struct Mounted {
    pub handle: Option<MountHandle>,
    pub dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
}

impl Mounted {
    /// The mountpoint.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A store path's location in the mount.
    pub fn store_path(&self, p: &StorePath) -> PathBuf {
        self.dir.path().join(p.base_name())
    }

    /// The mount's figures now.
    pub fn stats(&self) -> StatsSnapshot {
        self.handle.as_ref().unwrap().stats().snapshot()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.unmount().unwrap();
        }
    }
}

/// A runtime for a mount.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// Mount `blobs`, `dirs`, `infos` with `tweak` applied to the default config.
pub fn mount_with(
    rt: tokio::runtime::Runtime,
    blobs: Arc<dyn BlobService>,
    dirs: Arc<dyn DirectoryService>,
    infos: Arc<dyn PathInfoService>,
    tweak: impl FnOnce(&mut MountConfig),
) -> Mounted {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MountConfig::new(dir.path());
    tweak(&mut config);
    let services = storefs_store::Services::new(blobs, dirs, infos);
    let handle = storefs_fuse::mount(config, &services, rt.handle().clone()).unwrap();
    Mounted {
        handle: Some(handle),
        dir,
        rt,
    }
}

/// Mount `svc` with the default config, tweaked.
pub fn mount(
    rt: tokio::runtime::Runtime,
    svc: &Services,
    tweak: impl FnOnce(&mut MountConfig),
) -> Mounted {
    mount_with(
        rt,
        Arc::new(svc.blobs.clone()),
        Arc::new(svc.dirs.clone()),
        Arc::new(svc.infos.clone()),
        tweak,
    )
}

/// The value of xattr `name` of `path`, or the errno.
pub fn getxattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // buffer pointer and length describe `buf`, which the call writes into.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(rc as usize);
    Ok(buf)
}

/// The xattr names of `path`.
pub fn listxattr(path: &Path) -> Vec<String> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: as in `getxattr`.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(rc >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf.truncate(rc as usize);
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The mount's figures as the root's `user.storefs.stats` xattr gives them.
pub fn xattr_stats(root: &Path) -> serde_json::Value {
    let raw = getxattr(root, storefs_fuse::xattr::STATS).unwrap();
    serde_json::from_slice(&raw).unwrap()
}

/// Run `f` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
