//! A real VM off the store: `storefs serve` with a small store path,
//! `storefs virtiofs` in front of it, and `scripts/vm` booting Debian's
//! kernel under qemu (TCG) with a busybox initramfs that mounts the store
//! over virtio-fs and runs a program from it. Two boots against the same
//! backend: the first runs a script from the store (its output, a file's
//! SHA-256 inside the guest equal to the host's, only the touched files
//! fetched); the second runs with the service killed (an uncached file
//! fails with EIO within the timeout, cached files still read, VM and
//! backend stay up). Then SIGTERM: a clean exit, the socket removed.
//! And the benchmark's baseline, a closure packed into the initramfs
//! (`scripts/vm --pack`), runs the same script without any store.
//!
//! Needs qemu, busybox-static and the kernel cached by `scripts/vm-setup`
//! (`scripts/test` runs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sha2::{Digest, Sha256};
use storefs_testkit::{TestServer, ok_str, pseudo_random, storefs, storefs_bin, wait_for};

/// The repository's `scripts/vm`.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/vm")
}

/// What `scripts/vm` needs is there (else: run `scripts/vm-setup`).
fn assert_vm_tools() {
    let cache = vm_cache();
    assert!(
        Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is missing: run scripts/vm-setup"
    );
    assert!(
        cache.join("kernel/.unpacked").exists(),
        "no kernel in {}: run scripts/vm-setup",
        cache.display()
    );
}

/// Where `scripts/vm-setup` caches the kernel.
fn vm_cache() -> PathBuf {
    if let Some(c) = std::env::var_os("STOREFS_VM_CACHE") {
        return PathBuf::from(c);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    base.join("storefs/vm")
}

/// Boot the VM against the backend on `socket` and run `program args`.
fn boot(socket: &Path, program: &str, args: &[&str]) -> Output {
    let out = Command::new(script())
        .arg(program)
        .args(args)
        .env("STOREFS_VM_SOCKET", socket)
        .env("STOREFS_VM_TIMEOUT", "240")
        .env_remove("STOREFS_STORE")
        .output()
        .expect("run scripts/vm");
    eprintln!(
        "scripts/vm stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The figures the backend wrote to `file`.
fn figures(file: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(file).expect("read the figures")).expect("JSON figures")
}

/// A store path's tree in `tree`: `bin/hello`, a script busybox's sh
/// runs (it prints a greeting, `share/msg` and the SHA-256 of
/// `share/data`). Returns the script, `share/data` and the expected
/// output.
fn hello_tree(tree: &Path) -> (&'static str, Vec<u8>, String) {
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::create_dir_all(tree.join("share")).unwrap();
    let script_text = "#!/bin/sh\nd=$(dirname \"$0\")/..\necho \"hello from the store\"\ncat \"$d/share/msg\"\nsha256sum \"$d/share/data\" | cut -d' ' -f1\n";
    std::fs::write(tree.join("bin/hello"), script_text).unwrap();
    let mut perms = std::fs::metadata(tree.join("bin/hello"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(tree.join("bin/hello"), perms).unwrap();
    std::fs::write(tree.join("share/msg"), "a small file, read twice\n").unwrap();
    let data_bytes = pseudo_random(300_000, 7);
    std::fs::write(tree.join("share/data"), &data_bytes).unwrap();
    let want = format!(
        "hello from the store\na small file, read twice\n{}\n",
        hex::encode(Sha256::digest(&data_bytes))
    );
    (script_text, data_bytes, want)
}

/// The benchmark's baseline without a shared store: `scripts/vm --pack
/// DIR=PATH` copies DIR into the initramfs as PATH (no backend, no
/// virtio-fs device) and the program runs from it: its output and a
/// file's SHA-256 inside the guest exact.
#[test]
fn a_packed_closure_runs_without_a_store() {
    assert_vm_tools();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("vmpack");
    let (_, _, want) = hello_tree(&tree);
    let path = "/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-vmpack";
    let out = Command::new(script())
        .arg("--pack")
        .arg(format!("{}={path}", tree.display()))
        .arg(format!("{path}/bin/hello"))
        .env("STOREFS_VM_TIMEOUT", "240")
        .env_remove("STOREFS_STORE")
        .env_remove("STOREFS_VM_SOCKET")
        .output()
        .expect("run scripts/vm --pack");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{stderr}");
    assert!(
        out.status.success(),
        "scripts/vm --pack: {}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("first output"), "{stderr}");
}

#[test]
fn a_vm_boots_off_the_store_and_runs_a_program_from_it() {
    assert_vm_tools();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    // The store path: a script busybox's sh runs, a small message, a file
    // the guest hashes, and a large file nothing reads in the first boot.
    let tree = tmp.path().join("vmtest");
    let (script_text, data_bytes, want) = hello_tree(&tree);
    let big = pseudo_random(8 << 20, 8);
    std::fs::write(tree.join("share/big"), &big).unwrap();
    let path = ok_str(storefs!(data).arg("add").arg(&tree));
    let total = 8u64 << 20;

    let service_socket = tmp.path().join("grpc.sock");
    let mut service = TestServer::start(&storefs_bin!(), &data, &service_socket);

    let socket = tmp.path().join("virtiofs.sock");
    let stats = tmp.path().join("figures.json");
    let mut backend_cmd = storefs!(data);
    backend_cmd
        .arg("--store")
        .arg(service.url())
        .arg("virtiofs")
        .arg("--socket")
        .arg(&socket)
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .arg("--timeout")
        .arg("3")
        .arg("--stats-file")
        .arg(&stats);
    let mut backend = TestServer::spawn(&mut backend_cmd, &[&socket], &[]);
    // The readiness probe above was a connection too: let its session end.
    wait_for(
        Duration::from_secs(10),
        "the probe's session to end",
        || stats.exists(),
    );
    std::fs::remove_file(&stats).unwrap();

    // First boot: the script, its output exact.
    let out = boot(&socket, &format!("{path}/bin/hello"), &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        want,
        "the program's output"
    );
    assert!(out.status.success(), "scripts/vm: {}", out.status);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("first output"),
        "scripts/vm reports the time to the first output"
    );

    // Lazy: only what the guest touched was fetched (the script, the
    // message, the hashed file; never the large file).
    wait_for(
        Duration::from_secs(10),
        "the figures of the first guest",
        || stats.exists(),
    );
    let f = figures(&stats);
    let fetched = f["bytes_fetched"].as_u64().unwrap();
    let touched = (script_text.len() + 25 + data_bytes.len()) as u64;
    assert!(fetched >= data_bytes.len() as u64, "fetched {fetched}");
    assert!(
        fetched < touched + (1 << 20),
        "fetched {fetched} bytes, the guest read {touched}"
    );
    assert!(fetched * 8 < total, "fetched {fetched} of {total}");
    std::fs::remove_file(&stats).unwrap();

    // Second boot, same backend, the service gone: the large file (never
    // fetched) fails with EIO within --timeout, the cached ones still read.
    assert!(service.stop().is_some());
    let out = boot(
        &socket,
        "/bin/sh",
        &[
            "-c",
            &format!(
                "head -c 4096 {path}/share/big >/dev/null 2>&1; echo \"big: $?\"; cat {path}/share/msg; sha256sum {path}/share/data | cut -d' ' -f1"
            ),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "big: 1\na small file, read twice\n{}\n",
            hex::encode(Sha256::digest(&data_bytes))
        )
    );
    assert!(out.status.success(), "scripts/vm: {}", out.status);
    wait_for(
        Duration::from_secs(10),
        "the figures of the second guest",
        || stats.exists(),
    );
    let f = figures(&stats);
    assert!(f["timeouts"].as_u64().unwrap() + f["errors"].as_u64().unwrap() >= 1);

    // SIGTERM: a clean exit, the socket gone.
    let status = backend.stop().expect("the backend's exit status");
    assert!(status.success(), "storefs virtiofs exited with {status}");
    assert!(!socket.exists(), "the socket was removed");
}
