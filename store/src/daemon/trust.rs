//! Whether an upload from a client may be recorded, as Nix's
//! `LocalStore::addToStore` decides it: the path must be content-addressed
//! (its content address gives exactly its store path) or carry a valid
//! signature by one of the trusted public keys (docs/nix-formats.md).

use crate::pathinfo::PathInfo;
use crate::signing::TrustedKeys;
use crate::store_path::StoreDir;

/// Whether some signature on `info` verifies under one of `keys` (a path
/// without a NAR size has no fingerprint, so no valid signature).
pub(crate) fn has_valid_signature(
    info: &PathInfo,
    keys: &TrustedKeys,
    store_dir: &StoreDir,
) -> bool {
    info.count_valid_signatures(keys, store_dir)
        .is_ok_and(|n| n > 0)
}

/// Whether `info`'s content address names exactly its store path.
pub(crate) fn is_content_addressed(info: &PathInfo, store_dir: &StoreDir) -> bool {
    let Some(ca) = &info.ca else { return false };
    let self_reference = info.references.contains(&info.store_path);
    let others: Vec<_> = info
        .references
        .iter()
        .filter(|r| **r != info.store_path)
        .cloned()
        .collect();
    ca.store_path(info.store_path.name(), &others, self_reference, store_dir)
        .is_ok_and(|p| p == info.store_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pathinfo::{ContentAddress, NixHash};
    use crate::signing::SecretKey;
    use crate::store_path::StorePath;
    use storefs_castore::{B3Digest, Node};

    fn info(base: &str, ca: Option<ContentAddress>, nar_sha256: [u8; 32]) -> PathInfo {
        PathInfo {
            store_path: StorePath::from_base_name(base).unwrap(),
            node: Node::File {
                digest: B3Digest::of(b"Hello World!"),
                size: 12,
                executable: false,
            },
            references: vec![],
            nar_size: 128,
            nar_sha256,
            signatures: vec![],
            deriver: None,
            ca,
        }
    }

    #[test]
    fn content_address_must_name_the_path() {
        let sd = StoreDir::default();
        let mut sha = [0u8; 32];
        hex::decode_to_slice(
            "03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040",
            &mut sha,
        )
        .unwrap();
        let ca = ContentAddress::Recursive(NixHash::sha256(sha));
        // nix-store --add hello.txt (docs/nix-formats.md).
        let good = info(
            "925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt",
            Some(ca.clone()),
            sha,
        );
        assert!(is_content_addressed(&good, &sd));
        let renamed = info("925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.tx", Some(ca), sha);
        assert!(!is_content_addressed(&renamed, &sd));
        let none = info("925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt", None, sha);
        assert!(!is_content_addressed(&none, &sd));
    }

    #[test]
    fn signatures_need_a_trusted_key() {
        let sd = StoreDir::default();
        let key = SecretKey::from_seed("test-1", &[9; 32]).unwrap();
        let other = SecretKey::from_seed("test-1", &[8; 32]).unwrap();
        let keys = TrustedKeys::new([key.to_public()]);
        let mut i = info("925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt", None, [1; 32]);
        assert!(!has_valid_signature(&i, &keys, &sd));
        i.sign(&other, &sd).unwrap();
        assert!(!has_valid_signature(&i, &keys, &sd));
        i.sign(&key, &sd).unwrap();
        assert!(has_valid_signature(&i, &keys, &sd));
        i.nar_size = 129; // the signature no longer matches the fingerprint
        assert!(!has_valid_signature(&i, &keys, &sd));
    }
}
