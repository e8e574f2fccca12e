//! [`PathInfo`] to and from its protobuf message (`snix.store.v1.PathInfo`),
//! checking every field on the way in.
//!
//! Mapping (as snix writes it):
//! - `entry`: the root node, named by the store path's base name.
//! - `references[i]`: the 20-byte digest of reference i;
//!   `narinfo.reference_names[i]`: its base name (`<hash>-<name>`), whose
//!   hash part must be that digest.
//! - `narinfo.deriver`: `StorePath { name: "<name>.drv", digest }` (the name
//!   without the hash part).
//! - `narinfo.ca`: `CA { type, digest }`; `NAR_*` = `fixed:r:`, `FLAT_*` =
//!   `fixed:`, `TEXT_SHA256` = `text:`.

use storefs_castore::{DirectoryError, Entry, PathComponent};

use crate::proto;
use crate::proto::nar_info::ca::Hash as CaHash;
use crate::{ContentAddress, HashAlgo, NixHash, PathInfo, Signature};
use crate::{DIGEST_LEN, StorePath, StorePathError};

/// Why a protobuf `PathInfo` is refused. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathInfoError {
    /// `entry` is absent.
    #[error("path info has no entry")]
    MissingEntry,
    /// `entry` is not a valid castore entry.
    #[error("path info entry")]
    InvalidEntry(#[source] DirectoryError),
    /// The entry's name is not a store path base name.
    #[error("path info entry name {name:?}")]
    InvalidEntryName {
        /// The name, lossily decoded.
        name: String,
        /// Why it is not a store path.
        source: StorePathError,
    },
    /// `narinfo` is absent.
    #[error("path info {0} has no narinfo")]
    MissingNarInfo(String),
    /// `narinfo.nar_sha256` is not 32 bytes.
    #[error("path info {path}: nar_sha256 is {len} bytes, expected 32")]
    InvalidNarSha256 {
        /// The store path.
        path: String,
        /// Its length.
        len: usize,
    },
    /// `references` and `narinfo.reference_names` differ in length.
    #[error("path info {path}: {references} references but {names} reference names")]
    ReferenceCountMismatch {
        /// The store path.
        path: String,
        /// `references.len()`.
        references: usize,
        /// `reference_names.len()`.
        names: usize,
    },
    /// `references[index]` is not 20 bytes.
    #[error("path info {path}: reference {index} is {len} bytes, expected 20")]
    InvalidReferenceDigest {
        /// The store path.
        path: String,
        /// Position in the list.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// `reference_names[index]` is not a store path base name.
    #[error("path info {path}: reference name {index}")]
    InvalidReferenceName {
        /// The store path.
        path: String,
        /// Position in the list.
        index: usize,
        /// Why it is not a store path.
        source: StorePathError,
    },
    /// `reference_names[index]` names another digest than `references[index]`.
    #[error("path info {path}: reference name {index} ({name}) does not match its digest")]
    ReferenceNameMismatch {
        /// The store path.
        path: String,
        /// Position in the list.
        index: usize,
        /// The name given.
        name: String,
    },
    /// `signatures[index]` is not 64 bytes, or has an empty name.
    #[error(
        "path info {path}: signature {index} ({name:?}) is {len} bytes, expected 64 and a name"
    )]
    InvalidSignature {
        /// The store path.
        path: String,
        /// Position in the list.
        index: usize,
        /// The key name.
        name: String,
        /// The data's length.
        len: usize,
    },
    /// `deriver` is not a valid store path.
    #[error("path info {path}: deriver")]
    InvalidDeriver {
        /// The store path.
        path: String,
        /// Why it is not valid.
        source: StorePathError,
    },
    /// `deriver.digest` is not 20 bytes.
    #[error("path info {path}: deriver digest is {len} bytes, expected 20")]
    InvalidDeriverDigest {
        /// The store path.
        path: String,
        /// Its length.
        len: usize,
    },
    /// `ca.type` is not a known value.
    #[error("path info {path}: unknown ca type {value}")]
    UnknownCaType {
        /// The store path.
        path: String,
        /// The value.
        value: i32,
    },
    /// `ca.digest` has the wrong length for its type.
    #[error("path info {path}: ca digest is {len} bytes, expected {expected} for {kind}")]
    InvalidCaDigest {
        /// The store path.
        path: String,
        /// The CA type's name.
        kind: &'static str,
        /// The length the type needs.
        expected: usize,
        /// The length given.
        len: usize,
    },
}

fn digest20(b: &[u8]) -> Option<[u8; DIGEST_LEN]> {
    b.try_into().ok()
}

impl TryFrom<proto::PathInfo> for PathInfo {
    type Error = PathInfoError;

    fn try_from(msg: proto::PathInfo) -> Result<Self, Self::Error> {
        let entry = Entry::try_from(msg.entry.ok_or(PathInfoError::MissingEntry)?)
            .map_err(PathInfoError::InvalidEntry)?;
        let entry_name = String::from_utf8_lossy(entry.name.as_bytes()).into_owned();
        let store_path = std::str::from_utf8(entry.name.as_bytes())
            .map_err(|_| StorePathError::MissingDash(entry_name.clone()))
            .and_then(StorePath::from_base_name)
            .map_err(|source| PathInfoError::InvalidEntryName {
                name: entry_name.clone(),
                source,
            })?;
        let path = entry_name;
        let narinfo = msg
            .narinfo
            .ok_or_else(|| PathInfoError::MissingNarInfo(path.clone()))?;
        let nar_sha256: [u8; 32] = narinfo.nar_sha256.as_ref().try_into().map_err(|_| {
            PathInfoError::InvalidNarSha256 {
                path: path.clone(),
                len: narinfo.nar_sha256.len(),
            }
        })?;

        if msg.references.len() != narinfo.reference_names.len() {
            return Err(PathInfoError::ReferenceCountMismatch {
                path,
                references: msg.references.len(),
                names: narinfo.reference_names.len(),
            });
        }
        let mut references = Vec::with_capacity(msg.references.len());
        for (index, (digest, name)) in msg
            .references
            .iter()
            .zip(&narinfo.reference_names)
            .enumerate()
        {
            let d = digest20(digest).ok_or_else(|| PathInfoError::InvalidReferenceDigest {
                path: path.clone(),
                index,
                len: digest.len(),
            })?;
            let r = StorePath::from_base_name(name).map_err(|source| {
                PathInfoError::InvalidReferenceName {
                    path: path.clone(),
                    index,
                    source,
                }
            })?;
            if *r.digest() != d {
                return Err(PathInfoError::ReferenceNameMismatch {
                    path,
                    index,
                    name: name.clone(),
                });
            }
            references.push(r);
        }

        let mut signatures = Vec::with_capacity(narinfo.signatures.len());
        for (index, s) in narinfo.signatures.iter().enumerate() {
            let bytes: [u8; 64] = s
                .data
                .as_ref()
                .try_into()
                .ok()
                .filter(|_| !s.name.is_empty() && !s.name.contains(':'))
                .ok_or_else(|| PathInfoError::InvalidSignature {
                    path: path.clone(),
                    index,
                    name: s.name.clone(),
                    len: s.data.len(),
                })?;
            signatures.push(Signature {
                name: s.name.clone(),
                bytes,
            });
        }

        let deriver = match &narinfo.deriver {
            None => None,
            Some(d) => {
                let digest =
                    digest20(&d.digest).ok_or_else(|| PathInfoError::InvalidDeriverDigest {
                        path: path.clone(),
                        len: d.digest.len(),
                    })?;
                Some(StorePath::from_parts(digest, &d.name).map_err(|source| {
                    PathInfoError::InvalidDeriver {
                        path: path.clone(),
                        source,
                    }
                })?)
            }
        };

        let ca = match &narinfo.ca {
            None => None,
            Some(ca) => Some(ca_from_proto(ca, &path)?),
        };

        Ok(PathInfo {
            store_path,
            node: entry.node,
            references,
            nar_size: narinfo.nar_size,
            nar_sha256,
            signatures,
            deriver,
            ca,
        })
    }
}

fn ca_from_proto(ca: &proto::nar_info::Ca, path: &str) -> Result<ContentAddress, PathInfoError> {
    let kind = CaHash::try_from(ca.r#type).map_err(|_| PathInfoError::UnknownCaType {
        path: path.to_owned(),
        value: ca.r#type,
    })?;
    let (algo, make): (HashAlgo, fn(NixHash) -> Option<ContentAddress>) = match kind {
        CaHash::NarSha256 => (HashAlgo::Sha256, |h| Some(ContentAddress::Recursive(h))),
        CaHash::NarSha1 => (HashAlgo::Sha1, |h| Some(ContentAddress::Recursive(h))),
        CaHash::NarSha512 => (HashAlgo::Sha512, |h| Some(ContentAddress::Recursive(h))),
        CaHash::NarMd5 => (HashAlgo::Md5, |h| Some(ContentAddress::Recursive(h))),
        CaHash::TextSha256 => (HashAlgo::Sha256, |h| {
            h.digest().try_into().ok().map(ContentAddress::Text)
        }),
        CaHash::FlatSha1 => (HashAlgo::Sha1, |h| Some(ContentAddress::Flat(h))),
        CaHash::FlatMd5 => (HashAlgo::Md5, |h| Some(ContentAddress::Flat(h))),
        CaHash::FlatSha256 => (HashAlgo::Sha256, |h| Some(ContentAddress::Flat(h))),
        CaHash::FlatSha512 => (HashAlgo::Sha512, |h| Some(ContentAddress::Flat(h))),
    };
    NixHash::new(algo, &ca.digest)
        .and_then(make)
        .ok_or_else(|| PathInfoError::InvalidCaDigest {
            path: path.to_owned(),
            kind: kind.as_str_name(),
            expected: algo.len(),
            len: ca.digest.len(),
        })
}

fn ca_to_proto(ca: &ContentAddress) -> proto::nar_info::Ca {
    let (kind, digest) = match ca {
        ContentAddress::Text(d) => (CaHash::TextSha256, d.to_vec()),
        ContentAddress::Recursive(h) => (
            match h.algo() {
                HashAlgo::Sha256 => CaHash::NarSha256,
                HashAlgo::Sha1 => CaHash::NarSha1,
                HashAlgo::Sha512 => CaHash::NarSha512,
                HashAlgo::Md5 => CaHash::NarMd5,
            },
            h.digest().to_vec(),
        ),
        ContentAddress::Flat(h) => (
            match h.algo() {
                HashAlgo::Sha256 => CaHash::FlatSha256,
                HashAlgo::Sha1 => CaHash::FlatSha1,
                HashAlgo::Sha512 => CaHash::FlatSha512,
                HashAlgo::Md5 => CaHash::FlatMd5,
            },
            h.digest().to_vec(),
        ),
    };
    proto::nar_info::Ca {
        r#type: kind as i32,
        digest: digest.into(),
    }
}

impl PathInfo {
    /// The protobuf message.
    pub fn to_proto(&self) -> proto::PathInfo {
        // A store path base name is 1–255 bytes of [A-Za-z0-9+-._?=], no
        // `/`, not `.`/`..`: always a valid path component.
        let name = PathComponent::new(self.store_path.base_name().into_bytes());
        let entry = name
            .ok()
            .map(|name| Entry::new(name, self.node.clone()).to_proto());
        proto::PathInfo {
            entry,
            references: self
                .references
                .iter()
                .map(|r| r.digest().to_vec().into())
                .collect(),
            narinfo: Some(proto::NarInfo {
                nar_size: self.nar_size,
                nar_sha256: self.nar_sha256.to_vec().into(),
                signatures: self
                    .signatures
                    .iter()
                    .map(|s| proto::nar_info::Signature {
                        name: s.name.clone(),
                        data: s.bytes.to_vec().into(),
                    })
                    .collect(),
                reference_names: self.references.iter().map(|r| r.base_name()).collect(),
                deriver: self.deriver.as_ref().map(|d| proto::StorePath {
                    name: d.name().to_owned(),
                    digest: d.digest().to_vec().into(),
                }),
                ca: self.ca.as_ref().map(ca_to_proto),
            }),
        }
    }
}

impl From<&PathInfo> for proto::PathInfo {
    fn from(value: &PathInfo) -> Self {
        value.to_proto()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use storefs_castore::{B3Digest, Node};

    use super::*;

    fn p(s: &str) -> StorePath {
        StorePath::from_base_name(s).unwrap()
    }

    fn sample() -> PathInfo {
        PathInfo {
            store_path: p("0542pmh3375rz105qnkb38fnnc35v8fd-baz"),
            node: Node::File {
                digest: B3Digest::of(b"x"),
                size: 1,
                executable: false,
            },
            references: vec![
                p("r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt"),
                p("vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo"),
            ],
            nar_size: 224,
            nar_sha256: [3; 32],
            signatures: vec![Signature {
                name: "k-1".into(),
                bytes: [5; 64],
            }],
            deriver: Some(p("nfsx1mg16n2c4c7bs93jv2b1dvsspl4f-d.drv")),
            ca: Some(ContentAddress::Text([4; 32])),
        }
    }

    #[test]
    fn round_trips_through_proto() {
        let info = sample();
        let msg = info.to_proto();
        assert_eq!(
            msg.narinfo.as_ref().unwrap().reference_names,
            vec![
                "r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt",
                "vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo"
            ]
        );
        assert_eq!(
            msg.narinfo.as_ref().unwrap().deriver.as_ref().unwrap().name,
            "d.drv"
        );
        assert_eq!(PathInfo::try_from(msg).unwrap(), info);
        for ca in [
            ContentAddress::Recursive(NixHash::new(HashAlgo::Sha1, &[1; 20]).unwrap()),
            ContentAddress::Recursive(NixHash::new(HashAlgo::Md5, &[1; 16]).unwrap()),
            ContentAddress::Recursive(NixHash::new(HashAlgo::Sha512, &[1; 64]).unwrap()),
            ContentAddress::Recursive(NixHash::sha256([1; 32])),
            ContentAddress::Flat(NixHash::new(HashAlgo::Sha1, &[1; 20]).unwrap()),
            ContentAddress::Flat(NixHash::new(HashAlgo::Md5, &[1; 16]).unwrap()),
            ContentAddress::Flat(NixHash::new(HashAlgo::Sha512, &[1; 64]).unwrap()),
            ContentAddress::Flat(NixHash::sha256([1; 32])),
        ] {
            let mut i = sample();
            i.ca = Some(ca);
            i.deriver = None;
            assert_eq!(PathInfo::try_from(i.to_proto()).unwrap(), i);
        }
    }

    fn broken(f: impl FnOnce(&mut proto::PathInfo)) -> PathInfoError {
        let mut msg = sample().to_proto();
        f(&mut msg);
        PathInfo::try_from(msg).unwrap_err()
    }

    fn ni(m: &mut proto::PathInfo) -> &mut proto::NarInfo {
        m.narinfo.as_mut().unwrap()
    }

    #[test]
    fn every_field_is_checked() {
        assert_eq!(broken(|m| m.entry = None), PathInfoError::MissingEntry);
        assert!(matches!(
            broken(|m| m.entry = Some(storefs_castore::proto::Entry { entry: None })),
            PathInfoError::InvalidEntry(DirectoryError::EmptyEntry)
        ));
        assert!(matches!(
            broken(|m| {
                let name = PathComponent::try_from("not-a-store-path").unwrap();
                m.entry = Some(
                    Entry::new(
                        name,
                        Node::Symlink {
                            target: "a".try_into().unwrap(),
                        },
                    )
                    .to_proto(),
                );
            }),
            PathInfoError::InvalidEntryName { .. }
        ));
        assert!(matches!(
            broken(|m| m.narinfo = None),
            PathInfoError::MissingNarInfo(_)
        ));
        assert!(matches!(
            broken(|m| ni(m).nar_sha256 = Bytes::from_static(&[0; 31])),
            PathInfoError::InvalidNarSha256 { len: 31, .. }
        ));
        assert!(matches!(
            broken(|m| {
                m.references.pop();
            }),
            PathInfoError::ReferenceCountMismatch {
                references: 1,
                names: 2,
                ..
            }
        ));
        assert!(matches!(
            broken(|m| m.references[1] = Bytes::from_static(&[0; 19])),
            PathInfoError::InvalidReferenceDigest {
                index: 1,
                len: 19,
                ..
            }
        ));
        assert!(matches!(
            broken(|m| ni(m).reference_names[0] = "foo".into()),
            PathInfoError::InvalidReferenceName { index: 0, .. }
        ));
        assert!(matches!(
            broken(|m| m.references.swap(0, 1)),
            PathInfoError::ReferenceNameMismatch { index: 0, .. }
        ));
        assert!(matches!(
            broken(|m| ni(m).signatures[0].data = Bytes::from_static(&[0; 63])),
            PathInfoError::InvalidSignature {
                index: 0,
                len: 63,
                ..
            }
        ));
        assert!(matches!(
            broken(|m| ni(m).signatures[0].name = String::new()),
            PathInfoError::InvalidSignature { index: 0, .. }
        ));
        assert!(matches!(
            broken(|m| ni(m).deriver.as_mut().unwrap().digest = Bytes::from_static(&[0; 32])),
            PathInfoError::InvalidDeriverDigest { len: 32, .. }
        ));
        assert!(matches!(
            broken(|m| ni(m).deriver.as_mut().unwrap().name = "a/b".into()),
            PathInfoError::InvalidDeriver { .. }
        ));
        assert!(matches!(
            broken(|m| ni(m).ca.as_mut().unwrap().r#type = 99),
            PathInfoError::UnknownCaType { value: 99, .. }
        ));
        assert!(matches!(
            broken(|m| ni(m).ca.as_mut().unwrap().digest = Bytes::from_static(&[0; 20])),
            PathInfoError::InvalidCaDigest {
                kind: "TEXT_SHA256",
                expected: 32,
                len: 20,
                ..
            }
        ));
        assert!(matches!(
            broken(|m| *ni(m).ca.as_mut().unwrap() = proto::nar_info::Ca {
                r#type: CaHash::FlatMd5 as i32,
                digest: Bytes::from_static(&[0; 20]),
            }),
            PathInfoError::InvalidCaDigest {
                expected: 16,
                len: 20,
                ..
            }
        ));
    }
}
