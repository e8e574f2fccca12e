//! The conformance suites against the object-store backends (a local
//! directory through `file:///`, and object_store's in-memory store), the
//! snix layout read back by key, and corrupt objects.

use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path;
use storefs_castore::objectstore::{Bucket, ObjectCastore, layout};
use storefs_castore::{B3Digest, BlobService, Directory, DirectoryService};
use storefs_testkit::suites::blob::{check_blob, write_blob};
use storefs_testkit::suites::directory::{collect, diamond};
use storefs_testkit::{blob_suite, directory_suite, pseudo_random};
use tempfile::TempDir;

/// A fresh object store in a temp directory (what `file:///` opens).
fn local() -> (ObjectCastore, TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let fs = object_store::local::LocalFileSystem::new_with_prefix(tmp.path()).unwrap();
    (
        ObjectCastore::new(Bucket::new(Arc::new(fs), Path::default())),
        tmp,
    )
}

/// A fresh in-memory object store under a prefix.
fn in_memory() -> ObjectCastore {
    ObjectCastore::new(Bucket::new(
        Arc::new(object_store::memory::InMemory::new()),
        Path::from("some/prefix"),
    ))
}

fn blobs_local() -> (Arc<dyn BlobService>, TempDir) {
    let (o, t) = local();
    (o.blobs, t)
}

fn dirs_local() -> (Arc<dyn DirectoryService>, TempDir) {
    let (o, t) = local();
    (o.directories, t)
}

fn blobs_memory() -> (Arc<dyn BlobService>, ()) {
    (in_memory().blobs, ())
}

fn dirs_memory() -> (Arc<dyn DirectoryService>, ()) {
    (in_memory().directories, ())
}

blob_suite!(blobs_local_dir, crate::blobs_local());
directory_suite!(dirs_local_dir, crate::dirs_local());

blob_suite!(blobs_in_memory, crate::blobs_memory());
directory_suite!(dirs_in_memory, crate::dirs_memory());

/// The objects a write leaves, read back by key with the snix layout
/// rules: chunks zstd under `chunks/b3/<4>/<64>`, the chunk list a
/// StatBlobResponse under `blobs/…`, closures root first under `dirs/…`.
#[tokio::test]
async fn the_bucket_follows_the_snix_layout() {
    let o = in_memory();
    let store = o.bucket.store().clone();
    let prefix = "some/prefix";
    // A small blob: one chunk object under its own digest, no list.
    let small = write_blob(&*o.blobs, b"Hello World!", 5).await;
    let key = Path::from(format!(
        "{prefix}/chunks/b3/5ca7/5ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c"
    ));
    let raw = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(zstd::decode_all(&raw[..]).unwrap(), b"Hello World!");
    assert_eq!(
        small.to_hex(),
        "5ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c"
    );
    assert!(
        store
            .head(&Path::from(format!(
                "{prefix}/blobs/b3/5ca7/{}",
                small.to_hex()
            )))
            .await
            .is_err()
    );
    // A large blob: its list, and each chunk, by key.
    let data = pseudo_random(2 << 20, 3);
    let big = write_blob(&*o.blobs, &data, 100_000).await;
    let hex = big.to_hex();
    let list = store
        .get(&Path::from(format!(
            "{prefix}/blobs/b3/{}/{hex}",
            &hex[..4]
        )))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let chunks = snix_chunk_list(&list);
    assert!(chunks.len() > 2);
    let mut whole = Vec::new();
    for (digest, size) in &chunks {
        let h = hex::encode(digest);
        let raw = store
            .get(&Path::from(format!("{prefix}/chunks/b3/{}/{h}", &h[..4])))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let chunk = zstd::decode_all(&raw[..]).unwrap();
        assert_eq!(chunk.len() as u64, *size);
        assert_eq!(blake3::hash(&chunk).as_bytes(), &digest[..]);
        whole.extend_from_slice(&chunk);
    }
    assert_eq!(whole, data);
    // A closure: u32-BE length-prefixed Directory messages, root first.
    let t = diamond();
    let mut p = o.directories.put_multiple_start();
    for d in [&t.c, &t.d, &t.a, &t.b, &t.root] {
        p.put(d.clone()).await.unwrap();
    }
    let root = p.close().await.unwrap();
    let hex = root.to_hex();
    let raw = store
        .get(&Path::from(format!("{prefix}/dirs/b3/{}/{hex}", &hex[..4])))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let plain = zstd::decode_all(&raw[..]).unwrap();
    let mut rest = &plain[..];
    let mut got = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        got.push(Directory::decode(&rest[4..4 + len]).unwrap());
        rest = &rest[4 + len..];
    }
    assert_eq!(got, vec![t.root.clone(), t.a, t.b, t.c, t.d]);
}

/// Decode a StatBlobResponse by hand: field 2, repeated {1: bytes, 2: varint}.
fn snix_chunk_list(mut b: &[u8]) -> Vec<(Vec<u8>, u64)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        assert_eq!(varint(&mut b), (2 << 3) | 2, "field 2, length-delimited");
        let len = varint(&mut b) as usize;
        let mut m = &b[..len];
        b = &b[len..];
        let (mut digest, mut size) = (Vec::new(), 0);
        while !m.is_empty() {
            match varint(&mut m) {
                0x0a => {
                    let l = varint(&mut m) as usize;
                    digest = m[..l].to_vec();
                    m = &m[l..];
                }
                0x10 => size = varint(&mut m),
                other => panic!("unexpected tag {other}"),
            }
        }
        out.push((digest, size));
    }
    out
}

/// What snix writes that storefs does not: a chunk list for a one-chunk
/// blob. It reads back as a whole blob.
#[tokio::test]
async fn a_one_chunk_list_written_by_snix_reads_as_a_whole_blob() {
    let o = in_memory();
    let data = b"a file snix wrote".to_vec();
    let d = write_blob(&*o.blobs, &data, 7).await;
    let list = layout::encode_chunk_list(&[storefs_castore::ChunkMeta {
        digest: d,
        size: data.len() as u64,
    }]);
    o.bucket
        .put(&layout::blob_key(o.bucket.prefix(), &d), list)
        .await
        .unwrap();
    check_blob(&*o.blobs, &d, &data).await;
}

/// A corrupt chunk object fails its own read with an error naming the
/// object; the other chunks of a batch, and other blobs, read fine.
#[tokio::test]
async fn a_corrupt_chunk_fails_only_its_own_read() {
    let o = in_memory();
    let good = pseudo_random(10_000, 1);
    let bad = pseudo_random(10_000, 2);
    let dg = write_blob(&*o.blobs, &good, 4096).await;
    let db = write_blob(&*o.blobs, &bad, 4096).await;
    let key = layout::chunk_key(o.bucket.prefix(), &db);
    let wrong = layout::encode_chunk(&pseudo_random(10_000, 3)).unwrap();
    o.bucket.put(&key, wrong).await.unwrap();
    let err = o.blobs.read_chunk(&db).await.unwrap_err().to_string();
    assert!(
        err.contains(key.as_ref()) && err.contains("corrupt"),
        "{err}"
    );
    let batch = o.blobs.read_chunk_batch(&[dg, db]).await;
    assert_eq!(batch[0].as_ref().unwrap().as_deref(), Some(&good[..]));
    assert!(batch[1].is_err());
    // Not zstd at all.
    o.bucket
        .put(&key, Bytes::from_static(b"nonsense"))
        .await
        .unwrap();
    assert!(o.blobs.read_chunk(&db).await.is_err());
    check_blob(&*o.blobs, &dg, &good).await;
}

/// A closure object that is out of order, or lacks a directory, is an
/// error naming it; nothing of it is yielded.
#[tokio::test]
async fn a_corrupt_closure_is_refused_whole() {
    let o = in_memory();
    let t = diamond();
    let mut p = o.directories.put_multiple_start();
    for d in [&t.c, &t.d, &t.a, &t.b, &t.root] {
        p.put(d.clone()).await.unwrap();
    }
    let root = p.close().await.unwrap();
    let key = layout::closure_key(o.bucket.prefix(), &root);
    for bad in [
        vec![t.root.clone(), t.b.clone(), t.c.clone(), t.d.clone()],
        vec![
            t.a.clone(),
            t.root.clone(),
            t.b.clone(),
            t.c.clone(),
            t.d.clone(),
        ],
    ] {
        o.bucket
            .put(&key, layout::encode_closure(&bad).unwrap())
            .await
            .unwrap();
        let err = collect(&*o.directories, &root)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(key.as_ref()), "{err}");
        assert!(o.directories.get(&root).await.is_err());
    }
}

/// A directory below a root is found through its index entry; a put of a
/// closure naming stored directories writes a complete closure object.
#[tokio::test]
async fn directories_below_a_root_are_found_and_closures_are_complete() {
    let o = in_memory();
    let t = diamond();
    let mut p = o.directories.put_multiple_start();
    p.put(t.c.clone()).await.unwrap();
    p.put(t.a.clone()).await.unwrap();
    p.close().await.unwrap();
    assert_eq!(
        o.directories.get(&t.c.digest()).await.unwrap(),
        Some(t.c.clone())
    );
    let mut p = o.directories.put_multiple_start();
    p.put(t.d.clone()).await.unwrap();
    p.put(t.b.clone()).await.unwrap();
    p.put(t.root.clone()).await.unwrap();
    let root = p.close().await.unwrap();
    // The root's object alone holds the whole closure (snix reads only it).
    let raw = o
        .bucket
        .get(&layout::closure_key(o.bucket.prefix(), &root))
        .await
        .unwrap()
        .unwrap();
    let key = layout::closure_key(o.bucket.prefix(), &root);
    let dirs = layout::decode_closure(&key, &root, &raw).unwrap();
    assert_eq!(dirs.len(), 5);
    let _: B3Digest = root;
}
