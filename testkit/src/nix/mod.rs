//! A real Nix (Debian's `nix-bin`, 2.8) in a scratch store under a
//! temporary directory, never the machine's `/nix/store`: its commands, the
//! fixtures it makes, a real `nix-daemon`, and a static HTTP server for the
//! binary caches it writes. `scripts/test` installs Nix; tests never do.

mod daemon;
mod fixtures;
mod http;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use daemon::NixDaemon;
pub use fixtures::{Fixtures, write_odd_tree};
pub use http::HttpDir;

use crate::cmd::{ok, ok_str};

/// Settings for every Nix command the tests run: no substituters (nothing
/// from the network), no build users, signatures required, the new CLI on.
pub const NIX_CONFIG: &str = "substituters =\nbuild-users-group =\nrequire-sigs = true\n\
                              extra-experimental-features = nix-command\n";

/// `program` (`nix`, `nix-store`, `nix-build`, `nix-daemon`, …) with
/// [`NIX_CONFIG`]. Fails the test with a clear message if Nix is missing.
pub fn cmd(program: &str) -> Command {
    require_nix();
    let mut c = Command::new(program);
    c.env("NIX_CONFIG", NIX_CONFIG);
    c
}

/// Panic with a clear message unless `nix-store` runs.
pub fn require_nix() {
    let found = Command::new("nix-store").arg("--version").output().is_ok();
    assert!(
        found,
        "nix-store not found: run scripts/test, which installs nix-bin"
    );
}

/// A scratch Nix store (`--store ROOT`, a chroot store).
pub struct NixStore {
    dir: PathBuf,
    /// The `--store` root: store paths' files are in `<root>/nix/store`.
    pub root: PathBuf,
    /// Removes `dir` on drop; `None` for a store that outlives its value.
    _tmp: Option<tempfile::TempDir>,
}

impl NixStore {
    /// An empty store in a temporary directory, removed on drop.
    pub fn new() -> Self {
        require_nix();
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let root = dir.join("root");
        std::fs::create_dir_all(&root).expect("mkdir root");
        NixStore {
            dir,
            root,
            _tmp: Some(tmp),
        }
    }

    /// An empty store in `<parent>/<label>-<pid>`, for a test binary that
    /// keeps one store for its whole run (in a static, never dropped).
    /// Stores left by earlier runs whose process is gone are removed here;
    /// runs of other checkouts sharing `parent` are left alone.
    pub fn fresh(parent: &Path, label: &str) -> Self {
        require_nix();
        std::fs::create_dir_all(parent).expect("mkdir parent");
        for entry in std::fs::read_dir(parent).expect("read parent").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(&format!("{label}-")) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                remove_store(&entry.path());
            }
        }
        let dir = parent.join(format!("{label}-{}", std::process::id()));
        if dir.exists() {
            remove_store(&dir);
        }
        let root = dir.join("root");
        std::fs::create_dir_all(&root).expect("mkdir root");
        NixStore {
            dir,
            root,
            _tmp: None,
        }
    }

    /// The directory holding the store root, sources, keys and caches.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `nix-store --store ROOT`.
    pub fn nix_store(&self) -> Command {
        let mut c = cmd("nix-store");
        c.arg("--store").arg(&self.root);
        c
    }

    /// `nix --store ROOT`.
    pub fn nix(&self) -> Command {
        let mut c = cmd("nix");
        c.arg("--store").arg(&self.root);
        c
    }

    /// Where a store path's files really are.
    pub fn real_path(&self, store_path: &str) -> PathBuf {
        self.root.join(store_path.trim_start_matches('/'))
    }

    /// `nix-store --add PATH`: the new store path.
    pub fn add(&self, path: &Path) -> String {
        ok_str(self.nix_store().arg("--add").arg(path))
    }

    /// Build `expr` (the text of a Nix expression; builders run the host's
    /// `/bin/sh`): the output path.
    pub fn build(&self, expr: &str) -> String {
        let file = self.dir.join("drv.nix");
        std::fs::write(&file, expr).expect("write expression");
        ok_str(
            cmd("nix-build")
                .arg("--store")
                .arg(&self.root)
                .args(["--option", "sandbox-paths", "/bin /lib /lib64 /usr"])
                .arg("--no-out-link")
                .arg(&file),
        )
    }

    /// The NAR of a store path, as `nix-store --dump` writes it.
    pub fn dump(&self, store_path: &str) -> Vec<u8> {
        ok(cmd("nix-store")
            .arg("--dump")
            .arg(self.real_path(store_path)))
    }

    /// `nix-store -q --hash`: `sha256:<nixbase32>` of the NAR.
    pub fn hash(&self, store_path: &str) -> String {
        ok_str(self.nix_store().args(["-q", "--hash", store_path]))
    }

    /// `nix-store -q --size`: the NAR size.
    pub fn size(&self, store_path: &str) -> u64 {
        ok_str(self.nix_store().args(["-q", "--size", store_path]))
            .parse()
            .expect("NAR size")
    }

    /// `nix-store -q --references`, sorted.
    pub fn references(&self, store_path: &str) -> Vec<String> {
        sorted_lines(&ok_str(self.nix_store().args([
            "-q",
            "--references",
            store_path,
        ])))
    }

    /// `nix-store -qR`: the closure, sorted.
    pub fn requisites(&self, store_path: &str) -> Vec<String> {
        sorted_lines(&ok_str(self.nix_store().args(["-qR", store_path])))
    }

    /// A signing key pair named `name`: (secret key file, public key text).
    pub fn keys(&self, name: &str) -> (PathBuf, String) {
        let sk = self.dir.join(format!("{name}.sk"));
        let pk = self.dir.join(format!("{name}.pk"));
        ok(cmd("nix-store")
            .arg("--generate-binary-cache-key")
            .arg(name)
            .arg(&sk)
            .arg(&pk));
        let public = std::fs::read_to_string(&pk).expect("public key");
        (sk, public.trim().to_owned())
    }

    /// `nix copy` of `paths` (with their closures) to a `file://` binary
    /// cache in a new directory `cache-<label>`, compressed with
    /// `compression` and signed with `secret_key` if given: the directory.
    pub fn copy_to_cache(
        &self,
        label: &str,
        compression: &str,
        secret_key: Option<&Path>,
        paths: &[&str],
    ) -> PathBuf {
        let cache = self.dir.join(format!("cache-{label}"));
        let mut url = format!("file://{}?compression={compression}", cache.display());
        if let Some(sk) = secret_key {
            url.push_str(&format!("&secret-key={}", sk.display()));
        }
        ok(self.nix().args(["copy", "--to", &url]).args(paths));
        cache
    }
}

impl Default for NixStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The lines of `s`, sorted.
pub fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// Remove a store directory: Nix leaves store paths read-only.
fn remove_store(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// sha256 of `data` as Nix prints it (`nix-store -q --hash`):
/// `sha256:<nixbase32>`.
pub fn nix_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(data);
    format!("sha256:{}", storefs_store::nixbase32::encode(&h))
}
