//! [`PathInfo`] in Nix's terms: its fingerprint and signatures, and
//! conversion to and from a narinfo (which lacks the castore node, and
//! carries where the NAR file is instead).

use storefs_castore::Node;

use super::PathInfo;
use crate::StoreDir;
use crate::narinfo::{FingerprintError, NarInfo, fingerprint};
use crate::{SecretKey, TrustedKeys};

impl PathInfo {
    /// The text its signatures sign: `1;<path>;sha256:<nix32>;<narSize>;<refs>`.
    pub fn fingerprint(&self, store_dir: &StoreDir) -> Result<String, FingerprintError> {
        fingerprint(
            store_dir,
            &self.store_path,
            &self.nar_sha256,
            self.nar_size,
            &self.references,
        )
    }

    /// Add `key`'s signature of the fingerprint, replacing an earlier
    /// signature by a key of the same name.
    pub fn sign(&mut self, key: &SecretKey, store_dir: &StoreDir) -> Result<(), FingerprintError> {
        let sig = key.sign(self.fingerprint(store_dir)?.as_bytes());
        self.signatures.retain(|s| s.name != sig.name);
        self.signatures.push(sig);
        Ok(())
    }

    /// Whether it is content-addressed and its store path is the one its
    /// content address gives (Nix then needs no signature).
    pub fn is_content_addressed(&self, store_dir: &StoreDir) -> bool {
        self.ca
            .as_ref()
            .is_some_and(|ca| ca.matches_path(&self.store_path, &self.references, store_dir))
    }

    /// Whether Nix's `require-sigs` lets it in (`pathInfoIsUntrusted`
    /// negated): it is content-addressed, or some signature verifies under
    /// one of `trusted` (a path without a NAR size has no fingerprint, so no
    /// valid signature).
    pub fn is_trusted(&self, trusted: &TrustedKeys, store_dir: &StoreDir) -> bool {
        self.is_content_addressed(store_dir)
            || self
                .count_valid_signatures(trusted, store_dir)
                .is_ok_and(|n| n > 0)
    }

    /// How many of its signatures are valid by distinct trusted keys.
    pub fn count_valid_signatures(
        &self,
        trusted: &TrustedKeys,
        store_dir: &StoreDir,
    ) -> Result<usize, FingerprintError> {
        let fp = self.fingerprint(store_dir)?;
        Ok(trusted.count_valid(fp.as_bytes(), &self.signatures))
    }

    /// A narinfo describing it, with its NAR at `url` compressed with
    /// `compression`. `FileHash`/`FileSize` are left unset (fill them in if
    /// the file is known; for `none` they equal the NAR's).
    pub fn to_narinfo(&self, url: String, compression: String) -> NarInfo {
        let mut n = NarInfo {
            store_path: self.store_path.clone(),
            url,
            compression,
            file_hash: None,
            file_size: None,
            nar_sha256: self.nar_sha256,
            nar_size: self.nar_size,
            references: self.references.clone(),
            deriver: self.deriver.clone(),
            system: None,
            signatures: self.signatures.clone(),
            ca: self.ca.clone(),
        };
        n.normalize();
        n
    }

    /// The path info of a narinfo's path whose NAR was ingested into
    /// castore as `node`. You must have checked that the NAR's sha256 and
    /// size match the narinfo's.
    pub fn from_narinfo(narinfo: &NarInfo, node: Node) -> Self {
        PathInfo {
            store_path: narinfo.store_path.clone(),
            node,
            references: narinfo.references.clone(),
            nar_size: narinfo.nar_size,
            nar_sha256: narinfo.nar_sha256,
            signatures: narinfo.signatures.clone(),
            deriver: narinfo.deriver.clone(),
            ca: narinfo.ca.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use storefs_castore::B3Digest;

    use super::*;
    use crate::PublicKey;
    use crate::StorePath;
    use crate::nixbase32;

    fn baz() -> PathInfo {
        PathInfo {
            store_path: StorePath::from_base_name("w2hzasm68w0bfrwg61385vhfcqqrpnm9-baz").unwrap(),
            node: Node::File {
                digest: B3Digest::of(b"x"),
                size: 1,
                executable: false,
            },
            references: vec![
                StorePath::from_base_name("r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt").unwrap(),
            ],
            nar_size: 168,
            nar_sha256: nixbase32::decode_fixed(
                b"1jv588br4m4ddxl3vjfd0xczmj3cmmpz74r016wryirrs855p581",
            )
            .unwrap(),
            signatures: vec![],
            deriver: None,
            ca: None,
        }
    }

    #[test]
    fn fingerprint_and_signatures_follow_the_protocol_vector() {
        let sd = StoreDir::default();
        let mut info = baz();
        assert_eq!(
            info.fingerprint(&sd).unwrap(),
            "1;/nix/store/w2hzasm68w0bfrwg61385vhfcqqrpnm9-baz;sha256:1jv588br4m4ddxl3vjfd0xczmj3cmmpz74r016wryirrs855p581;168;/nix/store/r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt"
        );
        // docs/nix-formats.md, signatures: Nix's signature with test-1 verifies.
        let nix_sig = crate::Signature::parse("test-1:GR1l5i8X2lYlnemkESyAKb11SvvzXfjlK4v8j70bplXlQsVsPWY78rlMvSxdFecSg1nrSaQl9HBTP7M7JqFEBw==").unwrap();
        info.signatures.push(nix_sig);
        let test1 =
            PublicKey::parse("test-1:5iDt6QUYln5qedqaQWEJr8k82cRb37Ae/5JAA7YaO2I=").unwrap();
        let ours = SecretKey::from_seed("ours-1", &[1; 32]).unwrap();
        let trusted = TrustedKeys::new([test1, ours.to_public()]);
        assert_eq!(info.count_valid_signatures(&trusted, &sd).unwrap(), 1);
        info.sign(&ours, &sd).unwrap();
        info.sign(&ours, &sd).unwrap();
        assert_eq!(info.signatures.len(), 2);
        assert_eq!(info.count_valid_signatures(&trusted, &sd).unwrap(), 2);
        // Changing a fact breaks both.
        info.nar_size = 169;
        assert_eq!(info.count_valid_signatures(&trusted, &sd).unwrap(), 0);
        info.nar_size = 0;
        assert!(info.fingerprint(&sd).is_err());
    }

    #[test]
    fn narinfo_round_trip_keeps_the_nix_facts() {
        let sd = StoreDir::default();
        let info = baz();
        let n = info.to_narinfo("nar/x.nar".into(), "none".into());
        let text = n.render(&sd);
        let back = NarInfo::parse(&text, &sd).unwrap();
        assert_eq!(back, n);
        assert_eq!(PathInfo::from_narinfo(&back, info.node.clone()), info);
        assert_eq!(back.fingerprint(&sd), info.fingerprint(&sd));
    }

    #[test]
    fn content_addressed_only_when_the_path_matches() {
        let sd = StoreDir::default();
        let mut info = baz();
        assert!(!info.is_content_addressed(&sd));
        // `nix-store --add hello.txt` (docs/nix-formats.md).
        info.store_path =
            StorePath::from_base_name("925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt").unwrap();
        info.references.clear();
        info.ca = Some(
            "fixed:r:sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3"
                .parse()
                .unwrap(),
        );
        assert!(info.is_content_addressed(&sd));
        assert!(!info.is_content_addressed(&StoreDir::new("/gnu/store").unwrap()));
        // A self-reference changes the path (`source:…:self`).
        info.references.push(info.store_path.clone());
        assert!(!info.is_content_addressed(&sd));
    }

    #[test]
    fn trusted_when_content_addressed_or_signed_by_a_trusted_key() {
        let sd = StoreDir::default();
        let key = SecretKey::from_seed("test-1", &[9; 32]).unwrap();
        let other = SecretKey::from_seed("test-1", &[8; 32]).unwrap();
        let keys = TrustedKeys::new([key.to_public()]);
        let mut i = baz();
        assert!(!i.is_trusted(&keys, &sd));
        i.sign(&other, &sd).unwrap();
        assert!(!i.is_trusted(&keys, &sd));
        i.sign(&key, &sd).unwrap();
        assert!(i.is_trusted(&keys, &sd));
        i.nar_size = 169; // the signature no longer matches the fingerprint
        assert!(!i.is_trusted(&keys, &sd));
        // `nix-store --add hello.txt`: content-addressed, needs no signature.
        i.store_path =
            StorePath::from_base_name("925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt").unwrap();
        i.references.clear();
        i.ca = Some(
            "fixed:r:sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3"
                .parse()
                .unwrap(),
        );
        assert!(i.is_trusted(&TrustedKeys::default(), &sd));
    }
}
