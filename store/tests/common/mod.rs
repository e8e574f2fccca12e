//! Shared by the NAR integration tests: random trees on disk, and the
//! ingest → NAR pipeline over memory services.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use storefs_castore::{
    BlobService, DirectoryService, Entry, MemoryBlobService, MemoryDirectoryService, ingest_path,
};
use storefs_store::nar::write_nar;
use storefs_testkit::pseudo_random;

/// A tree to put on disk.
#[derive(Debug, Clone)]
pub enum Tree {
    /// Contents come from (seed, len) so that large files shrink cheaply.
    File {
        seed: u64,
        len: usize,
        mode: u32,
    },
    Symlink(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, Tree>),
}

/// File sizes near the chunker's boundaries (16K min, 64K avg, 256K max),
/// and small ones.
fn file_len() -> impl Strategy<Value = usize> {
    let k = 1024;
    prop_oneof![
        3 => 0usize..200,
        1 => Just(0usize),
        1 => prop::sample::select(vec![
            16 * k - 1, 16 * k, 16 * k + 1,
            64 * k - 1, 64 * k, 64 * k + 1,
            256 * k - 1, 256 * k, 256 * k + 1,
        ]),
    ]
}

/// Names: plain ones, odd bytes (non-UTF-8, spaces, newlines), and the
/// longest allowed.
fn name() -> impl Strategy<Value = Vec<u8>> {
    let odd = prop::collection::vec(
        any::<u8>().prop_filter("no NUL or slash", |b| *b != 0 && *b != b'/'),
        1..12,
    );
    prop_oneof![
        4 => "[a-z]{1,6}".prop_map(|s| s.into_bytes()),
        2 => odd,
        1 => prop::sample::select(vec![
            b"with space".to_vec(),
            b"new\nline".to_vec(),
            b"...".to_vec(),
            b".hidden".to_vec(),
            b"\xff\xfe".to_vec(),
            vec![b'n'; 255],
            vec![0xe9; 255],
        ]),
    ]
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn leaf() -> impl Strategy<Value = Tree> {
    let target = prop::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 1..40);
    prop_oneof![
        4 => (any::<u64>(), file_len(), prop::sample::select(vec![0o644u32, 0o755, 0o700, 0o611, 0o444]))
            .prop_map(|(seed, len, mode)| Tree::File { seed, len, mode }),
        1 => target.prop_map(Tree::Symlink),
        1 => prop::sample::select(vec![
            b"/absolute/dangling".to_vec(),
            b"../up/and/away".to_vec(),
            b".".to_vec(),
        ]).prop_map(Tree::Symlink),
        1 => Just(Tree::Dir(BTreeMap::new())),
    ]
}

/// A random tree: up to 4 levels, up to 5 entries a directory.
pub fn tree() -> impl Strategy<Value = Tree> {
    leaf().prop_recursive(4, 40, 5, |inner| {
        prop::collection::btree_map(name(), inner, 0..5).prop_map(Tree::Dir)
    })
}

/// Write `tree` at `path` (which must not exist).
pub fn write_tree(path: &Path, tree: &Tree) {
    let mut todo = vec![(path.to_owned(), tree)];
    while let Some((path, tree)) = todo.pop() {
        match tree {
            Tree::File { seed, len, mode } => {
                std::fs::write(&path, pseudo_random(*len, *seed)).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Tree::Symlink(target) => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &path).unwrap()
            }
            Tree::Dir(entries) => {
                std::fs::create_dir(&path).unwrap();
                for (name, child) in entries {
                    todo.push((path.join(std::ffi::OsStr::from_bytes(name)), child));
                }
            }
        }
    }
}

/// Fresh memory services.
pub fn services() -> (Arc<dyn BlobService>, Arc<dyn DirectoryService>) {
    (
        Arc::new(MemoryBlobService::default()),
        Arc::new(MemoryDirectoryService::default()),
    )
}

/// Ingest `path` into `services` and render its NAR.
pub async fn ingest_and_dump(
    path: &Path,
    bs: &Arc<dyn BlobService>,
    ds: &Arc<dyn DirectoryService>,
) -> (Entry, Vec<u8>) {
    let got = ingest_path(bs.clone(), ds.as_ref(), path).await.unwrap();
    let mut nar = Vec::new();
    write_nar(&mut nar, &got.entry.node, bs.as_ref(), ds.as_ref())
        .await
        .unwrap();
    (got.entry, nar)
}
