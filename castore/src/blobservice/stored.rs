//! [`StoredChunk`]: a chunk as a store keeps it, to pass on without
//! decompressing it.

use std::io::Read;

use bytes::Bytes;

use crate::{B3Digest, Error, Result};

/// A chunk as [`super::BlobService::read_chunk_stored`] hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredChunk {
    /// The chunk's bytes.
    Plain(Bytes),
    /// One zstd frame that decodes to the chunk; not checked yet.
    Zstd(Bytes),
}

impl StoredChunk {
    /// The bytes this takes to send.
    pub fn wire_len(&self) -> usize {
        match self {
            StoredChunk::Plain(b) | StoredChunk::Zstd(b) => b.len(),
        }
    }

    /// The chunk's bytes, decoded if need be and checked against `digest`.
    /// A frame that would decode to more than `max_len` bytes fails
    /// without decoding further (a frame can claim, or expand to, far more
    /// than it is).
    pub fn into_verified(self, digest: &B3Digest, max_len: usize) -> Result<Bytes> {
        let data = match self {
            StoredChunk::Plain(b) => b,
            StoredChunk::Zstd(frame) => Bytes::from(
                decode_bounded(&frame, max_len)
                    .map_err(|e| Error::remote(format!("zstd frame of chunk {digest}"), e))?,
            ),
        };
        crate::verify_chunk(digest, &data)?;
        Ok(data)
    }
}

/// Decode one zstd frame of at most `max_len` bytes: into one allocation of
/// the size its header names, else growing up to the bound.
fn decode_bounded(frame: &[u8], max_len: usize) -> std::io::Result<Vec<u8>> {
    let too_long = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("decodes to more than {max_len} bytes"),
        )
    };
    match zstd::zstd_safe::get_frame_content_size(frame) {
        // Fails should the frame decode to more than its header says.
        Ok(Some(n)) if n <= max_len as u64 => zstd::bulk::decompress(frame, n as usize),
        Ok(Some(_)) => Err(too_long()),
        _ => {
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(frame)?
                .take(max_len as u64 + 1)
                .read_to_end(&mut out)?;
            if out.len() > max_len {
                return Err(too_long());
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_checked_and_bounded() {
        let data = vec![7u8; 100_000];
        let digest = B3Digest::of(&data);
        let frame = Bytes::from(zstd::bulk::compress(&data, 1).unwrap());
        assert!(frame.len() < 1000);
        let z = StoredChunk::Zstd(frame.clone());
        assert_eq!(z.wire_len(), frame.len());
        assert_eq!(z.clone().into_verified(&digest, 100_000).unwrap(), data);
        // Bigger than the bound: refused, header or not.
        assert!(z.into_verified(&digest, 99_999).is_err());
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        std::io::Write::write_all(&mut enc, &data).unwrap();
        let no_size = Bytes::from(enc.finish().unwrap());
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&no_size).unwrap(),
            None
        );
        assert!(
            StoredChunk::Zstd(no_size.clone())
                .into_verified(&digest, 99_999)
                .is_err()
        );
        assert_eq!(
            StoredChunk::Zstd(no_size)
                .into_verified(&digest, 100_000)
                .unwrap(),
            data
        );
        // Wrong bytes, compressed or not, fail the check.
        let other = B3Digest::of(b"other");
        assert!(matches!(
            StoredChunk::Zstd(frame).into_verified(&other, 1 << 20),
            Err(Error::Integrity { .. })
        ));
        assert!(matches!(
            StoredChunk::Plain(Bytes::from(data)).into_verified(&other, 1 << 20),
            Err(Error::Integrity { .. })
        ));
        assert!(
            StoredChunk::Zstd(Bytes::from_static(b"not zstd"))
                .into_verified(&digest, 1 << 20)
                .is_err()
        );
    }
}
