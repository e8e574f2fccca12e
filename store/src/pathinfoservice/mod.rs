//! Stores of `PathInfo`, keyed by the store path's 20-byte digest.
//!
//! Backends: [`MemoryPathInfoService`], [`RedbPathInfoService`] (in the
//! same redb file as castore's data) and [`ObjectStorePathInfoService`]
//! (in the same bucket as castore's objects). All keep a reference index,
//! so [`PathInfoService::referrers`] does not scan.

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use storefs_castore::{Node, Result};

use crate::PathInfo;
use crate::{DIGEST_LEN, StorePath};

mod cache;
mod memory;
mod object_store;
mod redb;

pub use self::object_store::ObjectStorePathInfoService;
pub use cache::CachedPathInfoService;
pub use memory::MemoryPathInfoService;
pub use redb::RedbPathInfoService;

/// A store of path infos.
#[async_trait]
pub trait PathInfoService: Send + Sync + 'static {
    /// The path info whose store path has this digest (hash part), if any.
    async fn get(&self, digest: [u8; DIGEST_LEN]) -> Result<Option<PathInfo>>;

    /// Record a path info, replacing one with the same digest. The root
    /// node's contents must already be in castore. Returns what was stored
    /// (a service may add signatures).
    async fn put(&self, info: PathInfo) -> Result<PathInfo>;

    /// Every path info held, in no particular order.
    fn list(&self) -> BoxStream<'static, Result<PathInfo>>;

    /// Remove the path info with this digest (and its entries in the
    /// reference index); whether there was one. The data it names stays
    /// until garbage collection finds nothing else reaches it. Callers
    /// check referrers first (`storefs delete`): this does not.
    ///
    /// Added after the first version of this trait; the default refuses
    /// (a remote or a cache in front of one cannot delete).
    async fn delete(&self, digest: [u8; DIGEST_LEN]) -> Result<bool> {
        let _ = digest;
        Err(storefs_castore::Error::InvalidRequest(
            "this store cannot delete path infos (delete them where the store lives)".into(),
        ))
    }

    /// The paths held whose references include the path with this digest
    /// (Nix's QueryReferrers), itself included if it refers to itself;
    /// sorted by base name. The path itself need not be held.
    ///
    /// Added after the first version of this trait, with a default that
    /// scans [`PathInfoService::list`]; the memory and redb backends answer
    /// from an index kept in step with `put`.
    async fn referrers(&self, digest: [u8; DIGEST_LEN]) -> Result<Vec<StorePath>> {
        let mut out = Vec::new();
        let mut all = self.list();
        while let Some(info) = all.next().await {
            let info = info?;
            if info.references.iter().any(|r| *r.digest() == digest) {
                out.push(info.store_path);
            }
        }
        sort_paths(&mut out);
        Ok(out)
    }
}

/// Sort paths as Nix's `StorePathSet` does: by base name.
pub(crate) fn sort_paths(paths: &mut [StorePath]) {
    paths.sort_by_cached_key(|p| p.base_name());
}

/// Computes the NAR size and sha256 of a castore node, as `CalculateNAR`
/// does on the gRPC service. Kept apart from [`PathInfoService`] because it
/// needs the blobs and directories, not the path infos.
#[async_trait]
pub trait NarCalculationService: Send + Sync + 'static {
    /// `(nar_size, nar_sha256)` of the NAR that `root` renders to.
    async fn calculate_nar(&self, root: &Node) -> Result<(u64, [u8; 32])>;
}
