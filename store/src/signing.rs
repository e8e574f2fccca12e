//! Nix's ed25519 signing keys and signatures (libstore crypto.cc, with
//! libsodium's `crypto_sign_detached`). See docs/nix-formats.md.
//!
//! ```text
//! secret key file = name ":" base64(64 bytes: 32-byte seed ‖ 32-byte public key)
//! public key      = name ":" base64(32 bytes)
//! signature       = name ":" base64(64-byte detached ed25519 signature)
//! ```
//! What is signed is a path's fingerprint (`1;<path>;sha256:<nix32>;<size>;<refs>`,
//! see [`crate::narinfo::fingerprint`]).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use data_encoding::BASE64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// An ed25519 signature over a path's fingerprint, by a named key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The key's name (`cache.nixos.org-1`).
    pub name: String,
    /// The 64-byte detached signature.
    pub bytes: [u8; 64],
}

/// Why a key or signature text is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// Not `name:base64`, or an empty name.
    #[error("{what} is not <name>:<base64>")]
    Malformed {
        /// "secret key", "public key" or "signature".
        what: &'static str,
    },
    /// The base64 part does not decode.
    #[error("{what} {name:?}: invalid base64")]
    Base64 {
        /// "secret key", "public key" or "signature".
        what: &'static str,
        /// The key name before the colon.
        name: String,
    },
    /// The decoded bytes have the wrong length.
    #[error("{what} {name:?}: {actual} bytes, expected {expected}")]
    Length {
        /// "secret key", "public key" or "signature".
        what: &'static str,
        /// The key name before the colon.
        name: String,
        /// The expected length.
        expected: usize,
        /// The decoded length.
        actual: usize,
    },
    /// The bytes are not a valid ed25519 key (a public half that does not
    /// match the seed, or a point that is not on the curve).
    #[error("{what} {name:?}: not a valid ed25519 key")]
    InvalidKey {
        /// "secret key" or "public key".
        what: &'static str,
        /// The key name.
        name: String,
    },
}

/// Split `name:base64` and decode the base64 into exactly `N` bytes.
fn split_decode<const N: usize>(
    s: &str,
    what: &'static str,
) -> Result<(String, [u8; N]), SigningError> {
    let (name, b64) = s
        .trim()
        .split_once(':')
        .filter(|(n, b)| !n.is_empty() && !b.is_empty())
        .ok_or(SigningError::Malformed { what })?;
    let bytes = BASE64
        .decode(b64.as_bytes())
        .map_err(|_| SigningError::Base64 {
            what,
            name: name.to_owned(),
        })?;
    let arr: [u8; N] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| SigningError::Length {
            what,
            name: name.to_owned(),
            expected: N,
            actual: bytes.len(),
        })?;
    Ok((name.to_owned(), arr))
}

impl Signature {
    /// Parse `name:base64(64 bytes)`, as in a narinfo `Sig:` line.
    pub fn parse(s: &str) -> Result<Self, SigningError> {
        let (name, bytes) = split_decode::<64>(s, "signature")?;
        Ok(Signature { name, bytes })
    }
}

impl FromStr for Signature {
    type Err = SigningError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Signature {
    /// `name:base64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(&self.bytes))
    }
}

/// A named ed25519 secret key, as `nix-store --generate-binary-cache-key`
/// writes it.
#[derive(Clone)]
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl SecretKey {
    /// Parse `name:base64(seed ‖ public key)`; the public half must match
    /// the seed. Surrounding whitespace (a trailing newline) is ignored.
    pub fn parse(s: &str) -> Result<Self, SigningError> {
        let (name, bytes) = split_decode::<64>(s, "secret key")?;
        let key = SigningKey::from_keypair_bytes(&bytes).map_err(|_| SigningError::InvalidKey {
            what: "secret key",
            name: name.clone(),
        })?;
        Ok(Self { name, key })
    }

    /// A key from a 32-byte seed (for tests and for generating keys with a
    /// caller-chosen random source).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, SigningError> {
        if name.is_empty() || name.contains(':') {
            return Err(SigningError::Malformed { what: "secret key" });
        }
        Ok(Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(seed),
        })
    }

    /// A new random key from the operating system's generator, as
    /// `nix-store --generate-binary-cache-key` makes one.
    pub fn generate(name: &str) -> Result<Self, SigningError> {
        let seed: [u8; 32] = rand::Rng::r#gen(&mut rand::rngs::OsRng);
        Self::from_seed(name, &seed)
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching public key.
    pub fn to_public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Sign `data` (a fingerprint). Deterministic, as ed25519 is: the same
    /// key and data give the same signature Nix gives.
    pub fn sign(&self, data: &[u8]) -> Signature {
        Signature {
            name: self.name.clone(),
            bytes: self.key.sign(data).to_bytes(),
        }
    }
}

impl fmt::Display for SecretKey {
    /// The key file's contents, `name:base64(64 bytes)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.name,
            BASE64.encode(&self.key.to_keypair_bytes())
        )
    }
}

impl fmt::Debug for SecretKey {
    /// Names the key and hides its secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.name)
    }
}

/// A named ed25519 public key (`cache.nixos.org-1:6NCH…`).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
}

impl PublicKey {
    /// Parse `name:base64(32 bytes)`. Surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Self, SigningError> {
        let (name, bytes) = split_decode::<32>(s, "public key")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| SigningError::InvalidKey {
            what: "public key",
            name: name.clone(),
        })?;
        Ok(Self { name, key })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `sig` is this key's valid signature of `data`. A signature
    /// by another key name is not.
    pub fn verify(&self, data: &[u8], sig: &Signature) -> bool {
        if sig.name != self.name {
            return false;
        }
        let s = ed25519_dalek::Signature::from_bytes(&sig.bytes);
        self.key.verify_strict(data, &s).is_ok()
    }
}

impl FromStr for PublicKey {
    type Err = SigningError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for PublicKey {
    /// `name:base64(32 bytes)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(self.key.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// The public keys a reader trusts (Nix's `trusted-public-keys`), by name.
/// A later key with the same name replaces an earlier one, as in Nix.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: HashMap<String, PublicKey>,
}

impl TrustedKeys {
    /// A set of keys.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|k| (k.name.clone(), k)).collect(),
        }
    }

    /// Parse Nix's `trusted-public-keys` setting: keys separated by
    /// whitespace.
    pub fn parse(s: &str) -> Result<Self, SigningError> {
        let keys = s
            .split_whitespace()
            .map(PublicKey::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(keys))
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `sig` is a valid signature of `data` by a trusted key (Nix's
    /// `verifyDetached`: the key is looked up by the signature's name).
    pub fn verify(&self, data: &[u8], sig: &Signature) -> bool {
        self.keys
            .get(&sig.name)
            .is_some_and(|k| k.verify(data, sig))
    }

    /// How many of `sigs` are valid signatures of `data` by distinct trusted
    /// keys (Nix's `checkSignatures`).
    pub fn count_valid<'a>(
        &self,
        data: &[u8],
        sigs: impl IntoIterator<Item = &'a Signature>,
    ) -> usize {
        let mut names: Vec<&str> = sigs
            .into_iter()
            .filter(|s| self.verify(data, s))
            .map(|s| s.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/nix-formats.md, signatures.
    const PUBLIC: &str = "test-1:5iDt6QUYln5qedqaQWEJr8k82cRb37Ae/5JAA7YaO2I=";
    const FINGERPRINT: &str = "1;/nix/store/w2hzasm68w0bfrwg61385vhfcqqrpnm9-baz;sha256:1jv588br4m4ddxl3vjfd0xczmj3cmmpz74r016wryirrs855p581;168;/nix/store/r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt";
    const SIG: &str = "test-1:GR1l5i8X2lYlnemkESyAKb11SvvzXfjlK4v8j70bplXlQsVsPWY78rlMvSxdFecSg1nrSaQl9HBTP7M7JqFEBw==";

    #[test]
    fn protocol_vector_verifies() {
        // The vector's key is the public half (32 bytes).
        let pk = PublicKey::parse(PUBLIC).unwrap();
        assert_eq!(pk.name(), "test-1");
        assert_eq!(pk.to_string(), PUBLIC);
        let sig = Signature::parse(SIG).unwrap();
        assert_eq!(sig.to_string(), SIG);
        assert!(pk.verify(FINGERPRINT.as_bytes(), &sig));
        assert!(!pk.verify(FINGERPRINT.replace("168", "169").as_bytes(), &sig));
        let trusted = TrustedKeys::new([pk]);
        assert!(trusted.verify(FINGERPRINT.as_bytes(), &sig));
        assert_eq!(trusted.count_valid(FINGERPRINT.as_bytes(), [&sig, &sig]), 1);
    }

    #[test]
    fn keys_round_trip_and_sign_deterministically() {
        let sk = SecretKey::from_seed("k-1", &[7; 32]).unwrap();
        let again = SecretKey::parse(&format!("{sk}\n")).unwrap();
        let a = sk.sign(FINGERPRINT.as_bytes());
        assert_eq!(again.sign(FINGERPRINT.as_bytes()), a);
        let pk = sk.to_public();
        assert_eq!(PublicKey::parse(&pk.to_string()).unwrap(), pk);
        assert!(pk.verify(FINGERPRINT.as_bytes(), &a));
    }

    #[test]
    fn generated_keys_differ_and_work() {
        let a = SecretKey::generate("gen-1").unwrap();
        let b = SecretKey::generate("gen-1").unwrap();
        assert_ne!(a.to_string(), b.to_string());
        let sig = a.sign(b"x");
        let trusted = TrustedKeys::parse(&format!(" {}\n{} ", a.to_public(), PUBLIC)).unwrap();
        assert!(trusted.verify(b"x", &sig));
        assert!(!TrustedKeys::new([b.to_public()]).verify(b"x", &sig));
        assert!(TrustedKeys::parse("").unwrap().is_empty());
    }

    #[test]
    fn verification_fails_for_other_data_keys_and_names() {
        let sk = SecretKey::from_seed("a-1", &[1; 32]).unwrap();
        let other = SecretKey::from_seed("a-1", &[2; 32]).unwrap();
        let sig = sk.sign(b"data");
        assert!(sk.to_public().verify(b"data", &sig));
        assert!(!sk.to_public().verify(b"datA", &sig));
        assert!(!other.to_public().verify(b"data", &sig));
        let mut renamed = sig.clone();
        renamed.name = "b-1".into();
        assert!(!sk.to_public().verify(b"data", &renamed));
        let mut flipped = sig.clone();
        flipped.bytes[10] ^= 1;
        assert!(!sk.to_public().verify(b"data", &flipped));
        let trusted = TrustedKeys::new([other.to_public()]);
        assert!(!trusted.verify(b"data", &sig));
        assert!(TrustedKeys::default().is_empty());
        assert_eq!(TrustedKeys::default().count_valid(b"data", [&sig]), 0);
    }

    #[test]
    fn refuses_malformed_keys_and_signatures() {
        assert_eq!(
            PublicKey::parse("nocolon"),
            Err(SigningError::Malformed { what: "public key" })
        );
        assert_eq!(
            PublicKey::parse(":AAAA"),
            Err(SigningError::Malformed { what: "public key" })
        );
        assert!(matches!(
            Signature::parse("k:!!!!"),
            Err(SigningError::Base64 {
                what: "signature",
                ..
            })
        ));
        assert!(matches!(
            Signature::parse("k:AAAA"),
            Err(SigningError::Length {
                expected: 64,
                actual: 3,
                ..
            })
        ));
        // A keypair whose public half does not match its seed.
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&[1; 32]);
        let bad = format!("k:{}", BASE64.encode(&bytes));
        assert!(matches!(
            SecretKey::parse(&bad),
            Err(SigningError::InvalidKey {
                what: "secret key",
                ..
            })
        ));
        assert!(SecretKey::from_seed("a:b", &[0; 32]).is_err());
        assert!(SecretKey::generate("").is_err());
        assert!(matches!(
            TrustedKeys::parse("a:AAAA"),
            Err(SigningError::Length { expected: 32, .. })
        ));
        assert_eq!(
            format!("{:?}", SecretKey::from_seed("k", &[0; 32]).unwrap()),
            "SecretKey(k)"
        );
    }
}
