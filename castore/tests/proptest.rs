//! Property tests: directories survive encode/decode with any valid names
//! (non-UTF-8, 255 bytes, odd bytes), and blobs of any size survive a round
//! trip through the memory and redb backends with the chunking we expect.

use std::sync::Arc;
use storefs_testkit::pseudo_random;
use storefs_testkit::suites::blob::{read_blob, write_blob};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use storefs_castore::{
    B3Digest, BlobService, ChunkerConfig, Directory, MemoryBlobService, Node, PathComponent,
    RedbBlobService, RedbStore, SymlinkTarget, chunk_all, fuzzing,
};

/// Any valid name: 1–255 bytes, no `/`, no NUL, not `.` or `..`; often
/// non-UTF-8, sometimes exactly 255 bytes.
fn name() -> impl Strategy<Value = PathComponent> {
    let byte = prop_oneof![
        4 => any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
        1 => Just(b'.'),
    ];
    let len = prop_oneof![8 => 1usize..24, 1 => Just(255usize), 1 => 200usize..=255];
    len.prop_flat_map(move |n| proptest::collection::vec(byte.clone(), n))
        .prop_filter_map("reserved", |v| PathComponent::new(Bytes::from(v)).ok())
}

fn digest() -> impl Strategy<Value = B3Digest> {
    any::<[u8; 32]>().prop_map(B3Digest::from)
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        (digest(), any::<u64>()).prop_map(|(digest, size)| Node::Directory { digest, size }),
        (digest(), any::<u64>(), any::<bool>()).prop_map(|(digest, size, executable)| {
            Node::File {
                digest,
                size,
                executable,
            }
        }),
        proptest::collection::vec(1u8..=255, 1..300).prop_map(|t| Node::Symlink {
            // 1..300 bytes, none NUL: always a valid target.
            target: SymlinkTarget::new(Bytes::from(t)).unwrap(),
        }),
    ]
}

fn directory() -> impl Strategy<Value = Directory> {
    proptest::collection::vec((name(), node()), 0..24).prop_map(|entries| {
        let mut d = Directory::new();
        for (n, node) in entries {
            // A repeated name is refused; keeping the first is fine here.
            let _ = d.add(n, node);
        }
        d
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn directory_encode_decode_round_trip(dir in directory()) {
        let encoded = dir.encode();
        let decoded = Directory::decode(&encoded).unwrap();
        prop_assert_eq!(&decoded, &dir);
        prop_assert_eq!(decoded.encode(), encoded.clone());
        prop_assert_eq!(decoded.digest(), B3Digest::of(&encoded));
        prop_assert_eq!(Directory::try_from(dir.to_proto()).unwrap(), dir.clone());
        // The fuzz entry point holds on everything valid.
        fuzzing::directory_from_proto(&encoded);
    }

    #[test]
    fn blob_model_holds_under_injected_faults(ops in proptest::collection::vec(any::<u8>(), 0..90)) {
        fuzzing::blob_service_model(&ops);
    }

    #[test]
    fn directory_fuzz_entry_never_panics_on_noise(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        fuzzing::directory_from_proto(&data);
    }
}

/// Write and read back blobs of random sizes and write patterns.
fn blob_round_trips(svc: Arc<dyn BlobService>, config: ChunkerConfig, max_len: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config::with_cases(40));
    let strategy = (0..=max_len, any::<u64>(), 1usize..70_000, any::<bool>());
    runner
        .run(&strategy, |(len, seed, piece, zeroes)| {
            // Zeroes cut at `max`; noise cuts wherever the gear hash says.
            let data = if zeroes {
                vec![0u8; len]
            } else {
                pseudo_random(len, seed)
            };
            rt.block_on(async {
                let d = write_blob(&*svc, &data, piece).await;
                prop_assert_eq!(d, B3Digest::of(&data));
                let cut = chunk_all(config, &data).unwrap();
                let list = svc.chunks(&d).await.unwrap().unwrap();
                if cut.len() < 2 {
                    prop_assert!(list.is_empty());
                } else {
                    prop_assert_eq!(list.len(), cut.len());
                    for (meta, chunk) in list.iter().zip(&cut) {
                        prop_assert_eq!(meta.digest, B3Digest::of(chunk));
                        prop_assert_eq!(
                            svc.read_chunk(&meta.digest).await.unwrap(),
                            Some(chunk.clone())
                        );
                    }
                }
                prop_assert_eq!(read_blob(&*svc, &d).await, Some(data.clone()));
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn blob_round_trip_memory_small_chunks() {
    let config = ChunkerConfig {
        min: 256,
        avg: 1024,
        max: 4096,
    };
    let svc = MemoryBlobService::with_chunker(config).unwrap();
    blob_round_trips(Arc::new(svc), config, 60_000);
}

#[test]
fn blob_round_trip_memory_default_chunks() {
    blob_round_trips(
        Arc::new(MemoryBlobService::new()),
        ChunkerConfig::default(),
        1 << 20,
    );
}

#[test]
fn blob_round_trip_redb() {
    let tmp = tempfile::tempdir().unwrap();
    let store = RedbStore::open_dir(tmp.path()).unwrap();
    let config = ChunkerConfig {
        min: 1024,
        avg: 4096,
        max: 16384,
    };
    let svc = RedbBlobService::with_chunker(store, config).unwrap();
    blob_round_trips(Arc::new(svc), config, 200_000);
}
