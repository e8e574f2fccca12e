//! A [`PathInfoService`] in memory, with a reference index.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use parking_lot::RwLock;
use storefs_castore::Result;

use super::{PathInfoService, sort_paths};
use crate::PathInfo;
use crate::{DIGEST_LEN, StorePath};

type Digest = [u8; DIGEST_LEN];

#[derive(Default)]
struct Inner {
    /// Path infos by their store path's digest.
    infos: HashMap<Digest, PathInfo>,
    /// `(referenced, referrer)` pairs, so the referrers of a path are one
    /// range away.
    referrers: BTreeSet<(Digest, Digest)>,
}

/// Path infos held in memory; lost when dropped. Cheap to clone (shared).
/// The lock is a `parking_lot` one, held only for map operations and never
/// across an `.await`.
#[derive(Clone, Default)]
pub struct MemoryPathInfoService {
    inner: Arc<RwLock<Inner>>,
}

impl MemoryPathInfoService {
    /// An empty service.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PathInfoService for MemoryPathInfoService {
    async fn get(&self, digest: Digest) -> Result<Option<PathInfo>> {
        Ok(self.inner.read().infos.get(&digest).cloned())
    }

    async fn put(&self, info: PathInfo) -> Result<PathInfo> {
        let key = *info.store_path.digest();
        let mut inner = self.inner.write();
        if let Some(old) = inner.infos.remove(&key) {
            for r in &old.references {
                inner.referrers.remove(&(*r.digest(), key));
            }
        }
        for r in &info.references {
            inner.referrers.insert((*r.digest(), key));
        }
        inner.infos.insert(key, info.clone());
        Ok(info)
    }

    async fn delete(&self, digest: Digest) -> Result<bool> {
        let mut inner = self.inner.write();
        let Some(old) = inner.infos.remove(&digest) else {
            return Ok(false);
        };
        for r in &old.references {
            inner.referrers.remove(&(*r.digest(), digest));
        }
        Ok(true)
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
        let all: Vec<PathInfo> = self.inner.read().infos.values().cloned().collect();
        stream::iter(all.into_iter().map(Ok)).boxed()
    }

    async fn referrers(&self, digest: Digest) -> Result<Vec<StorePath>> {
        let inner = self.inner.read();
        let mut out: Vec<StorePath> = inner
            .referrers
            .range((digest, [0; DIGEST_LEN])..=(digest, [0xff; DIGEST_LEN]))
            .filter_map(|(_, referrer)| inner.infos.get(referrer))
            .map(|i| i.store_path.clone())
            .collect();
        drop(inner);
        sort_paths(&mut out);
        Ok(out)
    }
}
