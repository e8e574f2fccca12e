//! The conformance suites against the cache layer (memory near, redb far),
//! and the cache's own promises: fills near, never returns or keeps what far
//! got wrong.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;
use storefs_testkit::suites::blob::{check_blob, write_blob};
use storefs_testkit::suites::directory::{diamond, file_dir};
use storefs_testkit::{blob_suite, directory_suite, pseudo_random, wait_until};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use storefs_castore::{
    B3Digest, BlobReader, BlobService, BlobWriter, CachedBlobService, CachedDirectoryService,
    ChunkMeta, Directory, DirectoryPutter, DirectoryService, Error, MemoryBlobService,
    MemoryDirectoryService, RedbStore,
};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;

fn blobs() -> (Arc<dyn BlobService>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let far = RedbStore::open_dir(dir.path()).unwrap().blob_service();
    let cached = CachedBlobService::new(Arc::new(MemoryBlobService::new()), Arc::new(far));
    (Arc::new(cached), dir)
}

fn dirs() -> (Arc<dyn DirectoryService>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let far = RedbStore::open_dir(dir.path()).unwrap().directory_service();
    let cached =
        CachedDirectoryService::new(Arc::new(MemoryDirectoryService::new()), Arc::new(far));
    (Arc::new(cached), dir)
}

blob_suite!(crate::blobs());
directory_suite!(crate::dirs());

/// The production shape: a redb cache in front of a remote (here memory).
fn blobs_redb_near() -> (Arc<dyn BlobService>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let near = RedbStore::open_dir(dir.path()).unwrap().blob_service();
    let cached = CachedBlobService::new(Arc::new(near), Arc::new(MemoryBlobService::new()));
    (Arc::new(cached), dir)
}

fn dirs_redb_near() -> (Arc<dyn DirectoryService>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let near = RedbStore::open_dir(dir.path()).unwrap().directory_service();
    let cached =
        CachedDirectoryService::new(Arc::new(near), Arc::new(MemoryDirectoryService::new()));
    (Arc::new(cached), dir)
}

blob_suite!(blob_conformance_redb_near, crate::blobs_redb_near());
directory_suite!(directory_conformance_redb_near, crate::dirs_redb_near());

#[tokio::test]
async fn reads_fill_near() {
    let near = MemoryBlobService::new();
    let far = MemoryBlobService::new();
    let data = pseudo_random(1 << 20, 8);
    let small = b"tiny".to_vec();
    let blob = write_blob(&far, &data, 1 << 16).await;
    let small_blob = write_blob(&far, &small, 1).await;
    let cache = CachedBlobService::new(Arc::new(near.clone()), Arc::new(far));
    assert_eq!(near.chunk_count(), 0);
    // The chunk list is cached on its own, before any chunk.
    let list = cache.chunks(&blob).await.unwrap().unwrap();
    assert_eq!(near.chunks(&blob).await.unwrap(), Some(list.clone()));
    assert_eq!(near.read_chunk(&list[0].digest).await.unwrap(), None);
    // Reading one chunk caches just that one (written behind the reader:
    // `flush` waits for it).
    cache.read_chunk(&list[1].digest).await.unwrap().unwrap();
    cache.flush().await;
    assert_eq!(near.chunk_count(), 1);
    // A whole read caches the rest.
    check_blob(&cache, &blob, &data).await;
    cache.flush().await;
    assert_eq!(near.chunk_count(), list.len());
    check_blob(&near, &blob, &data).await;
    check_blob(&cache, &small_blob, &small).await;
    cache.flush().await;
    check_blob(&near, &small_blob, &small).await;
}

#[tokio::test]
async fn writes_go_to_far_and_near() {
    let near = MemoryBlobService::new();
    let far = MemoryBlobService::new();
    let cache = CachedBlobService::new(Arc::new(near.clone()), Arc::new(far.clone()));
    let data = pseudo_random(3 << 20, 12);
    let blob = write_blob(&cache, &data, 77_777).await;
    check_blob(&far, &blob, &data).await;
    check_blob(&near, &blob, &data).await;

    let near_d = MemoryDirectoryService::new();
    let far_d = MemoryDirectoryService::new();
    let cache_d = CachedDirectoryService::new(Arc::new(near_d.clone()), Arc::new(far_d.clone()));
    let t = diamond();
    let mut p = cache_d.put_multiple_start();
    for d in [&t.c, &t.d, &t.a, &t.b, &t.root] {
        p.put(d.clone()).await.unwrap();
    }
    p.close().await.unwrap();
    assert_eq!(far_d.len(), 5);
    assert_eq!(near_d.len(), 5);
}

/// A far blob service that flips a byte of every chunk it returns.
struct Corrupting(MemoryBlobService);

#[async_trait]
impl BlobService for Corrupting {
    async fn has(&self, digest: &B3Digest) -> storefs_castore::Result<bool> {
        self.0.has(digest).await
    }
    async fn chunks(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Vec<ChunkMeta>>> {
        self.0.chunks(digest).await
    }
    async fn read_chunk(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Bytes>> {
        Ok(self.0.read_chunk(digest).await?.map(|b| {
            let mut v = b.to_vec();
            if let Some(x) = v.first_mut() {
                *x ^= 1;
            }
            Bytes::from(v)
        }))
    }
    async fn open_read(&self, digest: &B3Digest) -> storefs_castore::Result<Option<BlobReader>> {
        self.0.open_read(digest).await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.0.open_write().await
    }
}

#[tokio::test]
async fn corrupted_far_chunk_is_refused_and_not_cached() {
    let inner = MemoryBlobService::new();
    let data = pseudo_random(1 << 20, 4);
    let blob = write_blob(&inner, &data, 1 << 16).await;
    let small = write_blob(&inner, b"hello", 5).await;
    let near = MemoryBlobService::new();
    let cache = CachedBlobService::new(Arc::new(near.clone()), Arc::new(Corrupting(inner)));
    let list = cache.chunks(&blob).await.unwrap().unwrap();
    let err = cache.read_chunk(&list[0].digest).await.unwrap_err();
    assert!(
        matches!(err, Error::Integrity { what: "chunk", expected, .. } if expected == list[0].digest),
        "{err}"
    );
    let err = cache.read_chunk(&small).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    let mut r = cache.open_read(&blob).await.unwrap().unwrap();
    let mut out = Vec::new();
    let e = r.read_to_end(&mut out).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(out.is_empty(), "bad bytes were handed out");
    assert!(cache.open_read(&small).await.is_err());
    assert_eq!(near.chunk_count(), 0, "a corrupted chunk was cached");
}

/// A far directory service that answers with the wrong directories.
struct Lying {
    inner: MemoryDirectoryService,
    /// Returned by `get` whatever is asked, and appended to every closure.
    impostor: Directory,
}

#[async_trait]
impl DirectoryService for Lying {
    async fn get(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Directory>> {
        Ok(self.inner.get(digest).await?.map(|_| self.impostor.clone()))
    }
    fn get_recursive(
        &self,
        root: &B3Digest,
    ) -> BoxStream<'static, storefs_castore::Result<Directory>> {
        let extra = futures::stream::iter([Ok(self.impostor.clone())]);
        Box::pin(self.inner.get_recursive(root).chain(extra))
    }
    async fn put(&self, directory: Directory) -> storefs_castore::Result<B3Digest> {
        self.inner.put(directory).await
    }
    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter> {
        self.inner.put_multiple_start()
    }
}

#[tokio::test]
async fn lying_far_directories_are_refused_and_not_cached() {
    let inner = MemoryDirectoryService::new();
    let t = diamond();
    let mut p = inner.put_multiple_start();
    for d in [&t.c, &t.d, &t.a, &t.b, &t.root] {
        p.put(d.clone()).await.unwrap();
    }
    p.close().await.unwrap();
    let near = MemoryDirectoryService::new();
    let cache = CachedDirectoryService::new(
        Arc::new(near.clone()),
        Arc::new(Lying {
            inner,
            impostor: file_dir(&["impostor"]),
        }),
    );
    let err = cache.get(&t.a.digest()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Integrity {
                what: "directory",
                ..
            }
        ),
        "{err}"
    );
    // The honest part of the closure arrives, then the stray one fails it.
    let got: Vec<_> = cache.get_recursive(&t.root.digest()).collect().await;
    assert_eq!(got.len(), 6);
    assert!(got[..5].iter().all(|r| r.is_ok()));
    assert!(matches!(got[5], Err(Error::Remote { .. })), "{:?}", got[5]);
    assert!(near.is_empty(), "a lie was cached");
}

#[tokio::test]
async fn recursive_get_fills_near_even_over_a_partial_near() {
    let far = MemoryDirectoryService::new();
    let t = diamond();
    let mut p = far.put_multiple_start();
    for d in [&t.c, &t.d, &t.a, &t.b, &t.root] {
        p.put(d.clone()).await.unwrap();
    }
    p.close().await.unwrap();
    let near = MemoryDirectoryService::new();
    let cache = CachedDirectoryService::new(Arc::new(near.clone()), Arc::new(far));
    // A single get leaves near with the root but none of its children.
    assert_eq!(
        cache.get(&t.root.digest()).await.unwrap(),
        Some(t.root.clone())
    );
    assert_eq!(near.len(), 1);
    let got: Vec<_> = cache
        .get_recursive(&t.root.digest())
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(got, vec![t.root.clone(), t.a, t.b, t.c, t.d]);
    assert_eq!(near.len(), 5);
    let from_near: Vec<_> = near
        .get_recursive(&t.root.digest())
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(from_near, got);
}

/// A far blob service that counts chunk reads and holds each one until the
/// test opens its gate.
struct GatedCounting {
    inner: MemoryBlobService,
    reads: AtomicUsize,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl BlobService for GatedCounting {
    async fn has(&self, digest: &B3Digest) -> storefs_castore::Result<bool> {
        self.inner.has(digest).await
    }
    async fn chunks(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Vec<ChunkMeta>>> {
        self.inner.chunks(digest).await
    }
    async fn read_chunk(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Bytes>> {
        self.reads.fetch_add(1, SeqCst);
        // Closed by the test: every waiter goes on.
        let _ = self.gate.acquire().await;
        self.inner.read_chunk(digest).await
    }
    async fn open_read(&self, digest: &B3Digest) -> storefs_castore::Result<Option<BlobReader>> {
        self.inner.open_read(digest).await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.inner.open_write().await
    }
}

/// Run `fut`, counting it in `waiting` the first time it has to wait.
async fn counted_when_waiting<F: Future>(fut: F, waiting: &AtomicUsize) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut counted = false;
    std::future::poll_fn(|cx| {
        let r = fut.as_mut().poll(cx);
        if r.is_pending() && !counted {
            counted = true;
            waiting.fetch_add(1, SeqCst);
        }
        r
    })
    .await
}

#[tokio::test]
async fn concurrent_misses_share_one_fetch() {
    let inner = MemoryBlobService::new();
    let data = pseudo_random(10_000, 31); // below `min`: one chunk
    let d = write_blob(&inner, &data, 1 << 16).await;
    let far = Arc::new(GatedCounting {
        inner,
        reads: Default::default(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let cache = CachedBlobService::new(Arc::new(MemoryBlobService::new()), far.clone());
    let waiting = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let cache = cache.clone();
            let waiting = waiting.clone();
            tokio::spawn(async move { counted_when_waiting(cache.read_chunk(&d), &waiting).await })
        })
        .collect();
    // All eight wait while the one far read is held at the gate.
    wait_until(
        Duration::from_secs(10),
        "eight readers on one far read",
        || waiting.load(SeqCst) == 8 && far.reads.load(SeqCst) == 1,
    )
    .await;
    far.gate.close();
    for r in readers {
        assert_eq!(r.await.unwrap().unwrap().unwrap().as_ref(), &data[..]);
    }
    assert_eq!(far.reads.load(SeqCst), 1);
    // Later reads come from near.
    cache.read_chunk(&d).await.unwrap().unwrap();
    assert_eq!(far.reads.load(SeqCst), 1);
    // A missing chunk is None for everyone, and not remembered.
    let missing = B3Digest::of(b"missing");
    assert_eq!(cache.read_chunk(&missing).await.unwrap(), None);
    assert_eq!(cache.read_chunk(&missing).await.unwrap(), None);
    assert_eq!(far.reads.load(SeqCst), 3);
}

/// A near store whose writers fail on the first write.
struct BrokenNearWrites(MemoryBlobService);

struct FailingWriter;

impl tokio::io::AsyncWrite for FailingWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(std::io::Error::other("disk full")))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl BlobWriter for FailingWriter {
    async fn close(&mut self) -> storefs_castore::Result<B3Digest> {
        Err(Error::storage_msg("disk full"))
    }
}

#[async_trait]
impl BlobService for BrokenNearWrites {
    async fn has(&self, digest: &B3Digest) -> storefs_castore::Result<bool> {
        self.0.has(digest).await
    }
    async fn chunks(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Vec<ChunkMeta>>> {
        self.0.chunks(digest).await
    }
    async fn read_chunk(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Bytes>> {
        self.0.read_chunk(digest).await
    }
    async fn open_read(&self, digest: &B3Digest) -> storefs_castore::Result<Option<BlobReader>> {
        self.0.open_read(digest).await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        Box::new(FailingWriter)
    }
}

#[async_trait]
impl storefs_castore::ChunkStore for BrokenNearWrites {
    async fn insert_chunk(&self, digest: &B3Digest, data: Bytes) -> storefs_castore::Result<()> {
        self.0.insert_chunk(digest, data).await
    }
    async fn insert_chunk_list(
        &self,
        blob: &B3Digest,
        chunks: &[ChunkMeta],
    ) -> storefs_castore::Result<()> {
        self.0.insert_chunk_list(blob, chunks).await
    }
}

#[tokio::test]
async fn a_failing_near_does_not_fail_writes() {
    let near = MemoryBlobService::new();
    let far = MemoryBlobService::new();
    let cache = CachedBlobService::new(
        Arc::new(BrokenNearWrites(near.clone())),
        Arc::new(far.clone()),
    );
    let data = pseudo_random(700_000, 13);
    let d = write_blob(&cache, &data, 50_000).await;
    check_blob(&far, &d, &data).await;
    assert_eq!(near.chunk_count(), 0);
    // Reads still fill near through insert_chunk.
    check_blob(&cache, &d, &data).await;
    cache.flush().await;
    assert!(near.chunk_count() > 0);
}

#[tokio::test]
async fn a_corrupt_near_chunk_is_fetched_again_and_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let near = RedbStore::open_dir(tmp.path()).unwrap().blob_service();
    let far = MemoryBlobService::new();
    let data = pseudo_random(5000, 17);
    let d = write_blob(&far, &data, 5000).await;
    let cache = CachedBlobService::new(Arc::new(near.clone()), Arc::new(far));
    assert_eq!(
        cache.read_chunk(&d).await.unwrap().unwrap().as_ref(),
        &data[..]
    );
    cache.flush().await;
    near.danger_overwrite_chunk_record(&d, b"\x00garbage".to_vec())
        .await
        .unwrap();
    assert!(matches!(
        near.read_chunk(&d).await,
        Err(Error::Integrity { .. })
    ));
    // The cache never hands out the bad bytes, and mends near.
    assert_eq!(
        cache.read_chunk(&d).await.unwrap().unwrap().as_ref(),
        &data[..]
    );
    cache.flush().await;
    assert_eq!(
        near.read_chunk(&d).await.unwrap().unwrap().as_ref(),
        &data[..]
    );
}

/// A near store whose chunk writes wait until the test opens its gate.
#[derive(Clone)]
struct HeldNear {
    inner: MemoryBlobService,
    gate: Arc<tokio::sync::Semaphore>,
}

#[async_trait]
impl BlobService for HeldNear {
    async fn has(&self, digest: &B3Digest) -> storefs_castore::Result<bool> {
        self.inner.has(digest).await
    }
    async fn chunks(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Vec<ChunkMeta>>> {
        self.inner.chunks(digest).await
    }
    async fn read_chunk(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Bytes>> {
        self.inner.read_chunk(digest).await
    }
    async fn open_read(&self, digest: &B3Digest) -> storefs_castore::Result<Option<BlobReader>> {
        self.inner.open_read(digest).await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.inner.open_write().await
    }
}

#[async_trait]
impl storefs_castore::ChunkStore for HeldNear {
    async fn insert_chunk(&self, digest: &B3Digest, data: Bytes) -> storefs_castore::Result<()> {
        // Closed by the test: every waiter goes on.
        let _ = self.gate.acquire().await;
        self.inner.insert_chunk(digest, data).await
    }
    async fn insert_chunk_list(
        &self,
        blob: &B3Digest,
        chunks: &[ChunkMeta],
    ) -> storefs_castore::Result<()> {
        self.inner.insert_chunk_list(blob, chunks).await
    }
}

/// Readers do not wait for the cache's writes: a fetch answers while its
/// fill is still held, a second reader meanwhile gets the same bytes from
/// memory (not from far again), and `flush` waits for the fill.
#[tokio::test]
async fn fills_run_behind_the_readers_and_late_readers_share_them() {
    let inner = MemoryBlobService::new();
    let data = pseudo_random(10_000, 41);
    let d = write_blob(&inner, &data, 1 << 16).await;
    let far = Arc::new(GatedCounting {
        inner,
        reads: Default::default(),
        gate: tokio::sync::Semaphore::new(0),
    });
    far.gate.close();
    let near = HeldNear {
        inner: MemoryBlobService::new(),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let cache = CachedBlobService::new(Arc::new(near.clone()), far.clone());
    // Answered although near has not taken the chunk yet.
    let got = tokio::time::timeout(Duration::from_secs(10), cache.read_chunk(&d))
        .await
        .expect("the read waited for the cache's write");
    assert_eq!(got.unwrap().unwrap().as_ref(), &data[..]);
    assert_eq!(near.inner.chunk_count(), 0);
    // A batch read of it meanwhile: from memory, not far.
    let again = cache.read_chunk_batch(&[d]).await;
    assert_eq!(
        again[0].as_ref().unwrap().as_ref().unwrap().as_ref(),
        &data[..]
    );
    assert_eq!(far.reads.load(SeqCst), 1);
    near.gate.close();
    cache.flush().await;
    assert_eq!(near.inner.chunk_count(), 1);
    assert_eq!(far.reads.load(SeqCst), 1);
}

/// A near store whose next look for chunks (one or a batch) sees what near
/// holds, then is held until the test lets it go: as if a fill committed,
/// and left the in-flight map, between a reader's look in near and its look
/// in the map.
struct HeldLook {
    inner: MemoryBlobService,
    /// The next look is held.
    hold: AtomicBool,
    /// A permit for each held look that has seen near.
    looked: tokio::sync::Semaphore,
    /// The test's permit for a held look to answer.
    release: tokio::sync::Semaphore,
}

impl HeldLook {
    fn new() -> Self {
        Self {
            inner: MemoryBlobService::new(),
            hold: AtomicBool::new(false),
            looked: tokio::sync::Semaphore::new(0),
            release: tokio::sync::Semaphore::new(0),
        }
    }

    async fn held<T>(&self, answer: T) -> T {
        self.looked.add_permits(1);
        if let Ok(p) = self.release.acquire().await {
            p.forget();
        }
        answer
    }
}

#[async_trait]
impl BlobService for HeldLook {
    async fn has(&self, digest: &B3Digest) -> storefs_castore::Result<bool> {
        self.inner.has(digest).await
    }
    async fn chunks(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Vec<ChunkMeta>>> {
        self.inner.chunks(digest).await
    }
    async fn read_chunk(&self, digest: &B3Digest) -> storefs_castore::Result<Option<Bytes>> {
        let answer = self.inner.read_chunk(digest).await;
        if self.hold.swap(false, SeqCst) {
            return self.held(answer).await;
        }
        answer
    }
    async fn read_chunk_batch(
        &self,
        digests: &[B3Digest],
    ) -> Vec<storefs_castore::Result<Option<Bytes>>> {
        let answer = self.inner.read_chunk_batch(digests).await;
        if self.hold.swap(false, SeqCst) {
            return self.held(answer).await;
        }
        answer
    }
    async fn open_read(&self, digest: &B3Digest) -> storefs_castore::Result<Option<BlobReader>> {
        self.inner.open_read(digest).await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.inner.open_write().await
    }
}

#[async_trait]
impl storefs_castore::ChunkStore for HeldLook {
    async fn insert_chunk(&self, digest: &B3Digest, data: Bytes) -> storefs_castore::Result<()> {
        self.inner.insert_chunk(digest, data).await
    }
    async fn insert_chunk_list(
        &self,
        blob: &B3Digest,
        chunks: &[ChunkMeta],
    ) -> storefs_castore::Result<()> {
        self.inner.insert_chunk_list(blob, chunks).await
    }
}

/// A chunk another reader fetched and wrote into near between a reader's
/// look there and its look among the fetches in flight is read from near,
/// not fetched again: one chunk alone and chunks in a batch.
#[tokio::test]
async fn a_chunk_filled_between_the_two_looks_is_not_fetched_again() {
    let data = pseudo_random(10_000, 43);
    let other = pseudo_random(10_000, 44);
    let far = Arc::new(GatedCounting {
        inner: MemoryBlobService::new(),
        reads: Default::default(),
        gate: tokio::sync::Semaphore::new(0),
    });
    far.gate.close();
    let d = write_blob(&far.inner, &data, 1 << 16).await;
    let e = write_blob(&far.inner, &other, 1 << 16).await;
    let near = Arc::new(HeldLook::new());
    let cache = CachedBlobService::new(near.clone(), far.clone());

    // One chunk: the first reader's look is held after it missed.
    near.hold.store(true, SeqCst);
    let first = tokio::spawn({
        let cache = cache.clone();
        async move { cache.read_chunk(&d).await }
    });
    near.looked.acquire().await.unwrap().forget();
    let second = cache.read_chunk(&d).await.unwrap().unwrap();
    assert_eq!(second.as_ref(), &data[..]);
    cache.flush().await;
    assert_eq!(far.reads.load(SeqCst), 1);
    near.release.add_permits(1);
    let got = first.await.unwrap().unwrap().unwrap();
    assert_eq!(got.as_ref(), &data[..]);
    assert_eq!(
        far.reads.load(SeqCst),
        1,
        "far was asked for a chunk near held"
    );

    // A batch: the same, for a chunk near has, one it gets meanwhile and
    // one only far has. Near is looked at again for the one a fill wrote
    // there meanwhile, not for the others.
    let f = write_blob(&far.inner, &pseudo_random(9_000, 45), 1 << 16).await;
    let g_data = pseudo_random(8_000, 46);
    let g = write_blob(&far.inner, &g_data, 1 << 16).await;
    let _ = (
        cache.read_chunk(&f).await.unwrap().unwrap(),
        cache.flush().await,
    );
    let reads = far.reads.load(SeqCst);
    let lookups = cache.stats().snapshot().near_lookups;
    near.hold.store(true, SeqCst);
    let first = tokio::spawn({
        let cache = cache.clone();
        async move { cache.read_chunk_batch(&[e, f, g]).await }
    });
    near.looked.acquire().await.unwrap().forget();
    let second = cache.read_chunk_batch(&[e]).await;
    assert_eq!(
        second[0].as_ref().unwrap().as_ref().unwrap().as_ref(),
        &other[..]
    );
    cache.flush().await;
    assert_eq!(far.reads.load(SeqCst), reads + 1);
    near.release.add_permits(1);
    let got = first.await.unwrap();
    assert_eq!(
        got[0].as_ref().unwrap().as_ref().unwrap().as_ref(),
        &other[..]
    );
    assert!(got[1].as_ref().unwrap().is_some());
    assert_eq!(
        got[2].as_ref().unwrap().as_ref().unwrap().as_ref(),
        &g_data[..]
    );
    assert_eq!(
        far.reads.load(SeqCst),
        reads + 2,
        "far was asked for a chunk near held, or not for the one it lacked"
    );
    // Three at the first look, one for the second reader, one again.
    assert_eq!(cache.stats().snapshot().near_lookups, lookups + 5);
}

/// Each chunk of a batch is looked up in near once (a real redb cache, as
/// a mount has): the chunks near lacks are fetched without a second look,
/// and a later read of them finds them there.
#[tokio::test]
async fn near_is_asked_once_per_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let near = Arc::new(RedbStore::open_dir(dir.path()).unwrap().blob_service());
    let far = Arc::new(MemoryBlobService::new());
    let mut digests = Vec::new();
    for seed in 0..40u64 {
        digests.push(write_blob(&*far, &pseudo_random(3_000, 100 + seed), 1 << 16).await);
    }
    let cache = CachedBlobService::new(near, far);
    let got = cache.read_chunk_batch(&digests).await;
    assert!(got.iter().all(|r| matches!(r, Ok(Some(_)))));
    let s = cache.stats().snapshot();
    assert_eq!((s.near_lookups, s.near_chunks, s.far_chunks), (40, 0, 40));

    // One more, alone.
    let one = write_blob(&**cache.far(), &pseudo_random(2_000, 99), 1 << 16).await;
    assert!(cache.read_chunk(&one).await.unwrap().is_some());
    let s = cache.stats().snapshot();
    assert_eq!((s.near_lookups, s.far_chunks), (41, 41));

    // Once written into near, read from there: one look each, nothing far.
    cache.flush().await;
    let got = cache.read_chunk_batch(&digests).await;
    assert!(got.iter().all(|r| matches!(r, Ok(Some(_)))));
    let s = cache.stats().snapshot();
    assert_eq!((s.near_lookups, s.near_chunks, s.far_chunks), (81, 40, 41));
}
