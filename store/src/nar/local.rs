//! The NAR of a local path, straight from the file system, as
//! `nix-store --dump` writes it: no castore involved. `storefs add` hashes
//! it while the same tree is ingested, so the NAR hash costs one more read
//! of each file from the page cache instead of a second pass over the store.
//!
//! Mapping (Nix's archive.cc `dumpPath`): directory entries in increasing
//! byte order of their names; a regular file is executable iff its owner
//! execute bit is set; a symlink's target is kept byte for byte; symlinks
//! are never followed, not even at the root. Fifos, sockets and device
//! files are refused. Blocking: run it in `spawn_blocking`.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::limits::MAX_DEPTH;
use super::wire::{self, put_str};

/// Size of the buffer file contents pass through.
const READ_BUF_LEN: usize = 256 * 1024;

/// Why a local path could not be dumped as a NAR.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalNarError {
    /// Reading the file system failed.
    #[error("cannot read {path}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing to the sink failed.
    #[error("cannot write NAR")]
    Write(#[source] io::Error),
    /// A file type a NAR cannot hold.
    #[error("{path} is a {kind}, which a NAR cannot hold")]
    UnsupportedFileType {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A file's length changed while it was read: the header announced
    /// `expected` bytes, so the NAR cannot be completed.
    #[error("{path} changed while it was read: {expected} bytes expected, {actual} read")]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// Its length when it was `lstat`ed.
        expected: u64,
        /// What was read; `expected + 1` means "more than expected".
        actual: u64,
    },
    /// Directories nest deeper than [`MAX_DEPTH`], which the NAR reader
    /// would refuse.
    #[error("{path}: directories nest deeper than {max}")]
    TooDeep {
        /// The directory too deep.
        path: PathBuf,
        /// The limit.
        max: usize,
    },
}

/// What a dump saw, counted as castore's ingest counts it, so that a caller
/// that ingests the same tree concurrently can check both saw one tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalNarStats {
    /// Regular files.
    pub files: u64,
    /// Total bytes of the regular files.
    pub bytes: u64,
    /// Directories, the root included if it is one.
    pub directories: u64,
    /// Symlinks.
    pub symlinks: u64,
}

/// The NAR hash of a local path: its size, sha256 and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalNarHash {
    /// Length of the NAR in bytes.
    pub nar_size: u64,
    /// sha256 of the NAR.
    pub nar_sha256: [u8; 32],
    /// What the NAR holds.
    pub stats: LocalNarStats,
}

/// `(nar size, nar sha256)` of `path`, as `nix-store --dump path | sha256sum`
/// would give, without keeping the NAR. Blocking.
pub fn nar_hash_of_path(path: &Path) -> Result<LocalNarHash, LocalNarError> {
    let mut sink = HashWriter::default();
    let stats = dump_path(path, &mut sink)?;
    Ok(LocalNarHash {
        nar_size: sink.len,
        nar_sha256: sink.hasher.finalize().into(),
        stats,
    })
}

/// Write the NAR of `path` to `out`, byte for byte what `nix-store --dump`
/// writes. Blocking. On error, what was written is a truncated NAR: you
/// must not use it as a complete one.
pub fn dump_path<W: Write + ?Sized>(
    path: &Path,
    out: &mut W,
) -> Result<LocalNarStats, LocalNarError> {
    let mut dumper = Dumper {
        out,
        buf: Vec::with_capacity(512),
        read_buf: vec![0u8; READ_BUF_LEN],
        stats: LocalNarStats::default(),
    };
    put_str(&mut dumper.buf, wire::MAGIC);
    dumper.node(path, 1)?;
    dumper.flush()?;
    Ok(dumper.stats)
}

/// An `io::Write` that hashes and counts what it is given.
#[derive(Default)]
struct HashWriter {
    hasher: Sha256,
    len: u64,
}

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The state of one dump: the sink, the token buffer, the read buffer.
struct Dumper<'a, W: Write + ?Sized> {
    out: &'a mut W,
    /// Tokens and headers, gathered so that the sink sees few small writes.
    buf: Vec<u8>,
    /// File contents pass through here.
    read_buf: Vec<u8>,
    stats: LocalNarStats,
}

impl<W: Write + ?Sized> Dumper<'_, W> {
    fn flush(&mut self) -> Result<(), LocalNarError> {
        self.out
            .write_all(&self.buf)
            .map_err(LocalNarError::Write)?;
        self.buf.clear();
        Ok(())
    }

    /// `( type … )` of `path`; `depth` counts directories, the root as 1.
    fn node(&mut self, path: &Path, depth: usize) -> Result<(), LocalNarError> {
        let io_err = |source| LocalNarError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = fs::symlink_metadata(path).map_err(io_err)?;
        let ft = meta.file_type();
        put_str(&mut self.buf, wire::TOK_OPEN);
        put_str(&mut self.buf, wire::TOK_TYPE);
        if ft.is_file() {
            put_str(&mut self.buf, wire::TOK_REGULAR);
            // Nix (archive.cc dumpContents) tests S_IXUSR only.
            if meta.permissions().mode() & 0o100 != 0 {
                put_str(&mut self.buf, wire::TOK_EXECUTABLE);
                put_str(&mut self.buf, b"");
            }
            put_str(&mut self.buf, wire::TOK_CONTENTS);
            self.contents(path, meta.len())?;
            self.stats.files += 1;
            self.stats.bytes += meta.len();
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_err)?;
            put_str(&mut self.buf, wire::TOK_SYMLINK);
            put_str(&mut self.buf, wire::TOK_TARGET);
            put_str(&mut self.buf, target.as_os_str().as_bytes());
            self.stats.symlinks += 1;
        } else if ft.is_dir() {
            if depth > MAX_DEPTH {
                return Err(LocalNarError::TooDeep {
                    path: path.to_owned(),
                    max: MAX_DEPTH,
                });
            }
            put_str(&mut self.buf, wire::TOK_DIRECTORY);
            let mut names = Vec::new();
            for dirent in fs::read_dir(path).map_err(io_err)? {
                names.push(dirent.map_err(io_err)?.file_name());
            }
            // Nix sorts entries by name bytes (std::map<std::string, …>).
            names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in names {
                put_str(&mut self.buf, wire::TOK_ENTRY);
                put_str(&mut self.buf, wire::TOK_OPEN);
                put_str(&mut self.buf, wire::TOK_NAME);
                put_str(&mut self.buf, name.as_bytes());
                put_str(&mut self.buf, wire::TOK_NODE);
                self.node(&path.join(&name), depth + 1)?;
                put_str(&mut self.buf, wire::TOK_CLOSE);
            }
            self.stats.directories += 1;
        } else {
            return Err(LocalNarError::UnsupportedFileType {
                path: path.to_owned(),
                kind: storefs_castore::unsupported_kind(&ft),
            });
        }
        put_str(&mut self.buf, wire::TOK_CLOSE);
        Ok(())
    }

    /// The length, contents and padding of the regular file at `path`,
    /// which `lstat` said is `size` bytes long.
    fn contents(&mut self, path: &Path, size: u64) -> Result<(), LocalNarError> {
        let io_err = |source| LocalNarError::Io {
            path: path.to_owned(),
            source,
        };
        self.buf.extend_from_slice(&size.to_le_bytes());
        let mut file = fs::File::open(path).map_err(io_err)?;
        let mut read: u64 = 0;
        loop {
            let n = match file.read(&mut self.read_buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            };
            if n == 0 {
                break;
            }
            read += n as u64;
            if read > size {
                return Err(LocalNarError::FileChanged {
                    path: path.to_owned(),
                    expected: size,
                    actual: size + 1,
                });
            }
            // Small files go through the token buffer with their headers;
            // big reads go straight to the sink.
            if self.buf.len() + n <= READ_BUF_LEN {
                self.buf.extend_from_slice(&self.read_buf[..n]);
            } else {
                self.flush()?;
                self.out
                    .write_all(&self.read_buf[..n])
                    .map_err(LocalNarError::Write)?;
            }
        }
        if read != size {
            return Err(LocalNarError::FileChanged {
                path: path.to_owned(),
                expected: size,
                actual: read,
            });
        }
        // padding_len is < 8, so the cast cannot truncate.
        self.buf
            .extend_from_slice(&wire::ZEROS[..wire::padding_len(size) as usize]);
        if self.buf.len() >= READ_BUF_LEN {
            self.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dump(path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        dump_path(path, &mut out).unwrap();
        out
    }

    #[test]
    fn a_file_is_dumped_as_nix_dumps_it() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("hello.txt");
        std::fs::write(&f, b"Hello World!").unwrap();
        let mut want = Vec::new();
        for s in [
            &b"nix-archive-1"[..],
            b"(",
            b"type",
            b"regular",
            b"contents",
            b"Hello World!",
            b")",
        ] {
            put_str(&mut want, s);
        }
        assert_eq!(dump(&f), want);
        // The README's figure: `nix-store --add hello.txt` has this NAR hash.
        let h = nar_hash_of_path(&f).unwrap();
        assert_eq!(h.nar_size, 128);
        assert_eq!(
            hex::encode(h.nar_sha256),
            "03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040"
        );
        assert_eq!(
            h.stats,
            LocalNarStats {
                files: 1,
                bytes: 12,
                directories: 0,
                symlinks: 0
            }
        );
    }

    #[test]
    fn entries_are_sorted_by_bytes_and_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("t");
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("a"), b"x").unwrap();
        std::fs::write(root.join("B"), b"yy").unwrap();
        symlink("a", root.join("l")).unwrap();
        let nar = dump(&root);
        let pos = |needle: &[u8]| {
            let mut s = Vec::new();
            put_str(&mut s, needle);
            nar.windows(s.len()).position(|w| w == s).unwrap()
        };
        assert!(pos(b"B") < pos(b"a") && pos(b"a") < pos(b"b") && pos(b"b") < pos(b"l"));
        let h = nar_hash_of_path(&root).unwrap();
        assert_eq!(h.nar_size, nar.len() as u64);
        assert_eq!(h.nar_sha256, <[u8; 32]>::from(Sha256::digest(&nar)));
        assert_eq!(
            h.stats,
            LocalNarStats {
                files: 2,
                bytes: 3,
                directories: 3,
                symlinks: 1
            }
        );
    }

    #[test]
    fn fifos_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(matches!(
            nar_hash_of_path(tmp.path()),
            Err(LocalNarError::UnsupportedFileType { kind: "fifo", .. })
        ));
    }
}
