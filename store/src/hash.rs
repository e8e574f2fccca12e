//! Parsing and printing [`NixHash`] the way Nix 2.8 does (hash.cc).
//!
//! Grammar accepted by [`NixHash::parse`]:
//! ```text
//! hash    = algo ":" digest        ; digest in base16, nix32 or base64, told apart by length
//!         | algo "-" base64        ; SRI
//! algo    = "md5" | "sha1" | "sha256" | "sha512"
//! ```
//! [`NixHash::parse_with_algo`] also takes a bare digest when the algorithm
//! is known from elsewhere (`parseAny` with a type). The length decides the
//! encoding, base16 first, as Nix does: base16 is `2 × len` characters,
//! nix32 is `ceil(8 × len / 5)`, base64 is `4 × ceil(len / 3)` with padding.
//!
//! Printing: [`fmt::Display`] and [`NixHash::to_nix32_string`] give
//! `algo:nix32` (narinfo, content addresses, fingerprints),
//! [`NixHash::to_base16_string`] gives `algo:hex` (store path
//! fingerprints), [`NixHash::to_hex`] the bare hex (the daemon protocol's
//! narHash), [`NixHash::to_sri`] gives `algo-base64`.

use std::fmt;
use std::str::FromStr;

use data_encoding::{BASE64, BASE64_NOPAD};

use crate::nixbase32;

/// A hash algorithm Nix names in content addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgo {
    /// MD5 (16 bytes).
    Md5,
    /// SHA-1 (20 bytes).
    Sha1,
    /// SHA-256 (32 bytes).
    Sha256,
    /// SHA-512 (64 bytes).
    Sha512,
}

impl HashAlgo {
    /// The digest length in bytes.
    // An algorithm is never "empty"; `is_empty` would mean nothing here.
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(self) -> usize {
        match self {
            HashAlgo::Md5 => 16,
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha512 => 64,
        }
    }

    /// Nix's name: `md5`, `sha1`, `sha256`, `sha512`.
    pub const fn name(self) -> &'static str {
        match self {
            HashAlgo::Md5 => "md5",
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha512 => "sha512",
        }
    }
}

/// A digest with its algorithm. Constructed only with the right length.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NixHash {
    algo: HashAlgo,
    digest: Vec<u8>,
}

impl NixHash {
    /// Wrap `digest`, which must have `algo`'s length.
    pub fn new(algo: HashAlgo, digest: &[u8]) -> Option<Self> {
        (digest.len() == algo.len()).then(|| Self {
            algo,
            digest: digest.to_vec(),
        })
    }

    /// A SHA-256 digest; infallible, the length is in the type.
    pub fn sha256(digest: [u8; 32]) -> Self {
        Self {
            algo: HashAlgo::Sha256,
            digest: digest.to_vec(),
        }
    }

    /// The algorithm.
    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    /// The raw digest.
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }
}

/// Why a string is not a hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The algorithm name is not one Nix knows.
    #[error("unknown hash algorithm {0:?}")]
    UnknownAlgo(String),
    /// No `algo:` or `algo-` prefix and no algorithm given.
    #[error("hash {0:?} has no algorithm prefix")]
    MissingAlgo(String),
    /// The prefix names another algorithm than the one expected.
    #[error("hash {hash:?} should be {expected} but is {actual}")]
    AlgoMismatch {
        /// The text.
        hash: String,
        /// The algorithm the caller asked for.
        expected: &'static str,
        /// The algorithm the prefix names.
        actual: &'static str,
    },
    /// The digest's length fits none of the encodings for its algorithm.
    #[error("hash {hash:?} has the wrong length for {algo}")]
    WrongLength {
        /// The digest text.
        hash: String,
        /// The algorithm.
        algo: &'static str,
    },
    /// The digest does not decode in the encoding its length implies.
    #[error("invalid {encoding} digest {hash:?}")]
    InvalidEncoding {
        /// The digest text.
        hash: String,
        /// "base16", "nix32", "base64" or "SRI".
        encoding: &'static str,
    },
}

impl FromStr for HashAlgo {
    type Err = HashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "md5" => Ok(HashAlgo::Md5),
            "sha1" => Ok(HashAlgo::Sha1),
            "sha256" => Ok(HashAlgo::Sha256),
            "sha512" => Ok(HashAlgo::Sha512),
            _ => Err(HashError::UnknownAlgo(s.to_owned())),
        }
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl NixHash {
    /// Parse `algo:digest` (base16, nix32 or base64) or SRI `algo-base64`
    /// (Nix's `parseAnyPrefixed`).
    pub fn parse(s: &str) -> Result<Self, HashError> {
        let (algo, rest, sri) =
            split_prefix(s)?.ok_or_else(|| HashError::MissingAlgo(s.to_owned()))?;
        Self::decode(algo, rest, sri)
    }

    /// Parse a hash whose algorithm is known: either prefixed (the prefix
    /// must name `algo`) or a bare digest (Nix's `parseAny` with a type).
    pub fn parse_with_algo(s: &str, algo: HashAlgo) -> Result<Self, HashError> {
        match split_prefix(s)? {
            Some((actual, rest, sri)) => {
                if actual != algo {
                    return Err(HashError::AlgoMismatch {
                        hash: s.to_owned(),
                        expected: algo.name(),
                        actual: actual.name(),
                    });
                }
                Self::decode(algo, rest, sri)
            }
            None => Self::decode(algo, s, false),
        }
    }

    /// Decode a bare digest of `algo` in base16, nix32 or base64, chosen by
    /// its length (Nix's `parseNonSRIUnprefixed`).
    pub fn parse_bare(s: &str, algo: HashAlgo) -> Result<Self, HashError> {
        Self::decode(algo, s, false)
    }

    fn decode(algo: HashAlgo, rest: &str, sri: bool) -> Result<Self, HashError> {
        let len = algo.len();
        let invalid = |encoding| HashError::InvalidEncoding {
            hash: rest.to_owned(),
            encoding,
        };
        let digest = if sri {
            decode_base64(rest).ok_or_else(|| invalid("SRI"))?
        } else if rest.len() == 2 * len {
            hex::decode(rest).map_err(|_| invalid("base16"))?
        } else if rest.len() == nixbase32::encoded_len(len) {
            nixbase32::decode(rest.as_bytes(), len).map_err(|_| invalid("nix32"))?
        } else if rest.len() == len.div_ceil(3) * 4 {
            BASE64
                .decode(rest.as_bytes())
                .map_err(|_| invalid("base64"))?
        } else {
            return Err(HashError::WrongLength {
                hash: rest.to_owned(),
                algo: algo.name(),
            });
        };
        NixHash::new(algo, &digest).ok_or_else(|| invalid(if sri { "SRI" } else { "base64" }))
    }

    /// The bare nix32 digest.
    pub fn to_nix32(&self) -> String {
        nixbase32::encode(self.digest())
    }

    /// The bare lowercase base16 digest.
    pub fn to_hex(&self) -> String {
        hex::encode(self.digest())
    }

    /// `algo:nix32`, as in narinfo files and content addresses.
    pub fn to_nix32_string(&self) -> String {
        format!("{}:{}", self.algo().name(), self.to_nix32())
    }

    /// `algo:hex`, as in store path fingerprints.
    pub fn to_base16_string(&self) -> String {
        format!("{}:{}", self.algo().name(), self.to_hex())
    }

    /// SRI, `algo-base64`.
    pub fn to_sri(&self) -> String {
        format!("{}-{}", self.algo().name(), BASE64.encode(self.digest()))
    }
}

/// Split `algo:rest` or SRI `algo-rest`. `None` if there is neither
/// separator (a bare digest); an error if the prefix is not an algorithm.
fn split_prefix(s: &str) -> Result<Option<(HashAlgo, &str, bool)>, HashError> {
    if let Some((algo, rest)) = s.split_once(':') {
        return Ok(Some((algo.parse()?, rest, false)));
    }
    if let Some((algo, rest)) = s.split_once('-') {
        return Ok(Some((algo.parse()?, rest, true)));
    }
    Ok(None)
}

/// SRI digests are written padded; Nix also reads them unpadded.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    BASE64
        .decode(s.as_bytes())
        .or_else(|_| BASE64_NOPAD.decode(s.as_bytes()))
        .ok()
}

impl FromStr for NixHash {
    type Err = HashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for NixHash {
    /// `algo:nix32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo().name(), self.to_nix32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // docs/nix-formats.md: NAR sha256 of the file `Hello World!`.
    const HEX: &str = "03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040";
    const NIX32: &str = "0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3";
    const SRI: &str = "sha256-A+f2O+MLBl14vPYV9Uc1Rf2062mqQW9DSVtOBc37gEA=";

    fn hello() -> NixHash {
        NixHash::new(HashAlgo::Sha256, &hex::decode(HEX).unwrap()).unwrap()
    }

    #[test]
    fn parses_every_encoding_of_the_protocol_vector() {
        let h = hello();
        assert_eq!(NixHash::parse(&format!("sha256:{NIX32}")).unwrap(), h);
        assert_eq!(NixHash::parse(&format!("sha256:{HEX}")).unwrap(), h);
        assert_eq!(
            NixHash::parse(&format!(
                "sha256:{}",
                BASE64.encode(&hex::decode(HEX).unwrap())
            ))
            .unwrap(),
            h
        );
        assert_eq!(NixHash::parse(SRI).unwrap(), h);
        assert_eq!(
            NixHash::parse("sha256-A+f2O+MLBl14vPYV9Uc1Rf2062mqQW9DSVtOBc37gEA").unwrap(),
            h
        );
        assert_eq!(
            NixHash::parse_with_algo(NIX32, HashAlgo::Sha256).unwrap(),
            h
        );
        assert_eq!(NixHash::parse_with_algo(HEX, HashAlgo::Sha256).unwrap(), h);
        assert_eq!(
            NixHash::parse_with_algo(&HEX.to_uppercase(), HashAlgo::Sha256).unwrap(),
            h
        );
        assert_eq!(NixHash::parse_with_algo(SRI, HashAlgo::Sha256).unwrap(), h);
    }

    #[test]
    fn prints_every_form() {
        let h = hello();
        assert_eq!(h.to_string(), format!("sha256:{NIX32}"));
        assert_eq!(h.to_nix32_string(), format!("sha256:{NIX32}"));
        assert_eq!(h.to_base16_string(), format!("sha256:{HEX}"));
        assert_eq!(h.to_hex(), HEX);
        assert_eq!(h.to_nix32(), NIX32);
        assert_eq!(h.to_sri(), SRI);
    }

    #[test]
    fn other_algorithms_by_length() {
        // sha1("bar"), as in the tvix NAR-sha1 vector.
        let sha1 = "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33";
        let h = NixHash::parse(&format!("sha1:{sha1}")).unwrap();
        assert_eq!(h.algo(), HashAlgo::Sha1);
        assert_eq!(h.to_hex(), sha1);
        assert_eq!(NixHash::parse(&h.to_string()).unwrap(), h);
        assert_eq!(NixHash::parse(&h.to_sri()).unwrap(), h);
        assert_eq!(h.to_nix32().len(), 32);
        // md5: 32 hex characters, 26 nix32, 24 base64.
        let md5 = NixHash::parse("md5:d41d8cd98f00b204e9800998ecf8427e").unwrap();
        assert_eq!(md5.to_nix32().len(), 26);
        assert_eq!(NixHash::parse(&md5.to_string()).unwrap(), md5);
        assert_eq!(NixHash::parse("md5:1B2M2Y8AsgTpgAmY7PhCfg==").unwrap(), md5);
        let sha512 = NixHash::new(HashAlgo::Sha512, &[7; 64]).unwrap();
        assert_eq!(NixHash::parse(&sha512.to_string()).unwrap(), sha512);
        assert_eq!(NixHash::parse(&sha512.to_base16_string()).unwrap(), sha512);
        assert_eq!(NixHash::parse(&sha512.to_sri()).unwrap(), sha512);
    }

    #[test]
    fn refuses_bad_hashes() {
        assert_eq!(
            NixHash::parse("sha3:abcd"),
            Err(HashError::UnknownAlgo("sha3".into()))
        );
        assert_eq!(
            NixHash::parse(NIX32),
            Err(HashError::MissingAlgo(NIX32.into()))
        );
        assert!(matches!(
            NixHash::parse_with_algo(&format!("sha1:{HEX}"), HashAlgo::Sha256),
            Err(HashError::AlgoMismatch {
                expected: "sha256",
                actual: "sha1",
                ..
            })
        ));
        assert!(matches!(
            NixHash::parse("sha256:abc"),
            Err(HashError::WrongLength { algo: "sha256", .. })
        ));
        // `e` is not in the nix32 alphabet.
        let bad32 = format!("sha256:e{}", &NIX32[1..]);
        assert!(matches!(
            NixHash::parse(&bad32),
            Err(HashError::InvalidEncoding {
                encoding: "nix32",
                ..
            })
        ));
        let bad16 = format!("sha256:g{}", &HEX[1..]);
        assert!(matches!(
            NixHash::parse(&bad16),
            Err(HashError::InvalidEncoding {
                encoding: "base16",
                ..
            })
        ));
        // An SRI digest of the wrong length.
        assert!(matches!(
            NixHash::parse("sha256-AAAA"),
            Err(HashError::InvalidEncoding {
                encoding: "SRI",
                ..
            })
        ));
    }

    fn algo() -> impl Strategy<Value = HashAlgo> {
        prop_oneof![
            Just(HashAlgo::Md5),
            Just(HashAlgo::Sha1),
            Just(HashAlgo::Sha256),
            Just(HashAlgo::Sha512)
        ]
    }

    proptest! {
        #[test]
        fn every_printed_form_parses_back(algo in algo(), bytes in proptest::collection::vec(any::<u8>(), 64)) {
            let h = NixHash::new(algo, &bytes[..algo.len()]).unwrap();
            prop_assert_eq!(&NixHash::parse(&h.to_nix32_string()).unwrap(), &h);
            prop_assert_eq!(&NixHash::parse(&h.to_base16_string()).unwrap(), &h);
            prop_assert_eq!(&NixHash::parse(&h.to_sri()).unwrap(), &h);
            prop_assert_eq!(&NixHash::parse_bare(&h.to_nix32(), algo).unwrap(), &h);
            prop_assert_eq!(&NixHash::parse_bare(&h.to_hex(), algo).unwrap(), &h);
        }
    }
}
