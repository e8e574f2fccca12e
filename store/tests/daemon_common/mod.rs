//! Shared by the daemon tests: a server on a socket in a temp dir, a
//! raw-byte client, and fixtures.
#![allow(dead_code)] // each test file uses a different part

use std::sync::Arc;

use storefs_castore::{B3Digest, Node};
use storefs_store::PathInfo;
use storefs_store::PathInfoService;
use storefs_store::Services;
use storefs_store::StorePath;
use storefs_store::daemon::wire;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub use storefs_testkit::TestDaemon;

/// The path info service the tests use: the real memory backend.
pub type MapPathInfoService = storefs_store::MemoryPathInfoService;

/// Every path info held.
pub async fn list_all(svc: &dyn PathInfoService) -> Vec<PathInfo> {
    use futures::TryStreamExt;
    svc.list().try_collect().await.unwrap()
}

pub const HELLO: &str = "925f1jb1ajrypjbyq7rylwryqwizvhp0-hello.txt";
pub const HELLO_NAR_SHA256: &str =
    "03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040";
pub const TEXT: &str = "r4mvpxzh7rgrm4j831b2yi90zq64grqm-hello.txt";
pub const BAZ: &str = "w2hzasm68w0bfrwg61385vhfcqqrpnm9-baz";

pub fn sp(base: &str) -> StorePath {
    StorePath::from_base_name(base).unwrap()
}

pub fn full(base: &str) -> String {
    format!("/nix/store/{base}")
}

/// Fixture metadata: `hello.txt` added with `nix-store --add`, and `baz`
/// referring to the `builtins.toFile` hello.txt (which is not itself valid).
pub async fn fixture_infos(svc: &dyn PathInfoService) {
    let file = Node::File {
        digest: B3Digest::of(b"Hello World!"),
        size: 12,
        executable: false,
    };
    let mut sha = [0u8; 32];
    hex::decode_to_slice(HELLO_NAR_SHA256, &mut sha).unwrap();
    svc.put(PathInfo {
        store_path: sp(HELLO),
        node: file.clone(),
        references: vec![],
        nar_size: 128,
        nar_sha256: sha,
        signatures: vec![],
        deriver: None,
        ca: Some(storefs_store::ContentAddress::Recursive(
            storefs_store::NixHash::new(storefs_store::HashAlgo::Sha256, &sha).unwrap(),
        )),
    })
    .await
    .unwrap();
    svc.put(PathInfo {
        store_path: sp(BAZ),
        node: file,
        references: vec![sp(TEXT), sp(HELLO)],
        nar_size: 168,
        nar_sha256: [7; 32],
        signatures: vec![],
        deriver: Some(sp(HELLO)),
        ca: None,
    })
    .await
    .unwrap();
}

/// A client that speaks raw bytes.
pub struct Raw {
    pub s: UnixStream,
}

impl Raw {
    pub async fn connect(socket: &std::path::Path) -> Self {
        Self {
            s: UnixStream::connect(socket).await.unwrap(),
        }
    }
    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }
    pub async fn u64(&mut self) -> u64 {
        wire::read_u64(&mut self.s, "test").await.unwrap()
    }
    pub async fn string(&mut self) -> String {
        wire::read_string(&mut self.s, 1 << 20, "test")
            .await
            .unwrap()
    }
    pub async fn strings(&mut self) -> Vec<String> {
        wire::read_strings(&mut self.s, 1 << 20, 1 << 20, "test")
            .await
            .unwrap()
    }
    /// Whether the server closed the connection (EOF on the next read).
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(10), self.s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

pub fn msg() -> Vec<u8> {
    Vec::new()
}

/// Services in memory with the fixture path infos.
pub async fn memory_services() -> (Services, Arc<MapPathInfoService>) {
    let pis = Arc::new(MapPathInfoService::new());
    fixture_infos(pis.as_ref()).await;
    let services = Services::new(
        Arc::new(storefs_castore::MemoryBlobService::new()),
        Arc::new(storefs_castore::MemoryDirectoryService::new()),
        pis.clone(),
    );
    (services, pis)
}

/// Handshake bytes a client of `version` sends after the magic and its
/// version: features at 1.38, cpu affinity and reserveSpace.
pub fn handshake_tail(minor: u64) -> Vec<u8> {
    let mut v = Vec::new();
    if (38..0x60).contains(&minor) {
        wire::put_u64(&mut v, 0); // no features (Guix has none)
    }
    wire::put_u64(&mut v, 0); // sendCpu
    wire::put_u64(&mut v, 0); // reserveSpace
    v
}

/// Structured STDERR_ERROR (≥ 1.26): returns the message.
pub async fn read_structured_error(c: &mut Raw) -> String {
    assert_eq!(c.string().await, "Error");
    assert_eq!(c.u64().await, 0);
    assert_eq!(c.string().await, "Error");
    let msg = c.string().await;
    assert_eq!(c.u64().await, 0); // havePos
    assert_eq!(c.u64().await, 0); // traces
    msg
}
