//! NAR size and sha256 of a castore node, without keeping the NAR: the
//! writer streams into a sink that only hashes and counts.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use storefs_castore::BlobService;
use storefs_castore::DirectoryService;
use storefs_castore::Node;
use tokio::io::AsyncWrite;

use super::writer::{NarWriteError, write_nar};
use crate::NarCalculationService;

/// An `AsyncWrite` that hashes (sha256) and counts what is written to it,
/// and keeps nothing.
#[derive(Default)]
pub struct HashingSink {
    hasher: Sha256,
    len: u64,
}

impl HashingSink {
    /// A sink that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `(bytes written, sha256 of them)`.
    pub fn finish(self) -> (u64, [u8; 32]) {
        (self.len, self.hasher.finalize().into())
    }
}

impl AsyncWrite for HashingSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.hasher.update(buf);
        this.len += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `(nar_size, nar_sha256)` of the NAR that `root` renders to.
pub async fn nar_hash_and_size(
    root: &Node,
    blob_service: &dyn BlobService,
    directory_service: &dyn DirectoryService,
) -> Result<(u64, [u8; 32]), NarWriteError> {
    let mut sink = HashingSink::new();
    write_nar(&mut sink, root, blob_service, directory_service).await?;
    Ok(sink.finish())
}

/// [`NarCalculationService`] over a blob and a directory service: renders
/// the NAR and hashes it, reading every blob of the tree.
#[derive(Clone)]
pub struct NarCalculator {
    /// Where file contents come from.
    blob_service: Arc<dyn BlobService>,
    /// Where directories come from.
    directory_service: Arc<dyn DirectoryService>,
}

impl NarCalculator {
    /// A calculator reading from these services.
    pub fn new(
        blob_service: Arc<dyn BlobService>,
        directory_service: Arc<dyn DirectoryService>,
    ) -> Self {
        Self {
            blob_service,
            directory_service,
        }
    }
}

#[async_trait]
impl NarCalculationService for NarCalculator {
    async fn calculate_nar(&self, root: &Node) -> storefs_castore::Result<(u64, [u8; 32])> {
        Ok(nar_hash_and_size(
            root,
            self.blob_service.as_ref(),
            self.directory_service.as_ref(),
        )
        .await?)
    }
}
