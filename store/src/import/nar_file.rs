//! A NAR file of a binary cache (Nix's or `guix publish`'s): streamed from
//! the cache, decompressed straight into the strict NAR reader, its
//! compressed bytes counted and hashed so they can be checked against the
//! narinfo's `FileSize` (and `FileHash`).

use async_compression::tokio::bufread::{BzDecoder, GzipDecoder, XzDecoder, ZstdDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use super::engine::NarSink;
use super::error::PathImportError;
use super::hashing::HashingReader;
use super::source::CacheSource;
use crate::nar::NarIngested;

/// Compressions a NAR file may have.
pub const COMPRESSIONS: &[&str] = &["none", "xz", "zstd", "bzip2", "gzip"];

/// What was read of one NAR file.
pub struct NarFileRead {
    /// The NAR in it.
    pub ingested: NarIngested,
    /// The SHA-256 of the compressed file.
    pub file_sha256: [u8; 32],
}

/// Stream the file at `rel` (named `url` in errors) of `cache`, compressed
/// with `compression`, into `sink`; fail unless its size is `file_size`
/// (when given).
pub async fn read_nar_file(
    cache: &CacheSource,
    rel: &str,
    url: &str,
    compression: &str,
    file_size: Option<u64>,
    sink: NarSink<'_>,
) -> Result<NarFileRead, PathImportError> {
    if !COMPRESSIONS.contains(&compression) {
        return Err(PathImportError::UnsupportedCompression(
            compression.to_owned(),
        ));
    }
    let reader = cache
        .open(rel)
        .await?
        .ok_or_else(|| PathImportError::NarMissing(url.to_owned()))?;
    let mut file = HashingReader::new(reader);
    let ingested = {
        let buffered = BufReader::new(&mut file);
        let decoded: Box<dyn AsyncRead + Send + Unpin + '_> = match compression {
            "xz" => Box::new(XzDecoder::new(buffered)),
            "zstd" => Box::new(ZstdDecoder::new(buffered)),
            "bzip2" => Box::new(BzDecoder::new(buffered)),
            "gzip" => Box::new(GzipDecoder::new(buffered)),
            _ => Box::new(buffered),
        };
        sink.read_nar_to_end(decoded)
            .await
            .map_err(|source| PathImportError::BadNar {
                url: url.to_owned(),
                source,
            })?
    };
    // The decompressor may stop at the end of its stream; read what is left
    // so the size and hash cover the whole file. Anything past FileSize is
    // wrong anyway, so stop one byte after it.
    let rest_limit = file_size.map_or(u64::MAX, |s| {
        s.saturating_sub(file.count()).saturating_add(1)
    });
    tokio::io::copy(&mut (&mut file).take(rest_limit), &mut tokio::io::sink())
        .await
        .map_err(|source| PathImportError::NarFile {
            url: url.to_owned(),
            source,
        })?;
    let (actual, file_sha256) = file.finish();
    if let Some(expected) = file_size
        && expected != actual
    {
        return Err(PathImportError::FileSize {
            url: url.to_owned(),
            expected,
            actual,
        });
    }
    Ok(NarFileRead {
        ingested,
        file_sha256,
    })
}
