//! Checked byte strings: `PathComponent` (a name in a directory) and
//! `SymlinkTarget`. Both are built only through constructors that enforce
//! docs/data-model.md's rules, so holding one means it is valid.

use std::fmt;

use bytes::Bytes;

/// Longest name a directory entry may have, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Longest symlink target, in bytes.
pub const MAX_SYMLINK_TARGET_LEN: usize = 4095;

/// Why a byte string is not a valid entry name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Names must not be empty.
    #[error("empty name")]
    Empty,
    /// Names are at most 255 bytes.
    #[error("name of {0} bytes is longer than 255")]
    TooLong(usize),
    /// `.` and `..` would escape or alias the directory.
    #[error("name {0:?} is reserved")]
    Reserved(String),
    /// A `/` would make the name a path.
    #[error("name {0:?} contains '/'")]
    ContainsSlash(String),
    /// NUL cannot appear in a POSIX file name.
    #[error("name {0:?} contains NUL")]
    ContainsNul(String),
}

/// Why a byte string is not a valid symlink target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SymlinkTargetError {
    /// Targets must not be empty.
    #[error("empty symlink target")]
    Empty,
    /// Targets are at most 4095 bytes (PATH_MAX less the NUL).
    #[error("symlink target of {0} bytes is longer than 4095")]
    TooLong(usize),
    /// NUL cannot appear in a POSIX path.
    #[error("symlink target {0:?} contains NUL")]
    ContainsNul(String),
}

/// One name in a directory: 1–255 bytes, not `.` or `..`, no `/`, no NUL.
/// Any other bytes (not necessarily UTF-8) are allowed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathComponent(Bytes);

impl PathComponent {
    /// Check `name` and wrap it.
    pub fn new(name: impl Into<Bytes>) -> Result<Self, NameError> {
        let name: Bytes = name.into();
        let lossy = || String::from_utf8_lossy(&name).into_owned();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(name.len()));
        }
        if name.as_ref() == b"." || name.as_ref() == b".." {
            return Err(NameError::Reserved(lossy()));
        }
        if name.contains(&b'/') {
            return Err(NameError::ContainsSlash(lossy()));
        }
        if name.contains(&0) {
            return Err(NameError::ContainsNul(lossy()));
        }
        Ok(Self(name))
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The name as `Bytes` (cheap clone).
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }
}

impl TryFrom<&[u8]> for PathComponent {
    type Error = NameError;
    fn try_from(value: &[u8]) -> Result<Self, Self::Error> {
        Self::new(Bytes::copy_from_slice(value))
    }
}

impl TryFrom<&str> for PathComponent {
    type Error = NameError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl AsRef<[u8]> for PathComponent {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for PathComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for PathComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// The target of a symlink: 1–4095 bytes without NUL. It may be absolute,
/// relative, or dangling: castore does not interpret it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SymlinkTarget(Bytes);

impl SymlinkTarget {
    /// Check `target` and wrap it.
    pub fn new(target: impl Into<Bytes>) -> Result<Self, SymlinkTargetError> {
        let target: Bytes = target.into();
        if target.is_empty() {
            return Err(SymlinkTargetError::Empty);
        }
        if target.len() > MAX_SYMLINK_TARGET_LEN {
            return Err(SymlinkTargetError::TooLong(target.len()));
        }
        if target.contains(&0) {
            return Err(SymlinkTargetError::ContainsNul(
                String::from_utf8_lossy(&target).into_owned(),
            ));
        }
        Ok(Self(target))
    }

    /// The target's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The target as `Bytes` (cheap clone).
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }
}

impl TryFrom<&[u8]> for SymlinkTarget {
    type Error = SymlinkTargetError;
    fn try_from(value: &[u8]) -> Result<Self, Self::Error> {
        Self::new(Bytes::copy_from_slice(value))
    }
}

impl TryFrom<&str> for SymlinkTarget {
    type Error = SymlinkTargetError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl AsRef<[u8]> for SymlinkTarget {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for SymlinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for SymlinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        assert!(PathComponent::try_from("hello.txt").is_ok());
        assert!(PathComponent::try_from(&b"\xff\xfe not utf8"[..]).is_ok());
        assert!(PathComponent::try_from("a b\nc").is_ok());
        assert!(PathComponent::try_from("x".repeat(255).as_str()).is_ok());
        assert_eq!(PathComponent::try_from(""), Err(NameError::Empty));
        assert_eq!(
            PathComponent::try_from("x".repeat(256).as_str()),
            Err(NameError::TooLong(256))
        );
        assert!(matches!(
            PathComponent::try_from("."),
            Err(NameError::Reserved(_))
        ));
        assert!(matches!(
            PathComponent::try_from(".."),
            Err(NameError::Reserved(_))
        ));
        assert!(matches!(
            PathComponent::try_from("a/b"),
            Err(NameError::ContainsSlash(_))
        ));
        assert!(matches!(
            PathComponent::try_from("a\0b"),
            Err(NameError::ContainsNul(_))
        ));
        // "..." and ".x" are ordinary names.
        assert!(PathComponent::try_from("...").is_ok());
        assert!(PathComponent::try_from(".x").is_ok());
    }

    #[test]
    fn symlink_targets_follow_the_rules() {
        assert!(SymlinkTarget::try_from("/abs/olute").is_ok());
        assert!(SymlinkTarget::try_from("../dangling").is_ok());
        assert!(SymlinkTarget::try_from("x".repeat(4095).as_str()).is_ok());
        assert_eq!(SymlinkTarget::try_from(""), Err(SymlinkTargetError::Empty));
        assert_eq!(
            SymlinkTarget::try_from("x".repeat(4096).as_str()),
            Err(SymlinkTargetError::TooLong(4096))
        );
        assert!(matches!(
            SymlinkTarget::try_from("a\0"),
            Err(SymlinkTargetError::ContainsNul(_))
        ));
    }
}
