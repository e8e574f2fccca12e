//! Imports into the store from outside: binary caches (`file://`,
//! `http(s)://`).
//!
//! # Layout
//! - [`source`]: where a cache lives and how its files are fetched.
//! - [`cache_info`]: the cache's `nix-cache-info`.
//! - [`binary_cache`]: copying closures out of a cache, every check done
//!   before a path is recorded.
//! - [`progress`]: progress reports for whoever draws them.

pub mod binary_cache;
pub mod cache_info;
mod hashing;
pub mod progress;
pub mod source;

pub use binary_cache::{
    DEFAULT_CONCURRENCY, ImportError, ImportOptions, ImportReport, ImportServices, PathFailure,
    PathImportError, import_from_binary_cache,
};
pub use cache_info::{CacheInfo, CacheInfoError};
pub use progress::{ImportProgress, NoProgress};
pub use source::{CacheSource, SourceError};
