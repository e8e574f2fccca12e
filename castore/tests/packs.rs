//! A cache's small chunks kept in packs (`castore.packs`): what a reader
//! sees of them (byte-exact across a reopen, one corrupt member failing
//! alone, batches over several packs, old unpacked records), and what the
//! quota does with them (evicts whole packs, stays within its bound, and a
//! cache fetches what was evicted again).

use std::sync::Arc;

use bytes::Bytes;
use storefs_castore::{
    B3Digest, BlobService, CHUNK_PACKED, CHUNK_RAW, CachedBlobService, ChunkStore, Error,
    MemoryBlobService, RedbBlobService, RedbStore,
};
use storefs_testkit::pseudo_random;

/// `n` chunks of `len` pseudo-random (incompressible) bytes, from `seed`.
fn chunks(n: usize, len: usize, seed: u64) -> Vec<(B3Digest, Bytes)> {
    (0..n)
        .map(|i| {
            let data = Bytes::from(pseudo_random(len, seed + i as u64));
            (B3Digest::of(&data), data)
        })
        .collect()
}

fn cache_service(store: &RedbStore, quota: u64) -> RedbBlobService {
    store.blob_service().with_quota(quota)
}

async fn assert_reads(svc: &RedbBlobService, chunks: &[(B3Digest, Bytes)]) {
    for (i, (d, data)) in chunks.iter().enumerate() {
        let got = svc.read_chunk(d).await.unwrap();
        assert!(
            got.as_ref() == Some(data),
            "chunk {i}: {:?} bytes",
            got.map(|b| b.len())
        );
    }
}

async fn assert_missing(svc: &RedbBlobService, chunks: &[(B3Digest, Bytes)]) {
    for (i, (d, _)) in chunks.iter().enumerate() {
        assert_eq!(svc.read_chunk(d).await.unwrap(), None, "chunk {i}");
        assert!(!svc.has(d).await.unwrap(), "chunk {i}");
    }
}

#[tokio::test]
async fn small_chunks_of_a_fill_are_packed_and_read_back_across_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    // Sizes from 0 to 4 KiB, some compressible, and one chunk too big to
    // pack.
    let mut fill: Vec<(B3Digest, Bytes)> = (0..100)
        .map(|i| {
            let data = if i % 3 == 0 {
                Bytes::from(vec![i as u8; 40 * i])
            } else {
                Bytes::from(pseudo_random(41 * i, 1000 + i as u64))
            };
            (B3Digest::of(&data), data)
        })
        .collect();
    fill.extend(chunks(1, 100_000, 7));
    {
        let store = RedbStore::open_dir(tmp.path()).unwrap();
        let svc = cache_service(&store, 1 << 30);
        svc.insert_chunks(fill.clone()).await.unwrap();
        assert_eq!(svc.chunk_count().await.unwrap(), 101);
        // About 200 KB of small records: packs of at most 60 KiB.
        let packs = svc.pack_count().await.unwrap();
        assert!((3..=5).contains(&packs), "{packs} packs");
        assert_reads(&svc, &fill).await;
        store.flush().unwrap();
    }
    let store = RedbStore::open_dir(tmp.path()).unwrap();
    let svc = cache_service(&store, 1 << 30);
    assert_reads(&svc, &fill).await;
    for (d, data) in &fill {
        assert!(svc.has(d).await.unwrap());
        assert_eq!(svc.chunks(d).await.unwrap(), Some(Vec::new()));
        // As stored (a frame for the compressible ones), for a peer.
        let stored = svc.read_chunk_stored(d).await.unwrap().unwrap();
        assert_eq!(&stored.into_verified(d, 1 << 20).unwrap(), data);
    }
    // A store without a quota (not a cache) keeps every chunk alone.
    let plain = tempfile::tempdir().unwrap();
    let store = RedbStore::open_dir(plain.path()).unwrap();
    let svc = store.blob_service();
    svc.insert_chunks(fill.clone()).await.unwrap();
    assert_eq!(svc.pack_count().await.unwrap(), 0);
    assert_reads(&svc, &fill).await;
}

#[tokio::test]
async fn a_corrupt_packed_member_fails_alone_and_a_refill_repairs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = RedbStore::open_dir(tmp.path()).unwrap();
    let near = cache_service(&store, 1 << 30);
    let fill = chunks(20, 2000, 50);
    near.insert_chunks(fill.clone()).await.unwrap();
    assert_eq!(near.pack_count().await.unwrap(), 1);
    let (victim, good) = fill[7].clone();
    // Its bytes in the pack, one flipped.
    let mut record = vec![CHUNK_RAW];
    record.extend_from_slice(&good);
    record[100] ^= 0xff;
    near.danger_overwrite_chunk_record(&victim, record)
        .await
        .unwrap();
    assert_eq!(near.pack_count().await.unwrap(), 1);
    let err = near.read_chunk(&victim).await.unwrap_err();
    assert!(
        matches!(err, Error::Integrity { expected, .. } if expected == victim),
        "{err}"
    );
    // Its siblings in the pack still read, alone and in a batch.
    let siblings: Vec<_> = fill.iter().filter(|(d, _)| *d != victim).cloned().collect();
    assert_reads(&near, &siblings).await;
    let asked: Vec<B3Digest> = fill.iter().map(|(d, _)| *d).collect();
    let got = near.read_chunk_batch(&asked).await;
    for (i, (r, (d, data))) in got.iter().zip(&fill).enumerate() {
        if *d == victim {
            assert!(r.is_err(), "chunk {i}");
        } else {
            assert_eq!(r.as_ref().unwrap().as_ref(), Some(data), "chunk {i}");
        }
    }
    // Through a cache: the corrupt record sends it to far, and the fill
    // repairs it.
    let far = MemoryBlobService::new();
    far.insert_chunks(fill.clone()).await.unwrap();
    let cache = CachedBlobService::new(Arc::new(near.clone()), Arc::new(far));
    assert_eq!(
        cache.read_chunk(&victim).await.unwrap().as_ref(),
        Some(&good)
    );
    cache.flush().await;
    assert_eq!(
        near.read_chunk(&victim).await.unwrap().as_ref(),
        Some(&good)
    );
    assert_reads(&near, &fill).await;
}

#[tokio::test]
async fn a_quota_evicts_whole_packs_and_refilled_members_keep_their_new_place() {
    let charge = {
        // One fill of 20 chunks of 2000 bytes, charged alone.
        let other = tempfile::tempdir().unwrap();
        let store = RedbStore::open_dir(other.path()).unwrap();
        let svc = cache_service(&store, u64::MAX / 2);
        svc.insert_chunks(chunks(20, 2000, 1)).await.unwrap();
        assert_eq!(svc.pack_count().await.unwrap(), 1);
        svc.quota_tracked_bytes().await.unwrap()
    };
    // A pack is charged its 64 KiB allocation and its members' pointers,
    // not 20 records of their own.
    assert!((64 << 10..80 << 10).contains(&charge), "{charge}");
    // Room for N packs; a fill's transactions stay within a 16th of it,
    // so each fill of 40 KB is one transaction and one pack.
    const N: usize = 11;
    let quota = N as u64 * charge;
    let tmp = tempfile::tempdir().unwrap();
    let store = RedbStore::open_dir(tmp.path()).unwrap();
    let svc = cache_service(&store, quota);
    let p: Vec<_> = (0..N + 1)
        .map(|i| chunks(20, 2000, 100 * i as u64 + 100))
        .collect();
    for fill in &p[..N] {
        svc.insert_chunks(fill.clone()).await.unwrap();
    }
    assert_eq!(svc.pack_count().await.unwrap(), N as u64);
    assert_eq!(svc.quota_tracked_bytes().await.unwrap(), quota);
    // Use a member of the first pack: the second is now the oldest.
    assert!(svc.read_chunk(&p[0][5].0).await.unwrap().is_some());
    svc.insert_chunks(p[N].clone()).await.unwrap();
    assert_missing(&svc, &p[1]).await;
    assert_eq!(svc.pack_count().await.unwrap(), N as u64);
    assert_eq!(svc.chunk_count().await.unwrap(), 20 * N as u64);
    assert_eq!(svc.quota_tracked_bytes().await.unwrap(), quota);
    let figures = svc.quota_figures().unwrap();
    assert_eq!(
        (figures.evicted_chunks, figures.evicted_bytes),
        (20, charge)
    );

    // A member of the oldest pack now (p[2]) goes corrupt and is filled
    // again with new chunks, into a new pack; evicting p[2] must leave its
    // new pointer alone.
    let victim = p[2][3].clone();
    let mut record = vec![CHUNK_RAW];
    record.extend_from_slice(&victim.1);
    record[1] ^= 1;
    svc.danger_overwrite_chunk_record(&victim.0, record)
        .await
        .unwrap();
    assert!(svc.read_chunk(&victim.0).await.is_err());
    let mut refill = chunks(19, 2000, 7777);
    refill.push(victim.clone());
    svc.insert_chunks(refill.clone()).await.unwrap();
    let gone: Vec<_> = p[2]
        .iter()
        .filter(|(d, _)| *d != victim.0)
        .cloned()
        .collect();
    assert_missing(&svc, &gone).await;
    let tracked = svc.quota_tracked_bytes().await.unwrap();
    eprintln!("tracked {tracked} quota {quota} charge {charge}");

    assert!(tracked <= quota);
    assert_reads(&svc, &refill).await;
    for fill in [&p[0]].into_iter().chain(&p[3..]) {
        assert_reads(&svc, fill).await;
    }

    // The bookkeeping survives a reopen (the reads just above were noted
    // in memory only): the next fill evicts the oldest pack left, p[3]
    // (p[0] was used after it).
    // Cache fills are made durable only now and then: flush, as a clean
    // exit does.
    store.flush().unwrap();
    drop(svc);
    drop(store);
    let store = RedbStore::open_dir(tmp.path()).unwrap();
    let svc = cache_service(&store, quota);
    svc.insert_chunks(chunks(20, 2000, 9999)).await.unwrap();
    assert_missing(&svc, &p[3]).await;
    assert_reads(&svc, &p[0]).await;
    assert_reads(&svc, &refill).await;
}

#[tokio::test]
async fn evicted_members_are_fetched_again_through_a_cache_and_the_file_stays_bounded() {
    // 3,000 small chunks (about 6 MB) through a 1 MiB quota, read in
    // batches of 100 as a walk of small files asks for them.
    const QUOTA: u64 = 1 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let all: Vec<(B3Digest, Bytes)> = (0..3000)
        .map(|i| {
            let data = Bytes::from(pseudo_random((i * 7) % 4096, 10_000 + i as u64));
            (B3Digest::of(&data), data)
        })
        .collect();
    let far = Arc::new(MemoryBlobService::new());
    far.insert_chunks(all.clone()).await.unwrap();
    {
        let store = RedbStore::open_dir(tmp.path()).unwrap();
        let near = cache_service(&store, QUOTA);
        let cache = CachedBlobService::new(Arc::new(near.clone()), far.clone());
        for _round in 0..2 {
            for batch in all.chunks(100) {
                let asked: Vec<B3Digest> = batch.iter().map(|(d, _)| *d).collect();
                let got = cache.read_chunk_batch(&asked).await;
                for (r, (_, data)) in got.iter().zip(batch) {
                    assert_eq!(r.as_ref().unwrap().as_ref(), Some(data));
                }
                // Fills run in the background: wait for them before
                // reading the quota's figures.
                cache.flush().await;
                let tracked = near.quota_tracked_bytes().await.unwrap();
                assert!(tracked <= QUOTA, "{tracked} > {QUOTA}");
            }
        }
        let packs = near.pack_count().await.unwrap();
        assert!(packs > 0);
        // The first batch was evicted long ago: it is read from far again
        // (in the second round, above) and so from near now.
        let first: Vec<B3Digest> = all[..100].iter().map(|(d, _)| *d).collect();
        let evicted = near.quota_figures().unwrap().evicted_chunks;
        assert!(evicted >= 2000, "{evicted} evicted");
        let before = cache.stats().snapshot().far_chunks;
        let got = cache.read_chunk_batch(&first).await;
        assert!(got.iter().all(|r| matches!(r, Ok(Some(_)))));
        let fetched = cache.stats().snapshot().far_chunks - before;
        assert!(fetched == 100, "{fetched} fetched of 100 evicted");
        cache.flush().await;
        store.flush().unwrap();
    }
    use std::os::unix::fs::MetadataExt;
    let used = std::fs::metadata(tmp.path().join(storefs_castore::STORE_FILE_NAME))
        .unwrap()
        .blocks()
        * 512;
    let bound = storefs_castore::disk_bound(QUOTA);
    assert!(used <= bound, "cache file takes {used} bytes, over {bound}");
}

#[tokio::test]
async fn a_batch_reads_members_of_several_packs_and_old_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, fills) = {
        // An old cache: chunks stored alone, as before packs, quota rows
        // and all.
        let store = RedbStore::open_dir(tmp.path()).unwrap();
        let svc = cache_service(&store, 1 << 30);
        let old = chunks(5, 3000, 900);
        for (d, data) in &old {
            svc.insert_chunk(d, data.clone()).await.unwrap();
        }
        assert_eq!(svc.pack_count().await.unwrap(), 0);
        let fills: Vec<_> = (0..3).map(|i| chunks(25, 1500, 1000 * i + 1)).collect();
        for f in &fills {
            svc.insert_chunks(f.clone()).await.unwrap();
        }
        assert_eq!(svc.pack_count().await.unwrap(), 3);
        store.flush().unwrap();
        (old, fills)
    };
    let store = RedbStore::open_dir(tmp.path()).unwrap();
    let svc = cache_service(&store, 1 << 30);
    // Interleaved: members of three packs, old records, one absent chunk,
    // one chunk twice.
    let absent = B3Digest::of(b"absent");
    let mut asked = Vec::new();
    let mut want = Vec::new();
    for i in 0..25 {
        for f in &fills {
            asked.push(f[i].0);
            want.push(Some(f[i].1.clone()));
        }
        if i < old.len() {
            asked.push(old[i].0);
            want.push(Some(old[i].1.clone()));
        }
    }
    asked.push(absent);
    want.push(None);
    asked.push(fills[1][3].0);
    want.push(Some(fills[1][3].1.clone()));
    let got = svc.read_chunk_batch(&asked).await;
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.into_iter().zip(&want).enumerate() {
        assert_eq!(&g.unwrap(), w, "entry {i}");
    }
    // As kept, for a server: the same chunks, once checked.
    let kept = svc.read_chunk_stored_batch(&asked).await;
    assert_eq!(kept.len(), want.len());
    for (i, ((k, w), d)) in kept.into_iter().zip(&want).zip(&asked).enumerate() {
        let k = k.unwrap().map(|c| c.into_verified(d, 1 << 20).unwrap());
        assert_eq!(&k, w, "entry {i}");
    }
    // The old records are evicted like before, oldest first, before the
    // packs: a quota just under what is held drops them.
    let held = svc.quota_tracked_bytes().await.unwrap();
    drop(svc);
    let svc = cache_service(&store, held - 1);
    svc.insert_chunks(chunks(1, 10, 5)).await.unwrap();
    assert_eq!(svc.read_chunk(&old[0].0).await.unwrap(), None);
    assert_reads(&svc, &old[1..]).await;
    for f in &fills {
        assert_reads(&svc, f).await;
    }
}

#[tokio::test]
async fn a_pointer_to_a_missing_pack_is_a_miss_and_a_bad_pointer_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = RedbStore::open_dir(tmp.path()).unwrap();
    let svc = cache_service(&store, 1 << 30);
    let fill = chunks(2, 100, 3);
    svc.insert_chunks(fill.clone()).await.unwrap();
    let (d, _) = fill[0].clone();
    let mut pointer = vec![CHUNK_PACKED];
    pointer.extend_from_slice(&999u64.to_le_bytes());
    pointer.extend_from_slice(&0u32.to_le_bytes());
    pointer.extend_from_slice(&10u32.to_le_bytes());
    svc.danger_overwrite_chunk_record(&d, pointer.clone())
        .await
        .unwrap();
    assert_eq!(svc.read_chunk(&d).await.unwrap(), None);
    assert_eq!(svc.read_chunk_stored(&d).await.unwrap(), None);
    // Into the real pack but past its end; and a pointer cut short.
    let mut past = vec![CHUNK_PACKED];
    past.extend_from_slice(&0u64.to_le_bytes());
    past.extend_from_slice(&100_000u32.to_le_bytes());
    past.extend_from_slice(&10u32.to_le_bytes());
    svc.danger_overwrite_chunk_record(&d, past).await.unwrap();
    assert!(svc.read_chunk(&d).await.is_err());
    svc.danger_overwrite_chunk_record(&d, pointer[..9].to_vec())
        .await
        .unwrap();
    assert!(svc.read_chunk(&d).await.is_err());
    // The other member is untouched by all of it.
    assert_reads(&svc, &fill[1..]).await;
}
