//! Deterministic pseudo-random bytes.

/// `len` bytes of deterministic, incompressible content seeded by `seed`
/// (xorshift64*), so that content-defined chunking cuts real chunks, files
/// differ from each other and failures reproduce. A shorter output is a
/// prefix of a longer one with the same seed.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::pseudo_random;

    #[test]
    fn deterministic_prefix_closed_and_seed_dependent() {
        let a = pseudo_random(1000, 7);
        assert_eq!(a, pseudo_random(1000, 7));
        assert_eq!(&a[..13], &pseudo_random(13, 7)[..]);
        assert_ne!(a, pseudo_random(1000, 8));
        assert_ne!(pseudo_random(64, 0), vec![0u8; 64]);
    }
}
