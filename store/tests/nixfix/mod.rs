//! Fixtures made by a real Nix (Debian's `nix-bin`, 2.8) in a scratch store
//! under a temporary directory, never the machine's `/nix/store`.
//!
//! Shared by the import tests of storefs-store and the HTTP tests of
//! storefs-http (included there by `#[path]`).

#![allow(dead_code)] // each test crate uses a different part

use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch Nix store (`--store ROOT`, a chroot store under a tempdir).
pub struct NixStore {
    /// Holds the store (`root/`), sources, keys and caches.
    pub dir: PathBuf,
    pub root: PathBuf,
}

/// Run a command; panic with its stderr if it fails. Tests only.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is nix-bin installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap().trim().to_owned()
}

/// The paths every test uses: made once per NixStore.
pub struct Fixtures {
    /// A tree with an executable, a symlink, an empty file and dir, nested
    /// dirs, odd names and a 1 MiB file (many chunks).
    pub tree: String,
    /// `builtins.toFile`.
    pub text: String,
    /// A single file added with `nix-store --add`.
    pub single: String,
    /// A derivation output (a directory) that references `tree` and `text`.
    pub built: String,
}

impl NixStore {
    /// A fresh store in `<parent>/<label>-<pid>`. A test binary keeps its
    /// store for its whole run (in a static, never dropped), so stores of
    /// runs whose process is gone are removed here instead; runs of other
    /// checkouts sharing the target directory are left alone.
    pub fn fresh(parent: &Path, label: &str) -> Self {
        std::fs::create_dir_all(parent).unwrap();
        for entry in std::fs::read_dir(parent).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(&format!("{label}-")) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                make_writable(&entry.path());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = parent.join(format!("{label}-{}", std::process::id()));
        if dir.exists() {
            make_writable(&dir);
            std::fs::remove_dir_all(&dir).unwrap();
        }
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        Self { dir, root }
    }

    pub fn nix_store(&self) -> Command {
        let mut c = Command::new("nix-store");
        c.arg("--store").arg(&self.root);
        c
    }

    /// `nix` with the new CLI enabled and no substituters.
    pub fn nix(&self) -> Command {
        let mut c = Command::new("nix");
        c.args(["--extra-experimental-features", "nix-command"])
            .args(["--option", "substituters", ""])
            .arg("--store")
            .arg(&self.root);
        c
    }

    pub fn add(&self, path: &Path) -> String {
        text(run(self.nix_store().arg("--add").arg(path)))
    }

    pub fn to_file(&self, name: &str, contents: &str) -> String {
        let expr = format!("builtins.toFile \"{name}\" \"{contents}\"");
        let out = text(run(Command::new("nix-instantiate")
            .arg("--store")
            .arg(&self.root)
            .args(["--eval", "--read-write-mode", "-E", &expr])));
        out.trim_matches('"').to_owned()
    }

    /// Build `expr` (a Nix expression file's text) with `/bin/sh` as builder.
    pub fn build(&self, expr: &str) -> String {
        let file = self.dir.as_path().join("drv.nix");
        std::fs::write(&file, expr).unwrap();
        text(run(Command::new("nix-build")
            .arg("--store")
            .arg(&self.root)
            .args(["--option", "sandbox-paths", "/bin /lib /lib64 /usr"])
            .args(["--option", "substituters", ""])
            .arg("--no-out-link")
            .arg(&file)))
    }

    /// `sha256:<nix32>` of the path's NAR, as Nix recorded it.
    pub fn nar_hash(&self, path: &str) -> String {
        text(run(self.nix_store().args(["-q", "--hash", path])))
    }

    pub fn nar_size(&self, path: &str) -> u64 {
        text(run(self.nix_store().args(["-q", "--size", path])))
            .parse()
            .unwrap()
    }

    /// The path's NAR as Nix writes it.
    pub fn dump(&self, path: &str) -> Vec<u8> {
        run(self.nix().args(["store", "dump-path", path]))
    }

    /// The closure, one full path per entry.
    pub fn closure(&self, path: &str) -> Vec<String> {
        text(run(self.nix_store().args(["-q", "-R", path])))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A key pair `(secret file, public key text)` named `name`.
    pub fn keys(&self, name: &str) -> (PathBuf, String) {
        let sk = self.dir.as_path().join(format!("{name}.sk"));
        let pk = self.dir.as_path().join(format!("{name}.pk"));
        run(Command::new("nix-store")
            .arg("--generate-binary-cache-key")
            .arg(name)
            .arg(&sk)
            .arg(&pk));
        (sk, std::fs::read_to_string(&pk).unwrap().trim().to_owned())
    }

    /// `nix copy` of `paths` (with closures) to a `file://` cache in a new
    /// directory; signed with `secret_key` if given. Returns the directory.
    pub fn copy_to_cache(
        &self,
        label: &str,
        compression: &str,
        secret_key: Option<&Path>,
        paths: &[&str],
    ) -> PathBuf {
        let cache = self.dir.as_path().join(format!("cache-{label}"));
        let mut url = format!("file://{}?compression={compression}", cache.display());
        if let Some(sk) = secret_key {
            url.push_str(&format!("&secret-key={}", sk.display()));
        }
        run(self.nix().args(["copy", "--to", &url]).args(paths));
        cache
    }

    /// The standard fixtures.
    pub fn fixtures(&self) -> Fixtures {
        let src = self.dir.as_path().join("src");
        let tree = src.join("tree");
        std::fs::create_dir_all(tree.join("sub/deep/deeper")).unwrap();
        std::fs::create_dir_all(tree.join("empty-dir")).unwrap();
        std::fs::write(tree.join("a"), "hi\n").unwrap();
        std::fs::write(tree.join("empty"), "").unwrap();
        std::fs::write(tree.join("sub/run"), "#!/bin/sh\necho x\n").unwrap();
        set_exec(&tree.join("sub/run"));
        std::fs::write(tree.join("sub/deep/deeper/we ird=+name,ü"), "odd\n").unwrap();
        std::fs::write(tree.join("-dash"), "x").unwrap();
        std::fs::write(tree.join("seven77"), "1234567").unwrap();
        std::fs::write(tree.join("n".repeat(200)), "long name").unwrap();
        std::os::unix::fs::symlink("a", tree.join("link")).unwrap();
        std::os::unix::fs::symlink("sub/deep", tree.join("dirlink")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/target", tree.join("dangling")).unwrap();
        std::fs::write(tree.join("sub/big.bin"), pseudo_random(1 << 20, 7)).unwrap();
        let tree = self.add(&tree);

        let single_file = src.join("hello.txt");
        std::fs::write(&single_file, "Hello World!").unwrap();
        let single = self.add(&single_file);

        let text = self.to_file("dep.txt", "I am a dependency\\n");

        let built = self.build(&format!(
            r#"derivation {{
                name = "withrefs";
                system = builtins.currentSystem;
                builder = "/bin/sh";
                PATH = "/bin:/usr/bin";
                args = [ "-c" "mkdir $out; echo ${{builtins.storePath "{text}"}} > $out/refs; ln -s ${{builtins.storePath "{tree}"}}/sub $out/sub" ];
            }}"#
        ));
        Fixtures {
            tree,
            text,
            single,
            built,
        }
    }
}

/// Nix leaves store paths read-only; make a tree removable again.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
}

fn set_exec(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Deterministic incompressible bytes (xorshift).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `python3 -m http.server` serving `dir` on 127.0.0.1; killed on drop.
pub struct PyHttpServer {
    child: std::process::Child,
    pub port: u16,
}

impl PyHttpServer {
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let mut child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        // Wait until it accepts connections.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { child, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("python3 http.server did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PyHttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
