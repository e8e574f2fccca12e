//! storefs-store: Nix and Guix semantics on top of storefs-castore.
//!
//! # Layout
//! - [`nar`]: the NAR writer, the strict NAR reader and NAR hashing.
//! - [`nixbase32`]: Nix's hash encoding; [`StorePath`], [`StoreDir`] and
//!   store path computation (`make_*_path`).
//! - [`PathInfo`], [`PathInfoService`]: what is known of each store path,
//!   and the stores of it ([`MemoryPathInfoService`],
//!   [`RedbPathInfoService`], [`ObjectStorePathInfoService`]).
//! - [`NixHash`], [`ContentAddress`]: Nix's hash and content-address texts.
//! - [`narinfo`], [`Signature`], [`SecretKey`], [`TrustedKeys`]: binary-cache
//!   narinfo files, fingerprints, ed25519 keys and signatures.
//! - [`import`]: closure import from binary caches, daemons and Guix;
//!   [`daemon`]: the Nix daemon protocol, server and client.
//! - [`guix`]: Guix's s-expressions, keys, ACL, signatures and narinfos.
//!
//! ```
//! use storefs_store::{ContentAddress, StoreDir};
//! // `nix-store --add hello.txt` of a file holding `Hello World!`.
//! let ca: ContentAddress =
//!     "fixed:r:sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3".parse().unwrap();
//! let sd = StoreDir::default();
//! let path = ca.store_path("hello.txt", &[], false, &sd).unwrap();
//! assert_eq!(path.to_absolute(&sd), "/nix/store/925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod content_address;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod guix;
mod hash;
pub mod import;
pub mod nar;
pub mod narinfo;
pub mod nixbase32;
mod pathinfo;
mod pathinfoservice;
mod services;
mod signing;
mod store_path;

pub use content_address::{ContentAddress, ContentAddressError};
pub use hash::{HashAlgo, HashError, NixHash};
pub use pathinfo::{PathInfo, PathInfoError};
pub use pathinfoservice::{
    CachedPathInfoService, MemoryPathInfoService, NarCalculationService,
    ObjectStorePathInfoService, PathInfoService, RedbPathInfoService,
};
pub use services::Services;
pub use signing::{PublicKey, SecretKey, Signature, SigningError, TrustedKeys};
pub use store_path::{
    DIGEST_LEN, HASH_PART_LEN, MAX_NAME_LEN, StoreDir, StorePath, StorePathError,
    make_fixed_output_path, make_source_path, make_store_path, make_text_path, parse_hash_part,
    store_path_fingerprint, validate_name,
};

/// The protobuf messages of `snix.store.v1`, generated from `proto/`.
#[allow(missing_docs)] // generated code; the schema documents each field
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/snix.store.v1.rs"));
}
