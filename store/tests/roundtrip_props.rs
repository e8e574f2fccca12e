//! Property tests: StorePath Display → parse, narinfo render → parse, and
//! the narinfo fuzz entry point on arbitrary and near-valid input.

use proptest::prelude::*;
use storefs_store::narinfo::NarInfo;
use storefs_store::{ContentAddress, HashAlgo, NixHash, Signature};
use storefs_store::{StoreDir, StorePath};

fn store_path() -> impl Strategy<Value = StorePath> {
    (any::<[u8; 20]>(), "[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,40}")
        .prop_map(|(d, n)| StorePath::from_parts(d, &n).unwrap())
}

fn nix_hash() -> impl Strategy<Value = NixHash> {
    (
        prop_oneof![
            Just(HashAlgo::Md5),
            Just(HashAlgo::Sha1),
            Just(HashAlgo::Sha256),
            Just(HashAlgo::Sha512)
        ],
        proptest::collection::vec(any::<u8>(), 64),
    )
        .prop_map(|(a, b)| NixHash::new(a, &b[..a.len()]).unwrap())
}

fn content_address() -> impl Strategy<Value = ContentAddress> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(ContentAddress::Text),
        nix_hash().prop_map(ContentAddress::Recursive),
        nix_hash().prop_map(ContentAddress::Flat),
    ]
}

fn signature() -> impl Strategy<Value = Signature> {
    (
        "[a-z0-9.-]{1,20}",
        proptest::collection::vec(any::<u8>(), 64),
    )
        .prop_map(|(name, b)| {
            let mut bytes = [0u8; 64];
            bytes.copy_from_slice(&b);
            Signature { name, bytes }
        })
}

/// A value without newlines and not starting with a space.
fn text() -> impl Strategy<Value = String> {
    "[!-~][ -~]{0,30}"
}

prop_compose! {
    fn narinfo()(
        store_path in store_path(),
        url in text(),
        compression in prop_oneof![Just("none".to_owned()), Just("xz".to_owned()), text()],
        file_hash in proptest::option::of(nix_hash()),
        file_size in proptest::option::of(any::<u64>()),
        nar_sha256 in any::<[u8; 32]>(),
        nar_size in 1..u64::MAX,
        references in proptest::collection::vec(store_path(), 0..5),
        deriver in proptest::option::of(store_path()),
        system in proptest::option::of(text()),
        signatures in proptest::collection::vec(signature(), 0..3),
        ca in proptest::option::of(content_address()),
    ) -> NarInfo {
        NarInfo {
            store_path, url, compression, file_hash, file_size, nar_sha256, nar_size,
            references, deriver, system, signatures, ca,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn store_path_display_parses_back(p in store_path()) {
        let sd = StoreDir::default();
        prop_assert_eq!(StorePath::from_base_name(&p.to_string()).unwrap(), p.clone());
        prop_assert_eq!(sd.parse_path(&p.to_absolute(&sd)).unwrap(), p.clone());
        let gnu = StoreDir::new("/gnu/store").unwrap();
        prop_assert_eq!(gnu.parse_path(&p.to_absolute(&gnu)).unwrap(), p);
    }

    #[test]
    fn narinfo_render_parses_back(n in narinfo()) {
        let sd = StoreDir::default();
        let text = n.render(&sd);
        let parsed = NarInfo::parse(&text, &sd).unwrap();
        let mut normal = n.clone();
        normal.normalize();
        prop_assert_eq!(&parsed, &normal);
        // Rendering is stable: a second round gives the same bytes.
        prop_assert_eq!(parsed.render(&sd), text.clone());
        storefs_store::fuzzing::narinfo(text.as_bytes());
    }

    #[test]
    fn fuzz_entry_survives_mutated_narinfos(
        n in narinfo(),
        cut in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut text = n.render(&StoreDir::default()).into_bytes();
        let i = cut.index(text.len());
        text[i] = byte;
        storefs_store::fuzzing::narinfo(&text);
        storefs_store::fuzzing::narinfo(&text[..i]);
    }

    #[test]
    fn fuzz_entry_survives_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        storefs_store::fuzzing::narinfo(&data);
    }
}
