//! Stores of `PathInfo`, keyed by the store path's 20-byte digest.

use async_trait::async_trait;
use futures::stream::BoxStream;
use storefs_castore::{Node, Result};

use crate::pathinfo::PathInfo;
use crate::store_path::DIGEST_LEN;

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
}

/// Computes the NAR size and sha256 of a castore node, as `CalculateNAR`
/// does on the gRPC service. Kept apart from [`PathInfoService`] because it
/// needs the blobs and directories, not the path infos.
#[async_trait]
pub trait NarCalculationService: Send + Sync + 'static {
    /// `(nar_size, nar_sha256)` of the NAR that `root` renders to.
    async fn calculate_nar(&self, root: &Node) -> Result<(u64, [u8; 32])>;
}
