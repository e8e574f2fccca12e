//! Helpers shared by the NAR unit tests: real in-memory services and a
//! builder for hand-made (often malformed) NARs.

use std::sync::Arc;

use storefs_castore::{BlobService, MemoryBlobService};
use storefs_castore::{DirectoryService, MemoryDirectoryService};

use super::wire::{self, put_str};

/// Fresh, empty in-memory blob and directory services.
pub(crate) fn services() -> (Arc<dyn BlobService>, Arc<dyn DirectoryService>) {
    (
        Arc::new(MemoryBlobService::default()),
        Arc::new(MemoryDirectoryService::default()),
    )
}

/// Builds NAR bytes token by token, remembering offsets for assertions.
#[derive(Default)]
pub(crate) struct NarBuilder {
    pub(crate) bytes: Vec<u8>,
}

impl NarBuilder {
    /// A builder that has written the magic.
    pub(crate) fn new() -> Self {
        let mut b = Self::default();
        b.s(wire::MAGIC);
        b
    }

    /// The offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Append `str(x)`.
    pub(crate) fn s(&mut self, x: &[u8]) -> &mut Self {
        put_str(&mut self.bytes, x);
        self
    }

    /// Append several strings.
    pub(crate) fn ss(&mut self, xs: &[&[u8]]) -> &mut Self {
        for x in xs {
            self.s(x);
        }
        self
    }

    /// Append raw bytes.
    pub(crate) fn raw(&mut self, x: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(x);
        self
    }

    /// `( type regular contents str(data) )`.
    pub(crate) fn file(&mut self, data: &[u8]) -> &mut Self {
        self.ss(&[b"(", b"type", b"regular", b"contents", data, b")"])
    }

    /// `( type symlink target str(t) )`.
    pub(crate) fn symlink(&mut self, t: &[u8]) -> &mut Self {
        self.ss(&[b"(", b"type", b"symlink", b"target", t, b")"])
    }

    /// `entry ( name str(n) node`: the caller writes the node, then
    /// `)`.
    pub(crate) fn entry(&mut self, n: &[u8]) -> &mut Self {
        self.ss(&[b"entry", b"(", b"name", n, b"node"])
    }

    /// `( type directory`.
    pub(crate) fn dir_open(&mut self) -> &mut Self {
        self.ss(&[b"(", b"type", b"directory"])
    }

    /// `)`.
    pub(crate) fn close(&mut self) -> &mut Self {
        self.s(b")")
    }
}
