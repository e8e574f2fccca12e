//! The storefs binary for the end-to-end tests; everything else they share
//! (Nix fixtures, process guards, pollers) is in the test kit.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::Command;

use storefs_testkit::{TestMount, TestServer, storefs_bin, storefs_cmd};

/// A `storefs` command on the embedded store in `data`, with logging quiet.
pub fn storefs(data: &Path) -> Command {
    storefs_cmd(&storefs_bin!(), data)
}

/// `storefs serve` on the unix socket `socket`, over the embedded store in
/// `data`; stopped when dropped.
pub fn serve(data: &Path, socket: &Path) -> TestServer {
    TestServer::start(&storefs_bin!(), data, socket)
}

/// `storefs --store STORE_URL mount AT --cache CACHE EXTRA…`; unmounted when
/// dropped.
pub fn mount_at(store_url: &str, at: &Path, cache: &Path, extra: &[&str]) -> TestMount {
    TestMount::start(&storefs_bin!(), store_url, at, cache, extra)
}
