//! The cache layer: a near service (local, fast) in front of a far one
//! (remote, or just slower).
//!
//! Reads try near first; on a miss they fetch from far, check what far sent
//! against the digest asked for (far may lie or be corrupted), store it in
//! near, and return it. Nothing that fails a check is returned or stored.
//! Writes go to far, and to near as well.
//!
//! The near side must be able to hold partial data (a chunk list without
//! all its chunks, a directory without its children): that is what the
//! [`crate::ChunkStore`] and [`crate::PartialDirectoryStore`] extensions
//! give, and the memory and redb backends implement both.
//!
//! Near is best effort: a write into it that fails (a full disk) pauses
//! filling for a while and reopens near so that what it holds is still
//! served (`fill.rs`); reads never fail because near cannot grow.

mod blob;
mod directory;
mod files;
mod fill;
mod stats;
mod tee;

pub use blob::{CachedBlobService, FILL_BACKLOG_BYTES};
pub use directory::CachedDirectoryService;
pub use files::{FileCache, FileCacheSnapshot};
pub use fill::{FIRST_PAUSE, LOG_INTERVAL, MAX_PAUSE};
pub use stats::{CacheStats, CacheStatsSnapshot, FarFetch, RECENT_FETCHES};
