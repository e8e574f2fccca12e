//! Guix narinfo signatures (guix/pki.scm `signature-sexp`, guix/narinfo.scm
//! `narinfo-signature->canonical-sexp`).
//!
//! ```text
//! Signature field = "1;" host ";" base64(advanced text of the sexp below)
//! (signature
//!   (data (flags rfc6979) (hash sha256 #<sha256 of the signed text>#))
//!   (sig-val (ecdsa (r #<r>#) (s #<s>#)))
//!   (public-key (ecc (curve Ed25519) (q #<q>#))))
//! ```
//!
//! `r` and `s` are unsigned big-endian integers without leading zero bytes
//! (libgcrypt's `%M`). Checking follows `signature-case` in the same order:
//! a malformed signature, then an unauthorized key, then a hash that is not
//! the narinfo's, then the ECDSA check.

use data_encoding::BASE64;
use num_bigint::BigUint;

use super::ecdsa;
use super::key::{Acl, KeyError, PublicKey, SecretKey, mpi_bytes};
use super::sexp::{Sexp, SexpError};

/// The only signature version Guix defines.
pub const SIGNATURE_VERSION: u32 = 1;

/// Why a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The field is not `version;host;base64`.
    #[error("signature field is not <version>;<host>;<base64>")]
    Format,
    /// The version is not a number.
    #[error("signature version {0:?} is not a number")]
    VersionNotANumber(String),
    /// A version other than 1.
    #[error("unsupported signature version {0}")]
    UnsupportedVersion(String),
    /// The base64 part does not decode.
    #[error("signature is not valid base64")]
    Base64,
    /// The decoded text is not an s-expression.
    #[error("signature is not a valid s-expression: {0}")]
    Sexp(SexpError),
    /// An s-expression, but not a signature Guix writes.
    #[error("corrupt signature: {0}")]
    Corrupt(String),
    /// The signer's key is not usable.
    #[error("corrupt signature: {0}")]
    Key(KeyError),
    /// The signer is not in the ACL.
    #[error("signed by an unauthorized key (q #{0}#)")]
    Unauthorized(String),
    /// The signature is over other text than the narinfo's.
    #[error("the narinfo's signed text was altered: its sha256 is not the one signed")]
    HashMismatch,
    /// The ECDSA check failed.
    #[error("invalid signature: the ECDSA check fails")]
    Invalid,
}

/// A Guix signature: what was signed, the ECDSA pair and the signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuixSignature {
    /// The SHA-256 that was signed (of a narinfo's text before
    /// `Signature:`).
    pub hash: [u8; 32],
    r: BigUint,
    s: BigUint,
    /// The signer's public key.
    pub signer: PublicKey,
}

fn corrupt(reason: impl Into<String>) -> SignatureError {
    SignatureError::Corrupt(reason.into())
}

/// The one-atom `(name value)` in `items`.
fn one<'a>(items: &'a [Sexp], name: &str) -> Result<&'a [u8], SignatureError> {
    let mut found = items.iter().filter_map(|i| i.tagged(name));
    match (found.next(), found.next()) {
        (Some([Sexp::Atom(a)]), None) => Ok(a),
        (None, _) => Err(corrupt(format!("no ({name} …)"))),
        _ => Err(corrupt(format!("({name} …) is malformed or repeated"))),
    }
}

fn sub<'a>(items: &'a [Sexp], name: &str) -> Result<&'a [Sexp], SignatureError> {
    let mut found = items.iter().filter_map(|i| i.tagged(name));
    match (found.next(), found.next()) {
        (Some(body), None) => Ok(body),
        (None, _) => Err(corrupt(format!("no ({name} …)"))),
        _ => Err(corrupt(format!("({name} …) given twice"))),
    }
}

fn integer(items: &[Sexp], name: &str) -> Result<BigUint, SignatureError> {
    let v = one(items, name)?;
    if v.is_empty() || v.len() > 33 {
        return Err(corrupt(format!(
            "{name} is not an integer of at most 32 bytes"
        )));
    }
    Ok(BigUint::from_bytes_be(v))
}

impl GuixSignature {
    /// Sign `hash` (the SHA-256 of a narinfo's signed text) with `key`,
    /// exactly as `guix publish` does: deterministic, so the same key and
    /// text give the bytes Guix gives.
    pub fn sign(key: &SecretKey, hash: [u8; 32]) -> Self {
        let (r, s) = ecdsa::sign(key.d(), &hash);
        Self {
            hash,
            r,
            s,
            signer: key.public().clone(),
        }
    }

    /// Read the `(signature …)` s-expression.
    pub fn from_sexp(sexp: &Sexp) -> Result<Self, SignatureError> {
        let Some(items) = sexp.tagged("signature") else {
            return Err(corrupt("not a (signature …)"));
        };
        let data = sub(items, "data")?;
        let flags = sub(data, "flags")?;
        if flags != [Sexp::atom("rfc6979")] {
            return Err(corrupt("data flags are not (flags rfc6979)"));
        }
        let hash = sub(data, "hash")?;
        let [Sexp::Atom(algo), Sexp::Atom(value)] = hash else {
            return Err(corrupt("(hash …) is not (hash ALGORITHM VALUE)"));
        };
        if algo != b"sha256" {
            return Err(corrupt(format!(
                "hash algorithm {} is not sha256",
                String::from_utf8_lossy(algo)
            )));
        }
        let hash: [u8; 32] = value
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("the sha256 is not 32 bytes"))?;
        let sig_val = sub(items, "sig-val")?;
        let ecdsa_items = match sig_val {
            [one] if one.tagged("ecdsa").is_some() => one.tagged("ecdsa").unwrap_or_default(),
            [one] => {
                let kind = one.head().map(|h| String::from_utf8_lossy(h).into_owned());
                return Err(corrupt(format!(
                    "signature algorithm {} is not supported (Guix signs with ecdsa)",
                    kind.unwrap_or_default()
                )));
            }
            _ => return Err(corrupt("(sig-val …) must hold one value")),
        };
        let r = integer(ecdsa_items, "r")?;
        let s = integer(ecdsa_items, "s")?;
        let key = items
            .iter()
            .find(|i| i.head() == Some(b"public-key"))
            .ok_or_else(|| corrupt("no (public-key …)"))?;
        let signer = PublicKey::from_sexp(key).map_err(SignatureError::Key)?;
        if items.len() != 3 {
            return Err(corrupt(
                "a signature has exactly data, sig-val and public-key",
            ));
        }
        Ok(Self { hash, r, s, signer })
    }

    /// The s-expression Guix writes.
    pub fn to_sexp(&self) -> Sexp {
        let int = |name: &str, v: &BigUint| {
            Sexp::list([Sexp::atom(name), Sexp::atom(mpi_bytes(&v.to_bytes_be()))])
        };
        Sexp::list([
            Sexp::atom("signature"),
            Sexp::list([
                Sexp::atom("data"),
                Sexp::list([Sexp::atom("flags"), Sexp::atom("rfc6979")]),
                Sexp::list([
                    Sexp::atom("hash"),
                    Sexp::atom("sha256"),
                    Sexp::atom(self.hash.to_vec()),
                ]),
            ]),
            Sexp::list([
                Sexp::atom("sig-val"),
                Sexp::list([Sexp::atom("ecdsa"), int("r", &self.r), int("s", &self.s)]),
            ]),
            self.signer.to_sexp(),
        ])
    }

    /// Check the signature against the `hash` of the text it should cover
    /// and the keys in `acl`, in Guix's order.
    pub fn check(&self, hash: &[u8; 32], acl: &Acl) -> Result<(), SignatureError> {
        if !acl.contains(&self.signer) {
            return Err(SignatureError::Unauthorized(hex::encode_upper(
                self.signer.q(),
            )));
        }
        if self.hash != *hash {
            return Err(SignatureError::HashMismatch);
        }
        if !ecdsa::verify(self.signer.point(), &self.hash, &self.r, &self.s) {
            return Err(SignatureError::Invalid);
        }
        Ok(())
    }
}

/// A narinfo's `Signature:` value: `1;<host>;<base64>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureField {
    /// The host name of the server that signed (informative only).
    pub host: String,
    /// The signature.
    pub signature: GuixSignature,
}

impl SignatureField {
    /// Parse a `Signature:` value.
    pub fn parse(value: &str) -> Result<Self, SignatureError> {
        let mut parts = value.split(';');
        let (Some(version), Some(host), Some(b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SignatureError::Format);
        };
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SignatureError::VersionNotANumber(version.to_owned()));
        }
        if version.trim_start_matches('0') != SIGNATURE_VERSION.to_string() {
            return Err(SignatureError::UnsupportedVersion(version.to_owned()));
        }
        let bytes = BASE64
            .decode(b64.as_bytes())
            .map_err(|_| SignatureError::Base64)?;
        let sexp = Sexp::parse(&bytes).map_err(SignatureError::Sexp)?;
        Ok(Self {
            host: host.to_owned(),
            signature: GuixSignature::from_sexp(&sexp)?,
        })
    }

    /// The `Signature:` value, as `guix publish` writes it.
    pub fn render(&self) -> String {
        format!(
            "{SIGNATURE_VERSION};{};{}",
            self.host,
            BASE64.encode(&self.signature.to_sexp().to_advanced())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn sign_render_parse_check() {
        let key = SecretKey::generate();
        let hash: [u8; 32] = Sha256::digest(b"StorePath: /gnu/store/x\n").into();
        let field = SignatureField {
            host: "example".into(),
            signature: GuixSignature::sign(&key, hash),
        };
        let text = field.render();
        let again = SignatureField::parse(&text).unwrap();
        assert_eq!(again, field);
        let acl = Acl::new([key.public().clone()]);
        again.signature.check(&hash, &acl).unwrap();
        let mut other = hash;
        other[3] ^= 0x10;
        assert_eq!(
            again.signature.check(&other, &acl),
            Err(SignatureError::HashMismatch)
        );
        let stranger = Acl::new([SecretKey::generate().public().clone()]);
        assert!(matches!(
            again.signature.check(&hash, &stranger),
            Err(SignatureError::Unauthorized(_))
        ));
    }

    #[test]
    fn field_errors() {
        assert_eq!(SignatureField::parse("1;h"), Err(SignatureError::Format));
        assert!(matches!(
            SignatureField::parse("x;h;AAAA"),
            Err(SignatureError::VersionNotANumber(_))
        ));
        assert!(matches!(
            SignatureField::parse("2;h;AAAA"),
            Err(SignatureError::UnsupportedVersion(_))
        ));
        assert_eq!(SignatureField::parse("1;h;!!"), Err(SignatureError::Base64));
        let truncated = BASE64.encode(b"(signature (data (flags rfc6979)");
        assert!(matches!(
            SignatureField::parse(&format!("1;h;{truncated}")),
            Err(SignatureError::Sexp(SexpError::Truncated { .. }))
        ));
    }
}
