//! Shared parts of the end-to-end tests: the storefs binary, scratch data
//! directories, and fixtures made by a real Nix in a scratch store.
#![allow(dead_code)] // each test binary uses a different subset

pub mod nix;
pub mod procs;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The storefs binary cargo built for these tests.
pub fn storefs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_storefs"))
}

/// A `storefs` command on an embedded store in `data`, with logging quiet.
pub fn storefs(data: &Path) -> Command {
    let mut c = Command::new(storefs_bin());
    c.env("STOREFS_DATA", data)
        .env_remove("STOREFS_STORE")
        .env_remove("STOREFS_STORE_DIR")
        .env("RUST_LOG", "warn");
    c
}

/// Run and insist on success, returning stdout.
pub fn ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn");
    assert_success(&out, cmd);
    out.stdout
}

/// Run and insist on success, returning stdout as a trimmed string.
pub fn ok_str(cmd: &mut Command) -> String {
    String::from_utf8(ok(cmd))
        .expect("utf-8 stdout")
        .trim()
        .to_owned()
}

/// Panic with the command's stderr unless it succeeded.
pub fn assert_success(out: &Output, cmd: &Command) {
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// sha256 of `data`, as Nix prints it with `nix-store -q --hash`
/// (`sha256:<nixbase32>`).
pub fn nix_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(data);
    format!("sha256:{}", storefs_store::nixbase32::encode(&h))
}

/// `storefs serve` on the unix socket `socket`, over the embedded store in
/// `data`; stopped when dropped.
pub fn serve(data: &Path, socket: &Path) -> storefs_testkit::TestServer {
    storefs_testkit::TestServer::start(&storefs_bin(), data, socket)
}

/// `storefs --store STORE_URL mount AT --cache CACHE EXTRA…`; unmounted when
/// dropped.
pub fn mount_at(
    store_url: &str,
    at: &Path,
    cache: &Path,
    extra: &[&str],
) -> storefs_testkit::TestMount {
    storefs_testkit::TestMount::start(&storefs_bin(), store_url, at, cache, extra)
}
