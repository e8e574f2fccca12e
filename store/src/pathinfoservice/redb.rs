//! A [`PathInfoService`] in a redb database, meant to be the same database
//! file that holds castore's blobs and directories.
//!
//! Tables (names are prefixed so they sit beside castore's):
//! - `store.pathinfo.v1`: store path digest (20 bytes) → the `snix.store.v1.PathInfo`
//!   protobuf encoding. Checked on every read: it must decode, pass
//!   [`PathInfo`]'s validation and carry the digest it is filed under.
//! - `store.referrers.v1`: (referenced digest, referrer digest) → the
//!   referrer's base name. Updated in the same write transaction as the
//!   path info, so the two never disagree; it answers
//!   [`PathInfoService::referrers`] with one range scan.
//!
//! Every redb call runs in `spawn_blocking`.

use std::ops::Bound;
use std::sync::Arc;

use ::redb::{Database, ReadableTable, TableDefinition};
use async_trait::async_trait;
use futures::stream::BoxStream;
use prost::Message;
use storefs_castore::{Error, RedbStore, Result};

use super::{PathInfoService, sort_paths};
use crate::PathInfo;
use crate::proto;
use crate::{DIGEST_LEN, StorePath};

type Digest = [u8; DIGEST_LEN];

const INFOS: TableDefinition<Digest, &[u8]> = TableDefinition::new("store.pathinfo.v1");
const REFERRERS: TableDefinition<(Digest, Digest), &str> =
    TableDefinition::new("store.referrers.v1");

/// How many path infos one blocking read of [`PathInfoService::list`] takes.
const LIST_BATCH: usize = 256;

fn storage(what: &str, e: impl Into<storefs_castore::BoxError>) -> Error {
    Error::storage(format!("redb path info service: {what}"), e)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| storage("blocking task", e))?
}

/// Decode and check a stored record.
fn decode(key: &Digest, bytes: &[u8]) -> Result<PathInfo> {
    let hash = crate::nixbase32::encode(key);
    let msg = proto::PathInfo::decode(bytes)
        .map_err(|e| storage(&format!("corrupt record {hash}"), e))?;
    let info =
        PathInfo::try_from(msg).map_err(|e| storage(&format!("corrupt record {hash}"), e))?;
    if info.store_path.digest() != key {
        return Err(storage(
            &format!("corrupt record {hash}"),
            format!("holds {}", info.store_path),
        ));
    }
    Ok(info)
}

/// Path infos in a redb database. Cheap to clone (shares the database).
#[derive(Clone)]
pub struct RedbPathInfoService {
    /// Shared with castore's redb services: one file, one writer lock.
    /// Asked for the database at each call (it may have been reopened
    /// after a failed write).
    store: RedbStore,
}

impl RedbPathInfoService {
    /// Use `db` (castore's database, so that one file holds everything),
    /// creating this service's tables if they are missing.
    pub async fn new(db: Arc<Database>) -> Result<Self> {
        let store = blocking(move || RedbStore::from_database(db, "path info database")).await?;
        Self::from_store(&store).await
    }

    /// Use castore's shared store: path infos then live in the same file
    /// as the blobs and directories, and the service follows the store
    /// when it is reopened.
    pub async fn from_store(store: &RedbStore) -> Result<Self> {
        let store = store.clone();
        let d = store.database();
        blocking(move || {
            let txn = d.begin_write().map_err(|e| storage("begin write", e))?;
            txn.open_table(INFOS)
                .map_err(|e| storage("open table", e))?;
            txn.open_table(REFERRERS)
                .map_err(|e| storage("open table", e))?;
            txn.commit().map_err(|e| storage("commit", e))
        })
        .await?;
        Ok(Self { store })
    }

    /// Open (or create) a database file of its own at `path`. Prefer
    /// [`RedbPathInfoService::from_store`] where castore's data is in redb:
    /// redb allows one open handle per file and process.
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let db = blocking(move || {
            Database::create(&path).map_err(|e| storage(&format!("open {}", path.display()), e))
        })
        .await?;
        Self::new(Arc::new(db)).await
    }

    /// The database now, for services that share it.
    pub fn database(&self) -> Arc<Database> {
        self.store.database()
    }
}

/// The digests an old record refers to, if it decodes; `None` if not.
fn old_references(bytes: &[u8]) -> Option<Vec<Digest>> {
    let msg = proto::PathInfo::decode(bytes).ok()?;
    Some(
        msg.references
            .iter()
            .filter_map(|r| Digest::try_from(r.as_ref()).ok())
            .collect(),
    )
}

/// Remove the reference index entries of `key`'s old record `old`: those
/// it names, or, when it no longer decodes, every entry found with `key` as
/// the referrer (the slow way).
fn remove_index_entries(
    referrers: &mut ::redb::Table<'_, (Digest, Digest), &str>,
    key: Digest,
    old: &[u8],
) -> Result<()> {
    let stale: Vec<(Digest, Digest)> = match old_references(old) {
        Some(refs) => refs.into_iter().map(|r| (r, key)).collect(),
        None => referrers
            .iter()
            .map_err(|e| storage("scan", e))?
            .filter_map(|e| e.ok().map(|(k, _)| k.value()))
            .filter(|(_, referrer)| *referrer == key)
            .collect(),
    };
    for k in stale {
        referrers.remove(k).map_err(|e| storage("remove", e))?;
    }
    Ok(())
}

#[async_trait]
impl PathInfoService for RedbPathInfoService {
    async fn get(&self, digest: Digest) -> Result<Option<PathInfo>> {
        let db = self.store.database();
        blocking(move || {
            let txn = db.begin_read().map_err(|e| storage("begin read", e))?;
            let table = txn
                .open_table(INFOS)
                .map_err(|e| storage("open table", e))?;
            match table.get(digest).map_err(|e| storage("get", e))? {
                None => Ok(None),
                Some(v) => decode(&digest, v.value()).map(Some),
            }
        })
        .await
    }

    async fn put(&self, info: PathInfo) -> Result<PathInfo> {
        let db = self.store.database();
        let key = *info.store_path.digest();
        let name = info.store_path.base_name();
        let refs: Vec<Digest> = info.references.iter().map(|r| *r.digest()).collect();
        let bytes = info.to_proto().encode_to_vec();
        blocking(move || {
            let txn = db.begin_write().map_err(|e| storage("begin write", e))?;
            {
                let mut infos = txn
                    .open_table(INFOS)
                    .map_err(|e| storage("open table", e))?;
                let mut referrers = txn
                    .open_table(REFERRERS)
                    .map_err(|e| storage("open table", e))?;
                let old: Option<Vec<u8>> = infos
                    .get(key)
                    .map_err(|e| storage("get", e))?
                    .map(|v| v.value().to_vec());
                if let Some(old) = old {
                    remove_index_entries(&mut referrers, key, &old)?;
                }
                infos
                    .insert(key, bytes.as_slice())
                    .map_err(|e| storage("insert", e))?;
                for r in refs {
                    referrers
                        .insert((r, key), name.as_str())
                        .map_err(|e| storage("insert", e))?;
                }
            }
            txn.commit().map_err(|e| storage("commit", e))
        })
        .await?;
        Ok(info)
    }

    /// The record and its reference index entries go in one transaction.
    async fn delete(&self, key: Digest) -> Result<bool> {
        let db = self.store.database();
        blocking(move || {
            let txn = db.begin_write().map_err(|e| storage("begin write", e))?;
            let existed = {
                let mut infos = txn
                    .open_table(INFOS)
                    .map_err(|e| storage("open table", e))?;
                let mut referrers = txn
                    .open_table(REFERRERS)
                    .map_err(|e| storage("open table", e))?;
                let old: Option<Vec<u8>> = infos
                    .remove(key)
                    .map_err(|e| storage("remove", e))?
                    .map(|v| v.value().to_vec());
                match old {
                    None => false,
                    Some(old) => {
                        remove_index_entries(&mut referrers, key, &old)?;
                        true
                    }
                }
            };
            txn.commit().map_err(|e| storage("commit", e))?;
            Ok(existed)
        })
        .await
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
        let db = self.store.database();
        Box::pin(async_stream::try_stream! {
            let mut after: Option<Digest> = None;
            loop {
                let db = db.clone();
                let batch: Vec<PathInfo> = blocking(move || {
                    let txn = db.begin_read().map_err(|e| storage("begin read", e))?;
                    let table = txn.open_table(INFOS).map_err(|e| storage("open table", e))?;
                    let lower = match after {
                        Some(d) => Bound::Excluded(d),
                        None => Bound::Unbounded,
                    };
                    let mut out = Vec::new();
                    for entry in table
                        .range::<Digest>((lower, Bound::Unbounded))
                        .map_err(|e| storage("range", e))?
                        .take(LIST_BATCH)
                    {
                        let (k, v) = entry.map_err(|e| storage("range", e))?;
                        out.push(decode(&k.value(), v.value())?);
                    }
                    Ok(out)
                })
                .await?;
                let done = batch.len() < LIST_BATCH;
                after = batch.last().map(|i| *i.store_path.digest());
                for info in batch {
                    yield info;
                }
                if done {
                    break;
                }
            }
        })
    }

    async fn referrers(&self, digest: Digest) -> Result<Vec<StorePath>> {
        let db = self.store.database();
        let mut out = blocking(move || {
            let txn = db.begin_read().map_err(|e| storage("begin read", e))?;
            let table = txn
                .open_table(REFERRERS)
                .map_err(|e| storage("open table", e))?;
            let mut out = Vec::new();
            for entry in table
                .range((digest, [0u8; DIGEST_LEN])..=(digest, [0xffu8; DIGEST_LEN]))
                .map_err(|e| storage("range", e))?
            {
                let (k, v) = entry.map_err(|e| storage("range", e))?;
                let (_, referrer) = k.value();
                let p = StorePath::from_base_name(v.value())
                    .ok()
                    .filter(|p| *p.digest() == referrer)
                    .ok_or_else(|| {
                        storage(
                            "corrupt referrer index",
                            format!(
                                "{:?} filed under {}",
                                v.value(),
                                crate::nixbase32::encode(&referrer)
                            ),
                        )
                    })?;
                out.push(p);
            }
            Ok(out)
        })
        .await?;
        sort_paths(&mut out);
        Ok(out)
    }
}
