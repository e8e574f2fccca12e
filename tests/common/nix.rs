//! Fixtures made by a real Nix (Debian's nix-bin) in a scratch store, so the
//! tests compare storefs with Nix itself and never touch `/nix/store`.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{ok, ok_str};

/// A scratch Nix store (`--store DIR`) holding the fixtures.
pub struct NixStore {
    /// Owns the temporary directory.
    pub dir: tempfile::TempDir,
    /// The `--store` root: files land in `<root>/nix/store`.
    pub root: PathBuf,
}

/// The store paths of the standard fixture set.
pub struct Fixtures {
    /// The scratch store.
    pub store: NixStore,
    /// `nix-store --add` of a tree with odd names, executables, symlinks,
    /// empty files and directories, and multi-chunk files.
    pub tree: String,
    /// `nix-store --add` of a single regular file.
    pub single_file: String,
    /// `builtins.toFile "hello.txt" "Hello World!"`.
    pub hello: String,
    /// A derivation output built with /bin/sh that references `hello` and a
    /// second added tree, so closures have references.
    pub withrefs: String,
    /// The added tree that `withrefs` points into.
    pub small_tree: String,
}

/// Fail with a clear message if Nix is missing: the README's test command
/// installs it.
pub fn require_nix() {
    let found = Command::new("nix-store").arg("--version").output().is_ok();
    assert!(
        found,
        "nix-store not found: run the README's test command (scripts/test), which installs nix-bin"
    );
}

impl NixStore {
    /// An empty scratch store.
    pub fn new() -> Self {
        require_nix();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).expect("mkdir root");
        NixStore { dir, root }
    }

    /// `nix-store --store ROOT` with the network and substituters off.
    pub fn nix_store(&self) -> Command {
        let mut c = Command::new("nix-store");
        c.arg("--store")
            .arg(&self.root)
            .args(["--option", "substituters", ""]);
        c
    }

    /// `nix --store ROOT` with the new CLI enabled.
    pub fn nix(&self) -> Command {
        let mut c = Command::new("nix");
        c.args(["--extra-experimental-features", "nix-command"])
            .arg("--store")
            .arg(&self.root)
            .args(["--option", "substituters", ""]);
        c
    }

    /// Where a store path's files really are.
    pub fn real_path(&self, store_path: &str) -> PathBuf {
        let rel = store_path.strip_prefix('/').unwrap_or(store_path);
        self.root.join(rel)
    }

    /// `nix-store --add PATH`.
    pub fn add(&self, path: &Path) -> String {
        ok_str(self.nix_store().arg("--add").arg(path))
    }

    /// The NAR of a store path, as `nix-store --dump` writes it.
    pub fn dump(&self, store_path: &str) -> Vec<u8> {
        ok(Command::new("nix-store")
            .arg("--dump")
            .arg(self.real_path(store_path)))
    }

    /// `nix-store -q --hash`: `sha256:<nixbase32>`.
    pub fn hash(&self, store_path: &str) -> String {
        ok_str(self.nix_store().args(["-q", "--hash"]).arg(store_path))
    }

    /// `nix-store -q --size`.
    pub fn size(&self, store_path: &str) -> u64 {
        ok_str(self.nix_store().args(["-q", "--size"]).arg(store_path))
            .parse()
            .expect("size")
    }

    /// `nix-store -q --references`.
    pub fn references(&self, store_path: &str) -> Vec<String> {
        let mut v: Vec<String> = ok_str(
            self.nix_store()
                .args(["-q", "--references"])
                .arg(store_path),
        )
        .lines()
        .map(str::to_owned)
        .collect();
        v.sort();
        v
    }

    /// `nix-store -qR`: the closure.
    pub fn requisites(&self, store_path: &str) -> Vec<String> {
        let mut v: Vec<String> = ok_str(self.nix_store().arg("-qR").arg(store_path))
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    /// Evaluate and build a Nix expression in this store, returning the
    /// output path. Builders run with /bin/sh from the host.
    pub fn build(&self, expr_file: &Path) -> String {
        ok_str(
            Command::new("nix-build")
                .arg("--store")
                .arg(&self.root)
                .args(["--option", "substituters", ""])
                .args(["--option", "sandbox-paths", "/bin /lib /lib64 /usr"])
                .arg("--no-out-link")
                .arg(expr_file),
        )
    }
}

impl Default for NixStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Deterministic pseudo-random bytes (xorshift), so multi-chunk files do not
/// compress to nothing and differ from each other.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    // Odd and distinct for every seed (xorshift needs a non-zero state).
    let mut x = seed.wrapping_mul(2).wrapping_add(1);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Write the odd tree: every kind of node and name the model allows.
pub fn write_odd_tree(dir: &Path) {
    let w = |p: &Path, data: &[u8]| std::fs::write(p, data).expect("write");
    std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
    std::fs::create_dir_all(dir.join("empty-dir")).expect("mkdir");
    std::fs::create_dir_all(dir.join("nested/deeper/deepest")).expect("mkdir");
    w(&dir.join("empty-file"), b"");
    w(&dir.join("a"), b"a\n");
    w(&dir.join("name with spaces"), b"spaces\n");
    w(&dir.join("new\nline"), b"newline\n");
    w(&dir.join("ünïcödé"), "ünïcödé\n".as_bytes());
    w(
        &dir.join(std::ffi::OsStr::from_bytes(b"not-utf8-\xff\xfe")),
        b"bytes\n",
    );
    w(&dir.join("x".repeat(255)), b"long name\n");
    w(&dir.join("nested/deeper/deepest/leaf"), b"leaf\n");
    w(&dir.join("bin/tool"), b"#!/bin/sh\necho tool\n");
    std::fs::set_permissions(dir.join("bin/tool"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    // Sizes around the chunker's bounds (16/64/256 KiB) and a multi-chunk file.
    for (i, size) in [
        16 * 1024 - 1,
        16 * 1024,
        64 * 1024 + 1,
        256 * 1024,
        3 * 1024 * 1024 + 7,
    ]
    .into_iter()
    .enumerate()
    {
        w(
            &dir.join(format!("blob-{size}")),
            &pseudo_random(size, i as u64 + 7),
        );
    }
    symlink("a", dir.join("rel-link")).expect("symlink");
    symlink("/etc/hostname", dir.join("abs-link")).expect("symlink");
    symlink("does/not/exist", dir.join("dangling-link")).expect("symlink");
    symlink("../a", dir.join("nested/up-link")).expect("symlink");
}

impl Fixtures {
    /// Make every fixture with Nix in a fresh scratch store.
    pub fn build() -> Self {
        let store = NixStore::new();
        let src = store.dir.path().join("src");
        let tree_dir = src.join("tree");
        std::fs::create_dir_all(&tree_dir).expect("mkdir");
        write_odd_tree(&tree_dir);
        let tree = store.add(&tree_dir);

        let single = src.join("single.txt");
        std::fs::write(&single, b"Hello World!").expect("write");
        let single_file = store.add(&single);

        let small = src.join("small");
        std::fs::create_dir_all(&small).expect("mkdir");
        std::fs::write(small.join("a"), b"a\n").expect("write");

        let expr = src.join("fixtures.nix");
        std::fs::write(
            &expr,
            format!(
                r#"let
  hello = builtins.toFile "hello.txt" "Hello World!";
  small = builtins.path {{ path = {small}; name = "small"; }};
in derivation {{
  name = "withrefs";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  PATH = "/usr/bin:/bin";
  args = [ "-c" "mkdir $out; echo ${{hello}} > $out/ref; ln -s ${{small}}/a $out/link; printf '#!/bin/sh\\necho hi\\n' > $out/run; chmod +x $out/run" ];
}}
"#,
                small = small.display()
            ),
        )
        .expect("write expr");
        let withrefs = store.build(&expr);
        let closure = store.requisites(&withrefs);
        let hello = closure
            .iter()
            .find(|p| p.ends_with("-hello.txt"))
            .expect("hello.txt in closure")
            .clone();
        let small_tree = closure
            .iter()
            .find(|p| p.ends_with("-small"))
            .expect("small in closure")
            .clone();
        Fixtures {
            store,
            tree,
            single_file,
            hello,
            withrefs,
            small_tree,
        }
    }

    /// Every fixture path.
    pub fn all(&self) -> Vec<String> {
        vec![
            self.tree.clone(),
            self.single_file.clone(),
            self.hello.clone(),
            self.withrefs.clone(),
            self.small_tree.clone(),
        ]
    }
}
