//! [`RedbDirectoryService`]: directories in the embedded redb store
//! ([`RedbStore`]), each under its digest in canonical encoding. A closure
//! is committed in one transaction; every read re-hashes and re-validates.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use redb::{Database, Durability, ReadableTable};

use super::closure::{ClosureBackend, ClosurePutter, put_one};
use super::{DirectoryPutter, DirectoryService, PartialDirectoryStore};
use crate::redb_store::{
    DIRECTORIES, KIND_DIRECTORY, RedbStore, WRITTEN, blocking, storage, unix_now,
};
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

/// How many directories a recursive walk reads ahead of its consumer.
const RECURSIVE_CHANNEL_DEPTH: usize = 64;

/// Breadth-first walk of `root`'s closure in one read transaction, root
/// first, each directory once, each verified; stops at the first error or
/// when the receiver is gone.
fn walk(db: &Database, root: B3Digest, tx: &tokio::sync::mpsc::Sender<Result<Directory>>) {
    let send_err = |e: Error| {
        let _ = tx.blocking_send(Err(e));
    };
    let txn = match db.begin_read() {
        Ok(t) => t,
        Err(e) => return send_err(storage("begin read")(e)),
    };
    let table = match txn.open_table(DIRECTORIES) {
        Ok(t) => t,
        Err(e) => return send_err(storage("open directories")(e)),
    };
    let read = |digest: &B3Digest| -> Result<Option<Directory>> {
        match table
            .get(*digest.as_bytes())
            .map_err(storage("read directory"))?
        {
            Some(record) => verify_directory(digest, record.value()).map(Some),
            None => Ok(None),
        }
    };
    let first = match read(&root) {
        Ok(Some(d)) => d,
        Ok(None) => return,
        Err(e) => return send_err(e),
    };
    let mut seen = HashSet::from([root]);
    let mut queue = VecDeque::from([(root, first)]);
    while let Some((digest, dir)) = queue.pop_front() {
        for (name, child) in dir.child_directories() {
            if !seen.insert(*child) {
                continue;
            }
            match read(child) {
                Ok(Some(c)) => queue.push_back((*child, c)),
                Ok(None) => {
                    return send_err(Error::storage_msg(format!(
                        "directory {child} (entry {name} of {digest}) is missing"
                    )));
                }
                Err(e) => return send_err(e),
            }
        }
        if tx.blocking_send(Ok(dir)).is_err() {
            return;
        }
    }
}

/// How [`write_directories`] notes write times (`castore.written.v1`).
enum Stamp<'a> {
    /// A cache fill: no write times.
    None,
    /// A store's write: note the directories written, and `reused`, the
    /// stored directories the closure names without carrying them; each of
    /// those must still be there (garbage collection may have taken it
    /// since the putter checked), or nothing is written.
    Written { reused: &'a [B3Digest] },
}

fn write_directories(
    db: &Database,
    dirs: Vec<(B3Digest, Directory)>,
    durability: Durability,
    stamp: Stamp<'_>,
) -> Result<()> {
    let mut txn = db.begin_write().map_err(storage("begin write"))?;
    txn.set_durability(durability);
    {
        let mut table = txn
            .open_table(DIRECTORIES)
            .map_err(storage("open directories"))?;
        let now = unix_now();
        if let Stamp::Written { reused } = stamp {
            let mut written = txn.open_table(WRITTEN).map_err(storage("open written"))?;
            for digest in reused {
                if table
                    .get(*digest.as_bytes())
                    .map_err(storage("read directory"))?
                    .is_none()
                {
                    return Err(Error::InvalidRequest(format!(
                        "directory {digest}, named by the closure, is no longer stored \
                         (garbage collected meanwhile); put it again"
                    )));
                }
                written
                    .insert((KIND_DIRECTORY, *digest.as_bytes()), now)
                    .map_err(storage("note directory write"))?;
            }
            for (digest, _) in &dirs {
                written
                    .insert((KIND_DIRECTORY, *digest.as_bytes()), now)
                    .map_err(storage("note directory write"))?;
            }
        }
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

    /// The whole walk runs in one blocking task under one read
    /// transaction (a consistent snapshot), handing directories over a
    /// bounded channel; dropping the stream stops it.
    fn get_recursive(&self, root: &B3Digest) -> BoxStream<'static, Result<Directory>> {
        let db = self.db();
        let root = *root;
        Box::pin(async_stream::stream! {
            let (tx, mut rx) = tokio::sync::mpsc::channel(RECURSIVE_CHANNEL_DEPTH);
            let walker = tokio::task::spawn_blocking(move || walk(&db, root, &tx));
            while let Some(item) = rx.recv().await {
                yield item;
            }
            if let Err(e) = walker.await {
                yield Err(Error::storage(format!("directory walk of {root} failed"), e));
            }
        })
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
        self.store_closure_reusing(dirs, Vec::new()).await
    }

    /// Notes the write time of the closure and of the stored directories
    /// it reuses, checking those are still there, in one transaction.
    async fn store_closure_reusing(
        &self,
        dirs: Vec<(B3Digest, Directory)>,
        reused: Vec<B3Digest>,
    ) -> Result<()> {
        let db = self.db();
        blocking(move || {
            write_directories(
                &db,
                dirs,
                Durability::Immediate,
                Stamp::Written { reused: &reused },
            )
        })
        .await
    }
}

#[async_trait]
impl PartialDirectoryStore for RedbDirectoryService {
    /// Committed with cache-fill durability
    /// (`RedbStore::cache_fill_durability`): a fill lost in a crash
    /// is fetched again.
    async fn insert_directory(&self, directory: Directory) -> Result<B3Digest> {
        let db = self.db();
        let digest = directory.digest();
        let durability = self
            .store
            .cache_fill_durability(directory.encode().len() as u64);
        blocking(move || {
            write_directories(&db, vec![(digest, directory)], durability, Stamp::None)
        })
        .await?;
        Ok(digest)
    }

    /// One transaction for all, with cache-fill durability.
    async fn insert_directories(&self, directories: Vec<Directory>) -> Result<()> {
        let db = self.db();
        let bytes = directories.iter().map(|d| d.encode().len() as u64).sum();
        let dirs = directories.into_iter().map(|d| (d.digest(), d)).collect();
        let durability = self.store.cache_fill_durability(bytes);
        blocking(move || write_directories(&db, dirs, durability, Stamp::None)).await
    }
}
