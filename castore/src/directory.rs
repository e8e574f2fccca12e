//! The native directory model: `Node`, `Entry` and `Directory`, with
//! conversion from and to the protobuf messages that checks every rule of
//! docs/data-model.md, and the canonical digest.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;

use crate::digest::{B3Digest, InvalidDigestLen};
use crate::names::{NameError, PathComponent, SymlinkTarget, SymlinkTargetError};
use crate::proto;

/// A node of the merkle DAG, without its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    /// A directory, by the digest of its `Directory` and that directory's size.
    Directory {
        /// BLAKE3 of the child directory's canonical encoding.
        digest: B3Digest,
        /// The child's [`Directory::size`], recorded in the parent.
        size: u64,
    },
    /// A regular file, by the digest of its whole contents.
    File {
        /// BLAKE3 of the whole file.
        digest: B3Digest,
        /// Length in bytes.
        size: u64,
        /// Whether the file is executable (0555 rather than 0444).
        executable: bool,
    },
    /// A symbolic link.
    Symlink {
        /// Where it points; not interpreted.
        target: SymlinkTarget,
    },
}

/// A node with its name: the root of a store path, or one child of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The entry's name.
    pub name: PathComponent,
    /// What the entry is.
    pub node: Node,
}

/// Why a protobuf `Directory` or `Entry` is not valid. Each broken rule of
/// docs/data-model.md has its own variant, naming the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// An entry's name breaks the name rules.
    #[error("entry {index} of {list}")]
    InvalidName {
        /// Which of the three lists (`directories`, `files`, `symlinks`).
        list: &'static str,
        /// Position in that list.
        index: usize,
        /// The rule it breaks.
        source: NameError,
    },
    /// A list is not strictly sorted by name bytes.
    #[error("{list} not sorted: {name:?} follows {previous:?}")]
    NotSorted {
        /// Which list.
        list: &'static str,
        /// The entry that is out of place.
        name: String,
        /// The one before it.
        previous: String,
    },
    /// The same name appears twice (in one list or across lists).
    #[error("duplicate name {0:?}")]
    DuplicateName(String),
    /// A digest is not 32 bytes.
    #[error("entry {name:?}")]
    InvalidDigest {
        /// The entry at fault.
        name: String,
        /// Its actual length.
        source: InvalidDigestLen,
    },
    /// A symlink target breaks the target rules.
    #[error("symlink {name:?}")]
    InvalidSymlinkTarget {
        /// The symlink at fault.
        name: String,
        /// The rule it breaks.
        source: SymlinkTargetError,
    },
    /// An `Entry` message holds no node at all.
    #[error("entry has no node")]
    EmptyEntry,
    /// A directory's total size overflows u64.
    #[error("directory size overflows")]
    SizeOverflow,
    /// Bytes that are not a protobuf `Directory`.
    #[error("cannot decode directory: {0}")]
    Decode(String),
}

/// A directory: its children by name. Names are unique by construction, and
/// iteration is in name-byte order, the order NAR and protobuf both use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    nodes: BTreeMap<PathComponent, Node>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a child. Fails if the name is already taken.
    pub fn add(&mut self, name: PathComponent, node: Node) -> Result<(), DirectoryError> {
        use std::collections::btree_map::Entry as MapEntry;
        match self.nodes.entry(name) {
            MapEntry::Occupied(o) => Err(DirectoryError::DuplicateName(o.key().to_string())),
            MapEntry::Vacant(v) => {
                v.insert(node);
                Ok(())
            }
        }
    }

    /// The child called `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        // PathComponent orders by its bytes, so a probe with the raw bytes
        // finds the same key; an invalid name simply is not there.
        let probe = PathComponent::try_from(name).ok()?;
        self.nodes.get(&probe)
    }

    /// Children in name-byte order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (&PathComponent, &Node)> {
        self.nodes.iter()
    }

    /// Children from `name` on (itself included if present), in name-byte
    /// order: what a reader walking the directory will reach next. Nothing
    /// for a name that is not a valid entry name.
    pub fn entries_from(&self, name: &[u8]) -> impl Iterator<Item = (&PathComponent, &Node)> {
        PathComponent::try_from(name)
            .ok()
            .map(|p| self.nodes.range(p..))
            .into_iter()
            .flatten()
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the directory has no children.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Digests of the child directories, in name order.
    pub fn child_directories(&self) -> impl Iterator<Item = (&PathComponent, &B3Digest)> {
        self.nodes.iter().filter_map(|(n, node)| match node {
            Node::Directory { digest, .. } => Some((n, digest)),
            _ => None,
        })
    }

    /// The `size` a parent records for this directory, as snix writes it:
    /// 2 per child, plus each child directory's own recorded size (twice the
    /// number of entries below). Saturates rather than wrapping; such a tree
    /// cannot exist in memory anyway.
    pub fn size(&self) -> u64 {
        self.nodes.values().fold(0u64, |acc, node| {
            let own = match node {
                Node::Directory { size, .. } => size.saturating_add(2),
                _ => 2,
            };
            acc.saturating_add(own)
        })
    }

    /// The canonical protobuf message.
    pub fn to_proto(&self) -> proto::Directory {
        let mut out = proto::Directory::default();
        for (name, node) in &self.nodes {
            match node {
                Node::Directory { digest, size } => out.directories.push(proto::DirectoryEntry {
                    name: name.to_bytes(),
                    digest: digest.to_bytes(),
                    size: *size,
                }),
                Node::File {
                    digest,
                    size,
                    executable,
                } => out.files.push(proto::FileEntry {
                    name: name.to_bytes(),
                    digest: digest.to_bytes(),
                    size: *size,
                    executable: *executable,
                }),
                Node::Symlink { target } => out.symlinks.push(proto::SymlinkEntry {
                    name: name.to_bytes(),
                    target: target.to_bytes(),
                }),
            }
        }
        out
    }

    /// The canonical encoding: protobuf, fields in number order, lists in
    /// name order, default values omitted.
    pub fn encode(&self) -> Bytes {
        Bytes::from(self.to_proto().encode_to_vec())
    }

    /// The directory's digest: BLAKE3 of [`Directory::encode`].
    pub fn digest(&self) -> B3Digest {
        B3Digest::of(&self.encode())
    }

    /// Decode and validate bytes received from the network or disk.
    pub fn decode(bytes: &[u8]) -> Result<Self, DirectoryError> {
        let msg =
            proto::Directory::decode(bytes).map_err(|e| DirectoryError::Decode(e.to_string()))?;
        Self::try_from(msg)
    }
}

fn check_sorted<'a>(
    list: &'static str,
    names: impl Iterator<Item = &'a Bytes>,
) -> Result<(), DirectoryError> {
    let mut previous: Option<&Bytes> = None;
    for name in names {
        if let Some(p) = previous
            && p.as_ref() >= name.as_ref()
        {
            return Err(if p == name {
                DirectoryError::DuplicateName(String::from_utf8_lossy(name).into_owned())
            } else {
                DirectoryError::NotSorted {
                    list,
                    name: String::from_utf8_lossy(name).into_owned(),
                    previous: String::from_utf8_lossy(p).into_owned(),
                }
            });
        }
        previous = Some(name);
    }
    Ok(())
}

fn name_of(list: &'static str, index: usize, raw: &Bytes) -> Result<PathComponent, DirectoryError> {
    PathComponent::new(raw.clone()).map_err(|source| DirectoryError::InvalidName {
        list,
        index,
        source,
    })
}

fn digest_of(name: &PathComponent, raw: &Bytes) -> Result<B3Digest, DirectoryError> {
    B3Digest::try_from(raw).map_err(|source| DirectoryError::InvalidDigest {
        name: name.to_string(),
        source,
    })
}

impl TryFrom<proto::Directory> for Directory {
    type Error = DirectoryError;

    fn try_from(msg: proto::Directory) -> Result<Self, Self::Error> {
        check_sorted("directories", msg.directories.iter().map(|e| &e.name))?;
        check_sorted("files", msg.files.iter().map(|e| &e.name))?;
        check_sorted("symlinks", msg.symlinks.iter().map(|e| &e.name))?;
        let mut dir = Directory::new();
        for (i, e) in msg.directories.iter().enumerate() {
            let name = name_of("directories", i, &e.name)?;
            let digest = digest_of(&name, &e.digest)?;
            dir.add(
                name,
                Node::Directory {
                    digest,
                    size: e.size,
                },
            )?;
        }
        for (i, e) in msg.files.iter().enumerate() {
            let name = name_of("files", i, &e.name)?;
            let digest = digest_of(&name, &e.digest)?;
            dir.add(
                name,
                Node::File {
                    digest,
                    size: e.size,
                    executable: e.executable,
                },
            )?;
        }
        for (i, e) in msg.symlinks.iter().enumerate() {
            let name = name_of("symlinks", i, &e.name)?;
            let target = SymlinkTarget::new(e.target.clone()).map_err(|source| {
                DirectoryError::InvalidSymlinkTarget {
                    name: name.to_string(),
                    source,
                }
            })?;
            dir.add(name, Node::Symlink { target })?;
        }
        Ok(dir)
    }
}

impl From<&Directory> for proto::Directory {
    fn from(value: &Directory) -> Self {
        value.to_proto()
    }
}

impl Entry {
    /// An entry from its parts.
    pub fn new(name: PathComponent, node: Node) -> Self {
        Self { name, node }
    }

    /// The protobuf message.
    pub fn to_proto(&self) -> proto::Entry {
        use proto::entry::Entry as E;
        let name = self.name.to_bytes();
        let inner = match &self.node {
            Node::Directory { digest, size } => E::Directory(proto::DirectoryEntry {
                name,
                digest: digest.to_bytes(),
                size: *size,
            }),
            Node::File {
                digest,
                size,
                executable,
            } => E::File(proto::FileEntry {
                name,
                digest: digest.to_bytes(),
                size: *size,
                executable: *executable,
            }),
            Node::Symlink { target } => E::Symlink(proto::SymlinkEntry {
                name,
                target: target.to_bytes(),
            }),
        };
        proto::Entry { entry: Some(inner) }
    }
}

impl TryFrom<proto::Entry> for Entry {
    type Error = DirectoryError;

    fn try_from(msg: proto::Entry) -> Result<Self, Self::Error> {
        use proto::entry::Entry as E;
        match msg.entry.ok_or(DirectoryError::EmptyEntry)? {
            E::Directory(e) => {
                let name = name_of("entry", 0, &e.name)?;
                let digest = digest_of(&name, &e.digest)?;
                Ok(Entry::new(
                    name,
                    Node::Directory {
                        digest,
                        size: e.size,
                    },
                ))
            }
            E::File(e) => {
                let name = name_of("entry", 0, &e.name)?;
                let digest = digest_of(&name, &e.digest)?;
                Ok(Entry::new(
                    name,
                    Node::File {
                        digest,
                        size: e.size,
                        executable: e.executable,
                    },
                ))
            }
            E::Symlink(e) => {
                let name = name_of("entry", 0, &e.name)?;
                let target = SymlinkTarget::new(e.target.clone()).map_err(|source| {
                    DirectoryError::InvalidSymlinkTarget {
                        name: name.to_string(),
                        source,
                    }
                })?;
                Ok(Entry::new(name, Node::Symlink { target }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> PathComponent {
        PathComponent::try_from(s).unwrap()
    }

    fn file(content: &[u8], executable: bool) -> Node {
        Node::File {
            digest: B3Digest::of(content),
            size: content.len() as u64,
            executable,
        }
    }

    #[test]
    fn empty_directory_vector() {
        let d = Directory::new();
        assert_eq!(
            d.digest().to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(d.size(), 0);
    }

    #[test]
    fn hello_directory_vector() {
        let mut d = Directory::new();
        d.add(name("hello.txt"), file(b"Hello World!", false))
            .unwrap();
        assert_eq!(
            d.digest().to_hex(),
            "ad6ba6e317d73187dbf6458337cfba3cec897ae188cca70cc5a511f04ed0de27"
        );
        assert_eq!(d.size(), 2);
    }

    #[test]
    fn nested_directory_vector() {
        let mut bin = Directory::new();
        bin.add(name("x"), file(b"#!/bin/sh\n", true)).unwrap();
        assert_eq!(
            bin.digest().to_hex(),
            "2504e4e943acf1bb9b0c4fe64d2932f4c76dc68db150cddefd695eda480f718c"
        );
        assert_eq!(bin.size(), 2);
        let sub = Directory::new();
        let mut root = Directory::new();
        root.add(name("a"), file(b"a\n", false)).unwrap();
        root.add(
            name("bin"),
            Node::Directory {
                digest: bin.digest(),
                size: bin.size(),
            },
        )
        .unwrap();
        root.add(
            name("l"),
            Node::Symlink {
                target: SymlinkTarget::try_from("a").unwrap(),
            },
        )
        .unwrap();
        root.add(
            name("sub"),
            Node::Directory {
                digest: sub.digest(),
                size: sub.size(),
            },
        )
        .unwrap();
        assert_eq!(root.size(), 10);
        assert_eq!(
            root.digest().to_hex(),
            "ddc131cca63537f9b0e1651746f2062ee2bd6399ceab81008bd3408791d3175c"
        );
        // And back: decode(encode) is the same directory.
        assert_eq!(Directory::decode(&root.encode()).unwrap(), root);
    }

    fn proto_file(n: &[u8]) -> proto::FileEntry {
        proto::FileEntry {
            name: Bytes::copy_from_slice(n),
            digest: B3Digest::of(b"").to_bytes(),
            size: 0,
            executable: false,
        }
    }

    #[test]
    fn unsorted_list_is_refused() {
        let msg = proto::Directory {
            files: vec![proto_file(b"b"), proto_file(b"a")],
            ..Default::default()
        };
        assert!(matches!(
            Directory::try_from(msg),
            Err(DirectoryError::NotSorted { list: "files", .. })
        ));
    }

    #[test]
    fn duplicate_in_one_list_is_refused() {
        let msg = proto::Directory {
            files: vec![proto_file(b"a"), proto_file(b"a")],
            ..Default::default()
        };
        assert!(matches!(
            Directory::try_from(msg),
            Err(DirectoryError::DuplicateName(_))
        ));
    }

    #[test]
    fn duplicate_across_lists_is_refused() {
        let msg = proto::Directory {
            files: vec![proto_file(b"a")],
            symlinks: vec![proto::SymlinkEntry {
                name: Bytes::from_static(b"a"),
                target: Bytes::from_static(b"x"),
            }],
            ..Default::default()
        };
        assert!(matches!(
            Directory::try_from(msg),
            Err(DirectoryError::DuplicateName(_))
        ));
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", &[b'x'; 256]] {
            let msg = proto::Directory {
                files: vec![proto_file(bad)],
                ..Default::default()
            };
            assert!(
                matches!(
                    Directory::try_from(msg),
                    Err(DirectoryError::InvalidName { list: "files", .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_digest_is_refused() {
        let msg = proto::Directory {
            directories: vec![proto::DirectoryEntry {
                name: Bytes::from_static(b"d"),
                digest: Bytes::from_static(&[0; 31]),
                size: 0,
            }],
            ..Default::default()
        };
        assert!(matches!(
            Directory::try_from(msg),
            Err(DirectoryError::InvalidDigest { .. })
        ));
    }

    #[test]
    fn bad_symlink_targets_are_refused() {
        for bad in [
            Bytes::new(),
            Bytes::from_static(b"a\0"),
            Bytes::from(vec![b'x'; 4096]),
        ] {
            let msg = proto::Directory {
                symlinks: vec![proto::SymlinkEntry {
                    name: Bytes::from_static(b"l"),
                    target: bad,
                }],
                ..Default::default()
            };
            assert!(matches!(
                Directory::try_from(msg),
                Err(DirectoryError::InvalidSymlinkTarget { .. })
            ));
        }
    }

    #[test]
    fn empty_entry_is_refused() {
        assert_eq!(
            Entry::try_from(proto::Entry { entry: None }),
            Err(DirectoryError::EmptyEntry)
        );
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(matches!(
            Directory::decode(&[0xff, 0xff, 0xff]),
            Err(DirectoryError::Decode(_))
        ));
    }
}
