//! Entry points for the fuzz targets in `fuzz/` (each target is a one-line
//! call to a function here). Not part of the API: hidden from the docs.
//!
//! These functions assert, and so panic, on purpose: a panic is how a
//! fuzzer learns it found a bug.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::blobservice::{BlobReader, BlobService, BlobWriter, ChunkMeta};
use crate::{
    B3Digest, CachedBlobService, ChunkerConfig, Directory, Error, MemoryBlobService, proto,
};

/// Decode `data` as a protobuf `Directory` and check the model's promises:
///
/// - input that prost decodes and re-encodes byte for byte (fields in
///   number order, no default values, no unknown fields: canonical at the
///   protobuf level) and that passes validation must come back unchanged
///   from `Directory::decode` then `encode` (decode→encode == input), so its
///   digest is BLAKE3 of the input;
/// - any valid input, canonical or not, encodes to bytes that decode to the
///   same directory and re-encode identically.
///
/// Invalid input must simply be refused (an `Err`), never panic.
pub fn directory_from_proto(data: &[u8]) {
    let Ok(msg) = proto::Directory::decode(data) else {
        assert!(Directory::decode(data).is_err());
        return;
    };
    let proto_canonical = msg.encode_to_vec() == data;
    let Ok(dir) = Directory::try_from(msg) else {
        assert!(Directory::decode(data).is_err());
        return;
    };
    let encoded = dir.encode();
    if proto_canonical {
        assert_eq!(
            encoded.as_ref(),
            data,
            "canonical input changed on decode→encode"
        );
        assert_eq!(dir.digest(), crate::B3Digest::of(data));
    }
    match Directory::decode(&encoded) {
        Ok(again) => {
            assert_eq!(again, dir, "re-decoded directory differs");
            assert_eq!(again.encode(), encoded, "encoding is not stable");
        }
        Err(e) => panic!("the canonical encoding of a valid directory was refused: {e}"),
    }
}

/// What [`Faulty`] does to reads right now.
const FAULT_NONE: u8 = 0;
/// Every read fails.
const FAULT_FAIL: u8 = 1;
/// Every chunk read comes back with one byte flipped.
const FAULT_CORRUPT: u8 = 2;

/// A far blob service that fails or corrupts reads on command.
struct Faulty {
    inner: MemoryBlobService,
    mode: Arc<AtomicU8>,
}

impl Faulty {
    fn check(&self) -> crate::Result<()> {
        if self.mode.load(Ordering::SeqCst) == FAULT_FAIL {
            return Err(Error::remote_msg("injected failure"));
        }
        Ok(())
    }
}

#[async_trait]
impl BlobService for Faulty {
    async fn has(&self, digest: &B3Digest) -> crate::Result<bool> {
        self.check()?;
        self.inner.has(digest).await
    }
    async fn chunks(&self, digest: &B3Digest) -> crate::Result<Option<Vec<ChunkMeta>>> {
        self.check()?;
        self.inner.chunks(digest).await
    }
    async fn read_chunk(&self, digest: &B3Digest) -> crate::Result<Option<Bytes>> {
        self.check()?;
        let data = self.inner.read_chunk(digest).await?;
        if self.mode.load(Ordering::SeqCst) == FAULT_CORRUPT {
            return Ok(data.map(|d| {
                let mut v = d.to_vec();
                if let Some(b) = v.last_mut() {
                    *b ^= 0x80;
                } else {
                    v.push(0);
                }
                Bytes::from(v)
            }));
        }
        Ok(data)
    }
    async fn open_read(&self, digest: &B3Digest) -> crate::Result<Option<BlobReader>> {
        self.check()?;
        self.inner.open_read(digest).await
    }
    async fn open_write(&self) -> Box<dyn BlobWriter> {
        self.inner.open_write().await
    }
}

/// Model-based check of the blob services: `data` is read as a list of
/// operations (write a blob, read one back whole or chunk by chunk through
/// a cache, switch the far side between healthy, failing and corrupting),
/// run against a memory far store behind a [`CachedBlobService`] with a
/// memory near store, and compared with a `BTreeMap` of what was written.
///
/// The promise checked: a read returns exactly the bytes written or an
/// error, never other bytes, whatever far does; and once far is healthy,
/// everything written is readable.
pub fn blob_service_model(data: &[u8]) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    rt.block_on(blob_model(data));
}

async fn blob_model(data: &[u8]) {
    // Small chunks so that short inputs make multi-chunk blobs.
    let config = ChunkerConfig {
        min: 64,
        avg: 256,
        max: 1024,
    };
    let Ok(far_inner) = MemoryBlobService::with_chunker(config) else {
        return;
    };
    let mode = Arc::new(AtomicU8::new(FAULT_NONE));
    let far = Arc::new(Faulty {
        inner: far_inner.clone(),
        mode: mode.clone(),
    });
    let near = Arc::new(MemoryBlobService::new());
    let cache = CachedBlobService::new(near, far);
    let mut model: BTreeMap<B3Digest, Vec<u8>> = BTreeMap::new();
    let ops = data.chunks(3);
    let mut seed = 0u64;
    for op in ops {
        let (kind, a, b) = (op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0));
        let nth = |n: u8| {
            model
                .keys()
                .nth(usize::from(n) % model.len().max(1))
                .copied()
        };
        match kind % 4 {
            0 => {
                // Write to far directly: a blob of up to ~16 KiB of noise,
                // sometimes repeating, so chunks are shared.
                let len = usize::from(a) * 64 + usize::from(b);
                seed = seed.wrapping_add(u64::from(b % 4));
                let blob: Vec<u8> = (0..len)
                    .map(|i| (((i as u64).wrapping_mul(0x9e37_79b9) ^ seed) >> 7) as u8)
                    .collect();
                let mut w = far_inner.open_write().await;
                let written = w.write_all(&blob).await;
                let digest = w.close().await;
                match (written, digest) {
                    (Ok(()), Ok(d)) => {
                        assert_eq!(d, B3Digest::of(&blob), "writer returned a wrong digest");
                        model.insert(d, blob);
                    }
                    (w, d) => panic!("memory write failed: {w:?} {d:?}"),
                }
            }
            1 => {
                let Some(d) = nth(a) else { continue };
                if let Ok(Some(mut r)) = cache.open_read(&d).await {
                    let mut out = Vec::new();
                    if r.read_to_end(&mut out).await.is_ok() {
                        assert_eq!(Some(&out), model.get(&d), "open_read returned other bytes");
                    }
                }
            }
            2 => {
                let Some(d) = nth(a) else { continue };
                if let Ok(Some(list)) = cache.chunks(&d).await {
                    let want = &model[&d];
                    let mut offset = 0usize;
                    for meta in &list {
                        let size = usize::try_from(meta.size).unwrap_or(usize::MAX);
                        if let Ok(Some(c)) = cache.read_chunk(&meta.digest).await {
                            assert_eq!(B3Digest::of(&c), meta.digest, "unverified chunk");
                            assert_eq!(Some(c.as_ref()), want.get(offset..offset + size));
                        }
                        offset = offset.saturating_add(size);
                    }
                    if list.is_empty()
                        && let Ok(Some(c)) = cache.read_chunk(&d).await
                    {
                        assert_eq!(c.as_ref(), &want[..], "single-chunk blob differs");
                    }
                }
            }
            _ => mode.store(a % 3, Ordering::SeqCst),
        }
    }
    // Healthy again: everything must be readable, and right.
    mode.store(FAULT_NONE, Ordering::SeqCst);
    for (d, want) in &model {
        let read = match cache.open_read(d).await {
            Ok(Some(mut r)) => {
                let mut out = Vec::new();
                r.read_to_end(&mut out).await.map(|_| out)
            }
            other => panic!(
                "blob {d} not readable from a healthy far: {:?}",
                other.err()
            ),
        };
        match read {
            Ok(out) => assert_eq!(&out, want, "blob {d} differs"),
            Err(e) => panic!("blob {d} failed to read from a healthy far: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_and_refuses_invalid_without_panicking() {
        directory_from_proto(&Directory::new().encode());
        directory_from_proto(b"");
        directory_from_proto(b"\xff\xff\xff");
        // A file entry with a 3-byte digest: decodes as protobuf, fails
        // validation.
        let msg = proto::Directory {
            files: vec![proto::FileEntry {
                name: "a".into(),
                digest: vec![1, 2, 3].into(),
                size: 1,
                executable: false,
            }],
            ..Default::default()
        };
        directory_from_proto(&msg.encode_to_vec());
    }

    #[test]
    fn blob_model_runs_writes_faults_and_reads() {
        // write, corrupt, read, fail, read chunks, heal, write, read.
        blob_service_model(&[
            0, 40, 3, 3, 2, 0, 1, 0, 0, 3, 1, 0, 2, 0, 0, 3, 0, 0, 0, 10, 1, 1, 1, 0,
        ]);
        blob_service_model(&[]);
        blob_service_model(&[0]);
    }
}
