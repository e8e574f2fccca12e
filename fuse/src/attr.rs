//! Attributes as Nix has them: everything owned by root, mtime 1, files
//! 0444 or 0555, directories 0555, symlinks 0777, exact sizes.

use std::time::{Duration, SystemTime};

use fuser::{FileAttr, FileType, INodeNo};

use crate::inodes::InodeData;

/// How long the kernel may keep entries and attributes: the data is
/// immutable, so as long as it likes (a year).
pub(crate) const TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long the kernel may remember that a name is absent from the root:
/// store paths can appear (added to the service), so briefly.
pub(crate) const ROOT_NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// What a lookup of an absent name answers: inode 0, which the kernel
/// takes as "no such entry" and keeps for the entry timeout.
pub(crate) fn negative() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: nix_time(),
        mtime: nix_time(),
        ctime: nix_time(),
        crtime: nix_time(),
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The `st_blksize` we report: the chunker's average chunk size, so `cp`
/// and friends read in pieces that map onto chunks.
pub(crate) const BLKSIZE: u32 = 64 * 1024;

/// Nix's timestamp for everything in the store: one second past the epoch.
fn nix_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1)
}

/// The `FileType` of an inode.
pub(crate) fn kind(data: &InodeData) -> FileType {
    match data {
        InodeData::Root | InodeData::Directory { .. } => FileType::Directory,
        InodeData::File { .. } => FileType::RegularFile,
        InodeData::Symlink { .. } => FileType::Symlink,
    }
}

/// The attributes of inode `ino`.
pub(crate) fn attr(ino: u64, data: &InodeData) -> FileAttr {
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
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: nix_time(),
        mtime: nix_time(),
        ctime: nix_time(),
        crtime: nix_time(),
        kind: kind(data),
        perm,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
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
        assert_eq!((a.uid, a.gid), (0, 0));
        assert_eq!(a.mtime, SystemTime::UNIX_EPOCH + Duration::from_secs(1));
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
        assert_eq!((d.perm, d.nlink, d.kind), (0o555, 5, FileType::Directory));
        let s = attr(
            8,
            &InodeData::Symlink {
                target: SymlinkTarget::try_from("../x").unwrap(),
            },
        );
        assert_eq!((s.perm, s.size, s.kind), (0o777, 4, FileType::Symlink));
    }
}
