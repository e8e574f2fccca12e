//! `open_read` for any service that can list and read chunks: stream the
//! chunks in order, each verified by `read_chunk`, and check the whole
//! blob's digest at the end.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio_util::io::StreamReader;

use super::{BlobReader, BlobService};
use crate::{B3Digest, Error, Result};

/// A reader of blob `digest` from `service`, `None` if the blob is absent:
/// an `open_read` for any service that has `chunks` and `read_chunk` (every
/// local backend and the cache use it; a remote client may too).
///
/// A single-chunk blob is read whole (its `read_chunk` is verified against
/// the blob digest). A chunked blob is fetched one chunk at a time, so
/// memory stays at about one chunk; the reader fails with `InvalidData`
/// after the last chunk if the bytes do not hash to `digest`, and with
/// `NotFound` if a listed chunk is missing.
pub async fn open_read_via_chunks<S>(
    service: Arc<S>,
    digest: B3Digest,
) -> Result<Option<BlobReader>>
where
    S: BlobService + ?Sized,
{
    let Some(chunks) = service.chunks(&digest).await? else {
        return Ok(None);
    };
    if chunks.is_empty() {
        let Some(data) = service.read_chunk(&digest).await? else {
            return Ok(None);
        };
        return Ok(Some(Box::new(io::Cursor::new(data))));
    }
    let stream = async_stream::stream! {
        let mut hasher = blake3::Hasher::new();
        for (index, meta) in chunks.into_iter().enumerate() {
            let data: Bytes = match service.read_chunk(&meta.digest).await {
                Ok(Some(data)) => data,
                Ok(None) => {
                    yield Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("chunk {index} ({}) of blob {digest} is missing", meta.digest),
                    ));
                    return;
                }
                Err(e) => {
                    yield Err(io::Error::from(e));
                    return;
                }
            };
            hasher.update(&data);
            yield Ok::<Bytes, io::Error>(data);
        }
        let actual = B3Digest::from(hasher.finalize());
        if actual != digest {
            yield Err(io::Error::from(Error::Integrity {
                what: "blob",
                expected: digest,
                actual,
            }));
        }
    };
    Ok(Some(Box::new(StreamReader::new(Box::pin(stream)))))
}
