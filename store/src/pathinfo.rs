//! `PathInfo`: what storefs knows of one store path: its root node in
//! castore and the facts Nix keeps about it (references, NAR hash and size,
//! signatures, deriver, content address).

use storefs_castore::Node;

mod convert;
mod nix;
pub use convert::PathInfoError;

use crate::store_path::StorePath;

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

/// How a path is content-addressed (Nix's `ca` field).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContentAddress {
    /// `text:sha256:…`: `builtins.toFile`, `.drv` files. Always sha256.
    Text([u8; 32]),
    /// `fixed:r:<algo>:…`: the hash of the path's NAR.
    Recursive(NixHash),
    /// `fixed:<algo>:…`: the hash of a single regular file's contents.
    Flat(NixHash),
}

/// An ed25519 signature over a path's fingerprint, by a named key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The key's name (`cache.nixos.org-1`).
    pub name: String,
    /// The 64-byte detached signature.
    pub bytes: [u8; 64],
}

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
