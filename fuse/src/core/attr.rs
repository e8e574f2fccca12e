//! Attributes as Nix has them: everything owned by root, mtime 1, files
//! 0444 or 0555, directories 0555, symlinks 0777, exact sizes. In plain
//! types ([`Attr`]); each transport turns them into its own struct.

use std::time::Duration;

use crate::core::inodes::InodeData;

/// How long the kernel may keep entries and attributes: the data is
/// immutable, so as long as it likes (a year).
pub const TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long the kernel may remember that a name is absent from the root:
/// store paths can appear (added to the service), so briefly.
pub const ROOT_NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// The `st_blksize` we report: the chunker's average chunk size, so `cp`
/// and friends read in pieces that map onto chunks.
pub const BLKSIZE: u32 = 64 * 1024;

/// Nix's timestamp for everything in the store (atime, mtime, ctime): one
/// second past the epoch.
pub const NIX_MTIME: Duration = Duration::from_secs(1);

/// The type of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A directory (the root, or one of a store path).
    Directory,
    /// A regular file.
    RegularFile,
    /// A symbolic link.
    Symlink,
}

impl FileKind {
    /// The `S_IF*` bits of `st_mode` for this type.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::Directory => libc::S_IFDIR,
            FileKind::RegularFile => libc::S_IFREG,
            FileKind::Symlink => libc::S_IFLNK,
        }
    }

    /// The `DT_*` value of a directory entry of this type.
    pub fn dirent_type(self) -> u32 {
        u32::from(match self {
            FileKind::Directory => libc::DT_DIR,
            FileKind::RegularFile => libc::DT_REG,
            FileKind::Symlink => libc::DT_LNK,
        })
    }
}

/// The attributes of an inode. Every time is [`NIX_MTIME`], the owner
/// root (uid and gid 0), `st_rdev` 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attr {
    /// The inode number; 0 in a negative entry (an absent name).
    pub ino: u64,
    /// Exact length in bytes (a symlink: its target's).
    pub size: u64,
    /// 512-byte blocks: the size, rounded up.
    pub blocks: u64,
    /// The type.
    pub kind: FileKind,
    /// Permission bits (0444, 0555 or 0777).
    pub perm: u16,
    /// `st_nlink`.
    pub nlink: u32,
    /// `st_blksize`: [`BLKSIZE`].
    pub blksize: u32,
}

impl Attr {
    /// `st_mode`: type and permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | u32::from(self.perm)
    }
}

/// What a lookup of an absent name answers: inode 0, which the kernel
/// takes as "no such entry" and keeps for the entry timeout.
pub(crate) fn negative() -> Attr {
    Attr {
        ino: 0,
        size: 0,
        blocks: 0,
        kind: FileKind::RegularFile,
        perm: 0,
        nlink: 0,
        blksize: BLKSIZE,
    }
}

/// The type of an inode.
pub(crate) fn kind(data: &InodeData) -> FileKind {
    match data {
        InodeData::Root | InodeData::Directory { .. } => FileKind::Directory,
        InodeData::File { .. } => FileKind::RegularFile,
        InodeData::Symlink { .. } => FileKind::Symlink,
    }
}

/// The attributes of inode `ino`.
pub(crate) fn attr(ino: u64, data: &InodeData) -> Attr {
    let (size, perm, nlink) = match data {
        // The root's subdirectories are not known without listing every
        // store path; 2 is what an empty directory has, and `find` only
        // trusts link counts for its leaf optimisation when they are right
        // or 1, so we say 1 ("unknown", as btrfs does) for the root.
        InodeData::Root => (0, 0o555, 1),
        InodeData::Directory { nlink, .. } => (0, 0o555, *nlink),
        InodeData::File {
            size, executable, ..
        } => (*size, if *executable { 0o555 } else { 0o444 }, 1),
        InodeData::Symlink { target } => (target.as_bytes().len() as u64, 0o777, 1),
    };
    Attr {
        ino,
        size,
        blocks: size.div_ceil(512),
        kind: kind(data),
        perm,
        nlink,
        blksize: BLKSIZE,
    }
}

/// `st_nlink` of a directory with `subdirs` child directories.
pub(crate) fn dir_nlink(subdirs: usize) -> u32 {
    u32::try_from(subdirs).unwrap_or(u32::MAX).saturating_add(2)
}

#[cfg(test)]
mod tests {
    use storefs_castore::{B3Digest, SymlinkTarget};

    use super::*;

    #[test]
    fn files_are_0444_or_0555_with_exact_size_and_blocks() {
        let a = attr(
            5,
            &InodeData::File {
                digest: B3Digest::of(b""),
                size: 513,
                executable: false,
            },
        );
        assert_eq!((a.perm, a.size, a.blocks, a.nlink), (0o444, 513, 2, 1));
        assert_eq!(a.mode(), libc::S_IFREG | 0o444);
        let x = attr(
            6,
            &InodeData::File {
                digest: B3Digest::of(b""),
                size: 0,
                executable: true,
            },
        );
        assert_eq!((x.perm, x.blocks), (0o555, 0));
    }

    #[test]
    fn directories_and_symlinks() {
        let d = attr(
            7,
            &InodeData::Directory {
                digest: B3Digest::of(b""),
                nlink: dir_nlink(3),
                parent: 1,
            },
        );
        assert_eq!((d.perm, d.nlink, d.kind), (0o555, 5, FileKind::Directory));
        let s = attr(
            8,
            &InodeData::Symlink {
                target: SymlinkTarget::try_from("../x").unwrap(),
            },
        );
        assert_eq!((s.perm, s.size, s.kind), (0o777, 4, FileKind::Symlink));
    }
}
