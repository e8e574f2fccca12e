//! Guix narinfos, as `guix publish` writes them (guix/scripts/publish.scm
//! `narinfo-string`) and `guix substitute` reads them (guix/narinfo.scm).
//!
//! ```text
//! StorePath: /gnu/store/<hash>-<name>
//! NarHash: sha256:<nix32>
//! NarSize: <decimal>
//! References: <base name>*            (space-separated; "References: " when none)
//! Deriver: <base name>                (optional)
//! Signature: 1;<host>;<base64 sexp>   (signs the SHA-256 of all the text above it)
//! URL: nar/<compression>/<url-encoded base name>   ┐ one group per offered
//! Compression: <none|gzip|zstd|lzip|…>             │ compression, "none" with
//! FileSize: <decimal>                              ┘ URL nar/<base name>
//! ```
//!
//! What is signed is the text before the first `Signature:`, byte for byte
//! (the URL groups after it may change without re-signing). Older servers
//! put `URL`/`Compression`/`FileSize` and `System` above the signature;
//! any order parses. The parser is strict: every line is `Key: value\n`, a
//! known key appears once (the group keys once per `URL`), values are
//! checked, and errors name the line. Unknown keys are skipped, as Guix
//! does. A narinfo whose signature does not cover `StorePath`, `NarHash`,
//! `NarSize`, `References` and `Deriver` is refused by
//! [`ParsedNarInfo::verify`].

use sha2::{Digest, Sha256};

use super::key::{Acl, SecretKey};
use super::signature::{GuixSignature, SignatureError, SignatureField};
use crate::nixbase32;
use crate::{StoreDir, StorePath};

/// The longest narinfo accepted.
pub const MAX_NARINFO_LEN: usize = 1 << 20;

/// One way of downloading the NAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarOffer {
    /// Where, relative to the server's root (or absolute).
    pub url: String,
    /// `none`, `gzip`, `zstd`, `lzip`, `xz`, `bzip2`.
    pub compression: String,
    /// The size of the file at `url`, when the server knows it.
    pub file_size: Option<u64>,
}

/// A Guix narinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuixNarInfo {
    /// The store path described.
    pub store_path: StorePath,
    /// SHA-256 of the uncompressed NAR.
    pub nar_sha256: [u8; 32],
    /// Size of the uncompressed NAR.
    pub nar_size: u64,
    /// The paths it refers to, in the order given.
    pub references: Vec<StorePath>,
    /// The derivation that built it.
    pub deriver: Option<StorePath>,
    /// `System:` (older servers; kept, not interpreted).
    pub system: Option<String>,
    /// The signature, if any.
    pub signature: Option<SignatureField>,
    /// The downloads offered, in the order given.
    pub offers: Vec<NarOffer>,
}

/// Why a narinfo is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuixNarInfoError {
    /// Longer than [`MAX_NARINFO_LEN`].
    #[error("narinfo of {0} bytes is too long")]
    TooLong(usize),
    /// Not UTF-8.
    #[error("narinfo is not UTF-8")]
    NotUtf8,
    /// A line that is not `Key: value`, or text after the last newline.
    #[error("line {line}: not \"Key: value\"")]
    Syntax {
        /// 1-based line number.
        line: usize,
    },
    /// A known key given twice.
    #[error("line {line}: {key} given twice")]
    Duplicate {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// A known key with a malformed value.
    #[error("line {line}: invalid {key}: {reason}")]
    Field {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A required key is missing.
    #[error("no {0} field")]
    Missing(&'static str),
    /// `Compression`/`FileSize` without a `URL` before it, or a `URL`
    /// without `Compression`.
    #[error("line {line}: {reason}")]
    Group {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The narinfo has no `Signature`.
    #[error("narinfo is not signed")]
    Unsigned,
    /// A field the signature must cover comes after it.
    #[error("{0} is not covered by the signature")]
    NotCovered(&'static str),
    /// The signature is refused.
    #[error("{0}")]
    Signature(SignatureError),
}

fn field_err(line: usize, key: &'static str, reason: impl Into<String>) -> GuixNarInfoError {
    GuixNarInfoError::Field {
        line,
        key,
        reason: reason.into(),
    }
}

/// A narinfo as read, with what verification needs: the exact text and
/// where each field was.
#[derive(Debug, Clone)]
pub struct ParsedNarInfo {
    /// The narinfo's fields.
    pub info: GuixNarInfo,
    /// The text before the first `Signature:` (what is signed).
    signed_text: Option<String>,
    /// Byte offsets of the fields the signature must cover.
    offsets: Vec<(&'static str, usize)>,
}

const KEYS: &[&str] = &[
    "StorePath",
    "NarHash",
    "NarSize",
    "References",
    "Deriver",
    "System",
    "Signature",
    "URL",
    "Compression",
    "FileSize",
];

impl GuixNarInfo {
    /// Parse a narinfo's bytes; see the module doc for the rules.
    pub fn parse(bytes: &[u8], store_dir: &StoreDir) -> Result<ParsedNarInfo, GuixNarInfoError> {
        if bytes.len() > MAX_NARINFO_LEN {
            return Err(GuixNarInfoError::TooLong(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| GuixNarInfoError::NotUtf8)?;
        let mut store_path = None;
        let mut nar_hash = None;
        let mut nar_size = None;
        let mut references = None;
        let mut deriver = None;
        let mut system = None;
        let mut signature = None;
        let mut offers: Vec<(usize, Option<String>, Option<u64>, String)> = Vec::new();
        let mut offsets = Vec::new();
        let mut pos = 0;
        let mut rest = text;
        let mut line = 0;
        while !rest.is_empty() {
            line += 1;
            let Some(nl) = rest.find('\n') else {
                return Err(GuixNarInfoError::Syntax { line });
            };
            let l = &rest[..nl];
            let start = pos;
            pos += nl + 1;
            rest = &rest[nl + 1..];
            let Some((key, value)) = l.split_once(": ").or_else(|| {
                // "References:" with nothing after it.
                l.strip_suffix(':').map(|k| (k, ""))
            }) else {
                return Err(GuixNarInfoError::Syntax { line });
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(GuixNarInfoError::Syntax { line });
            }
            let Some(&key) = KEYS.iter().find(|k| **k == key) else {
                continue; // unknown keys are skipped, as Guix does
            };
            let once = |present: bool| {
                if present {
                    Err(GuixNarInfoError::Duplicate { line, key })
                } else {
                    Ok(())
                }
            };
            let base_name = |v: &str| {
                StorePath::from_base_name(v).map_err(|e| field_err(line, key, e.to_string()))
            };
            match key {
                "StorePath" => {
                    once(store_path.is_some())?;
                    let p = store_dir
                        .parse_path(value)
                        .map_err(|e| field_err(line, key, e.to_string()))?;
                    store_path = Some(p);
                }
                "NarHash" => {
                    once(nar_hash.is_some())?;
                    let nix32 = value
                        .strip_prefix("sha256:")
                        .ok_or_else(|| field_err(line, key, "not sha256:<nix32>"))?;
                    let h = nixbase32::decode_fixed::<32>(nix32.as_bytes())
                        .map_err(|e| field_err(line, key, e.to_string()))?;
                    nar_hash = Some(h);
                }
                "NarSize" => {
                    once(nar_size.is_some())?;
                    nar_size =
                        Some(decimal(value).ok_or_else(|| field_err(line, key, "not a size"))?);
                }
                "References" => {
                    once(references.is_some())?;
                    let refs = value
                        .split(' ')
                        .filter(|r| !r.is_empty())
                        .map(base_name)
                        .collect::<Result<Vec<_>, _>>()?;
                    references = Some(refs);
                }
                "Deriver" => {
                    once(deriver.is_some())?;
                    deriver = Some(base_name(value)?);
                }
                "System" => {
                    once(system.is_some())?;
                    system = Some(value.to_owned());
                }
                "Signature" => {
                    once(signature.is_some())?;
                    let f = SignatureField::parse(value)
                        .map_err(|e| field_err(line, key, e.to_string()));
                    signature = Some(f);
                }
                "URL" => {
                    if value.is_empty() {
                        return Err(field_err(line, key, "empty"));
                    }
                    offers.push((line, None, None, value.to_owned()));
                }
                "Compression" | "FileSize" => {
                    let Some(last) = offers.last_mut() else {
                        return Err(GuixNarInfoError::Group {
                            line,
                            reason: "Compression or FileSize before any URL",
                        });
                    };
                    if key == "Compression" {
                        if last.1.is_some() {
                            return Err(GuixNarInfoError::Duplicate { line, key });
                        }
                        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                            return Err(field_err(line, key, "not a compression name"));
                        }
                        last.1 = Some(value.to_owned());
                    } else {
                        if last.2.is_some() {
                            return Err(GuixNarInfoError::Duplicate { line, key });
                        }
                        last.2 =
                            Some(decimal(value).ok_or_else(|| field_err(line, key, "not a size"))?);
                    }
                }
                _ => {}
            }
            if matches!(
                key,
                "StorePath" | "NarHash" | "NarSize" | "References" | "Deriver"
            ) {
                offsets.push((key, start));
            }
        }
        let offers = offers
            .into_iter()
            .map(|(line, compression, file_size, url)| {
                let compression = compression.ok_or(GuixNarInfoError::Group {
                    line,
                    reason: "URL without a Compression",
                })?;
                Ok(NarOffer {
                    url,
                    compression,
                    file_size,
                })
            })
            .collect::<Result<Vec<_>, GuixNarInfoError>>()?;
        // A signature that does not parse makes the narinfo unusable, but
        // only when it is to be verified; keep the error for then.
        let (signature, signature_error) = match signature {
            Some(Ok(s)) => (Some(s), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        if let Some(e) = signature_error {
            return Err(e);
        }
        let info = GuixNarInfo {
            store_path: store_path.ok_or(GuixNarInfoError::Missing("StorePath"))?,
            nar_sha256: nar_hash.ok_or(GuixNarInfoError::Missing("NarHash"))?,
            nar_size: nar_size.ok_or(GuixNarInfoError::Missing("NarSize"))?,
            references: references.ok_or(GuixNarInfoError::Missing("References"))?,
            deriver,
            system,
            signature,
            offers,
        };
        let signed_text = text.find("Signature:").map(|i| text[..i].to_owned());
        Ok(ParsedNarInfo {
            info,
            signed_text,
            offsets,
        })
    }

    /// The text `guix publish` serves for this path: the normative fields,
    /// the signature by `key` (with `host`) over them, then the offers.
    pub fn render(&self, store_dir: &StoreDir, key: Option<(&SecretKey, &str)>) -> String {
        let mut out = self.signed_text(store_dir);
        let field = match key {
            Some((key, host)) => Some(SignatureField {
                host: host.to_owned(),
                signature: GuixSignature::sign(key, Sha256::digest(out.as_bytes()).into()),
            }),
            None => self.signature.clone(),
        };
        if let Some(f) = field {
            out.push_str("Signature: ");
            out.push_str(&f.render());
            out.push('\n');
        }
        for o in &self.offers {
            out.push_str(&format!("URL: {}\nCompression: {}\n", o.url, o.compression));
            if let Some(size) = o.file_size {
                out.push_str(&format!("FileSize: {size}\n"));
            }
        }
        out
    }

    /// The normative part, which the signature covers.
    pub fn signed_text(&self, store_dir: &StoreDir) -> String {
        let refs: Vec<String> = self.references.iter().map(StorePath::base_name).collect();
        let mut out = format!(
            "StorePath: {}\nNarHash: sha256:{}\nNarSize: {}\nReferences: {}\n",
            self.store_path.to_absolute(store_dir),
            nixbase32::encode(&self.nar_sha256),
            self.nar_size,
            refs.join(" ")
        );
        if let Some(s) = &self.system {
            out.push_str(&format!("System: {s}\n"));
        }
        if let Some(d) = &self.deriver {
            out.push_str(&format!("Deriver: {}\n", d.base_name()));
        }
        out
    }
}

impl ParsedNarInfo {
    /// Check that the narinfo is signed by a key in `acl`, over exactly
    /// the text above its `Signature:` line, and that the signature covers
    /// every field that says what the path is.
    pub fn verify(&self, acl: &Acl) -> Result<(), GuixNarInfoError> {
        let (Some(field), Some(signed)) = (&self.info.signature, &self.signed_text) else {
            return Err(GuixNarInfoError::Unsigned);
        };
        for (key, offset) in &self.offsets {
            if *offset >= signed.len() {
                return Err(GuixNarInfoError::NotCovered(key));
            }
        }
        let hash: [u8; 32] = Sha256::digest(signed.as_bytes()).into();
        field
            .signature
            .check(&hash, acl)
            .map_err(GuixNarInfoError::Signature)
    }
}

fn decimal(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || (v.len() > 1 && v.starts_with('0'))
    {
        return None;
    }
    v.parse().ok()
}

/// The URL `guix publish` gives a NAR: `nar/<base name>` uncompressed,
/// `nar/<compression>/<base name>` otherwise, the base name URL-encoded
/// as Guile's `uri-encode` does (all but `A-Za-z0-9-._~` as `%XX`).
pub fn nar_url(compression: &str, base_name: &str) -> String {
    let name = uri_encode(base_name);
    if compression == "none" {
        format!("nar/{name}")
    } else {
        format!("nar/{compression}/{name}")
    }
}

/// Percent-encode everything but RFC 3986's unreserved characters.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undo [`uri_encode`] (any `%XX`, either case); `None` if malformed or
/// not UTF-8.
pub fn uri_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gnu() -> StoreDir {
        StoreDir::new("/gnu/store").unwrap()
    }

    /// A narinfo served by berlin.guixsd.org (Guix's build farm, 2018
    /// layout with URL, Compression and FileSize above the signature),
    /// signed with the farm's key, as quoted in a public README of a
    /// guix-ipfs-cache experiment.
    const BERLIN: &str = "StorePath: /gnu/store/y857mykfnc9vd1sc2lqz5g35l111fp71-opensmtpd-test
URL: nar/gzip/y857mykfnc9vd1sc2lqz5g35l111fp71-opensmtpd-test
Compression: gzip
NarHash: sha256:136lm3fxh4kbsgz32157cnmyypgynkkmrqqb03biym1nm6cdwyv7
NarSize: 2600
References: 2sznibwwvp6x0ha2j6n8s1z1brf8ra4q-opensmtpd-test-builder
FileSize: 894
System: x86_64-linux
Deriver: 8aski1xwcn6lj112yc9ylgp2y3c7sj83-opensmtpd-test.drv
Signature: 1;berlin.guixsd.org;KHNpZ25hdHVyZSAKIChkYXRhIAogIChmbGFncyByZmM2OTc5KQogIChoYXNoIHNoYTI1NiAjQTdCQzIwRjU0QzQ1NEYyRUE1QjQ1NTU1QzExN0VDOEYzMjA1RjlEQkM4N0ZDMzc4M0M1NjBCREM5REZCQUI3QyMpCiAgKQogKHNpZy12YWwgCiAgKGVjZHNhIAogICAociAjQzhGRjZGMTMyNUFENzRBRjhDRDVDOTEzREE2NThFMjM5QzJCOEQ1QjZGNzM5REM1ODdDMTVERDVCODA3RkQjKQogICAocyAjMENCMTA3NUI5NDI5MUNEODVFMDI5NDQ4N0YzMTk1QUI5RTI5ODE5ODBFQzg2RDc1NDZDMDYyRjQ1NTNBRjEzQiMpCiAgICkKICApCiAocHVibGljLWtleSAKICAoZWNjIAogICAoY3VydmUgRWQyNTUxOSkKICAgKHEgIzhEMTU2RjI5NUQyNEIwRDlBODZGQTU3NDFBODQwRkYyRDI0RjYwRjdCNkM0MTM0ODE0QUQ1NTYyNTk3MUIzOTQjKQogICApCiAgKQogKQo=
";

    /// The build farm's key as `/etc/guix/acl` lists it on Guix systems.
    const FARM_ACL: &str = "(acl \n (entry \n  (public-key \n   (ecc \n    (curve Ed25519)\n    (q #8D156F295D24B0D9A86FA5741A840FF2D24F60F7B6C4134814AD55625971B394#)\n    )\n   )\n  (tag \n   (guix import)\n   )\n  )\n )\n";

    #[test]
    fn build_farm_narinfo_verifies_byte_for_byte() {
        let acl = Acl::parse(FARM_ACL.as_bytes()).unwrap();
        assert_eq!(acl.to_file_text(), FARM_ACL);
        let parsed = GuixNarInfo::parse(BERLIN.as_bytes(), &gnu()).unwrap();
        parsed.verify(&acl).unwrap();
        let info = &parsed.info;
        assert_eq!(info.nar_size, 2600);
        assert_eq!(info.offers.len(), 1);
        assert_eq!(info.offers[0].file_size, Some(894));
        assert_eq!(info.system.as_deref(), Some("x86_64-linux"));
        // The signature re-renders to the very base64 the farm sent.
        let sig = BERLIN
            .lines()
            .find_map(|l| l.strip_prefix("Signature: "))
            .unwrap();
        assert_eq!(info.signature.as_ref().unwrap().render(), sig);
        // Any change to the signed text is caught.
        let tampered = BERLIN.replace("NarSize: 2600", "NarSize: 2601");
        let p = GuixNarInfo::parse(tampered.as_bytes(), &gnu()).unwrap();
        assert_eq!(
            p.verify(&acl),
            Err(GuixNarInfoError::Signature(SignatureError::HashMismatch))
        );
        // Not authorized.
        assert!(matches!(
            parsed.verify(&Acl::default()),
            Err(GuixNarInfoError::Signature(SignatureError::Unauthorized(_)))
        ));
    }

    fn sample(n: usize) -> GuixNarInfo {
        let p = StorePath::from_base_name("y857mykfnc9vd1sc2lqz5g35l111fp71-gtk+-2.0").unwrap();
        let r = StorePath::from_base_name("2sznibwwvp6x0ha2j6n8s1z1brf8ra4q-glibc-2.39").unwrap();
        GuixNarInfo {
            offers: ["zstd", "none"]
                .iter()
                .take(n)
                .map(|c| NarOffer {
                    url: nar_url(c, &p.base_name()),
                    compression: (*c).to_owned(),
                    file_size: (*c == "none").then_some(1234),
                })
                .collect(),
            store_path: p,
            nar_sha256: [9; 32],
            nar_size: 1234,
            references: vec![r],
            deriver: None,
            system: None,
            signature: None,
        }
    }

    #[test]
    fn renders_in_guix_publish_order() {
        let key = SecretKey::generate();
        let text = sample(2).render(&gnu(), Some((&key, "host")));
        let keys: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "StorePath",
                "NarHash",
                "NarSize",
                "References",
                "Signature",
                "URL",
                "Compression",
                "URL",
                "Compression",
                "FileSize"
            ]
        );
        assert!(text.contains("URL: nar/zstd/y857mykfnc9vd1sc2lqz5g35l111fp71-gtk%2B-2.0\n"));
        assert!(text.contains("URL: nar/y857mykfnc9vd1sc2lqz5g35l111fp71-gtk%2B-2.0\n"));
        let parsed = GuixNarInfo::parse(text.as_bytes(), &gnu()).unwrap();
        parsed.verify(&Acl::new([key.public().clone()])).unwrap();
        assert_eq!(parsed.info.render(&gnu(), None), text);
    }

    #[test]
    fn malformed_narinfos_name_the_line() {
        let key = SecretKey::generate();
        let good = sample(1).render(&gnu(), Some((&key, "h")));
        let cases: Vec<(String, GuixNarInfoError)> = vec![
            (
                good.replace("NarSize: 1234", "NarSize: 12x"),
                field_err(3, "NarSize", "not a size"),
            ),
            (
                good.replace("NarSize: 1234\n", "NarSize: 1234\nNarSize: 1\n"),
                GuixNarInfoError::Duplicate {
                    line: 4,
                    key: "NarSize",
                },
            ),
            (
                good.replace("NarHash: ", "NarHash sha256:"),
                GuixNarInfoError::Syntax { line: 2 },
            ),
            (
                good.trim_end().to_owned(),
                GuixNarInfoError::Syntax { line: 7 },
            ),
            (
                good.replace("URL: ", "Compression: zstd\nURL: "),
                GuixNarInfoError::Group {
                    line: 6,
                    reason: "Compression or FileSize before any URL",
                },
            ),
            (
                good.replace("References: ", "References: nope "),
                field_err(4, "References", ""),
            ),
        ];
        for (text, want) in cases {
            let got = GuixNarInfo::parse(text.as_bytes(), &gnu()).unwrap_err();
            match (&got, &want) {
                (
                    GuixNarInfoError::Field {
                        line: a, key: b, ..
                    },
                    GuixNarInfoError::Field {
                        line: c, key: d, ..
                    },
                ) => {
                    assert_eq!((a, b), (c, d), "{got}")
                }
                _ => assert_eq!(got, want),
            }
        }
        // A signature that does not cover NarSize.
        let moved = good.replace("NarSize: 1234\n", "") + "NarSize: 1234\n";
        let p = GuixNarInfo::parse(moved.as_bytes(), &gnu()).unwrap();
        assert_eq!(
            p.verify(&Acl::new([key.public().clone()])),
            Err(GuixNarInfoError::NotCovered("NarSize"))
        );
        let unsigned = sample(1).render(&gnu(), None);
        let p = GuixNarInfo::parse(unsigned.as_bytes(), &gnu()).unwrap();
        assert_eq!(p.verify(&Acl::default()), Err(GuixNarInfoError::Unsigned));
    }

    #[test]
    fn uri_encoding_matches_guile() {
        assert_eq!(uri_encode("abc-gtk+-2.0_x=y~z"), "abc-gtk%2B-2.0_x%3Dy~z");
        assert_eq!(uri_decode("gtk%2b%2B").as_deref(), Some("gtk++"));
        assert_eq!(uri_decode("bad%2"), None);
    }

    proptest! {
        #[test]
        fn render_parse_round_trip(
            size in 1u64..u64::MAX,
            hash in any::<[u8; 32]>(),
            nrefs in 0usize..4,
            deriver in any::<bool>(),
            offers in 0usize..3,
        ) {
            let key = SecretKey::generate();
            let mut info = sample(offers);
            info.nar_size = size;
            info.nar_sha256 = hash;
            info.references = (0..nrefs)
                .map(|i| StorePath::from_parts([i as u8; 20], &format!("r{i}")).unwrap())
                .collect();
            info.deriver = deriver.then(|| StorePath::from_parts([7; 20], "x.drv").unwrap());
            let text = info.render(&gnu(), Some((&key, "h")));
            let parsed = GuixNarInfo::parse(text.as_bytes(), &gnu()).unwrap();
            parsed.verify(&Acl::new([key.public().clone()])).unwrap();
            prop_assert_eq!(parsed.info.render(&gnu(), None), text);
            info.signature = parsed.info.signature.clone();
            prop_assert_eq!(parsed.info, info);
        }
    }
}
