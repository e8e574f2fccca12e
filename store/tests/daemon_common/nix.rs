//! A real Nix: a scratch store made with nix-store/nix-build, and a real
//! `nix-daemon` serving it on a socket of its own. Never touches /nix/store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Install Nix if missing (the test command installs nix-bin; this keeps
/// a bare `cargo test` working on a fresh machine too).
pub fn require_nix() {
    if Command::new("nix-store").arg("--version").output().is_ok() {
        return;
    }
    let ok = Command::new("sh")
        .args(["-c", "apt-get update -q && apt-get install -y -q nix-bin"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "nix-store is missing and installing nix-bin failed");
}

/// Run, check success, return stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run and return (success, stdout, stderr).
pub fn try_run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Nix settings for every command: no substituters, no build users.
pub const NIX_CONFIG: &str = "substituters =\nbuild-users-group =\nrequire-sigs = true\n";

/// A command with the test's Nix settings.
pub fn nix_cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("NIX_CONFIG", NIX_CONFIG);
    if program == "nix" {
        c.args(["--extra-experimental-features", "nix-command"]);
    }
    c
}

/// A scratch store and the fixtures Nix made in it.
pub struct NixFixtures {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    /// `nix-store --add` of a small tree (directory, executable, symlink).
    pub tree: String,
    /// `nix-store --add` of a single file.
    pub single: String,
    /// `builtins.toFile "hello.txt" "Hello World!"`.
    pub hello: String,
    /// `builtins.path` of a directory.
    pub small: String,
    /// A derivation output referring to `hello` and `small`.
    pub withrefs: String,
}

impl NixFixtures {
    pub fn build() -> Self {
        require_nix();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("tree/bin")).unwrap();
        std::fs::create_dir_all(src.join("tree/empty")).unwrap();
        std::fs::write(src.join("tree/a"), b"a\n").unwrap();
        std::fs::write(src.join("tree/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                src.join("tree/bin/tool"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(src.join("tree/big"), big).unwrap();
        std::os::unix::fs::symlink("a", src.join("tree/link")).unwrap();
        std::fs::write(src.join("single.txt"), b"Hello World!").unwrap();
        std::fs::create_dir_all(src.join("small")).unwrap();
        std::fs::write(src.join("small/a"), b"a\n").unwrap();
        let add = |p: &Path| {
            run(nix_cmd("nix-store")
                .arg("--store")
                .arg(&root)
                .arg("--add")
                .arg(p))
            .trim()
            .to_owned()
        };
        let tree = add(&src.join("tree"));
        let single = add(&src.join("single.txt"));
        let expr = src.join("f.nix");
        std::fs::write(
            &expr,
            format!(
                r#"let
  hello = builtins.toFile "hello.txt" "Hello World!";
  small = builtins.path {{ path = {}; name = "small"; }};
in derivation {{
  name = "withrefs";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  PATH = "/usr/bin:/bin";
  args = [ "-c" "mkdir $out; echo ${{hello}} > $out/ref; echo ${{small}} > $out/ref2" ];
}}
"#,
                src.join("small").display()
            ),
        )
        .unwrap();
        let withrefs = run(nix_cmd("nix-build")
            .arg("--store")
            .arg(&root)
            .args(["--option", "sandbox-paths", "/bin /lib /lib64 /usr"])
            .arg("--no-out-link")
            .arg(&expr))
        .trim()
        .to_owned();
        let closure = run(nix_cmd("nix-store")
            .arg("--store")
            .arg(&root)
            .arg("-qR")
            .arg(&withrefs));
        let find = |suffix: &str| {
            closure
                .lines()
                .find(|l| l.ends_with(suffix))
                .unwrap_or_else(|| panic!("{suffix} not in {closure}"))
                .to_owned()
        };
        let hello = find("-hello.txt");
        let small = find("-small");
        NixFixtures {
            dir,
            root,
            tree,
            single,
            hello,
            small,
            withrefs,
        }
    }

    /// The NAR of a path, by `nix-store --dump` of its real location.
    pub fn dump(&self, path: &str) -> Vec<u8> {
        let real = self.root.join(path.trim_start_matches('/'));
        let out = Command::new("nix-store")
            .arg("--dump")
            .arg(real)
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }
}

/// A real `nix-daemon` serving a scratch store on its own socket.
pub struct RealDaemon {
    child: Child,
    pub socket: PathBuf,
}

impl RealDaemon {
    pub fn start(root: &Path, socket: PathBuf) -> Self {
        let child = nix_cmd("nix-daemon")
            .env("NIX_DAEMON_SOCKET_PATH", &socket)
            .arg("--store")
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nix-daemon did not create {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        RealDaemon { child, socket }
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for RealDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
