//! Running commands: insist on success, or look at the outcome.

use std::path::Path;
use std::process::Command;

/// A `storefs` command (binary `bin`, see [`crate::storefs_bin`]) on the
/// embedded store in `data`, with the environment's store settings removed
/// and logging quiet.
pub fn storefs_cmd(bin: &Path, data: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env("STOREFS_DATA", data)
        .env_remove("STOREFS_STORE")
        .env_remove("STOREFS_STORE_DIR")
        .env("RUST_LOG", "warn");
    c
}

/// Run `cmd`, panic with its stderr unless it succeeded; its stdout.
pub fn ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// [`ok`], with stdout as a trimmed string.
pub fn ok_str(cmd: &mut Command) -> String {
    String::from_utf8(ok(cmd))
        .expect("utf-8 stdout")
        .trim()
        .to_owned()
}

/// Run `cmd`: (success, stdout, stderr).
pub fn try_run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
