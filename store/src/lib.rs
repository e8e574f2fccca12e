//! storefs-store: Nix and Guix semantics on top of storefs-castore.
//!
//! # Layout
//! - [`nar`]: the NAR writer, the strict NAR reader and NAR hashing.
//! - [`nixbase32`], [`store_path`]: Nix's hash encoding and store paths.
//! - [`pathinfo`], [`pathinfoservice`]: what is known of each store path,
//!   and the stores of it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[doc(hidden)]
pub mod fuzzing;
pub mod nar;
pub mod nixbase32;
pub mod pathinfo;
pub mod pathinfoservice;
pub mod store_path;

/// The protobuf messages of `snix.store.v1`, generated from `proto/`.
#[allow(missing_docs)] // generated code; the schema documents each field
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/snix.store.v1.rs"));
}
