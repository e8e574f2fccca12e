//! [`DirectoryService`] over the replicas.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use storefs_castore::{B3Digest, Directory, Error, Result};
use storefs_castore::{DirectoryPutter, DirectoryService};

use super::Failover;
use super::remotes::{Remotes, Verdict, verdict};

#[async_trait]
impl DirectoryService for Failover {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>> {
        self.remotes
            .call("DirectoryService/Get", |r| {
                let digest = *digest;
                async move { r.services.directory.get(&digest).await }
            })
            .await
    }

    /// A closure that breaks part way is asked again of the next replica;
    /// directories already delivered are skipped, so the stream still
    /// holds each once, each after one that names it (the skipped ones
    /// came earlier).
    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory>> {
        let remotes = Arc::clone(&self.remotes);
        let root = *root;
        Box::pin(async_stream::try_stream! {
            let mut sent: HashSet<B3Digest> = HashSet::new();
            let mut backoff = remotes.config.initial_backoff;
            let mut last: Option<Error> = None;
            'rounds: for round in 0..=remotes.config.retries {
                if round > 0 {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(remotes.config.max_backoff);
                }
                let mut again = false;
                for i in remotes.order() {
                    let remote = &remotes.list[i];
                    let mut stream = remote.services.directory.get_recursive(&root);
                    let mut failure = None;
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(dir) => {
                                if sent.insert(dir.digest()) {
                                    yield dir;
                                }
                            }
                            Err(e) => {
                                failure = Some(e);
                                break;
                            }
                        }
                    }
                    remotes.record(remote, failure.as_ref());
                    match failure {
                        None => {
                            last = None;
                            break 'rounds;
                        }
                        Some(e) if verdict(&e) == Verdict::Final => Err(e)?,
                        Some(e) => {
                            tracing::debug!(endpoint = %remote.name, %root, delivered = sent.len(), error = %storefs_castore::Report(&e), "closure broke; resuming on the next replica");
                            again |= verdict(&e) == Verdict::Unreachable;
                            last = Some(e);
                        }
                    }
                }
                if !again {
                    break;
                }
            }
            if let Some(e) = last {
                Err(e)?;
            }
        })
    }

    async fn put(&self, directory: Directory) -> Result<B3Digest> {
        self.remotes
            .call("DirectoryService/Put", |r| {
                let directory = directory.clone();
                async move { r.services.directory.put(directory).await }
            })
            .await
    }

    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter> {
        Box::new(FailoverPutter {
            remotes: Arc::clone(&self.remotes),
            dirs: Vec::new(),
            root: None,
        })
    }
}

/// Keeps the closure until it is closed, then sends it whole to one
/// replica, and to the next if that fails (a closure is content-addressed:
/// sending it twice is harmless, and a replica that failed made nothing
/// visible).
struct FailoverPutter {
    remotes: Arc<Remotes>,
    dirs: Vec<Directory>,
    root: Option<B3Digest>,
}

#[async_trait]
impl DirectoryPutter for FailoverPutter {
    async fn put(&mut self, directory: Directory) -> Result<()> {
        if self.root.is_some() {
            return Err(Error::InvalidRequest("put after close".into()));
        }
        if self.dirs.len() >= crate::limits::MAX_CLOSURE_DIRECTORIES {
            return Err(Error::InvalidRequest(format!(
                "more than {} directories in one closure",
                crate::limits::MAX_CLOSURE_DIRECTORIES
            )));
        }
        self.dirs.push(directory);
        Ok(())
    }

    async fn close(&mut self) -> Result<B3Digest> {
        if let Some(root) = self.root {
            return Ok(root);
        }
        let dirs = Arc::new(std::mem::take(&mut self.dirs));
        let root = self
            .remotes
            .call("DirectoryService/Put (closure)", |r| {
                let dirs = Arc::clone(&dirs);
                async move {
                    let mut putter = r.services.directory.put_multiple_start();
                    for d in dirs.iter() {
                        putter.put(d.clone()).await?;
                    }
                    putter.close().await
                }
            })
            .await?;
        self.root = Some(root);
        Ok(root)
    }
}
