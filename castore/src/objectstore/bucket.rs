//! [`Bucket`]: one object store and a key prefix, with the few requests
//! the services make, counted. Concurrent GETs of one key share one
//! request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::future::{BoxFuture, Shared};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use parking_lot::Mutex;

use super::error::request;
use crate::{Error, Result};

/// One GET in flight, awaited by every reader of its key.
type Get = Shared<BoxFuture<'static, Result<Option<Bytes>, Arc<Error>>>>;

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

impl std::fmt::Display for RequestCountsSnapshot {
    /// `object store requests: 12 GET (3407872 bytes), 0 HEAD, 5 PUT (1048576 bytes), 1 LIST`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "object store requests: {} GET ({} bytes), {} HEAD, {} PUT ({} bytes), {} LIST",
            self.gets, self.get_bytes, self.heads, self.puts, self.put_bytes, self.lists
        )
    }
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
    /// GETs in flight, by key (a sync lock, never held across an await).
    inflight: Arc<Mutex<HashMap<Path, Get>>>,
}

impl Bucket {
    /// `store`, with every key under `prefix` (empty: the bucket's root).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self {
            store,
            prefix,
            counts: Arc::default(),
            inflight: Arc::default(),
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

    /// The object at `key`, `None` if there is none. A GET of a key
    /// already being fetched waits for that one instead of sending its
    /// own (a burst of misses of one object costs one request).
    pub async fn get(&self, key: &Path) -> Result<Option<Bytes>> {
        let shared = {
            let mut map = self.inflight.lock();
            match map.get(key) {
                Some(f) => f.clone(),
                None => {
                    let this = self.clone();
                    let k = key.clone();
                    let f = async move {
                        let got = this.get_once(&k).await.map_err(Arc::new);
                        this.inflight.lock().remove(&k);
                        got
                    }
                    .boxed()
                    .shared();
                    map.insert(key.clone(), f.clone());
                    f
                }
            }
        };
        shared.await.map_err(|e| e.duplicate())
    }

    /// One GET request.
    async fn get_once(&self, key: &Path) -> Result<Option<Bytes>> {
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

#[cfg(test)]
mod tests {
    use std::fmt;

    use async_trait::async_trait;
    use object_store::memory::InMemory;
    use object_store::{
        GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions,
        PutOptions, PutResult,
    };
    use tokio::sync::Semaphore;

    use super::*;

    /// An in-memory store whose GETs are counted and held until the test
    /// lets them go (fault injection: the real engine runs in the
    /// end-to-end tests).
    #[derive(Debug)]
    struct Gated {
        inner: InMemory,
        gets: AtomicU64,
        gate: Semaphore,
    }

    impl fmt::Display for Gated {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Gated")
        }
    }

    #[async_trait]
    impl ObjectStore for Gated {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            let _pass = self.gate.acquire().await;
            self.inner.get_opts(location, options).await
        }
        async fn delete(&self, location: &Path) -> object_store::Result<()> {
            self.inner.delete(location).await
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
            self.inner.copy(from, to).await
        }
        async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
            self.inner.copy_if_not_exists(from, to).await
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_gets_of_one_key_share_one_request() {
        let store = Arc::new(Gated {
            inner: InMemory::new(),
            gets: AtomicU64::new(0),
            gate: Semaphore::new(0),
        });
        let bucket = Bucket::new(store.clone(), Path::from("p"));
        let key = Path::from("p/chunks/b3/abcd/x");
        bucket
            .put(&key, Bytes::from_static(b"object"))
            .await
            .unwrap();
        let missing = Path::from("p/chunks/b3/abcd/y");

        // Eight readers of one key and three of an absent one, all waiting
        // before any GET is let through.
        let reads = futures::future::join_all((0..8).map(|_| bucket.get(&key)));
        let absent = futures::future::join_all((0..3).map(|_| bucket.get(&missing)));
        let release = async {
            // join! polls the readers first: each has asked by now.
            assert_eq!(store.gets.load(Ordering::SeqCst), 2, "one GET per key");
            store.gate.add_permits(Semaphore::MAX_PERMITS / 2);
        };
        let (got, none, ()) = tokio::join!(reads, absent, release);
        for r in got {
            assert_eq!(r.unwrap().as_deref(), Some(&b"object"[..]));
        }
        for r in none {
            assert_eq!(r.unwrap(), None);
        }
        assert_eq!(store.gets.load(Ordering::SeqCst), 2);
        assert_eq!(bucket.counts().snapshot().gets, 2);
        // Once answered, the next GET is a request of its own.
        assert!(bucket.get(&key).await.unwrap().is_some());
        assert_eq!(store.gets.load(Ordering::SeqCst), 3);
    }
}
