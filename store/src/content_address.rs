//! Parsing and printing [`ContentAddress`] the way Nix 2.8 does
//! (content-address.cc), and the store path a content address gives.
//!
//! Grammar:
//! ```text
//! ca     = "text:" "sha256:" digest          ; builtins.toFile, .drv
//!        | "fixed:" ["r:"] algo ":" digest   ; r: = hash of the NAR, else of the flat file
//! digest = base16 | nix32 | base64           ; by length; always printed as nix32
//! ```

use std::fmt;
use std::str::FromStr;

use crate::HashError;
use crate::{HashAlgo, NixHash};
use crate::{StoreDir, StorePath, StorePathError};
use crate::{make_fixed_output_path, make_text_path};

/// How a path is content-addressed (Nix's `ca` field).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContentAddress {
    /// `text:sha256:…`: `builtins.toFile`, `.drv` files. Always sha256.
    Text([u8; 32]),
    /// `fixed:r:<algo>:…`: the hash of the path's NAR.
    Recursive(NixHash),
    /// `fixed:<algo>:…`: the hash of a single regular file's contents.
    Flat(NixHash),
}

/// Why a string is not a content address, or a content address cannot give
/// a store path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContentAddressError {
    /// Not `text:…` or `fixed:…`.
    #[error("content address {0:?} is not text:… or fixed:…")]
    UnknownPrefix(String),
    /// No `algo:` after the prefix.
    #[error("content address {0:?} has no hash algorithm")]
    MissingAlgo(String),
    /// `text:` with another algorithm than sha256.
    #[error("text content address {0:?} must use sha256")]
    TextNotSha256(String),
    /// The digest is malformed.
    #[error("content address {ca:?}")]
    Hash {
        /// The whole text.
        ca: String,
        /// What is wrong with the digest.
        source: HashError,
    },
    /// The resulting path is not valid: a bad name, or references where
    /// none are allowed.
    #[error(transparent)]
    StorePath(#[from] StorePathError),
}

impl ContentAddress {
    /// Parse `text:sha256:…`, `fixed:r:algo:…` or `fixed:algo:…`; the
    /// digest may be base16, nix32 or base64.
    pub fn parse(s: &str) -> Result<Self, ContentAddressError> {
        let hash_err = |source| ContentAddressError::Hash {
            ca: s.to_owned(),
            source,
        };
        let split_algo = |r: &'_ str| -> Result<(HashAlgo, String), ContentAddressError> {
            let (algo, digest) = r
                .split_once(':')
                .ok_or_else(|| ContentAddressError::MissingAlgo(s.to_owned()))?;
            Ok((algo.parse().map_err(hash_err)?, digest.to_owned()))
        };
        if let Some(r) = s.strip_prefix("text:") {
            let (algo, digest) = split_algo(r)?;
            if algo != HashAlgo::Sha256 {
                return Err(ContentAddressError::TextNotSha256(s.to_owned()));
            }
            let h = NixHash::parse_bare(&digest, algo).map_err(hash_err)?;
            let mut out = [0u8; 32];
            // parse_bare returns a digest of exactly algo.len() = 32 bytes.
            out.copy_from_slice(h.digest());
            Ok(ContentAddress::Text(out))
        } else if let Some(r) = s.strip_prefix("fixed:") {
            let (recursive, r) = match r.strip_prefix("r:") {
                Some(r) => (true, r),
                None => (false, r),
            };
            let (algo, digest) = split_algo(r)?;
            let h = NixHash::parse_bare(&digest, algo).map_err(hash_err)?;
            Ok(if recursive {
                ContentAddress::Recursive(h)
            } else {
                ContentAddress::Flat(h)
            })
        } else {
            Err(ContentAddressError::UnknownPrefix(s.to_owned()))
        }
    }

    /// The hash, with its algorithm.
    pub fn hash(&self) -> NixHash {
        match self {
            ContentAddress::Text(d) => sha256(d),
            ContentAddress::Recursive(h) | ContentAddress::Flat(h) => h.clone(),
        }
    }

    /// The method as the daemon's AddToStore names it: `text:sha256`,
    /// `fixed:r:sha256`, `fixed:sha1`, …
    pub fn method_string(&self) -> String {
        match self {
            ContentAddress::Text(_) => "text:sha256".to_owned(),
            ContentAddress::Recursive(h) => format!("fixed:r:{}", h.algo()),
            ContentAddress::Flat(h) => format!("fixed:{}", h.algo()),
        }
    }

    /// The store path that content with this address gets, as Nix computes
    /// it: `text` paths and recursive sha256 paths may have references
    /// (`self_reference` only for the latter); other fixed outputs may not.
    pub fn store_path(
        &self,
        name: &str,
        references: &[StorePath],
        self_reference: bool,
        store_dir: &StoreDir,
    ) -> Result<StorePath, ContentAddressError> {
        match self {
            ContentAddress::Text(d) => {
                if self_reference {
                    return Err(StorePathError::ReferencesNotAllowed("text:sha256 (self)").into());
                }
                Ok(make_text_path(name, d, references, store_dir)?)
            }
            ContentAddress::Recursive(h) => Ok(make_fixed_output_path(
                true,
                h,
                name,
                references,
                self_reference,
                store_dir,
            )?),
            ContentAddress::Flat(h) => Ok(make_fixed_output_path(
                false,
                h,
                name,
                references,
                self_reference,
                store_dir,
            )?),
        }
    }
}

impl ContentAddress {
    /// Whether `path` is the path this content address gives with these
    /// references (Nix's `ValidPathInfo::isContentAddressed`, which lets a
    /// path in without signatures). For fixed outputs a reference to `path`
    /// itself counts as the self-reference; text paths take the references
    /// as they are. A combination Nix cannot compute is `false`.
    pub fn matches_path(
        &self,
        path: &StorePath,
        references: &[StorePath],
        store_dir: &StoreDir,
    ) -> bool {
        let computed = match self {
            ContentAddress::Text(_) => self.store_path(path.name(), references, false, store_dir),
            ContentAddress::Recursive(_) | ContentAddress::Flat(_) => {
                let self_reference = references.contains(path);
                let others: Vec<StorePath> =
                    references.iter().filter(|r| *r != path).cloned().collect();
                self.store_path(path.name(), &others, self_reference, store_dir)
            }
        };
        computed.is_ok_and(|p| p == *path)
    }
}

fn sha256(d: &[u8; 32]) -> NixHash {
    NixHash::sha256(*d)
}

impl FromStr for ContentAddress {
    type Err = ContentAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ContentAddress {
    /// `text:sha256:<nix32>`, `fixed:r:<algo>:<nix32>` or `fixed:<algo>:<nix32>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentAddress::Text(d) => write!(f, "text:{}", sha256(d)),
            ContentAddress::Recursive(h) => write!(f, "fixed:r:{h}"),
            ContentAddress::Flat(h) => write!(f, "fixed:{h}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_vectors_parse_and_print() {
        for s in [
            "text:sha256:0schdl901lnx98l7gmm33x5jvz2xsshli0f15nwm7z7igxjv30vz",
            "fixed:r:sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3",
            "fixed:sha256:0schdl901lnx98l7gmm33x5jvz2xsshli0f15nwm7z7igxjv30vz",
        ] {
            let ca = ContentAddress::parse(s).unwrap();
            assert_eq!(ca.to_string(), s);
        }
        let ca = ContentAddress::parse(
            "fixed:r:sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3",
        )
        .unwrap();
        assert_eq!(
            ca.hash().to_hex(),
            "03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040"
        );
        assert_eq!(ca.method_string(), "fixed:r:sha256");
    }

    #[test]
    fn other_encodings_print_as_nix32() {
        let ca =
            ContentAddress::parse("fixed:r:sha1:0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33").unwrap();
        assert!(matches!(&ca, ContentAddress::Recursive(h) if h.algo() == HashAlgo::Sha1));
        let printed = ca.to_string();
        assert!(printed.starts_with("fixed:r:sha1:"));
        assert_eq!(printed.len(), "fixed:r:sha1:".len() + 32);
        assert_eq!(ContentAddress::parse(&printed).unwrap(), ca);
        assert_eq!(ca.method_string(), "fixed:r:sha1");
        let flat = ContentAddress::parse("fixed:md5:d41d8cd98f00b204e9800998ecf8427e").unwrap();
        assert!(matches!(&flat, ContentAddress::Flat(h) if h.algo() == HashAlgo::Md5));
        assert_eq!(flat.method_string(), "fixed:md5");
        assert_eq!(
            ContentAddress::parse(
                "text:sha256:7f83b1657ff1fc53b92dc18148a1d65dfc2d4b1fa3d677284addd200126d9069"
            )
            .unwrap()
            .to_string(),
            "text:sha256:0schdl901lnx98l7gmm33x5jvz2xsshli0f15nwm7z7igxjv30vz"
        );
    }

    #[test]
    fn refuses_bad_content_addresses() {
        assert!(matches!(
            ContentAddress::parse("nar:sha256:xx"),
            Err(ContentAddressError::UnknownPrefix(_))
        ));
        assert!(matches!(
            ContentAddress::parse("fixed:r:abc"),
            Err(ContentAddressError::MissingAlgo(_))
        ));
        assert!(matches!(
            ContentAddress::parse("text:sha1:0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33"),
            Err(ContentAddressError::TextNotSha256(_))
        ));
        assert!(matches!(
            ContentAddress::parse("fixed:sha256:abc"),
            Err(ContentAddressError::Hash {
                source: HashError::WrongLength { .. },
                ..
            })
        ));
        assert!(matches!(
            ContentAddress::parse("fixed:blake2:abc"),
            Err(ContentAddressError::Hash {
                source: HashError::UnknownAlgo(_),
                ..
            })
        ));
        // `fixed:git:sha1` (newer Nix) is not Nix 2.8's and is refused.
        assert!(
            ContentAddress::parse("fixed:git:sha1:0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33")
                .is_err()
        );
    }
}
