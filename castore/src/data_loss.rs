//! Which errors mean that data a store holds is damaged, as opposed to a
//! failed request or an unreachable remote: every front end reports those
//! to the operator (at error level) as well as to the client.

use crate::error::Error;

impl Error {
    /// Whether this error means stored data is corrupt: bytes that do not
    /// hash to their digest, a directory that breaks the model, a stream
    /// found to hold invalid data.
    pub fn is_data_loss(&self) -> bool {
        match self {
            Error::Integrity { .. } | Error::InvalidDirectory { .. } => true,
            Error::Io(e) => e.kind() == std::io::ErrorKind::InvalidData,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::B3Digest;

    #[test]
    fn integrity_and_invalid_data_are_data_loss() {
        let e = Error::Integrity {
            what: "chunk",
            expected: B3Digest::of(b"a"),
            actual: B3Digest::of(b"b"),
        };
        assert!(e.is_data_loss());
        let e = Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, "x"));
        assert!(e.is_data_loss());
        assert!(!Error::timeout("slow", None).is_data_loss());
        assert!(!Error::Io(std::io::Error::other("x")).is_data_loss());
    }
}
