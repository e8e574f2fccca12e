//! The strict streaming NAR reader: parses a NAR from an `AsyncBufRead`
//! and stores it in castore in the same pass, computing its sha256 and
//! size.
//!
//! - File contents go straight into a [`BlobWriter`] as they arrive;
//!   memory is bounded by the caller's read buffer and the blob writer's
//!   chunk, whatever the file sizes.
//! - Directories are kept until they are complete, then sent leaves first
//!   through one [`DirectoryPutter`]; the putter is closed (which makes
//!   the closure visible) only after the whole NAR has been accepted. A
//!   refused NAR leaves no directory closure behind, but **blobs written
//!   before the error may remain in the blob service as unreferenced data**.
//! - Nesting is tracked on an explicit stack, bounded by
//!   [`MAX_DEPTH`](crate::nar::limits::MAX_DEPTH).
//!
//! Everything the grammar in [`wire`](crate::nar::wire) forbids is refused
//! with a [`NarReadError`] naming the byte offset.

mod error;
mod source;

use std::collections::HashSet;

use storefs_castore::{
    B3Digest, Directory, NameError, Node, PathComponent, SymlinkTarget, SymlinkTargetError,
};
use storefs_castore::{BlobService, BlobWriter};
use storefs_castore::{DirectoryPutter, DirectoryService};
use tokio::io::AsyncBufRead;

pub use error::NarReadError;
use source::{Source, unexpected};

use super::limits::{MAX_DEPTH, MAX_NAME_LEN, MAX_TARGET_LEN};
use super::wire;

/// What a NAR was read into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarIngested {
    /// The root node; its blobs and directories are in the services.
    pub root: Node,
    /// The NAR's length in bytes.
    pub nar_size: u64,
    /// sha256 of the NAR.
    pub nar_sha256: [u8; 32],
}

/// Read one NAR from `reader` and store it; stop right after its last byte.
///
/// For protocol streams, where more data follows the NAR: bytes after the
/// NAR stay unconsumed in `reader`'s buffer. You must pass the same
/// buffered reader the rest of the protocol reads from (wrap a plain
/// `AsyncRead` in a `tokio::io::BufReader` once, not per call).
pub async fn read_nar<R>(
    reader: &mut R,
    blob_service: &dyn BlobService,
    directory_service: &dyn DirectoryService,
) -> Result<NarIngested, NarReadError>
where
    R: AsyncBufRead + Unpin + ?Sized,
{
    let mut source = Source::new(reader);
    let parsed = parse(&mut source, blob_service, directory_service).await?;
    commit(source, parsed).await
}

/// Like [`read_nar`], for a stream that holds exactly one NAR: bytes after
/// the NAR are an error ([`NarReadError::TrailingData`]), checked before
/// anything is committed.
pub async fn read_nar_to_end<R>(
    reader: &mut R,
    blob_service: &dyn BlobService,
    directory_service: &dyn DirectoryService,
) -> Result<NarIngested, NarReadError>
where
    R: AsyncBufRead + Unpin + ?Sized,
{
    let mut source = Source::new(reader);
    let parsed = parse(&mut source, blob_service, directory_service).await?;
    if !source.at_eof().await? {
        return Err(NarReadError::TrailingData {
            offset: source.offset,
        });
    }
    commit(source, parsed).await
}

/// A fully parsed NAR whose directories are not yet committed.
struct Parsed {
    root: Node,
    /// Holds the directories; `None` if the root is not a directory.
    putter: Option<Box<dyn DirectoryPutter>>,
}

/// Close the putter (making the closure visible) and finish the hash.
async fn commit<R>(source: Source<'_, R>, parsed: Parsed) -> Result<NarIngested, NarReadError>
where
    R: AsyncBufRead + Unpin + ?Sized,
{
    let (nar_size, nar_sha256) = source.finish();
    if let Some(mut putter) = parsed.putter {
        let closed = putter
            .close()
            .await
            .map_err(|source| NarReadError::Directory {
                offset: nar_size,
                source,
            })?;
        if let Node::Directory { digest, .. } = &parsed.root
            && *digest != closed
        {
            return Err(NarReadError::Directory {
                offset: nar_size,
                source: storefs_castore::Error::InvalidRequest(format!(
                    "directory service closed the closure as {closed}, expected root {digest}"
                )),
            });
        }
    }
    Ok(NarIngested {
        root: parsed.root,
        nar_size,
        nar_sha256,
    })
}

/// One directory being read.
struct Frame {
    dir: Directory,
    /// The last name added: the next must be greater.
    last: Option<PathComponent>,
    /// The name of the entry whose node is being read.
    pending: Option<PathComponent>,
}

/// Where the parser is.
enum State {
    /// At `node`: `(` `type` ...
    Node,
    /// Inside a directory, before `entry` or its closing `)`.
    DirBody,
    /// A node is complete; attach it to its directory, or finish.
    Done(Node),
}

const EXPECT_TYPE: &str = "\"regular\", \"symlink\" or \"directory\"";
const EXPECT_REGULAR: &str = "\"executable\" or \"contents\"";
const EXPECT_DIR_BODY: &str = "\"entry\" or \")\"";

/// Parse the NAR, storing blobs and putting directories as they complete.
async fn parse<R>(
    src: &mut Source<'_, R>,
    blob_service: &dyn BlobService,
    directory_service: &dyn DirectoryService,
) -> Result<Parsed, NarReadError>
where
    R: AsyncBufRead + Unpin + ?Sized,
{
    // Magic: anything but str("nix-archive-1") at offset 0 is not a NAR.
    // A short stream is reported as truncation, anything else as BadMagic.
    let magic = src.token("\"nix-archive-1\"").await;
    match magic {
        Ok((_, t)) if t.as_bytes() == wire::MAGIC => {}
        Ok(_) | Err(NarReadError::UnexpectedToken { .. } | NarReadError::NonZeroPadding { .. }) => {
            return Err(NarReadError::BadMagic { offset: 0 });
        }
        Err(e) => return Err(e),
    }

    let mut stack: Vec<Frame> = Vec::new();
    let mut putter: Option<Box<dyn DirectoryPutter>> = None;
    // Identical subtrees are put once.
    let mut sent: HashSet<B3Digest> = HashSet::new();
    let mut state = State::Node;
    loop {
        state = match state {
            State::Node => {
                let node_start = src.offset;
                src.expect(wire::TOK_OPEN, "\"(\"").await?;
                src.expect(wire::TOK_TYPE, "\"type\"").await?;
                let (offset, t) = src.token(EXPECT_TYPE).await?;
                match t.as_bytes() {
                    wire::TOK_REGULAR => State::Done(read_file(src, blob_service).await?),
                    wire::TOK_SYMLINK => State::Done(read_symlink(src).await?),
                    wire::TOK_DIRECTORY => {
                        if stack.len() >= MAX_DEPTH {
                            return Err(NarReadError::TooDeep {
                                offset: node_start,
                                max: MAX_DEPTH,
                            });
                        }
                        stack.push(Frame {
                            dir: Directory::new(),
                            last: None,
                            pending: None,
                        });
                        State::DirBody
                    }
                    _ => return Err(unexpected(offset, EXPECT_TYPE, &t)),
                }
            }
            State::DirBody => {
                let (offset, t) = src.token(EXPECT_DIR_BODY).await?;
                match t.as_bytes() {
                    wire::TOK_ENTRY => {
                        src.expect(wire::TOK_OPEN, "\"(\"").await?;
                        src.expect(wire::TOK_NAME, "\"name\"").await?;
                        let name = read_name(src, stack.last()).await?;
                        src.expect(wire::TOK_NODE, "\"node\"").await?;
                        if let Some(frame) = stack.last_mut() {
                            frame.pending = Some(name);
                        }
                        State::Node
                    }
                    wire::TOK_CLOSE => {
                        // DirBody is only entered with a frame pushed.
                        let Some(frame) = stack.pop() else {
                            return Err(unexpected(offset, EXPECT_DIR_BODY, &t));
                        };
                        let digest = frame.dir.digest();
                        let size = frame.dir.size();
                        if sent.insert(digest) {
                            putter
                                .get_or_insert_with(|| directory_service.put_multiple_start())
                                .put(frame.dir)
                                .await
                                .map_err(|source| NarReadError::Directory {
                                    offset: src.offset,
                                    source,
                                })?;
                        }
                        State::Done(Node::Directory { digest, size })
                    }
                    _ => return Err(unexpected(offset, EXPECT_DIR_BODY, &t)),
                }
            }
            State::Done(node) => {
                let Some(frame) = stack.last_mut() else {
                    return Ok(Parsed { root: node, putter });
                };
                // The entry's closing ")".
                src.expect(wire::TOK_CLOSE, "\")\"").await?;
                // `pending` was set when the entry's name was read, and
                // read_name checked it is greater than every name before.
                if let Some(name) = frame.pending.take() {
                    frame.last = Some(name.clone());
                    if let Err(e) = frame.dir.add(name, node) {
                        return Err(NarReadError::Directory {
                            offset: src.offset,
                            source: storefs_castore::Error::InvalidRequest(e.to_string()),
                        });
                    }
                }
                State::DirBody
            }
        };
    }
}

/// After `type regular`: optional `executable ""`, then `contents`.
async fn read_file<R>(
    src: &mut Source<'_, R>,
    blob_service: &dyn BlobService,
) -> Result<Node, NarReadError>
where
    R: AsyncBufRead + Unpin + ?Sized,
{
    let (offset, t) = src.token(EXPECT_REGULAR).await?;
    let executable = match t.as_bytes() {
        wire::TOK_EXECUTABLE => {
            src.expect(b"", "\"\"").await?;
            src.expect(wire::TOK_CONTENTS, "\"contents\"").await?;
            true
        }
        wire::TOK_CONTENTS => false,
        _ => return Err(unexpected(offset, EXPECT_REGULAR, &t)),
    };
    let size = src.read_u64().await?;
    let contents_start = src.offset;
    let mut writer: Box<dyn BlobWriter> = blob_service.open_write().await;
    src.copy_contents(size, writer.as_mut()).await?;
    let digest = writer.close().await.map_err(|source| NarReadError::Blob {
        offset: contents_start,
        source,
    })?;
    src.expect(wire::TOK_CLOSE, "\")\"").await?;
    Ok(Node::File {
        digest,
        size,
        executable,
    })
}

/// After `type symlink`: `target` str(target) `)`.
async fn read_symlink<R>(src: &mut Source<'_, R>) -> Result<Node, NarReadError>
where
    R: AsyncBufRead + Unpin + ?Sized,
{
    src.expect(wire::TOK_TARGET, "\"target\"").await?;
    let offset = src.offset;
    let bytes = src.read_bytes(MAX_TARGET_LEN).await?.map_err(|len| {
        NarReadError::InvalidSymlinkTarget {
            offset,
            source: SymlinkTargetError::TooLong(usize::try_from(len).unwrap_or(usize::MAX)),
        }
    })?;
    let target = SymlinkTarget::new(bytes)
        .map_err(|source| NarReadError::InvalidSymlinkTarget { offset, source })?;
    src.expect(wire::TOK_CLOSE, "\")\"").await?;
    Ok(Node::Symlink { target })
}

/// An entry's name: valid, and greater than the previous name in `frame`.
async fn read_name<R>(
    src: &mut Source<'_, R>,
    frame: Option<&Frame>,
) -> Result<PathComponent, NarReadError>
where
    R: AsyncBufRead + Unpin + ?Sized,
{
    let offset = src.offset;
    let bytes = src
        .read_bytes(MAX_NAME_LEN)
        .await?
        .map_err(|len| NarReadError::InvalidName {
            offset,
            source: NameError::TooLong(usize::try_from(len).unwrap_or(usize::MAX)),
        })?;
    let name =
        PathComponent::new(bytes).map_err(|source| NarReadError::InvalidName { offset, source })?;
    if let Some(previous) = frame.and_then(|f| f.last.as_ref()) {
        match name.as_bytes().cmp(previous.as_bytes()) {
            std::cmp::Ordering::Greater => {}
            std::cmp::Ordering::Equal => {
                return Err(NarReadError::DuplicateName {
                    offset,
                    name: name.to_string(),
                });
            }
            std::cmp::Ordering::Less => {
                return Err(NarReadError::NotSorted {
                    offset,
                    name: name.to_string(),
                    previous: previous.to_string(),
                });
            }
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests;
