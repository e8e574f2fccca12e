//! NAR streaming by range over real memory services: every range equals
//! the same slice of the whole NAR (and the whole NAR equals the NAR
//! writer's), and a range reads only the chunks of the files it overlaps.

use std::collections::HashMap;
use std::sync::Arc;
use storefs_testkit::pseudo_random;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use storefs_castore::{B3Digest, Directory, Node, PathComponent, Result};
use storefs_castore::{BlobReader, BlobService, BlobWriter, ChunkMeta, MemoryBlobService};
use storefs_castore::{DirectoryService, MemoryDirectoryService};
use storefs_http::nar::{ByteRange, Tree, nar_stream};
use tokio::io::AsyncWriteExt;

/// The real memory service, counting which digests were read.
#[derive(Default)]
struct Counting {
    inner: MemoryBlobService,
    reads: Mutex<HashMap<B3Digest, usize>>,
}

#[async_trait]
impl BlobService for Counting {
    async fn has(&self, digest: &B3Digest) -> Result<bool> {
        self.inner.has(digest).await
    }
    async fn chunks(&self, digest: &B3Digest) -> Result<Option<Vec<ChunkMeta>>> {
        self.inner.chunks(digest).await
    }
    async fn read_chunk(&self, digest: &B3Digest) -> Result<Option<Bytes>> {
        *self.reads.lock().entry(*digest).or_default() += 1;
        self.inner.read_chunk(digest).await
    }
    async fn open_read(&self, digest: &B3Digest) -> Result<Option<BlobReader>> {
        *self.reads.lock().entry(*digest).or_default() += 1;
        self.inner.open_read(digest).await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.inner.open_write().await
    }
}

async fn put_blob(blobs: &dyn BlobService, data: &[u8]) -> B3Digest {
    let mut w = blobs.open_write().await;
    w.write_all(data).await.unwrap();
    w.close().await.unwrap()
}

async fn collect(
    blobs: Arc<dyn BlobService>,
    tree: Arc<Tree>,
    root: &Node,
    range: ByteRange,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = Box::pin(nar_stream(blobs, tree, root.clone(), range));
    while let Some(piece) = s.next().await {
        out.extend_from_slice(&piece.unwrap());
    }
    out
}

#[tokio::test]
async fn ranges_are_slices_and_skip_unneeded_blobs() {
    let counting = Arc::new(Counting::default());
    let blobs: Arc<dyn BlobService> = counting.clone();
    let dirs = MemoryDirectoryService::new();

    let big = pseudo_random(700_000, 3);
    let small = b"tail file\n".to_vec();
    let big_digest = put_blob(blobs.as_ref(), &big).await;
    let small_digest = put_blob(blobs.as_ref(), &small).await;
    let big_chunks = blobs.chunks(&big_digest).await.unwrap().unwrap();
    assert!(big_chunks.len() > 3, "the big file must span many chunks");

    let mut sub = Directory::new();
    sub.add(
        PathComponent::try_from("z-small").unwrap(),
        Node::File {
            digest: small_digest,
            size: small.len() as u64,
            executable: true,
        },
    )
    .unwrap();
    let sub_digest = dirs.put(sub.clone()).await.unwrap();
    let mut top = Directory::new();
    top.add(
        PathComponent::try_from("a-big").unwrap(),
        Node::File {
            digest: big_digest,
            size: big.len() as u64,
            executable: false,
        },
    )
    .unwrap();
    top.add(
        PathComponent::try_from("sub").unwrap(),
        Node::Directory {
            digest: sub_digest,
            size: sub.size(),
        },
    )
    .unwrap();
    let top_digest = dirs.put(top.clone()).await.unwrap();
    let root = Node::Directory {
        digest: top_digest,
        size: top.size(),
    };

    let mut reference = Vec::new();
    storefs_store::nar::write_nar(&mut reference, &root, blobs.as_ref(), &dirs)
        .await
        .unwrap();
    let total = reference.len() as u64;
    let tree = Arc::new(Tree::load(&dirs, &root).await.unwrap());

    let whole = collect(
        blobs.clone(),
        tree.clone(),
        &root,
        ByteRange {
            start: 0,
            end: total,
        },
    )
    .await;
    assert!(
        whole == reference,
        "whole NAR differs from the NAR writer's"
    );

    let mut x = 0x1234_5678_9abc_def1u64;
    for _ in 0..48 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let a = x % total;
        let b = a + 1 + (x >> 32) % (total - a);
        let got = collect(
            blobs.clone(),
            tree.clone(),
            &root,
            ByteRange { start: a, end: b },
        )
        .await;
        assert!(
            got[..] == reference[a as usize..b as usize],
            "range {a}..{b}"
        );
    }

    // A range after the big file reads none of its chunks.
    counting.reads.lock().clear();
    let tail_at = total - 200;
    let got = collect(
        blobs.clone(),
        tree.clone(),
        &root,
        ByteRange {
            start: tail_at,
            end: total,
        },
    )
    .await;
    assert!(got[..] == reference[tail_at as usize..]);
    let reads = counting.reads.lock().clone();
    assert!(
        big_chunks.iter().all(|c| !reads.contains_key(&c.digest))
            && !reads.contains_key(&big_digest),
        "read {reads:?}"
    );
    assert_eq!(reads.get(&small_digest), Some(&1));

    // A range inside the big file reads only the chunks it covers.
    counting.reads.lock().clear();
    let start_of_big = find(&reference, &big[..64]) as u64;
    let second = big_chunks[0].size;
    let range = ByteRange {
        start: start_of_big + second + 1,
        end: start_of_big + second + 10,
    };
    let got = collect(blobs.clone(), tree.clone(), &root, range).await;
    assert!(got[..] == reference[range.start as usize..range.end as usize]);
    let reads = counting.reads.lock().clone();
    assert_eq!(reads.len(), 1, "read {reads:?}");
    assert!(reads.contains_key(&big_chunks[1].digest));
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}
