//! storefs-store: Nix and Guix semantics on top of storefs-castore.
//!
//! # Layout
//! - [`nar`]: the NAR writer, the strict NAR reader and NAR hashing.
//! - [`nixbase32`], [`store_path`]: Nix's hash encoding and store paths.
//! - [`pathinfo`], [`pathinfoservice`]: what is known of each store path,
//!   and the stores of it.
//! - [`hash`], [`content_address`]: Nix's hash and content-address texts;
//!   store path computation is in [`store_path`] (`make_*_path`).
//! - [`narinfo`], [`signing`]: binary-cache narinfo files, fingerprints,
//!   ed25519 keys and signatures.
//! - [`guix`]: Guix's s-expressions, keys, ACL, signatures and narinfos.
//!
//! ```
//! use storefs_store::pathinfo::ContentAddress;
//! use storefs_store::store_path::StoreDir;
//! // `nix-store --add hello.txt` of a file holding `Hello World!`.
//! let ca: ContentAddress =
//!     "fixed:r:sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3".parse().unwrap();
//! let sd = StoreDir::default();
//! let path = ca.store_path("hello.txt", &[], false, &sd).unwrap();
//! assert_eq!(path.to_absolute(&sd), "/nix/store/925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod content_address;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod guix;
pub mod hash;
pub mod import;
pub mod nar;
pub mod narinfo;
pub mod nixbase32;
pub mod pathinfo;
pub mod pathinfoservice;
mod services;
pub mod signing;
pub mod store_path;

pub use services::Services;

/// The protobuf messages of `snix.store.v1`, generated from `proto/`.
#[allow(missing_docs)] // generated code; the schema documents each field
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/snix.store.v1.rs"));
}
