//! The text a path's signatures sign (Nix's `ValidPathInfo::fingerprint`):
//! `1;<full path>;sha256:<nix32 NAR hash>;<NAR size>;<full reference paths, sorted, comma-joined>`.

use super::NarInfo;
use crate::nixbase32;
use crate::{StoreDir, StorePath};

/// Why a fingerprint cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// Nix refuses to fingerprint a path whose NAR size is unknown (0).
    #[error("cannot fingerprint {0}: its NAR size is 0")]
    ZeroNarSize(String),
}

/// The fingerprint of a path with these facts.
pub fn fingerprint(
    store_dir: &StoreDir,
    path: &StorePath,
    nar_sha256: &[u8; 32],
    nar_size: u64,
    references: &[StorePath],
) -> Result<String, FingerprintError> {
    let full = path.to_absolute(store_dir);
    if nar_size == 0 {
        return Err(FingerprintError::ZeroNarSize(full));
    }
    let mut refs: Vec<String> = references
        .iter()
        .map(|r| r.to_absolute(store_dir))
        .collect();
    refs.sort();
    refs.dedup();
    Ok(format!(
        "1;{full};sha256:{};{nar_size};{}",
        nixbase32::encode(nar_sha256),
        refs.join(",")
    ))
}

impl NarInfo {
    /// Whether it is content-addressed and its store path is the one its
    /// content address gives (Nix then needs no signature).
    pub fn is_content_addressed(&self, store_dir: &StoreDir) -> bool {
        self.ca
            .as_ref()
            .is_some_and(|ca| ca.matches_path(&self.store_path, &self.references, store_dir))
    }

    /// The fingerprint its signatures sign.
    pub fn fingerprint(&self, store_dir: &StoreDir) -> Result<String, FingerprintError> {
        fingerprint(
            store_dir,
            &self.store_path,
            &self.nar_sha256,
            self.nar_size,
            &self.references,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_vector() {
        let sd = StoreDir::default();
        let p = StorePath::from_base_name("w2hzasm68w0bfrwg61385vhfcqqrpnm9-baz").unwrap();
        let r = StorePath::from_base_name("r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt").unwrap();
        let h = nixbase32::decode_fixed(b"1jv588br4m4ddxl3vjfd0xczmj3cmmpz74r016wryirrs855p581")
            .unwrap();
        assert_eq!(
            fingerprint(&sd, &p, &h, 168, &[r.clone(), r]).unwrap(),
            "1;/nix/store/w2hzasm68w0bfrwg61385vhfcqqrpnm9-baz;sha256:1jv588br4m4ddxl3vjfd0xczmj3cmmpz74r016wryirrs855p581;168;/nix/store/r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt"
        );
        assert_eq!(
            fingerprint(&sd, &p, &h, 0, &[]),
            Err(FingerprintError::ZeroNarSize(
                "/nix/store/w2hzasm68w0bfrwg61385vhfcqqrpnm9-baz".into()
            ))
        );
        let gnu = StoreDir::new("/gnu/store").unwrap();
        assert_eq!(
            fingerprint(&gnu, &p, &h, 1, &[]).unwrap(),
            "1;/gnu/store/w2hzasm68w0bfrwg61385vhfcqqrpnm9-baz;sha256:1jv588br4m4ddxl3vjfd0xczmj3cmmpz74r016wryirrs855p581;1;"
        );
    }
}
