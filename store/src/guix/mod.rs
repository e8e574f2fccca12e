//! Guix's substitute formats: s-expressions, signing keys and the ACL of
//! authorized keys, narinfo signatures and narinfos as `guix publish`
//! writes them. docs/guix.md describes each byte.
//!
//! # Layout
//! - `sexp`: the s-expression parser and writer ([`Sexp`]; libgcrypt's
//!   advanced form, byte for byte).
//! - `key`: `signing-key.pub`, `signing-key.sec`, `/etc/guix/acl`
//!   ([`PublicKey`], [`SecretKey`], [`Acl`]).
//! - `signature`: the `(signature …)` s-expression and the narinfo
//!   `Signature:` field ([`GuixSignature`], [`SignatureField`]).
//! - `narinfo`: the narinfo text, rendered and parsed ([`GuixNarInfo`]).
//! - `import`: copying closures out of a `guix publish` server
//!   ([`GuixSource`]).
//! - `ecdsa`: the ECDSA-on-Ed25519 arithmetic Guix's keys use.
//!
//! ```
//! use storefs_store::guix::{Acl, GuixNarInfo, NarOffer, SecretKey, nar_url};
//! use storefs_store::{StoreDir, StorePath};
//!
//! let key = SecretKey::generate();
//! let sd = StoreDir::new("/gnu/store").unwrap();
//! let path = StorePath::from_base_name("y857mykfnc9vd1sc2lqz5g35l111fp71-hello-2.12").unwrap();
//! let info = GuixNarInfo {
//!     offers: vec![NarOffer { url: nar_url("none", &path.base_name()), compression: "none".into(), file_size: Some(120) }],
//!     store_path: path, nar_sha256: [0; 32], nar_size: 120,
//!     references: vec![], deriver: None, system: None, signature: None,
//! };
//! let text = info.render(&sd, Some((&key, "my-host")));
//! let parsed = GuixNarInfo::parse(text.as_bytes(), &sd).unwrap();
//! parsed.verify(&Acl::new([key.public().clone()])).unwrap();
//! ```

mod ecdsa;
mod import;
mod key;
mod narinfo;
mod sexp;
mod signature;

pub use import::{GuixSource, choose_offer, import_from_guix};
pub use key::{Acl, KeyError, PublicKey, SecretKey};
pub use narinfo::{
    GuixNarInfo, GuixNarInfoError, MAX_NARINFO_LEN, NarOffer, ParsedNarInfo, nar_url, uri_decode,
    uri_encode,
};
pub use sexp::{MAX_SEXP_DEPTH, MAX_SEXP_LEN, Sexp, SexpError};
pub use signature::{GuixSignature, SIGNATURE_VERSION, SignatureError, SignatureField};
