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
//! - [`BlobService`], [`DirectoryService`]: the service traits and backends.
//!   Backends: [`MemoryBlobService`] / [`MemoryDirectoryService`], and
//!   [`RedbBlobService`] / [`RedbDirectoryService`] over one shared
//!   [`RedbStore`] database file.
//! - [`ingest_path`]: store a local file, symlink or directory tree.
//! - [`Chunker`], [`ChunkerConfig`]: FastCDC 2020 chunking of streamed bytes.
//! - [`CachedBlobService`], [`CachedDirectoryService`]: a near store in front
//!   of a far one; the near side implements [`ChunkStore`] /
//!   [`PartialDirectoryStore`].
//! - [`StoreUrl`], [`open_castore`]: `memory:`, `redb:///dir`, `grpc…`,
//!   `s3://…` and `file:///…` URLs.
//! - [`objectstore`]: blobs and directories in an object store (S3, or a
//!   local directory), in snix's layout.
//! - [`GcOptions`], [`RedbStore::gc_mark`], [`RedbStore::gc_sweep`]:
//!   garbage collection of the embedded store.
//! - [`Token`]: the shared secret every front end checks, in constant time.
//! - [`Activity`]: streams that note when bytes moved, for idle timeouts.
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

mod activity;
mod blobservice;
mod cache;
mod chunking;
mod data_loss;
mod digest;
mod directory;
mod directoryservice;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod gc;
mod gc_objects;
mod import;
mod names;
pub mod objectstore;
mod redb_file;
mod redb_store;
mod token;
mod url;

/// The protobuf messages of `snix.castore.v1`, generated from `proto/`.
#[allow(missing_docs)] // generated code; the schema documents each field
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/snix.castore.v1.rs"));
}

pub use self::url::{
    GrpcEndpoint, KNOWN_SCHEMES, LocalCastore, OpenStoreError, StoreUrl, StoreUrlError,
    open_castore,
};
pub use activity::{Activity, Tracked};
pub use blobservice::{
    BATCH_CONCURRENCY, BlobReader, BlobService, BlobWriter, ChunkMeta, ChunkStore,
    DISK_SLACK_BYTES, DISK_SLACK_PERCENT, MemoryBlobService, QuotaFigures, RedbBlobService,
    RefusingWriter, StoredChunk, VerifiedChunk, WRITE_BATCH_BYTES, disk_bound,
    open_read_via_chunks, sync_bytes_for, verify_chunk,
};
pub use cache::{
    CacheStats, CacheStatsSnapshot, CachedBlobService, CachedDirectoryService, FILL_BACKLOG_BYTES,
    FIRST_PAUSE, FarFetch, FileCache, FileCacheSnapshot, LOG_INTERVAL, MAX_PAUSE, RECENT_FETCHES,
};
pub use chunking::{Chunker, ChunkerConfig, ChunkerConfigError, chunk_all};
pub use digest::{B3_LEN, B3Digest, InvalidDigestLen};
pub use directory::{Directory, DirectoryError, Entry, Node};
pub use directoryservice::{
    DirectoryPutter, DirectoryService, MemoryDirectoryService, PartialDirectoryStore,
    RedbDirectoryService,
};
pub use error::{BoxError, Error, Report, Result};
pub use gc::{GcKind, GcMark, GcOptions, GcReport};
pub use gc_objects::ObjectGcMark;
pub use import::{
    DEFAULT_CONCURRENCY, IngestError, IngestOptions, IngestStats, Ingested, ingest_path,
    ingest_path_with, unsupported_kind,
};
pub use names::{
    MAX_NAME_LEN, MAX_SYMLINK_TARGET_LEN, NameError, PathComponent, SymlinkTarget,
    SymlinkTargetError,
};
pub use redb_store::{
    CACHE_SYNC_BYTES, CACHE_SYNC_INTERVAL, CHUNK_PACKED, CHUNK_RAW, CHUNK_ZSTD, MAX_BLOCKING_REDB,
    MOUNT_CACHE_REDB_CACHE_BYTES, Recovery, RedbStore, STORE_FILE_NAME,
};
pub use token::{MAX_TOKEN_LEN, Token, TokenError};
