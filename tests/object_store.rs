//! The store on a real S3 engine: a single-node Garage on loopback, two
//! `storefs serve --store s3://…` replicas on one bucket, real Nix on the
//! other side, a real FUSE mount. Uploads through one replica (gRPC `add`,
//! `nix copy` to the daemon socket) and `storefs import` straight into the
//! bucket are seen through the other; the bucket follows snix's layout,
//! read back here by key with the object_store crate and zstd alone; a
//! corrupt chunk object fails only its own file; a bad endpoint, bad
//! credentials or a missing bucket fail at startup with one line. A mount
//! given both replicas survives one of them dying in the middle of a
//! read, fails fast with both gone, and recovers by itself when one comes
//! back; an HTTP upload (`nix copy --to http://`) through one replica is
//! seen through the other.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::path::Path as Key;
use storefs_castore::{B3Digest, ChunkerConfig, chunk_all};
use storefs_testkit::nix::NixStore;
use storefs_testkit::nix::{self, Fixtures};
use storefs_testkit::{
    Garage, TestMount, TestServer, free_port, ok, ok_str, pseudo_random, storefs_bin, storefs_cmd,
    try_run, wait_for,
};

/// `storefs --store URL …` with Garage's key in the environment.
fn storefs(g: &Garage, data: &Path, url: &str) -> Command {
    let mut c = storefs_cmd(&storefs_bin!(), data);
    g.credentials_env(&mut c);
    c.arg("--store").arg(url);
    c
}

/// `storefs serve` over `url` on a gRPC socket and a daemon socket.
fn replica(g: &Garage, dir: &Path, name: &str, url: &str, extra: &[&str]) -> TestServer {
    let grpc = dir.join(format!("{name}.sock"));
    let daemon = dir.join(format!("{name}-daemon.sock"));
    let mut cmd = storefs(g, &dir.join(format!("{name}-data")), url);
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("unix:{}", grpc.display()))
        .arg("--daemon-socket")
        .arg(&daemon)
        .args(extra);
    let mut s = TestServer::spawn(&mut cmd, &[&grpc, &daemon], &[]);
    s.socket = grpc;
    s
}

/// The bucket, opened directly with the object_store crate.
fn raw_bucket(g: &Garage) -> Arc<dyn ObjectStore> {
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&g.bucket)
            .with_region(storefs_testkit::garage::REGION)
            .with_endpoint(&g.endpoint)
            .with_allow_http(true)
            .with_access_key_id(&g.access_key_id)
            .with_secret_access_key(&g.secret_access_key)
            .build()
            .unwrap(),
    )
}

/// `PREFIX/<kind>/b3/<4 hex>/<64 hex>`.
fn key(prefix: &str, kind: &str, digest: &B3Digest) -> Key {
    let hex = digest.to_hex();
    Key::from(format!("{prefix}/{kind}/b3/{}/{hex}", &hex[..4]))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A tree with a multi-chunk file, small files, an executable, a symlink.
fn write_tree(dir: &Path, big: &[u8]) {
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    std::fs::write(dir.join("big.bin"), big).unwrap();
    std::fs::write(dir.join("small.txt"), b"small\n").unwrap();
    std::fs::write(dir.join("sub/deeper/empty"), b"").unwrap();
    std::fs::write(dir.join("sub/run"), b"#!/bin/sh\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("sub/run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../small.txt", dir.join("sub/link")).unwrap();
}

#[test]
fn replicas_on_one_bucket_serve_one_store() {
    let g = Garage::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = g.store_url(&g.bucket, "store1");
    let a = replica(&g, tmp.path(), "a", &url, &[]);
    let near = tmp.path().join("b-near");
    let b = replica(
        &g,
        tmp.path(),
        "b",
        &url,
        &[
            "--near-cache",
            near.to_str().unwrap(),
            "--near-cache-size",
            "64M",
        ],
    );

    // `storefs add` through A; `storefs nar` through B is `nix-store --dump`.
    let tree = tmp.path().join("tree");
    let big = pseudo_random(3 << 20, 7);
    write_tree(&tree, &big);
    let data = tmp.path().join("client");
    let path = ok_str(storefs(&g, &data, &a.url()).arg("add").arg(&tree));
    assert!(
        path.starts_with("/nix/store/") && path.ends_with("-tree"),
        "{path}"
    );
    let dump = ok(nix::cmd("nix-store").arg("--dump").arg(&tree));
    assert_eq!(ok(storefs(&g, &data, &b.url()).arg("nar").arg(&path)), dump);

    // The bucket, read by key with the snix layout rules alone.
    let rt = runtime();
    let raw = raw_bucket(&g);
    let get = |k: Key| rt.block_on(async { raw.get(&k).await.unwrap().bytes().await.unwrap() });
    let chunks = chunk_all(ChunkerConfig::default(), &big).unwrap();
    assert!(chunks.len() > 2);
    let mut whole = Vec::new();
    for c in &chunks {
        let obj = get(key("store1", "chunks", &B3Digest::of(c)));
        let plain = zstd::decode_all(&obj[..]).unwrap();
        assert_eq!(&plain[..], &c[..]);
        whole.extend_from_slice(&plain);
    }
    assert_eq!(whole, big);
    assert!(!get(key("store1", "blobs", &B3Digest::of(&big))).is_empty());
    let info: serde_json::Value = serde_json::from_str(&ok_str(
        storefs(&g, &data, &b.url())
            .args(["info", "--json"])
            .arg(&path),
    ))
    .unwrap();
    let root = B3Digest::from_hex(info[0]["root"]["digest"].as_str().unwrap()).unwrap();
    let closure = zstd::decode_all(&get(key("store1", "dirs", &root))[..]).unwrap();
    let first_len = u32::from_be_bytes(closure[..4].try_into().unwrap()) as usize;
    assert_eq!(B3Digest::of(&closure[4..4 + first_len]), root, "root first");

    // `storefs import` of a binary cache Nix wrote, straight into the bucket.
    let fx = Fixtures::build();
    let cache = fx.store.copy_to_cache("s3", "xz", None, &[&fx.withrefs]);
    ok(storefs(&g, &data, &url)
        .args(["import", "--no-check-sigs", "--from"])
        .arg(format!("file://{}", cache.display()))
        .arg(&fx.withrefs));
    for p in fx.store.requisites(&fx.withrefs) {
        assert_eq!(
            ok(storefs(&g, &data, &a.url()).arg("nar").arg(&p)),
            fx.store.dump(&p),
            "{p}"
        );
    }

    // `nix copy` to B's daemon socket; A sees the path at once.
    let b_daemon = format!("unix://{}", tmp.path().join("b-daemon.sock").display());
    let (copied, _, err) = try_run(
        nix::cmd("nix")
            .args(["copy", "--from"])
            .arg(&fx.store.root)
            .args(["--to", &b_daemon, &fx.single]),
    );
    assert!(copied, "nix copy to replica B: {err}");
    assert_eq!(
        ok(storefs(&g, &data, &a.url()).arg("nar").arg(&fx.single)),
        fx.store.dump(&fx.single)
    );
    // And Nix, asking A's daemon socket, finds the imported closure.
    let a_daemon = format!("unix://{}", tmp.path().join("a-daemon.sock").display());
    let refs = ok_str(nix::cmd("nix-store").args(["--store", &a_daemon, "-qR", &fx.withrefs]));
    assert_eq!(nix::sorted_lines(&refs), fx.store.requisites(&fx.withrefs));

    // B's near cache holds what B served: with Garage gone, B still
    // serves it, while A, which keeps nothing, cannot.
    drop(g);
    let plain = |url: &str| {
        let mut c = storefs_cmd(&storefs_bin!(), &data);
        c.arg("--store").arg(url);
        c
    };
    assert_eq!(ok(plain(&b.url()).arg("nar").arg(&path)), dump);
    let (served, _, _) = try_run(plain(&a.url()).arg("nar").arg(&path));
    assert!(!served, "replica A served a path with its bucket gone");
}

#[test]
fn a_corrupt_chunk_fails_only_its_file_through_a_mount() {
    let g = Garage::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = g.store_url(&g.bucket, "store2");
    let a = replica(&g, tmp.path(), "a", &url, &[]);
    let tree = tmp.path().join("tree");
    let big = pseudo_random(2 << 20, 9);
    write_tree(&tree, &big);
    let data = tmp.path().join("client");
    let path = ok_str(storefs(&g, &data, &a.url()).arg("add").arg(&tree));

    // Overwrite one chunk of big.bin with another chunk's bytes.
    let chunks = chunk_all(ChunkerConfig::default(), &big).unwrap();
    let victim = key("store2", "chunks", &B3Digest::of(&chunks[1]));
    let rt = runtime();
    let raw = raw_bucket(&g);
    let good = rt.block_on(async { raw.get(&victim).await.unwrap().bytes().await.unwrap() });
    let wrong = zstd::encode_all(&chunks[0][..], 1).unwrap();
    rt.block_on(raw.put(&victim, wrong.into())).unwrap();

    let mnt = tmp.path().join("mnt");
    let mount = TestMount::start(
        &storefs_bin!(),
        &a.url(),
        &mnt,
        &tmp.path().join("cache"),
        &["--timeout", "20"],
    );
    let base = mnt.join(path.trim_start_matches("/nix/store/"));
    let err = std::fs::read(base.join("big.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_eio()), "{err}");
    // The mount is up, and the other files read fine.
    assert_eq!(std::fs::read(base.join("small.txt")).unwrap(), b"small\n");
    assert_eq!(
        std::fs::read(base.join("sub/run")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    // Still failing: nothing bad was cached on the way.
    assert!(std::fs::read(base.join("big.bin")).is_err());
    // Repaired in the bucket, the file reads right.
    rt.block_on(raw.put(&victim, good.into())).unwrap();
    assert_eq!(std::fs::read(base.join("big.bin")).unwrap(), big);
    drop(mount);
}

#[test]
fn a_mount_of_two_replicas_reads_on_when_one_dies() {
    let g = Garage::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = g.store_url(&g.bucket, "store3");
    let a = replica(&g, tmp.path(), "a", &url, &[]);
    let b = replica(&g, tmp.path(), "b", &url, &[]);
    let tree = tmp.path().join("tree");
    let big = pseudo_random(48 << 20, 21);
    write_tree(&tree, &big);
    let other = pseudo_random(3 << 20, 22);
    std::fs::write(tree.join("other.bin"), &other).unwrap();
    let data = tmp.path().join("client");
    let path = ok_str(storefs(&g, &data, &a.url()).arg("add").arg(&tree));

    let timeout = 6;
    let mnt = tmp.path().join("mnt");
    let both = format!("{},{}", a.url(), b.url());
    let mount = TestMount::start(
        &storefs_bin!(),
        &both,
        &mnt,
        &tmp.path().join("cache"),
        &["--timeout", &timeout.to_string(), "--no-passthrough"],
    );
    let base = mnt.join(path.trim_start_matches("/nix/store/"));

    // A quarter of big.bin, cold, from A (the first given).
    let mut file = std::fs::File::open(base.join("big.bin")).unwrap();
    let mut got = vec![0u8; big.len() / 4];
    file.read_exact(&mut got).unwrap();
    let remotes = |m: &TestMount| m.stats()["remotes"].as_array().unwrap().clone();
    let r = remotes(&mount);
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r[0]["bytes"].as_u64().unwrap() > 0, "{r:?}");
    assert_eq!(r[1]["bytes"], 0, "{r:?}");

    // A dies in the middle of the read: the rest comes from B, no EIO.
    drop(a);
    file.read_to_end(&mut got).unwrap();
    assert!(got == big, "big.bin read through the failover differs");
    let r = remotes(&mount);
    assert!(r[0]["failures"].as_u64().unwrap() >= 1, "{r:?}");
    assert_eq!(r[0]["state"], "shunned", "{r:?}");
    assert!(r[1]["bytes"].as_u64().unwrap() > 0, "{r:?}");
    assert_eq!(r[1]["state"], "healthy", "{r:?}");

    // Both gone: an uncached read fails with EIO, and does not hang (the
    // bound is a liveness check, far above --timeout, not a speed one).
    drop(b);
    let started = Instant::now();
    let err = std::fs::read(base.join("other.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_eio()), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4 * timeout),
        "EIO took {:?}",
        started.elapsed()
    );
    // What was read is cached, and still reads.
    assert!(std::fs::read(base.join("big.bin")).unwrap() == big);

    // A comes back on its socket: the mount uses it again by itself.
    let _a = replica(&g, tmp.path(), "a", &url, &[]);
    let mut back = Vec::new();
    wait_for(
        Duration::from_secs(60),
        "the mount to read through A again",
        || match std::fs::read(base.join("other.bin")) {
            Ok(b) => {
                back = b;
                true
            }
            Err(_) => false,
        },
    );
    assert!(back == other, "other.bin differs");
    let r = remotes(&mount);
    assert_eq!(r[0]["state"], "healthy", "{r:?}");
    drop(mount);
}

#[test]
fn an_http_upload_through_one_replica_is_seen_through_the_other() {
    let g = Garage::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = g.store_url(&g.bucket, "store4");
    let a = replica(&g, tmp.path(), "a", &url, &[]);
    let token = "write-token-for-the-http-view";
    let token_file = tmp.path().join("write-token");
    std::fs::write(&token_file, token).unwrap();
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let _b = {
        let grpc = tmp.path().join("b.sock");
        let mut cmd = storefs(&g, &tmp.path().join("b-data"), &url);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("unix:{}", grpc.display()))
            .args(["--http", &http, "--write-token-file"])
            .arg(&token_file);
        TestServer::spawn(&mut cmd, &[&grpc], &[port])
    };

    // Nix uploads a path of its own to B's binary-cache view.
    let nix = NixStore::new();
    let own = tmp.path().join("own.txt");
    std::fs::write(&own, "uploaded over HTTP to replica B\n").unwrap();
    let own_path = nix.add(&own);
    let netrc = tmp.path().join("netrc");
    std::fs::write(
        &netrc,
        format!("machine 127.0.0.1 login nix password {token}\n"),
    )
    .unwrap();
    ok(nix
        .nix()
        .args(["copy", "--to", &format!("http://{http}")])
        .arg("--option")
        .arg("netrc-file")
        .arg(&netrc)
        .arg(&own_path));

    // A, which shares nothing with B but the bucket, serves it at once.
    let data = tmp.path().join("client");
    assert_eq!(
        ok(storefs(&g, &data, &a.url()).arg("nar").arg(&own_path)),
        nix.dump(&own_path)
    );
}

#[test]
fn a_hung_s3_is_bounded_by_serve_timeout() {
    let g = Garage::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = g.store_url(&g.bucket, "store5");
    let a = replica(&g, tmp.path(), "a", &url, &["--timeout", "2s"]);
    let tree = tmp.path().join("tree");
    write_tree(&tree, &pseudo_random(1 << 20, 23));
    let data = tmp.path().join("client");
    let path = ok_str(storefs(&g, &data, &url).arg("add").arg(&tree));

    // Garage frozen: the replica's S3 requests give up after its 2 s
    // (object_store's timeouts), and it says so; the client's own 30 s
    // deadline is not what ends the call.
    g.pause();
    let started = Instant::now();
    let (served, _, err) = try_run(storefs(&g, &data, &a.url()).arg("nar").arg(&path));
    let took = started.elapsed();
    g.resume();
    assert!(!served, "a path was served with S3 frozen");
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "{err}"
    );
    assert!(
        !err.contains("DEADLINE_EXCEEDED"),
        "the client's deadline ended it: {err}"
    );
    assert!(took < Duration::from_secs(25), "took {took:?}: {err}");
    // Thawed, the same replica serves it.
    let dump = ok(nix::cmd("nix-store").arg("--dump").arg(&tree));
    assert_eq!(ok(storefs(&g, &data, &a.url()).arg("nar").arg(&path)), dump);
}

/// EIO, without a libc dependency.
fn libc_eio() -> i32 {
    5
}

#[test]
fn a_bad_endpoint_credentials_or_bucket_is_one_line_at_startup() {
    let g = Garage::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let fails = |cmd: &mut Command, expect: &str| {
        let (ok, out, err) =
            try_run(cmd.args(["info", "/nix/store/00000000000000000000000000000000-x"]));
        assert!(!ok, "{out}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(expect), "expected {expect:?} in: {err}");
    };
    // No such bucket.
    fails(
        &mut storefs(&g, &data, &g.store_url("no-such-bucket", "")),
        "does not exist",
    );
    // Wrong secret.
    let mut c = storefs(&g, &data, &g.store_url(&g.bucket, ""));
    c.env("AWS_SECRET_ACCESS_KEY", "0".repeat(64));
    fails(&mut c, "refused the credentials");
    // No credentials at all.
    let mut c = storefs(&g, &data, &g.store_url(&g.bucket, ""));
    c.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    fails(&mut c, "no S3 credentials");
    // Nothing listening at the endpoint.
    let dead = format!(
        "s3://{}?endpoint=http://127.0.0.1:{}&region=garage",
        g.bucket,
        storefs_testkit::free_port()
    );
    fails(&mut storefs(&g, &data, &dead), "cannot reach");
    // A credentials file works where the environment is empty.
    let creds = tmp.path().join("creds");
    std::fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            g.access_key_id, g.secret_access_key
        ),
    )
    .unwrap();
    let mut c = storefs(&g, &data, &g.store_url(&g.bucket, ""));
    c.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    c.arg("--s3-credentials-file").arg(&creds);
    fails(&mut c, "is not in the store");
}
