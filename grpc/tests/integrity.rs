//! A server whose store hands out a corrupted chunk: the client refuses it
//! with an integrity error, and never returns the bad bytes.

use std::io::Cursor;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use storefs_castore::{B3Digest, Directory, Error, Node, PathComponent, Result};
use storefs_castore::{BlobReader, BlobService, BlobWriter, ChunkMeta};
use storefs_castore::{DirectoryPutter, DirectoryService};
use storefs_grpc::ServerConfig;
use storefs_store::Services;
use storefs_testkit::grpc::{Kind, client, memory_services};
use storefs_testkit::suites::blob::{put_blob, try_read_blob};
use storefs_testkit::{GrpcServer, pseudo_random};
use tokio::io::AsyncReadExt;

/// Flips one byte of `victim` (a chunk) wherever it is read: alone, or as
/// part of a whole blob.
struct CorruptingBlobs {
    inner: Arc<dyn BlobService>,
    victim: B3Digest,
}

fn flip(mut data: Vec<u8>, at: usize) -> Vec<u8> {
    data[at] ^= 0x01;
    data
}

#[async_trait]
impl BlobService for CorruptingBlobs {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        self.inner.has(digest).await
    }
    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        self.inner.chunks(digest).await
    }
    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        let got = self.inner.read_chunk(digest).await?;
        Ok(got.map(|b| {
            if *digest == self.victim {
                Bytes::from(flip(b.to_vec(), 7))
            } else {
                b
            }
        }))
    }
    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        let chunks = self.inner.chunks(digest).await?;
        let offset = match (&chunks, *digest == self.victim) {
            (_, true) => Some(7),
            (Some(list), false) => {
                let mut off = 0u64;
                let mut found = None;
                for c in list {
                    if c.digest == self.victim {
                        found = Some(off as usize + 7);
                    }
                    off += c.size;
                }
                found
            }
            (None, false) => None,
        };
        let Some(at) = offset else {
            return self.inner.open_read(digest).await;
        };
        let Some(mut r) = self.inner.open_read(digest).await? else {
            return Ok(None);
        };
        let mut all = Vec::new();
        r.read_to_end(&mut all).await?;
        Ok(Some(Box::new(Cursor::new(flip(all, at)))))
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.inner.open_write().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_chunk_is_an_integrity_error() {
    let honest = memory_services();
    let data = pseudo_random(3 << 20, 7);
    let digest = put_blob(honest.blob.as_ref(), &data).await;
    let chunks = honest.blob.chunks(&digest).await.unwrap().unwrap();
    assert!(chunks.len() >= 3);
    let victim = chunks[1].digest;

    let services = Services {
        blob: Arc::new(CorruptingBlobs {
            inner: honest.blob.clone(),
            victim,
        }),
        ..honest.clone()
    };
    let server = GrpcServer::start(Kind::Tcp, services, ServerConfig::default()).await;
    let c = client(&server.url);

    // The chunk list is passed on as-is; good chunks read fine.
    assert_eq!(c.blob.chunks(&digest).await.unwrap().unwrap(), chunks);
    let good = c.blob.read_chunk(&chunks[0].digest).await.unwrap().unwrap();
    assert_eq!(good.as_ref(), &data[..chunks[0].size as usize]);

    // The bad one is refused.
    match c.blob.read_chunk(&victim).await {
        Err(Error::Integrity {
            what: "chunk",
            expected,
            actual,
        }) => {
            assert_eq!(expected, victim);
            assert_ne!(actual, victim);
        }
        other => panic!("expected an integrity error, got {other:?}"),
    }

    // In a batch too.
    let batch = [chunks[0].digest, victim, chunks[2].digest];
    match c.grpc_blob.read_chunks(&batch).await {
        Err(Error::Integrity {
            what: "chunk",
            expected,
            ..
        }) => assert_eq!(expected, victim),
        other => panic!("expected an integrity error, got {other:?}"),
    }

    // Read whole, the blob fails at its end with InvalidData.
    let err = try_read_blob(c.blob.as_ref(), &digest).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    server.stop().await.unwrap();
}

/// Answers every `get` with a directory other than the one asked for.
struct LyingDirectories {
    inner: Arc<dyn DirectoryService>,
    decoy: Directory,
}

#[async_trait]
impl DirectoryService for LyingDirectories {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>> {
        Ok(self.inner.get(digest).await?.map(|_| self.decoy.clone()))
    }
    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory>> {
        // The real root, then a directory that nothing named.
        let decoy = self.decoy.clone();
        let inner = self.inner.get_recursive(root);
        Box::pin(inner.chain(futures::stream::once(async move { Ok(decoy) })))
    }
    async fn put(&self, directory: Directory) -> Result<B3Digest> {
        self.inner.put(directory).await
    }
    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter> {
        self.inner.put_multiple_start()
    }
}

#[tokio::test]
async fn a_wrong_directory_is_refused() {
    let honest = memory_services();
    let mut root = Directory::new();
    root.add(
        PathComponent::try_from("f").unwrap(),
        Node::File {
            digest: B3Digest::of(b"f"),
            size: 1,
            executable: false,
        },
    )
    .unwrap();
    let digest = honest.directory.put(root.clone()).await.unwrap();
    let mut decoy = Directory::new();
    decoy
        .add(
            PathComponent::try_from("g").unwrap(),
            Node::File {
                digest: B3Digest::of(b"g"),
                size: 1,
                executable: false,
            },
        )
        .unwrap();
    let services = Services {
        directory: Arc::new(LyingDirectories {
            inner: honest.directory.clone(),
            decoy: decoy.clone(),
        }),
        ..honest.clone()
    };
    let server = GrpcServer::start(Kind::Unix, services, ServerConfig::default()).await;
    let c = client(&server.url);

    match c.directory.get(&digest).await {
        Err(Error::Integrity {
            what: "directory",
            expected,
            actual,
        }) => {
            assert_eq!(expected, digest);
            assert_eq!(actual, decoy.digest());
        }
        other => panic!("expected an integrity error, got {other:?}"),
    }

    // Recursive: the root passes, then the stranger is an error, and the
    // stream yields nothing after it.
    let mut s = c.directory.get_recursive(&digest);
    assert_eq!(s.next().await.unwrap().unwrap(), root);
    let err = s.next().await.unwrap().unwrap_err();
    assert!(
        storefs_castore::Report(&err)
            .to_string()
            .contains("no directory received so far names"),
        "{err}"
    );
    assert!(s.next().await.is_none());
    let all: Result<Vec<_>> = c.directory.get_recursive(&digest).try_collect().await;
    assert!(all.is_err());
    server.stop().await.unwrap();
}

/// Lost one chunk of a blob it still lists.
struct LosingBlobs {
    inner: Arc<dyn BlobService>,
    lost: B3Digest,
}

#[async_trait]
impl BlobService for LosingBlobs {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        Ok(*digest != self.lost && self.inner.has(digest).await?)
    }
    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        self.inner.chunks(digest).await
    }
    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        if *digest == self.lost {
            return Ok(None);
        }
        self.inner.read_chunk(digest).await
    }
    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        if *digest == self.lost {
            return Ok(None);
        }
        self.inner.open_read(digest).await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.inner.open_write().await
    }
}

#[tokio::test]
async fn a_missing_chunk_is_data_loss_not_a_short_blob() {
    let honest = memory_services();
    let data = pseudo_random(2 << 20, 9);
    let digest = put_blob(honest.blob.as_ref(), &data).await;
    let chunks = honest.blob.chunks(&digest).await.unwrap().unwrap();
    let services = Services {
        blob: Arc::new(LosingBlobs {
            inner: honest.blob.clone(),
            lost: chunks[2].digest,
        }),
        ..honest.clone()
    };
    let server = GrpcServer::start(Kind::Tcp, services, ServerConfig::default()).await;
    let c = client(&server.url);
    let err = try_read_blob(c.blob.as_ref(), &digest).await.unwrap_err();
    assert!(
        err.to_string().contains("DATA_LOSS") && err.to_string().contains("chunk #2"),
        "{err}"
    );
    assert!(
        c.blob
            .read_chunk(&chunks[2].digest)
            .await
            .unwrap()
            .is_none()
    );
    server.stop().await.unwrap();
}
