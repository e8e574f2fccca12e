//! The byte level of the reader: an `AsyncBufRead` consumed exactly as far
//! as the NAR goes, hashing and counting every byte it takes.

use sha2::{Digest, Sha256};
use storefs_castore::BlobWriter;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};

use super::error::NarReadError;
use crate::nar::wire::{self, MAX_TOKEN_LEN};

/// A token read from the stream: at most [`MAX_TOKEN_LEN`] bytes, kept on
/// the stack.
pub(super) struct Token {
    buf: [u8; MAX_TOKEN_LEN],
    len: usize,
}

impl Token {
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The NAR's bytes, consumed from an `AsyncBufRead`. Bytes beyond the NAR
/// stay in the caller's buffer.
pub(super) struct Source<'r, R: ?Sized> {
    inner: &'r mut R,
    /// Bytes consumed so far: the offset of the next byte. Errors carry it.
    pub(super) offset: u64,
    /// sha256 of the bytes consumed so far: the NAR hash at the end.
    hasher: Sha256,
}

impl<'r, R> Source<'r, R>
where
    R: AsyncBufRead + Unpin + ?Sized,
{
    pub(super) fn new(inner: &'r mut R) -> Self {
        Self {
            inner,
            offset: 0,
            hasher: Sha256::new(),
        }
    }

    /// `(bytes consumed, their sha256)`.
    pub(super) fn finish(self) -> (u64, [u8; 32]) {
        (self.offset, self.hasher.finalize().into())
    }

    /// Whether the stream has ended (nothing buffered, nothing to come).
    pub(super) async fn at_eof(&mut self) -> Result<bool, NarReadError> {
        let offset = self.offset;
        let buf = self
            .inner
            .fill_buf()
            .await
            .map_err(|source| NarReadError::Io { offset, source })?;
        Ok(buf.is_empty())
    }

    /// Fill `out` completely, or fail with `Truncated`.
    async fn read_exact(&mut self, out: &mut [u8]) -> Result<(), NarReadError> {
        let mut filled = 0;
        while filled < out.len() {
            let offset = self.offset;
            let buf = self
                .inner
                .fill_buf()
                .await
                .map_err(|source| NarReadError::Io { offset, source })?;
            if buf.is_empty() {
                return Err(NarReadError::Truncated { offset });
            }
            let n = buf.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&buf[..n]);
            self.hasher.update(&buf[..n]);
            self.inner.consume(n);
            self.offset += n as u64;
            filled += n;
        }
        Ok(())
    }

    pub(super) async fn read_u64(&mut self) -> Result<u64, NarReadError> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b).await?;
        Ok(u64::from_le_bytes(b))
    }

    /// Read and check the padding after a string of `len` bytes.
    pub(super) async fn read_padding(&mut self, len: u64) -> Result<(), NarReadError> {
        // padding_len is < 8, so the cast cannot truncate.
        let pad = wire::padding_len(len) as usize;
        let mut b = [0u8; 8];
        let start = self.offset;
        self.read_exact(&mut b[..pad]).await?;
        match b[..pad].iter().position(|&x| x != 0) {
            Some(i) => Err(NarReadError::NonZeroPadding {
                offset: start + i as u64,
            }),
            None => Ok(()),
        }
    }

    /// Read a string of at most `max` bytes. A longer length is returned
    /// as `Err(len)` without reading the string (the caller reports it).
    pub(super) async fn read_bytes(
        &mut self,
        max: usize,
    ) -> Result<Result<Vec<u8>, u64>, NarReadError> {
        let len = self.read_u64().await?;
        if len > max as u64 {
            return Ok(Err(len));
        }
        // len <= max, a usize, so the cast cannot truncate.
        let mut v = vec![0u8; len as usize];
        self.read_exact(&mut v).await?;
        self.read_padding(len).await?;
        Ok(Ok(v))
    }

    /// Read a token (a string of at most [`MAX_TOKEN_LEN`] bytes). Returns
    /// the offset it started at. A longer string is an `UnexpectedToken`.
    pub(super) async fn token(
        &mut self,
        expected: &'static str,
    ) -> Result<(u64, Token), NarReadError> {
        let start = self.offset;
        let len = self.read_u64().await?;
        if len > MAX_TOKEN_LEN as u64 {
            return Err(NarReadError::UnexpectedToken {
                offset: start,
                expected,
                found: format!("a string of {len} bytes"),
            });
        }
        let mut t = Token {
            buf: [0; MAX_TOKEN_LEN],
            // len <= MAX_TOKEN_LEN, so the cast cannot truncate.
            len: len as usize,
        };
        self.read_exact(&mut t.buf[..t.len]).await?;
        self.read_padding(len).await?;
        Ok((start, t))
    }

    /// Read a token that must be `tok`.
    pub(super) async fn expect(
        &mut self,
        tok: &'static [u8],
        expected: &'static str,
    ) -> Result<(), NarReadError> {
        let (offset, t) = self.token(expected).await?;
        if t.as_bytes() == tok {
            Ok(())
        } else {
            Err(unexpected(offset, expected, &t))
        }
    }

    /// Stream a file's contents (`len` bytes and their padding) into
    /// `writer`, one buffer-full at a time.
    pub(super) async fn copy_contents(
        &mut self,
        len: u64,
        writer: &mut dyn BlobWriter,
    ) -> Result<(), NarReadError> {
        let mut left = len;
        while left > 0 {
            let offset = self.offset;
            let buf = self
                .inner
                .fill_buf()
                .await
                .map_err(|source| NarReadError::Io { offset, source })?;
            if buf.is_empty() {
                return Err(NarReadError::Truncated { offset });
            }
            // The cast is bounded by buf.len(), a usize.
            let n = (buf.len() as u64).min(left) as usize;
            writer
                .write_all(&buf[..n])
                .await
                .map_err(|e| NarReadError::Blob {
                    offset,
                    source: storefs_castore::Error::Io(e),
                })?;
            self.hasher.update(&buf[..n]);
            self.inner.consume(n);
            self.offset += n as u64;
            left -= n as u64;
        }
        self.read_padding(len).await
    }
}

/// The error for token `t` at `offset` where `expected` was wanted.
pub(super) fn unexpected(offset: u64, expected: &'static str, t: &Token) -> NarReadError {
    NarReadError::UnexpectedToken {
        offset,
        expected,
        found: format!("{:?}", String::from_utf8_lossy(t.as_bytes())),
    }
}
