//! A [`PathInfoService`] in an object store, in the same bucket (and under
//! the same prefix) as castore's objects (`docs/object-store.md`):
//!
//! ```text
//! PREFIX/pathinfo/<nixbase32 hash>                  snix.store.v1.PathInfo, protobuf
//! PREFIX/referrers/<nixbase32 hash>/<base name>     empty: <base name> refers to <hash>
//! ```
//!
//! snix defines no path info objects; this layout is storefs's own. A
//! path info is written after its referrer entries, so an entry may name
//! a path whose info is not there (a put that failed, or was replaced by
//! one without that reference): referrers are checked against the path
//! infos they name before they are answered. Listing is a LIST of
//! `pathinfo/` and a GET of each. Every record read must decode, pass
//! [`PathInfo`]'s validation and carry the hash it is filed under.

use ::object_store::path::Path;
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use storefs_castore::objectstore::Bucket;
use storefs_castore::{Error, Result};

use super::{PathInfoService, sort_paths};
use crate::PathInfo;
use crate::nixbase32;
use crate::proto;
use crate::{DIGEST_LEN, StorePath, parse_hash_part};

type Digest = [u8; DIGEST_LEN];

/// How many GETs a listing or a referrer check keeps going at once.
const CONCURRENCY: usize = 16;

/// Path infos in a [`Bucket`]. Cheap to clone (shared).
#[derive(Clone)]
pub struct ObjectStorePathInfoService {
    bucket: Bucket,
}

/// A record that fails its checks: names the key, and logs it.
fn corrupt(key: &Path, reason: &str) -> Error {
    tracing::error!(object = %key, reason, "corrupt path info object in the object store");
    Error::storage_msg(format!("object store: object {key} is corrupt: {reason}"))
}

impl ObjectStorePathInfoService {
    /// The path infos in `bucket`.
    pub fn new(bucket: Bucket) -> Self {
        Self { bucket }
    }

    fn info_dir(&self) -> Path {
        self.bucket.prefix().child("pathinfo")
    }

    fn info_key(&self, digest: &Digest) -> Path {
        self.info_dir().child(nixbase32::encode(digest))
    }

    fn referrers_dir(&self, digest: &Digest) -> Path {
        self.bucket
            .prefix()
            .child("referrers")
            .child(nixbase32::encode(digest))
    }

    /// The checked record at `key`, which must be filed under `digest`.
    async fn read(&self, key: &Path, digest: &Digest) -> Result<Option<PathInfo>> {
        let Some(bytes) = self.bucket.get(key).await? else {
            return Ok(None);
        };
        decode(key, digest, &bytes).map(Some)
    }
}

/// Decode and check a record.
fn decode(key: &Path, digest: &Digest, bytes: &[u8]) -> Result<PathInfo> {
    let msg = proto::PathInfo::decode(bytes)
        .map_err(|e| corrupt(key, &format!("not a PathInfo: {e}")))?;
    let info = PathInfo::try_from(msg).map_err(|e| corrupt(key, &e.to_string()))?;
    if info.store_path.digest() != digest {
        return Err(corrupt(key, &format!("holds {}", info.store_path)));
    }
    Ok(info)
}

#[async_trait]
impl PathInfoService for ObjectStorePathInfoService {
    async fn get(&self, digest: Digest) -> Result<Option<PathInfo>> {
        self.read(&self.info_key(&digest), &digest).await
    }

    /// Referrer entries first, the path info last.
    async fn put(&self, info: PathInfo) -> Result<PathInfo> {
        let base = info.store_path.base_name();
        let entries: Vec<Path> = info
            .references
            .iter()
            .map(|r| self.referrers_dir(r.digest()).child(base.as_str()))
            .collect();
        futures::stream::iter(entries)
            .map(|key| {
                let bucket = self.bucket.clone();
                async move { bucket.put(&key, bytes::Bytes::new()).await }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await?;
        let bytes = info.to_proto().encode_to_vec();
        self.bucket
            .put(&self.info_key(info.store_path.digest()), bytes.into())
            .await?;
        Ok(info)
    }

    /// The path info object first, then its referrer entries (an entry
    /// whose path info is gone is ignored anyway).
    async fn delete(&self, digest: Digest) -> Result<bool> {
        let key = self.info_key(&digest);
        let Some(info) = self.read(&key, &digest).await? else {
            return Ok(false);
        };
        let store = self.bucket.store();
        let gone = |k: &Path, r: std::result::Result<(), ::object_store::Error>| match r {
            Ok(()) | Err(::object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::storage(format!("object store: DELETE {k}"), e)),
        };
        gone(&key, store.delete(&key).await)?;
        let base = info.store_path.base_name();
        for r in &info.references {
            let entry = self.referrers_dir(r.digest()).child(base.as_str());
            gone(&entry, store.delete(&entry).await)?;
        }
        Ok(true)
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
        let this = self.clone();
        self.bucket
            .list(&self.info_dir())
            .map(move |key| {
                let this = this.clone();
                async move {
                    let key = key?;
                    let name = key.filename().unwrap_or_default();
                    let digest = parse_hash_part(name)
                        .map_err(|e| corrupt(&key, &format!("not a path info key: {e}")))?;
                    this.read(&key, &digest).await
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_filter_map(|i| async move { Ok(i) })
            .boxed()
    }

    /// A LIST of the path's referrer entries; each is answered only if
    /// the path info it names is there and still refers to the path.
    async fn referrers(&self, digest: Digest) -> Result<Vec<StorePath>> {
        let keys: Vec<Path> = self
            .bucket
            .list(&self.referrers_dir(&digest))
            .try_collect()
            .await?;
        let mut out: Vec<StorePath> = futures::stream::iter(keys)
            .map(|key| {
                let this = self.clone();
                async move {
                    let name = key.filename().unwrap_or_default().to_owned();
                    let Ok(referrer) = StorePath::from_base_name(&name) else {
                        tracing::warn!(object = %key, "ignoring a malformed referrer entry");
                        return Ok(None);
                    };
                    let info = this.get(*referrer.digest()).await?;
                    Ok::<_, Error>(info.and_then(|i| {
                        (i.store_path == referrer
                            && i.references.iter().any(|r| *r.digest() == digest))
                        .then_some(referrer)
                    }))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_filter_map(|p| async move { Ok(p) })
            .try_collect()
            .await?;
        sort_paths(&mut out);
        out.dedup();
        Ok(out)
    }
}
