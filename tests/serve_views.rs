//! `storefs import` and `storefs serve --daemon-socket --http` as real
//! processes, with a real Nix as the other side: the closure Nix built is
//! imported from a binary cache Nix wrote, then Nix queries it through our
//! daemon socket and copies it back out of our HTTP binary cache, checking
//! our signature.

use std::path::Path;
use std::process::Command;
use storefs_testkit::{
    TestServer, free_port, nix::Fixtures, nix::NixStore, nix::sorted_lines, ok, ok_str, storefs,
};

#[test]
fn nix_uses_our_daemon_socket_and_http_cache() {
    let fx = Fixtures::build();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    // Import the closure from a binary cache that Nix wrote, signed by a
    // key Nix generated.
    let cache = tmp.path().join("cache");
    let key_sec = tmp.path().join("nix.sec");
    let key_pub = tmp.path().join("nix.pub");
    ok(Command::new("nix-store")
        .args(["--generate-binary-cache-key", "nix-test-1"])
        .arg(&key_sec)
        .arg(&key_pub));
    ok(fx
        .store
        .nix()
        .arg("copy")
        .arg("--to")
        .arg(format!(
            "file://{}?compression=xz&secret-key={}",
            cache.display(),
            key_sec.display()
        ))
        .arg(&fx.withrefs));
    let nix_pub = std::fs::read_to_string(&key_pub).unwrap();
    // Signatures by a key we were not told to trust are refused...
    let out = storefs!(&data)
        .args(["import", "--from"])
        .arg(format!("file://{}", cache.display()))
        .arg(&fx.withrefs)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...and accepted with it.
    let imported = ok_str(
        storefs!(&data)
            .args(["import", "--from"])
            .arg(format!("file://{}", cache.display()))
            .args(["--trusted-public-key", nix_pub.trim()])
            .arg(&fx.withrefs),
    );
    assert_eq!(sorted_lines(&imported), fx.store.requisites(&fx.withrefs));
    for p in fx.store.requisites(&fx.withrefs) {
        assert_eq!(
            ok(storefs!(&data).arg("nar").arg(&p)),
            fx.store.dump(&p),
            "{p}"
        );
    }

    // Serve the daemon socket and the HTTP view (no gRPC).
    let socket = tmp.path().join("daemon.sock");
    let port = free_port();
    let our_sec = tmp.path().join("ours.sec");
    let our_pub = tmp.path().join("ours.pub");
    ok(Command::new("nix-store")
        .args(["--generate-binary-cache-key", "storefs-test-1"])
        .arg(&our_sec)
        .arg(&our_pub));
    let mut serve = storefs!(&data);
    serve
        .arg("serve")
        .arg("--daemon-socket")
        .arg(&socket)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .arg("--sign-key-file")
        .arg(&our_sec);
    let _serve = TestServer::spawn(&mut serve, &[&socket], &[port]);

    // Nix asks our socket what it would ask its own daemon.
    let store = format!("unix://{}", socket.display());
    let q = |args: &[&str], p: &str| {
        ok_str(
            Command::new("nix-store")
                .args(["--store", &store])
                .args(args)
                .arg(p),
        )
    };
    for p in fx.store.requisites(&fx.withrefs) {
        assert_eq!(q(&["-q", "--hash"], &p), fx.store.hash(&p), "{p}");
        assert_eq!(q(&["-q", "--size"], &p), fx.store.size(&p).to_string());
        assert_eq!(
            sorted_lines(&q(&["-q", "--references"], &p)),
            fx.store.references(&p)
        );
    }
    assert_eq!(
        sorted_lines(&q(&["-qR"], &fx.withrefs)),
        fx.store.requisites(&fx.withrefs)
    );
    assert!(q(&["-q", "--referrers"], &fx.hello).contains(&fx.withrefs));

    // Nix copies the closure out of our HTTP cache into an empty store,
    // checking our on-the-fly signature, and verifies it.
    let dest = NixStore::new();
    let pubkey = std::fs::read_to_string(&our_pub).unwrap();
    ok(dest
        .nix()
        .args(["copy", "--from", &format!("http://127.0.0.1:{port}")])
        .args(["--option", "trusted-public-keys", pubkey.trim()])
        .arg(&fx.withrefs));
    ok(dest
        .nix()
        .args(["store", "verify", "-r"])
        .args(["--option", "trusted-public-keys", pubkey.trim()])
        .arg(&fx.withrefs));
    for p in fx.store.requisites(&fx.withrefs) {
        assert_eq!(dest.dump(&p), fx.store.dump(&p), "{p}");
    }
    // Signed by keys the client does not trust: refused. (The paths carry
    // Nix's signatures from the import and ours made on the fly.)
    let stranger_sec = tmp.path().join("stranger.sec");
    let stranger_pub = tmp.path().join("stranger.pub");
    ok(Command::new("nix-store")
        .args(["--generate-binary-cache-key", "stranger-1"])
        .arg(&stranger_sec)
        .arg(&stranger_pub));
    let stranger = std::fs::read_to_string(&stranger_pub).unwrap();
    let other = NixStore::new();
    let out = other
        .nix()
        .args(["copy", "--from", &format!("http://127.0.0.1:{port}")])
        .args(["--option", "trusted-public-keys", stranger.trim()])
        .arg(&fx.withrefs)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "copy with an untrusted key succeeded"
    );
    assert!(!Path::new(&other.real_path(&fx.withrefs)).exists());
}
