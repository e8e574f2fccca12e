//! Shared pieces of the mount tests: building trees in the services and
//! mounting them; the mount guard, xattrs and pollers come from the test kit.
#![allow(dead_code)] // each test binary uses a different part

use std::sync::Arc;

use storefs_castore::DirectoryService;
use storefs_castore::{B3Digest, Directory, Node, PathComponent, SymlinkTarget};
use storefs_castore::{BlobService, ChunkMeta, ChunkStore};
use storefs_fuse::MountConfig;
use storefs_store::PathInfo;
use storefs_store::PathInfoService;
use storefs_store::StorePath;

pub use storefs_castore::MemoryBlobService;
pub use storefs_castore::MemoryDirectoryService;
pub use storefs_store::MemoryPathInfoService;
pub use storefs_testkit::fuse::{FuseMount, runtime};
#[allow(unused_imports)] // each test binary uses a different subset
pub use storefs_testkit::{eventually, pseudo_random, xattr};

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

/// Mount `svc` with the default config, tweaked.
pub fn mount(
    rt: tokio::runtime::Runtime,
    svc: &Services,
    tweak: impl FnOnce(&mut MountConfig),
) -> FuseMount {
    FuseMount::start(
        rt,
        Arc::new(svc.blobs.clone()),
        Arc::new(svc.dirs.clone()),
        Arc::new(svc.infos.clone()),
        tweak,
    )
}
