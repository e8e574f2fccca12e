//! Property: any tree, ingested from disk, rendered as a NAR, read back
//! into fresh services and rendered again, gives the same bytes and the
//! same root node; the reader's hash and size are the NAR's.

mod common;

use proptest::prelude::*;
use sha2::Digest;
use storefs_store::nar::{read_nar_to_end, write_nar};

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn ingest_nar_read_nar_is_identity(tree in common::tree()) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        common::write_tree(&root, &tree);
        rt.block_on(async {
            let (bs, ds) = common::services();
            let (entry, nar1) = common::ingest_and_dump(&root, &bs, &ds).await;

            let (bs2, ds2) = common::services();
            let mut r = nar1.as_slice();
            let back = read_nar_to_end(&mut r, bs2.as_ref(), ds2.as_ref()).await.unwrap();
            prop_assert_eq!(&back.root, &entry.node);
            prop_assert_eq!(back.nar_size, nar1.len() as u64);
            prop_assert_eq!(back.nar_sha256, <[u8; 32]>::from(sha2::Sha256::digest(&nar1)));

            let mut nar2 = Vec::new();
            write_nar(&mut nar2, &back.root, bs2.as_ref(), ds2.as_ref()).await.unwrap();
            prop_assert!(nar1 == nar2, "second NAR differs");
            Ok(())
        })?;
    }
}
