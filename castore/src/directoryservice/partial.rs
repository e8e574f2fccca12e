//! [`PartialDirectoryStore`]: the extension a directory service needs to
//! serve as the near side of a cache ([`crate::CachedDirectoryService`]).
//!
//! A cache may hold a directory without all of its children (it fetched
//! just that one). This is additive: it does not change
//! [`DirectoryService`].

use async_trait::async_trait;

use super::DirectoryService;
use crate::{B3Digest, Directory, Result};

/// A directory service that can also hold directories whose children it
/// does not hold.
#[async_trait]
pub trait PartialDirectoryStore: DirectoryService {
    /// Store `directory` without checking that its children are here, and
    /// return its digest. You must only give it directories you verified
    /// (a `Directory` value is valid by construction; its digest is
    /// computed here). `get_recursive` over a partial closure fails at the
    /// first missing child.
    async fn insert_directory(&self, directory: Directory) -> Result<B3Digest>;

    /// Store several directories like [`PartialDirectoryStore::insert_directory`],
    /// in any order. Backends override it to store them in one step.
    async fn insert_directories(&self, directories: Vec<Directory>) -> Result<()> {
        for d in directories {
            self.insert_directory(d).await?;
        }
        Ok(())
    }
}
