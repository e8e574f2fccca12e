//! Parsing narinfo text; the grammar and rules are in the module docs.

use super::{DEFAULT_COMPRESSION, NarInfo};
use crate::Signature;
use crate::{ContentAddress, HashAlgo, NixHash};
use crate::{StoreDir, StorePath};

/// Why a narinfo is refused. Lines count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NarInfoError {
    /// A line without `:`.
    #[error("narinfo line {line}: no ':' in {text:?}")]
    MissingColon {
        /// The line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// A known key whose value is not valid.
    #[error("narinfo line {line}: invalid {key}: {reason}")]
    InvalidField {
        /// The line number.
        line: usize,
        /// The key.
        key: &'static str,
        /// What is wrong, and the value.
        reason: String,
    },
    /// A known key given twice (`Sig` may repeat).
    #[error("narinfo line {line}: {key} given twice")]
    Duplicate {
        /// The line number of the second one.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// A required key is absent (or, for `URL`, empty).
    #[error("narinfo has no {0}")]
    Missing(&'static str),
    /// `NarSize: 0`.
    #[error("narinfo line {line}: NarSize is 0")]
    ZeroNarSize {
        /// The line number.
        line: usize,
    },
    /// The text is not UTF-8.
    #[error("narinfo is not UTF-8 (at byte {0})")]
    NotUtf8(usize),
}

/// The keys with meaning; any other key is skipped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    StorePath,
    Url,
    Compression,
    FileHash,
    FileSize,
    NarHash,
    NarSize,
    References,
    Deriver,
    System,
    Sig,
    Ca,
}

impl Key {
    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "StorePath" => Key::StorePath,
            "URL" => Key::Url,
            "Compression" => Key::Compression,
            "FileHash" => Key::FileHash,
            "FileSize" => Key::FileSize,
            "NarHash" => Key::NarHash,
            "NarSize" => Key::NarSize,
            "References" => Key::References,
            "Deriver" => Key::Deriver,
            "System" => Key::System,
            "Sig" => Key::Sig,
            "CA" => Key::Ca,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Key::StorePath => "StorePath",
            Key::Url => "URL",
            Key::Compression => "Compression",
            Key::FileHash => "FileHash",
            Key::FileSize => "FileSize",
            Key::NarHash => "NarHash",
            Key::NarSize => "NarSize",
            Key::References => "References",
            Key::Deriver => "Deriver",
            Key::System => "System",
            Key::Sig => "Sig",
            Key::Ca => "CA",
        }
    }
}

/// A decimal u64 without sign or other decoration.
fn parse_u64(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

impl NarInfo {
    /// Parse narinfo bytes; store paths must be in `store_dir`.
    pub fn parse_bytes(data: &[u8], store_dir: &StoreDir) -> Result<Self, NarInfoError> {
        let text = std::str::from_utf8(data).map_err(|e| NarInfoError::NotUtf8(e.valid_up_to()))?;
        Self::parse(text, store_dir)
    }

    /// Parse narinfo text; store paths must be in `store_dir`. The last
    /// line may lack its newline.
    pub fn parse(text: &str, store_dir: &StoreDir) -> Result<Self, NarInfoError> {
        let mut store_path = None;
        let mut url = None;
        let mut compression = None;
        let mut file_hash = None;
        let mut file_size = None;
        let mut nar_sha256 = None;
        let mut nar_size = None;
        let mut references = None;
        let mut deriver = None;
        let mut system = None;
        let mut signatures = Vec::new();
        let mut ca = None;

        let body = text.strip_suffix('\n').unwrap_or(text);
        if body.is_empty() {
            return Err(NarInfoError::Missing("StorePath"));
        }
        for (i, raw) in body.split('\n').enumerate() {
            let line = i + 1;
            let (name, rest) = raw
                .split_once(':')
                .ok_or_else(|| NarInfoError::MissingColon {
                    line,
                    text: raw.to_owned(),
                })?;
            let Some(key) = Key::from_name(name) else {
                continue;
            };
            let invalid = |reason: String| NarInfoError::InvalidField {
                line,
                key: key.name(),
                reason,
            };
            let value = if rest.is_empty() {
                ""
            } else {
                rest.strip_prefix(' ')
                    .ok_or_else(|| invalid(format!("no space after ':' in {raw:?}")))?
            };
            let once = |slot_full: bool| {
                if slot_full {
                    Err(NarInfoError::Duplicate {
                        line,
                        key: key.name(),
                    })
                } else {
                    Ok(())
                }
            };
            match key {
                Key::StorePath => {
                    once(store_path.is_some())?;
                    let p = store_dir
                        .parse_path(value)
                        .map_err(|e| invalid(e.to_string()))?;
                    if !value.starts_with('/') {
                        return Err(invalid(format!("{value:?} is not a full path")));
                    }
                    store_path = Some(p);
                }
                Key::Url => {
                    once(url.is_some())?;
                    if value.is_empty() {
                        return Err(NarInfoError::Missing("URL"));
                    }
                    url = Some(value.to_owned());
                }
                Key::Compression => {
                    once(compression.is_some())?;
                    compression = Some(value.to_owned());
                }
                Key::FileHash => {
                    once(file_hash.is_some())?;
                    file_hash = Some(NixHash::parse(value).map_err(|e| invalid(e.to_string()))?);
                }
                Key::FileSize => {
                    once(file_size.is_some())?;
                    file_size = Some(
                        parse_u64(value)
                            .ok_or_else(|| invalid(format!("{value:?} is not a size")))?,
                    );
                }
                Key::NarHash => {
                    once(nar_sha256.is_some())?;
                    let h = NixHash::parse(value).map_err(|e| invalid(e.to_string()))?;
                    if h.algo() != HashAlgo::Sha256 {
                        return Err(invalid(format!("{value:?} is not sha256")));
                    }
                    let mut d = [0u8; 32];
                    // A sha256 NixHash holds exactly 32 bytes.
                    d.copy_from_slice(h.digest());
                    nar_sha256 = Some(d);
                }
                Key::NarSize => {
                    once(nar_size.is_some())?;
                    let n = parse_u64(value)
                        .ok_or_else(|| invalid(format!("{value:?} is not a size")))?;
                    if n == 0 {
                        return Err(NarInfoError::ZeroNarSize { line });
                    }
                    nar_size = Some(n);
                }
                Key::References => {
                    once(references.is_some())?;
                    let refs = value
                        .split(' ')
                        .filter(|r| !r.is_empty())
                        .map(StorePath::from_base_name)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| invalid(e.to_string()))?;
                    references = Some(refs);
                }
                Key::Deriver => {
                    once(deriver.is_some())?;
                    deriver = Some(if value == "unknown-deriver" {
                        None
                    } else {
                        Some(StorePath::from_base_name(value).map_err(|e| invalid(e.to_string()))?)
                    });
                }
                Key::System => {
                    once(system.is_some())?;
                    system = Some(value.to_owned());
                }
                Key::Sig => {
                    signatures.push(Signature::parse(value).map_err(|e| invalid(e.to_string()))?);
                }
                Key::Ca => {
                    once(ca.is_some())?;
                    ca = Some(if value.is_empty() {
                        None
                    } else {
                        Some(ContentAddress::parse(value).map_err(|e| invalid(e.to_string()))?)
                    });
                }
            }
        }

        let compression = match compression {
            Some(c) if !c.is_empty() => c,
            _ => DEFAULT_COMPRESSION.to_owned(),
        };
        let mut info = NarInfo {
            store_path: store_path.ok_or(NarInfoError::Missing("StorePath"))?,
            url: url.ok_or(NarInfoError::Missing("URL"))?,
            compression,
            file_hash,
            file_size,
            nar_sha256: nar_sha256.ok_or(NarInfoError::Missing("NarHash"))?,
            nar_size: nar_size.ok_or(NarInfoError::Missing("NarSize"))?,
            references: references.unwrap_or_default(),
            deriver: deriver.flatten(),
            system: system.filter(|s| !s.is_empty()),
            signatures,
            ca: ca.flatten(),
        };
        info.normalize();
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "StorePath: /nix/store/925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt
URL: nar/0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3.nar
Compression: none
FileHash: sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3
FileSize: 128
NarHash: sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3
NarSize: 128
References: 
CA: fixed:r:sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3
";

    fn parse(s: &str) -> Result<NarInfo, NarInfoError> {
        NarInfo::parse(s, &StoreDir::default())
    }

    #[test]
    fn parses_a_nix_written_narinfo() {
        let n = parse(HELLO).unwrap();
        assert_eq!(
            n.store_path.base_name(),
            "925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt"
        );
        assert_eq!(n.compression, "none");
        assert_eq!(n.nar_size, 128);
        assert_eq!(n.file_size, Some(128));
        assert_eq!(
            hex::encode(n.nar_sha256),
            "03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040"
        );
        assert!(n.references.is_empty());
        assert_eq!(n.deriver, None);
        assert!(matches!(n.ca, Some(ContentAddress::Recursive(_))));
    }

    #[test]
    fn defaults_and_tolerance() {
        // No Compression: bzip2. Unknown keys are skipped. No final newline.
        let s = "StorePath: /nix/store/925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt\nURL: x\nFoo: bar\nNarHash: sha256:03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040\nNarSize: 1\nDeriver: unknown-deriver\nReferences:  925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt  925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt";
        let n = parse(s).unwrap();
        assert_eq!(n.compression, "bzip2");
        assert_eq!(n.deriver, None);
        assert_eq!(n.references.len(), 1);
        assert_eq!(n.file_hash, None);
    }

    fn with(line: &str, replacement: &str) -> String {
        HELLO
            .lines()
            .map(|l| if l.starts_with(line) { replacement } else { l })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn each_malformed_field_is_named() {
        let cases: &[(&str, &str, &str, usize)] = &[
            (
                "StorePath:",
                "StorePath: /gnu/store/925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt",
                "StorePath",
                1,
            ),
            (
                "StorePath:",
                "StorePath: 925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt",
                "StorePath",
                1,
            ),
            ("FileHash:", "FileHash: sha256:abc", "FileHash", 4),
            ("FileSize:", "FileSize: +128", "FileSize", 5),
            (
                "NarHash:",
                "NarHash: sha1:0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33",
                "NarHash",
                6,
            ),
            ("NarSize:", "NarSize: 12x", "NarSize", 7),
            ("References:", "References: nope", "References", 8),
            ("CA:", "CA: fixed:r:sha256:zz", "CA", 9),
            ("CA:", "CA:fixed", "CA", 9),
        ];
        for (prefix, replacement, key, line) in cases {
            let err = parse(&with(prefix, replacement)).unwrap_err();
            match err {
                NarInfoError::InvalidField {
                    line: l, key: k, ..
                } => {
                    assert_eq!((k, l), (*key, *line), "{replacement}")
                }
                other => panic!("{replacement}: {other:?}"),
            }
        }
        let sig = format!("{HELLO}Sig: k:AAAA\n");
        assert!(matches!(
            parse(&sig),
            Err(NarInfoError::InvalidField {
                key: "Sig",
                line: 10,
                ..
            })
        ));
    }

    #[test]
    fn structural_errors() {
        assert_eq!(
            parse(&with("NarSize:", "NarSize: 0")),
            Err(NarInfoError::ZeroNarSize { line: 7 })
        );
        assert_eq!(
            parse(&with("URL:", "URL: ")),
            Err(NarInfoError::Missing("URL"))
        );
        assert_eq!(
            parse(&with("NarHash:", "X: y")),
            Err(NarInfoError::Missing("NarHash"))
        );
        assert_eq!(
            parse(&with("NarSize:", "X: y")),
            Err(NarInfoError::Missing("NarSize"))
        );
        assert_eq!(
            parse(&with("StorePath:", "X: y")),
            Err(NarInfoError::Missing("StorePath"))
        );
        assert_eq!(parse(""), Err(NarInfoError::Missing("StorePath")));
        assert_eq!(
            parse(&format!("{HELLO}NarSize: 5\n")),
            Err(NarInfoError::Duplicate {
                line: 10,
                key: "NarSize"
            })
        );
        assert_eq!(
            parse(&format!("{HELLO}garbage\n")),
            Err(NarInfoError::MissingColon {
                line: 10,
                text: "garbage".into()
            })
        );
        assert_eq!(
            NarInfo::parse_bytes(b"StorePath: \xff", &StoreDir::default()),
            Err(NarInfoError::NotUtf8(11))
        );
    }
}
