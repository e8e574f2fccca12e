//! Entry points for the fuzz targets in `fuzz/` (each target is a one-line
//! call to a function here). Not part of the API: hidden from the docs.
//!
//! These functions assert, and so panic, on purpose: a panic is how a
//! fuzzer learns it found a bug.

use prost::Message;

use crate::{Directory, proto};

/// Decode `data` as a protobuf `Directory` and check the model's promises:
///
/// - input that prost decodes and re-encodes byte for byte (fields in
///   number order, no default values, no unknown fields: canonical at the
///   protobuf level) and that passes validation must come back unchanged
///   from `Directory::decode` then `encode` (decode→encode == input), so its
///   digest is BLAKE3 of the input;
/// - any valid input, canonical or not, encodes to bytes that decode to the
///   same directory and re-encode identically.
///
/// Invalid input must simply be refused (an `Err`), never panic.
pub fn directory_from_proto(data: &[u8]) {
    let Ok(msg) = proto::Directory::decode(data) else {
        assert!(Directory::decode(data).is_err());
        return;
    };
    let proto_canonical = msg.encode_to_vec() == data;
    let Ok(dir) = Directory::try_from(msg) else {
        assert!(Directory::decode(data).is_err());
        return;
    };
    let encoded = dir.encode();
    if proto_canonical {
        assert_eq!(
            encoded.as_ref(),
            data,
            "canonical input changed on decode→encode"
        );
        assert_eq!(dir.digest(), crate::B3Digest::of(data));
    }
    match Directory::decode(&encoded) {
        Ok(again) => {
            assert_eq!(again, dir, "re-decoded directory differs");
            assert_eq!(again.encode(), encoded, "encoding is not stable");
        }
        Err(e) => panic!("the canonical encoding of a valid directory was refused: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_and_refuses_invalid_without_panicking() {
        directory_from_proto(&Directory::new().encode());
        directory_from_proto(b"");
        directory_from_proto(b"\xff\xff\xff");
        // A file entry with a 3-byte digest: decodes as protobuf, fails
        // validation.
        let msg = proto::Directory {
            files: vec![proto::FileEntry {
                name: "a".into(),
                digest: vec![1, 2, 3].into(),
                size: 1,
                executable: false,
            }],
            ..Default::default()
        };
        directory_from_proto(&msg.encode_to_vec());
    }
}
