//! narinfo files: a binary cache's description of one store path
//! (Nix 2.8 nar-info.cc). See docs/nix-formats.md.
//!
//! ```text
//! narinfo = line*
//! line    = key ": " value "\n"
//! ```
//! Nix writes the keys in this order, and so does [`NarInfo::render`]:
//! `StorePath` (full path), `URL`, `Compression`, `FileHash`, `FileSize`,
//! `NarHash` (`sha256:<nix32>`), `NarSize`, `References` (space-separated
//! base names, sorted), `Deriver` (base name), `System`, `Sig` (one per
//! signature, sorted), `CA`.
//!
//! Parsing follows Nix: unknown keys are skipped; `StorePath`, `URL`,
//! `NarHash` and a non-zero `NarSize` are required; `Compression` defaults
//! to `bzip2`; `Deriver: unknown-deriver` means none; `References` and
//! `Sig` are sets (sorted, duplicates dropped). Unlike Nix, a known key
//! given twice is an error, and so is any malformed known field; every
//! error names the line and the key.

mod fingerprint;
mod parse;
mod render;

pub use fingerprint::{FingerprintError, fingerprint};
pub use parse::NarInfoError;

use crate::StorePath;
use crate::{ContentAddress, NixHash, Signature};

/// The compression Nix assumes when a narinfo names none.
pub const DEFAULT_COMPRESSION: &str = "bzip2";

/// A parsed narinfo. Fields are public; [`NarInfo::parse`] gives them in
/// normal form (references and signatures sorted and deduplicated), and
/// [`NarInfo::render`] sorts them again, so a value built by hand renders
/// the way Nix would render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    /// The store path described.
    pub store_path: StorePath,
    /// Where the (compressed) NAR is, relative to the cache root.
    pub url: String,
    /// `none`, `xz`, `bzip2`, `zstd`, …; never empty.
    pub compression: String,
    /// Hash of the file at `url` (the compressed NAR), if given.
    pub file_hash: Option<NixHash>,
    /// Size of the file at `url`, if given.
    pub file_size: Option<u64>,
    /// SHA-256 of the uncompressed NAR.
    pub nar_sha256: [u8; 32],
    /// Size of the uncompressed NAR; never 0.
    pub nar_size: u64,
    /// The paths this one refers to.
    pub references: Vec<StorePath>,
    /// The derivation that built it, if known.
    pub deriver: Option<StorePath>,
    /// The system it was built for (`System:`), which Nix keeps but does
    /// not interpret.
    pub system: Option<String>,
    /// Signatures over the path's [`fingerprint`].
    pub signatures: Vec<Signature>,
    /// Its content address, if it has one.
    pub ca: Option<ContentAddress>,
}

impl NarInfo {
    /// Put references and signatures in the order Nix's sets keep them
    /// (references by base name, signatures by their text), without
    /// duplicates.
    pub fn normalize(&mut self) {
        self.references.sort_by_cached_key(|r| r.base_name());
        self.references.dedup();
        self.signatures.sort_by_cached_key(|s| s.to_string());
        self.signatures.dedup();
    }
}
