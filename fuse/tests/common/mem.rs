//! A minimal in-memory path info service for the mount tests.
//!
//! Test-only stand-in until store's memory backend lands in main (castore's
//! memory blob and directory services are used directly).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use parking_lot::Mutex;
use storefs_castore::Result;
use storefs_store::pathinfo::PathInfo;
use storefs_store::pathinfoservice::PathInfoService;

/// Path infos in memory.
#[derive(Default, Clone)]
pub struct MemPathInfos {
    inner: Arc<Mutex<HashMap<[u8; 20], PathInfo>>>,
}

#[async_trait]
impl PathInfoService for MemPathInfos {
    async fn get(&self, digest: [u8; 20]) -> Result<Option<PathInfo>> {
        Ok(self.inner.lock().get(&digest).cloned())
    }

    async fn put(&self, info: PathInfo) -> Result<PathInfo> {
        self.inner
            .lock()
            .insert(*info.store_path.digest(), info.clone());
        Ok(info)
    }

    fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
        let all: Vec<_> = self.inner.lock().values().cloned().map(Ok).collect();
        Box::pin(futures::stream::iter(all))
    }
}
