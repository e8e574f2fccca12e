//! The NAR of a castore node, laid out from the NAR grammar and streamed,
//! whole or as one byte range.
//!
//! Grammar (docs/nix-formats.md, NAR), with `str(s) = u64 len ‖ s ‖ zero-pad to 8`:
//! ```text
//! nar  = str("nix-archive-1") node
//! node = "(" "type" ( "regular" ["executable" ""] "contents" str(data)
//!                   | "symlink" "target" str(target)
//!                   | "directory" { "entry" "(" "name" str(n) "node" node ")" } ) ")"
//! ```
//! The framing (every token but a file's data) depends only on the tree's
//! metadata, so a NAR is a sequence of [`Segment`]s: framing bytes, and file
//! contents named by blob digest and size. A range request skips whole
//! segments without touching their blobs and reads only the chunks of the
//! files it overlaps. This is why the HTTP view lays NARs out itself rather
//! than filtering the output of a NAR writer: a range near the end of a
//! large NAR would otherwise read every blob before it.
//!
//! Memory per request: the directories of the path (metadata only, fetched
//! once) and one chunk, or [`COPY_BUF`] for an unchunked blob.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use storefs_castore::BlobService;
use storefs_castore::DirectoryService;
use storefs_castore::{B3Digest, Directory, Error, Node, PathComponent};
use storefs_store::nar::wire::{
    MAGIC, TOK_CLOSE, TOK_CONTENTS, TOK_DIRECTORY, TOK_ENTRY, TOK_EXECUTABLE, TOK_NAME, TOK_NODE,
    TOK_OPEN, TOK_REGULAR, TOK_SYMLINK, TOK_TARGET, TOK_TYPE, padding_len, put_str,
};
use tokio::io::AsyncReadExt;

/// Buffer for reading unchunked blobs, and the most framing gathered into
/// one body piece.
pub const COPY_BUF: usize = 64 * 1024;

/// Largest single-chunk blob read whole (and so verified before any byte of
/// it is sent); larger unchunked blobs are streamed and verified at the end.
const MAX_WHOLE_CHUNK: u64 = 4 << 20;

/// The directories below one root, fetched once.
#[derive(Debug, Default)]
pub struct Tree {
    dirs: HashMap<B3Digest, Directory>,
}

impl Tree {
    /// Fetch every directory below `root` (nothing for a file or symlink).
    pub async fn load(directory: &dyn DirectoryService, root: &Node) -> Result<Self, Error> {
        let mut dirs = HashMap::new();
        if let Node::Directory { digest, .. } = root {
            let mut stream = directory.get_recursive(digest);
            while let Some(d) = stream.next().await {
                let d = d?;
                dirs.insert(d.digest(), d);
            }
            if !dirs.contains_key(digest) {
                return Err(missing_dir(digest));
            }
        }
        Ok(Self { dirs })
    }

    /// The directory with this digest.
    pub fn get(&self, digest: &B3Digest) -> Result<&Directory, Error> {
        self.dirs.get(digest).ok_or_else(|| missing_dir(digest))
    }
}

fn missing_dir(digest: &B3Digest) -> Error {
    Error::InvalidRequest(format!("directory {digest} is missing from the store"))
}

/// One piece of a NAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Grammar tokens, names, symlink targets, length fields and padding.
    Framing(Vec<u8>),
    /// A file's data: the blob's bytes.
    Contents {
        /// The blob.
        digest: B3Digest,
        /// Its length.
        size: u64,
    },
}

impl Segment {
    /// Length in the NAR.
    pub fn len(&self) -> u64 {
        match self {
            Segment::Framing(b) => b.len() as u64,
            Segment::Contents { size, .. } => *size,
        }
    }

    /// Whether it adds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Zero bytes that follow `len` bytes of data.
pub fn padding(len: u64) -> u64 {
    padding_len(len)
}

/// Length of `str(s)` for an `len`-byte `s`.
pub fn str_len(len: u64) -> u64 {
    8 + len + padding(len)
}

/// The framing that opens a regular file, up to and including the length
/// of its contents; its data starts right after.
pub fn file_header(size: u64, executable: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    put_str(&mut out, TOK_OPEN);
    put_str(&mut out, TOK_TYPE);
    put_str(&mut out, TOK_REGULAR);
    if executable {
        put_str(&mut out, TOK_EXECUTABLE);
        put_str(&mut out, b"");
    }
    put_str(&mut out, TOK_CONTENTS);
    out.extend_from_slice(&size.to_le_bytes());
    out
}

fn file_trailer(size: u64) -> Vec<u8> {
    let mut out = vec![0; padding(size) as usize];
    put_str(&mut out, TOK_CLOSE);
    out
}

enum Work {
    Emit(Segment),
    Node(Node),
    DirRest(std::vec::IntoIter<(PathComponent, Node)>),
}

/// The segments of a node's NAR, in order, made as they are asked for.
pub struct Segments<'a> {
    tree: &'a Tree,
    stack: Vec<Work>,
}

impl<'a> Segments<'a> {
    /// The NAR of `root`, magic included.
    pub fn new(tree: &'a Tree, root: &Node) -> Self {
        let mut magic = Vec::new();
        put_str(&mut magic, MAGIC);
        Self {
            tree,
            stack: vec![
                Work::Node(root.clone()),
                Work::Emit(Segment::Framing(magic)),
            ],
        }
    }

    /// The next segment; `None` at the end.
    pub fn next_segment(&mut self) -> Result<Option<Segment>, Error> {
        let Some(work) = self.stack.pop() else {
            return Ok(None);
        };
        let framing = match work {
            Work::Emit(s) => return Ok(Some(s)),
            Work::Node(Node::File {
                digest,
                size,
                executable,
            }) => {
                self.stack
                    .push(Work::Emit(Segment::Framing(file_trailer(size))));
                if size > 0 {
                    self.stack
                        .push(Work::Emit(Segment::Contents { digest, size }));
                }
                file_header(size, executable)
            }
            Work::Node(Node::Symlink { target }) => {
                let mut out = Vec::new();
                for tok in [
                    TOK_OPEN,
                    TOK_TYPE,
                    TOK_SYMLINK,
                    TOK_TARGET,
                    target.as_bytes(),
                    TOK_CLOSE,
                ] {
                    put_str(&mut out, tok);
                }
                out
            }
            Work::Node(Node::Directory { digest, .. }) => {
                let dir = self.tree.get(&digest)?;
                let entries: Vec<(PathComponent, Node)> = dir
                    .entries()
                    .map(|(n, node)| (n.clone(), node.clone()))
                    .collect();
                self.stack.push(Work::DirRest(entries.into_iter()));
                let mut out = Vec::new();
                for tok in [TOK_OPEN, TOK_TYPE, TOK_DIRECTORY] {
                    put_str(&mut out, tok);
                }
                out
            }
            Work::DirRest(mut rest) => {
                let mut out = Vec::new();
                match rest.next() {
                    Some((name, node)) => {
                        self.stack.push(Work::DirRest(rest));
                        let mut close = Vec::new();
                        put_str(&mut close, TOK_CLOSE);
                        self.stack.push(Work::Emit(Segment::Framing(close)));
                        self.stack.push(Work::Node(node));
                        for tok in [TOK_ENTRY, TOK_OPEN, TOK_NAME, name.as_bytes(), TOK_NODE] {
                            put_str(&mut out, tok);
                        }
                    }
                    None => put_str(&mut out, TOK_CLOSE),
                }
                out
            }
        };
        Ok(Some(Segment::Framing(framing)))
    }
}

/// A byte range of a NAR: `start..end`, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte sent.
    pub start: u64,
    /// One past the last byte sent.
    pub end: u64,
}

/// Stream bytes `range` of the NAR of `root`. The stream fails (and the
/// HTTP body with it) if a blob is missing or does not verify.
pub fn nar_stream(
    blob: Arc<dyn BlobService>,
    tree: Arc<Tree>,
    root: Node,
    range: ByteRange,
) -> impl Stream<Item = Result<Bytes, Error>> + Send + 'static {
    async_stream::try_stream! {
        let mut segments = Segments::new(&tree, &root);
        let mut pos = 0u64;
        let mut pending = BytesMut::new();
        while pos < range.end {
            let Some(seg) = segments.next_segment()? else { break };
            let len = seg.len();
            let seg_end = pos + len;
            if seg_end <= range.start {
                pos = seg_end;
                continue;
            }
            let from = range.start.saturating_sub(pos);
            let to = len.min(range.end - pos);
            match seg {
                Segment::Framing(bytes) => {
                    // from <= to <= len = bytes.len(), both fit in usize.
                    pending.extend_from_slice(&bytes[from as usize..to as usize]);
                    if pending.len() >= COPY_BUF {
                        yield pending.split().freeze();
                    }
                }
                Segment::Contents { digest, size } => {
                    if !pending.is_empty() {
                        yield pending.split().freeze();
                    }
                    let mut pieces = Box::pin(blob_range(blob.clone(), digest, size, from, to));
                    while let Some(piece) = pieces.next().await {
                        yield piece?;
                    }
                }
            }
            pos = seg_end;
        }
        if !pending.is_empty() {
            yield pending.freeze();
        }
    }
}

/// Bytes `from..to` of a blob of `size` bytes, read chunk by chunk.
fn blob_range(
    blob: Arc<dyn BlobService>,
    digest: B3Digest,
    size: u64,
    from: u64,
    to: u64,
) -> impl Stream<Item = Result<Bytes, Error>> + Send + 'static {
    async_stream::try_stream! {
        let missing = || Error::InvalidRequest(format!("blob {digest} is missing from the store"));
        let chunks = blob.chunks(&digest).await?.ok_or_else(missing)?;
        if chunks.is_empty() {
            if size <= MAX_WHOLE_CHUNK {
                let data = blob.read_chunk(&digest).await?.ok_or_else(missing)?;
                if data.len() as u64 != size {
                    Err(Error::InvalidRequest(format!(
                        "blob {digest} has {} bytes, its directory says {size}",
                        data.len()
                    )))?;
                }
                yield data.slice(from as usize..to as usize);
            } else {
                let mut reader = blob.open_read(&digest).await?.ok_or_else(missing)?;
                tokio::io::copy(&mut (&mut reader).take(from), &mut tokio::io::sink()).await?;
                let mut left = to - from;
                while left > 0 {
                    let mut buf = vec![0u8; COPY_BUF.min(left as usize)];
                    let n = reader.read(&mut buf).await?;
                    if n == 0 {
                        Err(Error::InvalidRequest(format!("blob {digest} is shorter than {size} bytes")))?;
                    }
                    buf.truncate(n);
                    left -= n as u64;
                    yield Bytes::from(buf);
                }
                // Reading to the end makes the reader check the blob's digest.
                if to == size {
                    let mut rest = [0u8; 1];
                    if reader.read(&mut rest).await? != 0 {
                        Err(Error::InvalidRequest(format!("blob {digest} is longer than {size} bytes")))?;
                    }
                }
            }
        } else {
            let mut pos = 0u64;
            for chunk in chunks {
                let chunk_end = pos + chunk.size;
                if chunk_end > from && pos < to {
                    let data = blob.read_chunk(&chunk.digest).await?.ok_or_else(missing)?;
                    if data.len() as u64 != chunk.size {
                        Err(Error::InvalidRequest(format!("chunk {} of blob {digest} has the wrong size", chunk.digest)))?;
                    }
                    let a = from.saturating_sub(pos);
                    let b = chunk.size.min(to - pos);
                    yield data.slice(a as usize..b as usize);
                }
                pos = chunk_end;
                if pos >= to {
                    break;
                }
            }
            if pos < to {
                Err(Error::InvalidRequest(format!("blob {digest}: chunks cover {pos} of {size} bytes")))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefs_castore::SymlinkTarget;

    fn render_framing_only(
        tree: &Tree,
        root: &Node,
        blobs: &HashMap<B3Digest, Vec<u8>>,
    ) -> Vec<u8> {
        let mut segs = Segments::new(tree, root);
        let mut out = Vec::new();
        while let Some(s) = segs.next_segment().unwrap() {
            match s {
                Segment::Framing(b) => out.extend_from_slice(&b),
                Segment::Contents { digest, .. } => out.extend_from_slice(&blobs[&digest]),
            }
        }
        out
    }

    #[test]
    fn hello_world_matches_nix() {
        // docs/nix-formats.md, worked example: the 128-byte NAR of a file `Hello World!`.
        let data = b"Hello World!".to_vec();
        let digest = B3Digest::of(&data);
        let root = Node::File {
            digest,
            size: 12,
            executable: false,
        };
        let blobs = HashMap::from([(digest, data)]);
        let nar = render_framing_only(&Tree::default(), &root, &blobs);
        let expected = hex_words(
            "0d00000000000000 6e69782d61726368 6976652d31000000 0100000000000000 \
             2800000000000000 0400000000000000 7479706500000000 0700000000000000 \
             726567756c617200 0800000000000000 636f6e74656e7473 0c00000000000000 \
             48656c6c6f20576f 726c642100000000 0100000000000000 2900000000000000",
        );
        assert_eq!(nar, expected);
    }

    #[test]
    fn directory_with_symlink_and_empty_file() {
        let mut dir = Directory::new();
        dir.add(
            PathComponent::try_from("e").unwrap(),
            Node::File {
                digest: B3Digest::of(b""),
                size: 0,
                executable: true,
            },
        )
        .unwrap();
        dir.add(
            PathComponent::try_from("l").unwrap(),
            Node::Symlink {
                target: SymlinkTarget::new(&b"e"[..]).unwrap(),
            },
        )
        .unwrap();
        let root = Node::Directory {
            digest: dir.digest(),
            size: dir.size(),
        };
        let tree = Tree {
            dirs: HashMap::from([(dir.digest(), dir)]),
        };
        let nar = render_framing_only(&tree, &root, &HashMap::new());
        let mut expected = Vec::new();
        for tok in [
            &b"nix-archive-1"[..],
            b"(",
            b"type",
            b"directory",
            b"entry",
            b"(",
            b"name",
            b"e",
            b"node",
            b"(",
            b"type",
            b"regular",
            b"executable",
            b"",
            b"contents",
            b"",
            b")",
            b")",
            b"entry",
            b"(",
            b"name",
            b"l",
            b"node",
            b"(",
            b"type",
            b"symlink",
            b"target",
            b"e",
            b")",
            b")",
            b")",
        ] {
            put_str(&mut expected, tok);
        }
        assert_eq!(nar, expected);
    }

    fn hex_words(s: &str) -> Vec<u8> {
        let clean: String = s.split_whitespace().collect();
        (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
            .collect()
    }
}
