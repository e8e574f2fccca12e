//! The blocking half of ingest: walk a local tree with `lstat`/`readdir`
//! (no recursion: an explicit stack) into a flat list in pre-order, so a
//! directory always comes before everything below it.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::error::IngestError;
use crate::{PathComponent, SymlinkTarget};

/// What one walked path is.
#[derive(Debug)]
pub(super) enum Kind {
    /// A regular file; its contents are read later.
    File {
        /// Whether the owner's execute bit is set.
        executable: bool,
        /// Its length when it was walked, to choose how to upload it.
        size: u64,
    },
    /// A symlink with its (already checked) target.
    Symlink(SymlinkTarget),
    /// A directory; its children point back at it through `parent`.
    Directory,
}

/// One path found by [`walk`].
#[derive(Debug)]
pub(super) struct Walked {
    /// Index of the parent directory in the list; `None` for the root.
    pub parent: Option<usize>,
    /// The name under which the parent holds it (the root's entry name
    /// for the root).
    pub name: PathComponent,
    /// Where it is on disk, for reading and for error messages.
    pub path: PathBuf,
    /// What it is.
    pub kind: Kind,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError + '_ {
    move |source| IngestError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Classify one path from its `lstat` metadata.
fn kind_of(path: &Path, meta: &fs::Metadata) -> Result<Kind, IngestError> {
    let ft = meta.file_type();
    if ft.is_file() {
        // Nix (archive.cc dumpContents) writes "executable" iff S_IXUSR is
        // set; group/other bits alone do not count. We follow Nix so that
        // our NARs, and so our store paths, equal its own.
        Ok(Kind::File {
            executable: meta.permissions().mode() & 0o100 != 0,
            size: meta.len(),
        })
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io_err(path))?;
        let target = SymlinkTarget::new(Bytes::copy_from_slice(target.as_os_str().as_bytes()))
            .map_err(|source| IngestError::InvalidSymlinkTarget {
                path: path.to_owned(),
                source,
            })?;
        Ok(Kind::Symlink(target))
    } else if ft.is_dir() {
        Ok(Kind::Directory)
    } else {
        Err(IngestError::UnsupportedFileType {
            path: path.to_owned(),
            kind: unsupported_kind(&ft),
        })
    }
}

/// Walk `root` (not following symlinks) and list every path below it in
/// pre-order: each directory before its descendants. The root is entry 0
/// and carries `root_name`. Blocking: run it in `spawn_blocking`.
pub(super) fn walk(root: &Path, root_name: PathComponent) -> Result<Vec<Walked>, IngestError> {
    let meta = fs::symlink_metadata(root).map_err(io_err(root))?;
    let mut out = vec![Walked {
        parent: None,
        name: root_name,
        path: root.to_owned(),
        kind: kind_of(root, &meta)?,
    }];
    // Directories whose children are still to be listed, by index in `out`.
    let mut pending: Vec<usize> = Vec::new();
    if matches!(out[0].kind, Kind::Directory) {
        pending.push(0);
    }
    while let Some(dir_index) = pending.pop() {
        let dir_path = out[dir_index].path.clone();
        for dirent in fs::read_dir(&dir_path).map_err(io_err(&dir_path))? {
            let dirent = dirent.map_err(io_err(&dir_path))?;
            let path = dirent.path();
            // DirEntry::metadata does not follow symlinks (fstatat with
            // AT_SYMLINK_NOFOLLOW), like lstat.
            let meta = dirent.metadata().map_err(io_err(&path))?;
            let name = PathComponent::new(Bytes::copy_from_slice(dirent.file_name().as_bytes()))
                .map_err(|source| IngestError::InvalidName {
                    path: path.clone(),
                    source,
                })?;
            let kind = kind_of(&path, &meta)?;
            let is_dir = matches!(kind, Kind::Directory);
            out.push(Walked {
                parent: Some(dir_index),
                name,
                path,
                kind,
            });
            if is_dir {
                pending.push(out.len() - 1);
            }
        }
    }
    Ok(out)
}

/// What to call a file that is neither a regular file, a directory nor a
/// symlink, in an error: "fifo", "socket", "block device", ...
pub fn unsupported_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "file of unknown type"
    }
}
