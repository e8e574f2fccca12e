//! Directories: nodes of the merkle DAG, addressed by BLAKE3 of their
//! canonical encoding.
//!
//! Closures travel in two orders. `get_recursive` yields the root first and
//! each directory only after one that names it, each once. A putter takes
//! leaves first and the root last, and refuses a directory that names a child
//! it has not seen (nor holds already), and a closure with directories that
//! the root does not reach.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{B3Digest, Directory, Result};

mod closure;
mod memory;
mod partial;
mod redb;

pub use self::redb::RedbDirectoryService;
pub(crate) use self::redb::verify_directory;
pub(crate) use closure::{ClosureBackend, ClosurePutter, put_one};
pub use memory::MemoryDirectoryService;
pub use partial::PartialDirectoryStore;

/// A store of directories.
#[async_trait]
pub trait DirectoryService: Send + Sync + 'static {
    /// One directory, verified against `digest`. `None` if absent.
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>>;

    /// The closure of `root`: the root first, each directory after one that
    /// names it, each exactly once. An absent root gives an empty stream; a
    /// missing child is an error.
    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory>>;

    /// Store one directory whose children are already present.
    async fn put(&self, directory: Directory) -> Result<B3Digest>;

    /// Start storing a closure, leaves first.
    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter>;
}

/// Takes a closure leaves first, root last, and stores it when closed.
///
/// You must call [`DirectoryPutter::close`]: nothing is visible before it
/// returns, and nothing at all if it fails.
#[async_trait]
pub trait DirectoryPutter: Send {
    /// Take the next directory.
    async fn put(&mut self, directory: Directory) -> Result<()>;

    /// Check the closure is complete and connected, store it, and return
    /// the root's digest (the last directory put).
    async fn close(&mut self) -> Result<B3Digest>;
}
