//! Render a castore node as a NAR, streaming file contents from the blob
//! service. Directories are fetched as one closure (`get_recursive`), then
//! walked with an explicit stack in name order.

use std::collections::HashMap;

use futures::TryStreamExt;
use storefs_castore::BlobService;
use storefs_castore::DirectoryService;
use storefs_castore::{B3Digest, Directory, Node, PathComponent};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

use super::limits::MAX_DEPTH;
use super::wire::{self, put_str};

/// Size of the buffer file contents pass through on their way to the sink.
const COPY_BUF_LEN: usize = 64 * 1024;

/// Why a NAR could not be written. Bytes already written to the sink are
/// then a truncated NAR: you must not pass them on as a complete one (on a
/// protocol stream, close the connection).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NarWriteError {
    /// Writing to the sink failed.
    #[error("cannot write NAR")]
    Io(#[source] std::io::Error),
    /// A file's blob is not in the blob service.
    #[error("blob {digest} is missing")]
    MissingBlob {
        /// The file's digest.
        digest: B3Digest,
    },
    /// A directory is not in the directory service.
    #[error("directory {digest} is missing")]
    MissingDirectory {
        /// The directory's digest.
        digest: B3Digest,
    },
    /// Reading a blob failed (including a digest mismatch at its end).
    #[error("cannot read blob {digest}")]
    BlobRead {
        /// The blob being read.
        digest: B3Digest,
        /// The reader's error.
        source: std::io::Error,
    },
    /// A blob yields a different number of bytes than the file node says.
    /// The NAR header already announced `expected` bytes, so the NAR cannot
    /// be completed.
    #[error("blob {digest} has {actual} bytes, the file node says {expected}")]
    BlobSize {
        /// The blob.
        digest: B3Digest,
        /// The size in the file node.
        expected: u64,
        /// What the blob yielded; `expected + 1` means "more than expected".
        actual: u64,
    },
    /// Directories nest deeper than [`MAX_DEPTH`], which the reader would
    /// refuse.
    #[error("directories nest deeper than {max}")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A service call failed.
    #[error("castore service failed")]
    Service(#[from] storefs_castore::Error),
}

impl From<NarWriteError> for storefs_castore::Error {
    fn from(value: NarWriteError) -> Self {
        match value {
            NarWriteError::Service(e) => e,
            NarWriteError::Io(e) => storefs_castore::Error::Io(e),
            other @ (NarWriteError::BlobRead { .. } | NarWriteError::BlobSize { .. }) => {
                storefs_castore::Error::storage_msg(other.to_string())
            }
            other => storefs_castore::Error::InvalidRequest(other.to_string()),
        }
    }
}

/// One directory being written: the entries still to come.
struct Frame {
    entries: std::vec::IntoIter<(PathComponent, Node)>,
}

/// Write the NAR of `root` to `sink`, then flush it.
///
/// Memory: the directory closure (metadata only) plus one 64 KiB copy
/// buffer; file contents are streamed. A file whose blob yields more or
/// fewer bytes than its node says is an error ([`NarWriteError::BlobSize`]),
/// in release builds too.
pub async fn write_nar<W>(
    sink: &mut W,
    root: &Node,
    blob_service: &dyn BlobService,
    directory_service: &dyn DirectoryService,
) -> Result<(), NarWriteError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let directories = match root {
        Node::Directory { digest, .. } => fetch_closure(directory_service, digest).await?,
        _ => HashMap::new(),
    };
    let mut out = BufWriter::new(sink);
    let mut buf = Vec::with_capacity(256);
    put_str(&mut buf, wire::MAGIC);

    let mut copy_buf = vec![0u8; COPY_BUF_LEN];
    // Open directories, innermost last. Every entry is
    // `entry ( name N node <node> )`: when a node is complete and a
    // directory is open, the entry holding the node is closed too.
    let mut stack: Vec<Frame> = Vec::new();
    let mut next = Some(root.clone());
    loop {
        if let Some(node) = next.take() {
            put_str(&mut buf, wire::TOK_OPEN);
            put_str(&mut buf, wire::TOK_TYPE);
            match node {
                Node::File {
                    digest,
                    size,
                    executable,
                } => {
                    put_str(&mut buf, wire::TOK_REGULAR);
                    if executable {
                        put_str(&mut buf, wire::TOK_EXECUTABLE);
                        put_str(&mut buf, b"");
                    }
                    put_str(&mut buf, wire::TOK_CONTENTS);
                    buf.extend_from_slice(&size.to_le_bytes());
                    flush_buf(&mut out, &mut buf).await?;
                    copy_blob(&mut out, blob_service, &digest, size, &mut copy_buf).await?;
                    // padding_len is < 8, so the cast cannot truncate.
                    buf.extend_from_slice(&wire::ZEROS[..wire::padding_len(size) as usize]);
                    put_str(&mut buf, wire::TOK_CLOSE);
                    close_entry(&stack, &mut buf);
                }
                Node::Symlink { target } => {
                    put_str(&mut buf, wire::TOK_SYMLINK);
                    put_str(&mut buf, wire::TOK_TARGET);
                    put_str(&mut buf, target.as_bytes());
                    put_str(&mut buf, wire::TOK_CLOSE);
                    close_entry(&stack, &mut buf);
                }
                Node::Directory { digest, .. } => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(NarWriteError::TooDeep { max: MAX_DEPTH });
                    }
                    let dir = directories
                        .get(&digest)
                        .ok_or(NarWriteError::MissingDirectory { digest })?;
                    put_str(&mut buf, wire::TOK_DIRECTORY);
                    // Directory iterates in name-byte order: the NAR order.
                    let entries: Vec<(PathComponent, Node)> = dir
                        .entries()
                        .map(|(n, node)| (n.clone(), node.clone()))
                        .collect();
                    stack.push(Frame {
                        entries: entries.into_iter(),
                    });
                }
            }
        }
        // Move on in the innermost open directory: its next entry, or, if
        // it has none left, close it (and the entry that holds it).
        let Some(top) = stack.last_mut() else {
            break;
        };
        match top.entries.next() {
            Some((name, node)) => {
                put_str(&mut buf, wire::TOK_ENTRY);
                put_str(&mut buf, wire::TOK_OPEN);
                put_str(&mut buf, wire::TOK_NAME);
                put_str(&mut buf, name.as_bytes());
                put_str(&mut buf, wire::TOK_NODE);
                next = Some(node);
            }
            None => {
                stack.pop();
                put_str(&mut buf, wire::TOK_CLOSE);
                close_entry(&stack, &mut buf);
            }
        }
        if buf.len() >= COPY_BUF_LEN {
            flush_buf(&mut out, &mut buf).await?;
        }
    }
    flush_buf(&mut out, &mut buf).await?;
    out.flush().await.map_err(NarWriteError::Io)?;
    Ok(())
}

/// After a node is complete: if it sits in a directory, close its entry.
fn close_entry(stack: &[Frame], buf: &mut Vec<u8>) {
    if !stack.is_empty() {
        put_str(buf, wire::TOK_CLOSE);
    }
}

/// Move the token buffer to the sink.
async fn flush_buf<W>(out: &mut BufWriter<&mut W>, buf: &mut Vec<u8>) -> Result<(), NarWriteError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    out.write_all(buf).await.map_err(NarWriteError::Io)?;
    buf.clear();
    Ok(())
}

/// Fetch the closure of `root` into a map by digest. An absent root or a
/// missing child is an error.
async fn fetch_closure(
    directory_service: &dyn DirectoryService,
    root: &B3Digest,
) -> Result<HashMap<B3Digest, Directory>, NarWriteError> {
    let mut map = HashMap::new();
    let mut stream = directory_service.get_recursive(root);
    while let Some(dir) = stream.try_next().await? {
        map.insert(dir.digest(), dir);
    }
    if !map.contains_key(root) {
        return Err(NarWriteError::MissingDirectory { digest: *root });
    }
    Ok(map)
}

/// Copy exactly `size` bytes of blob `digest` to `out`, then read on to the
/// blob's end: that both catches a longer blob and lets the reader check
/// the whole blob's digest.
async fn copy_blob<W>(
    out: &mut BufWriter<&mut W>,
    blob_service: &dyn BlobService,
    digest: &B3Digest,
    size: u64,
    copy_buf: &mut [u8],
) -> Result<(), NarWriteError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut reader = blob_service
        .open_read(digest)
        .await?
        .ok_or(NarWriteError::MissingBlob { digest: *digest })?;
    let read_err = |source| NarWriteError::BlobRead {
        digest: *digest,
        source,
    };
    let mut done: u64 = 0;
    while done < size {
        // The cast is bounded by copy_buf.len(), a usize.
        let want = (size - done).min(copy_buf.len() as u64) as usize;
        let n = reader.read(&mut copy_buf[..want]).await.map_err(read_err)?;
        if n == 0 {
            return Err(NarWriteError::BlobSize {
                digest: *digest,
                expected: size,
                actual: done,
            });
        }
        out.write_all(&copy_buf[..n])
            .await
            .map_err(NarWriteError::Io)?;
        done += n as u64;
    }
    let extra = reader.read(&mut copy_buf[..1]).await.map_err(read_err)?;
    if extra != 0 {
        return Err(NarWriteError::BlobSize {
            digest: *digest,
            expected: size,
            actual: size.saturating_add(1),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::nar::nar_hash_and_size;
    use crate::nar::test_support::{NarBuilder, services};

    const HELLO_NAR: &[u8] = include_bytes!("../../testdata/hello-world.nar");

    async fn put_blob(bs: &dyn BlobService, data: &[u8]) -> B3Digest {
        let mut w = bs.open_write().await;
        w.write_all(data).await.unwrap();
        w.close().await.unwrap()
    }

    #[tokio::test]
    async fn hello_world_vector_and_its_hash() {
        let (bs, ds) = services();
        let digest = put_blob(bs.as_ref(), b"Hello World!").await;
        let node = Node::File {
            digest,
            size: 12,
            executable: false,
        };
        let mut out = Vec::new();
        write_nar(&mut out, &node, bs.as_ref(), ds.as_ref())
            .await
            .unwrap();
        assert_eq!(out, HELLO_NAR);
        let (size, sha) = nar_hash_and_size(&node, bs.as_ref(), ds.as_ref())
            .await
            .unwrap();
        assert_eq!(size, 128);
        assert_eq!(
            hex::encode(sha),
            "03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040"
        );
    }

    #[tokio::test]
    async fn executable_file_and_symlink_roots() {
        let (bs, ds) = services();
        let digest = put_blob(bs.as_ref(), b"#!/bin/sh\n").await;
        let node = Node::File {
            digest,
            size: 10,
            executable: true,
        };
        let mut out = Vec::new();
        write_nar(&mut out, &node, bs.as_ref(), ds.as_ref())
            .await
            .unwrap();
        let mut want = NarBuilder::new();
        want.ss(&[
            b"(",
            b"type",
            b"regular",
            b"executable",
            b"",
            b"contents",
            b"#!/bin/sh\n",
            b")",
        ]);
        assert_eq!(out, want.bytes);

        let node = Node::Symlink {
            target: storefs_castore::SymlinkTarget::try_from("/abs/dangling").unwrap(),
        };
        let mut out = Vec::new();
        write_nar(&mut out, &node, bs.as_ref(), ds.as_ref())
            .await
            .unwrap();
        let mut want = NarBuilder::new();
        want.symlink(b"/abs/dangling");
        assert_eq!(out, want.bytes);
    }

    #[tokio::test]
    async fn blob_shorter_or_longer_than_the_node_is_an_error() {
        let (bs, ds) = services();
        let digest = put_blob(bs.as_ref(), b"Hello World!").await;
        for (claimed, actual) in [(13, 12), (11, 12), (0, 1)] {
            let node = Node::File {
                digest,
                size: claimed,
                executable: false,
            };
            let e = write_nar(&mut Vec::new(), &node, bs.as_ref(), ds.as_ref())
                .await
                .unwrap_err();
            assert!(
                matches!(e, NarWriteError::BlobSize { expected, actual: a, .. } if expected == claimed && a == actual),
                "{claimed}: {e:?}"
            );
        }
    }

    #[tokio::test]
    async fn missing_blob_and_directory() {
        let (bs, ds) = services();
        let digest = B3Digest::of(b"absent");
        let e = write_nar(
            &mut Vec::new(),
            &Node::File {
                digest,
                size: 6,
                executable: false,
            },
            bs.as_ref(),
            ds.as_ref(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, NarWriteError::MissingBlob { digest: d } if d == digest),
            "{e:?}"
        );
        let e = write_nar(
            &mut Vec::new(),
            &Node::Directory { digest, size: 0 },
            bs.as_ref(),
            ds.as_ref(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, NarWriteError::MissingDirectory { digest: d } if d == digest),
            "{e:?}"
        );
    }

    /// A chain of `depth` directories, each holding the next as `d`.
    async fn chain(ds: &dyn DirectoryService, depth: usize) -> Node {
        let mut node = None;
        for _ in 0..depth {
            let mut dir = Directory::new();
            if let Some(child) = node.take() {
                dir.add(PathComponent::try_from("d").unwrap(), child)
                    .unwrap();
            }
            let size = dir.size();
            let digest = ds.put(dir).await.unwrap();
            node = Some(Node::Directory { digest, size });
        }
        node.unwrap()
    }

    #[tokio::test]
    async fn nesting_is_bounded_like_the_reader() {
        let (bs, ds) = services();
        let ok = chain(ds.as_ref(), MAX_DEPTH).await;
        let mut out = Vec::new();
        write_nar(&mut out, &ok, bs.as_ref(), ds.as_ref())
            .await
            .unwrap();
        // What the writer emits at the limit, the reader takes back.
        let (bs2, ds2) = services();
        let mut r = out.as_slice();
        let back = crate::nar::read_nar_to_end(&mut r, bs2.as_ref(), ds2.as_ref())
            .await
            .unwrap();
        assert_eq!(back.root, ok);

        let too_deep = chain(ds.as_ref(), MAX_DEPTH + 1).await;
        let e = write_nar(&mut Vec::new(), &too_deep, bs.as_ref(), ds.as_ref())
            .await
            .unwrap_err();
        assert!(
            matches!(e, NarWriteError::TooDeep { max: MAX_DEPTH }),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn calculator_matches_the_written_nar() {
        use crate::NarCalculationService;
        use crate::nar::NarCalculator;
        use sha2::Digest;
        let (bs, ds) = services();
        let a = put_blob(bs.as_ref(), b"a\n").await;
        let mut dir = Directory::new();
        dir.add(
            PathComponent::try_from("a").unwrap(),
            Node::File {
                digest: a,
                size: 2,
                executable: false,
            },
        )
        .unwrap();
        let size = dir.size();
        let digest = ds.put(dir).await.unwrap();
        let root = Node::Directory { digest, size };
        let mut out = Vec::new();
        write_nar(&mut out, &root, bs.as_ref(), ds.as_ref())
            .await
            .unwrap();
        let calc = NarCalculator::new(bs, ds);
        let (n, sha) = calc.calculate_nar(&root).await.unwrap();
        assert_eq!(n, out.len() as u64);
        assert_eq!(sha, <[u8; 32]>::from(sha2::Sha256::digest(&out)));
    }
}
