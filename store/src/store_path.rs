//! Store paths: `<store dir>/<32 nixbase32 chars>-<name>`.
//!
//! A `StorePath` is the part after the store directory: a 20-byte digest
//! and a name. The store directory (`/nix/store`, `/gnu/store`) is carried
//! separately by [`StoreDir`], since it also enters the path's hash.

use std::fmt;

use crate::nixbase32;

mod compute;
pub use compute::{
    make_fixed_output_path, make_source_path, make_store_path, make_text_path,
    store_path_fingerprint,
};

/// Length of a store path's digest in bytes.
pub const DIGEST_LEN: usize = 20;
/// Length of the encoded hash part.
pub const HASH_PART_LEN: usize = 32;
/// Longest name Nix accepts.
pub const MAX_NAME_LEN: usize = 211;

/// Why a string is not a store path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorePathError {
    /// The hash part is not 32 nixbase32 characters.
    #[error("invalid hash part in {0:?}: {1}")]
    InvalidHash(String, nixbase32::Nixbase32Error),
    /// No `-` after the hash part.
    #[error("{0:?} is not <hash>-<name>")]
    MissingDash(String),
    /// The name breaks Nix's rules.
    #[error("invalid store path name {0:?}: {1}")]
    InvalidName(String, &'static str),
    /// A full path that is not in the expected store directory.
    #[error("{0:?} is not in the store directory {1}")]
    NotInStore(String, String),
    /// A store directory that is not an absolute, clean path.
    #[error("invalid store directory {0:?}")]
    InvalidStoreDir(String),
    /// References given for a kind of path that cannot have them (flat or
    /// non-sha256 fixed outputs; self-references of text paths).
    #[error("a {0} path cannot have references")]
    ReferencesNotAllowed(&'static str),
}

/// Check a store path name: 1–211 characters of `[A-Za-z0-9+-._?=]`, not
/// starting with `.`.
pub fn validate_name(name: &str) -> Result<(), StorePathError> {
    let bad = |why| Err(StorePathError::InvalidName(name.to_owned(), why));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 211 characters");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"+-._?=".contains(&c))
    {
        return bad("characters outside [A-Za-z0-9+-._?=]");
    }
    Ok(())
}

/// A store path's base name, parsed: the digest and the name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    digest: [u8; DIGEST_LEN],
    name: String,
}

impl StorePath {
    /// From parts; the name is checked.
    pub fn from_parts(digest: [u8; DIGEST_LEN], name: &str) -> Result<Self, StorePathError> {
        validate_name(name)?;
        Ok(Self {
            digest,
            name: name.to_owned(),
        })
    }

    /// Parse a base name, `<hash>-<name>`.
    pub fn from_base_name(s: &str) -> Result<Self, StorePathError> {
        let (hash, name) = split_base_name(s)?;
        let digest = nixbase32::decode_fixed::<DIGEST_LEN>(hash.as_bytes())
            .map_err(|e| StorePathError::InvalidHash(s.to_owned(), e))?;
        Self::from_parts(digest, name)
    }

    /// The 20-byte digest.
    pub fn digest(&self) -> &[u8; DIGEST_LEN] {
        &self.digest
    }

    /// The name after the dash.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-character hash part.
    pub fn hash_part(&self) -> String {
        nixbase32::encode(&self.digest)
    }

    /// `<hash>-<name>`.
    pub fn base_name(&self) -> String {
        format!("{}-{}", self.hash_part(), self.name)
    }

    /// The full path in `store_dir`.
    pub fn to_absolute(&self, store_dir: &StoreDir) -> String {
        format!("{}/{}", store_dir.as_str(), self.base_name())
    }
}

fn split_base_name(s: &str) -> Result<(&str, &str), StorePathError> {
    if s.len() < HASH_PART_LEN + 2 || !s.is_char_boundary(HASH_PART_LEN) {
        return Err(StorePathError::MissingDash(s.to_owned()));
    }
    let (hash, rest) = s.split_at(HASH_PART_LEN);
    let name = rest
        .strip_prefix('-')
        .ok_or_else(|| StorePathError::MissingDash(s.to_owned()))?;
    Ok((hash, name))
}

/// Decode a 32-character hash part into its digest.
pub fn parse_hash_part(s: &str) -> Result<[u8; DIGEST_LEN], StorePathError> {
    nixbase32::decode_fixed::<DIGEST_LEN>(s.as_bytes())
        .map_err(|e| StorePathError::InvalidHash(s.to_owned(), e))
}

impl fmt::Display for StorePath {
    /// The base name; use [`StorePath::to_absolute`] for the full path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.hash_part(), self.name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({self})")
    }
}

/// The store directory: `/nix/store` for Nix, `/gnu/store` for Guix. It is
/// part of every path's fingerprint, so it is explicit wherever paths are
/// computed or printed.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct StoreDir(String);

impl Default for StoreDir {
    fn default() -> Self {
        Self("/nix/store".to_owned())
    }
}

impl StoreDir {
    /// Check and wrap: absolute, no trailing slash, no `.`/`..` components.
    pub fn new(dir: &str) -> Result<Self, StorePathError> {
        let ok = dir.starts_with('/')
            && dir.len() > 1
            && !dir.ends_with('/')
            && dir
                .split('/')
                .skip(1)
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if ok {
            Ok(Self(dir.to_owned()))
        } else {
            Err(StorePathError::InvalidStoreDir(dir.to_owned()))
        }
    }

    /// The directory as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parse a full path in this store directory, or a bare base name.
    /// Anything after the store path (`/bin/x`) is refused.
    pub fn parse_path(&self, s: &str) -> Result<StorePath, StorePathError> {
        if s.starts_with('/') {
            let rest = s
                .strip_prefix(self.0.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .ok_or_else(|| StorePathError::NotInStore(s.to_owned(), self.0.clone()))?;
            StorePath::from_base_name(rest)
        } else {
            StorePath::from_base_name(s)
        }
    }
}

impl fmt::Display for StoreDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt";

    #[test]
    fn parses_base_and_full_paths() {
        let sd = StoreDir::default();
        let p = StorePath::from_base_name(P).unwrap();
        assert_eq!(p.name(), "hello.txt");
        assert_eq!(p.hash_part(), "925f1jb1ajrypjbyq7rylwryqwizvhp0");
        assert_eq!(p.to_string(), P);
        assert_eq!(sd.parse_path(&format!("/nix/store/{P}")).unwrap(), p);
        assert_eq!(sd.parse_path(P).unwrap(), p);
        assert_eq!(p.to_absolute(&sd), format!("/nix/store/{P}"));
    }

    #[test]
    fn refuses_bad_paths() {
        let sd = StoreDir::default();
        assert!(matches!(
            sd.parse_path(&format!("/gnu/store/{P}")),
            Err(StorePathError::NotInStore(..))
        ));
        assert!(matches!(
            sd.parse_path(&format!("/nix/store/{P}/bin")),
            Err(StorePathError::InvalidName(..))
        ));
        assert!(matches!(
            StorePath::from_base_name("short"),
            Err(StorePathError::MissingDash(_))
        ));
        assert!(matches!(
            StorePath::from_base_name("e25f1jb1ajrypjbyq7rylwryqwizvhp0-x"),
            Err(StorePathError::InvalidHash(..))
        ));
        assert!(matches!(
            StorePath::from_base_name("925f1jb1ajrypjbyq7rylwryqwizvhp0-.x"),
            Err(StorePathError::InvalidName(..))
        ));
        assert!(matches!(
            StorePath::from_base_name("925f1jb1ajrypjbyq7rylwryqwizvhp0-a b"),
            Err(StorePathError::InvalidName(..))
        ));
        let long = format!("925f1jb1ajrypjbyq7rylwryqwizvhp0-{}", "a".repeat(212));
        assert!(matches!(
            StorePath::from_base_name(&long),
            Err(StorePathError::InvalidName(..))
        ));
        let ok = format!("925f1jb1ajrypjbyq7rylwryqwizvhp0-{}", "a".repeat(211));
        assert!(StorePath::from_base_name(&ok).is_ok());
        assert!(StoreDir::new("/gnu/store").is_ok());
        assert!(StoreDir::new("gnu/store").is_err());
        assert!(StoreDir::new("/nix/store/").is_err());
        assert!(StoreDir::new("/nix/../store").is_err());
    }
}
