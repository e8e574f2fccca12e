//! The Nix daemon protocol's wire primitives, with no sockets and no state.
//!
//! # Grammar (docs/daemon-protocol.md)
//! ```text
//! u64     = 8 bytes little-endian            ; ints, bools and enums alike
//! bool    = u64                              ; 0 false, anything else true
//! bytes   = u64 len, len bytes, zero padding to a multiple of 8
//! list<T> = u64 count, count × T             ; sets are lists written sorted
//! map<K,V>= u64 count, count × (K, V)
//! framed  = { u64 n (n > 0), n raw bytes }*, u64 0
//! ```
//!
//! # Limits
//! Every length or count read from a peer is checked against a bound from
//! [`limits`] before anything is allocated for it, and a list of strings
//! also has a budget for its total size, so one request can make us hold at
//! most [`limits::MAX_LIST_BYTES`] (plus a string) however it is built.
//! Padding must be zero; a string must be UTF-8 where a string is expected.
//!
//! Readers are `async` functions over any [`AsyncRead`]; writers are plain
//! functions that append to a `Vec<u8>`, which the connection sends in one
//! write per reply. [`FramedReader`] and [`FramedWriter`] carry framed
//! sub-streams.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Bounds on what a peer can make us read or allocate.
pub mod limits {
    /// Longest store path string (a full path: store directory, 33
    /// characters of hash and dash, a name of up to 211).
    pub const MAX_PATH_LEN: u64 = 4096;
    /// Longest other string: option names and values, signatures, content
    /// addresses, hashes, log and error messages, realisation JSON.
    pub const MAX_STRING_LEN: u64 = 64 * 1024;
    /// Most elements in one list, set or map.
    pub const MAX_LIST_COUNT: u64 = 1 << 20;
    /// Most bytes held for one list or map of strings, all elements together.
    pub const MAX_LIST_BYTES: u64 = 64 << 20;
    /// Most entries in SetOptions' overrides map.
    pub const MAX_OPTIONS: u64 = 4096;
    /// Most signatures on one path.
    pub const MAX_SIGNATURES: u64 = 1024;
    /// Most entries one AddMultipleToStore may carry.
    pub const MAX_ADD_MULTIPLE: u64 = 1 << 20;
    /// Size of the frames [`super::FramedWriter`] emits (Nix's FramedSink
    /// buffer is 32 KiB too).
    pub const FRAME_LEN: usize = 32 * 1024;
    /// How much one STDERR_READ asks a client for (Nix's daemon asks 64 KiB).
    pub const STDERR_READ_LEN: u64 = 64 * 1024;
    /// Most elements preallocated for a list before they arrive; a larger
    /// list grows as its elements are actually read.
    pub const MAX_PREALLOC: usize = 1024;
    /// Concurrent daemon connections served by default.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
}

/// Why a read of a wire value failed. Every variant but [`WireError::Io`]
/// means the peer sent something we refuse; all of them end the
/// connection, since the stream can no longer be trusted to be in sync.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The stream failed or ended early.
    #[error("reading {what}")]
    Io {
        /// What was being read.
        what: &'static str,
        /// The I/O error (`UnexpectedEof` for a truncated stream).
        source: io::Error,
    },
    /// A length prefix above its bound.
    #[error("{what}: length {len} exceeds the limit of {max}")]
    TooLong {
        /// What was being read.
        what: &'static str,
        /// The length the peer announced.
        len: u64,
        /// The bound.
        max: u64,
    },
    /// A count above its bound, or a list whose strings together exceed
    /// [`limits::MAX_LIST_BYTES`].
    #[error("{what}: {count} elements exceed the limit of {max}")]
    TooMany {
        /// What was being read.
        what: &'static str,
        /// The count the peer announced (or the bytes, for a budget).
        count: u64,
        /// The bound.
        max: u64,
    },
    /// Padding after a string that is not all zero.
    #[error("{what}: non-zero padding after a {len}-byte string")]
    NonZeroPadding {
        /// What was being read.
        what: &'static str,
        /// The string's length.
        len: u64,
    },
    /// A string that is not UTF-8.
    #[error("{what}: not UTF-8")]
    NotUtf8 {
        /// What was being read.
        what: &'static str,
    },
    /// A number out of the range the field allows.
    #[error("{what}: value {value:#x} out of range")]
    OutOfRange {
        /// What was being read.
        what: &'static str,
        /// The value received.
        value: u64,
    },
}

impl WireError {
    /// Whether the peer simply went away (end of stream, reset, broken
    /// pipe), which is logged more quietly than a protocol violation.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, WireError::Io { source, .. } if matches!(
            source.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        ))
    }
}

/// Shorthand for a wire result.
pub type Result<T, E = WireError> = std::result::Result<T, E>;

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> WireError {
    move |source| WireError::Io { what, source }
}

/// Padding after a string of `len` bytes.
pub const fn padding_len(len: u64) -> u64 {
    (8 - len % 8) % 8
}

/// Read one u64.
pub async fn read_u64<R: AsyncRead + Unpin + ?Sized>(r: &mut R, what: &'static str) -> Result<u64> {
    let mut buf = [0u8; 8];
    r.read_exact(&mut buf).await.map_err(io_err(what))?;
    Ok(u64::from_le_bytes(buf))
}

/// Read a bool (any non-zero u64 is true, as Nix reads it).
pub async fn read_bool<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    what: &'static str,
) -> Result<bool> {
    Ok(read_u64(r, what).await? != 0)
}

/// Read a u64 that must be at most `max` (Nix's `readNum<T>`).
pub async fn read_num<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: u64,
    what: &'static str,
) -> Result<u64> {
    let value = read_u64(r, what).await?;
    if value > max {
        return Err(WireError::OutOfRange { what, value });
    }
    Ok(value)
}

/// Read a length-prefixed byte string of at most `max` bytes and check its
/// padding.
pub async fn read_bytes<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: u64,
    what: &'static str,
) -> Result<Vec<u8>> {
    let len = read_u64(r, what).await?;
    if len > max {
        return Err(WireError::TooLong { what, len, max });
    }
    // `len <= max`, and every bound in `limits` fits in usize on the 32- and
    // 64-bit targets we build for; try_from keeps it honest anyway.
    let ulen = usize::try_from(len).map_err(|_| WireError::TooLong { what, len, max })?;
    let mut buf = vec![0u8; ulen];
    r.read_exact(&mut buf).await.map_err(io_err(what))?;
    read_padding(r, len, what).await?;
    Ok(buf)
}

/// Read and check the zero padding after a string of `len` bytes.
pub async fn read_padding<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    len: u64,
    what: &'static str,
) -> Result<()> {
    let pad = padding_len(len) as usize; // < 8
    let mut buf = [0u8; 8];
    r.read_exact(&mut buf[..pad]).await.map_err(io_err(what))?;
    if buf[..pad].iter().any(|&b| b != 0) {
        return Err(WireError::NonZeroPadding { what, len });
    }
    Ok(())
}

/// Read a UTF-8 string of at most `max` bytes.
pub async fn read_string<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: u64,
    what: &'static str,
) -> Result<String> {
    let bytes = read_bytes(r, max, what).await?;
    String::from_utf8(bytes).map_err(|_| WireError::NotUtf8 { what })
}

/// Read a list count of at most `max`, and how many elements to preallocate.
async fn read_count<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: u64,
    what: &'static str,
) -> Result<(u64, usize)> {
    let count = read_u64(r, what).await?;
    if count > max {
        return Err(WireError::TooMany { what, count, max });
    }
    let prealloc = usize::try_from(count)
        .unwrap_or(limits::MAX_PREALLOC)
        .min(limits::MAX_PREALLOC);
    Ok((count, prealloc))
}

/// Tracks the total size of a list's strings against
/// [`limits::MAX_LIST_BYTES`].
struct Budget {
    used: u64,
    what: &'static str,
}

impl Budget {
    fn new(what: &'static str) -> Self {
        Self { used: 0, what }
    }

    fn take(&mut self, len: usize) -> Result<()> {
        self.used = self.used.saturating_add(len as u64 + 8);
        if self.used > limits::MAX_LIST_BYTES {
            return Err(WireError::TooMany {
                what: self.what,
                count: self.used,
                max: limits::MAX_LIST_BYTES,
            });
        }
        Ok(())
    }
}

/// Read a list (or set) of at most `max_count` strings of at most `max_len`
/// bytes each.
pub async fn read_strings<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max_count: u64,
    max_len: u64,
    what: &'static str,
) -> Result<Vec<String>> {
    let (count, prealloc) = read_count(r, max_count, what).await?;
    let mut out = Vec::with_capacity(prealloc);
    let mut budget = Budget::new(what);
    for _ in 0..count {
        let s = read_string(r, max_len, what).await?;
        budget.take(s.len())?;
        out.push(s);
    }
    Ok(out)
}

/// Read a map of strings to strings, in the order sent.
pub async fn read_string_map<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max_count: u64,
    max_len: u64,
    what: &'static str,
) -> Result<Vec<(String, String)>> {
    let (count, prealloc) = read_count(r, max_count, what).await?;
    let mut out = Vec::with_capacity(prealloc);
    let mut budget = Budget::new(what);
    for _ in 0..count {
        let k = read_string(r, max_len, what).await?;
        let v = read_string(r, max_len, what).await?;
        budget.take(k.len() + v.len())?;
        out.push((k, v));
    }
    Ok(out)
}

/// Append a u64.
pub fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Append a bool as Nix writes it (0 or 1).
pub fn put_bool(out: &mut Vec<u8>, value: bool) {
    put_u64(out, u64::from(value));
}

/// Append a length-prefixed, zero-padded byte string.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len() as u64;
    put_u64(out, len);
    out.extend_from_slice(bytes);
    out.extend_from_slice(&[0u8; 8][..padding_len(len) as usize]);
}

/// Append a string.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// Append a list of strings, in the iterator's order (sort first for a set).
pub fn put_strings<I, S>(out: &mut Vec<u8>, items: I)
where
    I: IntoIterator<Item = S>,
    I::IntoIter: ExactSizeIterator,
    S: AsRef<str>,
{
    let items = items.into_iter();
    put_u64(out, items.len() as u64);
    for s in items {
        put_str(out, s.as_ref());
    }
}

/// Append a map of strings to strings, in the iterator's order.
pub fn put_string_map<I, K, V>(out: &mut Vec<u8>, items: I)
where
    I: IntoIterator<Item = (K, V)>,
    I::IntoIter: ExactSizeIterator,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let items = items.into_iter();
    put_u64(out, items.len() as u64);
    for (k, v) in items {
        put_str(out, k.as_ref());
        put_str(out, v.as_ref());
    }
}

/// Where a [`FramedReader`] is in the stream.
#[derive(Debug, Clone, Copy)]
enum FrameState {
    /// Reading a frame header; `filled` bytes of it are in `header`.
    Header { header: [u8; 8], filled: u8 },
    /// Inside a frame with this many bytes left.
    Data { left: u64 },
    /// The 0 terminator has been read.
    Done,
}

/// Reads a framed sub-stream (`{u64 n; n bytes}*` ended by `n = 0`) as a
/// plain byte stream that ends at the terminator.
///
/// You must call [`FramedReader::drain`] before reading anything else from
/// the underlying stream, whether or not the consumer of the data failed:
/// the peer sends the whole stream regardless, and anything left unread
/// desynchronises the connection (docs/daemon-protocol.md).
pub struct FramedReader<'a, R: ?Sized> {
    inner: &'a mut R,
    state: FrameState,
}

impl<'a, R: AsyncRead + Unpin + ?Sized> FramedReader<'a, R> {
    /// Start reading a framed stream at the current position of `inner`.
    pub fn new(inner: &'a mut R) -> Self {
        Self {
            inner,
            state: FrameState::Header {
                header: [0; 8],
                filled: 0,
            },
        }
    }

    /// Whether the terminator has been read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, FrameState::Done)
    }

    /// Read and discard the rest of the stream up to and including the
    /// terminator. Returns how many data bytes were discarded.
    pub async fn drain(&mut self) -> io::Result<u64> {
        let mut buf = vec![0u8; limits::FRAME_LEN];
        let mut discarded = 0u64;
        loop {
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Ok(discarded);
            }
            discarded += n as u64;
        }
    }
}

impl<R: AsyncRead + Unpin + ?Sized> AsyncRead for FramedReader<'_, R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                FrameState::Done => return Poll::Ready(Ok(())),
                FrameState::Header { header, filled } => {
                    let mut rb = ReadBuf::new(&mut header[usize::from(*filled)..]);
                    ready!(Pin::new(&mut *this.inner).poll_read(cx, &mut rb))?;
                    let got = rb.filled().len();
                    if got == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "framed stream: end of stream inside a frame header",
                        )));
                    }
                    // got <= 8 - filled, so this stays <= 8.
                    *filled += got as u8;
                    if *filled == 8 {
                        let len = u64::from_le_bytes(*header);
                        this.state = if len == 0 {
                            FrameState::Done
                        } else {
                            FrameState::Data { left: len }
                        };
                    }
                }
                FrameState::Data { left } => {
                    if buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let want = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(buf.remaining());
                    let mut sub = ReadBuf::new(buf.initialize_unfilled_to(want));
                    ready!(Pin::new(&mut *this.inner).poll_read(cx, &mut sub))?;
                    let got = sub.filled().len();
                    if got == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "framed stream: end of stream inside a frame",
                        )));
                    }
                    // `sub` wrote into `buf`'s initialised unfilled part.
                    buf.advance(got);
                    *left -= got as u64;
                    if *left == 0 {
                        this.state = FrameState::Header {
                            header: [0; 8],
                            filled: 0,
                        };
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// Writes a framed sub-stream: buffers up to [`limits::FRAME_LEN`] bytes
/// and sends them as one frame.
///
/// You must call [`FramedWriter::finish`] to flush the last frame and send
/// the terminator; dropping the writer leaves the stream unterminated.
pub struct FramedWriter<'a, W: ?Sized> {
    inner: &'a mut W,
    buf: Vec<u8>,
    /// Bytes of `buf` (header and data) already handed to `inner`.
    sent: usize,
}

impl<'a, W: AsyncWrite + Unpin + ?Sized> FramedWriter<'a, W> {
    /// Start a framed stream on `inner`.
    pub fn new(inner: &'a mut W) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(limits::FRAME_LEN + 8),
            sent: 0,
        }
    }

    /// Flush the buffered frame, write the terminator and flush `inner`.
    pub async fn finish(mut self) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        std::future::poll_fn(|cx| self.poll_send_frame(cx)).await?;
        self.inner.write_all(&0u64.to_le_bytes()).await?;
        self.inner.flush().await
    }

    /// Send what is buffered as one frame (nothing if empty).
    fn poll_send_frame(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.len() > 8 || self.sent > 0 {
            if self.sent == 0 {
                let len = (self.buf.len() - 8) as u64;
                self.buf[..8].copy_from_slice(&len.to_le_bytes());
            }
            while self.sent < self.buf.len() {
                let n = ready!(Pin::new(&mut *self.inner).poll_write(cx, &self.buf[self.sent..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.sent += n;
            }
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin + ?Sized> AsyncWrite for FramedWriter<'_, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() >= limits::FRAME_LEN + 8 || this.sent > 0 {
            ready!(this.poll_send_frame(cx))?;
        }
        if this.buf.is_empty() {
            this.buf.extend_from_slice(&[0u8; 8]); // header, filled when sent
        }
        let room = limits::FRAME_LEN + 8 - this.buf.len();
        let n = room.min(data.len());
        this.buf.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_frame(cx))?;
        Pin::new(&mut *this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The terminator is written by `finish`; shutting down only flushes.
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn string_bytes(s: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_bytes(&mut v, s);
        v
    }

    #[test]
    fn strings_are_padded() {
        assert_eq!(string_bytes(b""), 0u64.to_le_bytes());
        let v = string_bytes(b"2.8.0");
        assert_eq!(hex::encode(&v), "0500000000000000322e382e30000000");
        assert_eq!(string_bytes(&[7; 8]).len(), 16);
    }

    #[tokio::test]
    async fn reads_back_what_it_writes() {
        let mut v = Vec::new();
        put_u64(&mut v, 0x126);
        put_bool(&mut v, true);
        put_str(&mut v, "hello");
        put_strings(&mut v, ["a", "bcdefghij"]);
        put_string_map(&mut v, [("k", "v")]);
        let mut r = v.as_slice();
        assert_eq!(read_u64(&mut r, "u64").await.unwrap(), 0x126);
        assert!(read_bool(&mut r, "bool").await.unwrap());
        assert_eq!(read_string(&mut r, 5, "s").await.unwrap(), "hello");
        assert_eq!(
            read_strings(&mut r, 2, 9, "l").await.unwrap(),
            ["a", "bcdefghij"]
        );
        assert_eq!(
            read_string_map(&mut r, 1, 1, "m").await.unwrap(),
            [("k".to_owned(), "v".to_owned())]
        );
        assert!(r.is_empty());
    }

    #[tokio::test]
    async fn refuses_bad_input() {
        let mut v = string_bytes(b"abc");
        v[11] = 1; // a padding byte
        assert!(matches!(
            read_string(&mut v.as_slice(), 10, "s").await,
            Err(WireError::NonZeroPadding { len: 3, .. })
        ));
        let v = string_bytes(b"abcdef");
        assert!(matches!(
            read_string(&mut v.as_slice(), 5, "s").await,
            Err(WireError::TooLong { len: 6, max: 5, .. })
        ));
        let v = string_bytes(&[0xff, 0xfe]);
        assert!(matches!(
            read_string(&mut v.as_slice(), 5, "s").await,
            Err(WireError::NotUtf8 { .. })
        ));
        let v = u64::MAX.to_le_bytes();
        assert!(matches!(
            read_strings(&mut v.as_slice(), 10, 10, "l").await,
            Err(WireError::TooMany { .. })
        ));
        let mut v = string_bytes(b"abcdefghij");
        v.truncate(20);
        let err = read_string(&mut v.as_slice(), 100, "s").await.unwrap_err();
        assert!(err.is_disconnect(), "{err}");
        assert!(matches!(
            read_num(&mut 5u64.to_le_bytes().as_slice(), 4, "n").await,
            Err(WireError::OutOfRange { value: 5, .. })
        ));
    }

    #[tokio::test]
    async fn list_budget_bounds_total_size() {
        // Elements each within MAX_STRING_LEN, but too many bytes together.
        let per = limits::MAX_STRING_LEN as usize;
        let count = (limits::MAX_LIST_BYTES as usize / per) + 1;
        let mut v = Vec::new();
        put_u64(&mut v, count as u64);
        let s = "x".repeat(per);
        for _ in 0..count {
            put_str(&mut v, &s);
        }
        assert!(matches!(
            read_strings(&mut v.as_slice(), u64::MAX, limits::MAX_STRING_LEN, "l").await,
            Err(WireError::TooMany { max, .. }) if max == limits::MAX_LIST_BYTES
        ));
    }

    #[tokio::test]
    async fn framed_round_trip_and_drain() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        let mut w = FramedWriter::new(&mut wire);
        w.write_all(&data).await.unwrap();
        w.finish().await.unwrap();
        wire.extend_from_slice(b"trailing");
        // Frames of 32 KiB: 4 headers + terminator.
        assert_eq!(wire.len(), data.len() + 5 * 8 + 8);

        let mut r = wire.as_slice();
        let mut got = Vec::new();
        let mut fr = FramedReader::new(&mut r);
        fr.read_to_end(&mut got).await.unwrap();
        assert!(fr.is_done());
        assert_eq!(got, data);
        assert_eq!(r, b"trailing");

        // Read a little, then drain: the stream ends right after the terminator.
        let mut r = wire.as_slice();
        let mut fr = FramedReader::new(&mut r);
        let mut small = [0u8; 10];
        fr.read_exact(&mut small).await.unwrap();
        assert_eq!(fr.drain().await.unwrap(), data.len() as u64 - 10);
        assert_eq!(r, b"trailing");
    }

    #[tokio::test]
    async fn framed_truncation_is_an_error() {
        let mut wire = Vec::new();
        put_u64(&mut wire, 10);
        wire.extend_from_slice(b"12345");
        let mut r = wire.as_slice();
        let err = FramedReader::new(&mut r).drain().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut r = &wire[..4];
        let err = FramedReader::new(&mut r).drain().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
