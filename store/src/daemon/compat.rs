//! Stand-ins for the nix-layer's hash and content-address parsing until it
//! lands in main; replaced by `NixHash::parse_with_algo`,
//! `ContentAddress::parse` and `Display` then.

use crate::nixbase32;
use crate::pathinfo::{ContentAddress, HashAlgo, NixHash};

fn algo(s: &str) -> Option<HashAlgo> {
    Some(match s {
        "md5" => HashAlgo::Md5,
        "sha1" => HashAlgo::Sha1,
        "sha256" => HashAlgo::Sha256,
        "sha512" => HashAlgo::Sha512,
        _ => return None,
    })
}

fn digest(s: &str, a: HashAlgo) -> Option<NixHash> {
    let bytes = if s.len() == 2 * a.len() {
        hex::decode(s).ok()?
    } else {
        nixbase32::decode(s.as_bytes(), a.len()).ok()?
    };
    NixHash::new(a, &bytes)
}

/// A sha256 in base16 or nix32, optionally `sha256:`-prefixed.
pub(crate) fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let bare = s.strip_prefix("sha256:").unwrap_or(s);
    let h = digest(bare, HashAlgo::Sha256)?;
    h.digest().try_into().ok()
}

/// `text:sha256:…`, `fixed:r:algo:…`, `fixed:algo:…`.
pub(crate) fn parse_ca(s: &str) -> Option<ContentAddress> {
    if let Some(r) = s.strip_prefix("text:sha256:") {
        return Some(ContentAddress::Text(parse_sha256(r)?));
    }
    let r = s.strip_prefix("fixed:")?;
    let (rec, r) = match r.strip_prefix("r:") {
        Some(r) => (true, r),
        None => (false, r),
    };
    let (a, d) = r.split_once(':')?;
    let h = digest(d, algo(a)?)?;
    Some(if rec {
        ContentAddress::Recursive(h)
    } else {
        ContentAddress::Flat(h)
    })
}

/// As Nix renders a content address (nix32 digests).
pub(crate) fn ca_to_string(ca: &ContentAddress) -> String {
    match ca {
        ContentAddress::Text(d) => format!("text:sha256:{}", nixbase32::encode(d)),
        ContentAddress::Recursive(h) => {
            format!(
                "fixed:r:{}:{}",
                h.algo().name(),
                nixbase32::encode(h.digest())
            )
        }
        ContentAddress::Flat(h) => {
            format!(
                "fixed:{}:{}",
                h.algo().name(),
                nixbase32::encode(h.digest())
            )
        }
    }
}
