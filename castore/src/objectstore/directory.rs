//! [`ObjectStoreDirectoryService`]: directory closures as one object each
//! (`layout.rs`), so that a store path's whole tree is one GET.
//!
//! A closure is stored under its root's digest, root first. Directories
//! below a root have no object of their own (snix's layout); so that
//! `get` and `get_recursive` answer for them too, storefs also writes a
//! small index entry per non-root directory naming the closure that holds
//! it. Index entries are written before the closure object, so a closure
//! that exists has its index complete; an entry whose closure is not
//! there (yet) counts as absent.
//!
//! A closure put may name directories stored before without sending them
//! (the putter checks they are there); their closures are read back and
//! included, since every closure object must be complete.

use std::collections::{HashMap, HashSet, VecDeque};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::Bucket;
use super::error::{corrupt, task};
use super::layout::{
    closure_key, decode_closure, decode_index_entry, directory_index_key, encode_closure,
    sub_closure,
};
use crate::directoryservice::{
    ClosureBackend, ClosurePutter, DirectoryPutter, DirectoryService, put_one,
};
use crate::{B3Digest, Directory, Error, Result};

/// How many index entries a closure put writes at once.
const INDEX_CONCURRENCY: usize = 16;

/// A directory service over a [`Bucket`]. Clones share it.
#[derive(Clone)]
pub struct ObjectStoreDirectoryService {
    bucket: Bucket,
}

impl ObjectStoreDirectoryService {
    /// The directory service of `bucket`.
    pub fn new(bucket: Bucket) -> Self {
        Self { bucket }
    }

    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The checked closure object rooted at `root`, `None` if absent.
    async fn closure_object(&self, root: &B3Digest) -> Result<Option<Vec<Directory>>> {
        let key = closure_key(self.bucket.prefix(), root);
        let Some(object) = self.bucket.get(&key).await? else {
            return Ok(None);
        };
        let root = *root;
        tokio::task::spawn_blocking(move || decode_closure(&key, &root, &object))
            .await
            .map_err(|e| task("decoding a closure", e))?
            .map(Some)
    }

    /// The closure of `digest`, root first: its own object, else the
    /// sub-closure of the closure its index entry names. `None` if absent.
    async fn closure_of(&self, digest: &B3Digest) -> Result<Option<Vec<Directory>>> {
        if let Some(dirs) = self.closure_object(digest).await? {
            return Ok(Some(dirs));
        }
        let index = directory_index_key(self.bucket.prefix(), digest);
        let Some(entry) = self.bucket.get(&index).await? else {
            return Ok(None);
        };
        let root = decode_index_entry(&index, &entry)?;
        let Some(closure) = self.closure_object(&root).await? else {
            // Written before its closure, which is not there (yet).
            return Ok(None);
        };
        sub_closure(&closure, digest)
            .map(Some)
            .ok_or_else(|| corrupt(&index, &format!("names closure {root}, which lacks it")))
    }
}

/// `dirs` in breadth-first order from `root`, each once.
fn breadth_first(root: B3Digest, dirs: &HashMap<B3Digest, Directory>) -> Result<Vec<Directory>> {
    let mut seen = HashSet::from([root]);
    let mut queue = VecDeque::from([root]);
    let mut out = Vec::with_capacity(dirs.len());
    while let Some(d) = queue.pop_front() {
        let dir = dirs.get(&d).ok_or_else(|| {
            Error::InvalidRequest(format!("closure of {root}: directory {d} is missing"))
        })?;
        for (_, child) in dir.child_directories() {
            if seen.insert(*child) {
                queue.push_back(*child);
            }
        }
        out.push(dir.clone());
    }
    Ok(out)
}

#[async_trait]
impl DirectoryService for ObjectStoreDirectoryService {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>> {
        Ok(self
            .closure_of(digest)
            .await?
            .and_then(|dirs| dirs.into_iter().next()))
    }

    /// One GET for a closure root (two more through the index for a
    /// directory below one); the whole closure is checked before the
    /// first directory is yielded.
    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory>> {
        let this = self.clone();
        let root = *root;
        Box::pin(async_stream::try_stream! {
            if let Some(dirs) = this.closure_of(&root).await? {
                for d in dirs {
                    yield d;
                }
            }
        })
    }

    async fn put(&self, directory: Directory) -> Result<B3Digest> {
        put_one(self.clone(), directory).await
    }

    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter> {
        Box::new(ClosurePutter::new(self.clone()))
    }
}

#[async_trait]
impl ClosureBackend for ObjectStoreDirectoryService {
    async fn contains(&self, digest: &B3Digest) -> Result<bool> {
        let prefix = self.bucket.prefix();
        if self.bucket.exists(&closure_key(prefix, digest)).await? {
            return Ok(true);
        }
        // Through the index, the closure must be there too.
        Ok(self.closure_of(digest).await?.is_some())
    }

    async fn store_closure(&self, dirs: Vec<(B3Digest, Directory)>) -> Result<()> {
        let Some((root, _)) = dirs.last() else {
            return Err(Error::InvalidRequest("empty directory closure".into()));
        };
        let root = *root;
        let key = closure_key(self.bucket.prefix(), &root);
        if self.bucket.exists(&key).await? {
            // Stored before, index included (it is written first).
            return Ok(());
        }
        let own: Vec<B3Digest> = dirs
            .iter()
            .map(|(d, _)| *d)
            .filter(|d| *d != root)
            .collect();
        let mut all: HashMap<B3Digest, Directory> = dirs.into_iter().collect();
        // Children stored before: bring their closures in.
        let outside: HashSet<B3Digest> = all
            .values()
            .flat_map(|d| d.child_directories().map(|(_, c)| *c))
            .filter(|c| !all.contains_key(c))
            .collect();
        for child in outside {
            if all.contains_key(&child) {
                continue;
            }
            let sub = self.closure_of(&child).await?.ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "closure of {root}: stored directory {child} is gone"
                ))
            })?;
            for d in sub {
                all.entry(d.digest()).or_insert(d);
            }
        }
        let ordered = breadth_first(root, &all)?;
        let object = tokio::task::spawn_blocking(move || encode_closure(&ordered))
            .await
            .map_err(|e| task("encoding a closure", e))??;
        let entry = root.to_bytes();
        futures::stream::iter(own)
            .map(|d| {
                let bucket = self.bucket.clone();
                let entry = entry.clone();
                async move {
                    bucket
                        .put(&directory_index_key(bucket.prefix(), &d), entry)
                        .await
                }
            })
            .buffer_unordered(INDEX_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        self.bucket.put(&key, object).await
    }
}
