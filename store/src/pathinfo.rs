//! `PathInfo`: what storefs knows of one store path: its root node in
//! castore and the facts Nix keeps about it (references, NAR hash and size,
//! signatures, deriver, content address).

use storefs_castore::Node;

mod convert;
mod nix;
pub use convert::PathInfoError;

use crate::{ContentAddress, Signature, StorePath};

/// One store path, as storefs records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// The path itself (digest and name).
    pub store_path: StorePath,
    /// Its contents in castore. The node's name is the store path's base name.
    pub node: Node,
    /// The paths it refers to (may include itself).
    pub references: Vec<StorePath>,
    /// Length of its NAR serialisation.
    pub nar_size: u64,
    /// SHA-256 of its NAR serialisation.
    pub nar_sha256: [u8; 32],
    /// Signatures over its fingerprint.
    pub signatures: Vec<Signature>,
    /// The derivation that built it, if known.
    pub deriver: Option<StorePath>,
    /// How it is content-addressed, if it is.
    pub ca: Option<ContentAddress>,
}
