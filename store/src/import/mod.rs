//! Closure imports into the store from outside: one engine, several
//! sources (binary caches here; a nix-daemon in [`crate::daemon`]; a
//! `guix publish` server in [`crate::guix::GuixSource`]).
//!
//! # Layout
//! - `engine`: the engine ([`import_closure`]) and the [`ImportSource`]
//!   trait a source implements; options and report.
//! - `error`: why an import, or one path of it, failed.
//! - `binary_cache`: a Nix binary cache as a source
//!   ([`BinaryCacheSource`]).
//! - `source`: where a binary cache lives and how its files are fetched
//!   ([`CacheSource`]).
//! - `cache_info`: the cache's `nix-cache-info` ([`CacheInfo`]).
//! - `progress`: progress reports for whoever draws them
//!   ([`ImportProgress`]).

mod binary_cache;
mod cache_info;
mod engine;
mod error;
mod hashing;
mod nar_file;
mod progress;
mod source;

pub use binary_cache::{BinaryCacheSource, NarFile, import_from_binary_cache};
pub(crate) use binary_cache::{list_cache, narinfo_file, open_cache};
pub use cache_info::{CacheInfo, CacheInfoError};
pub use engine::{
    DEFAULT_CONCURRENCY, Found, ImportOptions, ImportReport, ImportSource, NarSink, Wanted,
    import_closure,
};
pub use error::{BoxError, ImportError, PathFailure, PathImportError};
pub(crate) use nar_file::read_nar_file;
pub use progress::{ImportProgress, NoProgress};
pub use source::{
    CONNECT_TIMEOUT, CacheReader, CacheSource, MAX_SMALL_FILE, READ_TIMEOUT, SourceError,
};
