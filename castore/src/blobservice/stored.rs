//! [`StoredChunk`]: a chunk as a store keeps it, to pass on without
//! decompressing it; [`VerifiedChunk`]: a chunk checked once as it arrived,
//! with the frame it came in, to keep without compressing it again.

use std::io::Read;

use bytes::Bytes;

use crate::{B3Digest, Error, Result};

/// A chunk as [`super::BlobService::read_chunk_stored`] hands it out:
/// neither form is checked yet (whoever uses it checks it:
/// [`StoredChunk::into_verified`], [`VerifiedChunk::verify`]).
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
        VerifiedChunk::verify(*digest, self, max_len).map(VerifiedChunk::into_data)
    }

    /// The chunk's length as far as can be told without decoding: a
    /// frame's header names it (else the frame's own length). For figures.
    pub fn chunk_len_hint(&self) -> u64 {
        match self {
            StoredChunk::Plain(b) => b.len() as u64,
            StoredChunk::Zstd(frame) => match zstd::zstd_safe::get_frame_content_size(frame) {
                Ok(Some(n)) => n,
                _ => frame.len() as u64,
            },
        }
    }
}

/// A chunk checked against its digest as it arrived: its bytes, and the
/// zstd frame it came in (if it came compressed, and the frame is smaller
/// than the bytes), so that a cache keeps the frame as it is
/// ([`super::ChunkStore::insert_verified`]) rather than compress the bytes
/// again, and nobody decodes or hashes it a second time.
///
/// It is made only by checking ([`VerifiedChunk::verify`]): holding one
/// means the bytes hash to the digest and the frame decodes to the bytes.
#[derive(Debug, Clone)]
pub struct VerifiedChunk {
    digest: B3Digest,
    data: Bytes,
    /// The frame `data` was decoded from.
    frame: Option<Bytes>,
    /// Whether `data` is an allocation of its own (decoded here), not a
    /// slice of a buffer it came in.
    data_owned: bool,
    /// Whether it came plain from a holder that sends a chunk as a frame
    /// whenever compressing it made it smaller (see
    /// [`VerifiedChunk::sent_plain_by_choice`]).
    incompressible: bool,
}

impl VerifiedChunk {
    /// Decode `stored` if need be (a frame that would decode to more than
    /// `max_len` bytes fails without decoding further) and check that the
    /// bytes hash to `digest`: an integrity error naming both digests if
    /// not, an error naming the chunk if the frame does not decode.
    pub fn verify(digest: B3Digest, stored: StoredChunk, max_len: usize) -> Result<Self> {
        let (data, frame, data_owned) = match stored {
            StoredChunk::Plain(b) => (b, None, false),
            StoredChunk::Zstd(frame) => {
                let data = Bytes::from(
                    decode_bounded(&frame, max_len)
                        .map_err(|e| Error::remote(format!("zstd frame of chunk {digest}"), e))?,
                );
                // A frame no smaller than its bytes is not worth keeping.
                let frame = (frame.len() < data.len()).then_some(frame);
                (data, frame, true)
            }
        };
        crate::verify_chunk(&digest, &data)?;
        Ok(Self {
            digest,
            data,
            frame,
            data_owned,
            incompressible: false,
        })
    }

    /// Mark a chunk that came plain from a holder that would have sent it
    /// as a zstd frame had compressing it made it smaller (a storefs
    /// service or peer answering `ReadChunks` for a client that accepts
    /// frames: its stores compress every chunk that shrinks). A cache then
    /// keeps it plain without trying to compress it again, which would only
    /// fail a second time. A chunk that came as a frame is left as it is.
    pub fn sent_plain_by_choice(mut self) -> Self {
        self.incompressible = self.frame.is_none() && !self.data_owned;
        self
    }

    /// Whether its holder found it not worth compressing
    /// ([`VerifiedChunk::sent_plain_by_choice`]).
    pub fn incompressible(&self) -> bool {
        self.incompressible
    }

    /// The chunk's digest.
    pub fn digest(&self) -> &B3Digest {
        &self.digest
    }

    /// The chunk's bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The chunk's bytes, dropping the frame.
    pub fn into_data(self) -> Bytes {
        self.data
    }

    /// The bytes of each entry of a batch read with frames
    /// ([`super::BlobService::read_chunk_batch_verified`]), for a
    /// `read_chunk_batch` that serves the same read without them.
    pub fn batch_data(batch: Vec<Result<Option<Self>>>) -> Vec<Result<Option<Bytes>>> {
        batch
            .into_iter()
            .map(|r| r.map(|c| c.map(Self::into_data)))
            .collect()
    }

    /// The zstd frame the chunk came in, if it came compressed (and the
    /// frame is smaller than the bytes). It decodes to [`Self::data`].
    pub fn frame(&self) -> Option<&Bytes> {
        self.frame.as_ref()
    }

    /// The bytes held in memory: the chunk's and its frame's.
    pub fn mem_len(&self) -> usize {
        self.data.len() + self.frame.as_ref().map_or(0, Bytes::len)
    }

    /// The same chunk in allocations of its own. What a remote sends is
    /// often a slice of a whole receive buffer (megabytes, shared with its
    /// neighbours): kept as is — in a cache's fill backlog, in-flight map,
    /// a reader's memory — one chunk would pin all of it. This copies
    /// what may be such a slice once (the frame, or plain bytes), and never
    /// bytes that were decoded here.
    pub fn owned(self) -> Self {
        let data = if self.data_owned {
            self.data
        } else {
            Bytes::copy_from_slice(&self.data)
        };
        Self {
            digest: self.digest,
            data,
            frame: self.frame.map(|f| Bytes::copy_from_slice(&f)),
            data_owned: true,
            incompressible: self.incompressible,
        }
    }
}

thread_local! {
    /// This thread's zstd decoding context: made once, not once per chunk
    /// (making and freeing one took a tenth of a cold read's decoding).
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decode one zstd frame into one allocation of `capacity` bytes (failing
/// if it decodes to more), with this thread's decoding context.
pub(crate) fn decompress_sized(frame: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(frame, capacity)
    })
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
        Ok(Some(n)) if n <= max_len as u64 => decompress_sized(frame, n as usize),
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

    #[test]
    fn a_verified_chunk_keeps_its_frame_and_owns_its_bytes() {
        let data = vec![9u8; 50_000];
        let digest = B3Digest::of(&data);
        let frame = zstd::bulk::compress(&data, 1).unwrap();
        // A frame inside a bigger buffer, as a receive buffer holds it.
        let buffer = Bytes::from([b"head".as_slice(), &frame, b"tail"].concat());
        let slice = buffer.slice(4..4 + frame.len());
        let c = VerifiedChunk::verify(digest, StoredChunk::Zstd(slice), 1 << 20).unwrap();
        assert_eq!((c.digest(), &c.data()[..]), (&digest, &data[..]));
        assert_eq!(c.frame().map(|f| &f[..]), Some(&frame[..]));
        assert_eq!(c.mem_len(), data.len() + frame.len());
        let decoded = c.data().as_ptr();
        let owned = c.owned();
        // The frame is copied out of the buffer; the decoded bytes are not
        // copied again.
        assert_eq!(owned.data().as_ptr(), decoded);
        let f = owned.frame().unwrap();
        assert_eq!(&f[..], &frame[..]);
        let inside = buffer.as_ptr_range();
        assert!(!inside.contains(&f.as_ptr()));
        // Plain bytes from a buffer are copied out of it once.
        let plain = Bytes::from([b"head".as_slice(), &data].concat()).slice(4..);
        let c = VerifiedChunk::verify(digest, StoredChunk::Plain(plain.clone()), 0).unwrap();
        assert_eq!(c.frame(), None);
        let owned = c.owned();
        assert_eq!(owned.data(), &data[..]);
        assert_ne!(owned.data().as_ptr(), plain.as_ptr());
        // A frame no smaller than its bytes is not kept.
        let mut noise = vec![0u8; 4096];
        blake3::Hasher::new().finalize_xof().fill(&mut noise);
        let raw = zstd::bulk::compress(&noise, 1).unwrap();
        assert!(
            raw.len() >= noise.len(),
            "{} for {}",
            raw.len(),
            noise.len()
        );
        let c = VerifiedChunk::verify(B3Digest::of(&noise), StoredChunk::Zstd(raw.into()), 4096)
            .unwrap();
        assert_eq!((c.frame(), &c.data()[..]), (None, &noise[..]));
        // Checked against the digest it is made for.
        assert!(matches!(
            VerifiedChunk::verify(B3Digest::of(b"x"), StoredChunk::Zstd(frame.into()), 1 << 20),
            Err(Error::Integrity { .. })
        ));
    }
}
