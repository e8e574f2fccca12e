//! Minimal in-memory services for the mount tests.
//!
//! Test-only stand-ins until castore's and store's memory backends land in
//! main; they implement the same traits, verify what they return, and let a
//! test choose how a blob is chunked.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use parking_lot::Mutex;
use storefs_castore::blobservice::{BlobReader, BlobService, BlobWriter, ChunkMeta};
use storefs_castore::directoryservice::{DirectoryPutter, DirectoryService};
use storefs_castore::{B3Digest, Directory, Error, Result};
use storefs_store::pathinfo::PathInfo;
use storefs_store::pathinfoservice::PathInfoService;
use tokio::io::AsyncWrite;

/// Chunk size used by `open_write` (fixed-size, which is enough here).
pub const WRITE_CHUNK: usize = 64 * 1024;

#[derive(Default)]
struct Blobs {
    lists: HashMap<B3Digest, Vec<ChunkMeta>>,
    chunks: HashMap<B3Digest, Bytes>,
}

/// Blobs in memory.
#[derive(Default, Clone)]
pub struct MemBlobs {
    inner: Arc<Mutex<Blobs>>,
}

impl MemBlobs {
    /// Store `data` in chunks of `chunk` bytes (one chunk: empty chunk list).
    pub fn put_chunked(&self, data: &[u8], chunk: usize) -> B3Digest {
        let digest = B3Digest::of(data);
        let mut b = self.inner.lock();
        if data.len() <= chunk {
            b.chunks.insert(digest, Bytes::copy_from_slice(data));
            b.lists.insert(digest, Vec::new());
        } else {
            let mut list = Vec::new();
            for piece in data.chunks(chunk) {
                let d = B3Digest::of(piece);
                b.chunks.insert(d, Bytes::copy_from_slice(piece));
                list.push(ChunkMeta {
                    digest: d,
                    size: piece.len() as u64,
                });
            }
            b.lists.insert(digest, list);
        }
        digest
    }

    fn whole(&self, digest: &B3Digest) -> Option<Vec<u8>> {
        let b = self.inner.lock();
        let list = b.lists.get(digest)?;
        if list.is_empty() {
            return b.chunks.get(digest).map(|c| c.to_vec());
        }
        let mut out = Vec::new();
        for c in list {
            out.extend_from_slice(b.chunks.get(&c.digest)?);
        }
        Some(out)
    }
}

struct Writer {
    blobs: MemBlobs,
    buf: Vec<u8>,
}

impl AsyncWrite for Writer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl BlobWriter for Writer {
    async fn close(&mut self) -> Result<B3Digest> {
        Ok(self.blobs.put_chunked(&self.buf, WRITE_CHUNK))
    }
}

#[async_trait]
impl BlobService for MemBlobs {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        let b = self.inner.lock();
        Ok(b.lists.contains_key(digest) || b.chunks.contains_key(digest))
    }

    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        Ok(self.inner.lock().lists.get(digest).cloned())
    }

    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        let got = self.inner.lock().chunks.get(digest).cloned();
        match got {
            Some(data) => {
                let actual = B3Digest::of(&data);
                if actual != *digest {
                    return Err(Error::Integrity {
                        what: "chunk",
                        expected: *digest,
                        actual,
                    });
                }
                Ok(Some(data))
            }
            None => Ok(None),
        }
    }

    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        Ok(self
            .whole(digest)
            .map(|v| Box::new(std::io::Cursor::new(v)) as BlobReader))
    }

    async fn open_write(&self) -> Box<dyn BlobWriter> {
        Box::new(Writer {
            blobs: self.clone(),
            buf: Vec::new(),
        })
    }
}

/// Directories in memory.
#[derive(Default, Clone)]
pub struct MemDirs {
    inner: Arc<Mutex<HashMap<B3Digest, Directory>>>,
}

#[async_trait]
impl DirectoryService for MemDirs {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>> {
        Ok(self.inner.lock().get(digest).cloned())
    }

    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory>> {
        let map = self.inner.lock().clone();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([*root]);
        while let Some(d) = queue.pop_front() {
            if !seen.insert(d) {
                continue;
            }
            match map.get(&d) {
                Some(dir) => {
                    for (_, child) in dir.child_directories() {
                        queue.push_back(*child);
                    }
                    out.push(Ok(dir.clone()));
                }
                None if d == *root => break,
                None => {
                    out.push(Err(Error::InvalidRequest(format!("missing {d}"))));
                    break;
                }
            }
        }
        Box::pin(futures::stream::iter(out))
    }

    async fn put(&self, directory: Directory) -> Result<B3Digest> {
        let d = directory.digest();
        self.inner.lock().insert(d, directory);
        Ok(d)
    }

    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter> {
        Box::new(Putter {
            dirs: self.clone(),
            last: None,
        })
    }
}

struct Putter {
    dirs: MemDirs,
    last: Option<B3Digest>,
}

#[async_trait]
impl DirectoryPutter for Putter {
    async fn put(&mut self, directory: Directory) -> Result<()> {
        self.last = Some(self.dirs.put(directory).await?);
        Ok(())
    }
    async fn close(&mut self) -> Result<B3Digest> {
        self.last
            .ok_or_else(|| Error::InvalidRequest("empty closure".into()))
    }
}

/// Path infos in memory.
#[derive(Default, Clone)]
pub struct MemPathInfos {
    inner: Arc<Mutex<HashMap<[u8; 20], PathInfo>>>,
}

#[async_trait]
impl PathInfoService for MemPathInfos {
    async fn get(&self, digest: [u8; 20]) -> Result<Option<PathInfo>> {
        Ok(self.inner.lock().get(&digest).cloned())
    }

    async fn put(&self, info: PathInfo) -> Result<PathInfo> {
        self.inner
            .lock()
            .insert(*info.store_path.digest(), info.clone());
        Ok(info)
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
        let all: Vec<_> = self.inner.lock().values().cloned().map(Ok).collect();
        Box::pin(futures::stream::iter(all))
    }
}
