//! [`MemoryDirectoryService`]: directories in process memory.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use parking_lot::RwLock;

use super::closure::{ClosureBackend, ClosurePutter, bfs, put_one};
use super::{DirectoryPutter, DirectoryService, PartialDirectoryStore};
use crate::{B3Digest, Directory, Error, Result};

/// A directory service that keeps everything in memory. Clones share the
/// same contents.
#[derive(Clone, Default)]
pub struct MemoryDirectoryService {
    /// Digest → directory. A parking_lot (sync) lock: held only for a map
    /// operation, never across an `.await`.
    dirs: Arc<RwLock<HashMap<B3Digest, Directory>>>,
}

impl MemoryDirectoryService {
    /// An empty service.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many directories are stored.
    pub fn len(&self) -> usize {
        self.dirs.read().len()
    }

    /// Whether no directory is stored.
    pub fn is_empty(&self) -> bool {
        self.dirs.read().is_empty()
    }

    fn get_now(&self, digest: &B3Digest) -> Result<Option<Directory>> {
        let Some(dir) = self.dirs.read().get(digest).cloned() else {
            return Ok(None);
        };
        let actual = dir.digest();
        if &actual != digest {
            return Err(Error::Integrity {
                what: "directory",
                expected: *digest,
                actual,
            });
        }
        Ok(Some(dir))
    }
}

#[async_trait]
impl DirectoryService for MemoryDirectoryService {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>> {
        self.get_now(digest)
    }

    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory>> {
        let this = self.clone();
        bfs(
            *root,
            Box::new(move |d| {
                let r = this.get_now(&d);
                Box::pin(std::future::ready(r))
            }),
        )
    }

    async fn put(&self, directory: Directory) -> Result<B3Digest> {
        put_one(self.clone(), directory).await
    }

    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter> {
        Box::new(ClosurePutter::new(self.clone()))
    }
}

#[async_trait]
impl ClosureBackend for MemoryDirectoryService {
    async fn contains(&self, digest: &B3Digest) -> Result<bool> {
        Ok(self.dirs.read().contains_key(digest))
    }

    async fn store_closure(&self, dirs: Vec<(B3Digest, Directory)>) -> Result<()> {
        let mut map = self.dirs.write();
        for (digest, dir) in dirs {
            map.insert(digest, dir);
        }
        Ok(())
    }
}

#[async_trait]
impl PartialDirectoryStore for MemoryDirectoryService {
    async fn insert_directory(&self, directory: Directory) -> Result<B3Digest> {
        let digest = directory.digest();
        self.dirs.write().insert(digest, directory);
        Ok(digest)
    }
}
