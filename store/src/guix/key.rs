//! Guix signing keys and the ACL of authorized keys (guix/pki.scm), as
//! `guix archive --generate-key` and `guix archive --authorize` write them
//! under `/etc/guix`:
//!
//! ```text
//! signing-key.pub = (public-key (ecc (curve Ed25519) (q #<32 bytes>#)))
//! signing-key.sec = (private-key (ecc (curve Ed25519) (q #<32 bytes>#) (d #<≤32 bytes>#)))
//! acl             = (acl (entry <public-key> (tag (guix import)))*)
//! ```
//!
//! each in libgcrypt's advanced text form (see [`super::sexp`]). `q` is the
//! Ed25519 encoding of the public point, `d` the secret scalar, big-endian.
//! Only Ed25519 keys are supported (Guix's default since libgcrypt 1.6);
//! RSA keys and EdDSA-flagged keys are refused with a message saying so.
//! An ACL may list such keys: they are skipped, as they can never verify
//! a signature this code accepts.

use std::fmt;

use curve25519_dalek::edwards::EdwardsPoint;

use super::ecdsa;
use super::sexp::{Sexp, SexpError};

/// Why a key or ACL text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not an s-expression.
    #[error("{what}: {error}")]
    Sexp {
        /// "public key", "secret key" or "ACL".
        what: &'static str,
        /// Where and why.
        error: SexpError,
    },
    /// An s-expression, but not of the expected shape.
    #[error("{what}: {reason}")]
    Shape {
        /// "public key", "secret key" or "ACL".
        what: &'static str,
        /// What is missing or wrong.
        reason: String,
    },
    /// A key of a type Guix can make but this code does not use.
    #[error("{what}: unsupported key type: {kind}")]
    Unsupported {
        /// "public key" or "secret key".
        what: &'static str,
        /// The key type, curve or flag found.
        kind: String,
    },
    /// `q` is not a point of Ed25519, or does not belong to `d`.
    #[error("{what}: {reason}")]
    Invalid {
        /// "public key" or "secret key".
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

fn shape(what: &'static str, reason: impl Into<String>) -> KeyError {
    KeyError::Shape {
        what,
        reason: reason.into(),
    }
}

/// The one-atom value of `(name value)` inside `items`; an error if it is
/// missing, repeated or not one atom.
fn field<'a>(what: &'static str, items: &'a [Sexp], name: &str) -> Result<&'a [u8], KeyError> {
    let mut found = None;
    for i in items {
        if let Some(rest) = i.tagged(name) {
            if found.is_some() {
                return Err(shape(what, format!("({name} …) given twice")));
            }
            match rest {
                [Sexp::Atom(a)] => found = Some(a.as_slice()),
                _ => return Err(shape(what, format!("({name} …) must hold one value"))),
            }
        }
    }
    found.ok_or_else(|| shape(what, format!("no ({name} …)")))
}

/// The `(ecc …)` body of a key, checked to be an Ed25519 ECDSA key;
/// `allowed` names the parameters that may appear.
fn ecc_body<'a>(
    what: &'static str,
    sexp: &'a Sexp,
    head: &str,
    allowed: &[&str],
) -> Result<&'a [Sexp], KeyError> {
    let Some(rest) = sexp.tagged(head) else {
        let found = sexp.head().map(|h| String::from_utf8_lossy(h).into_owned());
        return Err(shape(
            what,
            format!(
                "expected ({head} …), found ({} …)",
                found.unwrap_or_default()
            ),
        ));
    };
    let [alg] = rest else {
        return Err(shape(what, format!("({head} …) must hold one key")));
    };
    let Some(body) = alg.tagged("ecc").or_else(|| alg.tagged("ecdsa")) else {
        let kind = alg.head().map(|h| String::from_utf8_lossy(h).into_owned());
        return Err(KeyError::Unsupported {
            what,
            kind: kind.unwrap_or_else(|| "(not a list)".into()),
        });
    };
    let curve = field(what, body, "curve")?;
    if curve != b"Ed25519" {
        return Err(KeyError::Unsupported {
            what,
            kind: format!("curve {}", String::from_utf8_lossy(curve)),
        });
    }
    for item in body {
        let name = item.head().unwrap_or_default();
        if name == b"flags" {
            // `(flags eddsa)` keys cannot sign Guix's `(data (flags
            // rfc6979) …)`; libgcrypt refuses them there too.
            let flags = item.as_list().unwrap_or_default();
            if flags[1..].iter().any(|f| f.as_atom() == Some(b"eddsa")) {
                return Err(KeyError::Unsupported {
                    what,
                    kind: "EdDSA (flags eddsa); Guix signs with ECDSA keys".into(),
                });
            }
            continue;
        }
        if !allowed.iter().any(|a| a.as_bytes() == name) {
            return Err(shape(
                what,
                format!("unexpected ({} …)", String::from_utf8_lossy(name)),
            ));
        }
    }
    Ok(body)
}

fn q_of(what: &'static str, body: &[Sexp]) -> Result<([u8; 32], EdwardsPoint), KeyError> {
    let q = field(what, body, "q")?;
    let q: [u8; 32] = q.try_into().map_err(|_| KeyError::Invalid {
        what,
        reason: "q is not 32 bytes",
    })?;
    let point = ecdsa::decode_point(&q).ok_or(KeyError::Invalid {
        what,
        reason: "q is not a point of Ed25519",
    })?;
    Ok((q, point))
}

/// A Guix public key: an Ed25519 point, used with ECDSA.
#[derive(Clone)]
pub struct PublicKey {
    q: [u8; 32],
    point: EdwardsPoint,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.q == other.q
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(#{}#)", hex::encode_upper(self.q))
    }
}

impl PublicKey {
    /// Read a key from its s-expression `(public-key (ecc …))`.
    pub fn from_sexp(sexp: &Sexp) -> Result<Self, KeyError> {
        let body = ecc_body("public key", sexp, "public-key", &["curve", "q"])?;
        let (q, point) = q_of("public key", body)?;
        Ok(Self { q, point })
    }

    /// Read a `signing-key.pub` file's text.
    pub fn parse(text: &[u8]) -> Result<Self, KeyError> {
        let sexp = Sexp::parse(text).map_err(|error| KeyError::Sexp {
            what: "public key",
            error,
        })?;
        Self::from_sexp(&sexp)
    }

    /// The 32-byte encoding of the point (`q`).
    pub fn q(&self) -> &[u8; 32] {
        &self.q
    }

    pub(crate) fn point(&self) -> &EdwardsPoint {
        &self.point
    }

    /// The key as an s-expression, as Guix writes it.
    pub fn to_sexp(&self) -> Sexp {
        Sexp::list([
            Sexp::atom("public-key"),
            Sexp::list([
                Sexp::atom("ecc"),
                Sexp::list([Sexp::atom("curve"), Sexp::atom("Ed25519")]),
                Sexp::list([Sexp::atom("q"), Sexp::atom(self.q.to_vec())]),
            ]),
        ])
    }

    /// The text of a `signing-key.pub` file, byte for byte as Guix writes it.
    pub fn to_file_text(&self) -> String {
        String::from_utf8_lossy(&self.to_sexp().to_advanced()).into_owned()
    }
}

/// A Guix secret key (`signing-key.sec`).
#[derive(Clone)]
pub struct SecretKey {
    /// The secret scalar as libgcrypt keeps it: big-endian, unreduced.
    d: [u8; 32],
    public: PublicKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {:?})", self.public)
    }
}

impl SecretKey {
    /// A new key pair, made the way libgcrypt makes Guix's.
    pub fn generate() -> Self {
        Self::from_d(ecdsa::generate_secret())
    }

    fn from_d(d: [u8; 32]) -> Self {
        let point = ecdsa::public_point(&d);
        Self {
            d,
            public: PublicKey {
                q: point.compress().to_bytes(),
                point,
            },
        }
    }

    /// Read a `signing-key.sec` file's text; its `q` must be `d`'s.
    pub fn parse(text: &[u8]) -> Result<Self, KeyError> {
        const WHAT: &str = "secret key";
        let sexp = Sexp::parse(text).map_err(|error| KeyError::Sexp { what: WHAT, error })?;
        let body = ecc_body(WHAT, &sexp, "private-key", &["curve", "q", "d"])?;
        let (q, _) = q_of(WHAT, body)?;
        let d = field(WHAT, body, "d")?;
        // An MPI: leading zero bytes may be dropped, never more than 32 bytes.
        let d = d.strip_prefix(&[0]).unwrap_or(d);
        if d.is_empty() || d.len() > 32 {
            return Err(KeyError::Invalid {
                what: WHAT,
                reason: "d is not a scalar of at most 32 bytes",
            });
        }
        let mut full = [0u8; 32];
        full[32 - d.len()..].copy_from_slice(d);
        let key = Self::from_d(full);
        if key.public.q != q {
            return Err(KeyError::Invalid {
                what: WHAT,
                reason: "q is not the public key of d",
            });
        }
        Ok(key)
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub(crate) fn d(&self) -> &[u8; 32] {
        &self.d
    }

    /// The text of a `signing-key.sec` file, as Guix writes it.
    pub fn to_file_text(&self) -> String {
        let sexp = Sexp::list([
            Sexp::atom("private-key"),
            Sexp::list([
                Sexp::atom("ecc"),
                Sexp::list([Sexp::atom("curve"), Sexp::atom("Ed25519")]),
                Sexp::list([Sexp::atom("q"), Sexp::atom(self.public.q.to_vec())]),
                Sexp::list([Sexp::atom("d"), Sexp::atom(mpi_bytes(&self.d))]),
            ]),
        ]);
        String::from_utf8_lossy(&sexp.to_advanced()).into_owned()
    }
}

/// An unsigned integer as libgcrypt prints it (`%M`): big-endian, no
/// leading zero bytes.
pub(crate) fn mpi_bytes(be: &[u8]) -> Vec<u8> {
    let start = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    be[start..].to_vec()
}

/// The keys Guix accepts substitutes from (`/etc/guix/acl`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    keys: Vec<PublicKey>,
    /// Entries of key types this code cannot verify (RSA, EdDSA).
    skipped: usize,
}

impl Acl {
    /// An ACL authorizing `keys` (duplicates dropped).
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let mut acl = Acl::default();
        for k in keys {
            acl.add(k);
        }
        acl
    }

    /// Authorize `key` too (as `guix archive --authorize` does).
    pub fn add(&mut self, key: PublicKey) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// Read an ACL file: `(acl (entry KEY (tag (guix import)))…)`.
    pub fn parse(text: &[u8]) -> Result<Self, KeyError> {
        let sexp = Sexp::parse(text).map_err(|error| KeyError::Sexp { what: "ACL", error })?;
        Self::from_sexp(&sexp)
    }

    fn from_sexp(sexp: &Sexp) -> Result<Self, KeyError> {
        let Some(entries) = sexp.tagged("acl") else {
            return Err(shape("ACL", "expected (acl …)"));
        };
        let mut acl = Acl::default();
        for (i, entry) in entries.iter().enumerate() {
            let Some([key, tag]) = entry.tagged("entry") else {
                return Err(shape(
                    "ACL",
                    format!("entry {i} is not (entry KEY (tag …))"),
                ));
            };
            let want_tag = Sexp::list([
                Sexp::atom("tag"),
                Sexp::list([Sexp::atom("guix"), Sexp::atom("import")]),
            ]);
            if *tag != want_tag {
                return Err(shape(
                    "ACL",
                    format!("entry {i}: tag is not (tag (guix import))"),
                ));
            }
            match PublicKey::from_sexp(key) {
                Ok(k) => acl.add(k),
                Err(KeyError::Unsupported { .. }) => acl.skipped += 1,
                Err(e) => {
                    return Err(shape("ACL", format!("entry {i}: {e}")));
                }
            }
        }
        Ok(acl)
    }

    /// Read either an ACL file or a single public key file (both are what
    /// `--authorized-keys` takes).
    pub fn parse_acl_or_key(text: &[u8]) -> Result<Self, KeyError> {
        let sexp = Sexp::parse(text).map_err(|error| KeyError::Sexp {
            what: "ACL or public key",
            error,
        })?;
        if sexp.head() == Some(b"public-key") {
            return Ok(Acl::new([PublicKey::from_sexp(&sexp)?]));
        }
        Self::from_sexp(&sexp)
    }

    /// The authorized keys this code can verify.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Entries skipped because of their key type.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Whether `key` is authorized.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.contains(key)
    }

    /// The ACL file text, as Guix writes it.
    pub fn to_file_text(&self) -> String {
        let mut items = vec![Sexp::atom("acl")];
        for k in &self.keys {
            items.push(Sexp::list([
                Sexp::atom("entry"),
                k.to_sexp(),
                Sexp::list([
                    Sexp::atom("tag"),
                    Sexp::list([Sexp::atom("guix"), Sexp::atom("import")]),
                ]),
            ]));
        }
        String::from_utf8_lossy(&Sexp::List(items).to_advanced()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key pair written by libgcrypt 1.10 for
    /// `(genkey (ecdsa (curve Ed25519) (flags rfc6979)))`, what `guix
    /// archive --generate-key` runs.
    pub(crate) const SEC: &str = "(private-key \n (ecc \n  (curve Ed25519)\n  (q #7167EF53714E409130D04E923550DB1926CC22CE3BF609E12352E44957A9EA1B#)\n  (d #5A45EC315EBD285C539CC3CCE3BB1BAF5D35AD5B14730A6B6579878B8B8F9C58#)\n  )\n )\n";
    pub(crate) const PUB: &str = "(public-key \n (ecc \n  (curve Ed25519)\n  (q #7167EF53714E409130D04E923550DB1926CC22CE3BF609E12352E44957A9EA1B#)\n  )\n )\n";

    #[test]
    fn libgcrypt_key_files_read_and_write_back() {
        let sec = SecretKey::parse(SEC.as_bytes()).unwrap();
        let public = PublicKey::parse(PUB.as_bytes()).unwrap();
        assert_eq!(sec.public(), &public);
        assert_eq!(sec.to_file_text(), SEC);
        assert_eq!(public.to_file_text(), PUB);
    }

    #[test]
    fn generated_keys_round_trip() {
        let k = SecretKey::generate();
        let again = SecretKey::parse(k.to_file_text().as_bytes()).unwrap();
        assert_eq!(again.public(), k.public());
        assert_eq!(again.d(), k.d());
    }

    #[test]
    fn mismatched_and_foreign_keys_are_refused() {
        let other = SecretKey::generate();
        let bad = SEC.replace(
            "7167EF53714E409130D04E923550DB1926CC22CE3BF609E12352E44957A9EA1B",
            &hex::encode_upper(other.public().q()),
        );
        assert!(matches!(
            SecretKey::parse(bad.as_bytes()),
            Err(KeyError::Invalid {
                reason: "q is not the public key of d",
                ..
            })
        ));
        let rsa = b"(public-key (rsa (n #00C1#) (e #010001#)))";
        assert!(matches!(
            PublicKey::parse(rsa),
            Err(KeyError::Unsupported { .. })
        ));
        let eddsa = b"(public-key (ecc (curve Ed25519) (flags eddsa) (q #C203EF12D1F1AEE73A2FBD8022B2125FF7CDA03026F0FE27733B77BCD502B92F#)))";
        assert!(matches!(
            PublicKey::parse(eddsa),
            Err(KeyError::Unsupported { .. })
        ));
        let nist = b"(public-key (ecc (curve NIST-P256) (q #04#)))";
        assert!(matches!(
            PublicKey::parse(nist),
            Err(KeyError::Unsupported { .. })
        ));
        assert!(matches!(
            PublicKey::parse(&PUB.as_bytes()[..40]),
            Err(KeyError::Sexp { .. })
        ));
    }

    #[test]
    fn acl_round_trip_and_key_file_as_acl() {
        let a = PublicKey::parse(PUB.as_bytes()).unwrap();
        let b = SecretKey::generate().public().clone();
        let acl = Acl::new([a.clone(), b.clone(), a.clone()]);
        assert_eq!(acl.keys().len(), 2);
        let text = acl.to_file_text();
        assert!(text.starts_with("(acl \n (entry \n  (public-key \n   (ecc \n"));
        let again = Acl::parse(text.as_bytes()).unwrap();
        assert_eq!(again, acl);
        assert!(again.contains(&b));
        let single = Acl::parse_acl_or_key(PUB.as_bytes()).unwrap();
        assert_eq!(single.keys(), &[a]);
        let with_rsa =
            b"(acl (entry (public-key (rsa (n #00C1#) (e #010001#))) (tag (guix import))))";
        let acl = Acl::parse(with_rsa).unwrap();
        assert_eq!((acl.keys().len(), acl.skipped()), (0, 1));
        assert!(Acl::parse(b"(acl (entry x (tag (guix export))))").is_err());
    }
}
