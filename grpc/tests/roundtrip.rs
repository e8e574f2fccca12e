//! Blobs and directories through a real server: written by one client,
//! read back byte-identically by another, over TCP and unix sockets.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use futures::TryStreamExt;
use storefs_castore::{B3Digest, Directory, Node, PathComponent, SymlinkTarget};
use storefs_grpc::ServerConfig;
use storefs_testkit::grpc::{Kind, client, memory_services};
use storefs_testkit::suites::blob::{put_blob, try_read_blob};
use storefs_testkit::{GrpcServer, pseudo_random};

fn name(s: &str) -> PathComponent {
    PathComponent::try_from(s).unwrap()
}

/// A tree: root { big (file), bin/ { tool (exec) }, lib/ { empty/ }, link -> big }.
fn tree(big: B3Digest, big_len: u64) -> Vec<Directory> {
    let empty = Directory::new();
    let mut lib = Directory::new();
    lib.add(
        name("empty"),
        Node::Directory {
            digest: empty.digest(),
            size: empty.size(),
        },
    )
    .unwrap();
    let mut bin = Directory::new();
    bin.add(
        name("tool"),
        Node::File {
            digest: B3Digest::of(b"#!/bin/sh\n"),
            size: 10,
            executable: true,
        },
    )
    .unwrap();
    let mut root = Directory::new();
    root.add(
        name("big"),
        Node::File {
            digest: big,
            size: big_len,
            executable: false,
        },
    )
    .unwrap();
    root.add(
        name("bin"),
        Node::Directory {
            digest: bin.digest(),
            size: bin.size(),
        },
    )
    .unwrap();
    root.add(
        name("lib"),
        Node::Directory {
            digest: lib.digest(),
            size: lib.size(),
        },
    )
    .unwrap();
    root.add(
        name("link"),
        Node::Symlink {
            target: SymlinkTarget::try_from("big").unwrap(),
        },
    )
    .unwrap();
    // Leaves first, root last.
    vec![empty, lib, bin, root]
}

async fn round_trip(write_kind: Kind, read_kind: Kind) {
    let services = memory_services();
    let server_a = GrpcServer::start(write_kind, services.clone(), ServerConfig::default()).await;
    let server_b = GrpcServer::start(read_kind, services, ServerConfig::default()).await;
    let writer = client(&server_a.url);
    let reader = client(&server_b.url);

    // A multi-MiB blob, written in uneven pieces.
    let data = pseudo_random(5 << 20 | 12345, 1);
    let digest = put_blob(writer.blob.as_ref(), &data).await;
    assert_eq!(digest, B3Digest::of(&data));
    let tool = put_blob(writer.blob.as_ref(), b"#!/bin/sh\n").await;
    assert_eq!(tool, B3Digest::of(b"#!/bin/sh\n"));

    // Read back whole, by the other client over the other socket.
    assert!(reader.blob.has(&digest).await.unwrap());
    assert_eq!(
        try_read_blob(reader.blob.as_ref(), &digest).await.unwrap(),
        data
    );

    // And chunk by chunk, as the mount does.
    let chunks = reader.blob.chunks(&digest).await.unwrap().unwrap();
    assert!(
        chunks.len() > 10,
        "a 5 MiB blob should have many chunks, got {}",
        chunks.len()
    );
    let mut joined = Vec::new();
    for c in &chunks {
        let bytes = reader.blob.read_chunk(&c.digest).await.unwrap().unwrap();
        assert_eq!(bytes.len() as u64, c.size);
        joined.extend_from_slice(&bytes);
    }
    assert_eq!(joined, data);
    // A small blob has no chunk list and is read whole.
    assert_eq!(reader.blob.chunks(&tool).await.unwrap(), Some(vec![]));
    assert_eq!(
        reader
            .blob
            .read_chunk(&tool)
            .await
            .unwrap()
            .unwrap()
            .as_ref(),
        b"#!/bin/sh\n"
    );

    // Absent things are None, not errors.
    let absent = B3Digest::of(b"absent");
    assert!(!reader.blob.has(&absent).await.unwrap());
    assert_eq!(reader.blob.chunks(&absent).await.unwrap(), None);
    assert!(reader.blob.read_chunk(&absent).await.unwrap().is_none());
    assert!(reader.blob.open_read(&absent).await.unwrap().is_none());
    assert!(reader.directory.get(&absent).await.unwrap().is_none());
    let none: Vec<_> = reader
        .directory
        .get_recursive(&absent)
        .try_collect()
        .await
        .unwrap();
    assert!(none.is_empty());

    // A directory tree, leaves first through a putter.
    let dirs = tree(digest, data.len() as u64);
    let root = dirs.last().unwrap().digest();
    let mut putter = writer.directory.put_multiple_start();
    for d in &dirs {
        putter.put(d.clone()).await.unwrap();
    }
    assert_eq!(putter.close().await.unwrap(), root);

    // Single get and recursive get through the other client.
    assert_eq!(
        reader.directory.get(&root).await.unwrap().as_ref(),
        dirs.last()
    );
    let closure: Vec<Directory> = reader
        .directory
        .get_recursive(&root)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(closure.len(), 4);
    assert_eq!(closure[0].digest(), root);
    let mut got: Vec<B3Digest> = closure.iter().map(Directory::digest).collect();
    let mut want: Vec<B3Digest> = dirs.iter().map(Directory::digest).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);

    // A single put of a directory whose children are present.
    let mut extra = Directory::new();
    extra
        .add(
            name("again"),
            Node::Directory {
                digest: root,
                size: dirs[3].size(),
            },
        )
        .unwrap();
    assert_eq!(
        writer.directory.put(extra.clone()).await.unwrap(),
        extra.digest()
    );
    assert_eq!(
        reader.directory.get(&extra.digest()).await.unwrap(),
        Some(extra)
    );

    server_a.stop().await.unwrap();
    server_b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_to_unix() {
    round_trip(Kind::Tcp, Kind::Unix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_to_tcp() {
    round_trip(Kind::Unix, Kind::Tcp).await;
}

#[tokio::test]
async fn empty_blob_round_trips() {
    let server = GrpcServer::start(Kind::Unix, memory_services(), ServerConfig::default()).await;
    let c = client(&server.url);
    let d = put_blob(c.blob.as_ref(), b"").await;
    assert_eq!(d, B3Digest::of(b""));
    assert_eq!(try_read_blob(c.blob.as_ref(), &d).await.unwrap(), b"");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unix_socket_has_mode_0660_and_is_removed_on_stop() {
    let outer = tempfile::tempdir().unwrap();
    let path = outer.path().join("s.sock");
    let addr = storefs_grpc::ListenAddr::Unix(path.clone());
    let server = GrpcServer::start_on(
        addr,
        tempfile::tempdir().unwrap(),
        memory_services(),
        ServerConfig::default(),
    )
    .await;
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    // It serves.
    let c = client(&server.url);
    assert!(!c.blob.has(&B3Digest::of(b"x")).await.unwrap());
    server.stop().await.unwrap();
    assert!(!path.exists(), "socket file left behind");
}

#[tokio::test]
async fn a_directory_putter_refuses_a_missing_child() {
    let server = GrpcServer::start(Kind::Tcp, memory_services(), ServerConfig::default()).await;
    let c = client(&server.url);
    let mut orphan_parent = Directory::new();
    orphan_parent
        .add(
            name("gone"),
            Node::Directory {
                digest: B3Digest::of(b"nothing"),
                size: 0,
            },
        )
        .unwrap();
    let mut putter = c.directory.put_multiple_start();
    let first = putter.put(orphan_parent).await;
    let closed = match first {
        Ok(()) => putter.close().await.map(|_| ()),
        Err(e) => Err(e),
    };
    let err = closed.unwrap_err();
    assert!(
        matches!(err, storefs_castore::Error::InvalidRequest(_)),
        "expected an invalid request, got {err:?}"
    );
    server.stop().await.unwrap();
}
