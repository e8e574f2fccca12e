//! Reader tests: the docs/nix-formats.md vector, then one test per malformed
//! case asserting the exact error and its offset.

use storefs_castore::{B3Digest, NameError, Node, SymlinkTargetError};
use tokio::io::AsyncReadExt;

use super::*;
use crate::nar::limits;
use crate::nar::test_support::{NarBuilder, services};
use crate::nar::write_nar;

const HELLO_NAR: &[u8] = include_bytes!("../../../testdata/hello-world.nar");
const HELLO_SHA256: &str = "03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040";

async fn read(bytes: &[u8]) -> Result<NarIngested, NarReadError> {
    let (bs, ds) = services();
    let mut r = bytes;
    read_nar_to_end(&mut r, bs.as_ref(), ds.as_ref()).await
}

async fn read_err(bytes: &[u8]) -> NarReadError {
    match read(bytes).await {
        Ok(got) => panic!("NAR accepted: {got:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn hello_world_vector_reads_into_castore() {
    let (bs, ds) = services();
    let mut r = HELLO_NAR;
    let got = read_nar_to_end(&mut r, bs.as_ref(), ds.as_ref())
        .await
        .unwrap();
    assert_eq!(got.nar_size, 128);
    assert_eq!(hex::encode(got.nar_sha256), HELLO_SHA256);
    let digest = B3Digest::of(b"Hello World!");
    assert_eq!(
        got.root,
        Node::File {
            digest,
            size: 12,
            executable: false
        }
    );
    let mut contents = Vec::new();
    bs.open_read(&digest)
        .await
        .unwrap()
        .expect("blob stored")
        .read_to_end(&mut contents)
        .await
        .unwrap();
    assert_eq!(contents, b"Hello World!");
    // And back: the writer renders the same 128 bytes.
    let mut out = Vec::new();
    write_nar(&mut out, &got.root, bs.as_ref(), ds.as_ref())
        .await
        .unwrap();
    assert_eq!(out, HELLO_NAR);
}

#[tokio::test]
async fn read_nar_stops_at_the_end_and_leaves_the_rest() {
    let (bs, ds) = services();
    let mut stream = HELLO_NAR.to_vec();
    stream.extend_from_slice(b"NEXT");
    let mut r = tokio::io::BufReader::with_capacity(7, stream.as_slice());
    let got = read_nar(&mut r, bs.as_ref(), ds.as_ref()).await.unwrap();
    assert_eq!(got.nar_size, 128);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"NEXT");
}

#[tokio::test]
async fn trailing_data_is_refused_when_the_stream_must_end() {
    let mut stream = HELLO_NAR.to_vec();
    stream.push(0);
    let e = read_err(&stream).await;
    assert!(
        matches!(e, NarReadError::TrailingData { offset: 128 }),
        "{e:?}"
    );
}

#[tokio::test]
async fn bad_magic() {
    let mut b = NarBuilder::default();
    b.s(b"nix-archive-2").file(b"x");
    let e = read_err(&b.bytes).await;
    assert!(matches!(e, NarReadError::BadMagic { offset: 0 }), "{e:?}");
    // A huge length word where the magic should be.
    let e = read_err(&u64::MAX.to_le_bytes()).await;
    assert!(matches!(e, NarReadError::BadMagic { offset: 0 }), "{e:?}");
}

#[tokio::test]
async fn empty_input_is_truncated_at_zero() {
    let e = read_err(b"").await;
    assert!(matches!(e, NarReadError::Truncated { offset: 0 }), "{e:?}");
}

#[tokio::test]
async fn truncation_anywhere_names_the_end() {
    // Every proper prefix of the vector is refused as truncated at its end.
    for cut in 1..HELLO_NAR.len() {
        let e = read_err(&HELLO_NAR[..cut]).await;
        assert!(
            matches!(e, NarReadError::Truncated { offset } if offset == cut as u64),
            "cut {cut}: {e:?}"
        );
    }
}

#[tokio::test]
async fn unknown_node_type() {
    let mut b = NarBuilder::new();
    b.ss(&[b"(", b"type"]);
    let at = b.offset();
    b.ss(&[b"fifo", b")"]);
    let e = read_err(&b.bytes).await;
    match e {
        NarReadError::UnexpectedToken { offset, found, .. } => {
            assert_eq!(offset, at);
            assert_eq!(found, "\"fifo\"");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unknown_token_in_directory() {
    let mut b = NarBuilder::new();
    b.dir_open();
    let at = b.offset();
    b.s(b"entrx");
    let e = read_err(&b.bytes).await;
    assert!(
        matches!(e, NarReadError::UnexpectedToken { offset, .. } if offset == at),
        "{e:?}"
    );
}

#[tokio::test]
async fn overlong_token_is_refused_unread() {
    let mut b = NarBuilder::new();
    let at = b.offset();
    // Announces 1 GiB where "(" belongs; nothing follows, so reading it
    // would report truncation instead.
    b.raw(&(1u64 << 30).to_le_bytes());
    let e = read_err(&b.bytes).await;
    match e {
        NarReadError::UnexpectedToken { offset, found, .. } => {
            assert_eq!(offset, at);
            assert_eq!(found, "a string of 1073741824 bytes");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn executable_needs_empty_string() {
    let mut b = NarBuilder::new();
    b.ss(&[b"(", b"type", b"regular", b"executable"]);
    let at = b.offset();
    b.ss(&[b"x", b"contents", b"", b")"]);
    let e = read_err(&b.bytes).await;
    assert!(
        matches!(e, NarReadError::UnexpectedToken { offset, .. } if offset == at),
        "{e:?}"
    );
}

#[tokio::test]
async fn unsorted_names() {
    let mut b = NarBuilder::new();
    b.dir_open().entry(b"b").file(b"").close();
    b.ss(&[b"entry", b"(", b"name"]);
    let at = b.offset();
    b.s(b"a").s(b"node").file(b"").close().close();
    let e = read_err(&b.bytes).await;
    match e {
        NarReadError::NotSorted {
            offset,
            name,
            previous,
        } => {
            assert_eq!(offset, at);
            assert_eq!((name.as_str(), previous.as_str()), ("a", "b"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn duplicate_names() {
    let mut b = NarBuilder::new();
    b.dir_open().entry(b"a").file(b"").close();
    b.ss(&[b"entry", b"(", b"name"]);
    let at = b.offset();
    b.s(b"a").s(b"node").symlink(b"x").close().close();
    let e = read_err(&b.bytes).await;
    assert!(
        matches!(&e, NarReadError::DuplicateName { offset, name } if *offset == at && name == "a"),
        "{e:?}"
    );
}

/// A directory with one entry called `name`, and the offset of the name.
fn dir_with_name(name: &[u8]) -> (Vec<u8>, u64) {
    let mut b = NarBuilder::new();
    b.dir_open().ss(&[b"entry", b"(", b"name"]);
    let at = b.offset();
    b.s(name).s(b"node").file(b"").close().close();
    (b.bytes, at)
}

#[tokio::test]
async fn bad_names() {
    let long = vec![b'x'; 256];
    let cases: [(&[u8], NameError); 6] = [
        (b"", NameError::Empty),
        (b".", NameError::Reserved(".".into())),
        (b"..", NameError::Reserved("..".into())),
        (b"a/b", NameError::ContainsSlash("a/b".into())),
        (b"a\0b", NameError::ContainsNul("a\0b".into())),
        (&long, NameError::TooLong(256)),
    ];
    for (name, want) in cases {
        let (bytes, at) = dir_with_name(name);
        let e = read_err(&bytes).await;
        match e {
            NarReadError::InvalidName { offset, source } => {
                assert_eq!(offset, at, "{name:?}");
                assert_eq!(source, want);
            }
            other => panic!("{name:?}: {other:?}"),
        }
    }
    // 255 bytes is fine.
    let (bytes, _) = dir_with_name(&[b'x'; 255]);
    read(&bytes).await.unwrap();
}

#[tokio::test]
async fn nonzero_padding_in_a_name() {
    let (mut bytes, at) = dir_with_name(b"ab");
    // Name "ab": length word, 2 bytes, then 6 padding bytes; spoil the 4th.
    let bad = at + 8 + 2 + 3;
    bytes[bad as usize] = 1;
    let e = read_err(&bytes).await;
    assert!(
        matches!(e, NarReadError::NonZeroPadding { offset } if offset == bad),
        "{e:?}"
    );
}

#[tokio::test]
async fn nonzero_padding_after_contents() {
    let mut bytes = HELLO_NAR.to_vec();
    // "Hello World!" sits at 96..108, its padding at 108..112.
    bytes[111] = b'!';
    let e = read_err(&bytes).await;
    assert!(
        matches!(e, NarReadError::NonZeroPadding { offset: 111 }),
        "{e:?}"
    );
}

#[tokio::test]
async fn bad_symlink_targets() {
    let long = vec![b'x'; 4096];
    let cases: [(&[u8], SymlinkTargetError); 3] = [
        (b"", SymlinkTargetError::Empty),
        (b"a\0", SymlinkTargetError::ContainsNul("a\0".into())),
        (&long, SymlinkTargetError::TooLong(4096)),
    ];
    for (target, want) in cases {
        let mut b = NarBuilder::new();
        b.ss(&[b"(", b"type", b"symlink", b"target"]);
        let at = b.offset();
        b.s(target).close();
        let e = read_err(&b.bytes).await;
        match e {
            NarReadError::InvalidSymlinkTarget { offset, source } => {
                assert_eq!(offset, at);
                assert_eq!(source, want);
            }
            other => panic!("{target:?}: {other:?}"),
        }
    }
    // Absolute and dangling targets are fine.
    let mut b = NarBuilder::new();
    b.symlink(b"/nix/store/nowhere/../x");
    read(&b.bytes).await.unwrap();
}

#[tokio::test]
async fn nesting_deeper_than_the_limit() {
    let mut b = NarBuilder::new();
    let mut at = 0;
    for depth in 1..=limits::MAX_DEPTH + 1 {
        at = b.offset();
        b.dir_open();
        if depth <= limits::MAX_DEPTH {
            b.entry(b"d");
        }
    }
    let e = read_err(&b.bytes).await;
    assert!(
        matches!(e, NarReadError::TooDeep { offset, max } if offset == at && max == limits::MAX_DEPTH),
        "{e:?}"
    );
}

#[tokio::test]
async fn nesting_at_the_limit_is_fine() {
    let mut b = NarBuilder::new();
    for depth in 1..=limits::MAX_DEPTH {
        b.dir_open();
        if depth < limits::MAX_DEPTH {
            b.entry(b"d");
        }
    }
    for depth in 1..=limits::MAX_DEPTH {
        b.close();
        if depth < limits::MAX_DEPTH {
            b.close();
        }
    }
    let got = read(&b.bytes).await.unwrap();
    assert!(matches!(got.root, Node::Directory { .. }));
}

#[tokio::test]
async fn a_refused_nar_leaves_no_directory_visible() {
    let (bs, ds) = services();
    // `sub` is complete (and put) before the error in the second entry.
    let mut b = NarBuilder::new();
    b.dir_open()
        .entry(b"sub")
        .dir_open()
        .entry(b"f")
        .file(b"data");
    b.close().close().close();
    b.entry(b"..").file(b"").close().close();
    let mut r = b.bytes.as_slice();
    let e = read_nar_to_end(&mut r, bs.as_ref(), ds.as_ref())
        .await
        .unwrap_err();
    assert!(matches!(e, NarReadError::InvalidName { .. }), "{e:?}");
    let mut sub = Directory::new();
    sub.add(
        PathComponent::try_from("f").unwrap(),
        Node::File {
            digest: B3Digest::of(b"data"),
            size: 4,
            executable: false,
        },
    )
    .unwrap();
    assert_eq!(ds.get(&sub.digest()).await.unwrap(), None);
}

#[tokio::test]
async fn a_good_directory_nar_is_visible_and_writes_back() {
    let (bs, ds) = services();
    let mut b = NarBuilder::new();
    b.dir_open();
    b.entry(b"a").file(b"a\n").close();
    b.entry(b"bin").dir_open();
    b.entry(b"x")
        .ss(&[
            b"(",
            b"type",
            b"regular",
            b"executable",
            b"",
            b"contents",
            b"#!/bin/sh\n",
            b")",
        ])
        .close();
    b.close().close();
    b.entry(b"l").symlink(b"a").close();
    b.entry(b"sub").dir_open().close().close();
    b.close();
    let mut r = b.bytes.as_slice();
    let got = read_nar_to_end(&mut r, bs.as_ref(), ds.as_ref())
        .await
        .unwrap();
    // docs/data-model.md's third interop vector is exactly this tree.
    let Node::Directory { digest, size } = &got.root else {
        panic!("{:?}", got.root)
    };
    assert_eq!(
        digest.to_hex(),
        "ddc131cca63537f9b0e1651746f2062ee2bd6399ceab81008bd3408791d3175c"
    );
    assert_eq!(*size, 10);
    assert!(ds.get(digest).await.unwrap().is_some());
    let mut out = Vec::new();
    write_nar(&mut out, &got.root, bs.as_ref(), ds.as_ref())
        .await
        .unwrap();
    assert_eq!(out, b.bytes);
}
