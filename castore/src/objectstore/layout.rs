//! Where each record lives in a bucket, and how its bytes are laid out.
//! The layout is snix's (`docs/object-store.md`), so that a bucket written
//! by one is readable by the other:
//!
//! ```text
//! PREFIX/chunks/b3/<4 hex>/<64 hex>     zstd of the chunk's bytes
//! PREFIX/blobs/b3/<4 hex>/<64 hex>      StatBlobResponse (chunk list), protobuf
//! PREFIX/dirs/b3/<4 hex>/<64 hex>       zstd of u32-BE length-prefixed Directory
//!                                       messages: the closure, root first
//! PREFIX/dirs-in/b3/<4 hex>/<64 hex>    (storefs only) the 32-byte digest of a
//!                                       closure object holding this directory
//! ```
//!
//! Everything read is checked here before it is handed on: chunks against
//! their digest, chunk lists for shape, closures for digests, canonical
//! encoding and order.

use std::collections::HashSet;
use std::io::Read;

use bytes::{Buf, Bytes};
use object_store::path::Path;
use prost::Message;

use super::error::corrupt;
use crate::blobservice::ChunkMeta;
use crate::{B3_LEN, B3Digest, Directory, Result};

/// The most bytes one chunk object may decompress to. A chunk cut here
/// is at most 256 KiB; snix's are at most 512 KiB; an unchunked blob
/// written by another tool may be larger, but not without bound.
pub const MAX_CHUNK_BYTES: u64 = 256 << 20;

/// The most bytes one closure object may decompress to.
pub const MAX_CLOSURE_BYTES: u64 = 256 << 20;

/// The most bytes one directory message in a closure may have (snix's
/// frame limit is larger; no valid directory comes near this).
pub const MAX_DIRECTORY_BYTES: u32 = 64 << 20;

/// zstd level for chunks and closures: fast; any level reads back.
pub const ZSTD_LEVEL: i32 = 1;

/// `PREFIX/<kind>/b3/<first 2 bytes in hex>/<digest in hex>`.
fn sharded(prefix: &Path, kind: &str, digest: &B3Digest) -> Path {
    let hex = digest.to_hex();
    prefix
        .child(kind)
        .child("b3")
        .child(&hex[..4])
        .child(hex.as_str())
}

/// The key of a chunk (or of a blob stored as one chunk).
pub fn chunk_key(prefix: &Path, digest: &B3Digest) -> Path {
    sharded(prefix, "chunks", digest)
}

/// The key of a blob's chunk list.
pub fn blob_key(prefix: &Path, digest: &B3Digest) -> Path {
    sharded(prefix, "blobs", digest)
}

/// The key of the closure object whose root is `digest`.
pub fn closure_key(prefix: &Path, digest: &B3Digest) -> Path {
    sharded(prefix, "dirs", digest)
}

/// The key of the index entry saying which closure holds a non-root
/// directory (storefs's own; snix reads only closures by their root).
pub fn directory_index_key(prefix: &Path, digest: &B3Digest) -> Path {
    sharded(prefix, "dirs-in", digest)
}

/// `snix.castore.v1.StatBlobResponse`, the chunk-list object's encoding
/// (the schema is in `proto/snix/castore/v1/rpc_blobstore.proto`).
#[derive(Clone, PartialEq, Message)]
struct StatBlobResponse {
    #[prost(message, repeated, tag = "2")]
    chunks: Vec<ChunkMetaMsg>,
    #[prost(bytes = "bytes", tag = "3")]
    bao: Bytes,
}

/// `StatBlobResponse.ChunkMeta`.
#[derive(Clone, PartialEq, Message)]
struct ChunkMetaMsg {
    #[prost(bytes = "bytes", tag = "1")]
    digest: Bytes,
    #[prost(uint64, tag = "2")]
    size: u64,
}

/// Compress a chunk for its object. Blocking (CPU).
pub fn encode_chunk(data: &[u8]) -> Result<Bytes> {
    zstd::bulk::compress(data, ZSTD_LEVEL)
        .map(Bytes::from)
        .map_err(crate::Error::Io)
}

/// Decompress and check a chunk object read from `key`. Blocking (CPU).
pub fn decode_chunk(key: &Path, digest: &B3Digest, object: &[u8]) -> Result<Bytes> {
    let data = decompress(key, object, MAX_CHUNK_BYTES)?;
    let actual = B3Digest::of(&data);
    if &actual != digest {
        return Err(corrupt(
            key,
            &format!("its content has digest {actual}, not {digest}"),
        ));
    }
    Ok(Bytes::from(data))
}

/// zstd-decompress `object`, refusing more than `limit` bytes.
fn decompress(key: &Path, object: &[u8], limit: u64) -> Result<Vec<u8>> {
    let decoder = zstd::stream::read::Decoder::new(object)
        .map_err(|e| corrupt(key, &format!("not zstd: {e}")))?;
    let mut out = Vec::new();
    decoder
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(key, &format!("not zstd: {e}")))?;
    if out.len() as u64 > limit {
        return Err(corrupt(
            key,
            &format!("decompresses to more than {limit} bytes"),
        ));
    }
    Ok(out)
}

/// Encode a chunk list (two or more chunks) for its object.
pub fn encode_chunk_list(chunks: &[ChunkMeta]) -> Bytes {
    StatBlobResponse {
        chunks: chunks
            .iter()
            .map(|c| ChunkMetaMsg {
                digest: c.digest.to_bytes(),
                size: c.size,
            })
            .collect(),
        bao: Bytes::new(),
    }
    .encode_to_vec()
    .into()
}

/// Decode and check the chunk-list object of `blob` read from `key`. A
/// list of one chunk (snix writes those) must name the blob itself, and
/// comes back empty, the trait's form for "read it whole".
pub fn decode_chunk_list(key: &Path, blob: &B3Digest, object: &[u8]) -> Result<Vec<ChunkMeta>> {
    let msg = StatBlobResponse::decode(object)
        .map_err(|e| corrupt(key, &format!("not a StatBlobResponse: {e}")))?;
    let mut total: u64 = 0;
    let mut out = Vec::with_capacity(msg.chunks.len());
    for (i, c) in msg.chunks.iter().enumerate() {
        let digest = B3Digest::try_from(&c.digest).map_err(|_| {
            corrupt(
                key,
                &format!("chunk {i} has a digest of {} bytes", c.digest.len()),
            )
        })?;
        if c.size == 0 || c.size > MAX_CHUNK_BYTES {
            return Err(corrupt(key, &format!("chunk {i} has size {}", c.size)));
        }
        total = total
            .checked_add(c.size)
            .ok_or_else(|| corrupt(key, "chunk sizes overflow"))?;
        out.push(ChunkMeta {
            digest,
            size: c.size,
        });
    }
    match out.as_slice() {
        [] if blob != &B3Digest::of(b"") => Err(corrupt(key, "empty chunk list")),
        [only] if &only.digest != blob => Err(corrupt(
            key,
            &format!("its one chunk {} is not the blob itself", only.digest),
        )),
        [] | [_] => Ok(Vec::new()),
        _ => Ok(out),
    }
}

/// Encode a closure, root first, for its object. Blocking (CPU).
pub fn encode_closure(dirs: &[Directory]) -> Result<Bytes> {
    let mut raw = Vec::new();
    for d in dirs {
        let bytes = d.encode();
        let len = u32::try_from(bytes.len()).map_err(|_| {
            crate::Error::InvalidRequest(format!(
                "directory {} is {} bytes, too large for a closure object",
                d.digest(),
                bytes.len()
            ))
        })?;
        raw.extend_from_slice(&len.to_be_bytes());
        raw.extend_from_slice(&bytes);
    }
    zstd::bulk::compress(&raw, ZSTD_LEVEL)
        .map(Bytes::from)
        .map_err(crate::Error::Io)
}

/// Decode and check the closure object of `root` read from `key`: each
/// directory hashes to a digest the root or an earlier one names, is
/// valid and canonical, and comes once; every named child is present.
/// Returns the closure root first. Blocking (CPU).
pub fn decode_closure(key: &Path, root: &B3Digest, object: &[u8]) -> Result<Vec<Directory>> {
    let raw = decompress(key, object, MAX_CLOSURE_BYTES)?;
    let mut buf = raw.as_slice();
    let mut expected: HashSet<B3Digest> = HashSet::from([*root]);
    let mut received: HashSet<B3Digest> = HashSet::new();
    let mut out = Vec::new();
    while buf.has_remaining() {
        let at = out.len();
        if buf.remaining() < 4 {
            return Err(corrupt(
                key,
                &format!("truncated length of directory #{at}"),
            ));
        }
        let len = buf.get_u32();
        if len > MAX_DIRECTORY_BYTES || len as usize > buf.remaining() {
            return Err(corrupt(
                key,
                &format!(
                    "directory #{at} claims {len} bytes; {} remain",
                    buf.remaining()
                ),
            ));
        }
        let bytes = &buf[..len as usize];
        let digest = B3Digest::of(bytes);
        if !expected.remove(&digest) {
            let why = if received.contains(&digest) {
                "a duplicate"
            } else {
                "named by no directory before it"
            };
            return Err(corrupt(
                key,
                &format!("directory #{at} ({digest}) is {why}"),
            ));
        }
        let dir = Directory::decode(bytes)
            .map_err(|e| corrupt(key, &format!("directory #{at} ({digest}) is invalid: {e}")))?;
        if dir.digest() != digest {
            return Err(corrupt(
                key,
                &format!("directory #{at} ({digest}) is not in canonical form"),
            ));
        }
        received.insert(digest);
        for (_, child) in dir.child_directories() {
            if !received.contains(child) {
                expected.insert(*child);
            }
        }
        buf.advance(len as usize);
        out.push(dir);
    }
    if out.is_empty() {
        return Err(corrupt(key, "holds no directory"));
    }
    if let Some(missing) = expected.iter().next() {
        return Err(corrupt(
            key,
            &format!("lacks directory {missing} ({} missing)", expected.len()),
        ));
    }
    Ok(out)
}

/// The sub-closure of `digest` within `closure` (root first, breadth
/// first, each once), `None` if `closure` does not hold it.
pub fn sub_closure(closure: &[Directory], digest: &B3Digest) -> Option<Vec<Directory>> {
    let by_digest: std::collections::HashMap<B3Digest, &Directory> =
        closure.iter().map(|d| (d.digest(), d)).collect();
    let first = *by_digest.get(digest)?;
    let mut seen = HashSet::from([*digest]);
    let mut queue = std::collections::VecDeque::from([first]);
    let mut out = Vec::new();
    while let Some(dir) = queue.pop_front() {
        for (_, child) in dir.child_directories() {
            if seen.insert(*child) {
                queue.push_back(by_digest.get(child)?);
            }
        }
        out.push(dir.clone());
    }
    Some(out)
}

/// Decode an index entry (`dirs-in/…`): the digest of a closure root.
pub fn decode_index_entry(key: &Path, object: &[u8]) -> Result<B3Digest> {
    B3Digest::try_from(object).map_err(|_| {
        corrupt(
            key,
            &format!("holds {} bytes, not a {B3_LEN}-byte digest", object.len()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Node, PathComponent};

    fn prefix() -> Path {
        Path::from("pre/fix")
    }

    #[test]
    fn keys_follow_the_snix_layout() {
        let d = B3Digest::of(b"Hello World!");
        assert_eq!(
            chunk_key(&prefix(), &d).as_ref(),
            "pre/fix/chunks/b3/5ca7/5ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c"
        );
        assert!(
            blob_key(&Path::default(), &d)
                .as_ref()
                .starts_with("blobs/b3/5ca7/5ca7")
        );
        assert!(
            closure_key(&prefix(), &d)
                .as_ref()
                .starts_with("pre/fix/dirs/b3/5ca7/")
        );
    }

    #[test]
    fn chunks_round_trip_and_corruption_names_the_key() {
        let data = b"some chunk bytes".repeat(100);
        let d = B3Digest::of(&data);
        let key = chunk_key(&prefix(), &d);
        let obj = encode_chunk(&data).unwrap();
        assert_eq!(decode_chunk(&key, &d, &obj).unwrap().as_ref(), &data[..]);
        let other = encode_chunk(b"other").unwrap();
        let err = decode_chunk(&key, &d, &other).unwrap_err().to_string();
        assert!(err.contains(key.as_ref()), "{err}");
        let err = decode_chunk(&key, &d, b"garbage").unwrap_err().to_string();
        assert!(err.contains(key.as_ref()) && err.contains("zstd"), "{err}");
    }

    #[test]
    fn chunk_lists_are_checked() {
        let a = ChunkMeta {
            digest: B3Digest::of(b"a"),
            size: 1,
        };
        let b = ChunkMeta {
            digest: B3Digest::of(b"b"),
            size: 1,
        };
        let blob = B3Digest::of(b"ab");
        let key = blob_key(&prefix(), &blob);
        let obj = encode_chunk_list(&[a, b]);
        assert_eq!(decode_chunk_list(&key, &blob, &obj).unwrap(), vec![a, b]);
        // One chunk: must be the blob itself, and comes back empty.
        let one = encode_chunk_list(&[ChunkMeta {
            digest: blob,
            size: 2,
        }]);
        assert_eq!(decode_chunk_list(&key, &blob, &one).unwrap(), vec![]);
        assert!(decode_chunk_list(&key, &blob, &encode_chunk_list(&[a])).is_err());
        assert!(decode_chunk_list(&key, &blob, &encode_chunk_list(&[])).is_err());
        assert!(decode_chunk_list(&key, &blob, b"\xff\xff").is_err());
        let zero = encode_chunk_list(&[a, ChunkMeta { size: 0, ..b }]);
        assert!(decode_chunk_list(&key, &blob, &zero).is_err());
    }

    fn dir_with(children: &[(&str, &Directory)]) -> Directory {
        let mut d = Directory::new();
        for (n, c) in children {
            d.add(
                PathComponent::try_from(*n).unwrap(),
                Node::Directory {
                    digest: c.digest(),
                    size: c.size(),
                },
            )
            .unwrap();
        }
        d
    }

    #[test]
    fn closures_round_trip_and_bad_order_is_refused() {
        let leaf = Directory::new();
        let mid = dir_with(&[("leaf", &leaf)]);
        let root = dir_with(&[("mid", &mid), ("z", &leaf)]);
        let key = closure_key(&prefix(), &root.digest());
        let good = vec![root.clone(), mid.clone(), leaf.clone()];
        let obj = encode_closure(&good).unwrap();
        assert_eq!(decode_closure(&key, &root.digest(), &obj).unwrap(), good);
        assert_eq!(
            sub_closure(&good, &mid.digest()).unwrap(),
            vec![mid.clone(), leaf.clone()]
        );
        for bad in [
            vec![mid.clone(), root.clone(), leaf.clone()],
            vec![root.clone(), leaf.clone(), mid.clone(), leaf.clone()],
            vec![root.clone(), mid.clone()],
        ] {
            let obj = encode_closure(&bad).unwrap();
            let err = decode_closure(&key, &root.digest(), &obj)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key.as_ref()), "{err}");
        }
        // A truncated frame.
        let raw = [0u8, 0, 0, 9, 1, 2];
        let obj = zstd::bulk::compress(&raw, 1).unwrap();
        assert!(decode_closure(&key, &root.digest(), &obj).is_err());
    }
}
