//! `B3Digest`: the BLAKE3 digest that addresses every blob, chunk and directory.

use std::fmt;

use bytes::Bytes;

/// Length in bytes of a BLAKE3 digest.
pub const B3_LEN: usize = 32;

/// A BLAKE3 digest (32 bytes). Every constructor checks the length, so a
/// value of this type is always a well-formed digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct B3Digest([u8; B3_LEN]);

/// A byte string that is not 32 bytes long was offered as a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest length: {0} bytes, expected 32")]
pub struct InvalidDigestLen(pub usize);

impl B3Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; B3_LEN] {
        &self.0
    }

    /// The digest as an owned `Bytes`, the form protobuf messages carry.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(&self.0)
    }

    /// Lowercase hexadecimal, as snix and our logs print digests.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse 64 hexadecimal characters.
    pub fn from_hex(s: &str) -> Result<Self, InvalidDigestLen> {
        let v = hex::decode(s).map_err(|_| InvalidDigestLen(s.len() / 2))?;
        Self::try_from(v.as_slice())
    }
}

impl From<[u8; B3_LEN]> for B3Digest {
    fn from(value: [u8; B3_LEN]) -> Self {
        Self(value)
    }
}

impl From<blake3::Hash> for B3Digest {
    fn from(value: blake3::Hash) -> Self {
        Self(*value.as_bytes())
    }
}

impl TryFrom<&[u8]> for B3Digest {
    type Error = InvalidDigestLen;
    fn try_from(value: &[u8]) -> Result<Self, Self::Error> {
        <[u8; B3_LEN]>::try_from(value)
            .map(Self)
            .map_err(|_| InvalidDigestLen(value.len()))
    }
}

impl TryFrom<&Bytes> for B3Digest {
    type Error = InvalidDigestLen;
    fn try_from(value: &Bytes) -> Result<Self, Self::Error> {
        Self::try_from(value.as_ref())
    }
}

impl TryFrom<Bytes> for B3Digest {
    type Error = InvalidDigestLen;
    fn try_from(value: Bytes) -> Result<Self, Self::Error> {
        Self::try_from(value.as_ref())
    }
}

impl TryFrom<Vec<u8>> for B3Digest {
    type Error = InvalidDigestLen;
    fn try_from(value: Vec<u8>) -> Result<Self, Self::Error> {
        Self::try_from(value.as_slice())
    }
}

impl AsRef<[u8]> for B3Digest {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for B3Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // "b3:" + hex, so a digest in a message is recognisable as one.
        write!(f, "b3:{}", self.to_hex())
    }
}

impl fmt::Debug for B3Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_blob_digest() {
        // docs/data-model.md, interop vectors: blob `Hello World!`.
        assert_eq!(
            B3Digest::of(b"Hello World!").to_hex(),
            "5ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c"
        );
    }

    #[test]
    fn wrong_lengths_are_refused() {
        assert_eq!(
            B3Digest::try_from(&[0u8; 31][..]),
            Err(InvalidDigestLen(31))
        );
        assert_eq!(
            B3Digest::try_from(&[0u8; 33][..]),
            Err(InvalidDigestLen(33))
        );
        assert!(B3Digest::try_from(&[0u8; 32][..]).is_ok());
    }

    #[test]
    fn hex_round_trip() {
        let d = B3Digest::of(b"x");
        assert_eq!(B3Digest::from_hex(&d.to_hex()), Ok(d));
    }
}
