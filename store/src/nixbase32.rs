//! nixbase32: Nix's base-32 encoding of hashes (alphabet without e, o, u, t),
//! written from the end of the byte string. See docs/nix-formats.md.

/// The 32 characters, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// A string that is not nixbase32 of the expected length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Nixbase32Error {
    /// A character outside the alphabet.
    #[error("invalid nixbase32 character {0:?} at position {1}")]
    InvalidChar(char, usize),
    /// The text has the wrong length for the expected number of bytes.
    #[error("nixbase32 of length {0}, expected {1}")]
    InvalidLength(usize, usize),
    /// Bits set beyond the decoded length.
    #[error("nixbase32 has non-zero padding bits")]
    NonZeroPadding,
}

/// Length of the encoding of `len` bytes.
pub const fn encoded_len(len: usize) -> usize {
    (len * 8).div_ceil(5)
}

/// Encode `input`.
pub fn encode(input: &[u8]) -> String {
    let len = encoded_len(input.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let lo = input.get(i).copied().unwrap_or(0) as u16;
        let hi = input.get(i + 1).copied().unwrap_or(0) as u16;
        let c = ((lo | (hi << 8)) >> j) & 0x1f;
        out.push(ALPHABET[c as usize] as char);
    }
    out
}

fn value_of(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

/// Decode `input` into `out_len` bytes.
pub fn decode(input: &[u8], out_len: usize) -> Result<Vec<u8>, Nixbase32Error> {
    if input.len() != encoded_len(out_len) {
        return Err(Nixbase32Error::InvalidLength(
            input.len(),
            encoded_len(out_len),
        ));
    }
    let mut out = vec![0u8; out_len];
    for (pos, &c) in input.iter().enumerate() {
        let n = input.len() - 1 - pos;
        let digit = value_of(c).ok_or(Nixbase32Error::InvalidChar(c as char, pos))? as u16;
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let v = digit << j;
        // i < out_len always: n < encoded_len(out_len) so b < 8 * out_len.
        if let Some(o) = out.get_mut(i) {
            *o |= (v & 0xff) as u8;
        }
        let carry = (v >> 8) as u8;
        if carry != 0 {
            match out.get_mut(i + 1) {
                Some(o) => *o |= carry,
                None => return Err(Nixbase32Error::NonZeroPadding),
            }
        }
    }
    Ok(out)
}

/// Decode into a fixed-size array.
pub fn decode_fixed<const N: usize>(input: &[u8]) -> Result<[u8; N], Nixbase32Error> {
    let v = decode(input, N)?;
    let mut out = [0u8; N];
    out.copy_from_slice(&v);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        // docs/nix-formats.md, worked example: NAR sha256 of `Hello World!` as a file.
        let h = hex::decode("03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040")
            .unwrap();
        assert_eq!(
            encode(&h),
            "0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3"
        );
        assert_eq!(
            decode(b"0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3", 32).unwrap(),
            h
        );
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x1f]), "0z");
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(decode(b"0e", 1), Err(Nixbase32Error::InvalidChar('e', 1)));
        assert_eq!(decode(b"000", 1), Err(Nixbase32Error::InvalidLength(3, 2)));
        // "z0" = 31 << 5 overflows one byte.
        assert_eq!(decode(b"z0", 1), Err(Nixbase32Error::NonZeroPadding));
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = encode(&bytes);
            prop_assert_eq!(s.len(), encoded_len(bytes.len()));
            prop_assert_eq!(decode(s.as_bytes(), bytes.len()).unwrap(), bytes);
        }
    }
}
