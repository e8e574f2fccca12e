//! [`DirectoryService`] over gRPC.

use std::collections::HashSet;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use prost::Message;
use storefs_castore::{B3Digest, Directory, Error, Result, proto};
use storefs_castore::{DirectoryPutter, DirectoryService};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::Conn;
use super::call::{deadline, error, next_message, retry};
use crate::limits::{MAX_CLOSURE_DIRECTORIES, WRITE_QUEUE_MESSAGES};
use crate::proto::castore::{GetDirectoryRequest, PutDirectoryResponse, get_directory_request};

/// Directories of a remote service. Cheap to clone; clones share the
/// connection.
#[derive(Clone)]
pub struct GrpcDirectoryService {
    conn: Conn,
}

impl GrpcDirectoryService {
    pub(crate) fn new(conn: Conn) -> Self {
        Self { conn }
    }
}

/// Validate a received message and compute its digest.
fn decode(conn: &Conn, op: &str, msg: proto::Directory) -> Result<(Directory, B3Digest)> {
    match Directory::try_from(msg.clone()) {
        Ok(dir) => {
            let d = dir.digest();
            Ok((dir, d))
        }
        Err(source) => {
            tracing::warn!(endpoint = %conn.name, op, error = %source, "invalid directory received");
            Err(Error::InvalidDirectory {
                // The digest the bytes as received would have.
                digest: B3Digest::of(&msg.encode_to_vec()),
                source,
            })
        }
    }
}

/// Start a `Get`, retrying while the service is unreachable, and wait for
/// the first message. `None` for NOT_FOUND.
async fn open_get(
    conn: &Conn,
    root: &B3Digest,
    recursive: bool,
) -> Result<Option<(proto::Directory, tonic::Streaming<proto::Directory>)>, Status> {
    let answer = retry(conn, || {
        let mut client = conn.directory_client();
        let req = tonic::Request::new(GetDirectoryRequest {
            by_what: Some(get_directory_request::ByWhat::Digest(root.to_bytes())),
            recursive,
        });
        async move {
            let mut stream = client.get(req).await?.into_inner();
            let first = next_message(conn, &mut stream).await?;
            Ok(first.map(|f| (f, stream)))
        }
    })
    .await;
    match answer {
        Ok(v) => Ok(v),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(s),
    }
}

/// Tracks a recursive `Get`: every directory must be the root or a child
/// named by one already received, and each comes once.
struct ClosureCheck {
    root: B3Digest,
    /// Named by a received directory, not received yet.
    pending: HashSet<B3Digest>,
    received: HashSet<B3Digest>,
}

impl ClosureCheck {
    fn new(root: B3Digest) -> Self {
        Self {
            root,
            pending: HashSet::from([root]),
            received: HashSet::new(),
        }
    }

    fn accept(&mut self, dir: &Directory, digest: B3Digest) -> Result<(), String> {
        if !self.pending.remove(&digest) {
            return Err(if self.received.contains(&digest) {
                format!("directory {digest} was sent twice")
            } else if self.received.is_empty() {
                format!("sent {digest} first instead of the root {}", self.root)
            } else {
                format!("sent {digest}, which no directory received so far names")
            });
        }
        if self.received.len() >= MAX_CLOSURE_DIRECTORIES {
            return Err(format!("more than {MAX_CLOSURE_DIRECTORIES} directories"));
        }
        self.received.insert(digest);
        for (_, child) in dir.child_directories() {
            if !self.received.contains(child) {
                self.pending.insert(*child);
            }
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), String> {
        match self.pending.iter().next() {
            None => Ok(()),
            Some(d) => Err(format!(
                "closure incomplete: {} named directories were not sent (e.g. {d})",
                self.pending.len()
            )),
        }
    }
}

#[async_trait]
impl DirectoryService for GrpcDirectoryService {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>> {
        let conn = &self.conn;
        let op = format!("DirectoryService/Get {digest}");
        let Some((first, mut rest)) = open_get(conn, digest, false)
            .await
            .map_err(|s| error(conn, &op, &s))?
        else {
            return Ok(None);
        };
        let (dir, actual) = decode(conn, &op, first)?;
        if actual != *digest {
            return Err(Error::Integrity {
                what: "directory",
                expected: *digest,
                actual,
            });
        }
        if next_message(conn, &mut rest)
            .await
            .map_err(|s| error(conn, &op, &s))?
            .is_some()
        {
            return Err(Error::remote_msg(format!(
                "{} {op}: more than one directory for a non-recursive get",
                conn.name
            )));
        }
        Ok(Some(dir))
    }

    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory>> {
        let conn = self.conn.clone();
        let root = *root;
        async_stream::try_stream! {
            let op = format!("DirectoryService/Get {root} (recursive)");
            let protocol = |why: String| Error::remote(format!("{} {op}", conn.name), why);
            let opened = open_get(&conn, &root, true)
                .await
                .map_err(|s| error(&conn, &op, &s))?;
            // NOT_FOUND: an absent root is an empty closure.
            if let Some((first, mut rest)) = opened {
                let mut check = ClosureCheck::new(root);
                let mut next = Some(first);
                while let Some(msg) = next.take() {
                    let (dir, digest) = decode(&conn, &op, msg)?;
                    if let Err(why) = check.accept(&dir, digest) {
                        // The first directory must be the root itself.
                        if digest != root && check.received.is_empty() {
                            Err(Error::Integrity { what: "directory", expected: root, actual: digest })?;
                        }
                        Err(protocol(why))?;
                    }
                    yield dir;
                    next = next_message(&conn, &mut rest)
                        .await
                        .map_err(|s| error(&conn, &op, &s))?;
                }
                check.finish().map_err(protocol)?;
            }
        }
        .boxed()
    }

    async fn put(&self, directory: Directory) -> Result<B3Digest> {
        let conn = &self.conn;
        let digest = directory.digest();
        let op = format!("DirectoryService/Put {digest}");
        let msg = directory.to_proto();
        // Content-addressed: storing it twice is harmless, so retry.
        let answer = retry(conn, || {
            let mut client = conn.directory_client();
            let stream = futures::stream::iter([msg.clone()]);
            async move { client.put(tonic::Request::new(stream)).await }
        })
        .await
        .map_err(|s| error(conn, &op, &s))?;
        check_root(conn, &op, &answer.into_inner(), digest)
    }

    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter> {
        Box::new(GrpcDirectoryPutter {
            conn: self.conn.clone(),
            call: None,
            last: None,
            root: None,
        })
    }
}

/// The root digest in a `Put` reply, which must be `expected`.
fn check_root(
    conn: &Conn,
    op: &str,
    answer: &PutDirectoryResponse,
    expected: B3Digest,
) -> Result<B3Digest> {
    let got = B3Digest::try_from(&answer.root_digest)
        .map_err(|e| Error::remote(format!("{} {op}: root digest in reply", conn.name), e))?;
    if got != expected {
        return Err(Error::Integrity {
            what: "directory",
            expected,
            actual: got,
        });
    }
    Ok(got)
}

/// A `Put` call running on its own task.
type PutCall = JoinHandle<Result<PutDirectoryResponse, Status>>;

/// Streams a closure to one `Put` call as it is given.
struct GrpcDirectoryPutter {
    conn: Conn,
    /// The queue feeding the call, and the call's task; started on the
    /// first `put`.
    call: Option<(mpsc::Sender<proto::Directory>, PutCall)>,
    /// Digest of the last directory put: the root, once closed.
    last: Option<B3Digest>,
    /// The root, once closed successfully.
    root: Option<B3Digest>,
}

impl GrpcDirectoryPutter {
    const OP: &str = "DirectoryService/Put";

    /// The call's error after it ended early.
    async fn failure(&mut self) -> Error {
        match self.call.take() {
            Some((_, task)) => match task.await {
                Ok(Err(s)) => error(&self.conn, Self::OP, &s),
                Ok(Ok(_)) => Error::remote_msg(format!(
                    "{} {}: the service answered before the closure was complete",
                    self.conn.name,
                    Self::OP
                )),
                Err(e) => Error::remote(format!("{} {}: upload task", self.conn.name, Self::OP), e),
            },
            None => Error::remote_msg(format!(
                "{} {}: the upload already failed",
                self.conn.name,
                Self::OP
            )),
        }
    }
}

impl Drop for GrpcDirectoryPutter {
    fn drop(&mut self) {
        // Dropped unclosed: reset the upload; the service stores nothing.
        if let Some((_, task)) = self.call.take() {
            task.abort();
        }
    }
}

#[async_trait]
impl DirectoryPutter for GrpcDirectoryPutter {
    async fn put(&mut self, directory: Directory) -> Result<()> {
        if self.root.is_some() {
            return Err(Error::InvalidRequest("put after close".into()));
        }
        if self.call.is_none() && self.last.is_none() {
            let (tx, rx) = mpsc::channel(WRITE_QUEUE_MESSAGES);
            let mut client = self.conn.directory_client();
            let task = tokio::spawn(async move {
                client
                    .put(tonic::Request::new(ReceiverStream::new(rx)))
                    .await
                    .map(|r| r.into_inner())
            });
            self.call = Some((tx, task));
        }
        let digest = directory.digest();
        let sent = match &self.call {
            Some((tx, _)) => tx.send(directory.to_proto()).await.is_ok(),
            None => false,
        };
        if !sent {
            return Err(self.failure().await);
        }
        self.last = Some(digest);
        Ok(())
    }

    async fn close(&mut self) -> Result<B3Digest> {
        if let Some(root) = self.root {
            return Ok(root);
        }
        let Some(last) = self.last else {
            return Err(Error::InvalidRequest(
                "close of a putter that was given no directories".into(),
            ));
        };
        let Some((tx, task)) = self.call.take() else {
            return Err(self.failure().await);
        };
        drop(tx);
        let conn = &self.conn;
        let answer = deadline(conn, async {
            task.await
                .unwrap_or_else(|e| Err(Status::internal(format!("upload task: {e}"))))
        })
        .await
        .map_err(|s| error(conn, Self::OP, &s))?;
        let root = check_root(conn, Self::OP, &answer, last)?;
        self.root = Some(root);
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefs_castore::{Node, PathComponent};

    fn parent_of(children: &[(&str, &Directory)]) -> Directory {
        let mut d = Directory::new();
        for (name, child) in children {
            d.add(
                PathComponent::try_from(*name).unwrap(),
                Node::Directory {
                    digest: child.digest(),
                    size: child.size(),
                },
            )
            .unwrap();
        }
        d
    }

    #[test]
    fn closure_check_accepts_root_first_order_with_shared_children() {
        let leaf = Directory::new();
        let mid = parent_of(&[("l", &leaf)]);
        let root = parent_of(&[("a", &mid), ("b", &leaf)]);
        let mut c = ClosureCheck::new(root.digest());
        c.accept(&root, root.digest()).unwrap();
        c.accept(&leaf, leaf.digest()).unwrap();
        c.accept(&mid, mid.digest()).unwrap();
        c.finish().unwrap();
    }

    #[test]
    fn closure_check_refuses_strangers_duplicates_and_gaps() {
        let leaf = Directory::new();
        let root = parent_of(&[("a", &leaf)]);
        let stranger = parent_of(&[("x", &root)]);

        let mut c = ClosureCheck::new(root.digest());
        assert!(
            c.accept(&leaf, leaf.digest())
                .unwrap_err()
                .contains("instead of the root")
        );

        let mut c = ClosureCheck::new(root.digest());
        c.accept(&root, root.digest()).unwrap();
        assert!(
            c.accept(&stranger, stranger.digest())
                .unwrap_err()
                .contains("names")
        );
        assert!(c.finish().unwrap_err().contains("incomplete"));
        c.accept(&leaf, leaf.digest()).unwrap();
        assert!(
            c.accept(&leaf, leaf.digest())
                .unwrap_err()
                .contains("twice")
        );
    }
}
