//! [`Bucket`]: one object store and a key prefix, with the few requests
//! the services make, counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use super::error::request;
use crate::Result;

/// Requests made to an object store, for figures and benchmarks.
#[derive(Debug, Default)]
pub struct RequestCounts {
    gets: AtomicU64,
    get_bytes: AtomicU64,
    heads: AtomicU64,
    puts: AtomicU64,
    put_bytes: AtomicU64,
    lists: AtomicU64,
}

/// A copy of [`RequestCounts`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCountsSnapshot {
    /// GET requests (found or not).
    pub gets: u64,
    /// Bytes the GETs returned (as stored: compressed).
    pub get_bytes: u64,
    /// HEAD requests.
    pub heads: u64,
    /// PUT requests.
    pub puts: u64,
    /// Bytes PUT.
    pub put_bytes: u64,
    /// LIST requests (pages).
    pub lists: u64,
}

impl RequestCounts {
    /// The counts now.
    pub fn snapshot(&self) -> RequestCountsSnapshot {
        RequestCountsSnapshot {
            gets: self.gets.load(Ordering::Relaxed),
            get_bytes: self.get_bytes.load(Ordering::Relaxed),
            heads: self.heads.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            put_bytes: self.put_bytes.load(Ordering::Relaxed),
            lists: self.lists.load(Ordering::Relaxed),
        }
    }
}

/// An object store and the prefix every key of this store sits under.
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    counts: Arc<RequestCounts>,
}

impl Bucket {
    /// `store`, with every key under `prefix` (empty: the bucket's root).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self {
            store,
            prefix,
            counts: Arc::default(),
        }
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key prefix.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The requests made so far through this bucket and its clones.
    pub fn counts(&self) -> &Arc<RequestCounts> {
        &self.counts
    }

    /// The object at `key`, `None` if there is none.
    pub async fn get(&self, key: &Path) -> Result<Option<Bytes>> {
        self.counts.gets.fetch_add(1, Ordering::Relaxed);
        let got = match self.store.get(key).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        match got {
            Ok(b) => {
                self.counts
                    .get_bytes
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(Some(b))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(request("GET", key, e)),
        }
    }

    /// Whether an object is at `key`.
    pub async fn exists(&self, key: &Path) -> Result<bool> {
        self.counts.heads.fetch_add(1, Ordering::Relaxed);
        match self.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(request("HEAD", key, e)),
        }
    }

    /// Store `bytes` at `key`, replacing what is there (objects are
    /// content-addressed or written last, so a replacement is the same
    /// record or a newer one).
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.counts.puts.fetch_add(1, Ordering::Relaxed);
        self.counts
            .put_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.store
            .put(key, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| request("PUT", key, e))
    }

    /// The keys under `dir` (recursively), in no particular order.
    pub fn list(&self, dir: &Path) -> BoxStream<'static, Result<Path>> {
        self.counts.lists.fetch_add(1, Ordering::Relaxed);
        let dir_for_err = dir.clone();
        self.store
            .list(Some(dir))
            .map(move |r| {
                r.map(|meta| meta.location)
                    .map_err(|e| request("LIST", &dir_for_err, e))
            })
            .boxed()
    }
}
