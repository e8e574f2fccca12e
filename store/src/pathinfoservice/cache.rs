//! A path info cache: a near service (the mount's local redb) in front of a
//! far one (the remote service). Store paths are immutable, so a path info
//! once fetched stays valid; a cached one lets a remounted worker find its
//! paths with the service down. An absent path may appear any moment (an
//! upload elsewhere), so an answer "absent" is kept only briefly, if at
//! all ([`CachedPathInfoService::with_negative_ttl`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::BoxStream;
use parking_lot::Mutex;
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
    /// Paths far said were absent, until when that answer is reused.
    absent: Option<Arc<Absent>>,
}

/// The most "absent" answers kept; beyond it, expired ones are dropped,
/// and if none has expired, all of them.
const MAX_ABSENT: usize = 16 * 1024;

/// Recent "absent" answers of far, each kept for `ttl`.
struct Absent {
    ttl: Duration,
    until: Mutex<HashMap<[u8; DIGEST_LEN], Instant>>,
}

impl Absent {
    fn fresh(&self, digest: &[u8; DIGEST_LEN]) -> bool {
        let mut map = self.until.lock();
        match map.get(digest) {
            Some(&t) if t > Instant::now() => true,
            Some(_) => {
                map.remove(digest);
                false
            }
            None => false,
        }
    }

    fn insert(&self, digest: [u8; DIGEST_LEN]) {
        let now = Instant::now();
        let mut map = self.until.lock();
        if map.len() >= MAX_ABSENT {
            map.retain(|_, t| *t > now);
            if map.len() >= MAX_ABSENT {
                map.clear();
            }
        }
        map.insert(digest, now + self.ttl);
    }

    fn forget(&self, digest: &[u8; DIGEST_LEN]) {
        self.until.lock().remove(digest);
    }
}

impl CachedPathInfoService {
    /// `near` in front of `far`; "absent" is asked of far each time.
    pub fn new(near: Arc<dyn PathInfoService>, far: Arc<dyn PathInfoService>) -> Self {
        Self {
            near,
            far,
            absent: None,
        }
    }

    /// Keep far's "absent" answers for `ttl` (zero: not at all), so that a
    /// burst of lookups of a missing path costs one request; a path put
    /// through this service is seen at once, one uploaded elsewhere within
    /// `ttl`.
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.absent = (!ttl.is_zero()).then(|| {
            Arc::new(Absent {
                ttl,
                until: Mutex::default(),
            })
        });
        self
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
        if let Some(absent) = &self.absent
            && absent.fresh(&digest)
        {
            return Ok(None);
        }
        let Some(info) = self.far.get(digest).await? else {
            if let Some(absent) = &self.absent {
                absent.insert(digest);
            }
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
        if let Some(absent) = &self.absent {
            absent.forget(stored.store_path.digest());
        }
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

    /// A far side that counts its gets.
    struct Counting(MemoryPathInfoService, std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl PathInfoService for Counting {
        async fn get(&self, d: [u8; DIGEST_LEN]) -> Result<Option<PathInfo>> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.0.get(d).await
        }
        async fn put(&self, info: PathInfo) -> Result<PathInfo> {
            self.0.put(info).await
        }
        fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
            self.0.list()
        }
    }

    #[tokio::test]
    async fn absent_is_kept_only_for_the_ttl_and_forgotten_on_put() {
        let far = Arc::new(Counting(MemoryPathInfoService::new(), Default::default()));
        let gets = || far.1.load(std::sync::atomic::Ordering::SeqCst);
        let plain = CachedPathInfoService::new(Arc::new(MemoryPathInfoService::new()), far.clone());
        assert_eq!(plain.get([3; DIGEST_LEN]).await.unwrap(), None);
        assert_eq!(plain.get([3; DIGEST_LEN]).await.unwrap(), None);
        assert_eq!(gets(), 2, "without a TTL, absent is asked each time");

        let cache = CachedPathInfoService::new(Arc::new(MemoryPathInfoService::new()), far.clone())
            .with_negative_ttl(Duration::from_secs(3600));
        assert_eq!(cache.get([3; DIGEST_LEN]).await.unwrap(), None);
        assert_eq!(cache.get([3; DIGEST_LEN]).await.unwrap(), None);
        assert_eq!(gets(), 3, "absent kept within the TTL");
        // Uploaded elsewhere: seen once the TTL is over.
        let ttl = Duration::from_millis(50);
        let brief = CachedPathInfoService::new(Arc::new(MemoryPathInfoService::new()), far.clone())
            .with_negative_ttl(ttl);
        assert_eq!(brief.get([3; DIGEST_LEN]).await.unwrap(), None);
        far.0.put(info("b", 3)).await.unwrap();
        assert_eq!(
            cache.get([3; DIGEST_LEN]).await.unwrap(),
            None,
            "still within the TTL"
        );
        tokio::time::sleep(ttl).await; // lets the TTL run out; nothing else to wait for
        assert_eq!(
            brief.get([3; DIGEST_LEN]).await.unwrap(),
            Some(info("b", 3))
        );
        // Put through the cache: seen at once, TTL or not.
        assert_eq!(cache.get([4; DIGEST_LEN]).await.unwrap(), None);
        cache.put(info("c", 4)).await.unwrap();
        assert_eq!(
            cache.get([4; DIGEST_LEN]).await.unwrap(),
            Some(info("c", 4))
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
