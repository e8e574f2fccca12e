//! ECDSA on the twisted Edwards curve of Ed25519, as libgcrypt does it for
//! the keys `guix archive --generate-key` makes (`(genkey (ecdsa (curve
//! Ed25519) (flags rfc6979)))`). This is not EdDSA: the signature is an
//! ECDSA pair `(r, s)` over the 253-bit group order `n`, with `r` the affine
//! x coordinate of `k·G` reduced mod `n`, and `k` chosen by RFC 6979 with
//! HMAC-SHA-256.
//!
//! ```text
//! e = sha256(message) >> 3          (the leftmost 253 bits)
//! sign:   k = rfc6979(d, hash); r = x(k·G) mod n; s = k⁻¹(e + d·r) mod n
//! verify: 0 < r, s < n; X = (e·s⁻¹)·G + (r·s⁻¹)·Q; x(X) mod n == r
//! ```
//!
//! The group arithmetic is curve25519-dalek's; only the affine x
//! coordinate, which that crate does not expose, is recovered here from the
//! point's encoding (`x² = (y² − 1)/(d·y² + 1)` mod `2²⁵⁵ − 19`). The
//! secret scalar `d` is kept as libgcrypt keeps it: 32 big-endian bytes,
//! not reduced mod `n` (libgcrypt's Ed25519 ECDSA keys are clamped like
//! X25519 scalars), which matters for RFC 6979, where it is hashed as is.

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use hmac::{Hmac, Mac};
use num_bigint::BigUint;
use sha2::Sha256;

/// The group order `n` (ℓ = 2²⁵² + 27742317777372353535851937790883648493),
/// big-endian.
const ORDER_BE: [u8; 32] = [
    0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0xde, 0xf9, 0xde, 0xa2, 0xf7, 0x9c, 0xd6, 0x58, 0x12, 0x63, 0x1a, 0x5c, 0xf5, 0xd3, 0xed,
];

/// Bits in `n`.
const ORDER_BITS: usize = 253;

fn order() -> BigUint {
    BigUint::from_bytes_be(&ORDER_BE)
}

/// A big-endian integer of at most 32 bytes as 32 big-endian bytes.
fn be32(v: &BigUint) -> [u8; 32] {
    let b = v.to_bytes_be();
    let mut out = [0u8; 32];
    // Callers pass values below 2²⁵⁶; anything longer would be a bug here,
    // and keeping the low bytes is the only total answer.
    let n = b.len().min(32);
    out[32 - n..].copy_from_slice(&b[b.len() - n..]);
    out
}

/// A scalar mod `n` from a big-endian integer below 2²⁵⁶.
fn scalar_be(v: &BigUint) -> Scalar {
    let mut le = be32(v);
    le.reverse();
    Scalar::from_bytes_mod_order(le)
}

fn scalar_to_big(s: &Scalar) -> BigUint {
    BigUint::from_bytes_le(s.as_bytes())
}

/// The leftmost 253 bits of a 256-bit hash, as libgcrypt truncates it.
fn hash_int(hash: &[u8; 32]) -> BigUint {
    BigUint::from_bytes_be(hash) >> (256 - ORDER_BITS)
}

/// The affine x coordinate of a point, from its Ed25519 encoding.
pub(crate) fn affine_x(point: &EdwardsPoint) -> BigUint {
    let enc = point.compress().to_bytes();
    let sign = enc[31] >> 7;
    let mut y_le = enc;
    y_le[31] &= 0x7f;
    let p = (BigUint::from(1u8) << 255u32) - BigUint::from(19u8);
    let y = BigUint::from_bytes_le(&y_le);
    let inv = |v: &BigUint| v.modpow(&(&p - BigUint::from(2u8)), &p);
    // d = −121665/121666
    let d = (&p - BigUint::from(121_665u32)) * inv(&BigUint::from(121_666u32)) % &p;
    let yy = &y * &y % &p;
    let u = (&yy + &p - BigUint::from(1u8)) % &p;
    let v = (&d * &yy + BigUint::from(1u8)) % &p;
    let xx = u * inv(&v) % &p;
    let mut x = xx.modpow(&((&p + BigUint::from(3u8)) >> 3u32), &p);
    if &x * &x % &p != xx {
        let sqrt_m1 = BigUint::from(2u8).modpow(&((&p - BigUint::from(1u8)) >> 2u32), &p);
        x = x * sqrt_m1 % &p;
    }
    // The encoding came from a point on the curve, so x² = xx now.
    if (&x % 2u8) != BigUint::from(sign) && x != BigUint::from(0u8) {
        x = &p - x;
    }
    x
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length; 32 bytes always works.
    let Ok(mut m) = <HmacSha256 as Mac>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// RFC 6979's deterministic `k` as libgcrypt computes it for a 253-bit
/// order: `x` is the secret as stored (32 bytes, unreduced), `h1` the
/// hash; `extra` asks for that many further candidates.
fn rfc6979_k(d: &[u8; 32], hash: &[u8; 32], mut extra: u32) -> BigUint {
    let n = order();
    let mut z1 = hash_int(hash);
    if z1 >= n {
        z1 -= &n;
    }
    let h1 = be32(&z1);
    let mut v = [1u8; 32];
    let mut k = [0u8; 32];
    k = hmac(&k, &[&v, &[0], d, &h1]);
    v = hmac(&k, &[&v]);
    k = hmac(&k, &[&v, &[1], d, &h1]);
    v = hmac(&k, &[&v]);
    loop {
        v = hmac(&k, &[&v]);
        let cand = BigUint::from_bytes_be(&v) >> (256 - ORDER_BITS);
        let ok = cand < n && cand != BigUint::from(0u8);
        if ok && extra == 0 {
            return cand;
        }
        if ok {
            extra -= 1;
        }
        k = hmac(&k, &[&v, &[0]]);
        v = hmac(&k, &[&v]);
    }
}

/// Sign a SHA-256 `hash` with the secret `d` (32 big-endian bytes, as in a
/// Guix key file): `(r, s)` as integers, deterministic (RFC 6979), so the
/// same key and hash give the bytes libgcrypt gives.
pub(crate) fn sign(d: &[u8; 32], hash: &[u8; 32]) -> (BigUint, BigUint) {
    let n = order();
    let d_scalar = scalar_be(&BigUint::from_bytes_be(d));
    let e = scalar_be(&hash_int(hash));
    let mut extra = 0;
    loop {
        let k = rfc6979_k(d, hash, extra);
        extra += 1;
        let k_scalar = scalar_be(&k);
        let point = &k_scalar * ED25519_BASEPOINT_TABLE;
        let r = affine_x(&point) % &n;
        if r == BigUint::from(0u8) {
            continue;
        }
        let s = k_scalar.invert() * (e + d_scalar * scalar_be(&r));
        if s == Scalar::ZERO {
            continue;
        }
        return (r, scalar_to_big(&s));
    }
}

/// Check an ECDSA signature `(r, s)` of a SHA-256 `hash` by `public`.
pub(crate) fn verify(public: &EdwardsPoint, hash: &[u8; 32], r: &BigUint, s: &BigUint) -> bool {
    let n = order();
    let zero = BigUint::from(0u8);
    if *r == zero || *r >= n || *s == zero || *s >= n {
        return false;
    }
    let w = scalar_be(s).invert();
    let u1 = scalar_be(&hash_int(hash)) * w;
    let u2 = scalar_be(r) * w;
    let x = EdwardsPoint::vartime_double_scalar_mul_basepoint(&u2, public, &u1);
    if x.is_identity() {
        return false;
    }
    affine_x(&x) % &n == *r
}

/// The public point of a secret `d`.
pub(crate) fn public_point(d: &[u8; 32]) -> EdwardsPoint {
    &scalar_be(&BigUint::from_bytes_be(d)) * ED25519_BASEPOINT_TABLE
}

/// Decode a public point from its 32-byte Ed25519 encoding.
pub(crate) fn decode_point(q: &[u8; 32]) -> Option<EdwardsPoint> {
    let p = CompressedEdwardsY(*q).decompress()?;
    // Only the canonical encoding names a point (as libgcrypt decodes it).
    (p.compress().to_bytes() == *q).then_some(p)
}

/// A fresh secret as libgcrypt makes one for an Ed25519 ECDSA key: 32
/// random bytes, bit 255 clear, bit 254 set, a multiple of 8.
pub(crate) fn generate_secret() -> [u8; 32] {
    use rand::RngCore;
    let mut d = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut d);
    d[0] &= 0x7f;
    d[0] |= 0x40;
    d[31] &= 0xf8;
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_matches_dalek() {
        // n − 1 ≡ −1 mod n.
        let m1 = scalar_be(&(order() - BigUint::from(1u8)));
        assert_eq!(m1 + Scalar::ONE, Scalar::ZERO);
    }

    #[test]
    fn basepoint_x_is_the_known_one() {
        let x = affine_x(&curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
        assert_eq!(
            x.to_string(),
            "15112221349535400772501151409588531511454012693041857206046113283949847762202"
        );
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let d = generate_secret();
        let q = public_point(&d);
        let h = [7u8; 32];
        let (r, s) = sign(&d, &h);
        assert!(verify(&q, &h, &r, &s));
        assert_eq!(sign(&d, &h), (r.clone(), s.clone()), "deterministic");
        let mut h2 = h;
        h2[0] ^= 1;
        assert!(!verify(&q, &h2, &r, &s));
        assert!(!verify(&q, &h, &s, &r));
        assert!(!verify(&public_point(&generate_secret()), &h, &r, &s));
        assert!(!verify(&q, &h, &order(), &s));
    }
}
