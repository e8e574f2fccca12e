//! Guix's substitute formats: s-expressions, signing keys and the ACL of
//! authorized keys, narinfo signatures and narinfos as `guix publish`
//! writes them. docs/guix.md describes each byte.
//!
//! # Layout
//! - [`sexp`]: the s-expression parser and writer (libgcrypt's advanced
//!   form, byte for byte).
//! - [`key`]: `signing-key.pub`, `signing-key.sec`, `/etc/guix/acl`.
//! - [`signature`]: the `(signature …)` s-expression and the narinfo
//!   `Signature:` field.
//! - [`narinfo`]: the narinfo text, rendered and parsed.
//! - [`import`]: copying closures out of a `guix publish` server.
//! - `ecdsa`: the ECDSA-on-Ed25519 arithmetic Guix's keys use.
//!
//! ```
//! use storefs_store::guix::key::{Acl, SecretKey};
//! use storefs_store::guix::narinfo::{GuixNarInfo, NarOffer, nar_url};
//! use storefs_store::store_path::{StoreDir, StorePath};
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
pub mod import;
pub mod key;
pub mod narinfo;
pub mod sexp;
pub mod signature;
