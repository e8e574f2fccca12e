//! storefs-castore: the content-addressed merkle store at the bottom of
//! storefs. It knows nothing of Nix.
//!
//! Files, directories and symlinks form a DAG addressed by BLAKE3,
//! wire-compatible with snix's `snix.castore.v1`: a blob's digest is BLAKE3
//! of its content, a directory's is BLAKE3 of its canonical protobuf
//! encoding.
//!
//! # Layout
//! - [`B3Digest`], [`PathComponent`], [`SymlinkTarget`]: checked values.
//! - [`Directory`], [`Node`], [`Entry`]: the model, validated on conversion
//!   from protobuf ([`proto`]).
//! - [`blobservice`], [`directoryservice`]: the service traits and backends.
//!
//! ```
//! use storefs_castore::{Directory, Node, B3Digest, PathComponent};
//! let mut dir = Directory::new();
//! dir.add(
//!     PathComponent::try_from("hello.txt").unwrap(),
//!     Node::File { digest: B3Digest::of(b"Hello World!"), size: 12, executable: false },
//! ).unwrap();
//! assert_eq!(
//!     dir.digest().to_hex(),
//!     "ad6ba6e317d73187dbf6458337cfba3cec897ae188cca70cc5a511f04ed0de27",
//! );
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod blobservice;
mod chunking;
mod digest;
mod directory;
pub mod directoryservice;
mod error;
mod names;

/// The protobuf messages of `snix.castore.v1`, generated from `proto/`.
#[allow(missing_docs)] // generated code; the schema documents each field
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/snix.castore.v1.rs"));
}

pub use blobservice::{
    BlobReader, BlobService, BlobWriter, ChunkMeta, ChunkStore, MemoryBlobService,
};
pub use chunking::{Chunker, ChunkerConfig, ChunkerConfigError, chunk_all};
pub use digest::{B3_LEN, B3Digest, InvalidDigestLen};
pub use directory::{Directory, DirectoryError, Entry, Node};
pub use directoryservice::{
    DirectoryPutter, DirectoryService, MemoryDirectoryService, PartialDirectoryStore,
};
pub use error::{Error, Result};
pub use names::{
    MAX_NAME_LEN, MAX_SYMLINK_TARGET_LEN, NameError, PathComponent, SymlinkTarget,
    SymlinkTargetError,
};
