//! [`RedbDirectoryService`]: directories in the embedded redb store
//! ([`RedbStore`]), each under its digest in canonical encoding. A closure
//! is committed in one transaction; every read re-hashes and re-validates.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use redb::{Database, Durability};

use super::closure::{ClosureBackend, ClosurePutter, bfs, put_one};
use super::{DirectoryPutter, DirectoryService, PartialDirectoryStore};
use crate::redb_store::{DIRECTORIES, RedbStore, blocking, storage};
use crate::{B3Digest, Directory, Error, Result};

/// A directory service over a [`RedbStore`]. Clones share the database.
#[derive(Clone)]
pub struct RedbDirectoryService {
    store: RedbStore,
}

impl RedbDirectoryService {
    /// The directory service of `store`.
    pub fn new(store: RedbStore) -> Self {
        Self { store }
    }

    /// Overwrite the stored record of directory `digest` with `record`.
    /// Dangerous: it exists so that tests can check that corruption on disk
    /// is caught on read.
    pub async fn danger_overwrite_directory_record(
        &self,
        digest: &B3Digest,
        record: Vec<u8>,
    ) -> Result<()> {
        let db = self.db();
        let key = *digest.as_bytes();
        blocking(move || {
            let txn = db.begin_write().map_err(storage("begin write"))?;
            {
                let mut table = txn
                    .open_table(DIRECTORIES)
                    .map_err(storage("open directories"))?;
                table
                    .insert(key, record.as_slice())
                    .map_err(storage("insert directory"))?;
            }
            txn.commit().map_err(storage("commit"))
        })
        .await
    }

    fn db(&self) -> Arc<Database> {
        self.store.database().clone()
    }
}

/// Read and verify one directory.
fn read_directory(db: &Database, digest: &B3Digest) -> Result<Option<Directory>> {
    let txn = db.begin_read().map_err(storage("begin read"))?;
    let table = txn
        .open_table(DIRECTORIES)
        .map_err(storage("open directories"))?;
    let Some(record) = table
        .get(*digest.as_bytes())
        .map_err(storage("read directory"))?
    else {
        return Ok(None);
    };
    verify_directory(digest, record.value()).map(Some)
}

/// Check that `bytes` hash to `digest` and are a valid, canonical directory.
pub(crate) fn verify_directory(digest: &B3Digest, bytes: &[u8]) -> Result<Directory> {
    let actual = B3Digest::of(bytes);
    if &actual != digest {
        return Err(Error::Integrity {
            what: "directory",
            expected: *digest,
            actual,
        });
    }
    let dir = Directory::decode(bytes).map_err(|source| Error::InvalidDirectory {
        digest: *digest,
        source,
    })?;
    // Valid but not canonical bytes would name the same directory by a
    // second digest; refuse them.
    let canonical = dir.digest();
    if &canonical != digest {
        return Err(Error::Integrity {
            what: "directory",
            expected: *digest,
            actual: canonical,
        });
    }
    Ok(dir)
}

fn write_directories(
    db: &Database,
    dirs: Vec<(B3Digest, Directory)>,
    durability: Durability,
) -> Result<()> {
    let mut txn = db.begin_write().map_err(storage("begin write"))?;
    txn.set_durability(durability);
    {
        let mut table = txn
            .open_table(DIRECTORIES)
            .map_err(storage("open directories"))?;
        for (digest, dir) in dirs {
            table
                .insert(*digest.as_bytes(), dir.encode().as_ref())
                .map_err(storage("insert directory"))?;
        }
    }
    txn.commit().map_err(storage("commit directories"))
}

#[async_trait]
impl DirectoryService for RedbDirectoryService {
    async fn get(&self, digest: &B3Digest) -> Result<Option<Directory>> {
        let db = self.db();
        let digest = *digest;
        blocking(move || read_directory(&db, &digest)).await
    }

    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory>> {
        let db = self.db();
        bfs(
            *root,
            Box::new(move |d| {
                let db = db.clone();
                Box::pin(blocking(move || read_directory(&db, &d)))
            }),
        )
    }

    async fn put(&self, directory: Directory) -> Result<B3Digest> {
        put_one(self.clone(), directory).await
    }

    fn put_multiple_start(&self) -> Box<dyn DirectoryPutter> {
        Box::new(ClosurePutter::new(self.clone()))
    }
}

#[async_trait]
impl ClosureBackend for RedbDirectoryService {
    async fn contains(&self, digest: &B3Digest) -> Result<bool> {
        let db = self.db();
        let key = *digest.as_bytes();
        blocking(move || {
            let txn = db.begin_read().map_err(storage("begin read"))?;
            let table = txn
                .open_table(DIRECTORIES)
                .map_err(storage("open directories"))?;
            Ok(table.get(key).map_err(storage("read directory"))?.is_some())
        })
        .await
    }

    async fn store_closure(&self, dirs: Vec<(B3Digest, Directory)>) -> Result<()> {
        let db = self.db();
        blocking(move || write_directories(&db, dirs, Durability::Immediate)).await
    }
}

#[async_trait]
impl PartialDirectoryStore for RedbDirectoryService {
    /// Committed with eventual durability: a cache fill lost in a crash is
    /// fetched again.
    async fn insert_directory(&self, directory: Directory) -> Result<B3Digest> {
        let db = self.db();
        let digest = directory.digest();
        blocking(move || write_directories(&db, vec![(digest, directory)], Durability::Eventual))
            .await?;
        Ok(digest)
    }

    /// One transaction for all, with eventual durability.
    async fn insert_directories(&self, directories: Vec<Directory>) -> Result<()> {
        let db = self.db();
        let dirs = directories.into_iter().map(|d| (d.digest(), d)).collect();
        blocking(move || write_directories(&db, dirs, Durability::Eventual)).await
    }
}
