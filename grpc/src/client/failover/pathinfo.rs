//! [`PathInfoService`] and [`NarCalculationService`] over the replicas.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use storefs_castore::{Error, Node, Result};
use storefs_store::PathInfo;
use storefs_store::{DIGEST_LEN, StorePath};
use storefs_store::{NarCalculationService, PathInfoService};

use super::Failover;
use super::remotes::{Verdict, verdict};

#[async_trait]
impl PathInfoService for Failover {
    async fn get(&self, digest: [u8; DIGEST_LEN]) -> Result<Option<PathInfo>> {
        self.remotes
            .call("PathInfoService/Get", |r| async move {
                r.services.path_info.get(digest).await
            })
            .await
    }

    /// A path info is recorded after what it names, and recording it twice
    /// is harmless: a put that failed is sent again to the next replica.
    async fn put(&self, info: PathInfo) -> Result<PathInfo> {
        self.remotes
            .call("PathInfoService/Put", |r| {
                let info = info.clone();
                async move { r.services.path_info.put(info).await }
            })
            .await
    }

    /// From the first replica that starts answering; a listing that breaks
    /// after its first entry is not moved (it has no order to resume from).
    fn list(&self) -> BoxStream<'static, Result<PathInfo>> {
        let remotes = Arc::clone(&self.remotes);
        Box::pin(async_stream::try_stream! {
            let mut last: Option<Error> = None;
            for i in remotes.order() {
                let remote = &remotes.list[i];
                let mut stream = remote.services.path_info.list();
                let mut started = false;
                let mut failure = None;
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(info) => {
                            started = true;
                            yield info;
                        }
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                remotes.record(remote, failure.as_ref());
                match failure {
                    None => return,
                    Some(e) if started || verdict(&e) == Verdict::Final => Err(e)?,
                    Some(e) => last = Some(e),
                }
            }
            if let Some(e) = last {
                Err(e)?;
            }
        })
    }

    async fn referrers(&self, digest: [u8; DIGEST_LEN]) -> Result<Vec<StorePath>> {
        self.remotes
            .call("PathInfoService/Referrers", |r| async move {
                r.services.path_info.referrers(digest).await
            })
            .await
    }
}

#[async_trait]
impl NarCalculationService for Failover {
    async fn calculate_nar(&self, root: &Node) -> Result<(u64, [u8; 32])> {
        self.remotes
            .call("PathInfoService/CalculateNAR", |r| {
                let root = root.clone();
                async move { r.services.nar_calculation.calculate_nar(&root).await }
            })
            .await
    }
}
