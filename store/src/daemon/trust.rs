//! Whether an upload from an untrusted client may be recorded, as Nix's
//! `LocalStore::addToStore` decides it: the path must be content-addressed
//! (its content address gives exactly its store path) or carry a valid
//! signature by one of the trusted public keys (PROTOCOL.md §7).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature as DalekSignature, Verifier, VerifyingKey};

use super::error::OpError;
use crate::pathinfo::PathInfo;
use crate::store_path::StoreDir;

/// A trusted public key, `name:base64(32 bytes)` as in Nix's
/// `trusted-public-keys`.
#[derive(Debug, Clone)]
pub(crate) struct PublicKey {
    name: String,
    key: VerifyingKey,
}

impl PublicKey {
    /// Parse `name:base64`.
    pub fn parse(s: &str) -> Result<Self, OpError> {
        let bad = |why: &str| OpError(format!("invalid public key '{s}': {why}"));
        let (name, b64) = s.split_once(':').ok_or_else(|| bad("no ':'"))?;
        let bytes = BASE64.decode(b64).map_err(|_| bad("not base64"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad("not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an ed25519 key"))?;
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }
}

/// The text a path's signatures sign:
/// `1;<path>;sha256:<nix32 nar hash>;<nar size>;<sorted refs, comma-joined>`.
pub(crate) fn fingerprint(info: &PathInfo, store_dir: &StoreDir) -> String {
    let mut refs: Vec<String> = info
        .references
        .iter()
        .map(|r| r.to_absolute(store_dir))
        .collect();
    refs.sort();
    refs.dedup();
    format!(
        "1;{};sha256:{};{};{}",
        info.store_path.to_absolute(store_dir),
        crate::nixbase32::encode(&info.nar_sha256),
        info.nar_size,
        refs.join(",")
    )
}

/// Whether some signature on `info` verifies under one of `keys`.
pub(crate) fn has_valid_signature(info: &PathInfo, keys: &[PublicKey], store_dir: &StoreDir) -> bool {
    if info.nar_size == 0 {
        return false; // Nix refuses to fingerprint a path without a NAR size
    }
    let fp = fingerprint(info, store_dir);
    info.signatures.iter().any(|sig| {
        keys.iter().any(|k| {
            k.name == sig.name
                && k
                    .key
                    .verify(fp.as_bytes(), &DalekSignature::from_bytes(&sig.bytes))
                    .is_ok()
        })
    })
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
    use crate::pathinfo::Signature;
    use crate::store_path::StorePath;
    use ed25519_dalek::{Signer, SigningKey};
    use storefs_castore::{B3Digest, Node};

    #[test]
    fn fingerprint_and_signature_match_the_nix_vector() {
        // PROTOCOL.md §7: secret key test-1:5iDt6QUY…, path baz.
        let sk_bytes = BASE64
            .decode("5iDt6QUYln5qedqaQWEJr8k82cRb37Ae/5JAA7YaO2I=")
            .unwrap();
        let sk = SigningKey::from_bytes(&sk_bytes.try_into().unwrap());
        let pk = format!("test-1:{}", BASE64.encode(sk.verifying_key().to_bytes()));
        let sd = StoreDir::default();
        let nar = crate::nixbase32::decode(
            b"1jv588br4m4ddxl3vjfd0xczmj3cmmpz74r016wryirrs855p581",
            32,
        )
        .unwrap();
        let mut info = PathInfo {
            store_path: StorePath::from_base_name("w2hzasm68w0bfrwg61385vhfcqqrpnm9-baz").unwrap(),
            node: Node::File {
                digest: B3Digest::of(b""),
                size: 0,
                executable: false,
            },
            references: vec![
                StorePath::from_base_name("r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt").unwrap(),
            ],
            nar_size: 168,
            nar_sha256: nar.try_into().unwrap(),
            signatures: vec![],
            deriver: None,
            ca: None,
        };
        let fp = fingerprint(&info, &sd);
        assert_eq!(
            fp,
            "1;/nix/store/w2hzasm68w0bfrwg61385vhfcqqrpnm9-baz;sha256:1jv588br4m4ddxl3vjfd0xczmj3cmmpz74r016wryirrs855p581;168;/nix/store/r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt"
        );
        let sig = sk.sign(fp.as_bytes());
        assert_eq!(
            BASE64.encode(sig.to_bytes()),
            "GR1l5i8X2lYlnemkESyAKb11SvvzXfjlK4v8j70bplXlQsVsPWY78rlMvSxdFecSg1nrSaQl9HBTP7M7JqFEBw=="
        );
        let keys = [PublicKey::parse(&pk).unwrap()];
        assert!(!has_valid_signature(&info, &keys, &sd));
        info.signatures.push(Signature {
            name: "test-1".into(),
            bytes: sig.to_bytes(),
        });
        assert!(has_valid_signature(&info, &keys, &sd));
        info.nar_size = 169;
        assert!(!has_valid_signature(&info, &keys, &sd));
    }
}
