//! The blob service suite, and helpers to write, read and check blobs.

use std::sync::Arc;

use bytes::Bytes;
use storefs_castore::{B3Digest, BlobService, ChunkMeta, ChunkerConfig, chunk_all};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::pseudo_random;

/// Write `data` in pieces of `piece` bytes and close.
pub async fn write_blob(svc: &dyn BlobService, data: &[u8], piece: usize) -> B3Digest {
    let mut w = svc.open_write().await;
    for p in data.chunks(piece.max(1)) {
        w.write_all(p).await.unwrap();
    }
    w.close().await.unwrap()
}

/// Write `data` in uneven pieces (300,001 bytes) and close.
pub async fn put_blob(svc: &dyn BlobService, data: &[u8]) -> B3Digest {
    write_blob(svc, data, 300_001).await
}

/// Read a whole blob with `open_read`; `None` if it is absent.
pub async fn read_blob(svc: &dyn BlobService, digest: &B3Digest) -> Option<Vec<u8>> {
    let mut r = svc.open_read(digest).await.unwrap()?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    Some(out)
}

/// Read a whole blob with `open_read`, every failure (and absence) an
/// error.
pub async fn try_read_blob(svc: &dyn BlobService, digest: &B3Digest) -> std::io::Result<Vec<u8>> {
    let mut r = svc
        .open_read(digest)
        .await
        .map_err(std::io::Error::from)?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such blob"))?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
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

/// The blob `Hello World!` has its interop digest and reads back.
pub async fn blob_small_round_trip(svc: Arc<dyn BlobService>) {
    let d = write_blob(&*svc, b"Hello World!", 5).await;
    assert_eq!(
        d.to_hex(),
        "5ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c"
    );
    check_blob(&*svc, &d, b"Hello World!").await;
}

/// The empty blob: its digest, no chunk list, an empty chunk.
pub async fn blob_empty(svc: Arc<dyn BlobService>) {
    let d = write_blob(&*svc, b"", 1).await;
    assert_eq!(d, B3Digest::of(b""));
    check_blob(&*svc, &d, b"").await;
    assert_eq!(svc.read_chunk(&d).await.unwrap(), Some(Bytes::new()));
}

/// A blob never written is absent from every method.
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
    let data = pseudo_random(200 * 1024, 11);
    let first = chunk_all(ChunkerConfig::default(), &data).unwrap()[0].len();
    for len in [first - 1, first, first + 1, first + 20_000] {
        let d = write_blob(&*svc, &data[..len], 4096).await;
        check_blob(&*svc, &d, &data[..len]).await;
    }
}

/// A 5 MiB blob is cut into many chunks, and the same bytes written in other pieces give the same blob.
pub async fn blob_multi_mib(svc: Arc<dyn BlobService>) {
    let data = pseudo_random(5 * 1024 * 1024 + 333, 42);
    let d = write_blob(&*svc, &data, 100_003).await;
    let list = svc.chunks(&d).await.unwrap().unwrap();
    assert!(list.len() > 20, "only {} chunks", list.len());
    check_blob(&*svc, &d, &data).await;
    // The same bytes written in other pieces give the same blob.
    let again = write_blob(&*svc, &data, 1 << 20).await;
    assert_eq!(again, d);
    assert_eq!(svc.chunks(&again).await.unwrap().unwrap(), list);
}

/// Closing a writer twice gives the same digest; writing after close fails.
pub async fn blob_close_twice(svc: Arc<dyn BlobService>) {
    let mut w = svc.open_write().await;
    w.write_all(b"twice").await.unwrap();
    let a = w.close().await.unwrap();
    let b = w.close().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a, B3Digest::of(b"twice"));
    assert!(w.write_all(b"more").await.is_err(), "write after close");
}

/// Two writers at once each get their own blob.
pub async fn blob_concurrent_writers(svc: Arc<dyn BlobService>) {
    let a = pseudo_random(3 * 1024 * 1024, 1);
    let b = pseudo_random(3 * 1024 * 1024, 2);
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
    let data = pseudo_random(1024 * 1024, 9);
    let d = write_blob(&*svc, &data, 50_000).await;
    let list = svc.chunks(&d).await.unwrap().unwrap();
    for meta in &list {
        assert!(svc.has(&meta.digest).await.unwrap());
    }
}
