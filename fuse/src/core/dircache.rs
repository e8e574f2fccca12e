//! Directories kept in memory, least recently used evicted first.
//!
//! The bound is on the total number of entries held (a directory counts as
//! its entries plus one), so a walk over any tree keeps memory bounded.
//! A directory evicted here is asked of the directory service again, which
//! the CLI backs with a local cache, so after the first recursive fetch of
//! a store path that costs no network round trip.

use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use storefs_castore::{B3Digest, Directory};

#[derive(Debug)]
struct Lru {
    lru: LruCache<B3Digest, Arc<Directory>>,
    entries: usize,
}

/// The in-memory directory cache. `parking_lot` mutex: held for a map
/// operation only, never across an await.
#[derive(Debug)]
pub(crate) struct DirCache {
    inner: Mutex<Lru>,
    max_entries: usize,
}

fn weight(dir: &Directory) -> usize {
    dir.len() + 1
}

impl DirCache {
    /// A cache holding directories of at most `max_entries` entries in total.
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(Lru {
                lru: LruCache::unbounded(),
                entries: 0,
            }),
            max_entries,
        }
    }

    /// The directory with this digest, if held.
    pub(crate) fn get(&self, digest: &B3Digest) -> Option<Arc<Directory>> {
        self.inner.lock().lru.get(digest).cloned()
    }

    /// Keep `dir`, which must have digest `digest`.
    pub(crate) fn insert(&self, digest: B3Digest, dir: Arc<Directory>) {
        let mut inner = self.inner.lock();
        let w = weight(&dir);
        if let Some(old) = inner.lru.put(digest, dir) {
            inner.entries = inner.entries.saturating_sub(weight(&old));
        }
        inner.entries += w;
        while inner.entries > self.max_entries {
            match inner.lru.pop_lru() {
                Some((_, old)) => inner.entries = inner.entries.saturating_sub(weight(&old)),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use storefs_castore::{Node, PathComponent};

    use super::*;

    fn dir_with(n: usize) -> Directory {
        let mut d = Directory::new();
        for i in 0..n {
            d.add(
                PathComponent::try_from(format!("f{i}").as_str()).unwrap(),
                Node::File {
                    digest: B3Digest::of(&[]),
                    size: 0,
                    executable: false,
                },
            )
            .unwrap();
        }
        d
    }

    #[test]
    fn evicts_least_recently_used_beyond_the_bound() {
        let c = DirCache::new(10);
        let (a, b, x) = (dir_with(3), dir_with(4), dir_with(5));
        let (da, db, dx) = (a.digest(), b.digest(), x.digest());
        c.insert(da, Arc::new(a));
        c.insert(db, Arc::new(b));
        assert!(c.get(&da).is_some()); // a is now the most recent
        c.insert(dx, Arc::new(x)); // 4 + 5 + 6 > 10: b goes first, then...
        assert!(c.get(&dx).is_some());
        assert!(c.get(&db).is_none());
        assert_eq!(*c.get(&da).unwrap(), dir_with(3));
    }
}
