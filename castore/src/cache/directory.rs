//! [`CachedDirectoryService`]: a near [`PartialDirectoryStore`] in front of
//! a far [`DirectoryService`].

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use tracing::debug;

use super::fill::FillGate;

use crate::directoryservice::{DirectoryPutter, DirectoryService, PartialDirectoryStore};
use crate::{B3Digest, Directory, Error, Result};

/// Directories read through a near cache from a far service. Each
/// directory from far is checked against the digest that named it before
/// it is returned or kept.
#[derive(Clone)]
pub struct CachedDirectoryService {
    /// Where reads look first and fetched directories are kept.
    near: Arc<dyn PartialDirectoryStore>,
    /// The authority; every miss goes there, every write too.
    far: Arc<dyn DirectoryService>,
    /// Pauses filling after a failed write and keeps the warnings few.
    /// Recovering near is left to the blob cache, which shares its file in
    /// the mount and fills far more often.
    gate: Arc<FillGate>,
}

impl CachedDirectoryService {
    /// `near` in front of `far`.
    pub fn new(near: Arc<dyn PartialDirectoryStore>, far: Arc<dyn DirectoryService>) -> Self {
        Self {
            near,
            far,
            gate: Arc::new(FillGate::new(Arc::default())),
        }
    }

    /// Keep `dirs` in near, unless filling is paused.
    async fn fill(near: &Arc<dyn PartialDirectoryStore>, gate: &FillGate, dirs: Vec<Directory>) {
        if !gate.may_fill() {
            return;
        }
        let r = if dirs.len() == 1 {
            let mut dirs = dirs;
            match dirs.pop() {
                Some(d) => near.insert_directory(d).await.map(|_| ()),
                None => Ok(()),
            }
        } else {
            near.insert_directories(dirs).await
        };
        match r {
            Ok(()) => gate.succeeded(),
            Err(e) => {
                gate.failed("directory", &e);
            }
        }
    }

    /// The near side.
    pub fn near(&self) -> &Arc<dyn PartialDirectoryStore> {
        &self.near
    }

    /// The far side.
    pub fn far(&self) -> &Arc<dyn DirectoryService> {
        &self.far
    }
}

/// The whole closure of `root` from near, or `None` if near lacks any of it.
async fn near_closure(
    near: &Arc<dyn PartialDirectoryStore>,
    root: &B3Digest,
) -> Option<Vec<Directory>> {
    let mut stream = near.get_recursive(root);
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(d) => out.push(d),
            Err(e) => {
                debug!(%root, error = %crate::Report(&e), "near closure incomplete; fetching from far");
                return None;
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

#[async_trait]
impl DirectoryService for CachedDirectoryService {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>> {
        match self.near.get(digest).await {
            Ok(Some(d)) => return Ok(Some(d)),
            Ok(None) => {}
            Err(e) => self.gate.read_failed("directory", &e),
        }
        let Some(dir) = self.far.get(digest).await? else {
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
        Self::fill(&self.near, &self.gate, vec![dir.clone()]).await;
        Ok(Some(dir))
    }

    /// From near if near holds the whole closure; else from far, each
    /// directory checked to be the root or a child named by one already
    /// received and not received before; the closure goes into near once
    /// far has sent all of it.
    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory>> {
        let near = self.near.clone();
        let far = self.far.clone();
        let gate = self.gate.clone();
        let root = *root;
        Box::pin(async_stream::try_stream! {
            if let Some(dirs) = near_closure(&near, &root).await {
                for d in dirs {
                    yield d;
                }
                return;
            }
            let mut stream = far.get_recursive(&root);
            let mut expected = HashSet::from([root]);
            let mut received = HashSet::new();
            let mut fetched = Vec::new();
            while let Some(item) = stream.next().await {
                let dir = item?;
                let digest = dir.digest();
                if !expected.remove(&digest) {
                    Err(Error::remote_msg(format!(
                        "closure of {root}: far sent directory {digest}, which no directory \
                         received before it names{}",
                        if received.contains(&digest) { " (a duplicate)" } else { "" }
                    )))?;
                }
                received.insert(digest);
                for (_, child) in dir.child_directories() {
                    if !received.contains(child) {
                        expected.insert(*child);
                    }
                }
                fetched.push(dir.clone());
                yield dir;
            }
            if fetched.is_empty() {
                return;
            }
            if let Some(missing) = expected.iter().next() {
                Err(Error::remote_msg(format!(
                    "closure of {root}: far did not send directory {missing} ({} missing)",
                    expected.len()
                )))?;
            }
            Self::fill(&near, &gate, fetched).await;
        })
    }

    async fn put(&self, directory: Directory) -> Result<B3Digest> {
        let digest = self.far.put(directory.clone()).await?;
        Self::fill(&self.near, &self.gate, vec![directory]).await;
        Ok(digest)
    }

    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter> {
        Box::new(CachedPutter {
            far: self.far.put_multiple_start(),
            near: self.near.clone(),
            gate: self.gate.clone(),
            dirs: Vec::new(),
        })
    }
}

/// Puts a closure to far; once far accepts it, keeps it in near too.
struct CachedPutter {
    far: Box<dyn DirectoryPutter>,
    near: Arc<dyn PartialDirectoryStore>,
    gate: Arc<FillGate>,
    /// What was put, for near once far has accepted it.
    dirs: Vec<Directory>,
}

#[async_trait]
impl DirectoryPutter for CachedPutter {
    async fn put(&mut self, directory: Directory) -> Result<()> {
        self.far.put(directory.clone()).await?;
        self.dirs.push(directory);
        Ok(())
    }

    async fn close(&mut self) -> Result<B3Digest> {
        let root = self.far.close().await?;
        let dirs = std::mem::take(&mut self.dirs);
        if !dirs.is_empty() {
            CachedDirectoryService::fill(&self.near, &self.gate, dirs).await;
        }
        Ok(root)
    }
}
