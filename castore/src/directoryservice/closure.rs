//! Closure rules shared by every local directory backend: the validator a
//! putter runs (leaves first, children known, root reaches everything), the
//! putter built on it, and the breadth-first `get_recursive` walk.

use std::collections::{HashSet, VecDeque};

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::DirectoryPutter;
use crate::{B3Digest, Directory, Error, Result};

/// Checks a closure as it arrives, leaves first.
#[derive(Default)]
pub(crate) struct ClosureValidator {
    /// The directories accepted so far, in arrival order, each once.
    dirs: Vec<(B3Digest, Directory)>,
    /// Digests in `dirs`, for lookups.
    seen: HashSet<B3Digest>,
}

impl ClosureValidator {
    /// Child directories of `dir` that this closure has not had yet. You
    /// must check that each is already stored before calling `accept`.
    pub(crate) fn outside_children(&self, dir: &Directory) -> Vec<B3Digest> {
        dir.child_directories()
            .map(|(_, d)| *d)
            .filter(|d| !self.seen.contains(d))
            .collect()
    }

    /// Take `dir` (whose outside children were checked). A directory put a
    /// second time is ignored, except that it counts as the latest.
    pub(crate) fn accept(&mut self, digest: B3Digest, dir: Directory) {
        if self.seen.insert(digest) {
            self.dirs.push((digest, dir));
        } else if let Some(pos) = self.dirs.iter().position(|(d, _)| d == &digest) {
            // Move it to the end, so that "the last one put is the root".
            let entry = self.dirs.remove(pos);
            self.dirs.push(entry);
        }
    }

    /// The root (the last directory put) and the closure, leaves first,
    /// once every directory is checked to be reachable from the root.
    pub(crate) fn finish(self) -> Result<(B3Digest, Vec<(B3Digest, Directory)>)> {
        let Some((root, _)) = self.dirs.last() else {
            return Err(Error::InvalidRequest(
                "empty directory closure: at least the root must be put".into(),
            ));
        };
        let root = *root;
        let by_digest: std::collections::HashMap<&B3Digest, &Directory> =
            self.dirs.iter().map(|(d, dir)| (d, dir)).collect();
        let mut reached = HashSet::from([root]);
        let mut queue = VecDeque::from([root]);
        while let Some(d) = queue.pop_front() {
            if let Some(dir) = by_digest.get(&d) {
                for (_, child) in dir.child_directories() {
                    if self.seen.contains(child) && reached.insert(*child) {
                        queue.push_back(*child);
                    }
                }
            }
        }
        if reached.len() != self.dirs.len() {
            let stray = self
                .dirs
                .iter()
                .find(|(d, _)| !reached.contains(d))
                .map(|(d, _)| d.to_string())
                .unwrap_or_default();
            return Err(Error::InvalidRequest(format!(
                "disconnected closure: {} of {} directories are not reachable from root {root} \
                 (e.g. {stray})",
                self.dirs.len() - reached.len(),
                self.dirs.len()
            )));
        }
        Ok((root, self.dirs))
    }
}

/// What a backend gives [`ClosurePutter`].
#[async_trait]
pub(crate) trait ClosureBackend: Send + Sync + 'static {
    /// Whether the directory is stored already.
    async fn contains(&self, digest: &B3Digest) -> Result<bool>;

    /// Store a checked closure (leaves first) all at once: all or nothing.
    async fn store_closure(&self, dirs: Vec<(B3Digest, Directory)>) -> Result<()>;

    /// [`ClosureBackend::store_closure`], where the closure also names
    /// `reused`, directories already stored that it does not carry. A
    /// backend whose garbage collection respects write times notes theirs
    /// too (and checks they are still there); the default ignores them.
    async fn store_closure_reusing(
        &self,
        dirs: Vec<(B3Digest, Directory)>,
        reused: Vec<B3Digest>,
    ) -> Result<()> {
        let _ = reused;
        self.store_closure(dirs).await
    }
}

enum PutterState {
    Open(ClosureValidator),
    Closed(B3Digest),
    /// An earlier call failed; the message is repeated to later calls.
    Failed(String),
}

/// A [`DirectoryPutter`] for any [`ClosureBackend`]: it holds the closure
/// in memory and stores it in one step at `close`.
pub(crate) struct ClosurePutter<B> {
    backend: B,
    state: PutterState,
    /// Stored directories the closure names without carrying them.
    reused: Vec<B3Digest>,
}

impl<B: ClosureBackend> ClosurePutter<B> {
    /// A putter that stores into `backend`.
    pub(crate) fn new(backend: B) -> Self {
        Self {
            backend,
            state: PutterState::Open(ClosureValidator::default()),
            reused: Vec::new(),
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        self.state = PutterState::Failed(e.to_string());
        e
    }
}

#[async_trait]
impl<B: ClosureBackend> DirectoryPutter for ClosurePutter<B> {
    async fn put(&mut self, directory: Directory) -> Result<()> {
        let validator = match &mut self.state {
            PutterState::Open(v) => v,
            PutterState::Closed(d) => {
                return Err(Error::InvalidRequest(format!(
                    "directory putter already closed (root {d})"
                )));
            }
            PutterState::Failed(msg) => return Err(Error::InvalidRequest(msg.clone())),
        };
        let digest = directory.digest();
        let outside = validator.outside_children(&directory);
        for child in outside {
            match self.backend.contains(&child).await {
                Ok(true) => self.reused.push(child),
                Ok(false) => {
                    let e = Error::InvalidRequest(format!(
                        "directory {digest} names child {child}, which was neither put before \
                         it nor is stored (closures go leaves first)"
                    ));
                    return Err(self.fail(e));
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        if let PutterState::Open(v) = &mut self.state {
            v.accept(digest, directory);
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<B3Digest> {
        let state = std::mem::replace(
            &mut self.state,
            PutterState::Failed("directory putter failed while closing".into()),
        );
        let validator = match state {
            PutterState::Open(v) => v,
            PutterState::Closed(d) => {
                self.state = PutterState::Closed(d);
                return Ok(d);
            }
            PutterState::Failed(msg) => {
                self.state = PutterState::Failed(msg.clone());
                return Err(Error::InvalidRequest(msg));
            }
        };
        let (root, dirs) = validator.finish().map_err(|e| self.fail(e))?;
        let reused = std::mem::take(&mut self.reused);
        self.backend
            .store_closure_reusing(dirs, reused)
            .await
            .map_err(|e| self.fail(e))?;
        self.state = PutterState::Closed(root);
        Ok(root)
    }
}

/// Put one directory through a [`ClosurePutter`]: its children must be stored.
pub(crate) async fn put_one<B: ClosureBackend>(backend: B, dir: Directory) -> Result<B3Digest> {
    let mut putter = ClosurePutter::new(backend);
    putter.put(dir).await?;
    putter.close().await
}

/// Fetches one verified directory, `None` if absent.
pub(crate) type Fetch =
    Box<dyn Fn(B3Digest) -> BoxFuture<'static, Result<Option<Directory>>> + Send + Sync>;

/// The closure of `root`, breadth first, root first, each directory once.
/// An absent root gives an empty stream; an absent child is an error.
pub(crate) fn bfs(root: B3Digest, fetch: Fetch) -> BoxStream<'static, Result<Directory>> {
    Box::pin(async_stream::try_stream! {
        let Some(first) = fetch(root).await? else {
            return;
        };
        let mut seen = HashSet::from([root]);
        let mut queue = VecDeque::from([(root, first)]);
        while let Some((digest, dir)) = queue.pop_front() {
            for (name, child) in dir.child_directories() {
                if !seen.insert(*child) {
                    continue;
                }
                let child_dir = fetch(*child).await?.ok_or_else(|| {
                    Error::storage_msg(format!(
                        "directory {child} (entry {name} of {digest}) is missing"
                    ))
                })?;
                queue.push_back((*child, child_dir));
            }
            yield dir;
        }
    })
}
