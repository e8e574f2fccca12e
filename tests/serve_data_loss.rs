//! A `storefs serve` whose own store holds a flipped byte: the client is
//! refused the damaged data, and the server logs DATA_LOSS at error level
//! with the digest, over gRPC, the HTTP view and the daemon socket.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use storefs_testkit::{Serve, http::http, ok_str, pseudo_random, storefs, storefs_bin};

/// Flip one byte of `needle`'s only occurrence in `file`.
fn flip(file: &Path, needle: &[u8]) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the chunk is stored raw in the redb file");
    assert!(
        bytes[at + 1..].windows(needle.len()).all(|w| w != needle),
        "the chunk is stored twice"
    );
    bytes[at + needle.len() / 2] ^= 0x40;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn corrupt_data_in_our_own_store_is_logged_as_data_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Incompressible, so stored as it is; below the chunker's 16 KiB
    // minimum, so one chunk whatever its bytes.
    let content = pseudo_random(12 * 1024, 7);
    let src = tmp.path().join("noise.bin");
    std::fs::write(&src, &content).unwrap();
    let path = ok_str(storefs!(&data).arg("add").arg(&src));
    let info: serde_json::Value =
        serde_json::from_str(&ok_str(storefs!(&data).args(["info", "--json", &path]))).unwrap();
    let digest = info[0]["root"]["digest"].as_str().unwrap().to_owned();
    flip(&data.join("store.redb"), &content[1000..1064]);

    let grpc = tmp.path().join("grpc.sock");
    let daemon = tmp.path().join("daemon.sock");
    let serve = Serve::start(
        &storefs_bin!(),
        &data,
        &[
            "--listen",
            &format!("unix:{}", grpc.display()),
            "--http",
            "127.0.0.1:0",
            "--daemon-socket",
            daemon.to_str().unwrap(),
        ],
        3,
    );

    // gRPC: the read fails, and the server says why, at error level.
    let out = Command::new(storefs_bin!())
        .env("RUST_LOG", "off")
        .args([
            "--store",
            &format!("grpc+unix://{}", grpc.display()),
            "nar",
            &path,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a corrupt blob was served");
    let line = serve.wait_for_log("DATA_LOSS", Duration::from_secs(60));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&digest), "{line}");

    // HTTP: the NAR body is cut, and the server logs it.
    let narinfo = http(
        serve.http(),
        "GET",
        &format!("/{}.narinfo", &path.rsplit('/').next().unwrap()[..32]),
        &[],
        b"",
    );
    let text = String::from_utf8(narinfo.body).unwrap();
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .unwrap()
        .to_owned();
    let mut s = std::net::TcpStream::connect(serve.http()).unwrap();
    use std::io::{Read, Write};
    s.write_all(format!("GET /{url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(raw.len() < content.len(), "the whole corrupt NAR was sent");
    let line = serve.wait_for_log("DATA_LOSS", Duration::from_secs(60));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&digest), "{line}");

    // The daemon socket: NarFromPath is cut short the same way (Nix itself
    // reads a unix:// store's files from the filesystem, so ask directly).
    let got = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use tokio::io::AsyncReadExt;
            let mut c = storefs_store::daemon::DaemonClient::connect(&daemon)
                .await
                .unwrap();
            let nar_size = (content.len() + 200) as u64;
            let mut nar = Vec::new();
            if let Ok(mut r) = c.nar_from_path(&path, nar_size).await {
                let _ = r.read_to_end(&mut nar).await;
            }
            nar.len()
        });
    assert!(got < content.len(), "the daemon sent the corrupt file");
    let line = serve.wait_for_log("DATA_LOSS", Duration::from_secs(60));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("daemon"), "{line}");
    assert!(line.contains(&digest), "{line}");
}
