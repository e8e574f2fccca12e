//! Reads of open files: positional, with no lock around a handle.
//!
//! A read of `(offset, len)` fetches only the chunks that cover it (through
//! the [`Fetcher`], so concurrent readers of a chunk share one fetch). Each
//! open file keeps one atomic: where its last read ended. A read that starts
//! near there is sequential and sets off read-ahead of the next chunks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use storefs_castore::B3Digest;
use storefs_castore::BlobReader;
use tokio::io::AsyncReadExt;

use crate::core::deadline::within;
use crate::core::error::FsError;
use crate::core::fetch::{BlobLayout, Fetcher, covering};
use crate::core::stats::{self, MountStats};

/// Largest read the kernel sends (we ask for 1 MiB), and so the slack within
/// which a read still counts as sequential: the kernel's own read-ahead may
/// deliver reads slightly out of order.
pub const MAX_READ: u64 = 1024 * 1024;

/// Sequential reads in a row after which read-ahead widens.
const RAMP_AFTER: u64 = 8;

/// How much wider read-ahead gets then: 16 × the default 8 chunks of
/// ~64 KiB is ~8 MiB ahead of the reader. Over a 1 Gbit/s link a request
/// takes tens of milliseconds to come back on a busy machine (the
/// service reads its chunks from disk, both ends share two cores); 2 MiB
/// ahead held a reader to ~70 MB/s whatever the link. The bytes in flight
/// stay bounded by [`crate::core::fetch::MAX_BYTES_IN_FLIGHT`].
const RAMP_FACTOR: usize = 16;

/// A streaming reader of a large unchunked blob, and where it is.
struct StreamCursor {
    pos: u64,
    reader: BlobReader,
}

/// One open file.
pub(crate) struct OpenFile {
    layout: Arc<BlobLayout>,
    /// Offset just past the last read: the sequential-access detector.
    next_offset: AtomicU64,
    /// Sequential reads in a row: read-ahead widens once a reader has
    /// shown it reads the file through (see [`RAMP_AFTER`]).
    streak: AtomicU64,
    /// For [`BlobLayout::Stream`] only: a reader positioned after the last
    /// read. A read takes it out (so concurrent reads never wait on each
    /// other: a second one opens its own) and puts it back when done; the
    /// mutex is held for that `Option::take`/`replace` only.
    cursor: Mutex<Option<StreamCursor>>,
}

impl OpenFile {
    /// An open file with this layout.
    pub(crate) fn new(layout: Arc<BlobLayout>) -> Self {
        Self {
            layout,
            next_offset: AtomicU64::new(0),
            streak: AtomicU64::new(0),
            cursor: Mutex::new(None),
        }
    }

    /// Whether a read at `offset` continues the previous one; records where
    /// this read ends.
    fn sequential(&self, offset: u64, len: u64) -> bool {
        let prev = self
            .next_offset
            .swap(offset.saturating_add(len), Ordering::Relaxed);
        let sequential = offset.abs_diff(prev) <= MAX_READ;
        if sequential {
            self.streak.fetch_add(1, Ordering::Relaxed);
        } else {
            self.streak.store(0, Ordering::Relaxed);
        }
        sequential
    }

    /// How many chunks to fetch ahead: `base` at first, [`RAMP_FACTOR`]
    /// times that once [`RAMP_AFTER`] sequential reads came in a row. A
    /// program that touches a few pages of a large file (a loader mapping
    /// a library) keeps the narrow window and fetches little it does not
    /// read; one that reads the file through gets requests large enough to
    /// keep the link busy.
    fn readahead(&self, base: usize) -> usize {
        if self.streak.load(Ordering::Relaxed) >= RAMP_AFTER {
            base.saturating_mul(RAMP_FACTOR)
        } else {
            base
        }
    }
}

/// Read `len` bytes at `offset` of `file`. `readahead` chunks past the read
/// are fetched in the background when access is sequential.
pub(crate) fn read(
    fetcher: &Arc<Fetcher>,
    stats: &Arc<MountStats>,
    file: &Arc<OpenFile>,
    offset: u64,
    len: u64,
    readahead: usize,
) -> futures::future::BoxFuture<'static, Result<Bytes, FsError>> {
    use futures::FutureExt;
    let sequential = file.sequential(offset, len);
    match &*file.layout {
        BlobLayout::Chunks { chunks, ends } => {
            let fut = fetcher.read_chunks(chunks, ends, offset, len);
            if sequential && readahead > 0 {
                let total = ends.last().copied().unwrap_or(0);
                let end = offset.saturating_add(len).min(total);
                let next = covering(ends, offset, end).end;
                let most = next
                    .saturating_add(file.readahead(readahead))
                    .min(chunks.len());
                // Within what the memory cache holds for it, or read-ahead
                // evicts its own chunks before the reader gets to them.
                let budget = fetcher.readahead_bytes();
                let mut upto = next;
                let mut bytes = 0u64;
                while upto < most && bytes.saturating_add(chunks[upto].size) <= budget {
                    bytes += chunks[upto].size;
                    upto += 1;
                }
                if next < upto {
                    fetcher.prefetch(chunks[next..upto].iter().copied());
                }
            }
            fut.boxed()
        }
        BlobLayout::Stream { digest, size } => {
            let (digest, size) = (*digest, *size);
            let fetcher = Arc::clone(fetcher);
            let stats = Arc::clone(stats);
            let file = Arc::clone(file);
            async move { read_stream(&fetcher, &stats, &file, digest, size, offset, len).await }
                .boxed()
        }
    }
}

fn stream_err(digest: B3Digest, e: std::io::Error) -> FsError {
    FsError::Stream {
        digest,
        message: e.to_string(),
    }
}

async fn read_stream(
    fetcher: &Fetcher,
    stats: &MountStats,
    file: &OpenFile,
    digest: B3Digest,
    size: u64,
    offset: u64,
    len: u64,
) -> Result<Bytes, FsError> {
    let end = offset.saturating_add(len).min(size);
    if offset >= end {
        return Ok(Bytes::new());
    }
    let taken = file.cursor.lock().take();
    let mut cur = match taken {
        Some(c) if c.pos <= offset => c,
        _ => match within(
            stats,
            "blob open",
            fetcher.timeout(),
            fetcher.blobs().open_read(&digest),
        )
        .await?
        {
            Some(reader) => StreamCursor { pos: 0, reader },
            None => {
                return Err(FsError::Missing {
                    what: "blob",
                    digest,
                });
            }
        },
    };
    let skip = offset - cur.pos;
    if skip > 0 {
        let skipped = tokio::io::copy(&mut (&mut cur.reader).take(skip), &mut tokio::io::sink())
            .await
            .map_err(|e| stream_err(digest, e))?;
        stats::add(&stats.streamed_bytes, skipped);
        stats::add(&stats.bytes_fetched, skipped);
        if skipped != skip {
            return Err(FsError::SizeMismatch {
                what: "blob",
                digest,
                expected: size,
                actual: cur.pos + skipped,
            });
        }
    }
    let want = (end - offset) as usize;
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        let n = within(stats, "blob read", fetcher.timeout(), async {
            cur.reader
                .read(&mut buf[got..])
                .await
                .map_err(|e| stream_err(digest, e))
        })
        .await?;
        if n == 0 {
            return Err(FsError::SizeMismatch {
                what: "blob",
                digest,
                expected: size,
                actual: offset + got as u64,
            });
        }
        got += n;
    }
    stats::add(&stats.streamed_bytes, want as u64);
    stats::add(&stats.bytes_fetched, want as u64);
    if end == size {
        // At the end: one more read lets the reader check the whole blob's
        // digest (it fails with InvalidData if the bytes were wrong).
        let mut probe = [0u8; 1];
        let extra = cur
            .reader
            .read(&mut probe)
            .await
            .map_err(|e| stream_err(digest, e))?;
        if extra != 0 {
            return Err(FsError::SizeMismatch {
                what: "blob",
                digest,
                expected: size,
                actual: size + 1,
            });
        }
    }
    cur.pos = end;
    file.cursor.lock().replace(cur);
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_detection_tolerates_small_reordering() {
        let f = OpenFile::new(Arc::new(BlobLayout::Chunks {
            chunks: vec![],
            ends: vec![],
        }));
        assert!(f.sequential(0, 4096));
        assert!(f.sequential(4096, 4096));
        assert!(f.sequential(16384, 4096), "within the slack");
        assert!(!f.sequential(100 * MAX_READ, 4096), "a jump");
        assert!(f.sequential(100 * MAX_READ + 4096, 4096));
    }
}
