//! The conformance suites every blob and directory backend must pass, and
//! helpers to build data. Each backend's test file instantiates the suites
//! with `blob_suite!` / `directory_suite!`.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use storefs_castore::{
    B3Digest, BlobService, ChunkMeta, ChunkerConfig, Directory, DirectoryService, Error, Node,
    PathComponent, SymlinkTarget, chunk_all,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deterministic pseudo-random bytes (xorshift64).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Write `data` in pieces of `piece` bytes and close.
pub async fn write_blob(svc: &dyn BlobService, data: &[u8], piece: usize) -> B3Digest {
    let mut w = svc.open_write().await;
    for p in data.chunks(piece.max(1)) {
        w.write_all(p).await.unwrap();
    }
    w.close().await.unwrap()
}

/// Read a whole blob with `open_read`.
pub async fn read_blob(svc: &dyn BlobService, digest: &B3Digest) -> Option<Vec<u8>> {
    let mut r = svc.open_read(digest).await.unwrap()?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    Some(out)
}

/// The chunk list a blob of `data` must have with the default chunking.
pub fn expected_chunks(data: &[u8]) -> Vec<ChunkMeta> {
    let chunks = chunk_all(ChunkerConfig::default(), data).unwrap();
    if chunks.len() < 2 {
        return Vec::new();
    }
    chunks
        .iter()
        .map(|c| ChunkMeta {
            digest: B3Digest::of(c),
            size: c.len() as u64,
        })
        .collect()
}

/// Check everything a service says about a blob it holds.
pub async fn check_blob(svc: &dyn BlobService, digest: &B3Digest, data: &[u8]) {
    assert_eq!(*digest, B3Digest::of(data));
    assert!(svc.has(digest).await.unwrap());
    let list = svc.chunks(digest).await.unwrap().expect("blob present");
    assert_eq!(
        list,
        expected_chunks(data),
        "chunk list of {} bytes",
        data.len()
    );
    if list.is_empty() {
        let whole = svc.read_chunk(digest).await.unwrap().expect("single chunk");
        assert_eq!(whole.as_ref(), data);
    } else {
        let mut offset = 0usize;
        for meta in &list {
            let size = meta.size as usize;
            let chunk = svc.read_chunk(&meta.digest).await.unwrap().expect("chunk");
            assert_eq!(chunk.as_ref(), &data[offset..offset + size]);
            offset += size;
        }
        assert_eq!(offset, data.len());
    }
    assert_eq!(read_blob(svc, digest).await.as_deref(), Some(data));
}

// ---------------------------------------------------------------- blobs

pub async fn blob_small_round_trip(svc: Arc<dyn BlobService>) {
    let d = write_blob(&*svc, b"Hello World!", 5).await;
    assert_eq!(
        d.to_hex(),
        "5ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c"
    );
    check_blob(&*svc, &d, b"Hello World!").await;
}

pub async fn blob_empty(svc: Arc<dyn BlobService>) {
    let d = write_blob(&*svc, b"", 1).await;
    assert_eq!(d, B3Digest::of(b""));
    check_blob(&*svc, &d, b"").await;
    assert_eq!(svc.read_chunk(&d).await.unwrap(), Some(Bytes::new()));
}

pub async fn blob_missing(svc: Arc<dyn BlobService>) {
    let d = B3Digest::of(b"never written");
    assert!(!svc.has(&d).await.unwrap());
    assert_eq!(svc.chunks(&d).await.unwrap(), None);
    assert_eq!(svc.read_chunk(&d).await.unwrap(), None);
    assert!(svc.open_read(&d).await.unwrap().is_none());
}

/// Zeroes never match the gear mask, so FastCDC cuts them at exactly
/// `max` (256 KiB): the sizes around it straddle a chunk boundary.
pub async fn blob_chunk_boundaries(svc: Arc<dyn BlobService>) {
    const MAX: usize = 256 * 1024;
    for (len, chunks) in [
        (MAX - 1, 0),
        (MAX, 0),
        (MAX + 1, 2),
        (2 * MAX, 2),
        (2 * MAX + 1, 3),
    ] {
        let data = vec![0u8; len];
        let d = write_blob(&*svc, &data, 10_000).await;
        let list = svc.chunks(&d).await.unwrap().unwrap();
        assert_eq!(list.len(), chunks, "blob of {len} zeroes");
        if len > MAX {
            assert_eq!(list[0].size, MAX as u64);
            assert_eq!(list[0].digest, B3Digest::of(&data[..MAX]));
            assert_eq!(list.iter().map(|c| c.size).sum::<u64>(), len as u64);
        }
        check_blob(&*svc, &d, &data).await;
    }
    // Random data around the first boundary FastCDC finds in it.
    let data = noise(200 * 1024, 11);
    let first = chunk_all(ChunkerConfig::default(), &data).unwrap()[0].len();
    for len in [first - 1, first, first + 1, first + 20_000] {
        let d = write_blob(&*svc, &data[..len], 4096).await;
        check_blob(&*svc, &d, &data[..len]).await;
    }
}

pub async fn blob_multi_mib(svc: Arc<dyn BlobService>) {
    let data = noise(5 * 1024 * 1024 + 333, 42);
    let d = write_blob(&*svc, &data, 100_003).await;
    let list = svc.chunks(&d).await.unwrap().unwrap();
    assert!(list.len() > 20, "only {} chunks", list.len());
    check_blob(&*svc, &d, &data).await;
    // The same bytes written in other pieces give the same blob.
    let again = write_blob(&*svc, &data, 1 << 20).await;
    assert_eq!(again, d);
    assert_eq!(svc.chunks(&again).await.unwrap().unwrap(), list);
}

pub async fn blob_close_twice(svc: Arc<dyn BlobService>) {
    let mut w = svc.open_write().await;
    w.write_all(b"twice").await.unwrap();
    let a = w.close().await.unwrap();
    let b = w.close().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a, B3Digest::of(b"twice"));
    assert!(w.write_all(b"more").await.is_err(), "write after close");
}

pub async fn blob_concurrent_writers(svc: Arc<dyn BlobService>) {
    let a = noise(3 * 1024 * 1024, 1);
    let b = noise(3 * 1024 * 1024, 2);
    let (da, db) = tokio::join!(
        {
            let svc = svc.clone();
            let a = a.clone();
            tokio::spawn(async move { write_blob(&*svc, &a, 65_000).await })
        },
        {
            let svc = svc.clone();
            let b = b.clone();
            tokio::spawn(async move { write_blob(&*svc, &b, 70_001).await })
        }
    );
    let (da, db) = (da.unwrap(), db.unwrap());
    check_blob(&*svc, &da, &a).await;
    check_blob(&*svc, &db, &b).await;
}

/// Chunk digests are readable as single-chunk "blobs" too.
pub async fn blob_chunk_is_has(svc: Arc<dyn BlobService>) {
    let data = noise(1024 * 1024, 9);
    let d = write_blob(&*svc, &data, 50_000).await;
    let list = svc.chunks(&d).await.unwrap().unwrap();
    for meta in &list {
        assert!(svc.has(&meta.digest).await.unwrap());
    }
}

// ---------------------------------------------------------------- directories

pub fn name(s: &[u8]) -> PathComponent {
    PathComponent::new(Bytes::copy_from_slice(s)).unwrap()
}

pub fn file_dir(names: &[&str]) -> Directory {
    let mut d = Directory::new();
    for n in names {
        d.add(
            name(n.as_bytes()),
            Node::File {
                digest: B3Digest::of(n.as_bytes()),
                size: n.len() as u64,
                executable: false,
            },
        )
        .unwrap();
    }
    d
}

pub fn with_children(base: Directory, children: &[(&str, &Directory)]) -> Directory {
    let mut d = base;
    for (n, c) in children {
        d.add(
            name(n.as_bytes()),
            Node::Directory {
                digest: c.digest(),
                size: c.size(),
            },
        )
        .unwrap();
    }
    d
}

/// A diamond: root → {a, b}, a → c, b → c, b → d.
pub struct Diamond {
    pub c: Directory,
    pub d: Directory,
    pub a: Directory,
    pub b: Directory,
    pub root: Directory,
}

pub fn diamond() -> Diamond {
    let c = file_dir(&["c-file"]);
    let d = {
        let mut d = Directory::new();
        d.add(
            name(b"link"),
            Node::Symlink {
                target: SymlinkTarget::try_from("../c").unwrap(),
            },
        )
        .unwrap();
        d
    };
    let a = with_children(file_dir(&["a-file"]), &[("c", &c)]);
    let b = with_children(Directory::new(), &[("c2", &c), ("d", &d)]);
    let root = with_children(file_dir(&["readme"]), &[("a", &a), ("b", &b)]);
    Diamond { c, d, a, b, root }
}

async fn collect(svc: &dyn DirectoryService, root: &B3Digest) -> Result<Vec<Directory>, Error> {
    let mut s = svc.get_recursive(root);
    let mut out = Vec::new();
    while let Some(d) = s.next().await {
        out.push(d?);
    }
    Ok(out)
}

pub async fn dir_put_get(svc: Arc<dyn DirectoryService>) {
    let leaf = file_dir(&["x", "y"]);
    let digest = svc.put(leaf.clone()).await.unwrap();
    assert_eq!(digest, leaf.digest());
    assert_eq!(svc.get(&digest).await.unwrap(), Some(leaf.clone()));
    // Putting it again is harmless.
    assert_eq!(svc.put(leaf.clone()).await.unwrap(), digest);
    let empty = Directory::new();
    assert_eq!(
        svc.put(empty.clone()).await.unwrap().to_hex(),
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
    // A parent whose child is stored can be put alone.
    let parent = with_children(Directory::new(), &[("leaf", &leaf)]);
    assert_eq!(svc.put(parent.clone()).await.unwrap(), parent.digest());
    assert_eq!(svc.get(&parent.digest()).await.unwrap(), Some(parent));
}

pub async fn dir_missing(svc: Arc<dyn DirectoryService>) {
    let d = B3Digest::of(b"no such directory");
    assert_eq!(svc.get(&d).await.unwrap(), None);
    assert!(collect(&*svc, &d).await.unwrap().is_empty());
}

pub async fn dir_put_without_child(svc: Arc<dyn DirectoryService>) {
    let child = file_dir(&["orphan"]);
    let parent = with_children(Directory::new(), &[("c", &child)]);
    let err = svc.put(parent.clone()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    assert_eq!(svc.get(&parent.digest()).await.unwrap(), None);
}

pub async fn dir_closure_and_recursive_order(svc: Arc<dyn DirectoryService>) {
    let t = diamond();
    let mut p = svc.put_multiple_start();
    for d in [&t.c, &t.d, &t.a, &t.b] {
        p.put(d.clone()).await.unwrap();
    }
    // Nothing is visible before close.
    assert_eq!(svc.get(&t.c.digest()).await.unwrap(), None);
    p.put(t.root.clone()).await.unwrap();
    assert_eq!(svc.get(&t.root.digest()).await.unwrap(), None);
    let root = p.close().await.unwrap();
    assert_eq!(root, t.root.digest());
    assert_eq!(p.close().await.unwrap(), root, "close twice");
    for d in [&t.c, &t.d, &t.a, &t.b, &t.root] {
        assert_eq!(svc.get(&d.digest()).await.unwrap().as_ref(), Some(d));
    }
    // Breadth first, root first, each once: root, a, b, then c (via a), d.
    let got = collect(&*svc, &root).await.unwrap();
    assert_eq!(got, vec![t.root.clone(), t.a, t.b, t.c, t.d]);
    // A sub-closure.
    let got = collect(&*svc, &diamond().b.digest()).await.unwrap();
    assert_eq!(got, vec![diamond().b, diamond().c, diamond().d]);
}

pub async fn dir_closure_wrong_order(svc: Arc<dyn DirectoryService>) {
    let t = diamond();
    let mut p = svc.put_multiple_start();
    p.put(t.c.clone()).await.unwrap();
    // `a` names `c` (put) — fine; `b` names `d`, not yet put.
    p.put(t.a.clone()).await.unwrap();
    let err = p.put(t.b.clone()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    // The putter stays failed, and nothing was stored.
    assert!(p.put(t.d.clone()).await.is_err());
    assert!(p.close().await.is_err());
    assert_eq!(svc.get(&t.c.digest()).await.unwrap(), None);
    assert_eq!(svc.get(&t.a.digest()).await.unwrap(), None);
}

pub async fn dir_closure_disconnected(svc: Arc<dyn DirectoryService>) {
    let x = file_dir(&["x"]);
    let y = file_dir(&["y"]);
    let mut p = svc.put_multiple_start();
    p.put(x.clone()).await.unwrap();
    p.put(y.clone()).await.unwrap();
    let err = p.close().await.unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    assert!(err.to_string().contains("disconnected"), "{err}");
    assert_eq!(svc.get(&x.digest()).await.unwrap(), None);
    assert_eq!(svc.get(&y.digest()).await.unwrap(), None);
    // An empty closure is refused too.
    assert!(svc.put_multiple_start().close().await.is_err());
}

pub async fn dir_closure_on_stored_child(svc: Arc<dyn DirectoryService>) {
    let t = diamond();
    let mut p = svc.put_multiple_start();
    p.put(t.c.clone()).await.unwrap();
    p.put(t.a.clone()).await.unwrap();
    p.close().await.unwrap();
    // A later closure may name `a` and `c` without sending them.
    let mut p = svc.put_multiple_start();
    p.put(t.d.clone()).await.unwrap();
    p.put(t.b.clone()).await.unwrap();
    p.put(t.root.clone()).await.unwrap();
    assert_eq!(p.close().await.unwrap(), t.root.digest());
    assert_eq!(collect(&*svc, &t.root.digest()).await.unwrap().len(), 5);
}

pub async fn dir_concurrent_putters(svc: Arc<dyn DirectoryService>) {
    let mut tasks = Vec::new();
    for i in 0..4 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let leaf = file_dir(&[&format!("leaf{i}")]);
            let root = with_children(Directory::new(), &[("sub", &leaf)]);
            let mut p = svc.put_multiple_start();
            p.put(leaf).await.unwrap();
            p.put(root.clone()).await.unwrap();
            (p.close().await.unwrap(), root)
        }));
    }
    for t in tasks {
        let (digest, root) = t.await.unwrap();
        assert_eq!(collect(&*svc, &digest).await.unwrap()[0], root);
    }
}

/// Instantiate the blob suite for a backend. `$make` is an expression
/// giving `(Arc<dyn BlobService>, guard)`; the guard lives for the test.
/// An optional first argument names the test module (default
/// `blob_conformance`), so one file can run the suite on several setups.
#[macro_export]
macro_rules! blob_suite {
    ($make:expr) => {
        blob_suite!(blob_conformance, $make);
    };
    ($module:ident, $make:expr) => {
        mod $module {
            macro_rules! t {
                ($n:ident) => {
                    #[tokio::test]
                    async fn $n() {
                        let (svc, _guard) = $make;
                        $crate::common::$n(svc).await;
                    }
                };
            }
            t!(blob_small_round_trip);
            t!(blob_empty);
            t!(blob_missing);
            t!(blob_chunk_boundaries);
            t!(blob_multi_mib);
            t!(blob_close_twice);
            t!(blob_concurrent_writers);
            t!(blob_chunk_is_has);
        }
    };
}

/// Instantiate the directory suite for a backend; like [`blob_suite`].
#[macro_export]
macro_rules! directory_suite {
    ($make:expr) => {
        directory_suite!(directory_conformance, $make);
    };
    ($module:ident, $make:expr) => {
        mod $module {
            macro_rules! t {
                ($n:ident) => {
                    #[tokio::test]
                    async fn $n() {
                        let (svc, _guard) = $make;
                        $crate::common::$n(svc).await;
                    }
                };
            }
            t!(dir_put_get);
            t!(dir_missing);
            t!(dir_put_without_child);
            t!(dir_closure_and_recursive_order);
            t!(dir_closure_wrong_order);
            t!(dir_closure_disconnected);
            t!(dir_closure_on_stored_child);
            t!(dir_concurrent_putters);
        }
    };
}
