//! The inode table: inode numbers the kernel holds, what each stands for,
//! and how many lookups the kernel has not yet forgotten.
//!
//! One map holds the data (`by_ino`); a secondary index (`by_key`) finds the
//! inode already handed out for the same thing, so an inode number stays the
//! same for as long as the kernel references it. Every successful lookup
//! (and every readdirplus entry) adds one to the count; `forget` subtracts,
//! saturating, and removes the inode from both maps at zero, so memory
//! follows what the kernel keeps, not what was ever walked. Numbers are never
//! reused (a u64 counter), so a forgotten inode cannot be confused with a new
//! one and generation numbers can stay 0.
//!
//! Invariants: every entry of `by_key` names an inode of `by_ino` whose
//! `key` is that key, and every inode of `by_ino` but the root has its key in
//! `by_key`. The root (inode 1) is never removed.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use storefs_castore::{B3Digest, Node, SymlinkTarget};

/// The root of the mount.
pub const ROOT_INO: u64 = 1;

/// What an inode stands for. Immutable once created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InodeData {
    /// The mount's root: the store directory.
    Root,
    /// A directory of some store path.
    Directory {
        /// Its digest in castore.
        digest: B3Digest,
        /// 2 + the number of child directories.
        nlink: u32,
        /// The inode of the directory holding it, for `..`.
        parent: u64,
    },
    /// A regular file.
    File {
        /// The blob's digest.
        digest: B3Digest,
        /// Exact length.
        size: u64,
        /// 0555 rather than 0444.
        executable: bool,
    },
    /// A symbolic link.
    Symlink {
        /// Where it points.
        target: SymlinkTarget,
    },
}

/// What identifies "the same" inode for the secondary index.
///
/// Directories get one inode per path (parent and name): the kernel does not
/// allow a directory to have two parents. So do the store paths at the root,
/// whatever their type. Files and symlinks below them are immutable content,
/// so one inode per content serves every place it appears, and the page
/// cache holds identical files once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum InodeKey {
    /// A directory (or any store path at the root) at `name` in `parent`.
    Child {
        /// The parent's inode.
        parent: u64,
        /// The entry name.
        name: Bytes,
    },
    /// A file by content and mode.
    File {
        /// The blob.
        digest: B3Digest,
        /// Executable bit.
        executable: bool,
    },
    /// A symlink by target.
    Symlink(SymlinkTarget),
}

impl InodeKey {
    /// The key for `node`, found at `name` in `parent`.
    pub(crate) fn for_node(parent: u64, name: &[u8], node: &Node) -> Self {
        match node {
            _ if parent == ROOT_INO => InodeKey::Child {
                parent,
                name: Bytes::copy_from_slice(name),
            },
            Node::Directory { .. } => InodeKey::Child {
                parent,
                name: Bytes::copy_from_slice(name),
            },
            Node::File {
                digest, executable, ..
            } => InodeKey::File {
                digest: *digest,
                executable: *executable,
            },
            Node::Symlink { target } => InodeKey::Symlink(target.clone()),
        }
    }
}

#[derive(Debug)]
struct Inode {
    data: Arc<InodeData>,
    key: Option<InodeKey>,
    lookups: u64,
}

#[derive(Debug)]
struct Tables {
    by_ino: HashMap<u64, Inode>,
    by_key: HashMap<InodeKey, u64>,
    next: u64,
}

/// The inode table. A `parking_lot` mutex (not tokio's): it is held only
/// for a few map operations, never across an await.
#[derive(Debug)]
pub(crate) struct InodeTable {
    tables: Mutex<Tables>,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    /// A table holding only the root.
    pub(crate) fn new() -> Self {
        let mut by_ino = HashMap::new();
        by_ino.insert(
            ROOT_INO,
            Inode {
                data: Arc::new(InodeData::Root),
                key: None,
                lookups: 0,
            },
        );
        Self {
            tables: Mutex::new(Tables {
                by_ino,
                by_key: HashMap::new(),
                next: ROOT_INO + 1,
            }),
        }
    }

    /// What `ino` stands for, if the kernel still holds it.
    pub(crate) fn get(&self, ino: u64) -> Option<Arc<InodeData>> {
        self.tables.lock().by_ino.get(&ino).map(|i| i.data.clone())
    }

    /// The inode already handed out for `key`, if any, without counting a
    /// lookup.
    pub(crate) fn find(&self, key: &InodeKey) -> Option<(u64, Arc<InodeData>)> {
        let t = self.tables.lock();
        let ino = *t.by_key.get(key)?;
        t.by_ino.get(&ino).map(|i| (ino, i.data.clone()))
    }

    /// Count one lookup of the inode for `key`, creating it with `make` if
    /// there is none. Returns its number and data.
    pub(crate) fn lookup(
        &self,
        key: InodeKey,
        make: impl FnOnce() -> InodeData,
    ) -> (u64, Arc<InodeData>) {
        let mut t = self.tables.lock();
        if let Some(&ino) = t.by_key.get(&key)
            && let Some(inode) = t.by_ino.get_mut(&ino)
        {
            inode.lookups = inode.lookups.saturating_add(1);
            return (ino, inode.data.clone());
        }
        let ino = t.next;
        t.next += 1;
        let data = Arc::new(make());
        t.by_key.insert(key.clone(), ino);
        t.by_ino.insert(
            ino,
            Inode {
                data: data.clone(),
                key: Some(key),
                lookups: 1,
            },
        );
        (ino, data)
    }

    /// The kernel forgets `n` lookups of `ino`. At zero the inode is gone.
    /// Unknown inodes and the root are ignored.
    pub(crate) fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut t = self.tables.lock();
        let Some(inode) = t.by_ino.get_mut(&ino) else {
            return;
        };
        inode.lookups = inode.lookups.saturating_sub(n);
        if inode.lookups == 0
            && let Some(gone) = t.by_ino.remove(&ino)
            && let Some(key) = gone.key
            && t.by_key.get(&key) == Some(&ino)
        {
            t.by_key.remove(&key);
        }
    }

    /// A new kernel (a guest rebooted against the same backend) holds no
    /// inode of the old one: drop every inode but the root. Numbers go on
    /// from where they were, so none is reused.
    pub(crate) fn forget_all(&self) {
        let mut t = self.tables.lock();
        t.by_ino.retain(|&ino, _| ino == ROOT_INO);
        t.by_key.clear();
    }

    /// Past `max` inodes held: entries (parent inode, name) for the kernel
    /// to drop, so that it forgets the inodes below them and memory follows
    /// the bound rather than everything ever walked. About an eighth of
    /// the directories held, the oldest first (lowest numbers: numbers only
    /// grow), those below a store path before the store paths themselves.
    /// Empty at or below `max`. Dropping an entry the kernel still uses
    /// (an open directory, a working directory) does nothing; the next
    /// pass picks among the rest again.
    pub(crate) fn entries_to_drop(&self, max: usize) -> Vec<(u64, Bytes)> {
        let t = self.tables.lock();
        if t.by_ino.len() <= max {
            return Vec::new();
        }
        let mut dirs: Vec<(bool, u64, u64, Bytes)> = t
            .by_ino
            .iter()
            .filter_map(|(&ino, inode)| match (&inode.key, &*inode.data) {
                (Some(InodeKey::Child { parent, name }), InodeData::Directory { .. }) => {
                    Some((*parent == ROOT_INO, ino, *parent, name.clone()))
                }
                (Some(InodeKey::Child { parent, name }), _) => {
                    // A store path that is a file or symlink: dropped last.
                    Some((true, ino, *parent, name.clone()))
                }
                _ => None,
            })
            .collect();
        drop(t);
        let n = (dirs.len() / 8).max(1).min(dirs.len());
        if n == 0 {
            return Vec::new();
        }
        dirs.select_nth_unstable_by_key(n - 1, |(top, ino, ..)| (*top, *ino));
        dirs.truncate(n);
        dirs.into_iter()
            .map(|(_, _, parent, name)| (parent, name))
            .collect()
    }

    /// How many inodes are held (the root included).
    pub(crate) fn len(&self) -> usize {
        self.tables.lock().by_ino.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forget_all_keeps_the_root_and_never_reuses_numbers() {
        let t = InodeTable::new();
        let (k, d) = file(1);
        let (a, _) = t.lookup(k.clone(), || d.clone());
        t.lookup(k.clone(), || d.clone());
        assert_eq!(t.len(), 2);
        t.forget_all();
        assert_eq!(t.len(), 1);
        assert!(t.get(ROOT_INO).is_some());
        assert!(t.get(a).is_none() && t.find(&k).is_none());
        let (b, _) = t.lookup(k, || d);
        assert!(b > a);
    }

    #[test]
    fn entries_to_drop_are_the_oldest_directories_below_store_paths_first() {
        let t = InodeTable::new();
        let dir = |parent: u64, name: &str| {
            t.lookup(
                InodeKey::Child {
                    parent,
                    name: Bytes::copy_from_slice(name.as_bytes()),
                },
                || InodeData::Directory {
                    digest: B3Digest::of(name.as_bytes()),
                    nlink: 2,
                    parent,
                },
            )
            .0
        };
        let top = dir(ROOT_INO, "top");
        let subs: Vec<u64> = (0..16).map(|i| dir(top, &format!("d{i}"))).collect();
        for n in 0..4 {
            let (k, d) = file(n);
            t.lookup(k, || d);
        }
        // 1 root + 1 top + 16 dirs + 4 files = 22.
        assert!(t.entries_to_drop(22).is_empty());
        // An eighth of the 17 entries that can be dropped: the two oldest
        // directories below the store path; not the store path itself.
        let drop = t.entries_to_drop(21);
        let mut names: Vec<Bytes> = drop.iter().map(|(_, n)| n.clone()).collect();
        names.sort();
        assert_eq!(
            names,
            vec![Bytes::from_static(b"d0"), Bytes::from_static(b"d1")]
        );
        assert!(drop.iter().all(|(p, _)| *p == top));
        // Only store paths left: they go too.
        for s in &subs {
            t.forget(*s, 1);
        }
        assert_eq!(
            t.entries_to_drop(1),
            vec![(ROOT_INO, Bytes::from_static(b"top"))]
        );
    }

    fn file(n: u8) -> (InodeKey, InodeData) {
        let digest = B3Digest::of(&[n]);
        (
            InodeKey::File {
                digest,
                executable: false,
            },
            InodeData::File {
                digest,
                size: 1,
                executable: false,
            },
        )
    }

    #[test]
    fn root_is_always_there() {
        let t = InodeTable::new();
        assert_eq!(t.get(ROOT_INO).as_deref(), Some(&InodeData::Root));
        t.forget(ROOT_INO, 100);
        assert_eq!(t.get(ROOT_INO).as_deref(), Some(&InodeData::Root));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn same_key_same_inode_until_forgotten() {
        let t = InodeTable::new();
        let (k, d) = file(1);
        let (a, _) = t.lookup(k.clone(), || d.clone());
        let (b, _) = t.lookup(k.clone(), || unreachable!("must reuse"));
        assert_eq!(a, b);
        assert_ne!(a, ROOT_INO);
        t.forget(a, 1);
        assert!(t.get(a).is_some(), "one lookup still outstanding");
        t.forget(a, 1);
        assert!(t.get(a).is_none());
        assert!(t.find(&k).is_none());
        let (c, _) = t.lookup(k, || d.clone());
        assert_ne!(c, a, "numbers are never reused");
    }

    #[test]
    fn forget_saturates_and_unknown_is_ignored() {
        let t = InodeTable::new();
        let (k, d) = file(2);
        let (a, _) = t.lookup(k, || d);
        t.forget(a, 1000);
        assert!(t.get(a).is_none());
        t.forget(a, 1);
        t.forget(12345, 1);
        assert_eq!(t.len(), 1);
        assert!(t.get(12345).is_none());
    }

    #[test]
    fn directories_are_per_path() {
        let t = InodeTable::new();
        let node = Node::Directory {
            digest: B3Digest::of(b"d"),
            size: 0,
        };
        let k1 = InodeKey::for_node(ROOT_INO, b"a", &node);
        let k2 = InodeKey::for_node(ROOT_INO, b"b", &node);
        let data = InodeData::Directory {
            digest: B3Digest::of(b"d"),
            nlink: 2,
            parent: ROOT_INO,
        };
        let (a, _) = t.lookup(k1, || data.clone());
        let (b, _) = t.lookup(k2, || data.clone());
        assert_ne!(a, b);
        assert_eq!(t.len(), 3);
    }
}
