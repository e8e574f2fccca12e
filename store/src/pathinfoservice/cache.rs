//! A path info cache: a near service (the mount's local redb) in front of a
//! far one (the remote service). Store paths are immutable, so a path info
//! once fetched stays valid; a cached one lets a remounted worker find its
//! paths with the service down.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use storefs_castore::Result;
use tracing::warn;

use super::PathInfoService;
use crate::PathInfo;
use crate::{DIGEST_LEN, StorePath};

/// Reads try `near`, then `far` (and keep what `far` gave in `near`);
/// writes go to `far`, then `near`; listings and referrers come from `far`,
/// the only side that knows every path.
#[derive(Clone)]
pub struct CachedPathInfoService {
    /// Where reads look first and fetched path infos are kept.
    near: Arc<dyn PathInfoService>,
    /// The authority.
    far: Arc<dyn PathInfoService>,
}

impl CachedPathInfoService {
    /// `near` in front of `far`.
    pub fn new(near: Arc<dyn PathInfoService>, far: Arc<dyn PathInfoService>) -> Self {
        Self { near, far }
    }
}

#[async_trait]
impl PathInfoService for CachedPathInfoService {
    async fn get(&self, digest: [u8; DIGEST_LEN]) -> Result<Option<PathInfo>> {
        match self.near.get(digest).await {
            Ok(Some(info)) => return Ok(Some(info)),
            Ok(None) => {}
            // A broken near side must not hide what far has.
            Err(e) => {
                warn!(error = %storefs_castore::Report(&e), "path info cache read failed; asking the service")
            }
        }
        let Some(info) = self.far.get(digest).await? else {
            return Ok(None);
        };
        // The far side may answer for another digest only by mistake or
        // malice; never cache (or return) a path info under a wrong key.
        if *info.store_path.digest() != digest {
            return Err(storefs_castore::Error::remote_msg(format!(
                "asked for the path info of hash {}, got {}",
                crate::nixbase32::encode(&digest),
                info.store_path
            )));
        }
        if let Err(e) = self.near.put(info.clone()).await {
            warn!(path = %info.store_path, error = %storefs_castore::Report(&e), "cannot cache path info");
        }
        Ok(Some(info))
    }

    async fn put(&self, info: PathInfo) -> Result<PathInfo> {
        let stored = self.far.put(info).await?;
        if let Err(e) = self.near.put(stored.clone()).await {
            warn!(path = %stored.store_path, error = %storefs_castore::Report(&e), "cannot cache path info");
        }
        Ok(stored)
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
        self.far.list()
    }

    async fn referrers(&self, digest: [u8; DIGEST_LEN]) -> Result<Vec<StorePath>> {
        self.far.referrers(digest).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryPathInfoService;
    use crate::StorePath;
    use storefs_castore::{B3Digest, Node};

    fn info(name: &str, seed: u8) -> PathInfo {
        PathInfo {
            store_path: StorePath::from_parts([seed; DIGEST_LEN], name).unwrap(),
            node: Node::File {
                digest: B3Digest::of(name.as_bytes()),
                size: name.len() as u64,
                executable: false,
            },
            references: vec![],
            nar_size: 128,
            nar_sha256: [seed; 32],
            signatures: vec![],
            deriver: None,
            ca: None,
        }
    }

    #[tokio::test]
    async fn fills_near_from_far_and_then_needs_no_far() {
        let near = Arc::new(MemoryPathInfoService::new());
        let far = Arc::new(MemoryPathInfoService::new());
        far.put(info("a", 1)).await.unwrap();
        let cache = CachedPathInfoService::new(near.clone(), far.clone());
        assert_eq!(
            cache.get([1; DIGEST_LEN]).await.unwrap(),
            Some(info("a", 1))
        );
        assert_eq!(near.get([1; DIGEST_LEN]).await.unwrap(), Some(info("a", 1)));
        assert_eq!(cache.get([2; DIGEST_LEN]).await.unwrap(), None);
        // With far emptied, near still answers.
        let cache2 = CachedPathInfoService::new(near, Arc::new(MemoryPathInfoService::new()));
        assert_eq!(
            cache2.get([1; DIGEST_LEN]).await.unwrap(),
            Some(info("a", 1))
        );
    }

    /// A far side that answers every digest with the same path info.
    struct Liar(PathInfo);

    #[async_trait]
    impl PathInfoService for Liar {
        async fn get(&self, _: [u8; DIGEST_LEN]) -> Result<Option<PathInfo>> {
            Ok(Some(self.0.clone()))
        }
        async fn put(&self, info: PathInfo) -> Result<PathInfo> {
            Ok(info)
        }
        fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
            Box::pin(futures::stream::empty())
        }
    }

    #[tokio::test]
    async fn a_path_info_under_the_wrong_digest_is_refused_and_not_cached() {
        let near = Arc::new(MemoryPathInfoService::new());
        let cache = CachedPathInfoService::new(near.clone(), Arc::new(Liar(info("a", 1))));
        assert!(cache.get([9; DIGEST_LEN]).await.is_err());
        assert_eq!(near.get([9; DIGEST_LEN]).await.unwrap(), None);
        assert_eq!(near.get([1; DIGEST_LEN]).await.unwrap(), None);
    }
}
